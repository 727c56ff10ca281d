"""PyTorch reference of the model family (SPEC.md section 4), NCHW.

Same architecture as ``irstd_jax.models.UNet`` and the same module names, so that a
state_dict key is the Flax parameter path joined by dots (``encoder_1.block_0.conv1``):

  stem (1x1, bias) -> encoder_0 (1 block, c0) -> [maxpool -> encoder_k (b_{k-1} blocks)]
  for k = 1..3 -> maxpool -> middle (b3 blocks, c4) -> decoder_3..decoder_0, each on
  cat(skip, crop(up2(deeper))) -> output_k (1x1, bias) side logits at 1/2^k ->
  final (3x3, bias) on cat(side_0, crop(up2 side_1), crop(up4 side_2), crop(up8 side_3)).

Any H, W: max pooling is 2x2/2 with ceil_mode=True (level k has ceil(H / 2^k) rows);
upsampling is bilinear (align_corners=False) by an integer factor, then the bottom/right
excess is cropped to the skip's size.

BatchNorm: :class:`BatchNorm2d` is ``nn.BatchNorm2d`` (momentum = 1 - flax momentum,
same eps) whose train-mode running-variance update uses the *biased* batch variance,
as Flax does; ``unbiased_running_var=True`` restores PyTorch's n / (n - 1) update.
The normalisation itself (batch mean and biased variance in train mode, running
statistics in eval mode) is PyTorch's.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

from reference_torch.attention import ChannelAttention
from reference_torch.attention import make_spatial_attention


class BatchNorm2d(nn.BatchNorm2d):
  """nn.BatchNorm2d with Flax's running-variance update (biased batch variance)."""

  def __init__(self, num_features, eps=1e-5, momentum=0.1, unbiased_running_var=False):
    super().__init__(num_features, eps=eps, momentum=momentum)
    self.unbiased_running_var = unbiased_running_var

  def forward(self, x):
    if not self.training or self.unbiased_running_var:
      return super().forward(x)
    mean = x.mean((0, 2, 3))
    var = x.var((0, 2, 3), unbiased=False)
    with torch.no_grad():
      self.running_mean.mul_(1.0 - self.momentum).add_(self.momentum * mean)
      self.running_var.mul_(1.0 - self.momentum).add_(self.momentum * var)
      self.num_batches_tracked.add_(1)
    y = (x - mean[None, :, None, None]) * torch.rsqrt(var[None, :, None, None] + self.eps)
    return y * self.weight[None, :, None, None] + self.bias[None, :, None, None]


class PinwheelConv(nn.Module):
  """PConv (Yang et al., AAAI 2025): four asymmetrically padded strip convs (the two
  horizontal ones share conv_w/bn_w, the two vertical ones conv_h/bn_h), each
  conv-BN-SiLU, concatenated and fused by a 2x2 conv, BN, SiLU."""

  def __init__(self, cin, features, k=3, bn=None):
    super().__init__()
    q = features // 4
    self.k = k
    self.conv_w = nn.Conv2d(cin, q, (1, k), bias=False)
    self.bn_w = bn(q)
    self.conv_h = nn.Conv2d(cin, q, (k, 1), bias=False)
    self.bn_h = bn(q)
    self.fuse = nn.Conv2d(features, features, 2, bias=False)
    self.bn_fuse = bn(features)

  def forward(self, x):
    k = self.k
    # F.pad order: (left, right, top, bottom)
    pads = [(k, 0, 1, 0), (0, k, 0, 1), (0, 1, k, 0), (1, 0, 0, k)]
    outs = []
    for i, p in enumerate(pads):
      conv, bn = (self.conv_w, self.bn_w) if i < 2 else (self.conv_h, self.bn_h)
      outs.append(F.silu(bn(conv(F.pad(x, p)))))
    return F.silu(self.bn_fuse(self.fuse(torch.cat(outs, 1))))


class ResidualBlock(nn.Module):
  def __init__(
    self,
    cin,
    features,
    attention: Mapping[str, Any],
    channel_attention=True,
    block="basic",
    bn=None,
  ):
    super().__init__()
    if cin != features:
      self.shortcut_conv = nn.Conv2d(cin, features, 1)
      self.shortcut_bn = bn(features)
    else:
      self.shortcut_conv = None
    if block == "basic":
      self.conv1 = nn.Conv2d(cin, features, 3, padding=1)
      self.bn1 = bn(features)
      self.pconv = None
    elif block == "pconv":
      self.pconv = PinwheelConv(cin, features, 3, bn)
    else:
      raise ValueError(block)
    self.conv2 = nn.Conv2d(features, features, 3, padding=1)
    self.bn2 = bn(features)
    self.channel_attention = ChannelAttention(features) if channel_attention else None
    self.spatial_attention = make_spatial_attention(attention)

  def forward(self, x):
    res = self.shortcut_bn(self.shortcut_conv(x)) if self.shortcut_conv is not None else x
    y = self.pconv(x) if self.pconv is not None else F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.channel_attention is not None:
      y = self.channel_attention(y)
    if self.spatial_attention is not None:
      y = self.spatial_attention(y)
    return F.relu(y + res)


