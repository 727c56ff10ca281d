"""The one place every default value lives: the base configuration every `configs/*.py`
starts from (the paper's model and loss).

Plain ml_collections, no JAX: reading a config loads nothing heavy. Code reads
`config.field`; a field missing from a config is an error naming it (AttributeError),
never a second default written in the code.
"""

from __future__ import annotations

import ml_collections


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
  # Real-only fields: split file names ("" = the layout's official split) and mask repairs.
  config.dataset.train_split = ""
  config.dataset.test_split = ""
  config.dataset.binarize_masks = False  # True: threshold non-binary masks at 128, not refuse
  config.dataset.fix_mask_size = False  # True: nearest-resize masks of another size, not refuse
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

  config.model = model_config()
  config.loss = loss_config()

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


def model_config() -> ml_collections.ConfigDict:
  """Default ``config.model`` (MSHNet-sized, the paper's model)."""
  c = ml_collections.ConfigDict()
  c.name = "l1_gp_rotated"
  c.channels = (16, 32, 64, 128, 256)
  c.blocks = (2, 2, 2, 2)
  c.dtype = "float32"  # compute dtype; params / batch_stats stay float32
  c.deep_supervision = True
  c.bn_momentum = 0.9  # flax convention (PyTorch momentum 0.1)
  c.bn_epsilon = 1e-5
  # Initial probability of every output pixel (side biases logit(pi), fusion = mean of the
  # sides); 0 = flax's zero biases (p ~ 0.5 at the start, runs before 2026-12-07).
  c.output_prior = 0.01
  c.block = "basic"  # 'basic' | 'pconv' (set by the name preset)
  c.channel_attention = True  # (set by the name preset)
  a = ml_collections.ConfigDict()
  a.kind = "gaussian"  # 'gaussian' | 'cbam' | 'none' (set by the name preset)
  a.kernel_size = 7
  a.num_blades = 4
  a.twist = 0.3  # radians of blade rotation per pixel of radius
  a.sigma_min = 0.5
  a.sigma_init = 1.5
  a.per_channel_sigma = False  # one sigma per descriptor channel (mean, max)
  a.mask = "rotated"  # 'rotated' | 'fixed' | 'none' (set by the name preset)
  a.prior = "gaussian"  # 'gaussian' | 'none' (set by the name preset)
  a.amplitude_init = 1.0 / 14.0
  a.theta_init = 0.0  # radians; the constant theta of mask='fixed'
  a.learn_amplitude = True
  c.attention = a
  return c


def loss_config() -> ml_collections.ConfigDict:
  """Default ``config.loss`` (the paper's diff-based scale loss).

  Fields:
    name: 'scale' | 'soft_iou' | 'dice' | 'bce' | 'focal' | 'sd'.
    scale_weight: 'diff' | 'var' | 'mobius' | 'var_denominator'
      (used by 'scale' and 'sd').
    b_over, b_under: diff coefficients for over- (Ap > At) and
      under-segmentation (Ap < At).  Note: b_over > 1 makes w < 0 once
      Ap / At > (b_over + 1) / (b_over - 1).
    smooth: s in the soft IoU / Dice.
    eps: e in the scale weights and in the centroid denominator.
    warm_epochs: epochs (0-based, epoch < warm_epochs) of plain soft IoU.
    detach_weight: stop the gradient through w (MSHNet: False).
    reduction: 'per_image' (1 - mean_b w_b IoU_b) or 'batch' (areas and
      intersection summed over the batch first).
    location_weight: weight of MSHNet's location loss for name='scale'
      (MSHNet: 1.0; SPEC default 0.0).
    location_warm_epochs: location loss only when epoch >=
      location_warm_epochs (MSHNet: same as its warm-up, 5).
    location_centroid: 'centroid' (true centroid, SPEC) | 'mshnet'
      (MSHNet's unnormalised first moment mean(x * p)).
    deep_supervision: average the loss over the fused output and the side
      outputs (side logits resized bilinearly to the mask size).
    focal_alpha, focal_gamma: focal loss parameters.
    sd_delta, sd_ref_area, sd_ref_resolution: SD loss parameters (PConv:
      0.5, 81 = 9x9 pixels, 512*512).
  """
  c = ml_collections.ConfigDict()
  c.name = "scale"
  c.scale_weight = "diff"
  c.b_over = 1.0
  c.b_under = 1.0
  c.smooth = 1.0
  c.eps = 1e-6
  c.warm_epochs = 5
  c.detach_weight = False
  c.reduction = "per_image"
  c.location_weight = 0.0
  c.location_warm_epochs = 5
  c.location_centroid = "centroid"
  c.deep_supervision = True
  c.focal_alpha = 0.25
  c.focal_gamma = 2.0
  c.sd_delta = 0.5
  c.sd_ref_area = 81.0
  c.sd_ref_resolution = 512.0 * 512.0
  return c


def mshnet_recipe(name: str) -> ml_collections.ConfigDict:
  """The base config (the paper's model and loss) with data set `name` and MSHNet's training
  recipe (Lliu666/MSHNet main.py; docs/data.md says where this pipeline differs from it):
  what configs/{nuaa_sirst,nudt_sirst,irstd1k,sirst_uavb}.py start from."""
  config = base_config()
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
