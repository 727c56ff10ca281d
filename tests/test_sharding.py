"""Data parallelism on 8 fake CPU devices gives the single-device result."""

import json
import subprocess
import sys

from conftest import REPO
from conftest import subprocess_env
import pytest


def _run(tmp_path, dtype):
  env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=8")
  proc = subprocess.run(
    [sys.executable, "-m", "tests.scripts.sharded_step", str(tmp_path), dtype],
    env=env,
    capture_output=True,
    text=True,
    timeout=600,
    cwd=REPO,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_one_step_on_8_devices_matches_1_device_float32(tmp_path):
  out = _run(tmp_path, "float32")
  # Same math, different reduction order across devices: float32 round-off only.
  assert out["param_gap"] <= 1e-5 * max(out["param_scale"], 1.0), out
  assert out["bn_gap"] <= 1e-5, out
  assert out["loss_1"] == pytest.approx(out["loss_8"], rel=1e-5)
