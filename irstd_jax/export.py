"""Export a training workdir's weights as a small folder that ships (`pretrained/`).

  python -m irstd_jax.export --checkpoint=runs/nuaa5050 \
      --output=pretrained/nuaa_sirst_l1_gp_rotated [--latest] [--note="..."]

(``irstd-export`` is the same command, installed with the package.)

Writes OUTPUT/variables.msgpack (params + BatchNorm statistics, float32; no optimizer
state) and OUTPUT/meta.json (the run's config, step, epoch, last test metrics, and
`exported_from`: the source workdir, which checkpoint, the date and --note). The folder
is then a `--checkpoint` for `irstd_jax.evaluate` and `irstd_jax.predict`. A checkpoint
that cannot be read is one `error:` line, exit status 2.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

import jax
import numpy as np

from irstd_jax import checkpointing
from irstd_jax import cli


def main(argv=None) -> int:
  """The command (`python -m irstd_jax.export`, `irstd-export`); argv: sys.argv[1:]."""
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--checkpoint", required=True, help="a workdir as irstd_jax.main writes")
  p.add_argument("--output", required=True, help="folder to write (created)")
  p.add_argument(
    "--latest", action="store_true", help="export the newest checkpoint instead of the best one"
  )
  p.add_argument("--note", default="", help="free text stored in meta.json")
  args = p.parse_args(argv)
  try:
    variables, meta = checkpointing.restore_variables(args.checkpoint, prefer_best=not args.latest)
  except (FileNotFoundError, ValueError) as e:
    return cli.error(e)
  if "config" not in meta:
    return cli.error(f"{args.checkpoint}: the checkpoint meta holds no 'config'")
  meta = dict(meta)
  meta["exported_from"] = {
    "checkpoint": args.checkpoint,
    "which": "latest" if args.latest else "best",
    "date": datetime.datetime.now().isoformat(timespec="seconds"),
    "note": args.note,
  }
  try:
    checkpointing.export_variables(variables, meta, args.output)
  except OSError as e:
    return cli.error(f"--output {args.output}: {e.strerror or e}")
  count = sum(np.asarray(x).size for x in jax.tree.leaves(variables["params"]))
  size = os.path.getsize(os.path.join(args.output, checkpointing.EXPORT_VARIABLES))
  print(
    f"exported step {meta.get('step')} (epoch {meta.get('epoch')}, "
    f"{'latest' if args.latest else 'best'}) of {args.checkpoint}: {count:,} parameters, "
    f"{size / 2**20:.2f} MiB -> {args.output}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
