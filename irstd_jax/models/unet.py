"""Residual blocks and the MSHNet-style U-Net with multi-scale side outputs
(SPEC.md section 4).

Architecture (channels c0..c4 = config.channels, b0..b3 = config.blocks):

  stem         1x1 conv 1 -> c0 (with bias)
  encoder_0    1 block  c0 -> c0                 (H,    W)
  encoder_1    b0 blocks c0 -> c1 after maxpool  (H/2,  W/2)
  encoder_2    b1 blocks c1 -> c2 after maxpool  (H/4)
  encoder_3    b2 blocks c2 -> c3 after maxpool  (H/8)
  middle       b3 blocks c3 -> c4 after maxpool  (H/16)
  decoder_3    b2 blocks concat(e3, up(m))  -> c3
  decoder_2    b1 blocks concat(e2, up(d3)) -> c2
  decoder_1    b0 blocks concat(e1, up(d2)) -> c1
  decoder_0    1 block   concat(e0, up(d1)) -> c0
  output_k     1x1 conv d_k -> 1 (with bias): side logits at scale 1/2^k, k = 0..3
  final        3x3 conv (with bias) on concat(side_0, up2(side_1), up4(side_2),
               up8(side_3)) -> fused logits (deep supervision on); without deep
               supervision the logits are output_0(d0) and there is no ``final``.

Output initialisation (``output_prior`` = pi in (0, 0.5]): every ``output_k`` bias starts
at logit(pi) and ``final`` starts as the mean of the side logits (centre tap 1/K per
input, zero bias), so the first prediction is p ~ pi on every pixel of every image. With
zero biases (``output_prior = 0``: flax's defaults, the init of runs before 2026-12-07)
the first prediction is p ~ 0.5, where every image is saturated: the overlap losses'
gradient on a saturated image is 1e2-1e5 times weaker than on a healthy one
(docs/losses.md), and images left saturated after warm-up can stay so.

Any H, W: max pooling is 2x2 / stride 2 with 'SAME' padding (-inf padding at the
bottom/right, PyTorch ``MaxPool2d(2, ceil_mode=True)``), so level k has size
ceil(H / 2^k); upsampling is bilinear x2 (half-pixel centres, PyTorch
``interpolate(scale_factor=2, mode='bilinear', align_corners=False)``) followed by
cropping the bottom/right excess to the skip's size.  No pixel of padding ever
enters a BatchNorm statistic or a global pooling.

Residual block (names inside a block): ``conv1`` 3x3 (bias) - ``bn1`` - ReLU -
``conv2`` 3x3 (bias) - ``bn2`` - ``channel_attention`` - ``spatial_attention`` -
add shortcut (identity, or ``shortcut_conv`` 1x1 (bias) + ``shortcut_bn`` when
channels change) - ReLU.  With block='pconv', ``conv1``+``bn1``+ReLU is replaced
by ``pconv`` (:class:`PinwheelConv`).  Blocks of a stage are ``<stage>/block_<j>``,
e.g. ``params['decoder_2']['block_1']['conv2']['kernel']``.

BatchNorm: ``scale``/``bias`` params, ``mean``/``var`` in ``batch_stats``;
momentum follows the flax convention (new = m * old + (1 - m) * batch, so 0.9
is PyTorch's momentum=0.1), epsilon 1e-5.  Batch statistics are reduced in
float32 even with bfloat16 compute; params and batch_stats are always float32.
"""

from __future__ import annotations

from collections.abc import Sequence
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from irstd_jax.models.attention import AttentionSpec
from irstd_jax.models.attention import ChannelAttention
from irstd_jax.models.attention import make_spatial_attention
from irstd_jax.models.pconv import PinwheelConv

Dtype = Any


def _bn(train, momentum, epsilon, dtype, name):
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=momentum,
    epsilon=epsilon,
    dtype=dtype,
    param_dtype=jnp.float32,
    # Two-pass variance, as PyTorch: the one-pass E[x^2] - E[x]^2
    # loses float32 precision (seen in the parity tests' gradients).
    use_fast_variance=False,
    name=name,
  )


def maxpool2(x):
  """2x2/2 max pooling, ceil mode: (N, H, W, C) -> (N, ceil(H/2), ceil(W/2), C)."""
  return nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")


