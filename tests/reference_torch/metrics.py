"""Reference IRSTD metrics in plain numpy/Python, with its own connected components.

Conventions (as documented in ``irstd_jax/metrics.py``): pred = prob > t (strict),
target = mask > 0.5; 8-connected components numbered in raster order of their first
pixel (a breadth-first search started at each unlabelled foreground pixel met in
raster order); centroid = mean (row, col); BasicIRSTD first-fit matching (targets in
order, each takes the first unused predicted component with centroid distance < d);
Fa = pixels of unmatched predicted components / all pixels ('pixels' convention) or
with matched areas removed by value ('basicirstd_area'); mIoU = sum I / sum U, nIoU =
mean per-image I / U (0 when U = 0).  Size bins: area < 10 small, < 81 medium, else large.
"""

from __future__ import annotations

from collections import deque

import numpy as np


def label8(binary):
  """(labels (H, W) int, list of components as lists of (row, col))."""
  b = np.asarray(binary, bool)
  h, w = b.shape
  labels = np.zeros((h, w), np.int64)
  comps = []
  for r0 in range(h):
    for c0 in range(w):
      if not b[r0, c0] or labels[r0, c0]:
        continue
      lab = len(comps) + 1
      labels[r0, c0] = lab
      pix, q = [], deque([(r0, c0)])
      while q:
        r, c = q.popleft()
        pix.append((r, c))
        for dr in (-1, 0, 1):
          for dc in (-1, 0, 1):
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and b[rr, cc] and not labels[rr, cc]:
              labels[rr, cc] = lab
              q.append((rr, cc))
      comps.append(pix)
  return labels, comps


def _centroid(pix):
  return (sum(p[0] for p in pix) / len(pix), sum(p[1] for p in pix) / len(pix))


def image_stats(pred, target, distance=3.0, fa_convention="pixels"):
  pred = np.asarray(pred, bool)
  target = np.asarray(target, bool)
  _, tcomps = label8(target)
  _, pcomps = label8(pred)
  tcen = [_centroid(p) for p in tcomps]
  pcen = [_centroid(p) for p in pcomps]
  used = [False] * len(pcomps)
  detected = []
  for tc in tcen:
    hit = False
    for j, pc in enumerate(pcen):
      if used[j]:
        continue
      if np.sqrt((tc[0] - pc[0]) ** 2 + (tc[1] - pc[1]) ** 2) < distance:
        used[j] = True
        hit = True
        break
    detected.append(hit)
  areas = [len(p) for p in pcomps]
  if fa_convention == "pixels":
    fa = sum(a for a, u in zip(areas, used) if not u)
  else:
    matched = {a for a, u in zip(areas, used) if u}
    fa = sum(a for a in areas if a not in matched)
  inter = int((pred & target).sum())
  union = int(pred.sum() + target.sum() - inter)
  return dict(
    inter=inter,
    union=union,
    pixels=pred.size,
    targets=[len(p) for p in tcomps],
    detected=detected,
    fa=fa,
  )


def compute(
  probs,
  masks,
  threshold=0.5,
  distance=3.0,
  sizes=None,
  valid=None,
  fa_convention="pixels",
  size_edges=(10, 81),
):
  """probs, masks: (N, H, W); returns dict miou, niou, pd, fa, pd_small/medium/large."""
  inter = union = pixels = fa = 0
  ious, areas, det = [], [], []
  for i in range(len(probs)):
    if valid is not None and not valid[i]:
      continue
    p, m = np.asarray(probs[i]), np.asarray(masks[i])
    if sizes is not None:
      p, m = p[: sizes[i][0], : sizes[i][1]], m[: sizes[i][0], : sizes[i][1]]
    s = image_stats(p > threshold, m > 0.5, distance, fa_convention)
    inter += s["inter"]
    union += s["union"]
    pixels += s["pixels"]
    fa += s["fa"]
    ious.append(s["inter"] / s["union"] if s["union"] else 0.0)
    areas += s["targets"]
    det += s["detected"]
  areas, det = np.asarray(areas), np.asarray(det, bool)
  out = {
    "miou": inter / union if union else 0.0,
    "niou": float(np.mean(ious)) if ious else 0.0,
    "pd": det.mean() if det.size else float("nan"),
    "fa": fa / pixels if pixels else 0.0,
  }
  bins = [
    areas < size_edges[0],
    (areas >= size_edges[0]) & (areas < size_edges[1]),
    areas >= size_edges[1],
  ]
  for name, sel in zip(("small", "medium", "large"), bins):
    out[f"pd_{name}"] = det[sel].mean() if sel.any() else float("nan")
  return out
