"""End to end: `python -m irstd_jax.main` trains, evaluates, checkpoints and resumes."""

import json
import pathlib
import subprocess
import sys

from conftest import subprocess_env
import jax
import numpy as np
import pytest

from irstd_jax import checkpointing

REPO = pathlib.Path(__file__).resolve().parents[1]

TINY = [
  "--config.dataset.num_train=16",
  "--config.dataset.num_test=6",
  "--config.dataset.image_size=32",
  "--config.dataset.crop_size=32",
  "--config.model.channels=(4,4,8,8,8)",
  "--config.model.blocks=(1,1,1,1)",
  "--config.train.batch_size=4",
  "--config.eval.batch_size=4",
  "--config.eval.every_epochs=1",
  "--config.train.log_every_steps=2",
  "--config.loss.warm_epochs=1",
]


def run_main(workdir, *extra, config="configs/synthetic.py", check=True):
  env = subprocess_env()
  cmd = [
    sys.executable,
    "-m",
    "irstd_jax.main",
    f"--config={config}",
    f"--workdir={workdir}",
    f"--config.dataset.data_dir={workdir.parent / 'tfds'}",
    *TINY,
    *extra,
  ]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  if check and proc.returncode != 0:
    raise AssertionError(f"main failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
  return proc


def steps(directory):
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_two_epochs_write_checkpoints_and_metrics_then_resume_continues(tmp_path):
  workdir = tmp_path / "run"
  first = run_main(workdir, "--config.train.num_epochs=2")
  assert "epoch 2/2 step 8/8" in first.stdout and "ETA" in first.stdout
  assert "final test (synthetic, 6 images): mIoU" in first.stdout
  assert steps(workdir / "checkpoints") == [4, 8]
  assert len(steps(workdir / "checkpoints_best")) == 1
  final = json.loads((workdir / "final_metrics.json").read_text())
  assert final["step"] == 8
  assert set(final["test"]) >= {"miou", "niou", "pd", "fa"}
  assert 0.0 <= final["test"]["miou"] <= 1.0
  assert list(workdir.glob("events.out.tfevents.*")), "TensorBoard events were written"

  second = run_main(workdir, "--config.train.num_epochs=3")
  assert "resumed from step 8" in second.stdout
  assert "epoch 3/3 step 9/12" not in second.stdout  # log steps are 10 and 12
  assert "step 10/12" in second.stdout and "step 2/12" not in second.stdout
  assert steps(workdir / "checkpoints")[-1] == 12
  assert json.loads((workdir / "final_metrics.json").read_text())["step"] == 12


def test_a_real_data_config_without_data_fails_with_one_clear_line(tmp_path):
  proc = run_main(tmp_path / "run", config="configs/sirst_uavb.py", check=False)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  last = [line for line in proc.stderr.splitlines() if line.strip()][-1]
  assert last.startswith("error:") and "manual_dir" in last


# Blocks TensorFlow, TFDS and TensorBoard (as on a bare CUDA JAX image), then runs main.
_NO_TF = (
  "import sys\n"
  "for name in ('tensorflow', 'tensorflow_datasets', 'tensorboard'):\n"
  "  sys.modules[name] = None\n"
  "from absl import app\n"
  "from irstd_jax import main\n"
  "app.run(main.main)\n"
)


@pytest.mark.e2e
def test_bf16_run_on_the_memory_source_without_tensorflow_tfds_or_tensorboard(tmp_path):
  """The bare-CUDA-image path end to end (one run, to keep CI short): no TF / TFDS /
  TensorBoard, data in RAM, bfloat16 compute; float32 parameters are checkpointed."""
  workdir = tmp_path / "run"
  env = subprocess_env()
  cmd = [
    sys.executable,
    "-c",
    _NO_TF,
    "--config=configs/synthetic.py",
    f"--workdir={workdir}",
    "--config.dataset.source=memory",
    *TINY,
    "--config.train.num_epochs=1",
    "--config.model.dtype=bfloat16",
  ]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr[-4000:]}"
  assert "warning: tensorboard unavailable" in proc.stdout
  assert "final test (synthetic, 6 images): mIoU" in proc.stdout
  assert not (tmp_path / "tfds").exists() and not list(workdir.glob("events.out.tfevents.*"))
  records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in records if "loss" in r] == [2, 4]
  assert {"loss", "learning_rate", "images_per_sec"} <= set(records[0])
  assert any("test/miou" in r for r in records)
  assert steps(workdir / "checkpoints")[-1] == 4
  variables, meta = checkpointing.restore_variables(str(workdir), prefer_best=False)
  assert meta["config"]["model"]["dtype"] == "bfloat16"
  leaves = jax.tree.leaves(variables)
  assert leaves and all(leaf.dtype == np.float32 and np.isfinite(leaf).all() for leaf in leaves)
