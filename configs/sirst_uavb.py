"""SIRST-UAVB (drones and birds, ~3000 real images of 640x512), the PConv/SD-loss authors' set.

  python -m irstd_jax.prepare_data --dataset=sirst_uavb --manual_dir=/path/to/SIRST-UAVB
  python -m irstd_jax.main --config=configs/sirst_uavb.py --workdir=runs/sirst_uavb \
      --config.dataset.manual_dir=/path/to/SIRST-UAVB

Split: the published train.txt / val.txt (val used as test) -- an assumption about the
archive's layout, see docs/data.md. JPEG masks are thresholded at 128.
Recipe: MSHNet's (`default_config.mshnet_recipe`), with batch 16 for this larger set.
"""

from irstd_jax import default_config


def get_config():
  config = default_config.mshnet_recipe("sirst_uavb")
  # NOT measured here (the set is not available in this sandbox): MSHNet's ImageNet
  # normalisation averaged over RGB, in uint8 units (0.449 * 255, 0.226 * 255). Run
  # python -m irstd_jax.prepare_data and paste the measured values.
  config.dataset.mean = 114.5
  config.dataset.std = 57.6
  config.train.batch_size = 16
  config.eval.batch_size = 4  # 640x512 test images
  return config
