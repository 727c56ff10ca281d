"""The first gradient of the demo's model (configs/synthetic.py: l1_gp_rotated, half
width, 96x96) on four synthetic images; prints {"leaves", "non_finite": [names]} as JSON.
tests/test_attention.py runs it (`python -m tests.scripts.first_gradient` from the
repository root) under XLA_FLAGS that change XLA:CPU's kernels."""

import json

import jax
import numpy as np

from configs import synthetic as demo_config
from irstd_jax import input_pipeline
from irstd_jax import losses
from irstd_jax import models
from irstd_jax.datasets import synthetic


def main():
  config = demo_config.get_config()
  size = config.dataset.image_size
  model = models.create_model(config.model)
  pairs = [synthetic.generate_image(config.seed, "train", i, size, size) for i in range(4)]
  image = input_pipeline.normalize(
    np.stack([p[0] for p in pairs])[..., None], config.dataset.mean, config.dataset.std
  )
  mask = np.stack([p[1] for p in pairs])[..., None].astype(np.float32)
  init = jax.jit(model.init, static_argnames="train")
  variables = init(jax.random.key(config.seed), image[:1], train=False)

  def loss_fn(params):
    (logits, sides), _ = model.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      image,
      train=True,
      mutable=["batch_stats"],
    )
    return losses.total_loss(logits, sides, mask, config.loss, 0)[0]

  grads = jax.jit(jax.grad(loss_fn))(variables["params"])
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  bad = [jax.tree_util.keystr(p) for p, g in flat if not np.isfinite(np.asarray(g)).all()]
  print(json.dumps({"leaves": len(flat), "non_finite": bad}))


if __name__ == "__main__":
  main()
