"""IRSTD-1k (1001 real images of 512x512), 800 / 201 split (ISNet's trainval.txt / test.txt).

  python tools/prepare_data.py --dataset=irstd1k --manual_dir=/path/to/IRSTD-1k
  python -m irstd_jax.main --config=configs/irstd1k.py --workdir=runs/irstd1k \
      --config.dataset.manual_dir=/path/to/IRSTD-1k

Recipe: MSHNet's (`mshnet_recipe` in configs/nuaa_sirst.py). MSHNet's published numbers
on this set's test split: docs/ablations.md.
"""

import pathlib
import runpy

# configs/ is not a package (main loads a config file by its path), so the shared recipe
# is read by path as well.
_RECIPE = pathlib.Path(__file__).with_name("nuaa_sirst.py")


def get_config():
  config = runpy.run_path(str(_RECIPE))["mshnet_recipe"]("irstd1k")
  # NOT measured here (the set is not available in this sandbox): MSHNet's ImageNet
  # normalisation averaged over RGB, in uint8 units (0.449 * 255, 0.226 * 255). Run
  # tools/prepare_data.py and paste the measured values.
  config.dataset.mean = 114.5
  config.dataset.std = 57.6
  config.eval.batch_size = 4  # 512x512 test images
  return config
