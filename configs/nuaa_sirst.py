"""NUAA-SIRST (SIRST, 427 real images, ~300x200), official idx_427 split: 341 train / 86 test.

  python -m irstd_jax.prepare_data --dataset=nuaa_sirst --manual_dir=/path/to/sirst
  python -m irstd_jax.main --config=configs/nuaa_sirst.py --workdir=runs/nuaa_sirst \
      --config.dataset.manual_dir=/path/to/sirst

50/50 split (DNANet and later papers), with the uniform layout's split files:
  --config.dataset.train_split=train_50_50.txt --config.dataset.test_split=test_50_50.txt

Recipe: MSHNet's (`default_config.mshnet_recipe`).
"""

from irstd_jax import default_config


def get_config():
  config = default_config.mshnet_recipe("nuaa_sirst")
  # Measured by python -m irstd_jax.prepare_data on the official train split (341 images, 23076353
  # pixels), CPU (2 cores, sandbox), 2026-11-25. 50/50 train split: 113.36 / 59.39.
  config.dataset.mean = 114.35
  config.dataset.std = 57.01
  return config
