"""The metric writers: TensorBoard events TensorFlow reads back, written without importing
TensorFlow; JSON lines where TensorBoard is missing."""

import json
import math
import subprocess
import sys

from conftest import REPO
from conftest import subprocess_env
import numpy as np

from irstd_jax import metric_writers


def test_tensorboard_events_read_back_with_tensorflow(tmp_path):
  import tensorflow as tf  # the reader TensorBoard itself builds on

  writer = metric_writers.create_metric_writer(str(tmp_path), is_lead=True)
  assert isinstance(writer, metric_writers.TensorBoardWriter)
  writer.write_scalars(2, {"loss": np.float32(0.25), "learning_rate": 1e-3})
  writer.write_scalars(4, {"loss": float("nan"), "test/miou": np.float64(0.5)})
  writer.close()
  (path,) = tmp_path.glob("events.out.tfevents.*")
  events = list(tf.compat.v1.train.summary_iterator(str(path)))  # checks every CRC
  assert events[0].file_version == "brain.Event:2"
  got = {(e.step, v.tag): v.simple_value for e in events[1:] for v in e.summary.value}
  assert set(got) == {(2, "loss"), (2, "learning_rate"), (4, "loss"), (4, "test/miou")}
  assert got[(2, "loss")] == 0.25 and got[(4, "test/miou")] == 0.5
  assert math.isclose(got[(2, "learning_rate")], 1e-3, rel_tol=1e-7)  # float32 in the proto
  assert math.isnan(got[(4, "loss")])


def test_writers_do_not_import_tensorflow(tmp_path):
  """TensorFlow's import costs ~5 s of every run; only a TFDS preparation needs it."""
  code = (
    "import sys\n"
    "from irstd_jax import metric_writers, train\n"
    f"w = metric_writers.create_metric_writer({str(tmp_path)!r}, is_lead=True)\n"
    "w.write_scalars(1, {'loss': 1.0}); w.close()\n"
    "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
  )
  proc = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=subprocess_env(), capture_output=True, text=True
  )
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_jsonl_metrics_write_non_finite_values_as_null(tmp_path):
  writer = metric_writers.JsonlWriter(str(tmp_path))
  writer.write_scalars(3, {"loss": np.float32(np.nan), "grad_norm": float("inf"), "iou": 0.5})
  writer.close()
  assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {
    "step": 3,
    "loss": None,
    "grad_norm": None,
    "iou": 0.5,
  }


def test_other_processes_write_nothing(tmp_path):
  writer = metric_writers.create_metric_writer(str(tmp_path), is_lead=False)
  writer.write_scalars(1, {"loss": 1.0})
  writer.close()
  assert list(tmp_path.iterdir()) == []
