"""tools.analysis.ablate: a two-row grid through main writes one table; a rerun skips done rows."""

import json
import signal
import subprocess
import sys
import time

from conftest import REPO
from conftest import set_field
from conftest import subprocess_env
import pytest
from test_main import TINY

from irstd_jax import checkpointing
from tools.analysis import ablate


def _command(out, *extra, epochs=1):
  sets = [f"--set={arg[len('--config.') :]}" for arg in TINY]
  return [
    sys.executable,
    "-m",
    "tools.analysis.ablate",
    "--config=configs/synthetic.py",
    "--grid=loss",
    "--rows=diff,var",
    f"--output_dir={out}",
    "--set=dataset.source=memory",
    f"--set=train.num_epochs={epochs}",
    *sets,
    *extra,
  ]


def _run(out, *extra):
  return subprocess.run(
    _command(out, *extra),
    cwd=REPO,
    env=subprocess_env(),
    capture_output=True,
    text=True,
    timeout=900,
  )


@pytest.mark.e2e
def test_grid_writes_one_table_and_a_rerun_skips_finished_rows(tmp_path):
  out = tmp_path / "ablate"
  first = _run(out, "--parallel=2")
  assert first.returncode == 0, first.stdout + first.stderr[-3000:]
  data = json.loads((out / "results.json").read_text())
  assert [r["name"] for r in data["rows"]] == ["diff", "var"]
  assert data["rows"][1]["overrides"] == ["loss.scale_weight=var"]
  for row in data["rows"]:
    assert row["status"] == "ok"
    assert set(row["result"]["test"]) >= {"miou", "niou", "pd", "fa", "fa_strict"}
    assert (out / row["dir"] / "log.txt").read_text().count("final test") == 1
    # The salvage path for stopped rows reads the same evaluation from the log.
    salvaged = ablate.last_eval_from_log(str(out / row["dir"] / "log.txt"))
    assert salvaged["epochs"] == 1
    for key, value in row["result"]["test"].items():
      if key in salvaged["test"]:
        assert salvaged["test"][key] == pytest.approx(value, abs=1e-4 if "fa" not in key else 1e-8)
  # Each row's overrides reached its run: the saved config names its scale weight.
  for row, weight in zip(data["rows"], ("diff", "var")):
    _, meta = checkpointing.restore_variables(str(out / row["dir"]), prefer_best=False)
    assert meta["config"]["loss"]["scale_weight"] == weight
    assert meta["config"]["dataset"]["source"] == "memory"
  md = (out / "results.md").read_text()
  assert "| diff | (none) | 1 |" in md and "| var | loss.scale_weight=var | 1 |" in md
  assert "Command: `python -m tools.analysis.ablate --config=configs/synthetic.py" in md

  second = _run(out)
  assert second.returncode == 0, second.stderr[-3000:]
  again = json.loads((out / "results.json").read_text())
  assert [r["status"] for r in again["rows"]] == ["done (earlier run)"] * 2
  assert [r["result"] for r in again["rows"]] == [r["result"] for r in data["rows"]]


def test_rows_are_selected_by_name_or_index_and_unknown_names_fail():
  grid = ablate.GRIDS["paper"]
  assert ablate.select_rows(grid, "0,mask=none") == [grid[0], grid[6]]
  with pytest.raises(SystemExit, match="no row 'nope'"):
    ablate.select_rows(grid, "nope")
  assert ablate.row_dirname("attention=cbam (mshnet)") == "attention_cbam_mshnet"
  assert len({ablate.row_dirname(name) for name, _ in grid}) == len(grid)


def test_a_config_file_that_does_not_load_is_one_error_line(tmp_path, capsys):
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config():\n  return 1 / 0\n")
  with pytest.raises(SystemExit) as info:
    ablate.main([f"--config={bad}", f"--output_dir={tmp_path / 'out'}", "--dry_run"])
  assert info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: --config") and "ZeroDivisionError" in err and "\n" not in err
  assert not (tmp_path / "out").exists()


def test_every_grid_row_is_a_valid_config_override():
  """Each override names an existing config field with a value the model/loss accept."""
  from irstd_jax import default_config
  from irstd_jax import losses
  from irstd_jax import models

  for grid in ablate.GRIDS.values():
    for name, overrides in grid:
      config = default_config.base_config()
      for override in overrides:
        set_field(config, *override.split("=", 1))  # KeyError: no such field
      models.create_model(config.model)  # raises on an unknown model name
      assert config.loss.scale_weight in losses.SCALE_WEIGHT_KINDS, name


def test_seeds_expand_every_row_and_table_gives_mean_and_sample_std(tmp_path, capsys):
  out = tmp_path / "seeds"
  assert (
    ablate.main(
      [
        "--config=configs/synthetic.py",
        "--grid=paper_vs_mshnet",
        f"--output_dir={out}",
        "--seeds=0,2",
        "--dry_run",
      ]
    )
    == 0
  )
  commands = capsys.readouterr().out.strip().splitlines()
  assert len(commands) == 4
  # Seed-major: every row runs seed 0 before any row runs seed 2.
  for command, (row, seed) in zip(commands, [(0, 0), (1, 0), (0, 2), (1, 2)]):
    assert f"--config.seed={seed}" in command
    assert f"seed{seed}" in command.split("--workdir=")[1].split()[0]
    assert ("--config.model.name=mshnet" in command) == (row == 1)
  rows = [
    {
      "base": "a",
      "seed": k,
      "status": "ok",
      "result": {
        "test": {"miou": m, "niou": 0.5, "pd": 1.0, "fa": f * 1e-6, "fa_strict": 2 * f * 1e-6}
      },
    }
    for k, (m, f) in enumerate([(0.70, 10.0), (0.74, 14.0), (0.78, 18.0)])
  ]
  rows.append({"base": "b", "seed": 0, "status": "failed (exit 1)", "result": None})
  table = ablate.seeds_table(rows)
  assert (
    "| a | 3/3 (0,1,2) | 0.7400 +- 0.0400 | 0.5000 +- 0.0000 | 1.0000 +- 0.0000 | "
    "14.00 +- 4.00 | 28.00 +- 8.00 |" in table
  )
  assert "| b | 0/1 (-) | - | - | - | - | - |" in table
  assert ablate.mean_std([3.0]) == (3.0, 0.0)


@pytest.mark.e2e
def test_sigterm_to_ablate_alone_stops_its_running_row_with_a_checkpoint(tmp_path):
  """`kill PID` of ablate (no group signal): the row gets SIGTERM too, saves and exits 143."""
  out = tmp_path / "ablate"
  proc = subprocess.Popen(
    _command(out, "--rows=diff", epochs=200),  # minutes of training: stopped long before
    cwd=REPO,
    env=subprocess_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
    start_new_session=True,  # the signal below reaches ablate only, not its group
  )
  log = out / "diff" / "log.txt"
  deadline = time.time() + 600
  while " step " not in (log.read_text() if log.exists() else ""):  # the row is training
    assert proc.poll() is None and time.time() < deadline, proc.communicate()[0]
    time.sleep(1)
  proc.send_signal(signal.SIGTERM)
  output, _ = proc.communicate(timeout=600)
  assert proc.returncode == 1, output
  row = json.loads((out / "results.json").read_text())["rows"][0]
  assert row["status"].startswith("stopped (SIGTERM"), row
  assert "SIGTERM: saved a checkpoint" in log.read_text()
  _, meta = checkpointing.restore_variables(str(out / "diff"), prefer_best=False)
  assert 0 < meta["step"] < 200 * 4
