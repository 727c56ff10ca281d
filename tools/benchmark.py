"""JAX vs PyTorch-reference speed benchmark (issue #10): same model, batch and input size.

  python tools/benchmark.py                                   # MSHNet size, 256 and 512
  python tools/benchmark.py --sizes=64 --batch_size=2 --channels=8,16,32,64,128 --steps=3
  python tools/benchmark.py --bf16 --torch_compile            # on a GPU

For every input size it measures, on the same device (one device: a GPU when both
JAX and torch see one, else the CPU):

* ``jax float32``: the project's ``train.train_step`` (forward, scale loss 'diff' with
  deep supervision, backward, Adam via ``train.make_optimizer``) jitted as in
  ``train.train_and_evaluate`` (state replicated / batch sharded over a 1-device mesh,
  state donated), and ``train.eval_step`` (fused probabilities, BatchNorm inference).
* ``jax bfloat16`` (``--bf16``): the same with ``config.model.dtype='bfloat16'``.
* ``torch eager``: the PyTorch reference model (``reference_torch``), built
  from the same resolved model config, same loss (``reference_torch.losses.total_loss``),
  ``torch.optim.Adam``; eval under ``torch.no_grad`` in ``model.eval()``.
* ``torch compile`` (``--torch_compile``): forward + loss (and through AOTAutograd the
  backward) under ``torch.compile``; the Adam step stays eager.  Eval model compiled too.

Per row: train and eval images/s over ``--steps`` timed steps after ``--warmup``
steps (each step blocked on: ``jax.block_until_ready`` / ``torch.cuda.synchronize``),
median step time, compile time (first call minus the median steady step; JAX always,
torch only with ``--torch_compile``), peak memory and parameter count.  Peak memory is
``memory_stats()['peak_bytes_in_use']`` of the JAX device / ``torch.cuda.max_memory_allocated``
on a GPU and the process's max RSS (``resource.getrusage``, process-wide: interpreter,
libraries and both train and eval included) on the CPU.  Unless ``--no_isolate``, every
row runs in its own Python process, so memory peaks and allocator state are not shared
between rows (and JAX's GPU preallocation does not starve torch).

Writes ``benchmark.json`` and ``benchmark.md`` to ``--output_dir`` (default
runs/benchmark) with the device name, date, command line and library versions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The PyTorch reference is test-only code (tests/reference_torch), not installed.
sys.path.insert(0, os.path.join(REPO, "tests"))

import numpy as np  # noqa: E402

ROW_KINDS = {
  "jax_float32": ("jax", "float32"),
  "jax_bfloat16": ("jax", "bfloat16"),
  "torch_eager": ("torch", "eager"),
  "torch_compile": ("torch", "compile"),
}


# ----------------------------------------------------------------------------- helpers
def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(t) for t in str(text).replace("(", "").replace(")", "").split(",") if t.strip())


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def max_rss_bytes() -> int:
  """Process max resident set size (Linux reports KiB, macOS bytes)."""
  r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(r if sys.platform == "darwin" else r * 1024)


def model_config(args, dtype: str = "float32"):
  from irstd_jax import default_config
  from irstd_jax import models

  cfg = default_config.model_config()
  cfg.name = args.model
  cfg.channels = _ints(args.channels)
  cfg.blocks = _ints(args.blocks)
  cfg.dtype = dtype
  cfg.deep_supervision = True
  return models.resolve_model_config(cfg)


def loss_config():
  """The paper's loss: scale loss with the diff weight, deep supervision, no warm-up
  (default_config.loss_config has 5 epochs of plain soft IoU first; the benchmark times the
  scale loss itself)."""
  from irstd_jax import default_config

  c = default_config.loss_config()
  c.name, c.scale_weight, c.warm_epochs, c.deep_supervision = "scale", "diff", 0, True
  return c


def make_batch(batch_size: int, size: int, seed: int = 0):
  """NHWC float32 image (N(0,1)) and {0,1} mask with a few small square targets."""
  rs = np.random.RandomState(seed)
  image = rs.randn(batch_size, size, size, 1).astype(np.float32)
  mask = np.zeros((batch_size, size, size, 1), np.float32)
  for b in range(batch_size):
    for _ in range(3):
      s = int(rs.randint(1, max(2, size // 16)))
      y, x = rs.randint(0, size - s, 2)
      mask[b, y : y + s, x : x + s] = 1.0
  return image, mask


def _timed(fn, steps: int, warmup: int, sync):
  """First call (compile) time, then `warmup` calls, then `steps` timed calls, each
  blocked on via `sync(result)`.  Returns (first_s, per-step seconds list)."""
  t0 = time.perf_counter()
  sync(fn())
  first = time.perf_counter() - t0
  for _ in range(warmup):
    sync(fn())
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    sync(fn())
    times.append(time.perf_counter() - t0)
  return first, times


def _summary(first, times, batch_size, compiled: bool):
  med = float(np.median(times))
  return {
    "images_per_s": batch_size * len(times) / float(np.sum(times)),
    "step_ms_median": 1e3 * med,
    "step_ms_min": 1e3 * float(np.min(times)),
    "first_call_s": first,
    # compile time: first call minus a steady step (None when nothing is compiled)
    "compile_s": max(first - med, 0.0) if compiled else None,
  }


# -------------------------------------------------------------------------------- rows
def bench_jax(args, size: int, dtype: str) -> dict:
  import functools

  import jax
  import ml_collections

  from irstd_jax import models
  from irstd_jax import train as jtrain

  device = jax.devices("cpu")[0] if args.device == "cpu" else jax.devices()[0]
  mesh = jtrain.make_mesh([device])
  replicated = jax.NamedSharding(mesh, jax.P())
  data_sharding = jax.NamedSharding(mesh, jax.P("data"))
  cfg = model_config(args, dtype)
  model = models.create_model(cfg)
  tcfg = ml_collections.ConfigDict(
    dict(optimizer="adam", learning_rate=args.lr, schedule="constant", warmup_steps=0)
  )
  tx = jtrain.make_optimizer(tcfg, jtrain.learning_rate_schedule(tcfg, 10**6))
  state = jax.jit(
    functools.partial(jtrain.create_train_state, model=model, tx=tx, image_shape=(size, size)),
    out_shardings=replicated,
  )(jax.random.key(args.seed))
  n_params = int(sum(x.size for x in jax.tree.leaves(state.params)))
  image, mask = make_batch(args.batch_size, size, args.seed)
  batch = jtrain.shard_batch({"image": image, "mask": mask}, data_sharding)
  rng = jax.device_put(jax.random.key(1), replicated)
  p_train = jax.jit(
    functools.partial(jtrain.train_step, loss_config=loss_config(), steps_per_epoch=10**9),
    in_shardings=(replicated, data_sharding, replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=(0,),
  )
  p_eval = jax.jit(
    jtrain.eval_step, in_shardings=(replicated, data_sharding), out_shardings=data_sharding
  )

  holder = {"state": state}

  def train_once():
    holder["state"], out = p_train(holder["state"], batch, rng)
    return holder["state"], out

  losses_seen = []

  def sync_train(res):
    jax.block_until_ready(res)
    losses_seen.append(float(res[1]["loss"]))

  first, times = _timed(train_once, args.steps, args.warmup, sync_train)
  train = _summary(first, times, args.batch_size, True)
  efirst, etimes = _timed(
    lambda: p_eval(holder["state"], batch), args.steps, args.warmup, jax.block_until_ready
  )
  evals = _summary(efirst, etimes, args.batch_size, True)
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    peak, kind = int(stats["peak_bytes_in_use"]), "jax peak_bytes_in_use (device)"
  else:
    peak, kind = max_rss_bytes(), "max RSS (process-wide)"
  return {
    "framework": "jax",
    "variant": dtype,
    "platform": device.platform,
    "device": getattr(device, "device_kind", str(device)),
    "params": n_params,
    "train": train,
    "eval": evals,
    "peak_memory_bytes": peak,
    "peak_memory_kind": kind,
    "final_loss": losses_seen[-1],
    "loss_finite": bool(np.all(np.isfinite(losses_seen))),
  }


def bench_torch(args, size: int, variant: str) -> dict:
  from reference_torch import losses as tl
  from reference_torch import model as tmodel
  import torch

  cuda = torch.cuda.is_available() and args.device != "cpu"
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  dev = torch.device("cuda" if cuda else "cpu")
  torch.manual_seed(args.seed)
  model = tmodel.create_model(model_config(args, "float32")).to(dev)
  n_params = int(sum(p.numel() for p in model.parameters()))
  opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
  lcfg = loss_config()
  image, mask = make_batch(args.batch_size, size, args.seed)
  x = torch.from_numpy(image.transpose(0, 3, 1, 2).copy()).to(dev)
  m = torch.from_numpy(mask.transpose(0, 3, 1, 2).copy()).to(dev)
  if cuda:
    torch.cuda.reset_peak_memory_stats(dev)

  def fwd_loss(x, m):
    y, sides = model(x)
    return tl.total_loss(y, sides, m, lcfg, 0)[0]

  def predict(x):
    return torch.sigmoid(model(x)[0])

  compiled = variant == "compile"
  if compiled:
    fwd_loss = torch.compile(fwd_loss)
    predict = torch.compile(predict)

  def train_once():
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = fwd_loss(x, m)
    loss.backward()
    opt.step()
    return loss

  losses_seen = []

  def sync_train(loss):
    if cuda:
      torch.cuda.synchronize(dev)
    losses_seen.append(float(loss.detach()))

  def eval_once():
    model.eval()
    with torch.no_grad():
      return predict(x)

  def sync(_):
    if cuda:
      torch.cuda.synchronize(dev)

  first, times = _timed(train_once, args.steps, args.warmup, sync_train)
  train = _summary(first, times, args.batch_size, compiled)
  efirst, etimes = _timed(eval_once, args.steps, args.warmup, sync)
  evals = _summary(efirst, etimes, args.batch_size, compiled)
  if cuda:
    peak, kind = int(torch.cuda.max_memory_allocated(dev)), "torch.cuda.max_memory_allocated"
  else:
    peak, kind = max_rss_bytes(), "max RSS (process-wide)"
  return {
    "framework": "torch",
    "variant": variant,
    "platform": "gpu" if cuda else "cpu",
    "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
    "params": n_params,
    "torch_threads": torch.get_num_threads(),
    "train": train,
    "eval": evals,
    "peak_memory_bytes": peak,
    "peak_memory_kind": kind,
    "final_loss": losses_seen[-1],
    "loss_finite": bool(np.all(np.isfinite(losses_seen))),
  }


def run_row_inprocess(args, kind: str, size: int) -> dict:
  framework, variant = ROW_KINDS[kind]
  row = (bench_jax if framework == "jax" else bench_torch)(args, size, variant)
  row.update(kind=kind, size=size, batch_size=args.batch_size)
  return row


def run_row(args, kind: str, size: int, argv: list[str]) -> dict:
  if args.no_isolate:
    return run_row_inprocess(args, kind, size)
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "row.json")
    cmd = [
      sys.executable,
      os.path.abspath(__file__),
      *argv,
      f"--_row={kind}:{size}",
      f"--_row_out={out}",
    ]
    t0 = time.perf_counter()
    env = dict(os.environ)
    if args.device == "cpu":
      env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
      raise RuntimeError(
        f"row {kind} size {size} failed (rc {proc.returncode}):\n"
        f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
      )
    with open(out) as f:
      row = json.load(f)
    row["process_wall_s"] = time.perf_counter() - t0
    return row


# ------------------------------------------------------------------------------ report
def versions() -> dict:
  out = {"python": platform.python_version(), "numpy": np.__version__}
  for name in ("jax", "jaxlib", "flax", "optax", "torch"):
    try:
      mod = __import__(name)
      out[name] = getattr(mod, "__version__", "?")
    except Exception as e:  # noqa: BLE001 -- report, do not fail
      out[name] = f"unavailable ({type(e).__name__})"
  return out


def _fmt(v, spec="{:.1f}"):
  return "-" if v is None else spec.format(v)


def _mib(b):
  return b / 2**20


def markdown(result: dict) -> str:
  meta = result["meta"]
  lines = [
    f"# JAX vs PyTorch benchmark: {meta['model']}",
    "",
    f"- date: {meta['date']}",
    f"- device: {meta['device']} ({meta['platform']}"
    + (f", {meta['cpu_count']} CPU cores" if meta["platform"] == "cpu" else "")
    + ")",
    f"- command: `{meta['command']}`",
    f"- model: {meta['model']}, channels {meta['channels']}, blocks {meta['blocks']}, "
    f"deep supervision, scale loss 'diff', Adam lr {meta['lr']}",
    f"- batch size {meta['batch_size']}, {meta['warmup']} warm-up + {meta['steps']} "
    f"timed steps, every step blocked on",
    "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
    f"- peak memory: {meta['memory_note']}",
    f"- 1-minute load average before / after: {meta['load_average_1min']}",
    "",
  ]
  lines += [
    "| size | row | params | train img/s | train step ms (median) | eval img/s | "
    "eval step ms (median) | peak memory MiB | compile s (train / eval) |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---|",
  ]
  for size_res in result["results"]:
    for row in size_res["rows"]:
      tc, ec = row["train"]["compile_s"], row["eval"]["compile_s"]
      comp = "-" if tc is None else f"{tc:.1f} / {ec:.1f}"
      lines.append(
        f"| {row['size']} | {row['framework']} {row['variant']} | {row['params']:,} | "
        f"{row['train']['images_per_s']:.2f} | {row['train']['step_ms_median']:.1f} | "
        f"{row['eval']['images_per_s']:.2f} | {row['eval']['step_ms_median']:.1f} | "
        f"{_mib(row['peak_memory_bytes']):.0f} | {comp} |"
      )
  lines += [
    "",
    "JAX / PyTorch images/s ratios (> 1: JAX faster):",
    "",
    "| size | JAX row | vs torch row | train ratio | eval ratio |",
    "|---:|---|---|---:|---:|",
  ]
  for size_res in result["results"]:
    for r in size_res["ratios"]:
      lines.append(
        f"| {size_res['size']} | {r['jax']} | {r['torch']} | {r['train']:.2f} | {r['eval']:.2f} |"
      )
  for w in result.get("warnings", []):
    lines.append(f"\nWarning: {w}")
  return "\n".join(lines) + "\n"


def parse_args(argv):
  ap = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  ap.add_argument("--model", default="l1_gp_rotated", help="config.model.name")
  ap.add_argument("--sizes", default="256,512", help="square input sizes, comma separated")
  ap.add_argument("--batch_size", type=int, default=8)
  ap.add_argument("--channels", default="16,32,64,128,256", help="config.model.channels")
  ap.add_argument("--blocks", default="2,2,2,2", help="config.model.blocks")
  ap.add_argument("--steps", type=int, default=20, help="timed steps")
  ap.add_argument("--warmup", type=int, default=2, help="untimed steps after the first call")
  ap.add_argument("--lr", type=float, default=1e-3)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--bf16", action="store_true", help="extra JAX row with model dtype bfloat16")
  ap.add_argument(
    "--torch_compile",
    action="store_true",
    help="extra torch row with torch.compile (meant for GPU)",
  )
  ap.add_argument("--no_torch", action="store_true", help="JAX rows only")
  ap.add_argument(
    "--device",
    default="auto",
    choices=("auto", "cpu"),
    help="cpu: force both frameworks onto the CPU",
  )
  ap.add_argument(
    "--torch_threads",
    type=int,
    default=0,
    help="torch.set_num_threads (0: torch's default, all cores)",
  )
  ap.add_argument(
    "--no_isolate",
    action="store_true",
    help="run all rows in this process (memory peaks then accumulate)",
  )
  ap.add_argument("--output_dir", default=os.path.join("runs", "benchmark"))
  ap.add_argument("--_row", default=None, help=argparse.SUPPRESS)
  ap.add_argument("--_row_out", default=None, help=argparse.SUPPRESS)
  return ap.parse_args(argv)


def main(argv=None) -> dict:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  if args._row:  # child process: one row
    kind, size = args._row.split(":")
    row = run_row_inprocess(args, kind, int(size))
    with open(args._row_out, "w") as f:
      json.dump(row, f)
    return row

  kinds = ["jax_float32"] + (["jax_bfloat16"] if args.bf16 else [])
  if not args.no_torch:
    kinds += ["torch_eager"] + (["torch_compile"] if args.torch_compile else [])
  sizes = _ints(args.sizes)
  results, warnings = [], []
  load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
  result = None
  for size in sizes:
    size_res = {"size": size, "rows": [], "ratios": []}
    results.append(size_res)
    for kind in kinds:
      print(f"[benchmark] size {size}: {kind} ...", flush=True)
      try:
        row = run_row(args, kind, size, argv)
      except Exception as e:  # noqa: BLE001 -- one broken row must not lose the others
        print(f"[benchmark]   FAILED: {e}", flush=True)
        last_line = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        warnings.append(f"row {kind} at size {size} failed: {last_line}")
      else:
        print(
          f"[benchmark]   train {row['train']['images_per_s']:.2f} img/s, "
          f"eval {row['eval']['images_per_s']:.2f} img/s",
          flush=True,
        )
        size_res["rows"].append(row)
        size_res["ratios"] = ratios(size_res["rows"])
      # Rewritten after every row: a run stopped part-way keeps what it measured.
      result = write_report(args, argv, results, warnings, load_start)
  print(markdown(result))
  return result


def ratios(rows: list[dict]) -> list[dict]:
  """JAX / torch images/s for every (JAX row, torch row) pair of one size."""
  out = []
  for j in (r for r in rows if r["framework"] == "jax"):
    for t in (r for r in rows if r["framework"] == "torch"):
      out.append(
        {
          "jax": f"jax {j['variant']}",
          "torch": f"torch {t['variant']}",
          "train": j["train"]["images_per_s"] / t["train"]["images_per_s"],
          "eval": j["eval"]["images_per_s"] / t["eval"]["images_per_s"],
        }
      )
  return out


def write_report(args, argv, results, warnings, load_start) -> dict:
  """benchmark.json and benchmark.md in args.output_dir; returns the result dict."""
  warnings = list(warnings)
  all_rows = [r for s in results for r in s["rows"]]
  platforms = sorted({r["platform"] for r in all_rows})
  if len(platforms) > 1:
    warnings.append(f"rows ran on different platforms {platforms}: not a like-for-like comparison")
  if len({r["params"] for r in all_rows}) > 1:
    warnings.append(
      "JAX and torch parameter counts differ: "
      + ", ".join(f"{r['kind']}={r['params']}" for r in all_rows)
    )
  gpu = next((r for r in all_rows if r["platform"] == "gpu"), None)
  on_cpu = gpu is None
  import multiprocessing

  meta = {
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "command": "python tools/benchmark.py " + " ".join(shlex.quote(a) for a in argv),
    "platform": "cpu" if on_cpu else "gpu",
    "device": cpu_model() if on_cpu else gpu["device"],
    "cpu_model": cpu_model(),
    "cpu_count": multiprocessing.cpu_count(),
    "hostname_platform": platform.platform(),
    "model": args.model,
    "channels": list(_ints(args.channels)),
    "blocks": list(_ints(args.blocks)),
    "batch_size": args.batch_size,
    "sizes": list(_ints(args.sizes)),
    "steps": args.steps,
    "warmup": args.warmup,
    "lr": args.lr,
    "isolated_processes": not args.no_isolate,
    # 1-minute load average before / after: > cpu_count means other jobs shared the CPU
    "load_average_1min": [
      load_start and load_start[0],
      os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    ],
    "memory_note": (
      "process max RSS from resource.getrusage: process-wide (Python, "
      "libraries, data, train and eval), one process per row"
      if on_cpu and not args.no_isolate
      else "process max RSS, process-wide and cumulative over rows (--no_isolate)"
      if on_cpu
      else "JAX: device memory_stats peak_bytes_in_use; torch: "
      "torch.cuda.max_memory_allocated (train and eval, one process per row)"
    ),
    "versions": versions(),
  }
  result = {"meta": meta, "results": results, "warnings": warnings}
  os.makedirs(args.output_dir, exist_ok=True)
  with open(os.path.join(args.output_dir, "benchmark.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(args.output_dir, "benchmark.md"), "w") as f:
    f.write(markdown(result))
  return result


if __name__ == "__main__":
  main()
