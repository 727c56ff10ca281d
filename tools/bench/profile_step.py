"""Where the time of one jitted train (or eval) step goes, per XLA operation.

  python -m tools.bench.profile_step --model=mshnet --size=128 [--batch_size=4] [--steps=5]
      [--what=train|eval] [--top=15] [--cpu_devices=2] [--convs [--torch_threads=1]]
      [--output=runs/profile/m.json]

Builds the step exactly as tools.bench.benchmark does (same model config, recipe, loss and
batch), compiles and warms it up, then traces `--steps` steps with `jax.profiler` and
sums the trace's events (of every device: `--cpu_devices=2` splits the batch over two
CPU devices as the benchmark does) by XLA operation (the names of the HLO instructions
XLA:CPU runs, e.g. `convolution.12`, `fusion.3`) and by operation kind (the name without
its number). Prints both tables (milliseconds per step and share of the step) and writes
them as JSON. Run it on an idle machine: the numbers are wall time.

`--convs` adds the convolution table: every convolution of the model's training forward
(read from its jaxpr, one row per distinct shape and the number of times the step runs
it), timed one at a time with its backward (input and kernel gradients) as a jitted JAX
function and as PyTorch's `F.conv2d` + `backward` at the same shapes (NCHW; torch's
default threads, or `--torch_threads`), after checking that both compute the same
output. Weighted by their counts, the two totals say how much of the step's time the
convolution kernels alone explain, and what the step spends outside them.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile
import time

import jax
import numpy as np

from tools.bench import benchmark  # the benchmark's model, recipe, loss and batch


def build_step(args, steps):
  """A no-argument callable running one step of `steps` (`benchmark.build_jax_steps`)
  as tools.bench.benchmark times it."""
  if args.what == "eval":
    return lambda: steps.eval_step(steps.state, steps.batch)
  holder = {"state": steps.state}

  def run():
    holder["state"], out = steps.train_step(holder["state"], steps.batch, steps.rng)
    return out

  return run


def trace_events(trace_dir: str) -> list[dict]:
  """The complete ('X') events of the perfetto trace jax.profiler wrote."""
  paths = glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
  if not paths:
    raise FileNotFoundError(f"no perfetto_trace.json.gz under {trace_dir}")
  with gzip.open(paths[0], "rt") as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  return [e for e in events if e.get("ph") == "X" and "dur" in e]


def op_tables(events: list[dict], steps: int) -> tuple[list, list, float]:
  """Per-operation and per-kind totals (ms per step) of the XLA operations in `events`,
  and the total wall time of the traced steps (ms per step)."""
  # XLA:CPU operation events carry the HLO instruction name: lower case, dotted number.
  is_op = re.compile(r"^[a-z][a-z0-9_-]*(\.\d+)*$")
  per_op = collections.Counter()
  for e in events:
    name = e.get("name", "")
    if is_op.match(name):
      per_op[name] += e["dur"] / 1e3 / steps
  per_kind = collections.Counter()
  for name, ms in per_op.items():
    per_kind[name.split(".")[0]] += ms
  return per_op.most_common(), per_kind.most_common(), sum(per_op.values())


def _subjaxprs(eqn):
  for value in eqn.params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if hasattr(item, "eqns"):
        yield item
      elif hasattr(item, "jaxpr") and hasattr(item.jaxpr, "eqns"):
        yield item.jaxpr


def step_convolutions(steps) -> list[dict]:
  """The convolutions of the training forward of `steps` (`benchmark.build_jax_steps`;
  the train step runs each once forward and once per gradient), one dict per distinct
  shape: lhs (N, H, W, C) and rhs (kh, kw, C/groups, O) shapes, strides, padding,
  dilations, groups, and `count`, the times the forward runs it. Raises on a layout other
  than NHWC / HWIO, which the torch side would not mirror."""
  state = steps.state

  def forward(params, image):
    variables = {"params": params, "batch_stats": state.batch_stats}
    return state.apply_fn(variables, image, train=True, mutable=["batch_stats"])

  found = collections.Counter()

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "conv_general_dilated":
        p, lhs, rhs = eqn.params, eqn.invars[0].aval.shape, eqn.invars[1].aval.shape
        nhwc = jax.lax.conv_dimension_numbers(lhs, rhs, ("NHWC", "HWIO", "NHWC"))
        if p["dimension_numbers"] != nhwc or any(d != 1 for d in p["lhs_dilation"]):
          raise ValueError(f"convolution {lhs} * {rhs}: {p['dimension_numbers']} not NHWC/HWIO")
        key = (
          tuple(lhs),
          tuple(rhs),
          tuple(p["window_strides"]),
          tuple(tuple(pad) for pad in p["padding"]),
          tuple(p["rhs_dilation"]),
          p["feature_group_count"],
        )
        found[key] += 1
      for sub in _subjaxprs(eqn):
        walk(sub)

  walk(jax.make_jaxpr(forward)(state.params, steps.batch["image"]).jaxpr)
  names = ("lhs", "rhs", "strides", "padding", "dilation", "groups")
  return [dict(zip(names, key), count=n) for key, n in found.most_common()]


def _median_ms(fn, repeats: int, sync) -> float:
  """Median ms of `repeats` calls of `fn` after a first (compiling) and a warm-up call."""
  _, (times,) = benchmark._timed(fn, steps=repeats, warmup=1, repeats=1, sync=sync)
  return float(np.median(times)) * 1e3


def time_convolutions(convs: list[dict], repeats: int = 7, torch_threads: int = 0) -> list[dict]:
  """Each convolution forward + backward (input and kernel gradients), median ms, in JAX
  (one jitted function) and in PyTorch (F.conv2d, then backward), on random data; all
  JAX rows first, then all torch rows, so neither library's idle threads overlap the
  other's timing. `max_abs_diff`: the two forwards' largest difference. `torch_threads`:
  torch.set_num_threads (0: torch's default, all cores)."""
  import torch
  import torch.nn.functional as F

  if torch_threads:
    torch.set_num_threads(torch_threads)

  rng = np.random.default_rng(0)
  rows = []
  for conv in convs:
    x = rng.standard_normal(conv["lhs"], np.float32)
    w = rng.standard_normal(conv["rhs"], np.float32) / np.float32(np.prod(conv["rhs"][:3]) ** 0.5)

    def apply(x, w, conv=conv):
      return jax.lax.conv_general_dilated(
        x,
        w,
        conv["strides"],
        conv["padding"],
        rhs_dilation=conv["dilation"],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=conv["groups"],
      )

    g = rng.standard_normal(jax.eval_shape(apply, x, w).shape, np.float32)

    @jax.jit
    def forward_backward(x, w, g, apply=apply):
      out, vjp = jax.vjp(apply, x, w)
      return out, *vjp(g)

    xj, wj, gj = jax.device_put((x, w, g))
    rows.append(dict(conv, _data=(x, w, g), jax_out=np.asarray(forward_backward(xj, wj, gj)[0])))
    rows[-1]["jax_ms"] = _median_ms(
      lambda f=forward_backward, a=(xj, wj, gj): f(*a), repeats, jax.block_until_ready
    )
  for row in rows:
    x, w, g = row.pop("_data")
    pads = row["padding"]
    if any(lo != hi for lo, hi in pads):
      raise ValueError(f"convolution {row['lhs']} * {row['rhs']}: asymmetric padding {pads}")
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_(True)
    gt = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())
    kwargs = dict(
      stride=row["strides"],
      padding=tuple(lo for lo, _ in pads),
      dilation=row["dilation"],
      groups=row["groups"],
    )

    def forward_backward_torch(xt=xt, wt=wt, gt=gt, kwargs=kwargs):
      xt.grad = wt.grad = None
      out = F.conv2d(xt, wt, **kwargs)
      out.backward(gt)
      return out

    out = forward_backward_torch().detach().numpy().transpose(0, 2, 3, 1)
    row["max_abs_diff"] = float(np.max(np.abs(out - row.pop("jax_out"))))
    row["torch_ms"] = _median_ms(forward_backward_torch, repeats, sync=lambda out: out)
  return rows


