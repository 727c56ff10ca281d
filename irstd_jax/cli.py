"""The command-line layer every command shares (main, evaluate, predict, prepare_data).

- One override syntax, `--config.FIELD=VALUE`: of the `--config` file when one is given
  (ml_collections.config_flags), else of the config stored in the checkpoint (evaluate,
  predict): `parse_flags` hands those to the command as `--config_override` values.
- One error line: `error(message, status)` prints `error: <message>` on one line and
  returns the exit status (2: bad input; the commands document the others);
  `fail` exits with it.
- absl's flag parsing with one-line errors: a bad flag value, a missing required flag, an
  unknown `--config.a.b` field, a `--config` file that is missing, does not import, or
  whose get_config() fails or returns something else.
- `apply_overrides` parses `FIELD=VALUE` (typed like the field; unknown names refused).
- `load_config_file`: the ConfigDict of a config file named on a command line (the same
  file check; the argparse tools, ablate, build their configs with it).
- The persistent compilation cache flag.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
import os
import re
import sys
import traceback
from typing import Any
from typing import NoReturn

from absl import flags
import jax
import ml_collections

from irstd_jax import config_check
from irstd_jax import default_config

OVERRIDE_FLAG = "config_override"


def error(message: Any, status: int = 2) -> int:
  """Prints `error: <message>` (one line) to stderr; returns `status` for `return`."""
  print(f"error: {' '.join(str(message).split())}", file=sys.stderr, flush=True)
  return status


def fail(message: Any, status: int = 2) -> NoReturn:
  """`error(message)`, then exits with `status`."""
  raise SystemExit(error(message, status))


def define_override_flag(flag_values: flags.FlagValues = flags.FLAGS) -> flags.FlagHolder:
  """`--config.FIELD=VALUE` overrides of a checkpoint's config (evaluate, predict)."""
  return flags.DEFINE_multi_string(
    OVERRIDE_FLAG,
    [],
    "Set by --config.FIELD=VALUE when no --config file is given: FIELD=VALUE overrides of "
    "the checkpoint's config (repeatable).",
    flag_values=flag_values,
  )


