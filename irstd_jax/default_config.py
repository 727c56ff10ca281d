"""The config schema: every field the project reads, declared once with its default, type,
allowed values and a one-line doc. The one place every default value lives.

`base_config()` (what every `configs/*.py` starts from: the paper's model and loss) is
built from `FIELDS`; config validation (`config_check.validate_config`), the resume
compatibility check (`checkpointing.state_changes`) and the config reference
(docs/config.md, `python -m irstd_jax.config_reference > docs/config.md`) all read it.

Plain Python and ml_collections, no JAX: reading a config loads nothing heavy. A field's
choices may name a registry (`"irstd_jax.losses:LOSSES"`): its keys, read when a config is
validated. Code reads `config.field`; a field missing from a config is an error naming it
(AttributeError), never a second default written in the code.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from typing import Any

import ml_collections

PURPOSES = ("train", "eval", "predict")
ALL = PURPOSES
EVAL = ("train", "eval")
TRAIN = ("train",)
MIN_CROP_SIZE = 16  # four 2x poolings


def _synthetic(config) -> bool:
  return config.dataset.name == "synthetic"


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field.

  default: the value `base_config()` holds (its type is the field's type: bool, int,
    float, str, or a tuple of ints).
  doc: one line for the reference.
  low, high, low_open, high_open: the allowed range of a number (None: unbounded).
  choices: the allowed strings: a tuple, or "module:REGISTRY" (the registry's keys).
  what: what a choice is, for errors ("'x' is not a known <what>"; default: the leaf name).
  length: a tuple field's length.
  check: the purposes whose validation checks the field (train checks every purpose's).
  when: checked only when when(config) holds (e.g. synthetic-only fields).
  state: how a change between a checkpoint's config and a resuming one breaks the saved
    state: "equal" (any change), "on_off" (turning it on or off), None (never).
  """

  default: Any
  doc: str
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  choices: tuple[str, ...] | str | None = None
  what: str = ""
  length: int | None = None
  check: tuple[str, ...] = TRAIN
  when: Callable[[Any], bool] | None = None
  state: str | None = None


