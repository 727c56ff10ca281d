"""Orbax checkpoints: the latest N training states, and the best one by test mIoU.

Layout under the workdir:
  checkpoints/<step>/       latest `max_to_keep` states (resume reads the newest)
  checkpoints_best/<step>/  the single state with the highest test mIoU
Each step holds `state` (step, params, batch_stats, opt_state) and `meta` (JSON: the
config, epoch and metrics), so evaluate/predict need nothing but the directory.

A step folder that cannot be read (truncated or overwritten files) is never fatal where an
older one is good: training (`Checkpointer.restore_latest`) moves it aside to
`checkpoints/<step>.corrupt` and resumes from the newest good step (or from scratch);
`restore_variables` (evaluate, predict) warns and uses the newest good one, and raises
`CheckpointError` (one line) when none is. A state whose tree does not fit the config
(a changed model or optimizer) is `StateMismatchError`, not damage: nothing is moved.

A save that fails on the file system (disk full, quota, file-size limit, an I/O error;
orbax writes in background threads, so it surfaces at a later save, at
`Checkpointer.check_saves` or when the block ends) is `CheckpointSaveError` (one line naming
the step folder, the OS error and the free space). The complete steps stay as they were
(orbax renames a step's temporary folder only once every file of it is written, and removes
older steps only after a save succeeded); the failed step's temporary folder is removed.

Exported weights (`export_variables`, what `pretrained/` ships): one folder with
  variables.msgpack   {'params', 'batch_stats'} float32 (flax.serialization msgpack)
  meta.json           the same meta (config, step, epoch, metrics) plus provenance
small, independent of orbax's on-disk format, and read by `restore_variables` like a
workdir.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import glob
import json
import logging
import os
import re
import shutil
import sys
from typing import Any
import warnings

from flax import serialization
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts

from irstd_jax import config_check
from irstd_jax import default_config
from irstd_jax import optim
from irstd_jax import storage

LATEST_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"
CORRUPT_SUFFIX = ".corrupt"


# The fields of a training state that a checkpoint holds (train.TrainState's).
STATE_FIELDS = ("step", "params", "batch_stats", "opt_state")


class CheckpointError(ValueError):
  """No readable checkpoint where one was asked for (the message is one line)."""


class CheckpointSaveError(RuntimeError):
  """A checkpoint could not be written (disk full, quota, file-size limit, ...); one line."""


class StateMismatchError(ValueError):
  """A saved training state whose tree does not fit the state the config builds."""

  def __init__(self, directory: str, step: int, differences: list[str]):
    self.directory, self.step, self.differences = directory, step, differences
    more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
    super().__init__(f"{directory}/{step}: the saved state does not fit: {differences[0]}{more}")


def _is_orbax_leftover(unraisable) -> bool:
  exc, obj = unraisable.exc_value, unraisable.object
  if isinstance(exc, RuntimeError) and "Event loop is closed" in str(exc):
    return True
  code = getattr(obj, "cr_code", None)
  return code is not None and "orbax" in code.co_filename


_leftovers_silenced = False


def verify_step_files(step_dir: str) -> None:
  """Reads every stored value of a step's state (synchronously); raises if one is missing.

  Orbax keeps the arrays in one OCDBT database per step (`<step>/state/manifest.ocdbt` and
  data files). A truncated, emptied or deleted file makes a value unreadable: this finds
  it with one exception naming the value, before orbax's concurrent restore would fail
  with thousands of lines from its abandoned reads. (Bytes overwritten in place, same
  size, can pass: nothing stores checksums of the values.)
  """
  state = os.path.join(step_dir, "state")
  if not os.path.isfile(os.path.join(state, "manifest.ocdbt")):
    return  # not an OCDBT state (other layouts are left to orbax)
  store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{state}/"}).result()
  keys = store.list().result()
  reads = [(key, store.read(key)) for key in keys]
  for key, read in reads:
    try:
      if read.result().state != "value":
        raise ValueError("missing")
    except ValueError as e:
      raise ValueError(f"{key.decode(errors='replace')}: {e}") from None


def _is_asyncio_leftover(record: logging.LogRecord) -> bool:
  """asyncio's 'Task (or _GatheringFuture) exception was never retrieved' about orbax's
  reads or writes, logged when the abandoned task is finalised."""
  message = record.getMessage()
  if "exception was never retrieved" not in message.split("\n", 1)[0]:
    return False
  if "orbax" in message:
    return True
  tb = record.exc_info[2] if record.exc_info else None
  while tb is not None:
    if "orbax" in tb.tb_frame.f_code.co_filename:
      return True
    tb = tb.tb_next
  return False


class _DropOrbaxLeftovers(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not _is_asyncio_leftover(record)


def _silence_orbax_leftovers() -> None:
  """Keeps a failed restore to its one-line report (installed before the first restore).

  When one array of a step cannot be read, orbax's restore raises at once and abandons
  the other reads in flight; they finish or are finalised later (often during the next
  restore) and report through sys.unraisablehook ('Event loop is closed', the read's own
  error) and the asyncio log (tasks nobody awaited): thousands of lines about a failure
  already reported. Those are dropped; anything else still goes to the previous hook and
  the log. (verify_step_files finds the usual damage before orbax reads anything.)
  """
  global _leftovers_silenced
  if _leftovers_silenced:
    return
  previous = sys.unraisablehook

  def hook(unraisable):
    if not _is_orbax_leftover(unraisable):
      previous(unraisable)

  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(_DropOrbaxLeftovers())
  _leftovers_silenced = True


def _reason(error: BaseException, limit: int = 160) -> str:
  """`Type: first words of the message` of the root cause, one line, for a report."""
  while error.__cause__ is not None:  # orbax wraps the tensorstore error that says why
    error = error.__cause__
  text = " ".join(str(error).split())
  text = re.sub(r' in OCDBT database at local file "[^"]*"', "", text)  # the folder is named
  if len(text) > limit:
    text = text[: limit - 3] + "..."
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def save_error_message(directory: str, step: int, error: BaseException, newest: int | None) -> str:
  """The one line of a failed save: the step folder, the OS error, the free space, the
  checkpoint a rerun resumes from."""
  kept = (
    f"the complete checkpoints are kept: make room and rerun the same command to resume "
    f"from step {newest}"
    if newest is not None
    else "no complete checkpoint yet: make room and rerun the same command to start again"
  )
  return (
    f"{os.path.join(directory, str(step))}: checkpoint not saved: "
    f"{storage.os_error_text(error)}; {storage.free_space_text(directory)}; {kept}"
  )


def storage_error_message(path: str, error: OSError) -> str:
  """One line for a file the run could not write outside a checkpoint (the workdir lock,
  the metrics, final_metrics.json): the path, the OS error, the free space."""
  return (
    f"{error.filename or path}: cannot be written: {storage.os_error_text(error)}; "
    f"{storage.free_space_text(error.filename or path)}; the complete checkpoints are kept"
  )


def _is_failed_save_report(record: logging.LogRecord) -> bool:
  """Orbax's own report (with traceback) of an OS error in a save's background threads."""
  if not record.exc_info or "orbax" not in record.pathname:
    return False
  return storage.os_error_number(record.exc_info[1]) is not None


class _DropFailedSaveReports(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not _is_failed_save_report(record)


def _remove_temporary_step(directory: str, step: int) -> None:
  """Removes what a failed save of `step` left (orbax's `<step>.orbax-checkpoint-tmp*`)."""
  if jax.process_index() != 0:
    return
  for path in glob.glob(os.path.join(glob.escape(directory), f"{step}.orbax-checkpoint-tmp*")):
    shutil.rmtree(path, ignore_errors=True)


def _key_name(key) -> str:
  for attribute in ("key", "idx", "name"):
    if hasattr(key, attribute):
      return str(getattr(key, attribute))
  return str(key)


def _flat_shapes(tree) -> dict[str, tuple[int, ...]]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    "/".join(_key_name(k) for k in path): tuple(getattr(leaf, "shape", ())) for path, leaf in leaves
  }


