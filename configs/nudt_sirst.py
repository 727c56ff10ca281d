"""NUDT-SIRST (1327 images of 256x256, synthetic backgrounds + real targets), 50/50 split.

  python -m irstd_jax.prepare_data --dataset=nudt_sirst --manual_dir=/path/to/NUDT-SIRST
  python -m irstd_jax.main --config=configs/nudt_sirst.py --workdir=runs/nudt_sirst \
      --config.dataset.manual_dir=/path/to/NUDT-SIRST

Recipe: MSHNet's (`default_config.mshnet_recipe`). MSHNet's published numbers
on this set's test split: docs/ablations.md.
"""

from irstd_jax import default_config


def get_config():
  config = default_config.mshnet_recipe("nudt_sirst")
  # NOT measured here (the set is not available in this sandbox): MSHNet's ImageNet
  # normalisation averaged over RGB, in uint8 units (0.449 * 255, 0.226 * 255). Run
  # python -m irstd_jax.prepare_data and paste the measured values.
  config.dataset.mean = 114.5
  config.dataset.std = 57.6
  return config
