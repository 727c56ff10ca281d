"""Learning curves from the logs `irstd_jax.main` prints: test metrics and training loss.

  python -m tools.analysis.learning_curve --log=runs/nuaa5050.log [--log=runs/other.log] \
      [--label=paper --label=mshnet] --output=docs/learning_curve.png [--json=curve.json]

Reads the periodic evaluation lines (`test @ epoch E: mIoU .. nIoU .. Pd .. Fa ..e-6
[Fa_strict ..e-6]`) and the progress lines (`epoch E/N step S/T loss L ...`) of each log,
and draws one PNG: test mIoU, nIoU and Pd against the epoch (left) and the training loss
(right), one colour per log. `--json` also writes the parsed points.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from matplotlib.figure import Figure  # savefig picks the Agg canvas for .png by itself

_EVAL = re.compile(
  r"test @ epoch (\d+): mIoU ([\d.]+) nIoU ([\d.]+) Pd ([\d.]+) "
  r"Fa ([\d.]+)e-6(?: Fa_strict ([\d.]+)e-6)?"
)
_PROGRESS = re.compile(r"^epoch (\d+)/(\d+) step (\d+)/(\d+) loss ([-\d.naninf]+)", re.M)


def parse_log(text: str) -> dict:
  """{'eval': [{epoch, miou, niou, pd, fa, fa_strict?}], 'loss': [{epoch, step, loss}]}.

  A resumed run prints some epochs twice; the last occurrence of an epoch wins.
  """
  evals = {}
  for m in _EVAL.finditer(text):
    row = {
      "epoch": int(m[1]),
      "miou": float(m[2]),
      "niou": float(m[3]),
      "pd": float(m[4]),
      "fa": float(m[5]) * 1e-6,
    }
    if m[6] is not None:
      row["fa_strict"] = float(m[6]) * 1e-6
    evals[row["epoch"]] = row
  losses = {}
  for m in _PROGRESS.finditer(text):
    steps_total, epochs_total = int(m[4]), int(m[2])
    step = int(m[3])
    losses[step] = {"step": step, "epoch": step * epochs_total / steps_total, "loss": float(m[5])}
  return {"eval": [evals[k] for k in sorted(evals)], "loss": [losses[k] for k in sorted(losses)]}


def plot(curves: list[tuple[str, dict]], output: str, title: str = "") -> None:
  fig = Figure(figsize=(10, 4), dpi=100)
  left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
  colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
  for i, (label, curve) in enumerate(curves):
    colour = colours[i % len(colours)]
    epochs = [r["epoch"] for r in curve["eval"]]
    for key, name, style in (("miou", "mIoU", "-"), ("niou", "nIoU", "--"), ("pd", "Pd", ":")):
      left.plot(
        epochs,
        [r[key] for r in curve["eval"]],
        style,
        color=colour,
        marker=".",
        label=f"{label} {name}",
      )
    right.plot(
      [r["epoch"] for r in curve["loss"]],
      [r["loss"] for r in curve["loss"]],
      color=colour,
      label=label,
      linewidth=1,
    )
  left.set_xlabel("epoch")
  left.set_ylabel("test metric")
  left.set_ylim(0, 1)
  left.grid(alpha=0.3)
  left.legend(fontsize=7, loc="lower right")
  left.set_title("test mIoU (solid), nIoU (dashed), Pd (dotted)", fontsize=9)
  right.set_xlabel("epoch")
  right.set_ylabel("training loss (mean over a log window)")
  right.grid(alpha=0.3)
  right.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output)


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--log", action="append", required=True, help="a main.py log (repeatable)")
  p.add_argument("--label", action="append", default=[], help="one per --log")
  p.add_argument("--output", required=True, help="PNG to write")
  p.add_argument("--json", default="", help="also write the parsed points here")
  p.add_argument("--title", default="")
  args = p.parse_args(argv)
  labels = args.label or [os.path.basename(path) for path in args.log]
  if len(labels) != len(args.log):
    print(f"error: {len(args.log)} --log but {len(labels)} --label", file=sys.stderr)
    return 2
  curves = []
  for label, path in zip(labels, args.log):
    try:
      with open(path, errors="replace") as f:
        curve = parse_log(f.read())
    except OSError as e:
      print(f"error: {path}: {e.strerror}", file=sys.stderr)
      return 2
    if not curve["eval"]:
      print(f"error: {path}: no 'test @ epoch' lines (is it a main.py log?)", file=sys.stderr)
      return 2
    best = max(curve["eval"], key=lambda r: r["miou"])
    print(
      f"{label}: {len(curve['eval'])} evaluations, last epoch {curve['eval'][-1]['epoch']} "
      f"mIoU {curve['eval'][-1]['miou']:.4f}; best mIoU {best['miou']:.4f} at epoch "
      f"{best['epoch']}"
    )
    curves.append((label, curve))
  plot(curves, args.output, args.title)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({label: curve for label, curve in curves}, f, indent=1)
  print(f"wrote {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
