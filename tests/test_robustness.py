"""tools.analysis.robustness: the floor, the tables, argument errors, and that a finished run is
read back instead of trained again (no training here: the runs are prepared by hand)."""

import json

import pytest

from tools.analysis import robustness


def _result(miou, saturated=0):
  test = {"miou": miou, "niou": 0.4, "pd": 0.6, "fa": 2e-5, "num_saturated": saturated}
  return {"step": 300, "epochs": 6, "test": test, "wall_time_s": 100.0}


def test_verdict_holds_a_run_to_the_floor():
  assert robustness.verdict(_result(0.6)["test"], 0.5) == "pass"
  assert robustness.verdict(_result(0.49)["test"], 0.5) == "FAIL: mIoU < 0.5"
  assert robustness.verdict(_result(0.6, 3)["test"], 0.5) == "FAIL: 3 saturated image(s)"
  assert robustness.verdict(_result(0.04, 18)["test"], 0.5) == (
    "FAIL: mIoU < 0.5, 18 saturated image(s)"
  )


def test_finished_runs_are_tabulated_not_retrained(tmp_path, capsys):
  results = {("default", 0): _result(0.65), ("avx_eigen", 0): _result(0.04, 18)}
  for (path, seed), result in results.items():
    workdir = tmp_path / path / f"seed{seed}"
    workdir.mkdir(parents=True)
    (workdir / "final_metrics.json").write_text(json.dumps(result))
  status = robustness.main([f"--output_dir={tmp_path}", "--seeds=0"])
  assert status == 1  # one run below the floor
  table = (tmp_path / "results.md").read_text()
  assert "| default | 0 | 0.6500 | 0.4000 | 0.6000 | 20.00 | 0 | 100 | pass |" in table
  assert "| avx_eigen | 0 | 0.0400 |" in table and "FAIL: mIoU < 0.5, 18 saturated" in table
  assert "| default | 1 | 0.6500 +- 0.0000 | 0.6500 | 1/1 |" in table
  assert "| avx_eigen | 1 | 0.0400 +- 0.0000 | 0.0400 | 0/1 |" in table
  runs = json.loads((tmp_path / "results.json").read_text())["runs"]
  assert [r["verdict"] for r in runs] == ["pass", "FAIL: mIoU < 0.5, 18 saturated image(s)"]
  assert "training" not in capsys.readouterr().out  # nothing was trained again


@pytest.mark.parametrize(
  "args, message",
  [
    (["--paths=default,arm"], "--paths: unknown ['arm']"),
    (["--seeds=a"], "--seeds 'a': expected integers"),
    (["--config.train.num_epochs"], "--config.train.num_epochs: expected --config.FIELD=VALUE"),
    (["--config=configs/nope.py"], "--config configs/nope.py: no such file"),
  ],
)
def test_bad_arguments_are_one_error_line_and_status_2(tmp_path, capsys, args, message):
  assert robustness.main([f"--output_dir={tmp_path}", *args]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"error: {message}") and err.count("\n") == 1
