"""Entry point: python -m irstd_jax.main --config=configs/<name>.py --workdir=DIR.

Any config field can be overridden on the command line, e.g. --config.train.num_epochs=2.
"""

from __future__ import annotations

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a configs/*.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and logs go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from irstd_jax import datasets
  from irstd_jax import train
  config = _CONFIG.value
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))
  os.makedirs(workdir, exist_ok=True)
  logging.info("JAX process %d/%d, local devices %s", jax.process_index(),
               jax.process_count(), jax.local_devices())
  try:
    train.train_and_evaluate(config, workdir)
  except datasets.DataNotPreparedError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  app.run(main)
