"""Pinwheel-shaped convolution (PConv) of Yang et al., "Pinwheel-shaped Convolution
and Scale-based Dynamic Loss for Infrared Small Target Detection" (AAAI 2025),
written from the paper's description.

Four asymmetrically padded strip convolutions look in four directions:

  branch  zero padding (top, bottom, left, right)   kernel   weights
  0       (1, 0, k, 0)                              1 x k    ``conv_w``
  1       (0, 1, 0, k)                              1 x k    ``conv_w`` (shared)
  2       (k, 0, 0, 1)                              k x 1    ``conv_h``
  3       (0, k, 1, 0)                              k x 1    ``conv_h`` (shared)

each 'VALID' -> (H + 1, W + 1, C_out / 4), then conv-BN-SiLU.  The four maps are
concatenated (branch order 0..3) and fused by a 2x2 'VALID' conv (back to H x W),
BN and SiLU.  (PyTorch ``F.pad`` order is (left, right, top, bottom).)

Parameter names: ``conv_w/kernel`` (1, k, C_in, C_out/4), ``bn_w`` (scale, bias;
batch_stats mean, var), ``conv_h/kernel`` (k, 1, C_in, C_out/4), ``bn_h``,
``fuse/kernel`` (2, 2, C_out, C_out), ``bn_fuse``.  Kernels HWIO, no conv biases.
The shared branches share their BN too (the batch statistics are updated once
per branch call, like a PyTorch module called twice).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any


class PinwheelConv(nn.Module):
  """PConv: (N, H, W, C_in) -> (N, H, W, features); features divisible by 4."""

  features: int
  bn_momentum: float
  bn_epsilon: float
  kernel_size: int = 3
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if self.features % 4:
      raise ValueError(f"PConv needs features divisible by 4, got {self.features}")
    k = self.kernel_size
    q = self.features // 4

    def conv(feat, ks, name):
      return nn.Conv(
        feat,
        ks,
        padding="VALID",
        use_bias=False,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        name=name,
      )

    def bn(name):
      return nn.BatchNorm(
        use_running_average=not train,
        momentum=self.bn_momentum,
        epsilon=self.bn_epsilon,
        dtype=self.dtype,
        param_dtype=self.param_dtype,
        use_fast_variance=False,
        name=name,
      )

    conv_w, bn_w = conv(q, (1, k), "conv_w"), bn("bn_w")
    conv_h, bn_h = conv(q, (k, 1), "conv_h"), bn("bn_h")
    pads = [((1, 0), (k, 0)), ((0, 1), (0, k)), ((k, 0), (0, 1)), ((0, k), (1, 0))]
    outs = []
    for i, (ph, pw) in enumerate(pads):
      xi = jnp.pad(x, ((0, 0), ph, pw, (0, 0)))
      c, b = (conv_w, bn_w) if i < 2 else (conv_h, bn_h)
      outs.append(nn.silu(b(c(xi))))
    y = jnp.concatenate(outs, axis=-1)
    y = conv(self.features, (2, 2), "fuse")(y)
    return nn.silu(bn("bn_fuse")(y))
