"""PyTorch reference of the losses (SPEC.md section 2), NCHW tensors.

Written from SPEC.md and the formulas documented in ``irstd_jax/losses.py``; every
function mirrors one there (same names, same defaults), with logits and masks of
shape (N, 1, H, W).  Per image b: p = sigmoid(z), Ap = sum p, At = sum g,
I = sum p g, IoU = (I + s) / (Ap + At - I + s).
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import math
from typing import Any

import torch
import torch.nn.functional as F

SCALE_WEIGHT_KINDS = ("diff", "var", "mobius", "var_denominator")
_LOC_D = 1e-8


def _get(cfg: Any, name: str, default: Any) -> Any:
  if cfg is None:
    return default
  if isinstance(cfg, Mapping):
    return cfg.get(name, default)
  try:
    return cfg[name]
  except (KeyError, TypeError, AttributeError):
    return getattr(cfg, name, default)


def scale_weight(ap, at, kind="diff", *, b_over=1.0, b_under=1.0, eps=1e-6):
  """w(Ap, At) for the four variants (elementwise)."""
  x = ap - at
  s = ap + at
  if kind == "diff":
    return 1.0 - (b_over * torch.clamp(x, min=0) + b_under * torch.clamp(-x, min=0)) / (s + eps)
  if kind == "var":
    v = (x / 2.0) ** 2
    return (torch.minimum(ap, at) + v + eps) / (torch.maximum(ap, at) + v + eps)
  if kind == "mobius":
    return 2.0 * ap / (s + eps)
  if kind == "var_denominator":
    v = (x / 2.0) ** 2
    m = torch.maximum(ap, at)
    return (m + eps) / (m + v + eps)
  raise ValueError(f"unknown scale_weight kind {kind!r}")


def region_sums(p, g):
  """Per-image (Ap, At, I), each (N,)."""
  dims = tuple(range(1, p.dim()))
  return p.sum(dims), g.sum(dims), (p * g).sum(dims)


def soft_iou(ap, at, inter, smooth=1.0):
  return (inter + smooth) / (ap + at - inter + smooth)


def scale_loss_from_sums(
  ap,
  at,
  inter,
  kind="diff",
  *,
  smooth=1.0,
  eps=1e-6,
  b_over=1.0,
  b_under=1.0,
  reduction="per_image",
  detach_weight=False,
  weighted=True,
):
  """(loss, mean IoU, mean w); weighted=False gives the warm-up soft-IoU loss."""
  if reduction == "batch":
    ap, at, inter = ap.sum(), at.sum(), inter.sum()
  elif reduction != "per_image":
    raise ValueError(reduction)
  iou = soft_iou(ap, at, inter, smooth)
  w = scale_weight(ap, at, kind, b_over=b_over, b_under=b_under, eps=eps)
  if detach_weight:
    w = w.detach()
  loss = 1.0 - ((w if weighted else torch.ones_like(w)) * iou).mean()
  return loss, iou.mean(), w.mean()


def scale_loss(logits, masks, kind="diff", *, weighted=True, **kw):
  p = torch.sigmoid(logits)
  return scale_loss_from_sums(*region_sums(p, masks), kind, weighted=weighted, **kw)[0]


def soft_iou_loss(logits, masks, smooth=1.0):
  p = torch.sigmoid(logits)
  return 1.0 - soft_iou(*region_sums(p, masks), smooth).mean()


def dice_loss(logits, masks, smooth=1.0):
  ap, at, inter = region_sums(torch.sigmoid(logits), masks)
  return 1.0 - ((2.0 * inter + smooth) / (ap + at + smooth)).mean()


def bce_loss(logits, masks):
  return F.binary_cross_entropy_with_logits(logits, masks)


def focal_loss(logits, masks, alpha=0.25, gamma=2.0):
  ce = F.binary_cross_entropy_with_logits(logits, masks, reduction="none")
  p = torch.sigmoid(logits)
  one_minus_pt = masks * (1.0 - p) + (1.0 - masks) * p
  alpha_t = masks * alpha + (1.0 - masks) * (1.0 - alpha)
  return (alpha_t * one_minus_pt**gamma * ce).mean()


def centroids(maps, mode="centroid", eps=1e-6):
  """Per-image (cx, cy) with x_j = j / W, y_i = i / H; maps (N, 1, H, W) or (N, H, W)."""
  if maps.dim() == 4:
    maps = maps[:, 0]
  _, h, w = maps.shape
  xs = torch.arange(w, dtype=maps.dtype, device=maps.device) / w
  ys = torch.arange(h, dtype=maps.dtype, device=maps.device) / h
  mx = (maps * xs[None, None, :]).sum((1, 2))
  my = (maps * ys[None, :, None]).sum((1, 2))
  if mode == "centroid":
    den = maps.sum((1, 2)) + eps
  elif mode == "mshnet":
    den = float(h * w)
  else:
    raise ValueError(mode)
  return mx / den, my / den


def location_loss(p, g, mode="centroid", eps=1e-6):
  d = _LOC_D
  pcx, pcy = centroids(p, mode, eps)
  tcx, tcy = centroids(g, mode, eps)
  ang = (4.0 / math.pi**2) * (torch.atan(pcy / (pcx + d)) - torch.atan(tcy / (tcx + d))) ** 2
  lp = torch.sqrt(pcx**2 + pcy**2 + d)
  lt = torch.sqrt(tcx**2 + tcy**2 + d)
  length = 1.0 - torch.minimum(lp, lt) / (torch.maximum(lp, lt) + d)
  return (length + ang).mean()


def sd_beta(at, hw, delta=0.5, ref_area=81.0, ref_resolution=512.0 * 512.0):
  r = ref_resolution / float(hw)
  return torch.clamp(at * (delta * r / ref_area), max=delta).mean()


def _scale_family(p, g, cfg, weighted, location_on=True, sd=False):
  kind = _get(cfg, "scale_weight", "diff")
  ap, at, inter = region_sums(p, g)
  eps = float(_get(cfg, "eps", 1e-6))
  ls, iou, w = scale_loss_from_sums(
    ap,
    at,
    inter,
    kind,
    smooth=float(_get(cfg, "smooth", 1.0)),
    eps=eps,
    b_over=float(_get(cfg, "b_over", 1.0)),
    b_under=float(_get(cfg, "b_under", 1.0)),
    reduction=_get(cfg, "reduction", "per_image"),
    detach_weight=bool(_get(cfg, "detach_weight", False)),
    weighted=weighted,
  )
  mode = _get(cfg, "location_centroid", "centroid")
  aux = {"iou": iou, "scale_weight": w}
  if sd:
    beta = sd_beta(
      at,
      p.shape[-2] * p.shape[-1],
      float(_get(cfg, "sd_delta", 0.5)),
      float(_get(cfg, "sd_ref_area", 81.0)),
      float(_get(cfg, "sd_ref_resolution", 512.0 * 512.0)),
    )
    lloc = location_loss(p, g, mode, eps)
    loss = (1.0 + beta) * ls + (1.0 - beta) * lloc if weighted else ls
    aux.update(location=lloc, sd_beta=beta)
    return loss, aux
  lw = float(_get(cfg, "location_weight", 0.0))
  if lw != 0.0:
    lloc = location_loss(p, g, mode, eps)
    loss = ls + lw * lloc if location_on else ls
    aux["location"] = lloc
  else:
    loss = ls
    aux["location"] = torch.zeros((), dtype=p.dtype, device=p.device)
  return loss, aux


def sd_loss(logits, masks, cfg=None, *, weighted=True):
  return _scale_family(torch.sigmoid(logits), masks, cfg, weighted, sd=True)


def single_output_loss(logits, masks, cfg, epoch=0):
  """(loss, aux) of one output map, chosen by cfg.name (epoch a Python int)."""
  name = _get(cfg, "name", "scale")
  smooth = float(_get(cfg, "smooth", 1.0))
  p = torch.sigmoid(logits)
  if name in ("scale", "sd"):
    weighted = epoch >= int(_get(cfg, "warm_epochs", 5))
    loc_on = epoch >= int(_get(cfg, "location_warm_epochs", 5))
    return _scale_family(p, masks, cfg, weighted, loc_on, sd=(name == "sd"))
  iou = soft_iou(*region_sums(p, masks), smooth).mean()
  aux = {
    "iou": iou,
    "scale_weight": torch.ones((), dtype=p.dtype, device=p.device),
    "location": torch.zeros((), dtype=p.dtype, device=p.device),
  }
  if name == "soft_iou":
    loss = 1.0 - iou
  elif name == "dice":
    loss = dice_loss(logits, masks, smooth)
  elif name == "bce":
    loss = bce_loss(logits, masks)
  elif name == "focal":
    loss = focal_loss(
      logits, masks, float(_get(cfg, "focal_alpha", 0.25)), float(_get(cfg, "focal_gamma", 2.0))
    )
  else:
    raise ValueError(f"unknown loss {name!r}")
  return loss, aux


def total_loss(logits, side_logits: Sequence[torch.Tensor], masks, cfg, epoch=0):
  """(L_fused + sum_k L_side_k) / (1 + K), side logits resized bilinearly
  (align_corners=False) to the mask size; returns (loss, aux)."""
  main, aux = single_output_loss(logits, masks, cfg, epoch)
  sides = list(side_logits) if _get(cfg, "deep_supervision", True) else []
  hw = tuple(masks.shape[-2:])
  losses = []
  for s in sides:
    if tuple(s.shape[-2:]) != hw:
      s = F.interpolate(s, size=hw, mode="bilinear", align_corners=False)
    losses.append(single_output_loss(s, masks, cfg, epoch)[0])
  loss = (main + sum(losses)) / (1 + len(losses)) if losses else main
  aux = dict(
    aux, loss_main=main, loss_side=(sum(losses) / len(losses)) if losses else torch.zeros_like(main)
  )
  return loss, aux