def config_file_path(argv: list[str]) -> str | None:
  """The last `--config` value in argv (`--config=PATH` or `--config PATH`; absl's last
  one wins), else None."""
  found = None
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith("--config="):
      found = arg[len("--config=") :]
    elif arg == "--config" and i + 1 < len(argv):
      found = argv[i + 1]
  return found


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of the config file `path` (config_flags' `file.py:argument` form
  too), as `--config=path` gives it to main: the file's source is compiled and run (a
  user's file, not a module of an import path), then its get_config() called.
  ConfigError (field `--config`, one line naming the file) when the file is missing,
  does not run, defines no get_config(), or get_config() fails or returns something other
  than a ConfigDict."""
  allowed = "a configs/*.py file whose get_config() returns an ml_collections.ConfigDict"
  shown = path
  path, *arguments = path.split(":", 1)  # config_flags' `file.py:argument` form
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
    what = "is a directory" if os.path.isdir(path) else "does not exist"
    raise config_check.ConfigError("--config", f"{shown} {what}", allowed)

  def where(e: BaseException) -> str:
    if isinstance(e, SyntaxError) and e.lineno:
      return f" (line {e.lineno})"
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == path]
    return f" (line {lines[-1]})" if lines else ""

  namespace = {"__name__": "irstd_jax_config_file", "__file__": path}
  try:
    with open(path, encoding="utf-8") as f:
      exec(compile(f.read(), path, "exec"), namespace)  # noqa: S102 (the user's config file)
  except Exception as e:  # noqa: BLE001 (any error of the user's file is reported)
    raise config_check.ConfigError(
      "--config", f"{shown} cannot be imported{where(e)}: {type(e).__name__}: {e}", allowed
    ) from None
  get_config = namespace.get("get_config")
  if not callable(get_config):
    raise config_check.ConfigError("--config", f"{shown} defines no get_config()", allowed)
  try:
    config = get_config(*arguments)
  except Exception as e:  # noqa: BLE001
    raise config_check.ConfigError(
      "--config", f"{shown}: get_config() raised{where(e)} {type(e).__name__}: {e}", allowed
    ) from None
  if not isinstance(config, ml_collections.ConfigDict):
    raise config_check.ConfigError(
      "--config",
      f"{shown}: get_config() returned {type(config).__name__}, not a ConfigDict",
      allowed,
    )
  return config


def route_overrides(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """For commands that define `--config_override` (their config comes from a checkpoint):
  `--config.F=V` becomes `--config_override=F=V` unless a --config file takes it, and the
  older spelling `--set=F=V` (commands before 2026-12-07) always does."""
  if OVERRIDE_FLAG not in flag_values:
    return argv
  config_file = config_file_path(argv)
  routed = [argv[0]]
  args = iter(argv[1:])
  for arg in args:
    if arg.startswith("--set="):
      routed.append(f"--{OVERRIDE_FLAG}={arg[len('--set=') :]}")
    elif arg == "--set":
      routed.append(f"--{OVERRIDE_FLAG}={next(args, '')}")
    elif not config_file and arg.startswith("--config.") and arg != "--config.":
      field, eq, value = arg[len("--config.") :].partition("=")
      if not eq:  # `--config.F V`
        value = next(args, "")
      routed.append(f"--{OVERRIDE_FLAG}={field}={value}")
    else:
      routed.append(arg)
  return routed


def set_args(argv: list[str]) -> list[str]:
  """For the argparse tools (ablate, robustness), whose overrides are a repeatable
  `--set`: `--config.F=V` becomes `--set=F=V`, so every command takes the same spelling."""
  return [f"--set={a[len('--config.') :]}" if a.startswith("--config.") else a for a in argv]


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (the `flags_parser` of `app.run`) with one-line errors, exit 2."""
  config_path = config_file_path(argv)
  if config_path:
    try:
      load_config_file(config_path)  # config_flags runs it again; this says why it fails
    except config_check.ConfigError as e:
      fail(e)
  argv = route_overrides(argv)
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(e)
  except (AttributeError, KeyError) as e:  # config_flags: an override of a missing field
    found = re.search(r"[A-Za-z_]\w*", str(e))  # "'learning_rte'\nDid you mean ..."
    missing = found.group(0) if found else str(e)
    for arg in argv[1:]:
      if arg.startswith("--config."):
        path = arg[len("--config.") :].split("=", 1)[0]
        if missing in path.split("."):
          fail(config_check.unknown_field_error(path).with_field(f"--config.{path}"))
    fail(f"bad --config override: {missing}")


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
  for item in overrides or ():
    if "=" not in item:
      raise config_check.ConfigError(
        flag, f"{item!r} has no '='", "key=value, e.g. eval.threshold=0.4"
      )
    key, text = item.split("=", 1)
    key = key.strip()
    parent, _, leaf = key.rpartition(".")
    node = default_config.lookup(config, parent) if parent else config
    if not hasattr(node, "keys"):
      raise config_check.unknown_field_error(key)
    if leaf not in node and key not in default_config.FIELDS:
      known = list(default_config.FIELDS) + default_config.field_names(config)
      raise config_check.unknown_field_error(key, known)
    node[leaf] = parse_value(text, node.get(leaf))


def apply_config_overrides(config, flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Applies the routed `--config.F=V` overrides (ConfigError naming `--config.F`)."""
  for item in flag_values[OVERRIDE_FLAG].value:
    try:
      apply_overrides(config, [item])
    except config_check.ConfigError as e:
      raise e.with_field(f"--config.{e.field}") from None


def define_compilation_cache_flag() -> flags.FlagHolder:
  """--compilation_cache_dir, shared by main, evaluate and predict."""
  return flags.DEFINE_string(
    "compilation_cache_dir",
    os.path.join("~", ".cache", "irstd_jax", "jax"),
    "JAX's persistent compilation cache: a rerun, resume or evaluation with shapes seen "
    "before loads the compiled programs instead of compiling them ('' = off; the "
    "JAX_COMPILATION_CACHE_DIR environment variable, when set, wins).",
  )


def enable_compilation_cache(path: str) -> str | None:
  """Points JAX's persistent compilation cache at `path` unless JAX_COMPILATION_CACHE_DIR
  is set (JAX reads that itself) or `path` is empty; returns the directory in use."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return os.environ["JAX_COMPILATION_CACHE_DIR"]
  if not path:
    return None
  path = os.path.abspath(os.path.expanduser(path))
  jax.config.update("jax_compilation_cache_dir", path)
  return path