def tree_differences(expected, found) -> list[str]:
  """What differs between two trees of arrays (or array metadata): paths and shapes."""
  want, have = _flat_shapes(expected), _flat_shapes(found)
  out = []
  for path in sorted(want.keys() | have.keys()):
    if path not in have:
      out.append(f"{path} is missing from the checkpoint")
    elif path not in want:
      out.append(f"{path} is in the checkpoint but not in this config's state")
    elif want[path] != have[path]:
      out.append(f"{path} has shape {have[path]} in the checkpoint, {want[path]} here")
  return out


def _item_handlers() -> dict[str, ocp.CheckpointHandler]:
  return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}


def damaged_step_metadata(directory: str) -> list[tuple[int, str, str]]:
  """(step, file, reason) of each step folder whose orbax metadata file is not JSON text.

  orbax's CheckpointManager reads every step's `_CHECKPOINT_METADATA` when it starts and
  fails with an error naming no file (UnicodeDecodeError on random bytes), so the step
  folders are checked first.
  """
  damaged = []
  if not os.path.isdir(directory):
    return damaged
  for name in sorted(os.listdir(directory)):
    path = os.path.join(directory, name, "_CHECKPOINT_METADATA")
    if not (name.isdigit() and os.path.isfile(path)):
      continue
    try:
      with open(path, encoding="utf-8") as f:
        json.load(f)
    except (OSError, ValueError) as e:  # UnicodeDecodeError is a ValueError
      damaged.append((int(name), path, _reason(e)))
  return damaged