class Stage(nn.Module):
  def __init__(self, cin, features, num_blocks, **kw):
    super().__init__()
    self.n = num_blocks
    for j in range(num_blocks):
      self.add_module(f"block_{j}", ResidualBlock(cin if j == 0 else features, features, **kw))

  def forward(self, x):
    for j in range(self.n):
      x = getattr(self, f"block_{j}")(x)
    return x


def maxpool2(x):
  return F.max_pool2d(x, 2, 2, ceil_mode=True)


def upsample(x, factor, size):
  h, w = x.shape[-2:]
  y = F.interpolate(x, size=(h * factor, w * factor), mode="bilinear", align_corners=False)
  return y[..., : size[0], : size[1]]


class UNet(nn.Module):
  """forward(images (N, 1, H, W)) -> (logits (N, 1, H, W), side logits tuple)."""

  def __init__(
    self,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    blocks: Sequence[int] = (2, 2, 2, 2),
    attention: Mapping[str, Any] = None,
    channel_attention=True,
    block="basic",
    deep_supervision=True,
    bn_momentum=0.9,
    bn_epsilon=1e-5,
    unbiased_running_var=False,
  ):
    super().__init__()
    c, b = tuple(channels), tuple(blocks)
    self.deep_supervision = deep_supervision

    def bn(n):
      return BatchNorm2d(
        n, eps=bn_epsilon, momentum=1.0 - bn_momentum, unbiased_running_var=unbiased_running_var
      )

    kw = dict(attention=attention, channel_attention=channel_attention, block=block, bn=bn)
    self.stem = nn.Conv2d(1, c[0], 1)
    self.encoder_0 = Stage(c[0], c[0], 1, **kw)
    self.encoder_1 = Stage(c[0], c[1], b[0], **kw)
    self.encoder_2 = Stage(c[1], c[2], b[1], **kw)
    self.encoder_3 = Stage(c[2], c[3], b[2], **kw)
    self.middle = Stage(c[3], c[4], b[3], **kw)
    self.decoder_3 = Stage(c[3] + c[4], c[3], b[2], **kw)
    self.decoder_2 = Stage(c[2] + c[3], c[2], b[1], **kw)
    self.decoder_1 = Stage(c[1] + c[2], c[1], b[0], **kw)
    self.decoder_0 = Stage(c[0] + c[1], c[0], 1, **kw)
    self.output_0 = nn.Conv2d(c[0], 1, 1)
    if deep_supervision:
      self.output_1 = nn.Conv2d(c[1], 1, 1)
      self.output_2 = nn.Conv2d(c[2], 1, 1)
      self.output_3 = nn.Conv2d(c[3], 1, 1)
      self.final = nn.Conv2d(4, 1, 3, padding=1)

  def forward(self, images):
    e0 = self.encoder_0(self.stem(images))
    e1 = self.encoder_1(maxpool2(e0))
    e2 = self.encoder_2(maxpool2(e1))
    e3 = self.encoder_3(maxpool2(e2))
    m = self.middle(maxpool2(e3))

    def up_cat(skip, deep):
      return torch.cat([skip, upsample(deep, 2, skip.shape[-2:])], 1)

    d3 = self.decoder_3(up_cat(e3, m))
    d2 = self.decoder_2(up_cat(e2, d3))
    d1 = self.decoder_1(up_cat(e1, d2))
    d0 = self.decoder_0(up_cat(e0, d1))
    out0 = self.output_0(d0)
    if not self.deep_supervision:
      return out0, ()
    sides = [out0, self.output_1(d1), self.output_2(d2), self.output_3(d3)]
    hw = images.shape[-2:]
    fused = torch.cat([sides[0]] + [upsample(s, 2**k, hw) for k, s in enumerate(sides) if k], 1)
    return self.final(fused), tuple(sides)


def create_model(model_config, unbiased_running_var=False) -> UNet:
  """Reference model from an already *resolved* model config (a mapping or ConfigDict
  as ``irstd_jax.models.resolve_model_config`` returns: presets applied).  This module
  does not resolve model names itself, so it never imports the JAX code."""
  cfg = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
  att = dict(cfg["attention"])
  return UNet(
    channels=tuple(cfg["channels"]),
    blocks=tuple(cfg["blocks"]),
    attention=att,
    channel_attention=bool(cfg["channel_attention"]),
    block=cfg["block"],
    deep_supervision=bool(cfg["deep_supervision"]),
    bn_momentum=float(cfg["bn_momentum"]),
    bn_epsilon=float(cfg["bn_epsilon"]),
    unbiased_running_var=unbiased_running_var,
  )
