"""Speed of the project's JAX train and eval steps against PyTorch (issues #10, #14).

  # the CPU comparison (docs/benchmarks.md): both models, 128 and 256, batch 4; the
  # torch.compile row, minutes of cold compile per row on a small CPU, in a second run
  python -m tools.bench.benchmark --model=mshnet,l1_gp_rotated --sizes=128,256 --batch_size=4 \\
      --steps=3 --warmup=1 --repeats=3 --device=cpu --rows=jax_float32,torch_idiomatic_eager
  # a smoke run
  python -m tools.bench.benchmark --model=mshnet --sizes=32 --channels=4,4,8,8,8 --blocks=1,1,1,1 \\
      --steps=1 --warmup=0 --repeats=1 --settle_s=0
  python -m tools.bench.benchmark --sizes=256,512 --batch_size=8 --bf16     # on a GPU

Rows (``--rows``; the report names each row's implementation):

* ``jax_float32`` -- project JAX: the project's ``train.train_step`` (forward, loss with
  deep supervision, backward, optimizer) jitted as in ``train.train_and_evaluate``
  (state replicated / batch sharded over a 1-device mesh, state donated; with
  ``--cpu_devices=N`` a mesh of N CPU devices, the batch split over them), and
  ``train.eval_step`` (fused probabilities, BatchNorm inference).
* ``jax_bfloat16`` (``--bf16``) -- the same with ``config.model.dtype='bfloat16'``.
* ``torch_idiomatic_eager`` -- idiomatic PyTorch (tools/bench/torch_models.py): the network
  as a PyTorch user writes it (MSHNet's own structure for ``mshnet``, the same style
  for ``l1_gp_rotated``: ``nn.BatchNorm2d``, the attention kernel built once per forward
  from precomputed buffers, ``F.conv2d``); eval under ``torch.inference_mode``.
* ``torch_idiomatic_compile`` -- the same under ``torch.compile`` (default mode): the
  forward + loss (and through AOTAutograd the backward) is one compiled function, the
  eval forward another; the optimizer step stays eager.  The inductor cache is a fresh
  directory per row process, so the compile time is a cold compile, as JAX's.

The parity reference (tests/reference_torch) is not a row: it is the anchor for
correctness, written for exact agreement, not for speed.

The PyTorch rows use the default memory format on the CPU and channels_last on a GPU
(``--channels_last`` overrides), and torch's default thread count (``--torch_threads``).

Training recipe, the same on every row of a model: ``mshnet`` trains as MSHNet's
script does -- scale loss with the 'var' weight (MSHNet's SLS IoU) plus its location
loss (weight 1), deep supervision, Adagrad (lr 0.05); every other model with the
paper's recipe -- scale loss 'diff', deep supervision, Adam (lr 1e-3).  The timed loss
is the post-warm-up one (weighted, with the location term where the recipe has it).

Protocol: rows run one at a time, each in its own Python process (``--no_isolate``:
all in this one), so memory peaks, allocators and thread pools are not shared.  Before
each row the 1-minute load average is read, after waiting up to ``--settle_s`` seconds
for it to fall to the core count (``os.cpu_count()``; the previous row's own threads
keep it up for a while); a row that starts above the core count is marked unreliable
(other jobs shared the CPU).  Inside a row: the first call (compilation, timed), then
``--warmup`` untimed steps, then ``--repeats`` blocks of ``--steps`` timed steps, every
step blocked on (``jax.block_until_ready`` / the loss read back / ``torch.cuda.synchronize``).
Images/s is computed per block; the report gives the median and the spread (min..max)
over the blocks, the median step time, the compile time (first call minus the median
step; JAX always, torch only compiled), peak memory and the parameter count.  Peak
memory is ``memory_stats()['peak_bytes_in_use']`` of the JAX device /
``torch.cuda.max_memory_allocated`` on a GPU, and the process's max RSS
(``resource.getrusage``, process-wide: interpreter, libraries, train and eval) on the CPU.

Writes ``benchmark.json`` and ``benchmark.md`` to ``--output_dir`` (default
runs/benchmark) after every row, with the device, date, command line and versions.
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
import types

import numpy as np

# The repository root: each row's process runs `python -m tools.bench.benchmark` there.
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

IMPLEMENTATIONS = {
  "jax": "project JAX (irstd_jax, jitted train_step / eval_step)",
  "idiomatic": "idiomatic PyTorch (tools/bench/torch_models.py)",
}
# row kind -> (implementation, variant)
ROW_KINDS = {
  "jax_float32": ("jax", "float32"),
  "jax_bfloat16": ("jax", "bfloat16"),
  "torch_idiomatic_eager": ("idiomatic", "eager"),
  "torch_idiomatic_compile": ("idiomatic", "compile"),
}
DEFAULT_ROWS = ("jax_float32", "torch_idiomatic_eager", "torch_idiomatic_compile")

# Training recipe per model name (loss settings of config.loss, optimizer, learning rate).
_PAPER = dict(scale_weight="diff", location_weight=0.0, optimizer="adam", lr=1e-3)
RECIPES = {
  "mshnet": dict(scale_weight="var", location_weight=1.0, optimizer="adagrad", lr=0.05),
}


def recipe(model: str) -> dict:
  return RECIPES.get(model, _PAPER)


# ----------------------------------------------------------------------------- helpers
def _ints(text: str) -> tuple[int, ...]:
  return tuple(int(t) for t in str(text).replace("(", "").replace(")", "").split(",") if t.strip())


def _names(text: str) -> tuple[str, ...]:
  return tuple(t.strip() for t in str(text).split(",") if t.strip())


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def load_average() -> float | None:
  """1-minute load average (None where the OS has none)."""
  return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def wait_for_quiet(cpu_count: int, max_wait_s: float, poll_s: float = 2.0) -> float | None:
  """Waits until the 1-minute load average is <= cpu_count, at most max_wait_s; returns it."""
  deadline = time.monotonic() + max_wait_s
  load = load_average()
  while load is not None and load > cpu_count and time.monotonic() < deadline:
    time.sleep(poll_s)
    load = load_average()
  return load


def max_rss_bytes() -> int:
  """Process max resident set size (Linux reports KiB, macOS bytes)."""
  r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return int(r if sys.platform == "darwin" else r * 1024)


def model_config(args, model: str, dtype: str = "float32"):
  """The resolved project model config of one benchmarked model."""
  from irstd_jax import default_config
  from irstd_jax import models

  cfg = default_config.base_config().model
  cfg.name = model
  cfg.channels = _ints(args.channels)
  cfg.blocks = _ints(args.blocks)
  cfg.dtype = dtype
  cfg.deep_supervision = True
  return models.resolve_model_config(cfg)


def loss_config(model: str):
  """config.loss of the model's recipe, post-warm-up: the scale loss weighted (and the
  location term on) from the first step, since the benchmark times the steady state."""
  from irstd_jax import default_config

  c = default_config.base_config().loss
  r = recipe(model)
  c.name, c.scale_weight, c.location_weight = "scale", r["scale_weight"], r["location_weight"]
  c.warm_epochs, c.location_warm_epochs, c.deep_supervision = 0, 0, True
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


def _timed(fn, steps: int, warmup: int, repeats: int, sync):
  """The first call (compilation) timed, `warmup` untimed calls, then `repeats` blocks of
  `steps` timed calls, each blocked on via `sync(result)`.
  Returns (first call seconds, [per-step seconds of each block])."""
  t0 = time.perf_counter()
  sync(fn())
  first = time.perf_counter() - t0
  for _ in range(warmup):
    sync(fn())
  blocks = []
  for _ in range(repeats):
    times = []
    for _ in range(steps):
      t0 = time.perf_counter()
      sync(fn())
      times.append(time.perf_counter() - t0)
    blocks.append(times)
  return first, blocks


def _summary(first: float, blocks: list[list[float]], batch_size: int, compiled: bool) -> dict:
  per_block = [batch_size * len(t) / float(np.sum(t)) for t in blocks]
  med = float(np.median(np.concatenate(blocks)))
  return {
    "images_per_s": float(np.median(per_block)),  # median over the repeats
    "images_per_s_min": float(np.min(per_block)),
    "images_per_s_max": float(np.max(per_block)),
    "images_per_s_repeats": per_block,
    "step_ms_median": 1e3 * med,
    "step_ms_min": 1e3 * float(np.min(np.concatenate(blocks))),
    "first_call_s": first,
    # compile time: first call minus a steady step (None when nothing is compiled)
    "compile_s": max(first - med, 0.0) if compiled else None,
  }


# -------------------------------------------------------------------------------- rows
def build_jax_steps(args, model_name: str, size: int, dtype: str) -> types.SimpleNamespace:
  """The project's jitted train and eval steps as `train.train_and_evaluate` builds them
  (a mesh of one device, or of --cpu_devices CPU devices; state replicated and donated,
  batch sharded), with their state, batch and rng: what bench_jax times and
  tools.bench.profile_step traces."""
  import functools

  import jax

  from irstd_jax import default_config
  from irstd_jax import models
  from irstd_jax import optim
  from irstd_jax import train as jtrain

  if args.cpu_devices != 1 and jax.config.jax_num_cpu_devices != args.cpu_devices:
    # Before any backend exists (one row per process); --no_isolate rows share the count.
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
  if args.device == "cpu" or jax.default_backend() == "cpu":
    devices = jax.devices("cpu")[: args.cpu_devices]
  else:
    devices = jax.devices()[:1]
  if args.batch_size % len(devices):
    raise SystemExit(f"--batch_size={args.batch_size} does not split over {len(devices)} devices")
  device = devices[0]
  mesh = jtrain.make_mesh(devices)
  replicated = jax.NamedSharding(mesh, jax.P())
  data_sharding = jax.NamedSharding(mesh, jax.P("data"))
  model = models.create_model(model_config(args, model_name, dtype))
  r = recipe(model_name)
  tcfg = default_config.base_config().train
  tcfg.optimizer, tcfg.learning_rate = r["optimizer"], r["lr"]
  tcfg.schedule, tcfg.warmup_steps = "constant", 0
  tx = optim.make_optimizer(tcfg, optim.learning_rate_schedule(tcfg, 10**6))
  state = jax.jit(
    functools.partial(jtrain.create_train_state, model=model, tx=tx, image_shape=(size, size)),
    out_shardings=replicated,
  )(jax.random.key(args.seed))
  image, mask = make_batch(args.batch_size, size, args.seed)
  jit_train = jax.jit(
    functools.partial(
      jtrain.train_step, loss_config=loss_config(model_name), steps_per_epoch=10**9
    ),
    in_shardings=(replicated, data_sharding, replicated),
    out_shardings=(replicated, replicated),
    donate_argnums=(0,),
  )
  jit_eval = jax.jit(
    jtrain.eval_step, in_shardings=(replicated, data_sharding), out_shardings=data_sharding
  )
  return types.SimpleNamespace(
    device=device,
    num_devices=len(devices),
    state=state,
    batch=jtrain.shard_batch({"image": image, "mask": mask}, data_sharding),
    rng=jax.device_put(jax.random.key(1), replicated),
    train_step=jit_train,
    eval_step=jit_eval,
  )


def bench_jax(args, model_name: str, size: int, dtype: str) -> dict:
  import jax

  # Cold compiles, like torch.compile's fresh cache: never read a persistent JAX cache.
  jax.config.update("jax_enable_compilation_cache", False)
  steps = build_jax_steps(args, model_name, size, dtype)
  device, state, batch, rng = steps.device, steps.state, steps.batch, steps.rng
  jit_train, jit_eval = steps.train_step, steps.eval_step
  n_params = int(sum(x.size for x in jax.tree.leaves(state.params)))

  holder = {"state": state}

  def train_once():
    holder["state"], out = jit_train(holder["state"], batch, rng)
    return holder["state"], out

  losses_seen = []

  def sync_train(res):
    jax.block_until_ready(res)
    losses_seen.append(float(res[1]["loss"]))

  first, blocks = _timed(train_once, args.steps, args.warmup, args.repeats, sync_train)
  train = _summary(first, blocks, args.batch_size, True)
  efirst, eblocks = _timed(
    lambda: jit_eval(holder["state"], batch),
    args.steps,
    args.warmup,
    args.repeats,
    jax.block_until_ready,
  )
  evals = _summary(efirst, eblocks, args.batch_size, True)
  stats = device.memory_stats() if device.platform != "cpu" else None
  if stats and "peak_bytes_in_use" in stats:
    peak, kind = int(stats["peak_bytes_in_use"]), "jax peak_bytes_in_use (device)"
  else:
    peak, kind = max_rss_bytes(), "max RSS (process-wide)"
  return {
    "platform": device.platform,
    "device": getattr(device, "device_kind", str(device)),
    "params": n_params,
    "threads": None,
    "devices": steps.num_devices,
    "memory_format": "NHWC (XLA's choice)",
    "train": train,
    "eval": evals,
    "peak_memory_bytes": peak,
    "peak_memory_kind": kind,
    "final_loss": losses_seen[-1],
    "loss_finite": bool(np.all(np.isfinite(losses_seen))),
  }


def bench_torch(args, model_name: str, size: int, variant: str) -> dict:
  """The idiomatic PyTorch row (tools/bench/torch_models.py), eager or compiled."""
  # torch is imported here, not at the top: tools.analysis.ablate imports this module for
  # cpu_model() and should not pay for torch.
  import torch

  from tools.bench import torch_models as tm

  cuda = torch.cuda.is_available() and args.device != "cpu"
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  dev = torch.device("cuda" if cuda else "cpu")
  torch.manual_seed(args.seed)
  cfg = model_config(args, model_name)
  lcfg = loss_config(model_name)
  model = tm.create_model(cfg)
  kwargs = tm.loss_kwargs(lcfg)
  loss_of = lambda y, sides, m: tm.deep_supervision_loss(y, sides, m, **kwargs)
  channels_last = args.channels_last == "on" or (args.channels_last == "auto" and cuda)
  fmt = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(dev, memory_format=fmt)
  n_params = int(sum(p.numel() for p in model.parameters()))
  r = recipe(model_name)
  optimizer = {"adam": torch.optim.Adam, "adagrad": torch.optim.Adagrad}[r["optimizer"]]
  opt = optimizer(model.parameters(), lr=r["lr"])
  image, mask = make_batch(args.batch_size, size, args.seed)
  x = torch.from_numpy(image.transpose(0, 3, 1, 2).copy()).to(dev, memory_format=fmt)
  m = torch.from_numpy(mask.transpose(0, 3, 1, 2).copy()).to(dev)
  if cuda:
    torch.cuda.reset_peak_memory_stats(dev)

  def train_loss(x, m):
    logits, sides = model(x)
    return loss_of(logits, sides, m)

  def predict(x):
    return torch.sigmoid(model(x)[0])

  compiled = variant == "compile"
  if compiled:
    train_loss = torch.compile(train_loss)
    predict = torch.compile(predict)

  def train_once():
    model.train()
    opt.zero_grad(set_to_none=True)
    loss = train_loss(x, m)
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
    with torch.inference_mode():
      return predict(x)

  def sync(_):
    if cuda:
      torch.cuda.synchronize(dev)

  first, blocks = _timed(train_once, args.steps, args.warmup, args.repeats, sync_train)
  train = _summary(first, blocks, args.batch_size, compiled)
  efirst, eblocks = _timed(eval_once, args.steps, args.warmup, args.repeats, sync)
  evals = _summary(efirst, eblocks, args.batch_size, compiled)
  if cuda:
    peak, kind = int(torch.cuda.max_memory_allocated(dev)), "torch.cuda.max_memory_allocated"
  else:
    peak, kind = max_rss_bytes(), "max RSS (process-wide)"
  return {
    "platform": "gpu" if cuda else "cpu",
    "device": torch.cuda.get_device_name(dev) if cuda else "cpu",
    "params": n_params,
    "threads": torch.get_num_threads(),
    "memory_format": "channels_last" if channels_last else "contiguous (NCHW)",
    "train": train,
    "eval": evals,
    "peak_memory_bytes": peak,
    "peak_memory_kind": kind,
    "final_loss": losses_seen[-1],
    "loss_finite": bool(np.all(np.isfinite(losses_seen))),
  }


def run_row_inprocess(args, kind: str, model_name: str, size: int) -> dict:
  implementation, variant = ROW_KINDS[kind]
  if implementation == "jax":
    row = bench_jax(args, model_name, size, variant)
  else:
    row = bench_torch(args, model_name, size, variant)
  r = recipe(model_name)
  row.update(
    kind=kind,
    implementation=IMPLEMENTATIONS[implementation],
    framework="jax" if implementation == "jax" else "torch",
    variant=variant,
    model=model_name,
    size=size,
    batch_size=args.batch_size,
    recipe=f"scale loss '{r['scale_weight']}'"
    + (f" + location x{r['location_weight']:g}" if r["location_weight"] else "")
    + f", deep supervision, {r['optimizer']} lr {r['lr']:g}",
    load_average_1min_after=load_average(),
  )
  return row


def run_row(args, kind: str, model_name: str, size: int, argv: list[str]) -> dict:
  if args.no_isolate:
    return run_row_inprocess(args, kind, model_name, size)
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, "row.json")
    cmd = [
      sys.executable,
      "-m",
      "tools.bench.benchmark",
      *argv,
      f"--_row={kind}:{model_name}:{size}",
      f"--_row_out={out}",
    ]
    t0 = time.perf_counter()
    # A fresh inductor cache per row: torch.compile's compile time is then a cold
    # compile, like JAX's (no persistent compilation cache is configured for JAX here).
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor"))
    if args.device == "cpu":
      env.update(JAX_PLATFORMS="cpu", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if proc.returncode != 0:
      raise RuntimeError(
        f"row {kind} {model_name} size {size} failed (rc {proc.returncode}):\n"
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


def _mib(b):
  return b / 2**20


def _rate(phase: dict) -> str:
  return (
    f"{phase['images_per_s']:.2f} ({phase['images_per_s_min']:.2f}.."
    f"{phase['images_per_s_max']:.2f})"
  )


def _row_name(row: dict) -> str:
  n, devices = row.get("threads"), row.get("devices") or 1
  if n:
    return f"{row['kind']} ({n} thread{'s' if n != 1 else ''})"
  return f"{row['kind']} ({devices} {row['platform']} devices)" if devices > 1 else row["kind"]


def markdown(result: dict) -> str:
  meta = result["meta"]
  lines = [
    "# JAX vs PyTorch benchmark",
    "",
    f"- date: {meta['date']}",
    f"- device: {meta['device']} ({meta['platform']}, {meta['cpu_count']} CPU cores)",
    f"- command: `{meta['command']}`",
    f"- models: {', '.join(meta['models'])}; channels {meta['channels']}, blocks "
    f"{meta['blocks']}; batch size {meta['batch_size']}",
    f"- protocol: each row {'in its own process' if meta['isolated_processes'] else 'in one process'}"
    f", one at a time; first call (compile) + {meta['warmup']} warm-up steps, then "
    f"{meta['repeats']} repeats of {meta['steps']} timed steps, every step blocked on; "
    "img/s: median (min..max) over the repeats",
    f"- a row is unreliable when the 1-minute load average before it exceeds the "
    f"{meta['cpu_count']} cores (waited up to {meta['settle_s']:g} s for it to settle)",
    "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
    f"- peak memory: {meta['memory_note']}",
    "",
    "Implementations:",
    "",
  ]
  lines += [f"- `{k}`: {IMPLEMENTATIONS[ROW_KINDS[k][0]]}, {ROW_KINDS[k][1]}" for k in meta["rows"]]
  lines += ["", "Training recipes:", ""]
  seen = {}
  for group in result["results"]:
    for row in group["rows"]:
      seen.setdefault(row["model"], row["recipe"])
  lines += [f"- `{m}`: {r}" for m, r in seen.items()]
  lines += [
    "",
    "| model | size | row | params | train img/s | train step ms (median) | eval img/s | "
    "eval step ms (median) | peak memory MiB | compile s (train / eval) | load 1 min before | "
    "reliable |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
  ]
  for group in result["results"]:
    for row in group["rows"]:
      tc, ec = row["train"]["compile_s"], row["eval"]["compile_s"]
      comp = "-" if tc is None else f"{tc:.1f} / {ec:.1f}"
      load = row.get("load_average_1min_before")
      lines.append(
        f"| {row['model']} | {row['size']} | {_row_name(row)} | {row['params']:,} | "
        f"{_rate(row['train'])} | {row['train']['step_ms_median']:.1f} | "
        f"{_rate(row['eval'])} | {row['eval']['step_ms_median']:.1f} | "
        f"{_mib(row['peak_memory_bytes']):.0f} | {comp} | "
        f"{'-' if load is None else f'{load:.2f}'} | "
        f"{'UNRELIABLE' if row.get('unreliable') else 'yes'} |"
      )
  lines += [
    "",
    "JAX / PyTorch images/s ratios (medians; > 1: JAX faster):",
    "",
    "| model | size | JAX row | vs torch row | train ratio | eval ratio |",
    "|---|---:|---|---|---:|---:|",
  ]
  for group in result["results"]:
    for r in group["ratios"]:
      lines.append(
        f"| {group['model']} | {group['size']} | {r['jax']} | {r['torch']} | "
        f"{r['train']:.2f} | {r['eval']:.2f} |"
      )
  for w in result.get("warnings", []):
    lines.append(f"\nWarning: {w}")
  return "\n".join(lines) + "\n"


def add_step_arguments(ap: argparse.ArgumentParser, device_default: str) -> None:
  """The arguments `build_jax_steps` reads, for this tool and tools.bench.profile_step."""
  ap.add_argument("--batch_size", type=int, default=4)
  ap.add_argument("--channels", default="16,32,64,128,256", help="config.model.channels")
  ap.add_argument("--blocks", default="2,2,2,2", help="config.model.blocks")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument(
    "--device",
    default=device_default,
    choices=("auto", "cpu"),
    help="cpu: force both frameworks onto the CPU",
  )
  ap.add_argument(
    "--cpu_devices",
    type=int,
    default=1,
    help="JAX on the CPU: a mesh of this many CPU devices (jax_num_cpu_devices), the batch "
    "split over them as train.py splits it over a mesh; 1: one device",
  )


def parse_args(argv):
  ap = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  ap.add_argument(
    "--model", default="mshnet,l1_gp_rotated", help="config.model.name, comma separated"
  )
  ap.add_argument("--sizes", default="128,256", help="square input sizes, comma separated")
  add_step_arguments(ap, device_default="auto")
  ap.add_argument(
    "--rows", default=",".join(DEFAULT_ROWS), help=f"row kinds, comma separated: {list(ROW_KINDS)}"
  )
  ap.add_argument("--steps", type=int, default=5, help="timed steps per repeat")
  ap.add_argument("--warmup", type=int, default=1, help="untimed steps after the first call")
  ap.add_argument("--repeats", type=int, default=3, help="timed blocks of --steps steps")
  ap.add_argument(
    "--settle_s",
    type=float,
    default=60.0,
    help="before each row, wait up to this long for the load average to reach the core count",
  )
  ap.add_argument("--bf16", action="store_true", help="add the jax_bfloat16 row")
  ap.add_argument("--no_torch", action="store_true", help="JAX rows only")
  ap.add_argument(
    "--torch_threads",
    type=int,
    default=0,
    help="torch.set_num_threads (0: torch's default, all cores)",
  )
  ap.add_argument(
    "--channels_last",
    default="auto",
    choices=("auto", "on", "off"),
    help="memory format of the idiomatic torch rows (auto: channels_last on a GPU only)",
  )
  ap.add_argument(
    "--no_isolate",
    action="store_true",
    help="run all rows in this process (memory peaks then accumulate)",
  )
  ap.add_argument("--output_dir", default=os.path.join("runs", "benchmark"))
  ap.add_argument("--_row", default=None, help=argparse.SUPPRESS)
  ap.add_argument("--_row_out", default=None, help=argparse.SUPPRESS)
  args = ap.parse_args(argv)
  unknown = set(_names(args.rows)) - set(ROW_KINDS)
  if unknown:
    ap.error(f"unknown --rows {sorted(unknown)}; choose from {list(ROW_KINDS)}")
  return args


def row_kinds(args) -> list[str]:
  kinds = list(_names(args.rows))
  if args.bf16 and "jax_bfloat16" not in kinds:
    kinds.insert(1 if "jax_float32" in kinds else 0, "jax_bfloat16")
  if args.no_torch:
    kinds = [k for k in kinds if ROW_KINDS[k][0] == "jax"]
  return kinds


def main(argv=None) -> dict:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  if args._row:  # child process: one row
    kind, model_name, size = args._row.split(":")
    row = run_row_inprocess(args, kind, model_name, int(size))
    with open(args._row_out, "w") as f:
      json.dump(row, f)
    return row

  kinds = row_kinds(args)
  cpu_count = os.cpu_count() or 1
  results, warnings = [], []
  result = None
  for model_name in _names(args.model):
    for size in _ints(args.sizes):
      group = {"model": model_name, "size": size, "rows": [], "ratios": []}
      results.append(group)
      for kind in kinds:
        load = wait_for_quiet(cpu_count, args.settle_s)
        print(f"[benchmark] {model_name} size {size}: {kind} (load {load}) ...", flush=True)
        try:
          row = run_row(args, kind, model_name, size, argv)
        except Exception as e:  # noqa: BLE001 -- one broken row must not lose the others
          print(f"[benchmark]   FAILED: {e}", flush=True)
          last_line = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
          warnings.append(f"row {kind} of {model_name} at size {size} failed: {last_line}")
        else:
          row["load_average_1min_before"] = load
          row["cpu_count"] = cpu_count
          row["unreliable"] = load is not None and load > cpu_count
          print(
            f"[benchmark]   train {_rate(row['train'])} img/s, eval {_rate(row['eval'])} img/s"
            + (" UNRELIABLE" if row["unreliable"] else ""),
            flush=True,
          )
          group["rows"].append(row)
          group["ratios"] = ratios(group["rows"])
        # Rewritten after every row: a run stopped part-way keeps what it measured.
        result = write_report(args, argv, kinds, results, warnings)
  print(markdown(result))
  return result


def ratios(rows: list[dict]) -> list[dict]:
  """JAX / torch median images/s for every (JAX row, torch row) pair of one model and size."""
  out = []
  for j in (r for r in rows if r["framework"] == "jax"):
    for t in (r for r in rows if r["framework"] == "torch"):
      out.append(
        {
          "jax": _row_name(j),
          "torch": _row_name(t),
          "train": j["train"]["images_per_s"] / t["train"]["images_per_s"],
          "eval": j["eval"]["images_per_s"] / t["eval"]["images_per_s"],
        }
      )
  return out


def write_report(args, argv, kinds, results, warnings) -> dict:
  """benchmark.json and benchmark.md in args.output_dir; returns the result dict."""
  warnings = list(warnings)
  all_rows = [r for g in results for r in g["rows"]]
  platforms = sorted({r["platform"] for r in all_rows})
  if len(platforms) > 1:
    warnings.append(f"rows ran on different platforms {platforms}: not a like-for-like comparison")
  for g in results:
    if len({r["params"] for r in g["rows"]}) > 1:
      warnings.append(
        f"{g['model']} at {g['size']}: parameter counts differ: "
        + ", ".join(f"{r['kind']}={r['params']}" for r in g["rows"])
      )
    for r in g["rows"]:
      if r.get("unreliable"):
        warnings.append(
          f"{g['model']} at {g['size']}, {r['kind']}: unreliable, the 1-minute load average "
          f"before it was {r['load_average_1min_before']:.2f} > {r['cpu_count']} cores"
        )
  gpu = next((r for r in all_rows if r["platform"] == "gpu"), None)
  on_cpu = gpu is None
  meta = {
    "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    "command": "python -m tools.bench.benchmark " + " ".join(shlex.quote(a) for a in argv),
    "platform": "cpu" if on_cpu else "gpu",
    "device": cpu_model() if on_cpu else gpu["device"],
    "cpu_model": cpu_model(),
    "cpu_count": os.cpu_count(),
    "hostname_platform": platform.platform(),
    "models": list(_names(args.model)),
    "rows": kinds,
    "channels": list(_ints(args.channels)),
    "blocks": list(_ints(args.blocks)),
    "batch_size": args.batch_size,
    "sizes": list(_ints(args.sizes)),
    "steps": args.steps,
    "warmup": args.warmup,
    "repeats": args.repeats,
    "settle_s": args.settle_s,
    "isolated_processes": not args.no_isolate,
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
