"""PyTorch reference of the attention modules (SPEC.md section 3), NCHW.

Kernel offsets: element [i, j] of a k x k kernel (centre c = k // 2) sits at
u = j - c (right), v = i - c (down); phi = atan2(v, u), r = sqrt(u^2 + v^2).
Descriptor D = cat(mean_c x, max_c x): input channel 0 = mean, 1 = max.

Parameter layout (PyTorch side; the converter maps it to Flax):
  ChannelAttention:        fc1.weight (C/r, C, 1, 1), fc2.weight (C, C/r, 1, 1)  (1x1 convs)
  SpatialAttention (CBAM): conv.weight (1, 2, k, k)
  GaussianSpatialAttention: rho () or (2,), theta () (mask='rotated' only),
                            amplitude (1, 2, k, k)
"""

from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


def softplus_inverse(y: float) -> float:
  return y + math.log(-math.expm1(-y))


def offsets(k: int, device=None):
  c = k // 2
  r = torch.arange(k, dtype=torch.float32, device=device) - c
  v, u = torch.meshgrid(r, r, indexing="ij")  # v varies along rows, u along columns
  return u, v


def gaussian_prior(sigma, k: int):
  """exp(-(u^2 + v^2) / (2 sigma^2)): (k, k) for a scalar sigma, (C, k, k) for (C,)."""
  u, v = offsets(k, sigma.device)
  r2 = u * u + v * v
  if sigma.dim() == 0:
    return torch.exp(-r2 / (2.0 * sigma * sigma))
  return torch.exp(-r2[None] / (2.0 * sigma[:, None, None] ** 2))


def pinwheel_soft_mask(theta, k: int, num_blades: int, twist: float):
  u, v = offsets(k, theta.device)
  phi = torch.atan2(v, u)
  r = torch.sqrt(u * u + v * v)
  m = 0.5 * (1.0 + torch.cos(num_blades * (phi - theta - twist * r)))
  centre = torch.zeros(k, k, dtype=torch.bool, device=theta.device)
  centre[k // 2, k // 2] = True
  return torch.where(centre, torch.ones_like(m), m)


def ste_round(m):
  """round(m) forward (half to even), identity gradient."""
  return m + (torch.round(m) - m).detach()


def gaussian_kernel(
  rho,
  theta,
  amplitude,
  *,
  k,
  num_blades,
  twist,
  sigma_min,
  mask="rotated",
  prior="gaussian",
  hard=True,
):
  """K = A * G * M as a (1, 2, k, k) conv weight; also returns (sigma, G, m, M)."""
  sigma = F.softplus(rho) + sigma_min
  if prior == "gaussian":
    g = gaussian_prior(sigma, k)
    g = g.expand(2, k, k) if g.dim() == 2 else g
  elif prior == "none":
    g = torch.ones(2, k, k, device=rho.device)
  else:
    raise ValueError(prior)
  if mask in ("rotated", "fixed"):
    soft = pinwheel_soft_mask(theta, k, num_blades, twist)
    m = ste_round(soft) if hard else soft
  elif mask == "none":
    soft = m = torch.ones(k, k, device=rho.device)
  else:
    raise ValueError(mask)
  kernel = amplitude * (g * m[None])[None]
  return kernel, (sigma, g, soft, m)


def spatial_descriptor(x):
  return torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)


class ChannelAttention(nn.Module):
  """x * sigmoid(MLP(avgpool x) + MLP(maxpool x)); MLP = 1x1 conv, ReLU, 1x1 conv."""

  def __init__(self, channels: int, ratio: int = 16):
    super().__init__()
    hidden = max(channels // ratio, 1)
    self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
    self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

  def forward(self, x):
    avg = F.adaptive_avg_pool2d(x, 1)
    mx = F.adaptive_max_pool2d(x, 1)
    att = self.fc2(F.relu(self.fc1(avg))) + self.fc2(F.relu(self.fc1(mx)))
    return x * torch.sigmoid(att)


class SpatialAttention(nn.Module):
  """CBAM spatial attention with a free k x k kernel."""

  def __init__(self, kernel_size: int = 7):
    super().__init__()
    self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

  def forward(self, x):
    return x * torch.sigmoid(self.conv(spatial_descriptor(x)))


class GaussianSpatialAttention(nn.Module):
  """x * sigmoid(conv(D(x), A * G_sigma * M_theta)), kernel rebuilt every call."""

  def __init__(
    self,
    kernel_size=7,
    num_blades=4,
    twist=0.3,
    sigma_min=0.5,
    sigma_init=1.5,
    per_channel_sigma=False,
    mask="rotated",
    prior="gaussian",
    amplitude_init=1.0 / 14.0,
    theta_init=0.0,
    learn_amplitude=True,
  ):
    super().__init__()
    self.k, self.num_blades, self.twist = kernel_size, num_blades, twist
    self.sigma_min, self.mask, self.prior = sigma_min, mask, prior
    rho0 = torch.full((2,) if per_channel_sigma else (), softplus_inverse(sigma_init - sigma_min))
    if prior == "gaussian":
      self.rho = nn.Parameter(rho0)
    else:
      self.register_buffer("rho", rho0, persistent=False)
    if mask == "rotated":
      self.theta = nn.Parameter(torch.tensor(float(theta_init)))
    else:
      self.register_buffer("theta", torch.tensor(float(theta_init)), persistent=False)
    amp = torch.full((1, 2, kernel_size, kernel_size), float(amplitude_init))
    if learn_amplitude:
      self.amplitude = nn.Parameter(amp)
    else:
      self.register_buffer("amplitude", amp, persistent=False)

  def kernel(self, hard=True):
    return gaussian_kernel(
      self.rho,
      self.theta,
      self.amplitude,
      k=self.k,
      num_blades=self.num_blades,
      twist=self.twist,
      sigma_min=self.sigma_min,
      mask=self.mask,
      prior=self.prior,
      hard=hard,
    )

  def forward(self, x):
    kernel, _ = self.kernel()
    att = F.conv2d(spatial_descriptor(x), kernel, padding=self.k // 2)
    return x * torch.sigmoid(att)


def make_spatial_attention(spec):
  """spec: a mapping with the fields of config.model.attention (after presets)."""
  kind = spec["kind"]
  if kind == "none":
    return None
  if kind == "cbam":
    return SpatialAttention(spec["kernel_size"])
  if kind == "gaussian":
    return GaussianSpatialAttention(
      spec["kernel_size"],
      spec["num_blades"],
      spec["twist"],
      spec["sigma_min"],
      spec["sigma_init"],
      spec["per_channel_sigma"],
      spec["mask"],
      spec["prior"],
      spec["amplitude_init"],
      spec["theta_init"],
      spec["learn_amplitude"],
    )
  raise ValueError(kind)
