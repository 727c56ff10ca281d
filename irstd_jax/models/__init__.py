"""Model family: MSHNet-style U-Nets with CBAM or Gaussian-pinwheel attention.

Public API:
  create_model(model_config) -> flax.linen.Module (a :class:`UNet`)
  MODEL_NAMES: the names ``config.model.name`` accepts
  ARCHITECTURES: per-name settings that create_model applies

Call convention (docs/interfaces.md):
  logits, side_logits = model.apply(variables, images, train=False)
  (logits, side_logits), new_state = model.apply(
      variables, images, train=True, mutable=['batch_stats'])

A model *name* is a preset: it sets the architecture switches listed in ARCHITECTURES
(``block``, ``channel_attention``, ``attention.kind``, ``attention.mask``,
``attention.prior``), an expansion `preset_summary` states and main prints. A config
that sets one of those to a value other than both its default and the preset's is refused
(`preset_conflicts`, read by config validation): nothing a user writes is silently
ignored. Every other field comes from the config; ``name='custom'`` takes the switches
from the config too.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import ml_collections

from irstd_jax import default_config
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

_GP = dict(block="basic", channel_attention=True, kind="gaussian", prior="gaussian")

ARCHITECTURES = {
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
MODEL_NAMES = tuple(ARCHITECTURES) + ("custom",)

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _preset_paths(name: str) -> dict[str, Any]:
  """{'block': ..., 'attention.kind': ...}: the fields the preset `name` sets."""
  return {
    (key if key in ("block", "channel_attention") else f"attention.{key}"): value
    for key, value in ARCHITECTURES.get(name, {}).items()
  }


def preset_conflicts(model_config) -> list[tuple[str, Any, Any]]:
  """(field, value, preset value) for every preset field set to a value that is neither
  its default nor the preset's: a value the preset would override."""
  cfg = default_config.with_defaults(model_config, "model.")
  defaults = default_config.model_config()
  return [
    (f"model.{path}", default_config.lookup(cfg, path), value)
    for path, value in _preset_paths(cfg.name).items()
    if default_config.lookup(cfg, path) not in (value, default_config.lookup(defaults, path))
  ]


def preset_summary(model_config) -> str:
  """One line: what the model name sets ('' for 'custom')."""
  name = model_config.name
  fields = ", ".join(f"{path}={value!r}" for path, value in _preset_paths(name).items())
  return f"model.name={name!r} sets {fields}" if fields else ""


def resolve_model_config(model_config) -> ml_collections.ConfigDict:
  """A copy of model_config over the defaults with the name's preset applied (module doc)."""
  cfg = default_config.with_defaults(model_config, "model.")
  if cfg.name not in MODEL_NAMES:
    raise ValueError(f"unknown model name {cfg.name!r}; choose from {MODEL_NAMES}")
  for path, value in _preset_paths(cfg.name).items():
    parent, _, leaf = path.rpartition(".")
    (default_config.lookup(cfg, parent) if parent else cfg)[leaf] = value
  return cfg


def create_model(model_config) -> UNet:
  """Builds the model named by ``model_config.name`` (see ARCHITECTURES)."""
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
    output_prior=float(cfg.output_prior),
  )


def print_model_table(size: int = 256):
  """Prints params, GMACs and XLA GFLOPs of every model name at size x size.

  python -c 'import irstd_jax.models as m; m.print_model_table(256)'
  """
  print(f"input 1x{size}x{size}x1, eval mode, float32, default config per name")
  print(f"{'name':<16}{'params':>12}{'GMACs':>10}{'XLA GFLOPs':>12}")
  for name in MODEL_NAMES:
    cfg = default_config.model_config()
    cfg.name = name
    s = model_stats(create_model(cfg), size, size)
    print(f"{name:<16}{s['params']:>12,d}{s['macs'] / 1e9:>10.3f}{s['xla_flops'] / 1e9:>12.3f}")


__all__ = [
  "AttentionSpec",
  "ChannelAttention",
  "GaussianSpatialAttention",
  "MODEL_NAMES",
  "ARCHITECTURES",
  "PinwheelConv",
  "ResidualBlock",
  "SpatialAttention",
  "UNet",
  "count_params",
  "create_model",
  "gaussian_kernel_parts",
  "gaussian_prior",
  "model_stats",
  "pinwheel_mask",
  "pinwheel_soft_mask",
  "preset_conflicts",
  "preset_summary",
  "print_model_table",
  "resolve_model_config",
]
