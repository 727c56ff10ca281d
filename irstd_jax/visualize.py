"""Figures for IRSTD evaluation: Figure-6 overlays, Figure-7 3-D heatmaps, PD-FA and ROC.

Everything is drawn with matplotlib's Agg canvas (``matplotlib.figure.Figure`` +
``FigureCanvasAgg``): no pyplot, no global backend switch, safe in headless jobs.

Colour code of the overlays (paper's Figure 6), on the grey-scale input:
  true positive  (pred & mask)   pure green  (0, 255, 0)
  false positive (pred & ~mask)  pure red    (255, 0, 0)
  false negative (~pred & mask)  pure yellow (255, 255, 0)
Pixel colours are painted opaque and the main panel is placed pixel-exactly (integer
nearest-neighbour upscaling by ``scale``) so a PNG pixel can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping
import math
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator
import numpy as np

from irstd_jax import metrics as _metrics

__all__ = [
  "TP_COLOR",
  "FP_COLOR",
  "FN_COLOR",
  "overlay_rgb",
  "overlay_figure6",
  "heatmap_figure7",
  "pdfa_curve_plot",
  "roc_plot",
  "size_breakdown_plot",
]

TP_COLOR = (0, 255, 0)
FP_COLOR = (255, 0, 0)
FN_COLOR = (255, 255, 0)
_BOX_COLORS = [
  (0, 255, 255),
  (255, 0, 255),
  (255, 255, 255),
  (255, 128, 0),
  (64, 128, 255),
  (180, 120, 255),
]


def _to2d(x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim == 3 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 2:
    raise ValueError(f"expected a 2-D map, got {x.shape}")
  return x


def _grey_uint8(image) -> np.ndarray:
  img = _to2d(image).astype(np.float64)
  lo, hi = np.nanmin(img), np.nanmax(img)
  if hi > lo:
    img = (img - lo) / (hi - lo)
  else:
    img = np.zeros_like(img)
  return np.round(img * 255).astype(np.uint8)


def overlay_rgb(image, mask, pred_mask) -> np.ndarray:
  """(H, W, 3) uint8: grey image (min-max scaled) with TP green, FP red, FN yellow.

  ``mask`` is binarised with > 0.5; ``pred_mask`` must already be binary (bool or
  {0, 1}; > 0.5 is applied, so pass ``probs > threshold`` for a strict threshold).
  """
  g = _grey_uint8(image)
  m = _to2d(mask) > 0.5
  p = _to2d(pred_mask) > 0.5
  if not (g.shape == m.shape == p.shape):
    raise ValueError(f"shapes differ: {g.shape}, {m.shape}, {p.shape}")
  rgb = np.repeat(g[..., None], 3, axis=2)
  rgb[p & m] = TP_COLOR
  rgb[p & ~m] = FP_COLOR
  rgb[~p & m] = FN_COLOR
  return rgb


def _draw_rect(canvas, r0, c0, r1, c1, color, t=1):
  """Outline rows r0..r1-1, cols c0..c1-1 (clipped), thickness t, in place."""
  h, w = canvas.shape[:2]
  r0, c0 = max(r0, 0), max(c0, 0)
  r1, c1 = min(r1, h), min(c1, w)
  if r1 <= r0 or c1 <= c0:
    return
  canvas[r0 : min(r0 + t, r1), c0:c1] = color
  canvas[max(r1 - t, r0) : r1, c0:c1] = color
  canvas[r0:r1, c0 : min(c0 + t, c1)] = color
  canvas[r0:r1, max(c1 - t, c0) : c1] = color


def _save_figure(fig: Figure, path: str, dpi: float) -> None:
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=dpi, format="png")


def overlay_figure6(
  image,
  mask,
  pred_mask,
  path: str,
  scale: int | None = None,
  inset_radius: int = 8,
  inset_size: int = 128,
  max_insets: int = 6,
  legend: bool = True,
  title: str | None = None,
) -> dict[str, Any]:
  """Paper's Figure 6: segmentation overlay with a zoomed inset on each target.

  The main panel is ``overlay_rgb`` upscaled by the integer ``scale`` (default:
  largest integer with max side <= 512, at least 1) and sits at the top-left of the
  PNG: image pixel (r, c) covers PNG rows r*scale..(r+1)*scale-1 and the same for
  columns.  Each target (8-connected component of ``mask``; at most ``max_insets``,
  in label order) gets a coloured box on the main panel and, in a strip to the right,
  a nearest-neighbour zoom (``inset_size`` px square) of the window of half-size
  max(inset_radius, target extent/2 + 2) around its centroid, framed in the same
  colour.  A legend strip (TP/FP/FN swatches, and ``title`` if given) is added
  below the panels when ``legend``.  The zoom is a side strip rather than an inset
  drawn over the image so that no image pixel is hidden.

  Returns {'path', 'scale', 'insets': [{'target', 'window': (r0, c0, r1, c1),
  'box_color', 'inset_origin': (row, col)}], 'size': (H, W) of the PNG}.
  """
  rgb = overlay_rgb(image, mask, pred_mask)
  h, w = rgb.shape[:2]
  if scale is None:
    scale = max(1, 512 // max(h, w))
  scale = int(scale)
  main = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)

  tcc = _metrics.connected_components(_to2d(mask) > 0.5)
  ntar = min(tcc.num, max_insets)
  gap = 6
  insets = []
  crops = []
  for k in range(ntar):
    rows, cols = np.nonzero(tcc.labels == k + 1)
    ext = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    rad = int(max(inset_radius, math.ceil(ext / 2) + 2))
    cr, cc = tcc.centroids[k]
    r0 = int(round(cr)) - rad
    c0 = int(round(cc)) - rad
    r1, c1 = r0 + 2 * rad + 1, c0 + 2 * rad + 1
    color = _BOX_COLORS[k % len(_BOX_COLORS)]
    _draw_rect(
      main,
      r0 * scale - 1,
      c0 * scale - 1,
      r1 * scale + 1,
      c1 * scale + 1,
      color,
      t=max(1, scale // 2),
    )
    # crop with grey padding where the window leaves the image
    win = np.full((r1 - r0, c1 - c0, 3), 128, np.uint8)
    sr0, sc0, sr1, sc1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
    win[sr0 - r0 : sr1 - r0, sc0 - c0 : sc1 - c0] = rgb[sr0:sr1, sc0:sc1]
    z = max(1, inset_size // win.shape[0])
    zoom = np.repeat(np.repeat(win, z, axis=0), z, axis=1)
    framed = np.zeros((zoom.shape[0] + 6, zoom.shape[1] + 6, 3), np.uint8)
    framed[:] = color
    framed[3:-3, 3:-3] = zoom
    crops.append(framed)
    insets.append({"target": k + 1, "window": (r0, c0, r1, c1), "box_color": color, "zoom": z})

  mh, mw = main.shape[:2]
  if crops:
    ch = max(c.shape[0] for c in crops)
    cw = max(c.shape[1] for c in crops)
    per_col = max(1, (mh + gap) // (ch + gap))
    ncol = int(math.ceil(len(crops) / per_col))
    strip_w = ncol * (cw + gap) + gap
    canvas_h = max(mh, min(len(crops), per_col) * (ch + gap))
  else:
    strip_w, canvas_h, ch, cw, per_col = 0, mh, 0, 0, 1
  canvas = np.full((canvas_h, mw + strip_w, 3), 255, np.uint8)
  canvas[:mh, :mw] = main
  for k, crop in enumerate(crops):
    col, row = divmod(k, per_col)
    y = row * (ch + gap)
    x = mw + gap + col * (cw + gap)
    canvas[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
    insets[k]["inset_origin"] = (y, x)

  legend_h = 28 if legend else 0  # legend (and title) strip below the panels
  H, W = canvas.shape[0] + legend_h, max(canvas.shape[1], 360 if legend else 1)
  dpi = 100.0
  fig = Figure(figsize=(W / dpi, H / dpi), dpi=dpi, facecolor="white")
  # figimage places pixels 1:1 (no resampling) at offset (xo, yo) from the bottom-left
  fig.figimage(canvas, xo=0, yo=H - canvas.shape[0], origin="upper", resize=False)
  if legend:
    handles = [
      Patch(color=np.array(TP_COLOR) / 255, label="TP"),
      Patch(color=np.array(FP_COLOR) / 255, label="FP"),
      Patch(color=np.array(FN_COLOR) / 255, label="FN"),
    ]
    fig.legend(
      handles=handles,
      loc="lower left",
      ncol=3,
      fontsize=7,
      frameon=False,
      bbox_to_anchor=(0.0, 0.0),
      borderaxespad=0.2,
      handlelength=1.0,
    )
    if title:
      fig.text(0.99, 0.01, title, ha="right", va="bottom", fontsize=7)
  _save_figure(fig, path, dpi)
  return {"path": path, "scale": scale, "insets": insets, "size": (H, W)}


def heatmap_figure7(
  probs,
  mask,
  path: str,
  threshold: float,
  distance: float,
  image=None,
  show_missed: bool = True,
  title: str | None = None,
  elev: float = 35.0,
  azim: float = -60.0,
) -> list[dict[str, Any]]:
  """Paper's Figure 7: 3-D prediction heatmap, one bar per predicted blob.

  Blobs are 8-connected components of ``probs > threshold``; each is matched to the
  targets of ``mask`` with the Pd rule of :mod:`irstd_jax.metrics` (first-fit,
  centroid distance < ``distance``).  A bar stands at the blob centroid (x = column,
  y = row), its height is the blob's peak probability and its footprint grows with
  sqrt(area); green = true detection (matched), red = false alarm.  Missed targets
  are marked on the floor with yellow crosses when ``show_missed``.  ``image`` (if
  given) is drawn as a grey floor.

  Returns the bars: [{'row', 'col', 'height', 'area', 'true'}] in blob label order.
  """
  p = _to2d(probs).astype(np.float64)
  m = _to2d(mask) > 0.5
  res = _metrics.analyse_image(p > threshold, m, distance)
  h, w = p.shape
  bars = []
  lab = res.pred_cc.labels
  for j in range(res.pred_cc.num):
    peak = float(p[lab == j + 1].max())
    bars.append(
      {
        "row": float(res.pred_cc.centroids[j, 0]),
        "col": float(res.pred_cc.centroids[j, 1]),
        "height": peak,
        "area": int(res.pred_cc.areas[j]),
        "true": bool(res.pred_matched[j]),
      }
    )

  fig = Figure(figsize=(6.4, 4.8), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(projection="3d")
  if image is not None:
    g = _grey_uint8(image).astype(np.float64) / 255.0
    step = max(1, int(math.ceil(max(h, w) / 64)))
    gs = g[::step, ::step]
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    ax.plot_surface(
      xx,
      yy,
      np.zeros_like(gs),
      facecolors=np.stack([gs] * 3, -1),
      rstride=1,
      cstride=1,
      shade=False,
      linewidth=0,
      alpha=0.6,
    )
  base = max(h, w) / 60.0
  for b in bars:
    wdt = max(base, math.sqrt(b["area"]))
    color = "tab:green" if b["true"] else "tab:red"
    ax.bar3d(
      b["col"] - wdt / 2,
      b["row"] - wdt / 2,
      0.0,
      wdt,
      wdt,
      b["height"],
      color=color,
      shade=True,
      alpha=0.9,
    )
  if show_missed:
    missed = np.flatnonzero(res.target_match < 0)
    if missed.size:
      c = res.target_cc.centroids[missed]
      ax.scatter(
        c[:, 1], c[:, 0], np.zeros(len(c)), marker="x", s=40, color="gold", depthshade=False
      )
  ax.set_xlim(0, w)
  ax.set_ylim(h, 0)  # image convention: row 0 at the back-top
  ax.set_zlim(0, 1)
  ax.set_xlabel("column")
  ax.set_ylabel("row")
  ax.set_zlabel("peak probability")
  ax.view_init(elev=elev, azim=azim)
  handles = [
    Patch(color="tab:green", label="true detection"),
    Patch(color="tab:red", label="false alarm"),
  ]
  if show_missed:
    handles.append(Patch(color="gold", label="missed target (x)"))
  ax.legend(handles=handles, loc="upper left", fontsize=7)
  ax.set_title(title or f"prediction heatmap (t = {threshold:g})", fontsize=9)
  fig.savefig(path, dpi=100, format="png")
  return bars


def _as_curves(curve) -> dict[str, Mapping[str, Any]]:
  if isinstance(curve, Mapping) and "thresholds" in curve:
    return {"": curve}
  return dict(curve)


def pdfa_curve_plot(
  curve: Mapping[str, Any] | Mapping[str, Mapping[str, Any]],
  path: str,
  logx: bool = False,
  annotate: bool = True,
  title: str = "PD-FA curve",
) -> str:
  """Pd (%) against Fa (x1e-6) over the threshold sweep of ``CurveMetrics.compute()``.

  ``curve`` is one curve dict or {label: curve dict} to compare methods.  Points are
  joined in threshold order; ``annotate`` labels each point with its threshold (single
  curve only); ``logx`` uses a symlog x axis (Fa can be 0)."""
  curves = _as_curves(curve)
  fig = Figure(figsize=(5, 4), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for label, c in curves.items():
    fa = np.asarray(c["fa"], np.float64) * 1e6
    pd = np.asarray([np.nan if v is None else v for v in c["pd"]], np.float64) * 100
    ax.plot(fa, pd, marker="o", ms=3, label=label or None)
    if annotate and len(curves) == 1:
      for t, x, y in zip(c["thresholds"], fa, pd):
        if np.isfinite(y):
          ax.annotate(f"{t:g}", (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
  if logx:
    ax.set_xscale("symlog", linthresh=1.0)
  else:
    ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
  ax.set_xlabel(r"Fa ($\times 10^{-6}$)")
  ax.set_ylabel("Pd (%)")
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  if any(curves.keys()):
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  return path


def roc_plot(
  curve: Mapping[str, Any] | Mapping[str, Mapping[str, Any]],
  path: str,
  logx: bool = False,
  title: str = "pixel ROC",
) -> str:
  """Pixel-level ROC (TPR against FPR) with the AUC in the legend.  The polyline goes
  through (0, 0) and (1, 1), as used for ``roc_auc``."""
  curves = _as_curves(curve)
  fig = Figure(figsize=(5, 4), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for label, c in curves.items():
    fpr = np.concatenate([[0.0], np.asarray(c["fpr"], np.float64), [1.0]])
    tpr = np.concatenate([[0.0], np.asarray(c["tpr"], np.float64), [1.0]])
    order = np.lexsort((tpr, fpr))
    auc = c.get("roc_auc")
    auc_s = "n/a" if auc is None or not np.isfinite(auc) else f"{auc:.4f}"
    name = f"{label} (AUC {auc_s})" if label else f"AUC {auc_s}"
    ax.plot(fpr[order], tpr[order], marker="o", ms=3, label=name)
  ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
  if logx:
    ax.set_xscale("log")
    ax.set_xlim(left=1e-7)
  ax.set_xlabel("false positive rate (pixels)")
  ax.set_ylabel("true positive rate (pixels)")
  ax.set_title(title)
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize=8, loc="lower right")
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  return path


def size_breakdown_plot(
  breakdown: Mapping[str, Mapping[str, Any]], path: str, title: str = "Pd by target size"
) -> str:
  """Bar chart of ``IRSTDMetrics.size_breakdown()`` (Pd % per bin, target counts on
  the bars)."""
  names = list(breakdown.keys())
  pds = [breakdown[n]["pd"] for n in names]
  pds = [np.nan if v is None else 100 * v for v in pds]
  fig = Figure(figsize=(4, 3), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  xs = np.arange(len(names))
  ax.bar(xs, np.nan_to_num(pds), color="tab:blue")
  for x, n, v in zip(xs, names, pds):
    ax.text(
      x,
      (0 if not np.isfinite(v) else v) + 1,
      f"n={breakdown[n]['num_targets']}",
      ha="center",
      fontsize=7,
    )
  ax.set_xticks(xs, names)
  ax.set_ylim(0, 110)
  ax.set_ylabel("Pd (%)")
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100, format="png")
  return path
