"""Does a recipe train reliably? Seeds x CPU code paths, each held to a floor.

    python -m tools.analysis.robustness --output_dir=runs/robustness    # the demo config
    python -m tools.analysis.robustness --output_dir=runs/robustness_old --config.model.output_prior=0

Trains `--config` (default the demo, `configs/synthetic.py`, memory source) once per seed
and per XLA:CPU code path, each an ordinary `python -m irstd_jax.main` run in
`OUTPUT_DIR/<path>/seed<k>/`. A seeded run is bit for bit only on one kind of CPU; the
code paths make one machine stand in for others (their XLA_FLAGS are in CODE_PATHS): the
default, and a path without AVX2/FMA whose convolutions go to Eigen instead of YNN, which
rounds differently and so follows another trajectory.

Each finished run is held to the floor: test mIoU >= --min_miou and no test image
predicted positive on more than a tenth of its pixels (`num_saturated`, metrics.py). After
every run `OUTPUT_DIR/results.md` and `results.json` are rewritten (every run, and the
mean +- std per code path). A run that already wrote final_metrics.json is not run again
and an interrupted one resumes (main's own resume): the same command continues the check.
Exit status 0 when every run meets the floor, 1 otherwise, 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from irstd_jax import cli
from tools.analysis.ablate import main_command
from tools.analysis.ablate import mean_std
from tools.analysis.ablate import read_result
from tools.analysis.ablate import run_record

# The repository root: main runs there.
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

CODE_PATHS = {
  "default": "",
  "avx_eigen": "--xla_cpu_max_isa=AVX --xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--config", default="configs/synthetic.py", help="configs/<name>.py")
  p.add_argument("--output_dir", default="runs/robustness")
  p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
  p.add_argument(
    "--paths",
    default=",".join(CODE_PATHS),
    help=f"comma-separated code paths of {list(CODE_PATHS)}",
  )
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="config override for every run, spelled --config.FIELD=VALUE as in main "
    "(repeatable); the demo's dataset.source=memory is always set",
  )
  p.add_argument("--min_miou", type=float, default=0.5, help="the floor's test mIoU")
  return p.parse_args(cli.set_args(sys.argv[1:] if argv is None else argv))


def verdict(test: dict, min_miou: float) -> str:
  """'pass', or what the run missed."""
  missed = []
  if test["miou"] < min_miou:
    missed.append(f"mIoU < {min_miou}")
  if test.get("num_saturated", 0):
    missed.append(f"{test['num_saturated']} saturated image(s)")
  return "pass" if not missed else "FAIL: " + ", ".join(missed)


def report(header: dict, runs: list[dict]) -> str:
  lines = [
    f"# Robustness of `{header['config']}`",
    "",
    f"Command: `{header['command']}`  ",
    f"Date: {header['date']}  ",
    f"Machine: {header['machine']}  ",
    f"Overrides: {' '.join(header['set']) or '(none)'}; floor: test mIoU >= "
    f"{header['min_miou']} and no test image more than a tenth predicted positive",
    "",
    "| code path | seed | mIoU | nIoU | Pd | Fa (x1e-6) | saturated images | train loop s | verdict |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ]
  for run in runs:
    test = (run.get("result") or {}).get("test")
    if not test:
      lines.append(f"| {run['path']} | {run['seed']} | - | - | - | - | - | - | {run['status']} |")
      continue
    lines.append(
      f"| {run['path']} | {run['seed']} | {test['miou']:.4f} | {test['niou']:.4f} | "
      f"{test['pd']:.4f} | {test['fa'] * 1e6:.2f} | {int(test['num_saturated']) if 'num_saturated' in test else '-'} | "
      f"{run['result'].get('wall_time_s', 0):.0f} | {run['verdict']} |"
    )
  lines += ["", "| code path | runs | mIoU mean +- std | min mIoU | runs at the floor |"]
  lines.append("|---|---:|---:|---:|---:|")
  for path in dict.fromkeys(r["path"] for r in runs):
    done = [r for r in runs if r["path"] == path and r.get("verdict")]
    if not done:
      continue
    mious = [r["result"]["test"]["miou"] for r in done]
    mean, std = mean_std(mious)
    passed = sum(r["verdict"] == "pass" for r in done)
    lines.append(
      f"| {path} | {len(done)} | {mean:.4f} +- {std:.4f} | {min(mious):.4f} | "
      f"{passed}/{len(done)} |"
    )
  return "\n".join(lines) + "\n"


def write(output_dir: str, header: dict, runs: list[dict]) -> None:
  with open(os.path.join(output_dir, "results.json"), "w") as f:
    json.dump({**header, "runs": runs}, f, indent=2)
  with open(os.path.join(output_dir, "results.md"), "w") as f:
    f.write(report(header, runs))


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    seeds = [int(t) for t in args.seeds.split(",") if t.strip()]
  except ValueError:
    print(f"error: --seeds {args.seeds!r}: expected integers like 0,1,2", file=sys.stderr)
    return 2
  paths = [t.strip() for t in args.paths.split(",") if t.strip()]
  unknown = [p for p in paths if p not in CODE_PATHS]
  bad_sets = [s for s in args.set if "=" not in s]
  if unknown or not seeds or not paths or bad_sets or not os.path.exists(args.config):
    problem = (
      f"--paths: unknown {unknown}; expected some of {list(CODE_PATHS)}"
      if unknown
      else f"--config.{bad_sets[0]}: expected --config.FIELD=VALUE"
      if bad_sets
      else f"--config {args.config}: no such file"
      if seeds and paths
      else "--seeds and --paths need at least one entry each"
    )
    print(f"error: {problem}", file=sys.stderr)
    return 2
  output_dir = os.path.abspath(args.output_dir)
  os.makedirs(output_dir, exist_ok=True)
  header = {
    "config": args.config,
    **run_record("tools.analysis.robustness", argv),
    "set": args.set,
    "min_miou": args.min_miou,
  }
  overrides = ["dataset.source=memory"] + args.set
  runs = [{"path": p, "seed": s, "status": "pending"} for s in seeds for p in paths]
  for run in runs:
    workdir = os.path.join(output_dir, run["path"], f"seed{run['seed']}")
    run["result"] = read_result(workdir)
    if run["result"] is None:
      os.makedirs(workdir, exist_ok=True)
      env = dict(os.environ)
      env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {CODE_PATHS[run['path']]}".strip()
      cmd = main_command(os.path.abspath(args.config), workdir, overrides + [f"seed={run['seed']}"])
      print(f"{run['path']} seed {run['seed']}: training ({workdir}/log.txt)", flush=True)
      t0 = time.time()
      with open(os.path.join(workdir, "log.txt"), "a") as log:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
      run["process_s"] = time.time() - t0
      if proc.returncode in (130, 143, -2, -15):
        run["status"] = "stopped (rerun to resume)"
        write(output_dir, header, runs)
        return 128 + abs(proc.returncode) % 128 if proc.returncode < 0 else proc.returncode
      run["result"] = read_result(workdir)
      if proc.returncode or run["result"] is None:
        run["status"] = f"failed (exit {proc.returncode}, see {workdir}/log.txt)"
    if run["result"] is not None:
      run["verdict"] = verdict(run["result"]["test"], args.min_miou)
      run["status"] = "done"
      print(f"{run['path']} seed {run['seed']}: {run['verdict']}", flush=True)
    write(output_dir, header, runs)
  print(report(header, runs))
  return 0 if all(r.get("verdict") == "pass" for r in runs) else 1


if __name__ == "__main__":
  sys.exit(main())
