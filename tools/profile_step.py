"""Where the time of one jitted train (or eval) step goes, per XLA operation.

  python tools/profile_step.py --model=mshnet --size=128 [--batch_size=4] [--steps=5]
      [--what=train|eval] [--top=15] [--cpu_devices=2] [--output=runs/profile/m.json]

Builds the step exactly as tools/benchmark.py does (same model config, recipe, loss and
batch), compiles and warms it up, then traces `--steps` steps with `jax.profiler` and
sums the trace's events (of every device: `--cpu_devices=2` splits the batch over two
CPU devices as the benchmark does) by XLA operation (the names of the HLO instructions
XLA:CPU runs, e.g. `convolution.12`, `fusion.3`) and by operation kind (the name without
its number). Prints both tables (milliseconds per step and share of the step) and writes
them as JSON. Run it on an idle machine: the numbers are wall time.
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

import benchmark  # sibling tool: the benchmark's model, recipe, loss and batch
import jax


def build_step(args):
  """A no-argument callable running one step as tools/benchmark.py times it."""
  steps = benchmark.build_jax_steps(args, args.model, args.size, "float32")
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


def main(argv=None) -> dict:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--model", default="mshnet")
  ap.add_argument("--size", type=int, default=128)
  benchmark.add_step_arguments(ap, device_default="cpu")
  ap.add_argument("--what", choices=("train", "eval"), default="train")
  ap.add_argument("--steps", type=int, default=5, help="traced steps")
  ap.add_argument("--top", type=int, default=15)
  ap.add_argument("--output", default="")
  args = ap.parse_args(argv)

  step = build_step(args)
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
  if args.output:
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main()