def upsample(x, factor: int, size: Sequence[int]):
  """Bilinear upsampling by an integer factor (half-pixel centres), then crop
  the bottom/right to ``size`` = (h, w)."""
  n, h, w, c = x.shape
  y = jax.image.resize(x, (n, h * factor, w * factor, c), method="bilinear")
  return y[:, : size[0], : size[1], :]


class ResidualBlock(nn.Module):
  """conv-BN-ReLU-conv-BN + channel attention + spatial attention + shortcut."""

  features: int
  attention: Any  # AttentionSpec (or a model.attention ConfigDict)
  channel_attention: bool
  block: str  # 'basic' | 'pconv'
  bn_momentum: float
  bn_epsilon: float
  dtype: Dtype

  @nn.compact
  def __call__(self, x, train: bool):
    bn = lambda name: _bn(train, self.bn_momentum, self.bn_epsilon, self.dtype, name)
    conv = lambda f, k, name: nn.Conv(
      f, (k, k), padding="SAME", use_bias=True, dtype=self.dtype, param_dtype=jnp.float32, name=name
    )
    if x.shape[-1] != self.features:
      residual = bn("shortcut_bn")(conv(self.features, 1, "shortcut_conv")(x))
    else:
      residual = x
    if self.block == "basic":
      y = nn.relu(bn("bn1")(conv(self.features, 3, "conv1")(x)))
    elif self.block == "pconv":
      y = PinwheelConv(
        self.features,
        kernel_size=3,
        bn_momentum=self.bn_momentum,
        bn_epsilon=self.bn_epsilon,
        dtype=self.dtype,
        name="pconv",
      )(x, train)
    else:
      raise ValueError(f"unknown block {self.block!r}")
    y = bn("bn2")(conv(self.features, 3, "conv2")(y))
    if self.channel_attention:
      y = ChannelAttention(dtype=self.dtype, name="channel_attention")(y)
    sa = make_spatial_attention(self.attention, self.dtype)
    if sa is not None:
      y = sa(y)
    return nn.relu(y + residual)


class Stage(nn.Module):
  """``num_blocks`` residual blocks named ``block_0``, ``block_1``, ..."""

  features: int
  num_blocks: int
  block_kwargs: tuple  # ((field, value), ...) of ResidualBlock

  @nn.compact
  def __call__(self, x, train: bool):
    kw = dict(self.block_kwargs)
    for j in range(self.num_blocks):
      x = ResidualBlock(self.features, name=f"block_{j}", **kw)(x, train)
    return x


