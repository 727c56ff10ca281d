"""Idiomatic PyTorch versions of the project's networks, the baseline of tools.bench.benchmark.

The parity reference (tests/reference_torch) is written for number-for-number agreement
and weight conversion: a hand-written BatchNorm with Flax's running-variance update,
kernel offsets and masks created on every call, configurable every which way.  It is
the anchor for correctness, not a fair speed baseline.  This module writes the same
networks the way a PyTorch user writes them:

* ``mshnet``: MSHNet (Liu et al., CVPR 2024) as its authors build it.  Residual blocks
  conv3x3-BN-ReLU-conv3x3-BN, then CBAM channel attention (a shared 1x1-conv MLP, ratio
  16, on global average and max pooling) and CBAM spatial attention (a free 7x7 conv on
  the channel mean and max), a 1x1 conv + BN shortcut where the width changes, ReLU
  after the sum.  A five-level U-Net (``nn.Sequential`` stages, ``nn.MaxPool2d``,
  ``nn.Upsample``, concatenated skips) with deep supervision: a 1x1 side output per
  decoder level and a 3x3 conv fusing the upsampled side outputs.  ``nn.BatchNorm2d``.
* ``l1_gp_rotated`` (alias ``gp_rotated``): the same network with the spatial
  attention's free kernel replaced by the paper's K = A * G_sigma * M_theta.  The
  kernel geometry (offset angles, radii, the centre pixel) is computed once, at
  construction, as non-persistent buffers; the kernel is built once per forward with
  vector ops (softplus, exp, cos, a straight-through round) and applied with
  ``F.conv2d``.  No tensor is created per call.
* ``unet``: the same U-Net without attention.
* The losses as vectorised tensor code over the batch: the scale loss with the
  ``diff`` weight (the paper) or the ``var`` weight (MSHNet's SLS IoU loss), MSHNet's
  location loss, and the deep-supervision average.

Deliberate differences from MSHNet's code, so that this is the same function as the
project's model and loss (``tests/test_benchmark.py`` loads the JAX weights and
compares outputs); none changes the amount of work:

* one input channel (MSHNet's training script builds the network for 3);
* bilinear upsampling with ``align_corners=False`` (MSHNet: True), the project's
  convention;
* deep supervision upsamples the side logits to the mask size (the project's loss);
  MSHNet's script max-pools the labels down to each side output instead;
* the loss is the post-warm-up branch (weighted, with the location term when asked):
  what a training step costs for all but the first few epochs;
* H and W must be multiples of 16 (floor-mode pooling and x2 upsampling, as MSHNet);
  the project's ceil-mode pooling and crop-back handle any size and agree with this
  on those sizes;
* PyTorch's own ``nn.BatchNorm2d`` updates its running variance with the unbiased
  batch variance, the project (Flax) with the biased one: the outputs of a train step
  are the same, the running statistics after it differ by n / (n - 1).

Module names follow the project's Flax parameter paths (``encoder_1.block_0.conv1``,
``decoder_0.block_0.spatial_attention.amplitude``, ``output_2``, ``final``), so a
state_dict made by the weight converter (irstd_jax.torch_weights) loads here
with ``strict=True``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any

import torch
from torch import nn
import torch.nn.functional as F

MODEL_NAMES = ("mshnet", "l1_gp_rotated", "gp_rotated", "unet")
_LOCATION_D = 1e-8  # MSHNet's location-loss constant


# ------------------------------------------------------------------------------ attention
def spatial_descriptor(x: torch.Tensor) -> torch.Tensor:
  """(N, C, H, W) -> (N, 2, H, W): channel mean, channel max."""
  return torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)


class ChannelAttention(nn.Module):
  """CBAM channel attention: x * sigmoid(MLP(avgpool x) + MLP(maxpool x))."""

  def __init__(self, channels: int, ratio: int = 16):
    super().__init__()
    hidden = max(channels // ratio, 1)
    self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
    self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

  def mlp(self, v: torch.Tensor) -> torch.Tensor:
    return self.fc2(F.relu(self.fc1(v)))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    att = self.mlp(F.adaptive_avg_pool2d(x, 1)) + self.mlp(F.adaptive_max_pool2d(x, 1))
    return x * torch.sigmoid(att)


class SpatialAttention(nn.Module):
  """CBAM spatial attention: x * sigmoid(conv7x7(mean_c x, max_c x)), a free kernel."""

  def __init__(self, kernel_size: int = 7):
    super().__init__()
    self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(self.conv(spatial_descriptor(x)))


class GaussianPinwheelAttention(nn.Module):
  """The paper's spatial attention: x * sigmoid(conv(D(x), K)), K = A * G_sigma * M_theta.

  sigma = softplus(rho) + sigma_min; G = exp(-r^2 / (2 sigma^2)); the soft pinwheel
  m = (1 + cos(n (phi - theta - twist r))) / 2 with the centre pixel 1, rounded to
  0/1 in the forward pass with an identity gradient; A a learned (1, 2, k, k) amplitude.
  Offsets: element [i, j] sits at u = j - c (right), v = i - c (down).
  """

  def __init__(
    self,
    kernel_size: int = 7,
    num_blades: int = 4,
    twist: float = 0.3,
    sigma_min: float = 0.5,
    sigma_init: float = 1.5,
    amplitude_init: float = 1.0 / 14.0,
    theta_init: float = 0.0,
  ):
    super().__init__()
    if kernel_size % 2 != 1 or sigma_init <= sigma_min:
      raise ValueError("kernel_size must be odd and sigma_init > sigma_min")
    self.padding = kernel_size // 2
    self.num_blades = num_blades
    self.sigma_min = sigma_min
    offsets = torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2
    v, u = torch.meshgrid(offsets, offsets, indexing="ij")
    r2 = u * u + v * v
    # Geometry is fixed: computed here once, moved with the module, not saved.
    self.register_buffer("r2", r2, persistent=False)
    self.register_buffer("phi", torch.atan2(v, u), persistent=False)
    self.register_buffer("twist_r", twist * torch.sqrt(r2), persistent=False)
    self.register_buffer("centre", r2 == 0, persistent=False)
    s = sigma_init - sigma_min
    self.rho = nn.Parameter(torch.tensor(s + math.log(-math.expm1(-s))))  # softplus^-1(s)
    self.theta = nn.Parameter(torch.tensor(float(theta_init)))
    self.amplitude = nn.Parameter(torch.full((1, 2, kernel_size, kernel_size), amplitude_init))

  def kernel(self) -> torch.Tensor:
    """The (1, 2, k, k) conv weight."""
    sigma = F.softplus(self.rho) + self.sigma_min
    prior = torch.exp(-self.r2 / (2.0 * sigma * sigma))
    soft = 0.5 * (1.0 + torch.cos(self.num_blades * (self.phi - self.theta - self.twist_r)))
    soft = soft.masked_fill(self.centre, 1.0)
    mask = soft + (torch.round(soft) - soft).detach()  # straight-through round
    return self.amplitude * (prior * mask)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    att = F.conv2d(spatial_descriptor(x), self.kernel(), padding=self.padding)
    return x * torch.sigmoid(att)


# ---------------------------------------------------------------------------------- model
class ResidualBlock(nn.Module):
  """conv-BN-ReLU-conv-BN, channel and spatial attention, shortcut, ReLU."""

  def __init__(
    self,
    cin: int,
    cout: int,
    spatial_attention: Callable[[], nn.Module] | None,
    channel_attention: bool = True,
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
  ):
    super().__init__()
    bn = lambda c: nn.BatchNorm2d(c, eps=bn_eps, momentum=bn_momentum)
    self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
    self.bn1 = bn(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
    self.bn2 = bn(cout)
    self.channel_attention = ChannelAttention(cout) if channel_attention else nn.Identity()
    self.spatial_attention = spatial_attention() if spatial_attention else nn.Identity()
    if cin != cout:
      self.shortcut_conv = nn.Conv2d(cin, cout, 1)
      self.shortcut_bn = bn(cout)
    else:
      self.shortcut_conv = self.shortcut_bn = None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    residual = x if self.shortcut_conv is None else self.shortcut_bn(self.shortcut_conv(x))
    y = F.relu(self.bn1(self.conv1(x)), inplace=True)
    y = self.bn2(self.conv2(y))
    y = self.spatial_attention(self.channel_attention(y))
    return F.relu(y + residual, inplace=True)


class UNet(nn.Module):
  """MSHNet's U-Net.  forward((N, 1, H, W), H and W multiples of 16) ->
  (fused logits (N, 1, H, W), side logits ((N, 1, H / 2^k, W / 2^k) for k = 0..3))."""

  def __init__(
    self,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    blocks: Sequence[int] = (2, 2, 2, 2),
    spatial_attention: Callable[[], nn.Module] | None = SpatialAttention,
    channel_attention: bool = True,
    bn_momentum: float = 0.1,
    bn_eps: float = 1e-5,
  ):
    super().__init__()
    c, b = tuple(channels), tuple(blocks)
    if len(c) != 5 or len(b) != 4:
      raise ValueError("channels needs 5 entries and blocks 4")

    def stage(cin, cout, n):
      block = lambda i: ResidualBlock(
        cin if i == 0 else cout, cout, spatial_attention, channel_attention, bn_momentum, bn_eps
      )
      return nn.Sequential(OrderedDict((f"block_{i}", block(i)) for i in range(n)))

    self.stem = nn.Conv2d(1, c[0], 1)
    self.encoder_0 = stage(c[0], c[0], 1)
    self.encoder_1 = stage(c[0], c[1], b[0])
    self.encoder_2 = stage(c[1], c[2], b[1])
    self.encoder_3 = stage(c[2], c[3], b[2])
    self.middle = stage(c[3], c[4], b[3])
    self.decoder_3 = stage(c[3] + c[4], c[3], b[2])
    self.decoder_2 = stage(c[2] + c[3], c[2], b[1])
    self.decoder_1 = stage(c[1] + c[2], c[1], b[0])
    self.decoder_0 = stage(c[0] + c[1], c[0], 1)
    self.output_0 = nn.Conv2d(c[0], 1, 1)
    self.output_1 = nn.Conv2d(c[1], 1, 1)
    self.output_2 = nn.Conv2d(c[2], 1, 1)
    self.output_3 = nn.Conv2d(c[3], 1, 1)
    self.final = nn.Conv2d(4, 1, 3, padding=1)
    self.pool = nn.MaxPool2d(2, 2)
    self.up2, self.up4, self.up8 = (
      nn.Upsample(scale_factor=f, mode="bilinear", align_corners=False) for f in (2, 4, 8)
    )

  def forward(self, x: torch.Tensor):
    e0 = self.encoder_0(self.stem(x))
    e1 = self.encoder_1(self.pool(e0))
    e2 = self.encoder_2(self.pool(e1))
    e3 = self.encoder_3(self.pool(e2))
    m = self.middle(self.pool(e3))
    d3 = self.decoder_3(torch.cat([e3, self.up2(m)], 1))
    d2 = self.decoder_2(torch.cat([e2, self.up2(d3)], 1))
    d1 = self.decoder_1(torch.cat([e1, self.up2(d2)], 1))
    d0 = self.decoder_0(torch.cat([e0, self.up2(d1)], 1))
    sides = (self.output_0(d0), self.output_1(d1), self.output_2(d2), self.output_3(d3))
    fused = torch.cat([sides[0], self.up2(sides[1]), self.up4(sides[2]), self.up8(sides[3])], 1)
    return self.final(fused), sides


def create_model(model_config: Mapping[str, Any]) -> UNet:
  """The model of a *resolved* project model config (``irstd_jax.models.
  resolve_model_config``: presets applied; a mapping or ConfigDict).  Raises ValueError
  for a setting this module does not implement, instead of building another network."""
  cfg = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
  att = dict(cfg["attention"])
  if cfg["name"] not in MODEL_NAMES:
    raise ValueError(f"no idiomatic PyTorch model for {cfg['name']!r}; have {MODEL_NAMES}")
  if cfg["block"] != "basic" or not cfg["deep_supervision"] or cfg["dtype"] != "float32":
    raise ValueError("idiomatic models are basic-block, deep-supervised, float32")
  if att["kind"] == "cbam":
    spatial = lambda: SpatialAttention(att["kernel_size"])
  elif att["kind"] == "gaussian":
    if (att["mask"], att["prior"], att["per_channel_sigma"], att["learn_amplitude"]) != (
      "rotated",
      "gaussian",
      False,
      True,
    ):
      raise ValueError(f"idiomatic Gaussian attention is the paper's setting only, got {att}")
    spatial = lambda: GaussianPinwheelAttention(
      att["kernel_size"],
      att["num_blades"],
      att["twist"],
      att["sigma_min"],
      att["sigma_init"],
      att["amplitude_init"],
      att["theta_init"],
    )
  elif att["kind"] == "none":
    spatial = None
  else:
    raise ValueError(f"unknown attention kind {att['kind']!r}")
  return UNet(
    cfg["channels"],
    cfg["blocks"],
    spatial,
    bool(cfg["channel_attention"]),
    bn_momentum=1.0 - float(cfg["bn_momentum"]),  # Flax momentum 0.9 = PyTorch 0.1
    bn_eps=float(cfg["bn_epsilon"]),
  )


# --------------------------------------------------------------------------------- losses
def location_loss(probs, masks, centroid: str = "centroid", eps: float = 1e-6):
  """MSHNet's location loss, mean over the batch of (1 - length ratio) + angle term.

  probs, masks: (N, 1, H, W).  centroid: 'centroid' (sum(x p) / (sum p + eps)) or
  'mshnet' (MSHNet's first moment mean(x p)); coordinates x = j / W, y = i / H.
  """
  h, w = probs.shape[-2:]
  xs = torch.arange(w, device=probs.device, dtype=probs.dtype) / w
  ys = (torch.arange(h, device=probs.device, dtype=probs.dtype) / h)[:, None]

  def centre(maps):
    den = maps.sum((1, 2, 3)) + eps if centroid == "centroid" else h * w
    return (maps * xs).sum((1, 2, 3)) / den, (maps * ys).sum((1, 2, 3)) / den

  (pcx, pcy), (tcx, tcy) = centre(probs), centre(masks)
  d = _LOCATION_D
  angle = (4.0 / math.pi**2) * (torch.atan(pcy / (pcx + d)) - torch.atan(tcy / (tcx + d))) ** 2
  lp = torch.sqrt(pcx * pcx + pcy * pcy + d)
  lt = torch.sqrt(tcx * tcx + tcy * tcy + d)
  length = 1.0 - torch.minimum(lp, lt) / (torch.maximum(lp, lt) + d)
  return (length + angle).mean()


def scale_loss(
  logits,
  masks,
  weight: str = "diff",
  smooth: float = 1.0,
  eps: float = 1e-6,
  location_weight: float = 0.0,
  location_centroid: str = "centroid",
):
  """1 - mean_b(w_b IoU_b) (+ location_weight * location loss), logits/masks (N, 1, H, W).

  w = 1 - |Ap - At| / (Ap + At + eps) ('diff', the paper) or, with v = ((Ap - At) / 2)^2,
  (min(Ap, At) + v + eps) / (max(Ap, At) + v + eps) ('var', MSHNet's SLS weight).
  """
  probs = torch.sigmoid(logits)
  ap, at = probs.sum((1, 2, 3)), masks.sum((1, 2, 3))
  inter = (probs * masks).sum((1, 2, 3))
  iou = (inter + smooth) / (ap + at - inter + smooth)
  if weight == "diff":
    w = 1.0 - (ap - at).abs() / (ap + at + eps)
  elif weight == "var":
    v = ((ap - at) / 2.0) ** 2
    w = (torch.minimum(ap, at) + v + eps) / (torch.maximum(ap, at) + v + eps)
  else:
    raise ValueError(f"unknown scale weight {weight!r}; expected 'diff' or 'var'")
  loss = 1.0 - (w * iou).mean()
  if location_weight:
    loss = loss + location_weight * location_loss(probs, masks, location_centroid, eps)
  return loss


def deep_supervision_loss(logits, side_logits, masks, **loss_kwargs):
  """(L(fused) + sum_k L(side_k upsampled to the mask size)) / (1 + K)."""
  hw = masks.shape[-2:]
  total = scale_loss(logits, masks, **loss_kwargs)
  for side in side_logits:
    if side.shape[-2:] != hw:
      side = F.interpolate(side, size=hw, mode="bilinear", align_corners=False)
    total = total + scale_loss(side, masks, **loss_kwargs)
  return total / (1 + len(side_logits))


def loss_kwargs(loss_config: Mapping[str, Any]) -> dict[str, Any]:
  """scale_loss keyword arguments of a project loss config (``config.loss``), for the
  settings this module implements (scale loss, per-image reduction, b_over = b_under =
  1, weight not detached); ValueError otherwise."""
  c = loss_config.to_dict() if hasattr(loss_config, "to_dict") else dict(loss_config)
  if (c["name"], c["reduction"], c["b_over"], c["b_under"], c["detach_weight"]) != (
    "scale",
    "per_image",
    1.0,
    1.0,
    False,
  ):
    raise ValueError(f"idiomatic loss implements the plain scale loss only, got {c}")
  return dict(
    weight=c["scale_weight"],
    smooth=float(c["smooth"]),
    eps=float(c["eps"]),
    location_weight=float(c["location_weight"]),
    location_centroid=c["location_centroid"],
  )
