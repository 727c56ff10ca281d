"""tools.bench.benchmark and tools.bench.torch_models.

The idiomatic PyTorch models are the project's networks: the same parameter counts
(4,065,481 for MSHNet's size), and with the JAX weights loaded (through the converter's
mapping, irstd_jax.torch_weights) the same outputs, loss and gradients.  The benchmark
itself runs tiny rows (in-process, and as separate processes) and writes a JSON whose
every number is finite and positive, and the markdown table.  No speed is asserted.
"""

import functools
import json
import math
import os
import subprocess
import sys

from conftest import REPO
from conftest import subprocess_env
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irstd_jax import default_config
from irstd_jax import losses
from irstd_jax import models
from irstd_jax import torch_weights
from tools.bench import benchmark

if os.environ.get("CI"):
  import torch  # CI installs torch==2.13.0; a missing torch must fail there
else:
  torch = pytest.importorskip(
    "torch",
    reason="PyTorch not installed: the benchmark compares "
    "against idiomatic PyTorch (torch==2.13.0)",
  )
from reference_torch import parity  # noqa: E402  (after the torch check above)

from tools.bench import torch_models  # noqa: E402

MODELS = ("mshnet", "l1_gp_rotated")


TINY_NET = ("--channels=4,4,8,8,8", "--blocks=1,1,1,1")


def _run_tool(module: str, *args: str) -> None:
  """`python -m tools.bench.<module> <args>` on the CPU from the repository root, as the
  docs run it (an empty PYTHONPATH: the root is the import path); fails the test on a
  non-zero exit."""
  proc = subprocess.run(
    [sys.executable, "-m", f"tools.bench.{module}", *args],
    cwd=REPO,
    env=subprocess_env(PYTHONPATH=""),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]


def _positive(x):
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _model_config(name, channels=(16, 32, 64, 128, 256), blocks=(2, 2, 2, 2)):
  cfg = default_config.base_config().model
  cfg.name, cfg.channels, cfg.blocks = name, channels, blocks
  return models.resolve_model_config(cfg)


def _jax_params(model, size):
  x = jnp.zeros((1, size, size, 1), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))["params"]


@pytest.mark.parametrize("name", MODELS)
def test_idiomatic_models_have_the_jax_parameter_counts(name):
  cfg = _model_config(name)
  n_jax = models.count_params(_jax_params(models.create_model(cfg), 32))
  n_torch = sum(p.numel() for p in torch_models.create_model(cfg).parameters())
  assert n_torch == n_jax
  if name == "mshnet":
    assert n_jax == 4_065_481  # docs/models.md; MSHNet's own network built for 1 channel


@pytest.mark.parametrize("name", MODELS)
def test_idiomatic_model_and_loss_are_the_project_function(name):
  """JAX weights loaded into the idiomatic model: eval and train outputs (fused and side
  logits), the benchmark recipe's loss, and its gradient wrt every parameter agree."""
  cfg = _model_config(name, (4, 8, 8, 16, 16), (1, 2, 1, 1))
  model = models.create_model(cfg)
  image, mask = benchmark.make_batch(2, 32, seed=3)
  torch.manual_seed(5)
  tmodel = torch_models.create_model(cfg)
  # The idiomatic model's own initial weights, every parameter and BN statistic moved
  # off its init value (theta anywhere in +-pi), as the parity tests draw them.
  variables = parity.random_variables(model, tmodel, image.shape[1:3], seed=5)
  if name == "l1_gp_rotated":
    thetas = [
      leaf
      for p, leaf in jax.tree_util.tree_flatten_with_path(variables["params"])[0]
      if p[-1].key == "theta"
    ]
    assert len(thetas) == 11 and max(abs(float(t)) for t in thetas) > 0.5
  tmodel.load_state_dict(torch_weights.flax_to_torch_state_dict(variables), strict=True)
  x = torch.from_numpy(image.transpose(0, 3, 1, 2).copy())
  m = torch.from_numpy(mask.transpose(0, 3, 1, 2).copy())
  close = lambda a, t: np.testing.assert_allclose(
    np.asarray(a)[..., 0], t.detach().numpy()[:, 0], rtol=1e-4, atol=2e-5
  )

  tmodel.eval()
  logits, sides = jax.jit(functools.partial(model.apply, train=False))(
    variables, jnp.asarray(image)
  )
  tlogits, tsides = tmodel(x)
  close(logits, tlogits)
  assert len(sides) == len(tsides) == 4
  for s, ts in zip(sides, tsides):
    assert ts.shape == (s.shape[0], 1, *s.shape[1:3])
    close(s, ts)

  lcfg = benchmark.loss_config(name)
  assert (lcfg.scale_weight, lcfg.location_weight) == (
    ("var", 1.0) if name == "mshnet" else ("diff", 0.0)
  )

  def jax_loss(params):
    (y, s), _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      jnp.asarray(image),
      train=True,
      mutable=["batch_stats"],
    )
    return losses.total_loss(y, s, jnp.asarray(mask), lcfg, 0)[0], (y, s)

  (loss, (y, s)), grads = jax.jit(jax.value_and_grad(jax_loss, has_aux=True))(variables["params"])
  tmodel.train()
  ty, ts = tmodel(x)
  close(y, ty)
  for a, b in zip(s, ts):
    close(a, b)
  tloss = torch_models.deep_supervision_loss(ty, ts, m, **torch_models.loss_kwargs(lcfg))
  np.testing.assert_allclose(float(loss), float(tloss.detach()), rtol=1e-5)
  tloss.backward()
  expected = torch_weights.flax_to_torch_state_dict({"params": grads}, as_torch=False)
  named = dict(tmodel.named_parameters())
  assert set(named) == set(expected)
  for key, g in expected.items():
    got = named[key].grad.numpy()
    scale = max(float(np.abs(g).max()), 1e-3)
    assert np.abs(got - g).max() <= 2e-3 * scale, key


