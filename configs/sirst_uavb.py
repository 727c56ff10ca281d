"""SIRST-UAVB (drones and birds, ~3000 real images of 640x512), the PConv/SD-loss authors' set.

  python tools/prepare_data.py --dataset=sirst_uavb --manual_dir=/path/to/SIRST-UAVB
  python -m irstd_jax.main --config=configs/sirst_uavb.py --workdir=runs/sirst_uavb \
      --config.dataset.manual_dir=/path/to/SIRST-UAVB

Split: the published train.txt / val.txt (val used as test) -- an assumption about the
archive's layout, see docs/data.md. JPEG masks are thresholded at 128.
Recipe: MSHNet's (`mshnet_recipe` in configs/nuaa_sirst.py), with batch 16 for this larger set.
"""

import pathlib
import runpy

# configs/ is not a package (main loads a config file by its path), so the shared recipe
# is read by path as well.
_RECIPE = pathlib.Path(__file__).with_name("nuaa_sirst.py")


def get_config():
  config = runpy.run_path(str(_RECIPE))["mshnet_recipe"]("sirst_uavb")
  # NOT measured here (the set is not available in this sandbox): MSHNet's ImageNet
  # normalisation averaged over RGB, in uint8 units (0.449 * 255, 0.226 * 255). Run
  # tools/prepare_data.py and paste the measured values.
  config.dataset.mean = 114.5
  config.dataset.std = 57.6
  config.train.batch_size = 16
  config.eval.batch_size = 4  # 640x512 test images
  return config
