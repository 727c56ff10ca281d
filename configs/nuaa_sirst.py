"""NUAA-SIRST (SIRST, 427 real images, ~300x200), official idx_427 split: 341 train / 86 test.

  python tools/prepare_data.py --dataset=nuaa_sirst --manual_dir=/path/to/sirst
  python -m irstd_jax.main --config=configs/nuaa_sirst.py --workdir=runs/nuaa_sirst \
      --config.dataset.manual_dir=/path/to/sirst

50/50 split (DNANet and later papers), with the uniform layout's split files:
  --config.dataset.train_split=train_50_50.txt --config.dataset.test_split=test_50_50.txt

Also holds `mshnet_recipe`, the training recipe configs/{nudt_sirst,irstd1k,sirst_uavb}.py
start from too.
"""

from irstd_jax import default_config


def mshnet_recipe(name: str):
  """The base config (the paper's model and loss) with data set `name` and MSHNet's training
  recipe (Lliu666/MSHNet main.py; docs/data.md says where this pipeline differs from it)."""
  config = default_config.base_config()
  config.dataset.name = name
  config.dataset.crop_size = 256
  config.train.num_epochs = 400
  config.train.batch_size = 4
  config.train.optimizer = "adagrad"
  config.train.learning_rate = 0.05
  config.train.schedule = "constant"
  config.loss.warm_epochs = 6  # MSHNet: epochs 0..5 plain soft IoU (`epoch > warm_epoch`)
  config.eval.batch_size = 8
  config.eval.every_epochs = 5
  return config


def get_config():
  config = mshnet_recipe("nuaa_sirst")
  # Measured by tools/prepare_data.py on the official train split (341 images, 23076353
  # pixels), CPU (2 cores, sandbox), 2026-11-25. 50/50 train split: 113.36 / 59.39.
  config.dataset.mean = 114.35
  config.dataset.std = 57.01
  return config
