"""The base configuration every `configs/*.py` starts from (paper's model and loss)."""

from __future__ import annotations

import ml_collections

from irstd_jax import losses
from irstd_jax import models


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "synthetic"
  # "tfds": prepare once into data_dir, then read ArrayRecords; "memory": decode the
  # manual_dir (or generate the synthetic set) into RAM at start, no TFDS/TensorFlow.
  config.dataset.source = "tfds"
  config.dataset.data_dir = ""  # TFDS data dir; empty = ~/tensorflow_datasets
  config.dataset.manual_dir = ""  # real sets: images/, masks/, splits/
  config.dataset.crop_size = 256  # training crop (pixels, square)
  config.dataset.mean = 0.0  # normalisation of uint8 intensities: (x - mean) / std
  config.dataset.std = 255.0
  config.dataset.flip = True
  config.dataset.rot90 = True
  config.dataset.target_crop_prob = 0.5
  config.dataset.intensity_jitter = 0.0
  # Synthetic-only fields (ignored by real sets).
  config.dataset.seed = 0
  config.dataset.num_train = 400
  config.dataset.num_test = 100
  config.dataset.image_size = 128

  config.model = models.default_model_config()
  config.model.name = "l1_gp_rotated"
  config.loss = losses.default_loss_config()
  config.loss.scale_weight = "diff"

  config.train = ml_collections.ConfigDict()
  config.train.num_epochs = 400
  config.train.batch_size = 8  # global, across all devices and processes
  config.train.optimizer = "adam"
  config.train.learning_rate = 1e-3
  config.train.schedule = "cosine"
  config.train.warmup_steps = 0
  config.train.weight_decay = 0.0  # adamw only
  config.train.momentum = 0.9  # sgd only
  config.train.grad_clip_norm = 0.0
  config.train.grad_accum_steps = 1
  config.train.log_every_steps = 50
  config.train.checkpoint_every_epochs = 1
  config.train.max_to_keep = 3
  config.train.profile = ""  # "N": trace N steps after compilation; "A:B": steps A..B-1
  # A workdir, checkpoints dir or exported folder: start from its params and batch_stats
  # (fresh optimizer state, step 0) instead of a random init. Ignored when resuming.
  config.train.init_from = ""

  config.eval = ml_collections.ConfigDict()
  config.eval.threshold = 0.5
  config.eval.distance = 3.0
  config.eval.batch_size = 8
  # Each test image is padded to the next multiple of this (then cropped back), as
  # BasicIRSTD does; images of one padded shape are batched together.
  config.eval.pad_multiple = 32
  config.eval.every_epochs = 10
  return config