def test_idiomatic_models_refuse_what_they_do_not_implement():
  with pytest.raises(ValueError, match="no idiomatic PyTorch model"):
    torch_models.create_model(_model_config("pconv_unet"))
  cfg = _model_config("l1_gp_rotated")
  cfg.attention.per_channel_sigma = True
  with pytest.raises(ValueError, match="paper's setting only"):
    torch_models.create_model(cfg)
  lcfg = default_config.base_config().loss
  lcfg.name = "sd"
  with pytest.raises(ValueError, match="plain scale loss only"):
    torch_models.loss_kwargs(lcfg)


def _check_phase(phase, repeats):
  for key in ("images_per_s", "images_per_s_min", "images_per_s_max", "step_ms_median"):
    assert _positive(phase[key]), (key, phase[key])
  assert _positive(phase["step_ms_min"]) and _positive(phase["first_call_s"])
  rates = phase["images_per_s_repeats"]
  assert len(rates) == repeats and all(_positive(r) for r in rates)
  assert phase["images_per_s_min"] <= phase["images_per_s"] <= phase["images_per_s_max"]


@pytest.mark.e2e
def test_tiny_benchmark_writes_json_and_table(tmp_path):
  out = tmp_path / "bench"
  result = benchmark.main(
    [
      "--model=mshnet",
      "--sizes=32",
      "--batch_size=2",
      *TINY_NET,
      "--rows=jax_float32,torch_idiomatic_eager",
      "--steps=1",
      "--warmup=0",
      "--repeats=2",
      "--settle_s=0",
      "--device=cpu",
      "--torch_threads=1",
      "--no_isolate",
      f"--output_dir={out}",
    ]
  )
  data = json.loads((out / "benchmark.json").read_text())
  assert data == json.loads(json.dumps(result))
  meta = data["meta"]
  for key in ("date", "command", "device", "versions", "platform", "cpu_count"):
    assert meta[key], key
  assert meta["platform"] == "cpu" and "--sizes=32" in meta["command"]
  assert meta["repeats"] == 2 and meta["rows"] == ["jax_float32", "torch_idiomatic_eager"]
  assert {"jax", "torch"} <= set(meta["versions"])
  assert all("unreliable" in w for w in data["warnings"])  # a busy machine may warn

  (group,) = data["results"]
  assert (group["model"], group["size"]) == ("mshnet", 32)
  rows = {r["kind"]: r for r in group["rows"]}
  assert list(rows) == ["jax_float32", "torch_idiomatic_eager"]
  assert rows["jax_float32"]["params"] == rows["torch_idiomatic_eager"]["params"]
  assert rows["jax_float32"]["implementation"].startswith("project JAX")
  assert rows["torch_idiomatic_eager"]["implementation"].startswith("idiomatic PyTorch")
  for kind, row in rows.items():
    assert row["loss_finite"] and math.isfinite(row["final_loss"]), kind
    assert _positive(row["peak_memory_bytes"]) and row["peak_memory_kind"], kind
    assert row["recipe"] == "scale loss 'var' + location x1, deep supervision, adagrad lr 0.05"
    assert row["unreliable"] == (row["load_average_1min_before"] > os.cpu_count())
    for phase in ("train", "eval"):
      _check_phase(row[phase], 2)
  for phase in ("train", "eval"):  # JAX always compiles; eager torch has no compile time
    assert _positive(rows["jax_float32"][phase]["compile_s"])
    assert rows["torch_idiomatic_eager"][phase]["compile_s"] is None
  (ratio,) = group["ratios"]
  assert (ratio["jax"], ratio["torch"]) == ("jax_float32", "torch_idiomatic_eager (1 thread)")
  assert _positive(ratio["train"]) and _positive(ratio["eval"])

  md = (out / "benchmark.md").read_text()
  assert "| model | size | row | params | train img/s" in md
  assert "| mshnet | 32 | jax_float32 | 10,075 |" in md
  assert "| mshnet | 32 | torch_idiomatic_eager (1 thread) | 10,075 |" in md
  assert "`torch_idiomatic_eager`: idiomatic PyTorch (tools/bench/torch_models.py), eager" in md
  assert "| mshnet | 32 | jax_float32 | torch_idiomatic_eager (1 thread) |" in md


