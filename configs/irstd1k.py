"""IRSTD-1k (1001 real images of 512x512), 800 / 201 split (ISNet's trainval.txt / test.txt).

  python -m irstd_jax.prepare_data --dataset=irstd1k --manual_dir=/path/to/IRSTD-1k
  python -m irstd_jax.main --config=configs/irstd1k.py --workdir=runs/irstd1k \
      --config.dataset.manual_dir=/path/to/IRSTD-1k

Recipe: MSHNet's (`default_config.mshnet_recipe`). MSHNet's published numbers
on this set's test split: docs/ablations.md.
"""

from irstd_jax import default_config


def get_config():
  config = default_config.mshnet_recipe("irstd1k")
  # NOT measured here (the set is not available in this sandbox): MSHNet's ImageNet
  # normalisation averaged over RGB, in uint8 units (0.449 * 255, 0.226 * 255). Run
  # python -m irstd_jax.prepare_data and paste the measured values.
  config.dataset.mean = 114.5
  config.dataset.std = 57.6
  config.eval.batch_size = 4  # 512x512 test images
  return config
