"""Entry point: python -m irstd_jax.main --config=configs/<name>.py --workdir=DIR.

Any config field can be overridden on the command line, e.g. --config.train.num_epochs=2.

Exit status: 0 done; 2 a bad config, flag, data set or checkpoint, or a workdir another
live run holds (one `error:` line on stderr, before any compilation where the data are
not needed to tell); 3 training diverged (non-finite loss, gradient norm or state;
nothing non-finite is saved); 4 a checkpoint, or another file of the run on a full disk,
could not be written (disk full, quota, file-size limit or another OS error: one line
naming the path, the error and the free space; the complete checkpoints are kept and a
rerun resumes from the newest); 130 / 143 stopped by SIGINT / SIGTERM: inside the training
loop after saving a checkpoint, anywhere else (start-up, compilation, the final save, a
second Ctrl-C) at once with one line, keeping the checkpoints already written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def _stop_at_once(signum, frame) -> None:
  """Outside the loop's own handling: one line, and the process ends (the kernel frees the
  workdir lock; a checkpoint being written is left incomplete and is never the newest
  readable one, so a rerun resumes from the last complete one)."""
  del frame
  name = signal.Signals(signum).name
  print(f"error: stopped by {name}; checkpoints already written are kept", file=sys.stderr)
  os._exit(128 + signum)


# Before the heavy imports, so a Ctrl-C at start-up is one line too, not a traceback.
for _signal in (signal.SIGINT, signal.SIGTERM):
  signal.signal(_signal, _stop_at_once)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF only writes TFDS data sets here

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
import jax  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from irstd_jax import checkpointing  # noqa: E402
from irstd_jax import cli  # noqa: E402
from irstd_jax import config_check  # noqa: E402
from irstd_jax import datasets  # noqa: E402
from irstd_jax import storage  # noqa: E402
from irstd_jax import train  # noqa: E402
from irstd_jax import workdir_lock  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Path to a configs/*.py file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints and logs go.")
_DISTRIBUTED = flags.DEFINE_bool(
  "distributed",
  False,
  "Call jax.distributed.initialize() (multi-host). On Cloud TPU and SLURM the cluster is "
  "detected automatically; elsewhere give the three flags below.",
)
_COORDINATOR = flags.DEFINE_string(
  "coordinator_address", None, "host:port of process 0 (multi-host only)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_COMPILATION_CACHE = cli.define_compilation_cache_flag()
flags.mark_flags_as_required(["config", "workdir"])


def _initialize_distributed() -> None:
  if not (_DISTRIBUTED.value or _COORDINATOR.value):
    return
  if os.environ.get("JAX_PLATFORMS", "") == "cpu":  # not jax.default_backend(): too early
    # Cross-process collectives on CPU (tests, laptops) need gloo.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=_COORDINATOR.value,
    num_processes=_NUM_PROCESSES.value,
    process_id=_PROCESS_ID.value,
  )


def main(argv):
  if len(argv) > 1:
    return cli.error(f"unexpected arguments {argv[1:]}: every option is a --flag", 2)
  if not flags.FLAGS["verbosity"].present:
    # Orbax and TFDS log every file operation at INFO; the progress lines are printed.
    logging.set_verbosity(logging.WARNING)
  config = _CONFIG.value
  try:  # before TensorFlow, the data and any compilation
    config_check.validate_config(config, workdir=_WORKDIR.value, purpose="train")
  except config_check.ConfigError as e:
    return cli.error(e, 2)
  cli.enable_compilation_cache(_COMPILATION_CACHE.value)
  _initialize_distributed()
  workdir = os.path.abspath(os.path.expanduser(_WORKDIR.value))  # made once the checks pass
  logging.info(
    "JAX process %d/%d, local devices %s",
    jax.process_index(),
    jax.process_count(),
    jax.local_devices(),
  )
  # One lock per job (process 0), taken before anything in the workdir is read or written.
  lock = workdir_lock.hold(workdir) if jax.process_index() == 0 else contextlib.nullcontext()
  try:
    with lock:
      train.train_and_evaluate(config, workdir)
  except (datasets.DataNotPreparedError, config_check.ConfigError, workdir_lock.WorkdirInUse) as e:
    return cli.error(e, 2)
  except train.TrainingDiverged as e:
    return cli.error(e, 3)
  except checkpointing.CheckpointSaveError as e:
    return cli.error(e, 4)
  except OSError as e:  # a full disk outside a checkpoint: the lock, metrics, final metrics
    if storage.os_error_number(e) not in storage.STORAGE_FULL:
      raise
    return cli.error(checkpointing.storage_error_message(workdir, e), 4)
  return 0


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