@pytest.mark.e2e
def test_rows_run_as_processes(tmp_path):
  """The real protocol (one process per row): the torch row's process finds
  tools.bench.torch_models; the JAX row's process splits the batch over the two CPU devices
  it asks for."""
  out = tmp_path / "bench"
  _run_tool(
    "benchmark",
    "--model=l1_gp_rotated",
    "--sizes=16",
    "--batch_size=2",
    *TINY_NET,
    "--rows=jax_float32,torch_idiomatic_eager",
    "--cpu_devices=2",
    "--steps=1",
    "--warmup=0",
    "--repeats=1",
    "--settle_s=0",
    "--device=cpu",
    "--torch_threads=1",
    f"--output_dir={out}",
  )
  data = json.loads((out / "benchmark.json").read_text())
  assert data["meta"]["isolated_processes"]
  (group,) = data["results"]
  rows = {r["kind"]: r for r in group["rows"]}
  assert list(rows) == ["jax_float32", "torch_idiomatic_eager"]
  assert rows["torch_idiomatic_eager"]["implementation"].startswith("idiomatic PyTorch")
  assert len({row["params"] for row in rows.values()}) == 1
  for row in rows.values():
    assert _positive(row["process_wall_s"])
    _check_phase(row["train"], 1)
  assert rows["jax_float32"]["devices"] == 2 and rows["jax_float32"]["loss_finite"]
  assert [(r["jax"], r["torch"]) for r in group["ratios"]] == [
    ("jax_float32 (2 cpu devices)", "torch_idiomatic_eager (1 thread)"),
  ]


def test_a_failed_row_is_reported_and_a_loaded_machine_marks_rows_unreliable(tmp_path, monkeypatch):
  phase = {
    "images_per_s": 4.0,
    "images_per_s_min": 3.5,
    "images_per_s_max": 4.5,
    "images_per_s_repeats": [3.5, 4.0, 4.5],
    "step_ms_median": 500.0,
    "step_ms_min": 490.0,
    "first_call_s": 3.0,
    "compile_s": 2.5,
  }

  def run_row(args, kind, model_name, size, argv):  # a measured JAX row; the torch row breaks
    if kind == "torch_idiomatic_eager":
      raise RuntimeError("row torch_idiomatic_eager failed (rc 1):\nRuntimeError: boom")
    return {
      "kind": kind,
      "implementation": benchmark.IMPLEMENTATIONS["jax"],
      "framework": "jax",
      "variant": "float32",
      "model": model_name,
      "size": size,
      "recipe": "r",
      "platform": "cpu",
      "device": "cpu",
      "params": 10,
      "threads": None,
      "train": phase,
      "eval": phase,
      "peak_memory_bytes": 2**20,
      "peak_memory_kind": "rss",
    }

  cores = os.cpu_count()
  monkeypatch.setattr(benchmark, "run_row", run_row)
  monkeypatch.setattr(benchmark, "load_average", lambda: cores + 0.5)
  out = tmp_path / "bench"
  benchmark.main(
    [
      "--model=mshnet",
      "--sizes=32,48",
      "--rows=jax_float32,torch_idiomatic_eager",
      "--settle_s=0",
      f"--output_dir={out}",
    ]
  )
  data = json.loads((out / "benchmark.json").read_text())
  for size, group in zip((32, 48), data["results"]):
    assert [(r["kind"], r["size"]) for r in group["rows"]] == [("jax_float32", size)]
    assert group["rows"][0]["unreliable"] and group["ratios"] == []
  assert data["warnings"] == [
    f"row torch_idiomatic_eager of mshnet at size {s} failed: RuntimeError: boom" for s in (32, 48)
  ] + [
    f"mshnet at {s}, jax_float32: unreliable, the 1-minute load average before it was "
    f"{cores + 0.5:.2f} > {cores} cores"
    for s in (32, 48)
  ]
  md = (out / "benchmark.md").read_text()
  assert "| mshnet | 48 | jax_float32 | 10 | 4.00 (3.50..4.50) | 500.0 |" in md
  assert f"| {cores + 0.5:.2f} | UNRELIABLE |" in md
  assert "Warning: row torch_idiomatic_eager of mshnet at size 32 failed: RuntimeError: boom" in md


