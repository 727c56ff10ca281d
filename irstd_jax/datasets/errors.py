"""The errors the data sets raise, and the hint that tells how to prepare a real set.

A leaf module (no import from this package), so every other module can raise them.
"""

from __future__ import annotations


class DataNotPreparedError(RuntimeError):
  """A real data set was asked for, but its files are not where the config points."""


class BadInputError(DataNotPreparedError):
  """The manual directory of a real data set has a defect (one-line message, file first).

  `problems` lists every defect found (the message shows the first one and a count), so a
  CLI prints one clean line and `python -m irstd_jax.prepare_data` can list them all.
  """

  def __init__(self, message: str, problems=None, root: str | None = None, path: str | None = None):
    message = " ".join(str(message).split("\n"))
    self.problems = [" ".join(str(p).split("\n")) for p in (problems or [message])]
    self.root, self.path = root, path
    more = len(self.problems) - 1
    if more:
      message += (
        f" (and {more} more problem{'s' if more > 1 else ''}; "
        f"`python -m irstd_jax.prepare_data` lists them all)"
      )
    super().__init__(message)


def how_to_prepare(name: str) -> str:
  """The end of an error message about real set `name`: where to get it, how to prepare it."""
  return (
    f"get the {name} files (see docs/data.md for where), "
    f"then pass --config.dataset.manual_dir=DIR or run "
    f"`python -m irstd_jax.prepare_data --dataset={name} --manual_dir=DIR`"
  )
