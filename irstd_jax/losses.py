"""Losses for infrared small-target segmentation (SPEC.md section 2).

Everything here is a pure JAX function, safe under ``jax.jit``.  The loss
configuration (``config.loss``, an ``ml_collections.ConfigDict``) is read in
Python, never traced: close over it (or pass it as a static argument) when
jitting.  Only ``epoch`` may be traced; warm-up switches use ``jnp.where``.

Notation (per image b, all sums over H, W and the single channel)::

    p   = sigmoid(logits)                      (N, H, W, 1)
    g   = mask in {0, 1}                       (N, H, W, 1)
    Ap  = sum p,  At = sum g,  I = sum p * g   (N,)
    IoU = (I + s) / (Ap + At - I + s)          s = config.smooth (1.0)
    x   = Ap - At,  S = Ap + At,  e = config.eps (1e-6)

Scale-weight variants (``scale_weight(Ap, At, kind)``)::

    diff            w = 1 - (b_over * relu(x) + b_under * relu(-x)) / (S + e)
                    (b_over = b_under = 1  ->  w = 2 min(Ap, At) / (Ap + At))
    var             v = (x / 2)^2
                    w = (min(Ap, At) + v + e) / (max(Ap, At) + v + e)
                    (MSHNet's SLS weight; MSHNet has no e, see below)
    mobius          w = 2 Ap / (Ap + At + e)
    var_denominator w = (max(Ap, At) + e) / (max(Ap, At) + v + e)

The ``+ e`` in both numerator and denominator of ``var`` and
``var_denominator`` is this project's guard so that w(0, 0) = 1 instead of
0 / 0; it changes any other value by at most ~e / max(Ap, At).  With
``eps = 0`` the ``var`` weight is bit-for-bit MSHNet's ``alpha``.  ``mobius``
follows SPEC.md literally, so w(0, 0) = 0 and w -> 2 when At = 0 < Ap.

Scale loss (``reduction='per_image'``, the default, as MSHNet)::

    L_scale = 1 - mean_b( w_b * IoU_b )        after warm-up
    L_scale = 1 - mean_b( IoU_b )              while epoch < warm_epochs

``reduction='batch'`` instead sums Ap, At, I over the whole batch (one
"image") and returns 1 - w * IoU of those sums.  ``target_free='plain_iou'``
sets w_b = 1 on images with At_b = 0, where ``diff`` gives w ~ e / Ap and so no
gradient (docs/losses.md, "On a target-free image"); the default keeps the formula.

Differences from MSHNet's ``SLSIoULoss`` (github.com/Lliu666/MSHNet,
``model/loss.py``), all deliberate and documented in docs/losses.md:

* MSHNet uses smooth = 0 in both the weight and the IoU; here IoU uses
  ``config.smooth`` (SPEC: s = 1) and the weight uses ``eps`` only.  Set
  ``smooth=0, eps=0`` to get MSHNet's numbers exactly (then an image with
  Ap = At = I = 0 would be 0/0; with a sigmoid, Ap > 0 always).
* MSHNet does not detach the weight: gradients flow through w.  Same here by
  default; ``detach_weight=True`` stops them.
* MSHNet switches on ``epoch > warm_epoch`` (0-based epochs, so with
  warm_epoch = 5 the first 6 epochs are plain IoU).  Here the switch is
  ``epoch >= warm_epochs`` (exactly ``warm_epochs`` plain epochs, as SPEC
  says); ``warm_epochs = 6`` reproduces MSHNet's schedule.
* MSHNet always adds its location loss (weight 1) after warm-up; here it is
  ``location_weight`` (default 0, SPEC: a source of false alarms).
* MSHNet's deep supervision max-pools the *labels* down to each side output;
  here (SPEC, docs/interfaces.md) the side *logits* are resized bilinearly to
  the mask size and the same loss is applied; the fused and side losses are
  averaged: (L_fused + sum_k L_side_k) / (1 + K), as MSHNet averages.

Location loss (MSHNet's ``LLoss``), per image, coordinates x_j = j / W,
y_i = i / H (j, i 0-based), d = 1e-8::

    'centroid' (default, SPEC): cx = sum(x p) / (sum p + e), cy likewise
    'mshnet'  (exact MSHNet):   cx = mean(x p) = sum(x p) / (H W)   (a first
               moment, i.e. centroid * Ap / (H W): it also senses area)
    L_len   = 1 - min(Lp, Lt) / (max(Lp, Lt) + d),  L = sqrt(cx^2 + cy^2 + d)
    L_ang   = (4 / pi^2) (atan(cy_p / (cx_p + d)) - atan(cy_t / (cx_t + d)))^2
    L_loc   = mean_b(L_len + L_ang)

SD loss (scale-based dynamic loss, mask version "SDM" of Yang et al., AAAI
2025, PConv paper; github.com/JN-Yang/PConv-SDloss-Data ``model/loss.py``)::

    R     = sd_ref_resolution / (H W)          (512*512 / (H W) in PConv)
    beta  = mean_b min(At_b * delta * R / sd_ref_area, delta)
                                               (delta = 0.5, ref area 81)
    L_SD  = (1 + beta) * L_scale + (1 - beta) * L_loc      after warm-up
    L_SD  = 1 - mean_b IoU_b                               during warm-up

PConv uses the ``var`` weight and smooth = 0 inside L_scale; here L_scale
uses ``config.scale_weight`` (set it to 'var' for PConv's setting).

Other losses, all means over the batch:

* ``soft_iou``: 1 - mean_b IoU_b.
* ``dice``: 1 - mean_b (2 I + s) / (Ap + At + s)  (standard Dice; MSHNet's
  ``Dice`` has an extra + I in its denominator, not reproduced).
* ``bce``: mean over pixels of -[g log p + (1 - g) log(1 - p)] (from logits,
  via log-sigmoid, stable).
* ``focal``: mean over pixels of alpha_t (1 - p_t)^gamma * BCE,
  p_t = p if g = 1 else 1 - p, alpha_t = alpha if g = 1 else 1 - alpha
  (Lin et al. 2017; alpha = 0.25, gamma = 2).

Dtypes: inputs may be bfloat16/float16/float32/float64; all arithmetic runs
in ``promote_types(logits.dtype, float32)`` (float32 for bf16, float64 only
when a float64 array is given, e.g. in gradient tests).  ``total_loss``
returns float32.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
  "SCALE_WEIGHTS",
  "SCALE_WEIGHT_KINDS",
  "LOSSES",
  "LOSS_NAMES",
  "LossSpec",
  "scale_weight",
  "region_sums",
  "soft_iou_from_sums",
  "scale_loss_from_sums",
  "scale_loss",
  "soft_iou_loss",
  "dice_loss",
  "bce_loss",
  "focal_loss",
  "centroids",
  "location_loss",
  "sd_beta",
  "sd_loss",
  "single_output_loss",
  "total_loss",
]

_LOC_SMOOTH = 1e-8  # MSHNet's LLoss constant (d above)


def _compute_dtype(x: jax.Array) -> jnp.dtype:
  return jnp.promote_types(jnp.asarray(x).dtype, jnp.float32)


# ----------------------------------------------------------------------------
# Scale weights
# ----------------------------------------------------------------------------


def scale_weight(
  Ap: jax.Array,
  At: jax.Array,
  kind: str = "diff",
  *,
  b_over: float = 1.0,
  b_under: float = 1.0,
  eps: float = 1e-6,
) -> jax.Array:
  """Scale weight w(Ap, At), elementwise (any broadcastable shapes).

  Args:
    Ap: predicted area(s) (sum of probabilities), float array.
    At: target area(s), float array.
    kind: 'diff' | 'var' | 'mobius' | 'var_denominator' (formulas in the
      module docstring).
    b_over, b_under: diff coefficients (ignored by the other kinds).
    eps: e.
  Returns:
    w with the broadcast shape and dtype of Ap, At.
  """
  if kind not in SCALE_WEIGHTS:
    raise ValueError(f"unknown scale_weight kind {kind!r}; expected one of {SCALE_WEIGHT_KINDS}")
  return SCALE_WEIGHTS[kind](jnp.asarray(Ap), jnp.asarray(At), b_over, b_under, eps)


def _diff_weight(Ap, At, b_over, b_under, eps):
  x = Ap - At
  return 1.0 - (b_over * jax.nn.relu(x) + b_under * jax.nn.relu(-x)) / (Ap + At + eps)


def _var_weight(Ap, At, b_over, b_under, eps):
  v = jnp.square((Ap - At) / 2.0)
  return (jnp.minimum(Ap, At) + v + eps) / (jnp.maximum(Ap, At) + v + eps)


def _mobius_weight(Ap, At, b_over, b_under, eps):
  return 2.0 * Ap / (Ap + At + eps)


def _var_denominator_weight(Ap, At, b_over, b_under, eps):
  v = jnp.square((Ap - At) / 2.0)
  m = jnp.maximum(Ap, At)
  return (m + eps) / (m + v + eps)


# `config.loss.scale_weight` -> w(Ap, At, b_over, b_under, eps) (formulas: module doc).
SCALE_WEIGHTS = {
  "diff": _diff_weight,
  "var": _var_weight,
  "mobius": _mobius_weight,
  "var_denominator": _var_denominator_weight,
}
SCALE_WEIGHT_KINDS = tuple(SCALE_WEIGHTS)


# ----------------------------------------------------------------------------
# Region statistics and overlap losses
# ----------------------------------------------------------------------------


def _probs_and_masks(logits: jax.Array, masks: jax.Array):
  dt = _compute_dtype(logits)
  z = jnp.asarray(logits).astype(dt)
  g = jnp.asarray(masks).astype(dt)
  return z, jax.nn.sigmoid(z), g


def region_sums(probs: jax.Array, masks: jax.Array):
  """Per-image sums (Ap, At, I), each (N,), over all non-batch axes."""
  axes = tuple(range(1, probs.ndim))
  Ap = jnp.sum(probs, axis=axes)
  At = jnp.sum(masks, axis=axes)
  I = jnp.sum(probs * masks, axis=axes)
  return Ap, At, I


def soft_iou_from_sums(Ap, At, I, smooth: float = 1.0):
  """IoU = (I + s) / (Ap + At - I + s), elementwise."""
  return (I + smooth) / (Ap + At - I + smooth)


def scale_loss_from_sums(
  Ap,
  At,
  I,
  kind: str = "diff",
  *,
  smooth: float = 1.0,
  eps: float = 1e-6,
  b_over: float = 1.0,
  b_under: float = 1.0,
  reduction: str = "per_image",
  detach_weight: bool = False,
  weighted: Any = True,
  target_free: str = "formula",
):
  """Scale loss from region sums.

  Args:
    Ap, At, I: (N,) per-image sums (or any shape; the mean is over all).
    kind: scale-weight kind.
    target_free: 'formula' (the weight as published on an image with At = 0) or
      'plain_iou' (w = 1 there; docs/losses.md, "On a target-free image").
    weighted: Python bool or traced bool scalar; False -> plain soft IoU
      (warm-up).  Both branches are computed and selected with jnp.where.
  Returns:
    (loss, iou_mean, w_mean): scalars in the dtype of the sums.
    For reduction='batch' the sums are first added over the batch.
  """
  if reduction == "batch":
    Ap, At, I = jnp.sum(Ap), jnp.sum(At), jnp.sum(I)
  elif reduction != "per_image":
    raise ValueError(f"unknown reduction {reduction!r}")
  iou = soft_iou_from_sums(Ap, At, I, smooth)
  w = scale_weight(Ap, At, kind, b_over=b_over, b_under=b_under, eps=eps)
  if detach_weight:
    w = jax.lax.stop_gradient(w)
  if target_free == "plain_iou":
    w = jnp.where(At > 0, w, jnp.ones_like(w))
  elif target_free != "formula":
    raise ValueError(f"unknown target_free {target_free!r}; expected 'formula' or 'plain_iou'")
  w_eff = jnp.where(jnp.asarray(weighted), w, jnp.ones_like(w))
  loss = 1.0 - jnp.mean(w_eff * iou)
  return loss, jnp.mean(iou), jnp.mean(w)


def scale_loss(logits, masks, kind: str = "diff", *, weighted: Any = True, **kw):
  """Scale loss from logits (N,H,W,1) and masks (N,H,W,1); see module doc.

  Keyword args are those of ``scale_loss_from_sums``.  Returns the loss
  scalar only.
  """
  _, p, g = _probs_and_masks(logits, masks)
  return scale_loss_from_sums(*region_sums(p, g), kind, weighted=weighted, **kw)[0]


def soft_iou_loss(logits, masks, smooth: float = 1.0):
  """1 - mean_b (I + s) / (Ap + At - I + s)."""
  _, p, g = _probs_and_masks(logits, masks)
  Ap, At, I = region_sums(p, g)
  return 1.0 - jnp.mean(soft_iou_from_sums(Ap, At, I, smooth))


def dice_loss(logits, masks, smooth: float = 1.0):
  """1 - mean_b (2 I + s) / (Ap + At + s)."""
  _, p, g = _probs_and_masks(logits, masks)
  Ap, At, I = region_sums(p, g)
  return 1.0 - jnp.mean((2.0 * I + smooth) / (Ap + At + smooth))


def bce_loss(logits, masks):
  """Mean over all pixels of binary cross-entropy with logits."""
  z, _, g = _probs_and_masks(logits, masks)
  per_px = -(g * jax.nn.log_sigmoid(z) + (1.0 - g) * jax.nn.log_sigmoid(-z))
  return jnp.mean(per_px)


def focal_loss(logits, masks, alpha: float = 0.25, gamma: float = 2.0):
  """Mean over all pixels of alpha_t (1 - p_t)^gamma * BCE (sigmoid focal)."""
  z, _, g = _probs_and_masks(logits, masks)
  ce = -(g * jax.nn.log_sigmoid(z) + (1.0 - g) * jax.nn.log_sigmoid(-z))
  one_minus_pt = g * jax.nn.sigmoid(-z) + (1.0 - g) * jax.nn.sigmoid(z)
  alpha_t = g * alpha + (1.0 - g) * (1.0 - alpha)
  return jnp.mean(alpha_t * one_minus_pt**gamma * ce)


# ----------------------------------------------------------------------------
# Location loss (MSHNet LLoss) and SD loss (PConv SDM)
# ----------------------------------------------------------------------------


def centroids(maps: jax.Array, mode: str = "centroid", eps: float = 1e-6):
  """Per-image (cx, cy), each (N,), in coordinates normalised to the image.

  maps: (N, H, W, 1) or (N, H, W) non-negative weights (probabilities or
  masks).  x_j = j / W, y_i = i / H.  mode 'centroid': sum(x m) /
  (sum m + eps); mode 'mshnet': mean over pixels of x m (MSHNet).
  """
  if maps.ndim == 4:
    maps = maps[..., 0]
  _, H, W = maps.shape
  xs = (jnp.arange(W, dtype=maps.dtype) / W)[None, None, :]
  ys = (jnp.arange(H, dtype=maps.dtype) / H)[None, :, None]
  mx = jnp.sum(maps * xs, axis=(1, 2))
  my = jnp.sum(maps * ys, axis=(1, 2))
  if mode == "centroid":
    den = jnp.sum(maps, axis=(1, 2)) + eps
  elif mode == "mshnet":
    den = jnp.asarray(H * W, maps.dtype)
  else:
    raise ValueError(f"unknown location_centroid {mode!r}")
  return mx / den, my / den


def location_loss(probs, masks, mode: str = "centroid", eps: float = 1e-6):
  """MSHNet's location loss, mean over the batch of length + angle terms.

  probs, masks: (N, H, W, 1) in the compute dtype.  Returns a scalar.
  """
  d = _LOC_SMOOTH
  pcx, pcy = centroids(probs, mode, eps)
  tcx, tcy = centroids(masks, mode, eps)
  ang = (4.0 / math.pi**2) * jnp.square(jnp.arctan(pcy / (pcx + d)) - jnp.arctan(tcy / (tcx + d)))
  lp = jnp.sqrt(pcx * pcx + pcy * pcy + d)
  lt = jnp.sqrt(tcx * tcx + tcy * tcy + d)
  length = 1.0 - jnp.minimum(lp, lt) / (jnp.maximum(lp, lt) + d)
  return jnp.mean(length + ang)


def sd_beta(
  At, hw: int, delta: float = 0.5, ref_area: float = 81.0, ref_resolution: float = 512.0 * 512.0
):
  """SD-loss beta = mean_b min(At_b * delta * R / ref_area, delta), R = ref_res / hw."""
  r = ref_resolution / float(hw)
  return jnp.mean(jnp.minimum(At * (delta * r / ref_area), delta))


def sd_loss(logits, masks, cfg, *, weighted: Any = True):
  """SD (scale-based dynamic) loss, mask version; returns (loss, aux dict)."""
  _, p, g = _probs_and_masks(logits, masks)
  out = _scale_family(p, g, cfg, weighted, sd=True)
  return out[0], out[1]


def _scale_family(p, g, cfg, weighted, location_on=None, sd=False):
  """Shared body of the 'scale' and 'sd' losses (p, g in compute dtype)."""
  kind = cfg.scale_weight
  if kind not in SCALE_WEIGHT_KINDS:
    raise ValueError(f"unknown scale_weight {kind!r}")
  Ap, At, I = region_sums(p, g)
  ls, iou, w = scale_loss_from_sums(
    Ap,
    At,
    I,
    kind,
    smooth=float(cfg.smooth),
    eps=float(cfg.eps),
    b_over=float(cfg.b_over),
    b_under=float(cfg.b_under),
    reduction=cfg.reduction,
    detach_weight=bool(cfg.detach_weight),
    weighted=weighted,
    target_free=cfg.target_free,
  )
  dt = p.dtype
  zero = jnp.zeros((), dt)
  aux = {"iou": iou, "scale_weight": w}
  mode = cfg.location_centroid
  eps = float(cfg.eps)
  if sd:
    hw = p.shape[1] * p.shape[2]
    beta = sd_beta(
      At,
      hw,
      float(cfg.sd_delta),
      float(cfg.sd_ref_area),
      float(cfg.sd_ref_resolution),
    )
    lloc = location_loss(p, g, mode, eps)
    dyn = (1.0 + beta) * ls + (1.0 - beta) * lloc
    loss = jnp.where(jnp.asarray(weighted), dyn, ls)  # ls is plain IoU when not weighted
    aux.update(location=lloc, sd_beta=beta.astype(dt))
    return loss, aux
  lw = float(cfg.location_weight)
  if lw != 0.0:
    lloc = location_loss(p, g, mode, eps)
    on = True if location_on is None else location_on
    loss = ls + jnp.where(jnp.asarray(on), lw * lloc, zero)
    aux["location"] = lloc
  else:
    loss = ls
    aux["location"] = zero
  return loss, aux


# ----------------------------------------------------------------------------
# Config-driven entry points
# ----------------------------------------------------------------------------


def _iou_aux(p, g, cfg):
  """The aux dict of a loss without a scale weight: mean soft IoU, w = 1, no location."""
  iou = jnp.mean(soft_iou_from_sums(*region_sums(p, g), float(cfg.smooth)))
  return {"iou": iou, "scale_weight": jnp.ones((), p.dtype), "location": jnp.zeros((), p.dtype)}


def _scale_entry(z, p, g, cfg, epoch):
  weighted = epoch >= int(cfg.warm_epochs)
  return _scale_family(p, g, cfg, weighted, epoch >= int(cfg.location_warm_epochs))


def _sd_entry(z, p, g, cfg, epoch):
  return _scale_family(p, g, cfg, epoch >= int(cfg.warm_epochs), sd=True)


def _soft_iou_entry(z, p, g, cfg, epoch):
  aux = _iou_aux(p, g, cfg)
  return 1.0 - aux["iou"], aux


def _dice_entry(z, p, g, cfg, epoch):
  return dice_loss(z, g, float(cfg.smooth)), _iou_aux(p, g, cfg)


def _bce_entry(z, p, g, cfg, epoch):
  return bce_loss(z, g), _iou_aux(p, g, cfg)


def _focal_entry(z, p, g, cfg, epoch):
  return focal_loss(z, g, float(cfg.focal_alpha), float(cfg.focal_gamma)), _iou_aux(p, g, cfg)


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """A `config.loss.name`: `fn(z, p, g, loss_config, epoch) -> (loss, aux)` on one output
  (z logits, p probabilities, g masks, all (N, H, W, 1) in the compute dtype; epoch an
  int32 scalar), and whether it is plain soft IoU while epoch < warm_epochs."""

  fn: Callable
  warmup: bool = False


# `config.loss.name` -> LossSpec. A new loss is one function plus one entry here.
LOSSES = {
  "scale": LossSpec(_scale_entry, warmup=True),
  "soft_iou": LossSpec(_soft_iou_entry),
  "dice": LossSpec(_dice_entry),
  "bce": LossSpec(_bce_entry),
  "focal": LossSpec(_focal_entry),
  "sd": LossSpec(_sd_entry, warmup=True),
}
LOSS_NAMES = tuple(LOSSES)


def single_output_loss(logits, masks, loss_config, epoch=0):
  """Loss of one output map, `LOSSES[loss_config.name]`.

  Args:
    logits: (N, H, W, 1) any float dtype.
    masks: (N, H, W, 1) {0, 1}.
    loss_config: static config (``config.loss``; fields in ``default_config.loss_config``).
    epoch: int or traced int32 scalar (0-based).
  Returns:
    (loss scalar, aux dict of scalars) in the compute dtype; aux has keys
    'iou' (mean soft IoU), 'scale_weight' (mean w of the configured kind,
    reported even during warm-up), 'location' (raw location loss, 0 when
    not computed) and, for 'sd', 'sd_beta'.
  """
  name = loss_config.name
  if name not in LOSSES:
    raise ValueError(f"unknown loss name {name!r}; expected one of {LOSS_NAMES}")
  z, p, g = _probs_and_masks(logits, masks)
  return LOSSES[name].fn(z, p, g, loss_config, jnp.asarray(epoch))


def _resize_to(logits: jax.Array, hw) -> jax.Array:
  n, h, w, c = logits.shape
  if (h, w) == tuple(hw):
    return logits
  # Half-pixel centres (PyTorch align_corners=False); upsampling, so the
  # antialias flag has no effect.
  return jax.image.resize(logits, (n, hw[0], hw[1], c), method="bilinear")


def total_loss(logits, side_logits: Sequence[jax.Array], masks, loss_config, epoch):
  """Training loss with optional deep supervision.

  Args:
    logits: (N, H, W, 1) fused logits, float32 or bfloat16.
    side_logits: tuple of (N, ceil(H/2^k), ceil(W/2^k), 1) side logits
      (may be empty).  Used when ``loss_config.deep_supervision``; each is
      cast to the compute dtype and resized bilinearly to (H, W).
    masks: (N, H, W, 1) float32 in {0, 1}.
    loss_config: static config (``config.loss``).
    epoch: int or traced int32 scalar, 0-based.
  Returns:
    (loss, aux): float32 scalar; aux dict of float32 scalars:
      'loss_main' (fused output), 'loss_side' (mean over side outputs, 0 if
      none), 'iou', 'scale_weight', 'location' (fused output; 'sd_beta'
      for 'sd'), 'warmup' (1.0 while epoch < warm_epochs).
    loss = (loss_main + sum_k loss_side_k) / (1 + K).
  """
  main, aux = single_output_loss(logits, masks, loss_config, epoch)
  sides = tuple(side_logits) if loss_config.deep_supervision else ()
  hw = masks.shape[1:3]
  side_losses = [
    single_output_loss(_resize_to(s.astype(_compute_dtype(s)), hw), masks, loss_config, epoch)[0]
    for s in sides
  ]
  if side_losses:
    side_sum = sum(side_losses[1:], side_losses[0])
    loss = (main + side_sum) / (1 + len(side_losses))
    side_mean = side_sum / len(side_losses)
  else:
    loss = main
    side_mean = jnp.zeros_like(main)
  if LOSSES[loss_config.name].warmup:
    warm = jnp.asarray(epoch) < int(loss_config.warm_epochs)
  else:
    warm = jnp.zeros((), jnp.float32)
  out = {"loss_main": main, "loss_side": side_mean}
  out.update(aux)
  out["warmup"] = warm
  out = {k: jnp.asarray(v).astype(jnp.float32) for k, v in out.items()}
  return loss.astype(jnp.float32), out