def set_aside_damaged_metadata(directory: str, report) -> None:
  """Moves every step folder with damaged metadata to `<step>.corrupt` (one line each)."""
  for step, path, reason in damaged_step_metadata(directory):
    source = os.path.join(directory, str(step))
    target, n = source + CORRUPT_SUFFIX, 1
    while os.path.exists(target):
      target, n = f"{source}{CORRUPT_SUFFIX}{n}", n + 1
    if jax.process_index() == 0:
      os.rename(source, target)
      report(f"warning: {path} cannot be read ({reason}); moved {source} to {target}")
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"irstd_jax:set_aside_metadata_{step}")


def _manager(directory: str, barrier_prefix: str, **options) -> ocp.CheckpointManager:
  # The handlers are named so that item_metadata (the saved tree) can be read before a
  # restore. The latest and the best manager save at the same step, each finishing in its
  # own background thread: with one barrier-key prefix their cross-process barriers share
  # names and can pair up wrongly (a two-process run hung after its last evaluation).
  return ocp.CheckpointManager(
    os.path.abspath(directory),
    options=ocp.CheckpointManagerOptions(
      create=True,
      multiprocessing_options=ocp.options.MultiprocessingOptions(
        barrier_sync_key_prefix=barrier_prefix
      ),
      **options,
    ),
    item_handlers=_item_handlers(),
  )


def _normalized(value: Any) -> Any:
  if isinstance(value, (list, tuple)):
    return tuple(_normalized(v) for v in value)
  return value


def _turned_on(value: Any) -> bool:
  return bool(value) and not (isinstance(value, int) and value == 1)


# What turning an "on_off" field on or off adds to or removes from the optimizer state.
_ON_OFF_WHAT = {
  "train.grad_clip_norm": "clipping",
  "train.grad_accum_steps": "accumulation",
  "train.ema_decay": "weight averaging",
}


def state_changes(stored: Any, config) -> list[str]:
  """'field (old -> new)' for every field whose change makes a saved training state unfit.

  `stored` is the config saved in a checkpoint's meta (a dict); `config` the new one. The
  schema's `state` says which fields count: "equal" (the architecture, the optimizer: any
  change alters the parameter or optimizer state tree) and "on_off" (clipping,
  accumulation, weight averaging: turning them on or off alters the optimizer state). A
  field missing from either config (written before it existed) has today's default.
  """
  changes = []
  for path, field in default_config.FIELDS.items():
    if field.state is None:
      continue
    old = _normalized(default_config.lookup(stored, path, field.default))
    new = _normalized(default_config.lookup(config, path, field.default))
    if field.state == "equal" and old != new:
      changes.append(f"{path} ({old!r} -> {new!r})")
    elif field.state == "on_off" and _turned_on(old) != _turned_on(new):
      what = _ON_OFF_WHAT.get(path, path)
      on = "on" if _turned_on(new) else "off"
      changes.append(f"{path} ({old!r} -> {new!r}: {what} turned {on})")
  return changes


def resume_error(workdir: str, step: int, what: str) -> config_check.ConfigError:
  return config_check.ConfigError(
    "--workdir",
    f"{workdir} holds a run (checkpoint step {step}) that differs from this "
    f"config where the saved state's shape depends on it: {what}",
    f"resume with the old values; or pass another --workdir; or start another --workdir "
    f"from its weights with --config.train.init_from={workdir}",
  )


