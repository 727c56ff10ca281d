"""Where training's scalars go: TensorBoard events, or JSON lines without TensorBoard.

Both writers take `write_scalars(step, {name: value})`, `flush()` and `close()`, and are
context managers (leaving the block flushes and closes). Neither
imports TensorFlow: importing it (as clu's writers do) costs about 5 s of every run on a
2-core CPU, and only preparing a TFDS data set needs it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from irstd_jax import metrics


class _Closing:
  def __enter__(self):
    return self

  def __exit__(self, *exc) -> None:
    self.flush()
    self.close()


class TensorBoardWriter(_Closing):
  """Scalars as a TensorBoard event file `workdir/events.out.tfevents.<time>.<host>.<pid>`.

  The tensorboard package's protos and record format (what TensorBoard and
  `tf.compat.v1.train.summary_iterator` read); each call is flushed, so TensorBoard shows
  a running job's scalars. A resumed run adds a new file next to the old ones.
  """

  def __init__(self, workdir: str):
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    self._event, self._summary = event_pb2.Event, summary_pb2.Summary
    name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}"
    self.path = os.path.join(workdir, name)
    self._records = RecordWriter(open(self.path, "wb"))
    self._write(self._event(wall_time=time.time(), file_version="brain.Event:2"))

  def _write(self, event) -> None:
    self._records.write(event.SerializeToString())
    self._records.flush()

  def write_scalars(self, step: int, scalars: dict[str, Any]) -> None:
    values = [self._summary.Value(tag=k, simple_value=float(v)) for k, v in scalars.items()]
    self._write(
      self._event(wall_time=time.time(), step=int(step), summary=self._summary(value=values))
    )

  def flush(self) -> None:
    self._records.flush()

  def close(self) -> None:
    if not self._records.closed:
      self._records.close()


class JsonlWriter(_Closing):
  """Scalars as JSON lines in workdir/metrics.jsonl: the writer without TensorBoard.

  One {"step": s, name: value} per call (e.g. a bare CUDA JAX image with
  dataset.source='memory'); a non-finite value (a diverged loss) is written as null.
  """

  def __init__(self, workdir: str, enabled: bool = True):
    self._file = open(os.path.join(workdir, "metrics.jsonl"), "a") if enabled else None

  def write_scalars(self, step: int, scalars: dict[str, Any]) -> None:
    if self._file is not None:
      record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
      self._file.write(json.dumps(metrics.strict_json(record), allow_nan=False) + "\n")

  def flush(self) -> None:
    if self._file is not None:
      self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None


def create_metric_writer(workdir: str, is_lead: bool):
  """TensorBoardWriter on the lead process; JsonlWriter without the tensorboard package.
  Other processes write nothing."""
  if not is_lead:
    return JsonlWriter(workdir, enabled=False)
  try:
    return TensorBoardWriter(workdir)
  except ImportError as e:
    print(
      f"warning: tensorboard unavailable ({e}); scalars go to "
      f"{os.path.join(workdir, 'metrics.jsonl')}, no TensorBoard events",
      flush=True,
    )
    return JsonlWriter(workdir)
