"""tools/benchmark.py: one tiny run (JAX float32 + torch eager, in-process) writes the
JSON with every number finite and positive, and the markdown table.  No speed is
asserted."""

import json
import math
import os

from conftest import REPO
from conftest import load_module
import pytest

if os.environ.get("CI"):
  import torch  # noqa: F401  CI installs torch==2.13.0; a missing torch must fail there
else:
  pytest.importorskip(
    "torch",
    reason="PyTorch not installed: the benchmark compares "
    "against the torch reference (torch==2.13.0)",
  )


def _tool():
  return load_module(REPO / "tools" / "benchmark.py")


def _positive(x):
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_tiny_benchmark_writes_json_and_table(tmp_path):
  out = tmp_path / "bench"
  result = _tool().main(
    [
      "--sizes=32",
      "--batch_size=2",
      "--channels=4,4,8,8,8",
      "--blocks=1,1,1,1",
      "--steps=1",
      "--warmup=0",
      "--device=cpu",
      "--torch_threads=1",
      "--no_isolate",
      f"--output_dir={out}",
    ]
  )
  data = json.loads((out / "benchmark.json").read_text())
  assert data == json.loads(json.dumps(result))
  meta = data["meta"]
  for key in ("date", "command", "device", "versions", "platform"):
    assert meta[key], key
  assert meta["platform"] == "cpu" and "--sizes=32" in meta["command"]
  assert {"jax", "torch"} <= set(meta["versions"])
  assert data["warnings"] == []

  (size_res,) = data["results"]
  assert size_res["size"] == 32
  rows = {r["kind"]: r for r in size_res["rows"]}
  assert set(rows) == {"jax_float32", "torch_eager"}
  assert rows["jax_float32"]["params"] == rows["torch_eager"]["params"]
  for kind, row in rows.items():
    assert row["loss_finite"] and math.isfinite(row["final_loss"]), kind
    assert _positive(row["peak_memory_bytes"]) and row["peak_memory_kind"], kind
    for phase in ("train", "eval"):
      for key in ("images_per_s", "step_ms_median", "step_ms_min", "first_call_s"):
        assert _positive(row[phase][key]), (kind, phase, key, row[phase][key])
  for phase in ("train", "eval"):  # JAX always compiles; eager torch has no compile time
    assert _positive(rows["jax_float32"][phase]["compile_s"])
    assert rows["torch_eager"][phase]["compile_s"] is None
  (ratio,) = size_res["ratios"]
  assert _positive(ratio["train"]) and _positive(ratio["eval"])

  md = (out / "benchmark.md").read_text()
  assert "| size | row | params | train img/s" in md
  assert "| 32 | jax float32 |" in md and "| 32 | torch eager |" in md
  assert "train ratio" in md


def test_a_failed_row_is_reported_and_the_measured_rows_are_kept(tmp_path, monkeypatch):
  tool = _tool()
  phase = {
    "images_per_s": 4.0,
    "step_ms_median": 500.0,
    "step_ms_min": 490.0,
    "first_call_s": 3.0,
    "compile_s": 2.5,
  }

  def run_row(args, kind, size, argv):  # a measured JAX row; the torch row breaks
    if kind == "torch_eager":
      raise RuntimeError("row torch_eager size 32 failed (rc 1):\nRuntimeError: boom")
    return {
      "kind": kind,
      "size": size,
      "framework": "jax",
      "variant": "float32",
      "platform": "cpu",
      "device": "cpu",
      "params": 10,
      "train": phase,
      "eval": phase,
      "peak_memory_bytes": 2**20,
      "peak_memory_kind": "rss",
    }

  monkeypatch.setattr(tool, "run_row", run_row)
  out = tmp_path / "bench"
  tool.main(["--sizes=32,48", "--device=cpu", f"--output_dir={out}"])
  data = json.loads((out / "benchmark.json").read_text())
  for size, size_res in zip((32, 48), data["results"]):
    assert [(r["kind"], r["size"]) for r in size_res["rows"]] == [("jax_float32", size)]
    assert size_res["ratios"] == []
  assert data["warnings"] == [
    f"row torch_eager at size {s} failed: RuntimeError: boom" for s in (32, 48)
  ]
  md = (out / "benchmark.md").read_text()
  assert "| 48 | jax float32 | 10 | 4.00 |" in md
  assert "Warning: row torch_eager at size 32 failed: RuntimeError: boom" in md