def test_row_selection():
  kinds = lambda *a: benchmark.row_kinds(benchmark.parse_args(list(a)))
  assert kinds() == ["jax_float32", "torch_idiomatic_eager", "torch_idiomatic_compile"]
  assert kinds("--bf16") == [
    "jax_float32",
    "jax_bfloat16",
    "torch_idiomatic_eager",
    "torch_idiomatic_compile",
  ]
  assert kinds("--rows=torch_idiomatic_eager", "--bf16") == [
    "jax_bfloat16",
    "torch_idiomatic_eager",
  ]
  assert kinds("--no_torch", "--bf16") == ["jax_float32", "jax_bfloat16"]
  for refused in ("--rows=torch_eager", "--rows=torch_reference_eager", "--reference"):
    with pytest.raises(SystemExit):  # the parity reference is not a speed baseline
      benchmark.parse_args([refused])


@pytest.mark.e2e
def test_profile_step_on_two_cpu_devices_with_the_convolution_table(tmp_path):
  """tools.bench.profile_step with --cpu_devices=2 --convs: the traced step is the sharded one
  (its cross-device all-reduces appear among the operations); the convolution table has
  every convolution of the model once per use (one per 4-D kernel of mshnet), the torch
  convolution computes what the JAX one does, and the totals are the count-weighted sums."""
  out = tmp_path / "profile.json"
  _run_tool(
    "profile_step",
    "--model=mshnet",
    "--size=32",
    *TINY_NET,
    "--cpu_devices=2",
    "--steps=1",
    "--convs",
    "--torch_threads=1",
    f"--output={out}",
  )
  result = json.loads(out.read_text())
  kinds = dict(result["per_kind"])
  assert kinds.get("all-reduce", 0) > 0, kinds
  assert math.isclose(sum(kinds.values()), result["op_ms_per_step"], rel_tol=1e-6)
  assert result["title"] == "mshnet train step, batch 4x1x32x32"
  assert _positive(result["wall_ms_per_step"])

  args = benchmark.parse_args(["--model=mshnet", *TINY_NET])
  model = models.create_model(benchmark.model_config(args, "mshnet"))
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 1)))["params"]
  kernels = [x.shape for x in jax.tree.leaves(params) if x.ndim == 4]
  rows = result["convolutions"]
  assert sorted(tuple(r["rhs"]) for r in rows for _ in range(r["count"])) == sorted(kernels)
  assert all(r["lhs"][0] == 4 and r["lhs"][3] == r["rhs"][2] for r in rows)
  assert all(r["max_abs_diff"] < 1e-4 for r in rows), [r["max_abs_diff"] for r in rows]
  assert all(_positive(r["jax_ms"]) and _positive(r["torch_ms"]) for r in rows)
  summary = result["convolution_summary"]
  assert summary["convolutions"] == len(kernels)
  assert summary["torch_threads"] == 1
  for lib in ("jax", "torch"):
    total = sum(r["count"] * r[f"{lib}_ms"] for r in rows)
    assert math.isclose(summary[f"{lib}_ms"], total, rel_tol=1e-9)
  assert math.isclose(
    summary["step_outside_convolutions_ms"],
    result["wall_ms_per_step"] - summary["jax_ms"],
    rel_tol=1e-9,
  )
