"""Preemption safety and determinism of `python -m irstd_jax.main` on CPU.

A run killed with SIGKILL at a random step, then restarted, ends with the same metrics and
parameters (bit for bit) as an uninterrupted run of the same config and seed; SIGTERM
writes a checkpoint at the current step before the process exits.
"""

import json
import os
import random
import signal
import subprocess
import sys

from conftest import subprocess_env
import jax
import numpy as np
import pytest
from test_main import REPO
from test_main import TINY
from test_main import run_main

from irstd_jax import checkpointing

pytestmark = pytest.mark.e2e  # whole runs of main, killed and resumed (`make test-e2e`)

# The in-memory source: exact resume is the index-based pipeline's, the same over TFDS
# (whose resume test_main covers), and these six runs then prepare no TFDS data set.
ARGS = [
  "--config.dataset.source=memory",
  "--config.train.num_epochs=3",
  "--config.train.log_every_steps=1",
]


def _final(workdir):
  metrics = json.loads((workdir / "final_metrics.json").read_text())
  variables, _ = checkpointing.restore_variables(str(workdir), prefer_best=False)
  return metrics, variables


def _assert_same_run(a, b):
  (metrics_a, vars_a), (metrics_b, vars_b) = a, b
  assert metrics_a["step"] == metrics_b["step"] == 12
  assert metrics_a["test"] == metrics_b["test"]  # exact equality, not a tolerance
  for x, y in zip(jax.tree.leaves(vars_a), jax.tree.leaves(vars_b)):
    np.testing.assert_array_equal(x, y)


def _start_and_signal(workdir, sig, at_step):
  env = subprocess_env()
  cmd = [
    sys.executable,
    "-m",
    "irstd_jax.main",
    "--config=configs/synthetic.py",
    f"--workdir={workdir}",
    f"--config.dataset.data_dir={workdir.parent / 'tfds'}",
    *TINY,
    *ARGS,
  ]
  proc = subprocess.Popen(
    cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
  )
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if f" step {at_step}/12 " in line:
      proc.send_signal(sig)
      break
  rest, _ = proc.communicate(timeout=600)
  return proc.returncode, "".join(lines) + rest


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("resume") / "reference"
  run_main(workdir, *ARGS)
  return _final(workdir)


def test_same_config_and_seed_give_bit_identical_results(reference, tmp_path):
  run_main(tmp_path / "again", *ARGS)
  _assert_same_run(reference, _final(tmp_path / "again"))


def test_sigkill_at_a_random_step_then_resume_matches_an_uninterrupted_run(reference, tmp_path):
  at_step = random.Random(os.environ.get("PYTEST_SEED", "irstd")).randint(5, 11)
  code, out = _start_and_signal(tmp_path / "killed", signal.SIGKILL, at_step)
  assert code == -signal.SIGKILL, out
  assert not (tmp_path / "killed" / "final_metrics.json").exists()
  # Checkpoints are written asynchronously: only finalised step folders count (an
  # interrupted save leaves a *.orbax-checkpoint-tmp folder that must be ignored).
  committed = sorted(
    int(p.name) for p in (tmp_path / "killed" / "checkpoints").glob("*") if p.name.isdigit()
  )
  resumed = run_main(tmp_path / "killed", *ARGS)
  if committed:
    assert f"resumed from step {committed[-1]}" in resumed.stdout
  else:
    assert "resumed" not in resumed.stdout
  _assert_same_run(reference, _final(tmp_path / "killed"))


def test_sigterm_saves_a_checkpoint_at_the_current_step_and_resume_matches(reference, tmp_path):
  code, out = _start_and_signal(tmp_path / "preempted", signal.SIGTERM, 6)
  assert code == 143, out
  saved = [line for line in out.splitlines() if line.startswith("SIGTERM: saved")]
  assert saved, out
  step = int(saved[0].split("step ")[1].split(";")[0])
  assert step >= 6
  assert step in [
    int(p.name) for p in (tmp_path / "preempted" / "checkpoints").iterdir() if p.name.isdigit()
  ]
  resumed = run_main(tmp_path / "preempted", *ARGS)
  assert f"resumed from step {step}" in resumed.stdout
  _assert_same_run(reference, _final(tmp_path / "preempted"))