def check_resume(config, workdir: str) -> bool:
  """True when workdir holds checkpoints to resume; ConfigError when the config changed
  a field that the saved state's tree depends on (`state_changes`).

  Reads only the newest readable checkpoint's meta: cheap, before any data or compilation.
  A workdir whose checkpoint folders are files is refused here too, not at the first save;
  step folders whose orbax metadata is not JSON are moved aside (one warning line each).
  """
  for name in (LATEST_DIR, BEST_DIR):
    config_check.check_directory(os.path.join(workdir, name), "--workdir")
    set_aside_damaged_metadata(
      os.path.join(workdir, name), lambda line: print(line, file=sys.stderr, flush=True)
    )
  found = newest_meta(os.path.join(workdir, LATEST_DIR))
  if found is None:
    return False
  step, meta = found
  changes = state_changes(meta.get("config", {}), config)
  if changes:
    raise resume_error(workdir, step, ", ".join(changes))
  return True


class Checkpointer:
  """Saves and restores training states; all processes must call save/restore together.

  A context manager: leaving the block (normally, by an exception or SystemExit) waits for
  the saves in flight, then closes both managers. A save that failed on the file system
  raises CheckpointSaveError (one line) wherever it surfaces: the next save, check_saves,
  wait, or the end of the block.
  """

  def __init__(self, workdir: str, max_to_keep: int = 3):
    self.latest = _manager(os.path.join(workdir, LATEST_DIR), LATEST_DIR, max_to_keep=max_to_keep)
    self.best = _manager(
      os.path.join(workdir, BEST_DIR),
      BEST_DIR,
      max_to_keep=1,
      best_fn=lambda metrics: metrics["miou"],
      best_mode="max",
      keep_checkpoints_without_metrics=False,
    )
    self._pending: dict[int, int] = {}  # id(manager) -> step of its save in flight
    self._failed: CheckpointSaveError | None = None
    # Orbax logs a failed background write with its traceback from each thread it passes
    # through (hundreds of lines); the failure is reported once, as CheckpointSaveError.
    self._log_filter = _DropFailedSaveReports()
    logging.getLogger("absl").addFilter(self._log_filter)

  @staticmethod
  def _args(state: dict[str, Any], meta: dict[str, Any]) -> ocp.args.Composite:
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

  @contextlib.contextmanager
  def _saving(self, manager: ocp.CheckpointManager, step: int | None) -> Iterator[None]:
    """Turns an OS error of `manager`'s save of `step` into CheckpointSaveError (once)."""
    if self._failed is not None:
      raise self._failed
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      if step is None or storage.os_error_number(e) is None:
        raise
      self._pending.pop(id(manager), None)
      raise self._save_failed(manager, step, e) from None

  def _save_failed(self, manager, step: int, error: BaseException) -> CheckpointSaveError:
    directory = str(manager.directory)
    _remove_temporary_step(directory, step)
    _silence_orbax_leftovers()
    # Reads abandoned by the failed write are finalised at exit as 'coroutine ... was
    # never awaited' RuntimeWarnings, after the report.
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited")
    latest_dir = str(self.latest.directory)
    steps = ocp.utils.checkpoint_steps(latest_dir) if os.path.isdir(latest_dir) else []
    newest = max(steps, default=None)
    self._failed = CheckpointSaveError(save_error_message(directory, step, error, newest))
    return self._failed

  def _wait(self, manager: ocp.CheckpointManager) -> None:
    with self._saving(manager, self._pending.get(id(manager))):
      manager.wait_until_finished()
    self._pending.pop(id(manager), None)

  def _save(self, manager: ocp.CheckpointManager, step: int, **kwargs) -> None:
    self._wait(manager)  # the previous save's failure names the previous step
    with self._saving(manager, step):
      self._pending[id(manager)] = step
      manager.save(step, force=True, **kwargs)

  def save(
    self,
    step: int,
    state: dict[str, Any],
    meta: dict[str, Any],
    metrics: dict[str, float] | None = None,
  ) -> None:
    """Saves `state` as the latest; also as the best when `metrics['miou']` is a new high."""
    if self.latest.latest_step() != step:
      self._save(self.latest, step, args=self._args(state, meta))
    if metrics is not None and self.best.latest_step() != step:
      self._save(
        self.best,
        step,
        args=self._args(state, meta),
        metrics={k: float(v) for k, v in metrics.items()},
      )

  def check_saves(self) -> None:
    """Raises CheckpointSaveError when a background save has failed; never blocks (cheap
    enough for every training step), so a full disk stops training at once."""
    for manager in (self.latest, self.best):
      if id(manager) in self._pending and not manager.is_saving_in_progress():
        self._wait(manager)  # finished: returns at once, or raises its error

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def restore_latest(self, abstract_state: dict[str, Any], report=print):
    """(state, meta) of the newest readable checkpoint, or None when there is none.

    A step that fails to load is moved aside to `<step>.corrupt` (one line through
    `report`) and the next older one is tried. A step whose state tree differs from
    `abstract_state` raises StateMismatchError and nothing is moved.
    """
    _silence_orbax_leftovers()
    for step in sorted(self.latest.all_steps(), reverse=True):
      try:
        # Files first: orbax's concurrent metadata read of a damaged step can leave
        # abandoned reads that print tracebacks after the one-line report.
        verify_step_files(os.path.join(str(self.latest.directory), str(step)))
        stored = self.latest.item_metadata(step)["state"]
      except Exception as e:  # pylint: disable=broad-except
        self._set_aside(step, e, report)
        continue
      differences = tree_differences(abstract_state, stored) if stored is not None else []
      if differences:
        raise StateMismatchError(str(self.latest.directory), step, differences)
      try:
        restored = self.latest.restore(
          step,
          args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
          ),
        )
      except Exception as e:  # pylint: disable=broad-except
        self._set_aside(step, e, report)
        continue
      return restored["state"], restored["meta"]
    return None

  def _set_aside(self, step: int, error: BaseException, report) -> None:
    directory = str(self.latest.directory)
    source = os.path.join(directory, str(step))
    target, n = source + CORRUPT_SUFFIX, 1
    while os.path.exists(target):
      target, n = f"{source}{CORRUPT_SUFFIX}{n}", n + 1
    if jax.process_index() == 0:
      os.rename(source, target)
      report(
        f"warning: checkpoint step {step} in {directory} cannot be read "
        f"({_reason(error)}); moved it to {target}"
      )
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"irstd_jax:set_aside_{step}")
    self.latest.reload()

  def restore_into(self, state, workdir: str, sharding):
    """`state` with the newest readable checkpoint's values (a damaged step is moved aside
    with one warning line and the next older one used), placed with `sharding`; `state`
    itself when there is none. ConfigError when the saved tree does not fit."""
    try:
      restored = self.restore_latest(
        {f: getattr(state, f) for f in STATE_FIELDS},
        report=lambda line: print(line, file=sys.stderr, flush=True),
      )
    except StateMismatchError as e:  # what check_resume's meta comparison cannot see
      raise resume_error(workdir, e.step, "; ".join(e.differences[:3])) from None
    if restored is None:
      return state
    saved, meta = restored
    state = jax.device_put(state.replace(**saved), sharding)
    if jax.process_index() == 0:
      print(f"resumed from step {int(state.step)} (epoch {meta.get('epoch')})", flush=True)
    return state

  def wait(self) -> None:
    self._wait(self.latest)
    self._wait(self.best)

  def close(self) -> None:
    """Closes both managers (after a failed save too: each is closed whatever the other
    raises; the failure was reported by wait)."""
    try:
      for manager in (self.latest, self.best):
        try:
          manager.close()
        except Exception:  # pylint: disable=broad-except
          if self._failed is None:
            raise
        step = self._pending.pop(id(manager), None)
        if self._failed is not None and step is not None:  # its save failed as well
          _remove_temporary_step(str(manager.directory), step)
    finally:
      logging.getLogger("absl").removeFilter(self._log_filter)

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc) -> None:
    try:
      if self._failed is None:  # else the block ends with it already
        self.wait()  # earlier (finite) saves in flight complete, whatever ended the block
    finally:
      self.close()


