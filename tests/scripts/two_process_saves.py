"""One of two processes (argv: process_id, port, workdir, steps) saving through one
checkpointing.Checkpointer at every step, latest and best together, as training does
after each evaluation; the test runs two of these (`python -m
tests.scripts.two_process_saves` from the repository root) and checks both finish."""

import sys

import jax
import numpy as np

from irstd_jax import checkpointing

# The best mIoU at step 3, not the last: the best manager both keeps and drops steps.
BEST_STEP = 3


def main():
  process_id, port, workdir, steps = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
  jax.distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=process_id)
  replicated = jax.NamedSharding(jax.make_mesh((2,), ("data",)), jax.P())
  checkpointer = checkpointing.Checkpointer(workdir, max_to_keep=2)
  for step in range(1, steps + 1):
    state = jax.device_put({"w": np.full((64,), step, np.float32)}, replicated)
    miou = 0.9 if step == BEST_STEP else 0.01 * step
    checkpointer.save(step, state, {"step": step}, metrics={"miou": miou})
  checkpointer.wait()
  checkpointer.close()


if __name__ == "__main__":
  main()