def conv_summary(rows: list[dict], wall_ms: float) -> dict:
  """Count-weighted totals of `time_convolutions` rows beside the step's wall time."""
  jax_ms = sum(r["count"] * r["jax_ms"] for r in rows)
  torch_ms = sum(r["count"] * r["torch_ms"] for r in rows)
  return {
    "convolutions": sum(r["count"] for r in rows),
    "jax_ms": jax_ms,
    "torch_ms": torch_ms,
    "jax_over_torch": jax_ms / torch_ms,
    "step_wall_ms": wall_ms,
    "step_outside_convolutions_ms": wall_ms - jax_ms,
  }


def print_convs(rows: list[dict], summary: dict) -> None:
  print(f"\n{'input (N,H,W,C)':<20}{'kernel (kh,kw,I,O)':<20}{'n':>3}{'jax ms':>9}{'torch ms':>9}")
  for r in rows:
    print(
      f"{str(r['lhs']):<20}{str(r['rhs']):<20}{r['count']:>3}"
      f"{r['jax_ms']:>9.2f}{r['torch_ms']:>9.2f}"
    )
  print(
    f"{summary['convolutions']} convolutions, forward + backward, one at a time: JAX "
    f"{summary['jax_ms']:.1f} ms, PyTorch {summary['torch_ms']:.1f} ms per step "
    f"({summary['jax_over_torch']:.2f}x); the JAX step outside them: "
    f"{summary['step_outside_convolutions_ms']:.1f} ms of {summary['step_wall_ms']:.1f}"
  )


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--model", default="mshnet")
  ap.add_argument("--size", type=int, default=128)
  benchmark.add_step_arguments(ap, device_default="cpu")
  ap.add_argument("--what", choices=("train", "eval"), default="train")
  ap.add_argument("--steps", type=int, default=5, help="traced steps")
  ap.add_argument("--top", type=int, default=15)
  ap.add_argument("--convs", action="store_true", help="add the convolution table (needs torch)")
  ap.add_argument(
    "--torch_threads", type=int, default=0, help="--convs: torch.set_num_threads (0: default)"
  )
  ap.add_argument("--output", default="")
  args = ap.parse_args(argv)
  if args.convs and args.what != "train":
    ap.error("--convs times the training convolutions: use it with --what=train")

  steps = benchmark.build_jax_steps(args, args.model, args.size, "float32")
  convs = step_convolutions(steps) if args.convs else None  # before the state is donated
  step = build_step(args, steps)
  jax.block_until_ready(step())  # compile
  for _ in range(2):
    jax.block_until_ready(step())
  t0 = time.perf_counter()
  for _ in range(args.steps):
    jax.block_until_ready(step())
  wall_ms = (time.perf_counter() - t0) * 1e3 / args.steps
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
      for _ in range(args.steps):
        jax.block_until_ready(step())
    events = trace_events(trace_dir)
  per_op, per_kind, op_ms = op_tables(events, args.steps)
  title = f"{args.model} {args.what} step, batch {args.batch_size}x1x{args.size}x{args.size}"
  print(f"{title}: {wall_ms:.1f} ms per step untraced; XLA operations {op_ms:.1f} ms per step")
  print(f"{'operation kind':<28}{'ms/step':>10}{'share':>8}")
  for name, ms in per_kind[: args.top]:
    print(f"{name:<28}{ms:>10.2f}{100 * ms / op_ms:>7.1f}%")
  print(f"\n{'operation':<28}{'ms/step':>10}{'share':>8}")
  for name, ms in per_op[: args.top]:
    print(f"{name:<28}{ms:>10.2f}{100 * ms / op_ms:>7.1f}%")
  result = {
    "title": title,
    "wall_ms_per_step": wall_ms,
    "op_ms_per_step": op_ms,
    "per_kind": per_kind,
    "per_op": per_op[: 4 * args.top],
    "load_average": os.getloadavg()[0],
    "jax": jax.__version__,
  }
  if args.convs:
    import torch  # a test-only dependency: only this table needs it

    rows = time_convolutions(convs, torch_threads=args.torch_threads)
    result["convolutions"] = rows
    result["convolution_summary"] = conv_summary(rows, wall_ms)
    result["convolution_summary"]["torch_threads"] = torch.get_num_threads()
    print_convs(rows, result["convolution_summary"])
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
