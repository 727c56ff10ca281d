"""Model family: MSHNet-style U-Nets with CBAM or Gaussian-pinwheel attention.

Public API:
  create_model(model_config) -> flax.linen.Module (a :class:`UNet`)
  default_model_config() -> ml_collections.ConfigDict
  MODEL_NAMES: the names ``config.model.name`` accepts
  PRESETS: per-name settings that create_model applies

Call convention (docs/INTERFACES.md):
  logits, side_logits = model.apply(variables, images, train=False)
  (logits, side_logits), new_state = model.apply(
      variables, images, train=True, mutable=['batch_stats'])

Precedence: the model *name* decides the architecture switches listed in
PRESETS (``block``, ``channel_attention``, ``attention.kind``, ``attention.mask``,
``attention.prior``); a config value for those fields is overridden (logged when it
differs).  Every other field (channels, blocks, dtype, deep_supervision, BN
settings, kernel_size, num_blades, twist, sigma_min, sigma_init,
per_channel_sigma, amplitude_init, theta_init, learn_amplitude) comes from the
config.  Use ``name='custom'`` to take every field from the config as given.
"""

from __future__ import annotations

import logging

import jax.numpy as jnp
import ml_collections

from irstd_jax.models.attention import AttentionSpec
from irstd_jax.models.attention import ChannelAttention
from irstd_jax.models.attention import GaussianSpatialAttention
from irstd_jax.models.attention import SpatialAttention
from irstd_jax.models.attention import gaussian_kernel_parts
from irstd_jax.models.attention import gaussian_prior
from irstd_jax.models.attention import pinwheel_mask
from irstd_jax.models.attention import pinwheel_soft_mask
from irstd_jax.models.pconv import PinwheelConv
from irstd_jax.models.unet import ResidualBlock
from irstd_jax.models.unet import UNet
from irstd_jax.models.unet import count_params
from irstd_jax.models.unet import model_stats
from irstd_jax.models.unet import print_model_table

_GP = dict(block="basic", channel_attention=True, kind="gaussian", prior="gaussian")

PRESETS = {
  # Plain U-Net: the same residual U-Net without any attention.
  "unet": dict(block="basic", channel_attention=False, kind="none", mask="none", prior="gaussian"),
  # MSHNet (CVPR 2024): CBAM channel + free 7x7 spatial attention.
  "mshnet": dict(block="basic", channel_attention=True, kind="cbam", mask="none", prior="gaussian"),
  # The paper's model (L1 = the diff scale loss, chosen in config.loss).
  "l1_gp_rotated": dict(_GP, mask="rotated"),
  # The same architecture under the name the paper's ablation rows give it (the loss is
  # not part of a model): an alias, so a config can name the row it reproduces.
  "gp_rotated": dict(_GP, mask="rotated"),
  # Ablations: unrotated mask (theta fixed at theta_init), Gaussian only.
  "gp_fixed": dict(_GP, mask="fixed"),
  "gp_nomask": dict(_GP, mask="none"),
  # PConv baseline: MSHNet with conv1 of every residual block replaced by PConv.
  "pconv_unet": dict(
    block="pconv", channel_attention=True, kind="cbam", mask="none", prior="gaussian"
  ),
}
MODEL_NAMES = tuple(PRESETS) + ("custom",)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def default_model_config() -> ml_collections.ConfigDict:
  """Default ``config.model`` (MSHNet-sized, the paper's model)."""
  c = ml_collections.ConfigDict()
  c.name = "l1_gp_rotated"
  c.channels = (16, 32, 64, 128, 256)
  c.blocks = (2, 2, 2, 2)
  c.dtype = "float32"  # compute dtype; params / batch_stats stay float32
  c.deep_supervision = True
  c.bn_momentum = 0.9  # flax convention (PyTorch momentum 0.1)
  c.bn_epsilon = 1e-5
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


def resolve_model_config(model_config) -> ml_collections.ConfigDict:
  """A copy of model_config with the name's preset applied (see module doc)."""
  cfg = ml_collections.ConfigDict(default_model_config().to_dict())
  cfg.update(model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config))
  name = cfg.name
  if name not in MODEL_NAMES:
    raise ValueError(f"unknown model name {name!r}; choose from {MODEL_NAMES}")
  if name == "custom":
    return cfg
  for key, value in PRESETS[name].items():
    target = cfg if key in ("block", "channel_attention") else cfg.attention
    if target[key] != value:
      logging.info("model %s: %s=%r overrides config value %r", name, key, value, target[key])
    target[key] = value
  return cfg


def create_model(model_config) -> UNet:
  """Builds the model named by ``model_config.name`` (see PRESETS)."""
  cfg = resolve_model_config(model_config)
  if cfg.dtype not in _DTYPES:
    raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {cfg.dtype!r}")
  return UNet(
    channels=tuple(int(c) for c in cfg.channels),
    blocks=tuple(int(b) for b in cfg.blocks),
    attention=AttentionSpec.from_config(cfg.attention),
    channel_attention=bool(cfg.channel_attention),
    block=cfg.block,
    deep_supervision=bool(cfg.deep_supervision),
    bn_momentum=float(cfg.bn_momentum),
    bn_epsilon=float(cfg.bn_epsilon),
    dtype=_DTYPES[cfg.dtype],
  )


__all__ = [
  "AttentionSpec",
  "ChannelAttention",
  "GaussianSpatialAttention",
  "MODEL_NAMES",
  "PRESETS",
  "PinwheelConv",
  "ResidualBlock",
  "SpatialAttention",
  "UNet",
  "count_params",
  "create_model",
  "default_model_config",
  "gaussian_kernel_parts",
  "gaussian_prior",
  "model_stats",
  "pinwheel_mask",
  "pinwheel_soft_mask",
  "print_model_table",
  "resolve_model_config",
]