# Every field, in the order of the config. Model fields shape the parameter tree
# (state="equal") unless they only set the compute dtype, BatchNorm's running update or
# the initialisation.
FIELDS: dict[str, Field] = {
  "seed": Field(0, "initialisation (and data order while data_seed is -1)", check=TRAIN),
  "data_seed": Field(
    -1,
    "training data order and augmentation draws; -1 = seed (one seed for both)",
    low=-1,
    check=TRAIN,
  ),
  # ------------------------------------------------------------------------- dataset
  "dataset.name": Field(
    "synthetic", "data set", choices="irstd_jax.datasets:NAMES", check=EVAL, what="data set"
  ),
  "dataset.source": Field(
    "tfds",
    "'tfds': prepare once into data_dir, read ArrayRecords; 'memory': decode manual_dir "
    "(or generate the synthetic set) into RAM at start, no TensorFlow",
    choices="irstd_jax.datasets:SOURCES",
    check=EVAL,
    what="data source",
  ),
  "dataset.data_dir": Field("", "TFDS data dir ('' = ~/tensorflow_datasets)"),
  "dataset.manual_dir": Field("", "a real set's folder: images/, masks/, splits/"),
  "dataset.train_split": Field("", "real sets: training split file name ('' = the layout's)"),
  "dataset.test_split": Field("", "real sets: test split file name ('' = the layout's)"),
  "dataset.binarize_masks": Field(False, "threshold non-binary masks at 128 instead of refusing"),
  "dataset.fix_mask_size": Field(
    False, "nearest-resize masks of another size than the image instead of refusing"
  ),
  "dataset.crop_size": Field(256, "training crop (pixels, square)", low=MIN_CROP_SIZE),
  "dataset.mean": Field(0.0, "normalisation of uint8 intensities: (x - mean) / std", check=ALL),
  "dataset.std": Field(255.0, "normalisation divisor", low=0, low_open=True, check=ALL),
  "dataset.flip": Field(True, "random horizontal and vertical flips"),
  "dataset.rot90": Field(True, "random 90-degree rotations"),
  "dataset.target_crop_prob": Field(
    0.5, "probability that a training crop is centred on a target", low=0, high=1
  ),
  "dataset.intensity_jitter": Field(0.0, "random intensity gain, uniform in 1 +- jitter", low=0),
  "dataset.zoom_max": Field(
    1.0,
    "random zoom-in before the crop, factor log-uniform in [1, zoom_max] (image bilinear, "
    "mask nearest); 1 = off",
    low=1,
  ),
  "dataset.noise_std": Field(
    0.0,
    "random additive Gaussian noise on the training crops, sigma uniform in [0, noise_std] "
    "grey levels (of 255); 0 = off",
    low=0,
  ),
  "dataset.seed": Field(0, "synthetic set: generator seed", when=_synthetic),
  "dataset.num_train": Field(400, "synthetic set: training images", low=1, when=_synthetic),
  "dataset.num_test": Field(100, "synthetic set: test images", low=1, check=EVAL, when=_synthetic),
  "dataset.image_size": Field(
    128, "synthetic set: image side (pixels)", low=MIN_CROP_SIZE, check=EVAL, when=_synthetic
  ),
  # --------------------------------------------------------------------------- model
  "model.name": Field(
    "l1_gp_rotated",
    "architecture preset (models.ARCHITECTURES; 'custom' takes block, channel_attention "
    "and attention.kind/mask/prior from the config)",
    choices="irstd_jax.models:MODEL_NAMES",
    check=ALL,
    state="equal",
    what="model",
  ),
  "model.channels": Field(
    (16, 32, 64, 128, 256), "channels of the 5 stages", low=1, length=5, check=ALL, state="equal"
  ),
  "model.blocks": Field(
    (2, 2, 2, 2),
    "residual blocks of the 4 encoder stages",
    low=1,
    length=4,
    check=ALL,
    state="equal",
  ),
  "model.dtype": Field(
    "float32",
    "compute dtype (parameters and batch_stats stay float32)",
    choices=("float32", "bfloat16"),
    check=ALL,
    what="compute dtype",
  ),
  "model.deep_supervision": Field(True, "side outputs at every decoder stage", state="equal"),
  "model.bn_momentum": Field(0.9, "BatchNorm running-average momentum (flax convention)"),
  "model.bn_epsilon": Field(1e-5, "BatchNorm epsilon"),
  "model.output_prior": Field(
    0.01,
    "initial probability of every output pixel (side biases logit(prior), fusion = mean "
    "of the sides); 0 = zero biases (p ~ 0.5 at the start, runs before 2026-12-07)",
    low=0.0,
    high=0.5,
    check=ALL,
  ),
  "model.block": Field(
    "basic", "residual block (name preset)", choices=("basic", "pconv"), state="equal"
  ),
  "model.channel_attention": Field(
    True, "channel attention in every block (name preset)", state="equal"
  ),
  "model.attention.kind": Field(
    "gaussian",
    "spatial attention (name preset)",
    choices=("gaussian", "cbam", "none"),
    state="equal",
    what="attention kind",
  ),
  "model.attention.kernel_size": Field(7, "spatial attention kernel side", low=1, state="equal"),
  "model.attention.num_blades": Field(4, "pinwheel blades", low=1, state="equal"),
  "model.attention.twist": Field(
    0.3, "blade rotation per pixel of radius (radians)", state="equal"
  ),
  "model.attention.sigma_min": Field(
    0.5, "lower bound of the Gaussian's sigma", low=0, state="equal"
  ),
  "model.attention.sigma_init": Field(1.5, "initial sigma", low=0, low_open=True, state="equal"),
  "model.attention.per_channel_sigma": Field(
    False, "one sigma per descriptor channel (mean, max)", state="equal"
  ),
  "model.attention.mask": Field(
    "rotated",
    "pinwheel mask: learned rotation, fixed at theta_init, or none (name preset)",
    choices=("rotated", "fixed", "none"),
    state="equal",
  ),
  "model.attention.prior": Field(
    "gaussian",
    "Gaussian prior of the kernel (name preset)",
    choices=("gaussian", "none"),
    state="equal",
  ),
  "model.attention.amplitude_init": Field(1.0 / 14.0, "initial kernel amplitude", state="equal"),
  "model.attention.theta_init": Field(0.0, "initial mask rotation (radians)", state="equal"),
  "model.attention.learn_amplitude": Field(True, "the amplitude is a parameter", state="equal"),
  # ---------------------------------------------------------------------------- loss
  "loss.name": Field(
    "scale", "loss (losses.LOSSES)", choices="irstd_jax.losses:LOSSES", what="loss"
  ),
  "loss.scale_weight": Field(
    "diff",
    "scale weight of 'scale' and 'sd' (losses.SCALE_WEIGHTS)",
    choices="irstd_jax.losses:SCALE_WEIGHTS",
    what="scale weight",
  ),
  "loss.b_over": Field(1.0, "diff coefficient for over-segmentation (Ap > At)"),
  "loss.b_under": Field(1.0, "diff coefficient for under-segmentation (Ap < At)"),
  "loss.smooth": Field(1.0, "s in the soft IoU and Dice", low=0),
  "loss.eps": Field(
    1e-6, "e in the scale weights and the centroid denominator", low=0, low_open=True
  ),
  "loss.warm_epochs": Field(5, "epochs (epoch < warm_epochs) of plain soft IoU", low=0),
  "loss.detach_weight": Field(False, "stop the gradient through the scale weight (MSHNet: no)"),
  "loss.target_free": Field(
    "formula",
    "images without target pixels: 'formula' weights them as published (diff: w ~ eps / Ap, "
    "so their false alarms get no gradient); 'plain_iou': w = 1 there (their soft IoU "
    "s / (Ap + s) pulls false alarms down)",
    choices=("formula", "plain_iou"),
  ),
  "loss.reduction": Field(
    "per_image",
    "'per_image': 1 - mean_b w_b IoU_b; 'batch': areas summed over the batch first",
    choices=("per_image", "batch"),
  ),
  "loss.location_weight": Field(0.0, "weight of MSHNet's location loss (MSHNet: 1)", low=0),
  "loss.location_warm_epochs": Field(5, "location loss only from this epoch on", low=0),
  "loss.location_centroid": Field(
    "centroid",
    "'centroid' (true centroid) or 'mshnet' (MSHNet's mean(x * p))",
    choices=("centroid", "mshnet"),
    what="centroid",
  ),
  "loss.deep_supervision": Field(True, "average the loss over the fused and side outputs"),
  "loss.focal_alpha": Field(0.25, "focal loss alpha", low=0, high=1),
  "loss.focal_gamma": Field(2.0, "focal loss gamma", low=0),
  "loss.sd_delta": Field(0.5, "SD loss delta (PConv: 0.5)"),
  "loss.sd_ref_area": Field(81.0, "SD loss reference area (PConv: 81 = 9x9 pixels)"),
  "loss.sd_ref_resolution": Field(512.0 * 512.0, "SD loss reference resolution (pixels)"),
  # --------------------------------------------------------------------------- train
  "train.num_epochs": Field(400, "training epochs", low=1),
  "train.batch_size": Field(8, "global batch, across all devices and processes", low=1),
  "train.optimizer": Field(
    "adam", "optimiser (optim.OPTIMIZERS)", choices="irstd_jax.optim:OPTIMIZERS", state="equal"
  ),
  # The bound catches a typo: 1e9 once trained to the end, exit 0, predicting nothing.
  "train.learning_rate": Field(1e-3, "peak learning rate", low=0, low_open=True, high=10),
  "train.schedule": Field(
    "cosine", "schedule after the warm-up (optim.SCHEDULES)", choices="irstd_jax.optim:SCHEDULES"
  ),
  "train.warmup_steps": Field(0, "linear warm-up steps", low=0),
  "train.weight_decay": Field(0.0, "adamw only", low=0),
  "train.momentum": Field(0.9, "sgd only", low=0, high=1, high_open=True),
  "train.grad_clip_norm": Field(0.0, "global-norm clipping (0 = off)", low=0, state="on_off"),
  "train.ema_decay": Field(
    0.0,
    "exponential moving average of the weights (0 = off); evaluation, the best checkpoint "
    "and every tool that loads the checkpoint use the average",
    low=0,
    high=1,
    high_open=True,
    state="on_off",
  ),
  "train.grad_accum_steps": Field(
    1, "steps accumulated per update (optax.MultiSteps)", low=1, state="on_off"
  ),
  "train.log_every_steps": Field(50, "steps between progress lines", low=1),
  "train.checkpoint_every_epochs": Field(1, "epochs between checkpoints", low=1),
  "train.max_to_keep": Field(3, "latest checkpoints kept", low=1),
  "train.profile": Field(
    "", "'' (off), 'N' (trace N steps after compilation) or 'A:B' (steps A..B-1)"
  ),
  "train.init_from": Field(
    "",
    "a workdir, checkpoints dir or exported folder to start from (params and batch_stats; "
    "ignored when resuming)",
  ),
  # ---------------------------------------------------------------------------- eval
  "eval.threshold": Field(0.5, "probability threshold", low=0, high=1, high_open=True, check=ALL),
  "eval.distance": Field(
    3.0, "Pd: a target counts as found within this distance (pixels)", low=0, check=EVAL
  ),
  "eval.batch_size": Field(8, "evaluation batch", low=1, check=EVAL),
  "eval.pad_multiple": Field(
    32,
    "each test image is padded to a multiple of this (BasicIRSTD), then cropped back",
    low=1,
    check=EVAL,
  ),
  "eval.every_epochs": Field(10, "epochs between evaluations", low=1),
}


