"""IRSTD evaluation metrics: mIoU, nIoU, Pd, Fa, PD-FA / ROC curves, size breakdown.

The definitions follow the infrared small-target (IRST) community code (ACM / DNANet /
BasicIRSTD / MSHNet evaluation scripts); every choice is spelled out here so that an
independent reference implementation can reproduce the numbers exactly.

Per image (after cropping to its true size ``(h, w)``)::

    pred   = prob > threshold            (strict; logits work with a logit threshold:
                                          logit > 0 is prob > 0.5, as BasicIRSTD)
    target = mask > 0.5
    I = #(pred & target),  P = #pred,  T = #target,  U = P + T - I,  A = h * w

Pixel metrics:

* ``miou`` = sum_images I / sum_images U  (dataset-level accumulation, "mIoU" of the
  community, which is the IoU of the single target class); 0 when the total union is 0.
* ``niou`` = mean over images of I / U.  An image with U = 0 (empty mask and empty
  prediction) scores 0 by default, as in ACM/DNANet's ``SamplewiseSigmoidMetric``
  (``inter / (eps + union)``); ``niou_empty='one'`` scores it 1 and ``'skip'`` leaves it
  out of the mean.  The community adds ``np.spacing(1)`` to the union; we divide exactly
  (difference below 1e-15 relative).

Target metrics (``distance`` d = 3 by default):

* Targets = 8-connected components of ``target``; predicted components = 8-connected
  components of ``pred``.  Components are numbered in raster order of their first pixel
  (``scipy.ndimage.label``; same order as ``skimage.measure.label``).  Centroid = mean
  (row, col) of the component's pixels.
* Matching (BasicIRSTD ``PD_FA.update`` order): for each target in label order, scan the
  still-unused predicted components in label order and take the FIRST one whose centroid
  lies at Euclidean distance ``< d`` (strict) from the target centroid; that component is
  then used up.  First-fit, not nearest: each predicted component matches at most one
  target and each target at most one component.
* ``pd`` = matched targets / targets (NaN when the evaluated set has no target).
* ``fa`` (the community convention, the one the published tables use) = false-alarm
  pixels / sum_images A, where BasicIRSTD/DNANet/MSHNet remove matched areas *by value*
  (``[x for x in areas if x not in matched_areas]``): an unmatched component whose area
  equals a matched one is not counted.  ``fa_strict`` counts every pixel of every
  unmatched predicted component.  Both are raw fractions (papers print ``fa * 1e6``);
  ``fa <= fa_strict`` always, with equality unless the quirk fires (a matched 2x2 target
  plus a separate 2x2 false alarm: ``fa`` counts 0 pixels, ``fa_strict`` 4).

Collapse check: ``num_saturated`` counts the images with more than ``SATURATED_FRACTION``
(a tenth) of their pixels predicted positive (``pred.sum() > A / 10``); small targets never
cover that much, so any such image means the model fires on its background (training
prints a warning, docs/training.md).

Size breakdown: each target is binned by its pixel area with ``size_edges=(10, 81)``:
small = area <= 9 (point-like, fits 3x3), medium = 10..80 (up to the SPIE small-target
limit of 80 px / 9x9), large = area >= 81.  Pd is reported per bin.

Padding: ``sizes[i] = (h, w)`` crops ``[:h, :w]`` before anything (IoU, components,
pixel count A); ``valid[i] = False`` drops image i entirely (filler in a padded batch).

Host side: connected components (Pd/Fa) need numpy/scipy, so :class:`IRSTDMetrics`
accumulates on the host.  Its ``counts()`` is a dict of fixed-shape numpy arrays that
processes sum elementwise; ``from_counts()`` rebuilds an accumulator with the same
``compute()`` (multi-host evaluation, ``irstd_jax.train.merge_across_processes``).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping
from collections.abc import Sequence
import dataclasses
import json
import math
import os
from typing import Any

import numpy as np
from scipy import ndimage
from scipy import spatial

__all__ = [
  "DEFAULT_SIZE_EDGES",
  "SIZE_BIN_NAMES",
  "Components",
  "ImageMatch",
  "connected_components",
  "match_components",
  "analyse_image",
  "IRSTDMetrics",
  "CurveMetrics",
  "default_thresholds",
  "format_markdown_report",
  "write_report",
]

DEFAULT_SIZE_EDGES: tuple[int, int] = (10, 81)
SIZE_BIN_NAMES: tuple[str, str, str] = ("small", "medium", "large")
_STRUCT8 = np.ones((3, 3), dtype=bool)
_NIOU_EMPTY = ("zero", "one", "skip")


# --------------------------------------------------------------------------- host core
@dataclasses.dataclass
class Components:
  """8-connected components of a binary map.

  labels: (H, W) int32, 0 = background, 1..n in raster order of first pixel.
  areas: (n,) int64 pixel counts; centroids: (n, 2) float64 mean (row, col).
  """

  labels: np.ndarray
  areas: np.ndarray
  centroids: np.ndarray

  @property
  def num(self) -> int:
    return int(self.areas.shape[0])


def connected_components(binary: np.ndarray) -> Components:
  """8-connected components with areas and centroids (mean pixel row/col)."""
  binary = np.asarray(binary, dtype=bool)
  labels, n = ndimage.label(binary, structure=_STRUCT8)
  if n == 0:
    return Components(
      labels.astype(np.int32), np.zeros((0,), np.int64), np.zeros((0, 2), np.float64)
    )
  idx = np.flatnonzero(labels)  # foreground pixels only
  lab = labels.ravel()[idx]
  rows, cols = np.divmod(idx, binary.shape[1])
  areas = np.bincount(lab, minlength=n + 1)[1:].astype(np.int64)
  sr = np.bincount(lab, weights=rows.astype(np.float64), minlength=n + 1)[1:]
  sc = np.bincount(lab, weights=cols.astype(np.float64), minlength=n + 1)[1:]
  centroids = np.stack([sr / areas, sc / areas], axis=1)
  return Components(labels.astype(np.int32), areas, centroids)


def match_components(
  target_centroids: np.ndarray, pred_centroids: np.ndarray, distance: float
) -> np.ndarray:
  """BasicIRSTD first-fit matching.

  For each target i (in order), the first still-unused predicted component j (in
  order) with ||c_pred[j] - c_target[i]||_2 < distance is matched and used up.
  Returns (num_targets,) int64: index of the matched predicted component or -1.
  """
  t = np.asarray(target_centroids, np.float64).reshape(-1, 2)
  p = np.asarray(pred_centroids, np.float64).reshape(-1, 2)
  match = np.full((t.shape[0],), -1, dtype=np.int64)
  if t.shape[0] == 0 or p.shape[0] == 0:
    return match
  used = np.zeros((p.shape[0],), dtype=bool)
  if t.shape[0] * p.shape[0] <= 65536:
    dist = np.sqrt(((t[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    for i in range(t.shape[0]):
      cand = np.flatnonzero((dist[i] < distance) & ~used)
      if cand.size:
        match[i] = cand[0]
        used[cand[0]] = True
    return match
  # Many blobs (e.g. noisy maps at low thresholds): same rule, candidates from a
  # KD-tree (slightly enlarged radius), then the exact strict test as above.
  tree = spatial.cKDTree(p)
  near = tree.query_ball_point(t, r=distance * (1 + 1e-9) + 1e-9)
  for i in range(t.shape[0]):
    cand = np.asarray(sorted(near[i]), dtype=np.int64)
    if cand.size == 0:
      continue
    d = np.sqrt(((p[cand] - t[i]) ** 2).sum(-1))
    cand = cand[(d < distance) & ~used[cand]]
    if cand.size:
      match[i] = cand[0]
      used[cand[0]] = True
  return match


@dataclasses.dataclass
class ImageMatch:
  """Everything the metrics (and figures) need about one image."""

  pred: np.ndarray  # (h, w) bool
  target: np.ndarray  # (h, w) bool
  pred_cc: Components
  target_cc: Components
  target_match: np.ndarray  # (num_targets,) index of matched pred component or -1
  pred_matched: np.ndarray  # (num_pred,) bool
  intersection: int
  union: int
  fa_pixels: int  # false-alarm pixels, community convention (``fa``)
  fa_strict_pixels: int  # pixels of all unmatched predicted components

  @property
  def num_targets(self) -> int:
    return self.target_cc.num

  @property
  def num_detected(self) -> int:
    return int((self.target_match >= 0).sum())


def analyse_image(
  pred: np.ndarray, target: np.ndarray, distance: float, target_cc: Components | None = None
) -> ImageMatch:
  """Analyse one already-cropped image given binary ``pred`` and ``target`` maps."""
  pred = np.asarray(pred, dtype=bool)
  target = np.asarray(target, dtype=bool)
  if pred.shape != target.shape:
    raise ValueError(f"pred {pred.shape} and target {target.shape} differ")
  if target_cc is None:
    target_cc = connected_components(target)
  pred_cc = connected_components(pred)
  tmatch = match_components(target_cc.centroids, pred_cc.centroids, distance)
  pmatched = np.zeros((pred_cc.num,), dtype=bool)
  pmatched[tmatch[tmatch >= 0]] = True
  fa_strict_pixels = int(pred_cc.areas[~pmatched].sum())
  matched_areas = set(pred_cc.areas[pmatched].tolist())  # community: removed by value
  fa_pixels = int(sum(a for a in pred_cc.areas.tolist() if a not in matched_areas))
  inter = int(np.count_nonzero(pred & target))
  union = int(np.count_nonzero(pred) + np.count_nonzero(target) - inter)
  return ImageMatch(
    pred, target, pred_cc, target_cc, tmatch, pmatched, inter, union, fa_pixels, fa_strict_pixels
  )


def _miou(inter: int, union: int) -> float:
  return float(inter) / float(union) if union > 0 else 0.0


# --------------------------------------------------------------------------- inputs
def _as_image_list(arr, name: str) -> list[np.ndarray]:
  """Batch -> list of 2-D numpy arrays. Accepts (N,H,W), (N,H,W,1), numpy/jax arrays,
  or a sequence of (H_i, W_i[, 1]) arrays of different sizes."""
  if isinstance(arr, (list, tuple)):
    out = [np.asarray(a) for a in arr]
  else:
    a = np.asarray(arr)
    if a.ndim == 4:
      if a.shape[-1] != 1:
        raise ValueError(f"{name}: expected a single channel, got {a.shape}")
      a = a[..., 0]
    if a.ndim == 2:
      a = a[None]
    if a.ndim != 3:
      raise ValueError(f"{name}: expected (N,H,W) or (N,H,W,1), got {a.shape}")
    out = list(a)
  res = []
  for x in out:
    if x.ndim == 3 and x.shape[-1] == 1:
      x = x[..., 0]
    if x.ndim != 2:
      raise ValueError(f"{name}: image of shape {x.shape} is not 2-D")
    res.append(x)
  return res


def _iter_images(probs, masks, sizes, valid):
  """Yield (prob, mask) 2-D numpy crops of the valid images of a batch."""
  plist = _as_image_list(probs, "probs")
  mlist = _as_image_list(masks, "masks")
  if len(plist) != len(mlist):
    raise ValueError(f"{len(plist)} predictions but {len(mlist)} masks")
  n = len(plist)
  if sizes is not None:
    sizes = np.asarray(sizes).astype(np.int64).reshape(n, 2)
  if valid is not None:
    valid = np.asarray(valid).astype(bool).reshape(n)
  for i in range(n):
    if valid is not None and not valid[i]:
      continue
    p, m = plist[i], mlist[i]
    if p.shape != m.shape:
      raise ValueError(f"image {i}: prediction {p.shape} vs mask {m.shape}")
    if sizes is not None:
      h, w = int(sizes[i, 0]), int(sizes[i, 1])
      if h > p.shape[0] or w > p.shape[1] or h < 0 or w < 0:
        raise ValueError(f"image {i}: size {(h, w)} exceeds array {p.shape}")
      p, m = p[:h, :w], m[:h, :w]
    yield p, m


def _size_bin(areas: np.ndarray, edges: Sequence[int]) -> np.ndarray:
  """0 = small (area < edges[0]), 1 = medium, 2 = large (area >= edges[1])."""
  return np.searchsorted(np.asarray(edges), np.asarray(areas), side="right")


# --------------------------------------------------------------------------- metrics
_SCALARS = (
  "num_images",
  "num_pixels",
  "intersection",
  "union",
  "pred_pixels",
  "target_pixels",
  "num_targets",
  "num_detected",
  "num_pred_components",
  "num_false_components",
  "fa_pixels",
  "fa_strict_pixels",
  "num_empty_union",
  "num_saturated",
)


SATURATED_FRACTION = 0.1  # an image predicted positive on more than this is 'saturated'


class IRSTDMetrics:
  """Streaming mIoU / nIoU / Pd / Fa accumulator (host side, numpy + scipy).

  Args:
    threshold: pred = prob > threshold (strict).  A bool prediction map also works
      for any threshold in [0, 1).
    distance: centroid distance for a detection (strict ``<``).
    niou_empty: per-image IoU when union = 0: 'zero' (community), 'one', 'skip'.
    size_edges: target-area bin edges (small < e0 <= medium < e1 <= large).

  ``update(probs, masks, sizes=None, valid=None)`` then ``compute()``.  The state is
  ``counts()``: fixed-shape numpy arrays (int64 scalars, float64 ``iou_sum``, (3,)
  per-size bins) that determine ``compute()`` and ``size_breakdown()`` completely;
  processes sum them elementwise (``process_allgather(...).sum(0)``) and rebuild with
  ``IRSTDMetrics.from_counts(summed, **config)``.
  """

  def __init__(
    self,
    threshold: float,
    distance: float,
    niou_empty: str = "zero",
    size_edges: Sequence[int] = DEFAULT_SIZE_EDGES,
  ):
    if niou_empty not in _NIOU_EMPTY:
      raise ValueError(f"niou_empty must be one of {_NIOU_EMPTY}")
    if len(size_edges) != 2 or not size_edges[0] < size_edges[1]:
      raise ValueError("size_edges must be two increasing areas")
    self.threshold = float(threshold)
    self.distance = float(distance)
    self.niou_empty = niou_empty
    self.size_edges = tuple(int(e) for e in size_edges)
    self._s = {k: 0 for k in _SCALARS}
    self._iou_sum = 0.0  # sum of I/U over images with U > 0
    self._size_targets = np.zeros((3,), np.int64)
    self._size_detected = np.zeros((3,), np.int64)

  # -- state ---------------------------------------------------------------------

  def config(self) -> dict[str, Any]:
    return {
      "threshold": self.threshold,
      "distance": self.distance,
      "niou_empty": self.niou_empty,
      "size_edges": list(self.size_edges),
    }

  def counts(self) -> dict[str, np.ndarray]:
    """Fixed-shape, elementwise-summable numpy state (see class docstring)."""
    st = {k: np.asarray(v, np.int64) for k, v in self._s.items()}
    st["iou_sum"] = np.asarray(self._iou_sum, np.float64)
    st["size_targets"] = self._size_targets.copy()
    st["size_detected"] = self._size_detected.copy()
    return st

  @classmethod
  def from_counts(cls, counts: Mapping[str, Any], **config) -> IRSTDMetrics:
    """Rebuild from (possibly process-summed) ``counts()``."""
    m = cls(**config)
    for k in _SCALARS:
      m._s[k] = int(np.asarray(counts[k]))
    m._iou_sum = float(np.asarray(counts["iou_sum"]))
    m._size_targets = np.asarray(counts["size_targets"], np.int64).reshape(3).copy()
    m._size_detected = np.asarray(counts["size_detected"], np.int64).reshape(3).copy()
    return m

  # -- accumulation ----------------------------------------------------------------
  def update(self, probs, masks, sizes=None, valid=None) -> list[ImageMatch]:
    """Accumulate a batch.  See the module docstring for shapes and conventions.

    Returns the per-image :class:`ImageMatch` records of the valid images (handy for
    figures); callers may ignore it.
    """
    out = []
    for p, m in _iter_images(probs, masks, sizes, valid):
      out.append(self.add_image(p > self.threshold, m > 0.5))
    return out

  def add_image(
    self, pred: np.ndarray, target: np.ndarray, target_cc: Components | None = None
  ) -> ImageMatch:
    """Accumulate one cropped image given binary maps."""
    r = analyse_image(pred, target, self.distance, target_cc)
    s = self._s
    s["num_images"] += 1
    s["num_pixels"] += int(r.pred.size)
    s["intersection"] += r.intersection
    s["union"] += r.union
    s["pred_pixels"] += int(r.pred_cc.areas.sum())
    s["target_pixels"] += int(r.target_cc.areas.sum())
    s["num_targets"] += r.num_targets
    s["num_detected"] += r.num_detected
    s["num_pred_components"] += r.pred_cc.num
    s["num_false_components"] += int((~r.pred_matched).sum())
    s["fa_pixels"] += r.fa_pixels
    s["fa_strict_pixels"] += r.fa_strict_pixels
    s["num_saturated"] += int(int(r.pred_cc.areas.sum()) > SATURATED_FRACTION * r.pred.size)
    if r.union > 0:
      self._iou_sum += r.intersection / r.union
    else:
      s["num_empty_union"] += 1
    bins = _size_bin(r.target_cc.areas, self.size_edges)
    self._size_targets += np.bincount(bins, minlength=3)[:3]
    self._size_detected += np.bincount(bins[r.target_match >= 0], minlength=3)[:3]
    return r

  # -- results ---------------------------------------------------------------------
  def compute(self) -> dict[str, float]:
    """Flat dict of Python scalars (loggable): 'miou', 'niou', 'pd', 'fa' (community
    convention), 'fa_strict' (every unmatched pixel), and 'fa_x1e6', 'pd_small'/'pd_medium'/'pd_large', plus the raw counts."""
    s = self._s
    res: dict[str, Any] = {
      "miou": _miou(s["intersection"], s["union"]),
      "niou": self._niou(),
      "pd": (s["num_detected"] / s["num_targets"]) if s["num_targets"] else float("nan"),
      "fa": (s["fa_pixels"] / s["num_pixels"]) if s["num_pixels"] else 0.0,
      "fa_strict": (s["fa_strict_pixels"] / s["num_pixels"]) if s["num_pixels"] else 0.0,
    }
    res["fa_x1e6"] = res["fa"] * 1e6
    for name, b in self.size_breakdown().items():
      res[f"pd_{name}"] = b["pd"]
    res.update({k: int(v) for k, v in s.items()})
    return res

  def _niou(self) -> float:
    n, e = self._s["num_images"], self._s["num_empty_union"]
    num, den = self._iou_sum, n  # 'zero'
    if self.niou_empty == "one":
      num += e
    elif self.niou_empty == "skip":
      den = n - e
    return float(num / den) if den > 0 else 0.0

  def size_breakdown(self) -> dict[str, dict[str, Any]]:
    """Pd per target-area bin: {'small': {'pd', 'num_targets', 'num_detected',
    'min_area', 'max_area'}, 'medium': ..., 'large': ...} (pd NaN for empty bins)."""
    e0, e1 = self.size_edges
    ranges = [(1, e0 - 1), (e0, e1 - 1), (e1, None)]
    out = {}
    for k, name in enumerate(SIZE_BIN_NAMES):
      n = int(self._size_targets[k])
      d = int(self._size_detected[k])
      out[name] = {
        "pd": d / n if n else float("nan"),
        "num_targets": n,
        "num_detected": d,
        "min_area": ranges[k][0],
        "max_area": ranges[k][1],
      }
    return out

  def summary(self) -> dict[str, Any]:
    """compute() + size breakdown + config, JSON-friendly (NaN -> None)."""
    return strict_json(
      {"metrics": self.compute(), "size_breakdown": self.size_breakdown(), "config": self.config()}
    )


# --------------------------------------------------------------------------- curves
def default_thresholds() -> np.ndarray:
  """0.01, 0.05, 0.1, ..., 0.9, 0.95, 0.99 (21 points)."""
  return np.concatenate([[0.01], np.round(np.arange(0.05, 0.951, 0.05), 2), [0.99]])


class CurveMetrics:
  """Threshold sweep: PD-FA curve, pixel ROC (TPR/FPR) and its AUC.

  For each threshold t (pred = prob > t) one :class:`IRSTDMetrics` is accumulated
  (same conventions; target components computed once per image).  Pixel counts for
  the ROC: TP(t) = #{target pixels with prob > t}, FP(t) = #{background pixels with
  prob > t}; TPR = TP / #target pixels, FPR = FP / #background pixels (after
  cropping, valid images only).  ``roc_auc`` is the trapezoidal area of the ROC
  polyline through (0, 0), the swept points sorted by FPR, and (1, 1) - an
  approximation of the exact pixel AUC that tightens as the sweep gets denser.
  """

  def __init__(
    self,
    thresholds: Iterable[float] | None = None,
    *,
    distance: float,
    niou_empty: str = "zero",
    size_edges: Sequence[int] = DEFAULT_SIZE_EDGES,
  ):
    th = default_thresholds() if thresholds is None else thresholds
    th = np.unique(np.asarray(list(th), np.float64))
    if th.size == 0:
      raise ValueError("need at least one threshold")
    self.thresholds = th
    self.distance = float(distance)
    self.metrics = [
      IRSTDMetrics(float(t), distance, niou_empty=niou_empty, size_edges=size_edges) for t in th
    ]
    self.tp = np.zeros(th.size, np.int64)
    self.fp = np.zeros(th.size, np.int64)
    self.num_pos = 0
    self.num_neg = 0

  def update(self, probs, masks, sizes=None, valid=None) -> None:
    for p, m in _iter_images(probs, masks, sizes, valid):
      tgt = m > 0.5
      tcc = connected_components(tgt)
      for t, met in zip(self.thresholds, self.metrics):
        met.add_image(p > t, tgt, target_cc=tcc)
      p = np.asarray(p, np.float64)
      # idx = number of thresholds strictly below the prob; prob > t_k <=> idx > k
      idx_pos = np.searchsorted(self.thresholds, p[tgt], side="left")
      idx_neg = np.searchsorted(self.thresholds, p[~tgt], side="left")
      k = self.thresholds.size
      self.tp += _count_above(idx_pos, k)
      self.fp += _count_above(idx_neg, k)
      self.num_pos += int(tgt.sum())
      self.num_neg += int((~tgt).sum())

  def compute(self) -> dict[str, Any]:
    """Lists aligned with 'thresholds' (ascending): 'pd', 'fa', 'fa_strict', 'miou', 'niou',
    'tpr', 'fpr', 'precision'; scalars 'roc_auc', 'num_pos', 'num_neg'."""
    rs = [m.compute() for m in self.metrics]
    tpr = self.tp / self.num_pos if self.num_pos else np.full(self.tp.shape, np.nan)
    fpr = self.fp / self.num_neg if self.num_neg else np.full(self.fp.shape, np.nan)
    denom = self.tp + self.fp
    prec = np.where(denom > 0, self.tp / np.maximum(denom, 1), np.nan)
    auc = float("nan")
    if self.num_pos and self.num_neg:
      x = np.concatenate([[0.0], fpr, [1.0]])
      y = np.concatenate([[0.0], tpr, [1.0]])
      order = np.lexsort((y, x))
      x, y = x[order], y[order]
      auc = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
    return {
      "thresholds": self.thresholds.tolist(),
      "pd": [r["pd"] for r in rs],
      "fa": [r["fa"] for r in rs],
      "fa_strict": [r["fa_strict"] for r in rs],
      "miou": [r["miou"] for r in rs],
      "niou": [r["niou"] for r in rs],
      "tpr": tpr.tolist(),
      "fpr": fpr.tolist(),
      "precision": prec.tolist(),
      "roc_auc": auc,
      "num_pos": int(self.num_pos),
      "num_neg": int(self.num_neg),
      "distance": self.distance,
    }


def _count_above(idx: np.ndarray, k: int) -> np.ndarray:
  """out[j] = #{idx > j} for j in 0..k-1."""
  bc = np.bincount(idx, minlength=k + 1)
  return np.cumsum(bc[::-1])[::-1][1:].astype(np.int64)