def output_initializers(output_prior: float) -> tuple[dict[str, Any], dict[str, Any]]:
  """Initialisers (nn.Conv keyword arguments) of the side outputs and of the fusion.

  output_prior = 0: flax's defaults. Otherwise the side biases start at logit(pi) and the
  fusion's (3, 3, K, 1) kernel at 1/K on the centre tap of each input (the mean of the K
  side logits), its bias at 0.
  """
  if output_prior == 0.0:
    return {}, {}
  if not 0.0 < output_prior <= 0.5:
    raise ValueError(f"output_prior={output_prior!r}: expected 0 (off) or a value in (0, 0.5]")
  side_bias = math.log(output_prior / (1.0 - output_prior))

  def mean_of_inputs(key, shape, dtype=jnp.float32):
    del key
    kh, kw, k_in, k_out = shape
    kernel = jnp.zeros(shape, dtype)
    return kernel.at[kh // 2, kw // 2].set(jnp.full((k_in, k_out), 1.0 / k_in, dtype))

  side = {"bias_init": nn.initializers.constant(side_bias)}
  return side, {"kernel_init": mean_of_inputs, "bias_init": nn.initializers.zeros}


class UNet(nn.Module):
  """MSHNet-style U-Net.  See the module docstring for layout and names.

  __call__(images (N,H,W,1) float32, train) -> (logits (N,H,W,1) float32,
  side_logits: tuple of (N, ceil(H/2^k), ceil(W/2^k), 1) float32, k = 0..3, or
  () without deep supervision).
  """

  channels: Sequence[int]
  blocks: Sequence[int]
  attention: Any  # AttentionSpec; None -> AttentionSpec() defaults
  channel_attention: bool
  block: str
  deep_supervision: bool
  bn_momentum: float
  bn_epsilon: float
  dtype: Dtype
  output_prior: float = 0.0

  @nn.compact
  def __call__(self, images, train: bool = False):
    c = tuple(self.channels)
    b = tuple(self.blocks)
    if len(c) != 5 or len(b) != 4:
      raise ValueError("channels needs 5 entries and blocks 4")
    kw = dict(
      attention=AttentionSpec.from_config(self.attention),
      channel_attention=self.channel_attention,
      block=self.block,
      bn_momentum=self.bn_momentum,
      bn_epsilon=self.bn_epsilon,
      dtype=self.dtype,
    )
    conv = lambda f, k, name, **init: nn.Conv(
      f,
      (k, k),
      padding="SAME",
      use_bias=True,
      dtype=self.dtype,
      param_dtype=jnp.float32,
      name=name,
      **init,
    )
    side_init, final_init = output_initializers(self.output_prior)
    stage = lambda f, n, name: Stage(f, n, tuple(kw.items()), name=name)

    x = images.astype(self.dtype)
    e0 = stage(c[0], 1, "encoder_0")(conv(c[0], 1, "stem")(x), train)
    e1 = stage(c[1], b[0], "encoder_1")(maxpool2(e0), train)
    e2 = stage(c[2], b[1], "encoder_2")(maxpool2(e1), train)
    e3 = stage(c[3], b[2], "encoder_3")(maxpool2(e2), train)
    m = stage(c[4], b[3], "middle")(maxpool2(e3), train)

    def up_cat(skip, deep):
      return jnp.concatenate([skip, upsample(deep, 2, skip.shape[1:3])], axis=-1)

    d3 = stage(c[3], b[2], "decoder_3")(up_cat(e3, m), train)
    d2 = stage(c[2], b[1], "decoder_2")(up_cat(e2, d3), train)
    d1 = stage(c[1], b[0], "decoder_1")(up_cat(e1, d2), train)
    d0 = stage(c[0], 1, "decoder_0")(up_cat(e0, d1), train)

    out0 = conv(1, 1, "output_0", **side_init)(d0)
    if not self.deep_supervision:
      return out0.astype(jnp.float32), ()
    sides = [
      out0,
      conv(1, 1, "output_1", **side_init)(d1),
      conv(1, 1, "output_2", **side_init)(d2),
      conv(1, 1, "output_3", **side_init)(d3),
    ]
    hw = images.shape[1:3]
    fused_in = jnp.concatenate(
      [sides[0]] + [upsample(s, 2**k, hw) for k, s in enumerate(sides) if k], axis=-1
    )
    logits = conv(1, 3, "final", **final_init)(fused_in)
    return logits.astype(jnp.float32), tuple(s.astype(jnp.float32) for s in sides)


# --------------------------------------------------------------------------
# Model statistics (parameter count, MACs / FLOPs).
# --------------------------------------------------------------------------


def count_params(params) -> int:
  return int(sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)))


def _jaxpr_macs(jaxpr) -> int:
  """Multiply-accumulates of convolutions and dot products in a (closed) jaxpr."""
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      out = eqn.outvars[0].aval.shape
      rhs = eqn.invars[1].aval.shape
      dn = eqn.params["dimension_numbers"]
      cout = rhs[dn.rhs_spec[0]]
      total += math.prod(out) * math.prod(rhs) // cout
    elif name == "dot_general":
      (lc, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lc)
    for v in eqn.params.values():
      for sub in v if isinstance(v, (list, tuple)) else [v]:
        if isinstance(sub, jax.extend.core.ClosedJaxpr):
          total += _jaxpr_macs(sub.jaxpr)
        elif isinstance(sub, jax.extend.core.Jaxpr):
          total += _jaxpr_macs(sub)
  return total


def model_stats(model, height: int = 256, width: int = 256, batch: int = 1, xla_flops: bool = True):
  """Params, conv/dense MACs (jaxpr count) and XLA-estimated FLOPs of one
  eval-mode forward pass on a (batch, height, width, 1) input."""
  x = jnp.zeros((batch, height, width, 1), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  fwd = lambda v, x: model.apply(v, x, train=False)
  jaxpr = jax.make_jaxpr(fwd)(variables, x)
  stats = {"params": count_params(variables["params"]), "macs": _jaxpr_macs(jaxpr.jaxpr)}
  if xla_flops:
    # HLO cost analysis of the lowered (uncompiled) program: cheap, counts
    # 2 FLOPs per multiply-add plus elementwise work.
    cost = jax.jit(fwd).lower(variables, x).cost_analysis()
    if isinstance(cost, (list, tuple)):
      cost = cost[0]
    stats["xla_flops"] = float(cost.get("flops", float("nan"))) if cost else float("nan")
  return stats