def newest_meta(directory: str) -> tuple[int, dict[str, Any]] | None:
  """(step, meta) of the newest step in a checkpoints dir whose meta reads; None if none.

  Reads only the small JSON meta (the config a run was started with), nothing else.
  """
  if not os.path.isdir(directory) or not ocp.utils.checkpoint_steps(directory):
    return None
  with _read_only_manager(directory) as manager:
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
      except Exception:  # pylint: disable=broad-except  (damaged: restore_latest reports it)
        continue
      return step, meta["meta"]
  return None


EXPORT_VARIABLES = "variables.msgpack"
EXPORT_META = "meta.json"


def is_export(path: str) -> bool:
  return os.path.isfile(os.path.join(path, EXPORT_VARIABLES))


def export_variables(variables: dict[str, Any], meta: dict[str, Any], output_dir: str) -> str:
  """Writes `variables` ({'params', 'batch_stats'}) and `meta` as an exported folder.

  Both files are written under temporary names and renamed, so an interrupted export
  never leaves a half-written folder that loads.
  """
  os.makedirs(output_dir, exist_ok=True)
  tree = {
    "params": jax.tree.map(np.asarray, variables["params"]),
    "batch_stats": jax.tree.map(np.asarray, variables.get("batch_stats", {})),
  }
  for name, data in (
    (EXPORT_META, json.dumps(meta, indent=2, allow_nan=False).encode()),
    (EXPORT_VARIABLES, serialization.msgpack_serialize(tree)),
  ):
    tmp = os.path.join(output_dir, name + ".tmp")
    with open(tmp, "wb") as f:
      f.write(data)
    os.replace(tmp, os.path.join(output_dir, name))
  return output_dir


