"""Config validation: every mistake that needs no data is refused before any expensive work.

`validate_config(config, workdir=..., purpose=...)` loops over the schema
(`default_config.FIELDS`) and raises `ConfigError`, whose message is one line
`<field>: <what is wrong> (<allowed>)`; the commands print it as `error: <message>` and
exit with status 2 (irstd_jax.cli). `allowed_text` states what a field accepts, for the
errors and for the config reference (irstd_jax.config_reference, docs/config.md). The
`--config.a.b=value` syntax is parsed in irstd_jax.cli, the resume check is
`checkpointing.state_changes`.
"""

from __future__ import annotations

from collections.abc import Iterable
import difflib
import importlib
import math
from typing import Any

from irstd_jax import default_config
from irstd_jax import storage

PURPOSES = default_config.PURPOSES


class ConfigError(ValueError):
  """A config field (or a command-line path) that cannot work; str: one line."""

  def __init__(self, field: str, problem: str, allowed: str):
    self.field, self.problem, self.allowed = field, problem, allowed
    super().__init__(f"{field}: {problem} ({allowed})")

  def with_field(self, field: str) -> ConfigError:
    """The same error under another name (e.g. the flag that set the field)."""
    return ConfigError(field, self.problem, self.allowed)


# ------------------------------------------------------------------------- field names


def _did_you_mean(name: str, known: Iterable[str]) -> str:
  close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
  return f"did you mean {close[0]}?" if close else "not a field of this project's config"


def unknown_field_error(name: str, known: Iterable[str] = default_config.FIELDS) -> ConfigError:
  """'no such config field', with the closest known name."""
  return ConfigError(name, "no such config field", _did_you_mean(name, known))


# ---------------------------------------------------------------------------- validation


def _is_number(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def choices(field: default_config.Field) -> tuple[str, ...]:
  """A field's allowed strings; a "module:REGISTRY" reference is read here (it imports
  the module: validation may load JAX, the schema itself does not)."""
  if isinstance(field.choices, str):
    module, attribute = field.choices.split(":")
    return tuple(getattr(importlib.import_module(module), attribute))
  return tuple(field.choices or ())


def _range_text(field: default_config.Field, integer: bool) -> str:
  low, high = field.low, field.high
  if low is not None and high is not None:
    left, right = "(" if field.low_open else "[", ")" if field.high_open else "]"
    return f"a number in {left}{low:g}, {high:g}{right}"
  if low is not None:
    bound = f"{'>' if field.low_open else '>='} {low:g}"
  elif high is not None:
    bound = f"{'<' if field.high_open else '<='} {high:g}"
  else:
    bound = ""
  return f"{'an integer' if integer else 'a finite number'} {bound}".strip()


def _check_number(path: str, field: default_config.Field, value: Any, integer: bool) -> None:
  allowed = _range_text(field, integer)
  if integer:
    if not isinstance(value, int) or isinstance(value, bool):
      raise ConfigError(path, f"{value!r} is not an integer", allowed)
  elif not _is_number(value):
    raise ConfigError(path, f"{value!r} is not a number", allowed)
  elif not math.isfinite(value):
    raise ConfigError(path, f"{value} is not a finite number", allowed)
  low, high = field.low, field.high
  if low is not None and (value < low or (field.low_open and value == low)):
    raise ConfigError(path, f"{value!r} is too small", allowed)
  if high is not None and (value > high or (field.high_open and value == high)):
    raise ConfigError(path, f"{value!r} is too large", allowed)


def allowed_text(field: default_config.Field) -> str:
  """What a field accepts, as its errors and the config reference state it."""
  default = field.default
  if isinstance(default, tuple):
    return f"{field.length} integers >= {field.low:g}"
  if isinstance(default, bool):
    return "True or False"
  if isinstance(default, (int, float)):
    return _range_text(field, integer=isinstance(default, int))
  if field.choices is not None:
    return f"one of {', '.join(choices(field))}"
  return "text"


def check_field(path: str, field: default_config.Field, value: Any) -> None:
  """ConfigError unless `value` has the field's type and lies in its range or choices."""
  default = field.default
  if isinstance(default, (int, float)) and not isinstance(default, bool):
    _check_number(path, field, value, integer=isinstance(default, int))
    return
  if isinstance(default, tuple):
    ok = (
      isinstance(value, (list, tuple))
      and len(value) == field.length
      and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
      and all(v >= field.low for v in value)
    )
    problem = f"is not {field.length} positive integers"
  elif isinstance(default, bool):
    ok, problem = isinstance(value, bool), "is not a boolean"
  elif field.choices is not None:
    what = field.what or path.rsplit(".", 1)[-1].replace("_", " ")
    ok, problem = value in choices(field), f"is not a known {what}"
  else:
    ok, problem = isinstance(value, str), "is not a string"
  if not ok:
    raise ConfigError(path, f"{value!r} {problem}", allowed_text(field))


def check_directory(path: str, field: str) -> None:
  """ConfigError unless `path` is a writable directory or can be created (writes nothing)."""
  allowed = "a writable directory, or one that can be created"
  if not path:
    raise ConfigError(field, "is empty", allowed)
  problem = storage.directory_problem(path)
  if problem:
    raise ConfigError(field, problem, allowed)


def _check_profile(config) -> None:
  spec = str(default_config.lookup(config, "train.profile") or "")
  if not spec:
    return
  parts = spec.split(":")
  ok = len(parts) in (1, 2) and all(p.strip().isdigit() for p in parts)
  if ok and len(parts) == 2:
    ok = int(parts[0]) < int(parts[1])
  if not ok:
    raise ConfigError(
      "train.profile",
      f"{spec!r} is not a step count or range",
      "'' (off), 'N' (N steps) or 'A:B' (steps A..B-1, A < B)",
    )


def _check_unknown_fields(config) -> None:
  for name in default_config.field_names(config):
    if name not in default_config.FIELDS:
      raise unknown_field_error(name)


def validate_config(config, *, workdir: str | None = None, purpose: str = "train") -> None:
  """Raises ConfigError for the first field that cannot work for `purpose`.

  Every field of `default_config.FIELDS` whose `check` names `purpose` is checked against
  its type, range or choices (a field the config lacks is skipped: a checkpoint's config
  may predate it); training also refuses fields the schema does not know.

  Args:
    config: the ConfigDict a run would use.
    workdir: the directory the run writes (train: --workdir; eval, predict: --output),
      checked to be a writable directory or creatable; None skips the check.
    purpose: 'train' (every field), 'eval' (model, data set, eval.*) or 'predict'
      (model, normalisation, eval.threshold).
  """
  if purpose not in PURPOSES:
    raise ValueError(f"purpose={purpose!r}: expected one of {PURPOSES}")
  if purpose == "train":
    _check_unknown_fields(config)
  missing = object()
  for path, field in default_config.FIELDS.items():
    value = default_config.lookup(config, path, missing)
    if purpose not in field.check or value is missing:
      continue
    if field.when is not None and not field.when(config):
      continue
    check_field(path, field, value)
  if purpose == "train":
    _check_profile(config)
    from irstd_jax import models  # noqa: PLC0415 (JAX: only once the fields are known)

    conflicts = models.preset_conflicts(config.model)
    if conflicts:
      path, value, preset = conflicts[0]
      raise ConfigError(
        path,
        f"{value!r} would be overridden by model.name={config.model.name!r}, which sets {preset!r}",
        "leave it at its default, or set model.name=custom to choose every switch",
      )
  if workdir is not None:
    check_directory(workdir, "--workdir" if purpose == "train" else "--output")