def _tree(fields: dict[str, Field], prefix: str = "") -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  for path, field in fields.items():
    if not path.startswith(prefix):
      continue
    *parents, leaf = path[len(prefix) :].split(".")
    node = config
    for part in parents:
      if part not in node:
        node[part] = ml_collections.ConfigDict()
      node = node[part]
    node[leaf] = field.default
  return config


def base_config() -> ml_collections.ConfigDict:
  """Every field at its default: the paper's model and loss on the synthetic set."""
  return _tree(FIELDS)


def model_config() -> ml_collections.ConfigDict:
  """Default ``config.model`` (MSHNet-sized, the paper's model)."""
  return _tree(FIELDS, "model.")


def loss_config() -> ml_collections.ConfigDict:
  """Default ``config.loss`` (the paper's diff-based scale loss; docs/losses.md)."""
  return _tree(FIELDS, "loss.")


def with_defaults(partial, prefix: str = "") -> ml_collections.ConfigDict:
  """The defaults (of the subtree `prefix`, e.g. 'model.') overlaid with `partial` (a
  ConfigDict or dict, e.g. a config stored in a checkpoint before a field existed)."""
  config = _tree(FIELDS, prefix)
  config.update(partial.to_dict() if hasattr(partial, "to_dict") else dict(partial))
  return config


def lookup(config, path: str, default: Any = None) -> Any:
  """config['a']['b'] for path 'a.b' (a ConfigDict or a dict), `default` where missing."""
  node = config
  for part in path.split("."):
    if not hasattr(node, "keys") or part not in node:
      return default
    node = node[part]
  return node


def field_names(config) -> list[str]:
  """Dotted names of every leaf of a config ('train.learning_rate', ...), in order."""
  names = []
  for key in config:
    value = config[key]
    if hasattr(value, "keys"):
      names += [f"{key}.{name}" for name in field_names(value)]
    else:
      names.append(key)
  return names


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
