"""Config validation: every mistake that needs no data is refused before any expensive work.

`validate_config(config, workdir=..., purpose=...)` loops over the schema
(`default_config.FIELDS`) and raises `ConfigError`, whose message is one line
`<field>: <what is wrong> (<allowed>)`; the commands print it as `error: <message>` and
exit with status 2 (irstd_jax.cli). `apply_overrides` sets `a.b=value` fields and refuses
names the project does not know; `state_changes` is the resume check;
`python -m irstd_jax.config_check` writes the config reference (docs/config.md).
"""

from __future__ import annotations

import ast
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


# ------------------------------------------------------------------------- known fields


def reference_config():
  """Every field the project reads: the base config (it holds every field's default)."""
  return default_config.base_config()


def _leaves(node, prefix: str = "") -> Iterable[tuple[str, Any]]:
  for key in node:
    value = node[key]
    name = f"{prefix}{key}"
    if hasattr(value, "keys") and not isinstance(value, (str, bytes)):
      yield from _leaves(value, name + ".")
    else:
      yield name, value


def field_names(config) -> list[str]:
  """Dotted names of every leaf field ('train.learning_rate', ...)."""
  return [name for name, _ in _leaves(config)]


def _did_you_mean(name: str, known: Iterable[str]) -> str:
  close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
  return f"did you mean {close[0]}?" if close else "not a field of this project's config"


def unknown_field_error(name: str, known: Iterable[str] | None = None) -> ConfigError:
  known = field_names(reference_config()) if known is None else known
  return ConfigError(name, "no such config field", _did_you_mean(name, known))


def parse_value(text: str, current: Any = None) -> Any:
  """'3' -> 3, '(1,2)' -> (1, 2), 'true' -> True, else the string; typed like `current`.

  A string field keeps the text as given; an int given for a float field becomes a float.
  """
  if isinstance(current, str):
    return text
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    value: Any = lowered == "true"
  else:
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = text
  if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  return value


def apply_overrides(config, overrides: Iterable[str], flag: str = "--set") -> None:
  """Applies ['a.b=value', ...] to a ConfigDict in place; ConfigError for unknown names.

  A field the config lacks is accepted only when the project knows it (an older
  checkpoint's config may predate a field); a misspelt name is refused.
  """
  known = None
  for item in overrides or ():
    if "=" not in item:
      raise ConfigError(flag, f"{item!r} has no '='", "key=value, e.g. eval.threshold=0.4")
    key, text = item.split("=", 1)
    key = key.strip()
    node = config
    *path, leaf = key.split(".")
    for part in path:
      if part not in node or not hasattr(node[part], "keys"):
        known = field_names(reference_config()) if known is None else known
        raise unknown_field_error(key, known)
      node = node[part]
    if leaf not in node:
      known = field_names(reference_config()) if known is None else known
      if key not in known:
        raise unknown_field_error(key, known + field_names(config))
    node[leaf] = parse_value(text, node.get(leaf))


# ---------------------------------------------------------------------------- validation


def _get(config, path: str, default: Any = None) -> Any:
  node = config
  for part in path.split("."):
    if not hasattr(node, "keys") or part not in node:
      return default
    node = node[part]
  return node


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
  spec = str(_get(config, "train.profile") or "")
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
  known = set(default_config.FIELDS)
  for name in field_names(config):
    if name not in known:
      raise unknown_field_error(name, known)


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
    value = _get(config, path, missing)
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


# ----------------------------------------------------------------------- resume changes


def _normalized(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return tuple(_normalized(v) for v in value)
  return value


def _turned_on(value: Any) -> bool:
  return bool(value) and not (isinstance(value, int) and value == 1)


def state_changes(stored: Any, config) -> list[str]:
  """'field (old -> new)' for every field whose change makes a saved training state unfit.

  `stored` is the config saved in a checkpoint's meta (a dict); `config` the new one. The
  schema's `state` says which fields count: "equal" (the architecture, the optimizer: any
  change alters the parameter or optimizer state tree) and "on_off" (clipping and
  accumulation: turning them on or off alters the optimizer state). A field missing from
  either config (written before it existed) has today's default.
  """
  changes = []
  for path, field in default_config.FIELDS.items():
    if field.state is None:
      continue
    old = _normalized(_get(stored, path, field.default))
    new = _normalized(_get(config, path, field.default))
    if field.state == "equal" and old != new:
      changes.append(f"{path} ({old!r} -> {new!r})")
    elif field.state == "on_off" and _turned_on(old) != _turned_on(new):
      what = "accumulation" if path.endswith("steps") else "clipping"
      on = "on" if _turned_on(new) else "off"
      changes.append(f"{path} ({old!r} -> {new!r}: {what} turned {on})")
  return changes


# ------------------------------------------------------------------------ the reference


def reference_markdown() -> str:
  """docs/config.md: every field of the schema (`python -m irstd_jax.config_check`)."""
  lines = [
    "# Config reference",
    "",
    "Generated from the schema in `irstd_jax/default_config.py` by",
    "`python -m irstd_jax.config_check > docs/config.md`; tests/test_config_check.py fails",
    "when it is stale. Override any field with `--config.<field>=<value>`. *Checked for*: the",
    "commands whose validation checks the field (train checks every field); *resume*: a",
    "change refused when resuming (`equal`: any change, `on_off`: turning it on or off).",
  ]
  section = None
  for path, field in default_config.FIELDS.items():
    head = path.split(".")[0] if "." in path else "top level"
    if head != section:
      section = head
      lines += [
        "",
        f"## {section}",
        "",
        "| field | default | allowed | checked for | resume | meaning |",
        "|---|---|---|---|---|---|",
      ]
    lines.append(
      f"| `{path}` | `{field.default!r}` | {allowed_text(field)} | "
      f"{', '.join(field.check)} | {field.state or ''} | {field.doc} |"
    )
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  print(reference_markdown(), end="")
