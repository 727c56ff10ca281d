"""Attention modules: CBAM channel / spatial attention and the Gaussian-shaped
spatial attention with a rotated pinwheel mask (SPEC.md section 3).

Conventions (shared with the PyTorch reference / weight converter):

* Activations are NHWC.  Convolution kernels are HWIO (PyTorch: OIHW, convert with
  ``w_pt = w_flax.transpose(3, 2, 0, 1)``).  Dense kernels are (in, out)
  (PyTorch 1x1 conv weight (out, in, 1, 1): ``w_flax = w_pt[:, :, 0, 0].T``).
* Kernel offsets: for a k x k kernel with centre c = k // 2, the element
  ``kernel[i, j]`` (i = row = H index, j = column = W index) sits at offset
  ``u = j - c`` (horizontal, +u to the right) and ``v = i - c`` (vertical, +v
  *downwards*, i.e. image row order).  ``phi = atan2(v, u)`` and
  ``r = sqrt(u^2 + v^2)``.  With these axes ``np.rot90`` (counter-clockwise as
  displayed) maps ``phi -> phi - pi/2``, so ``rot90(K_theta) == K_{theta - pi/2}``.
* The spatial-attention descriptor is ``concat([mean_c F, max_c F], -1)``: input
  channel 0 of the 2->1 kernel is the mean, channel 1 the max (as in CBAM/MSHNet).
* All convolutions here use 'SAME' zero padding (PyTorch: ``padding=k // 2``) and
  have no bias.

Parameter names:

* ``ChannelAttention``: ``fc1/kernel`` (C, C//ratio), ``fc2/kernel`` (C//ratio, C).
* ``SpatialAttention`` (CBAM, free kernel): ``conv/kernel`` (k, k, 2, 1).
* ``GaussianSpatialAttention``: ``rho`` () or (2,) when ``per_channel_sigma``
  (sigma = softplus(rho) + sigma_min, one per descriptor channel), ``theta`` ()
  (only when ``mask == 'rotated'``), ``amplitude`` (k, k, 2, 1) HWIO, init
  ``amplitude_init`` (1/14).  The effective kernel is built every call by
  :func:`gaussian_kernel_parts`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any

_DN = ("NHWC", "HWIO", "NHWC")


# --------------------------------------------------------------------------
# Small pure functions.
# --------------------------------------------------------------------------


def softplus_inverse(y: float) -> float:
  """x such that softplus(x) = y (y > 0)."""
  y = float(y)
  if y <= 0:
    raise ValueError(f"softplus_inverse needs y > 0, got {y}")
  return y + math.log(-math.expm1(-y))


def kernel_offsets(kernel_size: int):
  """(u, v) float32 offset grids of shape (k, k); u along W, v along H (down)."""
  if kernel_size % 2 != 1:
    raise ValueError(f"kernel_size must be odd, got {kernel_size}")
  c = kernel_size // 2
  v, u = np.meshgrid(np.arange(kernel_size) - c, np.arange(kernel_size) - c, indexing="ij")
  return jnp.asarray(u, jnp.float32), jnp.asarray(v, jnp.float32)


def sigma_from_rho(rho, sigma_min: float):
  """sigma = softplus(rho) + sigma_min."""
  return jax.nn.softplus(rho) + sigma_min


def gaussian_prior(sigma, kernel_size: int):
  """G(u, v) = exp(-(u^2 + v^2) / (2 sigma^2)); max G = G(0, 0) = 1.

  sigma: scalar -> (k, k); shape (C,) -> (k, k, C) (one Gaussian per channel).
  """
  u, v = kernel_offsets(kernel_size)
  r2 = u * u + v * v
  sigma = jnp.asarray(sigma, jnp.float32)
  if sigma.ndim == 0:
    return jnp.exp(-r2 / (2.0 * sigma * sigma))
  return jnp.exp(-r2[..., None] / (2.0 * sigma * sigma))


def pinwheel_soft_mask(theta, kernel_size: int, num_blades: int, twist: float):
  """m = 0.5 (1 + cos(n (phi - theta - twist * r))), centre pixel forced to 1.

  Returns float32 (k, k) with values in [0, 1]; differentiable in theta.
  """
  u, v = kernel_offsets(kernel_size)
  phi = jnp.arctan2(v, u)
  r = jnp.sqrt(u * u + v * v)
  theta = jnp.asarray(theta, jnp.float32)
  m = 0.5 * (1.0 + jnp.cos(num_blades * (phi - theta - twist * r)))
  c = kernel_size // 2
  centre = np.zeros((kernel_size, kernel_size), bool)
  centre[c, c] = True
  return jnp.where(centre, 1.0, m)


def straight_through_round(m):
  """Forward value round(m) (exactly 0/1 for m in [0,1]; half-to-even as
  PyTorch's round); gradient of the identity."""
  return m + jax.lax.stop_gradient(jnp.round(m) - m)


def pinwheel_mask(theta, kernel_size: int, num_blades: int, twist: float, hard: bool = True):
  """Rotated pinwheel mask; hard (binary forward, straight-through grad) or soft."""
  m = pinwheel_soft_mask(theta, kernel_size, num_blades, twist)
  return straight_through_round(m) if hard else m


def gaussian_kernel_parts(
  rho,
  theta,
  amplitude,
  *,
  kernel_size: int,
  num_blades: int,
  twist: float,
  sigma_min: float,
  mask: str,
  prior: str,
  hard: bool = True,
):
  """Builds the Gaussian-pinwheel kernel K = A * G * M and its parts.

  Args:
    rho: () or (2,) raw sigma parameter.
    theta: () mask angle (radians); ignored when mask == 'none'.
    amplitude: (k, k, 2, 1) HWIO amplitude A.
    mask: 'rotated' | 'fixed' (same formula, theta given as a constant) | 'none'.
    prior: 'gaussian' | 'none' (G = 1).
    hard: use the straight-through hard mask (the forward pass) or the soft one.

  Returns:
    dict with 'sigma' (() or (2,)), 'prior' (k, k, 2), 'soft_mask' (k, k),
    'mask' (k, k), 'kernel' (k, k, 2, 1) float32.
  """
  k = kernel_size
  sigma = sigma_from_rho(jnp.asarray(rho, jnp.float32), sigma_min)
  if prior == "gaussian":
    g = gaussian_prior(sigma, k)
    if g.ndim == 2:
      g = jnp.broadcast_to(g[..., None], (k, k, 2))
  elif prior == "none":
    g = jnp.ones((k, k, 2), jnp.float32)
  else:
    raise ValueError(f"unknown prior {prior!r}")
  if mask in ("rotated", "fixed"):
    soft = pinwheel_soft_mask(theta, k, num_blades, twist)
    m = straight_through_round(soft) if hard else soft
  elif mask == "none":
    soft = m = jnp.ones((k, k), jnp.float32)
  else:
    raise ValueError(f"unknown mask {mask!r}")
  kernel = jnp.asarray(amplitude, jnp.float32) * (g * m[..., None])[..., None]
  return {"sigma": sigma, "prior": g, "soft_mask": soft, "mask": m, "kernel": kernel}


def max_to_one_index(x, axis):
  """max of `x` over `axis` (an int or a tuple of adjacent axes; kept as size 1), whose
  gradient goes to the first maximal entry, as PyTorch's max and max-pooling route it.

  `jnp.max`'s gradient instead finds the maximal entries again by comparing `x` with its
  max and divides by their count; where XLA recomputes `x` in two fusions with different
  round-off (seen on XLA:CPU with other convolution kernels or at -O0) no entry compares
  equal, the count is 0 and the gradient of every earlier layer becomes NaN.
  """
  axes = tuple(a % x.ndim for a in ((axis,) if isinstance(axis, int) else axis))
  start, stop = axes[0], axes[-1] + 1
  flat = x.reshape(*x.shape[:start], -1, *x.shape[stop:])
  index = jnp.argmax(flat, axis=start, keepdims=True)
  picked = jnp.take_along_axis(flat, index, axis=start)
  return picked.reshape(*x.shape[:start], *(1,) * len(axes), *x.shape[stop:])


def spatial_descriptor(x):
  """concat(mean_c x, max_c x) -> (N, H, W, 2); mean accumulated in float32."""
  mean = jnp.mean(x, axis=-1, keepdims=True, dtype=jnp.float32).astype(x.dtype)
  mx = max_to_one_index(x, axis=-1)
  return jnp.concatenate([mean, mx], axis=-1)


# --------------------------------------------------------------------------
# Modules.
# --------------------------------------------------------------------------


class ChannelAttention(nn.Module):
  """CBAM channel attention: x * sigmoid(MLP(avgpool x) + MLP(maxpool x)).

  Shared MLP without biases: ``fc1`` C -> max(C // ratio, 1), ReLU, ``fc2`` back
  to C (MSHNet uses ratio 16).
  """

  ratio: int = 16
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    hidden = max(c // self.ratio, 1)
    fc1 = nn.Dense(
      hidden, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name="fc1"
    )
    fc2 = nn.Dense(c, use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype, name="fc2")
    avg = jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(x.dtype)
    mx = max_to_one_index(x, axis=(1, 2))[:, 0, 0, :]
    att = fc2(nn.relu(fc1(avg))) + fc2(nn.relu(fc1(mx)))
    att = nn.sigmoid(att)
    return x * att[:, None, None, :].astype(x.dtype)


class SpatialAttention(nn.Module):
  """CBAM spatial attention with a free k x k kernel (``conv/kernel`` HWIO)."""

  kernel_size: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    d = spatial_descriptor(x)
    att = nn.Conv(
      1,
      (self.kernel_size, self.kernel_size),
      padding="SAME",
      use_bias=False,
      dtype=self.dtype,
      param_dtype=self.param_dtype,
      name="conv",
    )(d)
    return x * nn.sigmoid(att).astype(x.dtype)


class GaussianSpatialAttention(nn.Module):
  """Gaussian-shaped spatial attention with a rotated pinwheel mask.

  y = x * sigmoid(conv(D(x), K)),  D = concat(mean_c x, max_c x),
  K = A * G_sigma * M_theta built every call (see :func:`gaussian_kernel_parts`).

  Attributes:
    kernel_size: odd kernel size k (7).
    num_blades: n, number of pinwheel blades (4).
    twist: tau, radians of blade rotation per pixel of radius.
    sigma_min: floor of sigma (sigma = softplus(rho) + sigma_min).
    sigma_init: initial sigma (rho initialised to softplus^-1(sigma_init - sigma_min)).
    per_channel_sigma: one sigma per descriptor channel (rho shape (2,)) instead of one.
    mask: 'rotated' (learnable theta), 'fixed' (theta = theta_init constant) or 'none'.
    prior: 'gaussian' or 'none' (mask-only ablation).
    amplitude_init: initial value of every entry of A (1/14 = 1/(2*7)).
    theta_init: initial (or, for mask='fixed', constant) theta in radians.
    learn_amplitude: if False, A is the constant amplitude_init (no param).
  """

  kernel_size: int
  num_blades: int
  twist: float
  sigma_min: float
  sigma_init: float
  per_channel_sigma: bool
  mask: str
  prior: str
  amplitude_init: float
  theta_init: float
  learn_amplitude: bool
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def setup(self):
    k = self.kernel_size
    if self.sigma_init <= self.sigma_min:
      raise ValueError("sigma_init must be > sigma_min")
    rho0 = softplus_inverse(self.sigma_init - self.sigma_min)
    shape = (2,) if self.per_channel_sigma else ()
    if self.prior == "gaussian":
      self.rho = self.param("rho", nn.initializers.constant(rho0), shape, self.param_dtype)
    else:
      self.rho = jnp.full(shape, rho0, jnp.float32)
    if self.mask == "rotated":
      self.theta = self.param(
        "theta", nn.initializers.constant(self.theta_init), (), self.param_dtype
      )
    else:
      self.theta = jnp.asarray(self.theta_init, jnp.float32)
    if self.learn_amplitude:
      self.amplitude = self.param(
        "amplitude", nn.initializers.constant(self.amplitude_init), (k, k, 2, 1), self.param_dtype
      )
    else:
      self.amplitude = jnp.full((k, k, 2, 1), self.amplitude_init, jnp.float32)

  def kernel_parts(self, hard: bool = True):
    """The prior, mask and kernel as float32 arrays (see gaussian_kernel_parts)."""
    parts = gaussian_kernel_parts(
      self.rho,
      self.theta,
      self.amplitude,
      kernel_size=self.kernel_size,
      num_blades=self.num_blades,
      twist=self.twist,
      sigma_min=self.sigma_min,
      mask=self.mask,
      prior=self.prior,
      hard=hard,
    )
    parts["theta"] = jnp.asarray(self.theta, jnp.float32)
    return parts

  def __call__(self, x):
    kernel = self.kernel_parts()["kernel"]
    d = spatial_descriptor(x)
    att = jax.lax.conv_general_dilated(
      d.astype(self.dtype), kernel.astype(self.dtype), (1, 1), "SAME", dimension_numbers=_DN
    )
    return x * nn.sigmoid(att).astype(x.dtype)


@dataclasses.dataclass(frozen=True)
class AttentionSpec:
  """Hashable copy of ``config.model.attention`` (safe as a Module attribute)."""

  kind: str  # 'gaussian' | 'cbam' | 'none'
  kernel_size: int
  num_blades: int
  twist: float
  sigma_min: float
  sigma_init: float
  per_channel_sigma: bool
  mask: str  # 'rotated' | 'fixed' | 'none'
  prior: str  # 'gaussian' | 'none'
  amplitude_init: float
  theta_init: float
  learn_amplitude: bool

  @classmethod
  def from_config(cls, cfg) -> AttentionSpec:
    if isinstance(cfg, cls):
      return cfg
    names = {f.name for f in dataclasses.fields(cls)}
    d = dict(cfg.items()) if hasattr(cfg, "items") else dict(cfg)
    unknown = set(d) - names
    if unknown:
      raise ValueError(f"unknown attention config fields {sorted(unknown)}")
    return cls(**d)


def make_spatial_attention(spec, dtype, name="spatial_attention"):
  """Builds the spatial attention module named by spec.kind, or None."""
  spec = AttentionSpec.from_config(spec)
  if spec.kind == "none":
    return None
  if spec.kind == "cbam":
    return SpatialAttention(kernel_size=spec.kernel_size, dtype=dtype, name=name)
  if spec.kind == "gaussian":
    return GaussianSpatialAttention(
      kernel_size=spec.kernel_size,
      num_blades=spec.num_blades,
      twist=spec.twist,
      sigma_min=spec.sigma_min,
      sigma_init=spec.sigma_init,
      per_channel_sigma=spec.per_channel_sigma,
      mask=spec.mask,
      prior=spec.prior,
      amplitude_init=spec.amplitude_init,
      theta_init=spec.theta_init,
      learn_amplitude=spec.learn_amplitude,
      dtype=dtype,
      name=name,
    )
  raise ValueError(f"unknown attention kind {spec.kind!r}")
