"""SIRST-UAVB (drones and birds, ~3000 images of 640x512), the PConv/SD-loss authors' set.

python -m irstd_jax.main --config=configs/sirst_uavb.py --workdir=runs/sirst_uavb \
    --config.dataset.manual_dir=/path/to/SIRST-UAVB
"""

from irstd_jax import default_config


def get_config():
  config = default_config.base_config()
  config.dataset.name = "sirst_uavb"
  config.dataset.crop_size = 256
  config.train.num_epochs = 400
  config.train.batch_size = 16
  config.eval.batch_size = 8
  return config