# --------------------------------------------------------------------------- reports
def strict_json(x):
  """`x` (nested dicts / lists / numpy values) as plain Python that json.dumps writes as
  strict JSON: numpy scalars and arrays as numbers and lists, NaN / inf as None (null)."""
  if isinstance(x, dict):
    return {str(k): strict_json(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [strict_json(v) for v in x]
  if isinstance(x, np.ndarray):
    return strict_json(x.tolist())
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (float, np.floating)):
    x = float(x)
    return None if not math.isfinite(x) else x
  if isinstance(x, (np.bool_,)):
    return bool(x)
  return x


def _fmt(v, scale=1.0, digits=2):
  if v is None:
    return "n/a"
  v = float(v)
  if not math.isfinite(v):
    return "n/a"
  return f"{v * scale:.{digits}f}"


def format_markdown_report(
  metrics: IRSTDMetrics,
  curve: dict[str, Any] | None = None,
  title: str = "IRSTD evaluation",
  extra: dict[str, Any] | None = None,
  figures: Mapping[str, str] | None = None,
) -> str:
  """Markdown report: headline table (mIoU %, nIoU %, Pd %, Fa x1e-6), counts,
  size breakdown, optional curve summary and figure links."""
  r = metrics.compute()
  cfg = metrics.config()
  lines = [f"# {title}", ""]
  if extra:
    for k, v in extra.items():
      lines.append(f"- {k}: {v}")
    lines.append("")
  lines += [
    f"Threshold {cfg['threshold']} (score > t), Pd distance < {cfg['distance']} px, "
    f"8-connected components, nIoU empty-image convention '{cfg['niou_empty']}'. "
    "Fa: the community convention (BasicIRSTD/MSHNet: an unmatched component whose "
    "area equals a matched one is not counted); Fa_strict: every unmatched pixel.",
    "",
    "| mIoU (%) | nIoU (%) | Pd (%) | Fa (x1e-6) | Fa_strict (x1e-6) |",
    "| --- | --- | --- | --- | --- |",
    f"| {_fmt(r['miou'], 100)} | {_fmt(r['niou'], 100)} | {_fmt(r['pd'], 100)} "
    f"| {_fmt(r['fa'], 1e6)} | {_fmt(r['fa_strict'], 1e6)} |",
    "",
    f"Images {r['num_images']}, pixels {r['num_pixels']}, targets "
    f"{r['num_targets']} (detected {r['num_detected']}), predicted components "
    f"{r['num_pred_components']} (false {r['num_false_components']}), false-alarm "
    f"pixels {r['fa_pixels']} (strict {r['fa_strict_pixels']}).",
    "",
    "## Pd by target size",
    "",
    "| bin | area (px) | targets | detected | Pd (%) |",
    "| --- | --- | --- | --- | --- |",
  ]
  for name, b in metrics.size_breakdown().items():
    rng = f"{b['min_area']}-{b['max_area']}" if b["max_area"] is not None else f">= {b['min_area']}"
    lines.append(
      f"| {name} | {rng} | {b['num_targets']} | {b['num_detected']} | {_fmt(b['pd'], 100)} |"
    )
  lines.append("")
  if curve is not None:
    lines += [
      "## Threshold sweep",
      "",
      f"Pixel ROC AUC (trapezoid over {len(curve['thresholds'])} thresholds): "
      f"{_fmt(curve['roc_auc'], 1, 4)}",
      "",
      "| threshold | Pd (%) | Fa (x1e-6) | mIoU (%) | TPR | FPR |",
      "| --- | --- | --- | --- | --- | --- |",
    ]
    for i, t in enumerate(curve["thresholds"]):
      lines.append(
        f"| {t:g} | {_fmt(curve['pd'][i], 100)} | "
        f"{_fmt(curve['fa'][i], 1e6)} | {_fmt(curve['miou'][i], 100)} | "
        f"{_fmt(curve['tpr'][i], 1, 4)} | {_fmt(curve['fpr'][i], 1, 6)} |"
      )
    lines.append("")
  if figures:
    lines += ["## Figures", ""]
    for name, path in figures.items():
      lines.append(f"![{name}]({path})")
    lines.append("")
  return "\n".join(lines)


def write_report(
  out_dir: str,
  metrics: IRSTDMetrics,
  curve: dict[str, Any] | None = None,
  title: str = "IRSTD evaluation",
  extra: dict[str, Any] | None = None,
  figures: Mapping[str, str] | None = None,
  basename: str = "report",
) -> tuple[str, str]:
  """Write ``<out_dir>/<basename>.json`` and ``.md``; returns both paths.
  JSON: {'metrics', 'size_breakdown', 'config', 'curve'?, 'extra'?, 'figures'?};
  NaN is written as null."""
  os.makedirs(out_dir, exist_ok=True)
  payload = metrics.summary()
  if curve is not None:
    payload["curve"] = strict_json(curve)
  if extra:
    payload["extra"] = strict_json(dict(extra))
  if figures:
    payload["figures"] = dict(figures)
  jpath = os.path.join(out_dir, basename + ".json")
  mpath = os.path.join(out_dir, basename + ".md")
  with open(jpath, "w") as f:
    json.dump(payload, f, indent=2, allow_nan=False)
  with open(mpath, "w") as f:
    f.write(format_markdown_report(metrics, curve, title, extra, figures))
  return jpath, mpath