def _restore_export(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
  variables_path = os.path.join(path, EXPORT_VARIABLES)
  meta_path = os.path.join(path, EXPORT_META)
  if not os.path.isfile(meta_path):
    raise FileNotFoundError(
      f"{meta_path}: missing (an exported checkpoint needs {EXPORT_VARIABLES} and {EXPORT_META})"
    )
  with open(meta_path) as f:
    meta = json.load(f)
  with open(variables_path, "rb") as f:
    try:
      tree = serialization.msgpack_restore(f.read())
    except Exception as e:  # pylint: disable=broad-except
      raise ValueError(f"{variables_path}: not a readable msgpack file ({e})") from None
  if not isinstance(tree, dict) or "params" not in tree:
    raise ValueError(f"{variables_path}: holds no 'params'")
  return {"params": tree["params"], "batch_stats": tree.get("batch_stats", {})}, meta


class _DropReadOnlyNotes(logging.Filter):
  """Orbax warns about every option a read-only manager turns off; nothing is wrong."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = str(record.msg)
    return not (
      message.startswith("CheckpointManagerOptions.read_only=True")
      or message.startswith("Given directory is read only")
    )


@contextlib.contextmanager
def _quiet_read_only():
  logger, note_filter = logging.getLogger("absl"), _DropReadOnlyNotes()
  logger.addFilter(note_filter)
  try:
    yield
  finally:
    logger.removeFilter(note_filter)


def resolve_checkpoint_dir(path: str, prefer_best: bool = True) -> str:
  """Accepts a workdir, a checkpoints dir, or a step dir; returns a manager directory."""
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such checkpoint directory")
  if not os.path.isdir(path):
    raise FileNotFoundError(
      f"{path}: is a file, not a checkpoint directory (a workdir, its {LATEST_DIR}/ or "
      f"{BEST_DIR}/, or an exported folder)"
    )
  for name in (BEST_DIR, LATEST_DIR) if prefer_best else (LATEST_DIR, BEST_DIR):
    candidate = os.path.join(path, name)
    if os.path.isdir(candidate) and ocp.utils.checkpoint_steps(candidate):
      return candidate
  if ocp.utils.checkpoint_steps(path):
    return path
  raise FileNotFoundError(
    f"{path}: holds no orbax checkpoint (expected {BEST_DIR}/ or "
    f"{LATEST_DIR}/ with numbered step folders, as main.py writes)"
  )


def _warn(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def _read_only_manager(directory: str) -> ocp.CheckpointManager:
  damaged = damaged_step_metadata(directory)
  if damaged:
    _, path, reason = damaged[0]
    more = f"; {len(damaged) - 1} more step(s) damaged" if len(damaged) > 1 else ""
    raise CheckpointError(f"{path}: cannot be read ({reason}{more})")
  with _quiet_read_only():
    return ocp.CheckpointManager(
      directory,
      options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers=_item_handlers(),
    )


def _candidates(path: str, directory: str, step: int | None) -> list[tuple[str, int]]:
  """(directory, step) to try in order: the asked-for one, then the newest others.

  `directory` is what resolve_checkpoint_dir chose; when it is a workdir's checkpoints_best/
  or checkpoints/, the other one's steps follow (newest first).
  """
  if step is not None:
    return [(directory, step)]
  with _read_only_manager(directory) as manager:
    steps = sorted(manager.all_steps(), reverse=True)
    first = manager.best_step() if directory.endswith(BEST_DIR) else None
  order = ([first] if first is not None else []) + [s for s in steps if s != first]
  out = [(directory, s) for s in order]
  root = os.path.dirname(directory)
  if os.path.abspath(root) == os.path.abspath(path) and (
    directory.endswith(BEST_DIR) or directory.endswith(LATEST_DIR)
  ):
    other = os.path.join(root, LATEST_DIR if directory.endswith(BEST_DIR) else BEST_DIR)
    if os.path.isdir(other):
      out += [(other, s) for s in sorted(ocp.utils.checkpoint_steps(other), reverse=True)]
  return out


def _restore_step(directory: str, step: int) -> tuple[dict[str, Any], dict[str, Any]]:
  verify_step_files(os.path.join(directory, str(step)))
  with _read_only_manager(directory) as manager:
    # Restore onto this process's first device whatever mesh wrote the checkpoint (a
    # multi-host or 8-GPU run evaluated on one machine): orbax refuses a topology change
    # unless the target shardings are given.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
      manager.item_metadata(step)["state"],
    )
    restored = manager.restore(
      step,
      args=ocp.args.Composite(state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
    )
  state = jax.tree.map(np.asarray, restored["state"])
  return model_variables(state), restored["meta"]


def model_variables(state: dict[str, Any]) -> dict[str, Any]:
  """{'params', 'batch_stats'} of a training state (STATE_FIELDS as a dict): the averaged
  weights when the run kept them (train.ema_decay), else the trained ones."""
  averaged = optim.averaged_params(state.get("opt_state"))
  params = state["params"] if averaged is None else averaged
  return {"params": params, "batch_stats": state["batch_stats"]}


def restore_variables(
  checkpoint_dir: str, step: int | None = None, prefer_best: bool = True, warn=_warn
) -> tuple[dict[str, Any], dict[str, Any]]:
  """Model variables and metadata of a checkpoint, for evaluation and prediction.

  `checkpoint_dir` is a workdir, a checkpoints dir, a step dir, or an exported folder
  (`export_variables`; `step` and `prefer_best` do not apply to it). When the chosen step
  cannot be read, the newest readable one is used instead and `warn` gets one line naming
  both; CheckpointError when no step is readable.

  Returns:
    ({'params': ..., 'batch_stats': ...} as numpy pytrees, meta dict with 'config').
  """
  if os.path.isdir(checkpoint_dir) and is_export(checkpoint_dir):
    return _restore_export(checkpoint_dir)
  directory = resolve_checkpoint_dir(checkpoint_dir, prefer_best)
  _silence_orbax_leftovers()
  damaged = []  # (step folder, reason)
  for candidate_dir, candidate in _candidates(checkpoint_dir, directory, step):
    try:
      variables, meta = _restore_step(candidate_dir, candidate)
    except Exception as e:  # pylint: disable=broad-except
      damaged.append((os.path.join(candidate_dir, str(candidate)), _reason(e)))
      continue
    if damaged:
      more = f"; {len(damaged) - 1} more damaged" if len(damaged) > 1 else ""
      warn(
        f"warning: checkpoint {damaged[0][0]} is damaged ({damaged[0][1]}{more}); using "
        f"{os.path.join(candidate_dir, str(candidate))} instead"
      )
    return variables, meta
  more = f"; {len(damaged) - 1} more damaged" if len(damaged) > 1 else ""
  raise CheckpointError(
    f"{os.path.abspath(checkpoint_dir)}: no readable checkpoint: "
    f"{damaged[0][0]} is damaged ({damaged[0][1]}{more})"
  )
