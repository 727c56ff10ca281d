"""Run under XLA_FLAGS=--xla_force_host_platform_device_count=8: one SGD step of the same
global batch on a 1-device mesh and on an 8-device mesh; prints the max parameter gap.

  python -m tests.scripts.sharded_step TMP_DIR [DTYPE]    # from the repository root
"""

import functools
import json
import sys

import jax
import numpy as np
import optax

from irstd_jax import models
from irstd_jax import optim
from irstd_jax import train
from irstd_jax.datasets import synthetic
from tests.conftest import tiny_config


def main():
  assert jax.device_count() == 8, jax.devices()
  config = tiny_config(sys.argv[1])
  config.model.dtype = sys.argv[2] if len(sys.argv) > 2 else "float32"
  # Plain SGD: its update is linear in the gradient, so float32 round-off in the
  # cross-device reduction stays round-off (Adam's m / sqrt(v) would amplify it for
  # parameters whose gradient is ~0).
  config.train.optimizer = "sgd"
  config.train.momentum = 0.0
  model = models.create_model(config.model)
  tx = optim.make_optimizer(config.train, optax.constant_schedule(0.1))
  # Jitted: op by op the initialiser takes twice as long (9.9 vs 4.3 s here, -O0).
  state0 = jax.jit(
    functools.partial(train.create_train_state, model=model, tx=tx, image_shape=(32, 32))
  )(jax.random.key(0))
  pairs = [synthetic.generate_image(1, "train", i, 32, 32) for i in range(8)]
  batch = {
    "image": (np.stack([p[0] for p in pairs])[..., None].astype(np.float32) - 90) / 30,
    "mask": np.stack([p[1] for p in pairs])[..., None].astype(np.float32),
  }
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = train.make_mesh(devices)
    repl = jax.NamedSharding(mesh, jax.P())
    data = jax.NamedSharding(mesh, jax.P("data"))
    step = jax.jit(
      functools.partial(train.train_step, loss_config=config.loss, steps_per_epoch=10),
      in_shardings=(repl, data, repl),
      out_shardings=(repl, repl),
    )
    state = jax.device_put(state0, repl)
    sharded = train.shard_batch(batch, data)
    assert len(sharded["image"].addressable_shards) == len(devices)
    state, out = step(state, sharded, jax.random.key(0))
    results.append(
      (jax.device_get(state.params), jax.device_get(state.batch_stats), float(out["loss"]))
    )
  (p1, b1, l1), (p8, b8, l8) = results
  gap = max(float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)))
  scale = max(float(np.max(np.abs(a))) for a in jax.tree.leaves(p1))
  bn_gap = max(
    float(np.max(np.abs(a - b))) for a, b in zip(jax.tree.leaves(b1), jax.tree.leaves(b8))
  )
  print(
    json.dumps(
      {"param_gap": gap, "param_scale": scale, "bn_gap": bn_gap, "loss_1": l1, "loss_8": l8}
    )
  )


if __name__ == "__main__":
  main()
