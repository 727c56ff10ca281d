"""Orbax checkpoints: the latest N training states, and the best one by test mIoU.

Layout under the workdir:
  checkpoints/<step>/       latest `max_to_keep` states (resume reads the newest)
  checkpoints_best/<step>/  the single state with the highest test mIoU
Each step holds `state` (step, params, batch_stats, opt_state) and `meta` (JSON: the
config, epoch and metrics), so evaluate/predict need nothing but the directory.

Exported weights (`export_variables`, what `pretrained/` ships): one folder with
  variables.msgpack   {'params', 'batch_stats'} float32 (flax.serialization msgpack)
  meta.json           the same meta (config, step, epoch, metrics) plus provenance
small, independent of orbax's on-disk format, and read by `restore_variables` like a
workdir.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any

from flax import serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

LATEST_DIR = "checkpoints"
BEST_DIR = "checkpoints_best"


def _manager(directory: str, **options) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(create=True, **options))


class Checkpointer:
  """Saves and restores training states; all processes must call save/restore together."""

  def __init__(self, workdir: str, max_to_keep: int = 3):
    self.latest = _manager(os.path.join(workdir, LATEST_DIR), max_to_keep=max_to_keep)
    self.best = _manager(os.path.join(workdir, BEST_DIR), max_to_keep=1,
                         best_fn=lambda metrics: metrics["miou"], best_mode="max",
                         keep_checkpoints_without_metrics=False)

  @staticmethod
  def _args(state: dict[str, Any], meta: dict[str, Any]) -> ocp.args.Composite:
    return ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))

  def save(self, step: int, state: dict[str, Any], meta: dict[str, Any],
           metrics: dict[str, float] | None = None) -> None:
    """Saves `state` as the latest; also as the best when `metrics['miou']` is a new high."""
    if self.latest.latest_step() != step:
      self.latest.save(step, args=self._args(state, meta), force=True)
    if metrics is not None and self.best.latest_step() != step:
      self.best.save(step, args=self._args(state, meta),
                     metrics={k: float(v) for k, v in metrics.items()}, force=True)

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def restore_latest(self, abstract_state: dict[str, Any]):
    """(state, meta) of the newest checkpoint, or None when there is none."""
    step = self.latest.latest_step()
    if step is None:
      return None
    restored = self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


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
  tree = {"params": jax.tree.map(np.asarray, variables["params"]),
          "batch_stats": jax.tree.map(np.asarray, variables.get("batch_stats", {}))}
  for name, data in ((EXPORT_META, json.dumps(meta, indent=2, allow_nan=False).encode()),
                     (EXPORT_VARIABLES, serialization.msgpack_serialize(tree))):
    tmp = os.path.join(output_dir, name + ".tmp")
    with open(tmp, "wb") as f:
      f.write(data)
    os.replace(tmp, os.path.join(output_dir, name))
  return output_dir


def _restore_export(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
  variables_path = os.path.join(path, EXPORT_VARIABLES)
  meta_path = os.path.join(path, EXPORT_META)
  if not os.path.isfile(meta_path):
    raise FileNotFoundError(f"{meta_path}: missing (an exported checkpoint needs "
                            f"{EXPORT_VARIABLES} and {EXPORT_META})")
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
    return not (message.startswith("CheckpointManagerOptions.read_only=True")
                or message.startswith("Given directory is read only"))


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
  for name in ((BEST_DIR, LATEST_DIR) if prefer_best else (LATEST_DIR, BEST_DIR)):
    candidate = os.path.join(path, name)
    if os.path.isdir(candidate) and ocp.utils.checkpoint_steps(candidate):
      return candidate
  if ocp.utils.checkpoint_steps(path):
    return path
  raise FileNotFoundError(f"{path}: holds no orbax checkpoint (expected {BEST_DIR}/ or "
                          f"{LATEST_DIR}/ with numbered step folders, as main.py writes)")


def restore_variables(checkpoint_dir: str, step: int | None = None,
                      prefer_best: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
  """Model variables and metadata of a checkpoint, for evaluation and prediction.

  `checkpoint_dir` is a workdir, a checkpoints dir, a step dir, or an exported folder
  (`export_variables`; `step` and `prefer_best` do not apply to it).

  Returns:
    ({'params': ..., 'batch_stats': ...} as numpy pytrees, meta dict with 'config').
  """
  if os.path.isdir(checkpoint_dir) and is_export(checkpoint_dir):
    return _restore_export(checkpoint_dir)
  directory = resolve_checkpoint_dir(checkpoint_dir, prefer_best)
  with _quiet_read_only(), ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(read_only=True),
      item_handlers={"state": ocp.StandardCheckpointHandler(),
                     "meta": ocp.JsonCheckpointHandler()}) as manager:
    step = manager.latest_step() if step is None else step
    if directory.endswith(BEST_DIR) and manager.best_step() is not None:
      step = manager.best_step()
    # Restore onto this process's first device whatever mesh wrote the checkpoint (a
    # multi-host or 8-GPU run evaluated on one machine): orbax refuses a topology change
    # unless the target shardings are given.
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
                          manager.item_metadata(step)["state"])
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
  state = jax.tree.map(np.asarray, restored["state"])
  return {"params": state["params"], "batch_stats": state["batch_stats"]}, restored["meta"]
