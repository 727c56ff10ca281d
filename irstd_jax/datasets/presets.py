"""Config fields shared by the real-data configs (configs/{nuaa_sirst,nudt_sirst,...}.py)."""

from __future__ import annotations

import ml_collections


def real_dataset_config(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """Sets the dataset fields of a real set and MSHNet's training recipe; returns config.

  Recipe: MSHNet's (Lliu666/MSHNet main.py: crop 256, batch 4, 400 epochs, Adagrad lr 0.05,
  constant learning rate, plain soft-IoU warm-up for epochs 0..5). MSHNet resizes every
  image to 256x256 and random-scales it; this pipeline keeps native pixels and pads
  (reflect) images smaller than the crop instead. Every field is overridable on the CLI.
  """
  config.dataset.name = name
  config.dataset.manual_dir = ""  # the downloaded set's folder; needed only to prepare it
  config.dataset.train_split = ""  # split file names; "" = the layout's official split
  config.dataset.test_split = ""
  config.dataset.binarize_masks = False  # True: threshold non-binary masks at 128, not refuse
  config.dataset.fix_mask_size = False  # True: nearest-resize masks of another size, not refuse
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
