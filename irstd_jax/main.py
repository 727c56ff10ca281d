"""Entry point: python -m irstd_jax.main --config=configs/<name>.py --workdir=DIR.

Any config field can be overridden on the command line, e.g. --config.train.num_epochs=2.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF is only the TFDS/clu backend here

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a configs/*.py file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and logs go.")
flags.mark_flags_as_required(["config", "workdir"])


def _hide_accelerators_from_tensorflow() -> None:
  """TF (used by TFDS and the metric writers) must not reserve GPU/TPU memory JAX needs."""
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  tf.config.set_visible_devices([], "TPU")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from irstd_jax import datasets
  from irstd_jax import train
  if not flags.FLAGS["verbosity"].present:
    # Orbax and TFDS log every file operation at INFO; the progress lines are printed.
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  _hide_accelerators_from_tensorflow()
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
