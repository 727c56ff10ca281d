"""NUDT-SIRST (1327 images of 256x256, synthetic backgrounds + real targets), 50/50 split.

  python tools/prepare_data.py --dataset=nudt_sirst --manual_dir=/path/to/NUDT-SIRST
  python -m irstd_jax.main --config=configs/nudt_sirst.py --workdir=runs/nudt_sirst \
      --config.dataset.manual_dir=/path/to/NUDT-SIRST

Recipe: MSHNet's (`mshnet_recipe` in configs/nuaa_sirst.py). MSHNet's published numbers
on this set's test split: docs/ablations.md.
"""

import pathlib
import runpy

# configs/ is not a package (main loads a config file by its path), so the shared recipe
# is read by path as well.
_RECIPE = pathlib.Path(__file__).with_name("nuaa_sirst.py")


def get_config():
  config = runpy.run_path(str(_RECIPE))["mshnet_recipe"]("nudt_sirst")
  # NOT measured here (the set is not available in this sandbox): MSHNet's ImageNet
  # normalisation averaged over RGB, in uint8 units (0.449 * 255, 0.226 * 255). Run
  # tools/prepare_data.py and paste the measured values.
  config.dataset.mean = 114.5
  config.dataset.std = 57.6
  return config
