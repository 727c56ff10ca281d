"""Monotonicity analysis of the scale-loss weights (SPEC.md section 2).

  python -m tools.analysis.scale_loss_analysis --out_dir docs [--n 20] [--samples_5x5 200000]

Uses the very functions the training loss uses (``irstd_jax.losses.scale_weight``
and ``soft_iou_from_sums``), evaluated in float64.

(a) Grid: w(Ap, At) on the integers Ap, At in 0..N.  Along every anti-diagonal
    (Ap + At = S), row (At fixed) and column (Ap fixed), walking away from
    Ap = At on each side separately, checks whether w is strictly / non-strictly
    decreasing and records the first counter-examples.  Also the one-sided
    slopes at Ap = At and, for ``var``, the turning point on each anti-diagonal.
(b) Masks: for pairs of binary prediction P / target G masks, every "move one
    pixel toward the target" (flip one pixel of P where P != G: a missed target
    pixel switched on, or a false-positive pixel switched off; the Hamming
    distance to G drops by one) and whether it raises the loss
    L = 1 - w(Ap, At) * (I + s) / (Ap + At - I + s).  All 512 x 512 3x3 pairs
    are enumerated; for 5x5 a random sample is drawn and, because L depends on
    a pair only through (Ap, At, I), the exact count over all 2^50 pairs is
    obtained with multinomial counting (cross-checked against brute force on
    3x3).
(c) Figure 5 of the paper for the four variants (contour over (Ap, At), 3-D
    surface, cross-section on Ap + At = 10) as PNGs, plus a markdown and a JSON
    report.
(d) Saturated images: how hard each loss pulls an image's background back down.
    For a 96 x 96 image with a 20-pixel target, the sum over background pixels of
    dL/dz (z the logit; p(1 - p) dL/dAp each) when the background is at p_bg and
    the target at p_fg: a healthy prediction, the p = 0.5 of a zero-bias output
    layer, the p = 0.01 of this project's output prior, and a saturated image.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

os.environ.setdefault("JAX_PLATFORMS", "cpu")  # read when jax is imported
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from irstd_jax import losses  # noqa: E402

FIG_VARIANTS = ("diff", "var", "mobius", "var_denominator")
# (label, kind, kwargs): the four SPEC variants plus an asymmetric diff.
VARIANTS = (
  ("diff", "diff", {}),
  ("var", "var", {}),
  ("mobius", "mobius", {}),
  ("var_denominator", "var_denominator", {}),
  ("diff(b_over=2,b_under=1)", "diff", {"b_over": 2.0, "b_under": 1.0}),
)
TOL = 1e-12  # float64 tolerance for "equal" on the grid (a), eps = 1e-6 there
# Part (b) compares losses, where the training guard e = 1e-6 alone shifts
# values by ~e / S (e.g. mobius 2Ap / (S + e)); to count only rises that come
# from the formulas, (b) uses e = 1e-12 and counts a rise when dL > 1e-9.
MASK_EPS = 1e-12
RISE_TOL = 1e-9


def weight(kind, kw, Ap, At, eps=1e-6):
  return np.asarray(
    losses.scale_weight(np.asarray(Ap, np.float64), np.asarray(At, np.float64), kind, eps=eps, **kw)
  )


def loss_from_stats(kind, kw, Ap, At, I, smooth, eps=MASK_EPS):
  """Elementwise L = 1 - w * IoU; kind None = plain soft IoU (w = 1).

  With smooth = 0 an empty union (Ap = At = 0) counts as IoU = 1.
  """
  Ap, At, I = (np.asarray(a, np.float64) for a in (Ap, At, I))
  union = Ap + At - I
  if smooth > 0:
    iou = np.asarray(losses.soft_iou_from_sums(Ap, At, I, smooth))
  else:
    iou = np.where(union > 0, I / np.where(union > 0, union, 1.0), 1.0)
  w = 1.0 if kind is None else weight(kind, kw, Ap, At, eps)
  return 1.0 - w * iou


# ------------------------------------------------------------------ (a) ---


def _lines(n):
  """Yield (family, line id, side, [(Ap, At), ...] ordered away from Ap = At)."""
  for s in range(0, 2 * n + 1):
    pts = [(a, s - a) for a in range(max(0, s - n), min(n, s) + 1)]
    over = sorted([p for p in pts if p[0] >= p[1]], key=lambda p: p[0] - p[1])
    under = sorted([p for p in pts if p[0] <= p[1]], key=lambda p: p[1] - p[0])
    yield "anti-diagonal", f"Ap+At={s}", "over", over
    yield "anti-diagonal", f"Ap+At={s}", "under", under
  for t in range(n + 1):
    yield "row", f"At={t}", "over", [(a, t) for a in range(t, n + 1)]
    yield "row", f"At={t}", "under", [(a, t) for a in range(t, -1, -1)]
  for a in range(n + 1):
    yield "column", f"Ap={a}", "under", [(a, t) for t in range(a, n + 1)]
    yield "column", f"Ap={a}", "over", [(a, t) for t in range(a, -1, -1)]


def grid_analysis(kind, kw, n, max_examples=3):
  a = np.arange(n + 1, dtype=np.float64)
  W = weight(kind, kw, a[:, None], a[None, :])
  out = {}
  for fam in ("anti-diagonal", "row", "column"):
    out[fam] = {
      "lines": 0,
      "strict": 0,
      "non_strict": 0,
      "increase_examples": [],
      "flat_examples": [],
      "interior_lines": 0,
      "interior_strict": 0,
      "interior_non_strict": 0,
    }
  for fam, lid, side, pts in _lines(n):
    if len(pts) < 2:
      continue
    r = out[fam]
    vals = [W[p] for p in pts]
    steps = list(zip(pts, pts[1:], vals, vals[1:]))
    strict = all(v1 < v0 - TOL for _, _, v0, v1 in steps)
    nonstrict = all(v1 <= v0 + TOL for _, _, v0, v1 in steps)
    r["lines"] += 1
    r["strict"] += strict
    r["non_strict"] += nonstrict
    ipts = [p for p in pts if min(p) >= 1]
    if len(ipts) >= 2:
      ivals = [W[p] for p in ipts]
      r["interior_lines"] += 1
      r["interior_strict"] += all(v1 < v0 - TOL for v0, v1 in zip(ivals, ivals[1:]))
      r["interior_non_strict"] += all(v1 <= v0 + TOL for v0, v1 in zip(ivals, ivals[1:]))
    for p0, p1, v0, v1 in steps:
      ex = {
        "line": lid,
        "side": side,
        "from": list(p0),
        "to": list(p1),
        "w_from": float(v0),
        "w_to": float(v1),
      }
      if v1 > v0 + TOL and len(r["increase_examples"]) < max_examples:
        r["increase_examples"].append(ex)
        break
      if abs(v1 - v0) <= TOL and len(r["flat_examples"]) < max_examples:
        r["flat_examples"].append(ex)
        break
  out["w_min_on_grid"] = float(W.min())
  out["w_max_on_grid"] = float(W.max())
  return out, W


def slopes(kind, kw, ts=(1, 5, 10, 50), h=1e-6):
  """One-sided derivatives of w at (t, t).

  row: d w / d Ap (At fixed) to the right (over) and left (under);
  anti-diagonal: d w / d x with x = Ap - At, Ap + At = 2t fixed.
  """
  res = []
  for t in ts:
    w0 = float(weight(kind, kw, t, t))
    r_over = (float(weight(kind, kw, t + h, t)) - w0) / h
    r_under = (w0 - float(weight(kind, kw, t - h, t))) / h
    d_over = (float(weight(kind, kw, t + h / 2, t - h / 2)) - w0) / h
    d_under = (w0 - float(weight(kind, kw, t - h / 2, t + h / 2))) / h
    res.append(
      {
        "t": t,
        "w": w0,
        "row_right": r_over,
        "row_left": r_under,
        "antidiag_right": d_over,
        "antidiag_left": d_under,
      }
    )
  return res


def var_turning_points(Ss=(10, 20, 50, 100, 200, 1000)):
  """var on Ap + At = S: the |x| of the minimum of w and its value.

  Analytic: |x|* = sqrt(2 S), w_min = (1 - 1/sqrt(2S)) / (1 + 1/sqrt(2S)).
  """
  rows = []
  for S in Ss:
    x = np.linspace(0, S, 200001)
    w = weight("var", {}, (S + x) / 2, (S - x) / 2)
    i = int(np.argmin(w))
    r = 1 / math.sqrt(2 * S)
    rows.append(
      {
        "S": S,
        "x_min_numeric": float(x[i]),
        "x_min_analytic": math.sqrt(2 * S),
        "w_min_numeric": float(w[i]),
        "w_min_analytic": (1 - r) / (1 + r),
        "w_at_x_eq_S": float(w[-1]),
      }
    )
  return rows


# ------------------------------------------------------------------ (b) ---


# (label, p_bg, p_fg) of part (d); the image is 96 x 96 with a 20-pixel target.
SATURATION_STATES = (
  ("healthy", 1e-3, 0.8),
  ("zero-bias init (p = 0.5)", 0.5, 0.5),
  ("output prior (p = 0.01)", 0.01, 0.01),
  ("saturated", 0.92, 0.95),
)
SATURATION_IMAGE = (96 * 96, 20)  # pixels, target pixels


def background_pull(kind, kw, p_bg, p_fg, smooth=1.0, eps=1e-6):
  """Sum over background pixels of dL/dz for L = 1 - w IoU (kind None: plain IoU) on
  SATURATION_IMAGE with every background pixel at p_bg and every target pixel at p_fg.
  A background pixel moves only Ap, so each contributes p (1 - p) dL/dAp."""
  n, at = SATURATION_IMAGE
  ap = (n - at) * p_bg + at * p_fg
  inter = at * p_fg

  def loss(ap):
    return 1.0 - loss_weight(kind, kw, ap, at, eps) * losses.soft_iou_from_sums(
      ap, at, inter, smooth
    )

  return float(jax.grad(loss)(jnp.float64(ap))) * (n - at) * p_bg * (1.0 - p_bg)


def loss_weight(kind, kw, ap, at, eps):
  return 1.0 if kind is None else losses.scale_weight(ap, at, kind, eps=eps, **kw)


def saturation_table():
  rows = []
  for label, kind, kw in (("plain IoU", None, {}),) + VARIANTS[:4]:
    rows.append(
      {"loss": label, **{s[0]: background_pull(kind, kw, s[1], s[2]) for s in SATURATION_STATES}}
    )
  return rows


def _popcount(x):
  return np.bitwise_count(np.asarray(x, np.uint64)).astype(np.int64)


def _mask_str(bits, k):
  return "/".join(
    "".join("1" if (int(bits) >> (r * k + c)) & 1 else "0" for c in range(k)) for r in range(k)
  )


def move_effects(kind, kw, Ap, At, I, smooth):
  """Loss change of the two kinds of move from stats (Ap, At, I) arrays.

  Returns (dL_fix_fn, dL_drop_fp, L0): a missed target pixel switched on
  (Ap+1, I+1) and a false-positive pixel switched off (Ap-1).
  """
  L0 = loss_from_stats(kind, kw, Ap, At, I, smooth)
  L_fn = loss_from_stats(kind, kw, Ap + 1, At, I + 1, smooth)
  L_fp = loss_from_stats(kind, kw, np.maximum(Ap - 1, 0), At, I, smooth)
  return L_fn - L0, L_fp - L0, L0


def _example(kind, kw, smooth, k, p, g, move):
  Ap, At, I = _popcount(p), _popcount(g), _popcount(p & g)
  if move == "switch on missed target pixel":
    Ap1, I1 = Ap + 1, I + 1
  else:
    Ap1, I1 = Ap - 1, I
  return {
    "pred": _mask_str(p, k),
    "target": _mask_str(g, k),
    "move": move,
    "Ap,At,I": [int(Ap), int(At), int(I)],
    "Ap,At,I after": [int(Ap1), int(At), int(I1)],
    "w": float(weight(kind, kw, Ap, At, MASK_EPS)),
    "w_after": float(weight(kind, kw, Ap1, At, MASK_EPS)),
    "loss": float(loss_from_stats(kind, kw, Ap, At, I, smooth)),
    "loss_after": float(loss_from_stats(kind, kw, Ap1, At, I1, smooth)),
  }


def mask_pairs_3x3(kind, kw, smooth, max_examples=3):
  """All 512 x 512 pairs of 3x3 masks (P = prediction, G = target)."""
  m = np.arange(512, dtype=np.uint64)
  P, G = m[:, None], m[None, :]
  Ap, At = _popcount(P) + 0 * G.astype(np.int64), _popcount(G) + 0 * P.astype(np.int64)
  I = _popcount(P & G)
  dfn, dfp, _ = move_effects(kind, kw, Ap, At, I, smooth)
  n_fn, n_fp = At - I, Ap - I  # number of moves of each kind
  bad_fn = (dfn > RISE_TOL) & (n_fn > 0)
  bad_fp = (dfp > RISE_TOL) & (n_fp > 0)
  res = {
    "pairs": 512 * 512,
    "moves": int(n_fn.sum() + n_fp.sum()),
    "raising_moves": int((n_fn * bad_fn).sum() + (n_fp * bad_fp).sum()),
    "raising_moves_switch_on_missed": int((n_fn * bad_fn).sum()),
    "raising_moves_drop_false_positive": int((n_fp * bad_fp).sum()),
    "pairs_with_a_raising_move": int((bad_fn | bad_fp).sum()),
    "max_rise": float(max(np.max(np.where(bad_fn, dfn, 0)), np.max(np.where(bad_fp, dfp, 0)))),
    "examples": [],
  }
  # first counter-examples in order (target index, prediction index)
  for gi, pi in np.argwhere((bad_fn | bad_fp).T)[:max_examples]:
    move = "switch on missed target pixel" if bad_fn[pi, gi] else "switch off false-positive pixel"
    res["examples"].append(_example(kind, kw, smooth, 3, m[pi], m[gi], move))
  return res


def _stats_table(npix):
  """All feasible (Ap, At, I) on npix pixels with the number of mask pairs."""
  rows = []
  lf = [math.lgamma(i + 1) for i in range(npix + 1)]
  for I in range(npix + 1):
    for ap in range(I, npix + 1):
      for at in range(I, npix + 1 - (ap - I)):
        rest = npix - ap - at + I
        logc = lf[npix] - lf[I] - lf[ap - I] - lf[at - I] - lf[rest]
        rows.append((ap, at, I, logc))
  a = np.array(rows)
  return a[:, 0], a[:, 1], a[:, 2], a[:, 3]


def exact_counts(kind, kw, smooth, npix):
  """Exact counts over all 2^(2 npix) pairs via the (Ap, At, I) statistics."""
  Ap, At, I, logc = _stats_table(npix)
  dfn, dfp, _ = move_effects(kind, kw, Ap, At, I, smooth)
  n_fn, n_fp = At - I, Ap - I
  bad_fn = (dfn > RISE_TOL) & (n_fn > 0)
  bad_fp = (dfp > RISE_TOL) & (n_fp > 0)
  cnt = np.exp(logc - npix * math.log(2) * 2)  # fraction of all pairs
  total_moves = float(np.sum(cnt * (n_fn + n_fp)))
  return {
    "fraction_of_pairs_with_a_raising_move": float(np.sum(cnt * (bad_fn | bad_fp))),
    "fraction_of_moves_raising": float(np.sum(cnt * (n_fn * bad_fn + n_fp * bad_fp))) / total_moves,
    "fraction_of_moves_raising_switch_on": float(np.sum(cnt * n_fn * bad_fn)) / total_moves,
    "fraction_of_moves_raising_drop_fp": float(np.sum(cnt * n_fp * bad_fp)) / total_moves,
    "stat_triples_with_raising_switch_on": int(bad_fn.sum()),
    "stat_triples_with_raising_drop_fp": int(bad_fp.sum()),
    "stat_triples": int(len(Ap)),
  }


def mask_pairs_5x5_sample(kind, kw, smooth, samples, seed):
  rng = np.random.default_rng(seed)
  dens_p = rng.random(samples)
  dens_g = rng.random(samples) * 0.5  # small targets more often
  bits_p = rng.random((samples, 25)) < dens_p[:, None]
  bits_g = rng.random((samples, 25)) < dens_g[:, None]
  Ap, At = bits_p.sum(1), bits_g.sum(1)
  I = (bits_p & bits_g).sum(1)
  dfn, dfp, _ = move_effects(kind, kw, Ap, At, I, smooth)
  n_fn, n_fp = At - I, Ap - I
  bad_fn = (dfn > RISE_TOL) & (n_fn > 0)
  bad_fp = (dfp > RISE_TOL) & (n_fp > 0)
  return {
    "pairs": int(samples),
    "moves": int((n_fn + n_fp).sum()),
    "raising_moves": int((n_fn * bad_fn + n_fp * bad_fp).sum()),
    "pairs_with_a_raising_move": int((bad_fn | bad_fp).sum()),
  }


def brute_vs_exact_3x3(kind, kw, smooth):
  b = mask_pairs_3x3(kind, kw, smooth, max_examples=0)
  e = exact_counts(kind, kw, smooth, 9)
  return (
    abs(b["pairs_with_a_raising_move"] / b["pairs"] - e["fraction_of_pairs_with_a_raising_move"])
    < 1e-12
    and abs(b["raising_moves"] / b["moves"] - e["fraction_of_moves_raising"]) < 1e-12
  )


# ------------------------------------------------------------------ (c) ---


def draw_figures(out_dir, dpi):
  paths = []
  g = np.linspace(0, 20, 161)
  AP, AT = np.meshgrid(g, g, indexing="xy")  # x axis Ap, y axis At
  ap10 = np.linspace(0, 10, 401)
  for kind in FIG_VARIANTS:
    Wc = weight(kind, {}, AP, AT)
    fig = plt.figure(figsize=(13.5, 4.0))
    ax1 = fig.add_subplot(1, 3, 1)
    cs = ax1.contourf(
      AP, AT, Wc, levels=np.linspace(0, 2 if kind == "mobius" else 1, 21), cmap="viridis"
    )
    ax1.contour(AP, AT, Wc, levels=[0.25, 0.5, 0.75, 0.9], colors="w", linewidths=0.6)
    ax1.plot([0, 20], [0, 20], "r--", lw=0.8)
    ax1.plot([0, 10], [10, 0], "k:", lw=0.8)
    fig.colorbar(cs, ax=ax1, fraction=0.046)
    ax1.set_xlabel("Ap"), ax1.set_ylabel("At"), ax1.set_title(f"{kind}: w(Ap, At)")
    ax2 = fig.add_subplot(1, 3, 2, projection="3d")
    ax2.plot_surface(
      AP[::4, ::4], AT[::4, ::4], Wc[::4, ::4], cmap="viridis", linewidth=0, antialiased=False
    )
    ax2.set_xlabel("Ap"), ax2.set_ylabel("At"), ax2.set_zlabel("w")
    ax2.view_init(elev=28, azim=-125)
    ax2.set_title("surface")
    ax3 = fig.add_subplot(1, 3, 3)
    wc = weight(kind, {}, ap10, 10 - ap10)
    ax3.plot(ap10, wc, "b-")
    ai = np.arange(11.0)
    ax3.plot(ai, weight(kind, {}, ai, 10 - ai), "bo", ms=4)
    ax3.axvline(5, color="r", ls="--", lw=0.8)
    ax3.set_xlabel("Ap   (At = 10 - Ap)"), ax3.set_ylabel("w")
    ax3.set_title("cross-section Ap + At = 10")
    ax3.grid(alpha=0.3)
    fig.tight_layout()
    p = os.path.join(out_dir, f"scale_loss_fig5_{kind}.png")
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    paths.append(p)
  # all four cross-sections on one plot
  fig, ax = plt.subplots(figsize=(6, 4))
  for kind in FIG_VARIANTS:
    ax.plot(ap10, weight(kind, {}, ap10, 10 - ap10), label=kind)
  ax.axvline(5, color="k", ls=":", lw=0.8)
  ax.set_xlabel("Ap   (At = 10 - Ap)"), ax.set_ylabel("w"), ax.grid(alpha=0.3)
  ax.set_title("scale weights on Ap + At = 10"), ax.legend()
  fig.tight_layout()
  p = os.path.join(out_dir, "scale_loss_cross_section.png")
  fig.savefig(p, dpi=dpi)
  plt.close(fig)
  paths.append(p)
  return paths


# -------------------------------------------------------------- report ---


def _fmt_ex(e):
  return (
    f"({e['from'][0]},{e['from'][1]}) -> ({e['to'][0]},{e['to'][1]}): "
    f"w {e['w_from']:.4f} -> {e['w_to']:.4f}"
  )


def write_markdown(path, rep):
  L = []
  a = L.append
  a("# Scale-loss weight analysis")
  a("")
  a(
    f"Generated by `{rep['command']}` in {rep['runtime_s']:.1f} s "
    f"({rep['platform']}; jax {rep['jax']}, numpy {rep['numpy']}).  Float64."
  )
  a("")
  a(f"## (a) Integer grid Ap, At in 0..{rep['n']}")
  a("")
  a(
    "Each line (anti-diagonal Ap+At=S, row At=t, column Ap=a) is walked away from Ap = At, "
    "over- and under-segmentation sides separately (a line-side with >= 2 points counts once). "
    "`strict` = w strictly decreasing at every step; `non-strict` = never increasing. "
    "`interior` = the same restricted to Ap, At >= 1."
  )
  a("")
  a(
    "| variant | family | line-sides | strict | non-strict | interior strict | interior non-strict | first increase |"
  )
  a("| --- | --- | --- | --- | --- | --- | --- | --- |")
  for v in rep["variants"]:
    for fam in ("anti-diagonal", "row", "column"):
      r = v["grid"][fam]
      ex = _fmt_ex(r["increase_examples"][0]) if r["increase_examples"] else "none"
      a(
        f"| {v['label']} | {fam} | {r['lines']} | {r['strict']} | {r['non_strict']} | "
        f"{r['interior_strict']}/{r['interior_lines']} | {r['interior_non_strict']}/{r['interior_lines']} | {ex} |"
      )
  a("")
  a(
    "Range of w on the grid: "
    + "; ".join(
      f"{v['label']} [{v['grid']['w_min_on_grid']:.4f}, {v['grid']['w_max_on_grid']:.4f}]"
      for v in rep["variants"]
    )
    + "."
  )
  a("")
  a(
    "One-sided slopes at Ap = At = t (row: dw/dAp with At fixed; anti-diagonal: dw/dx, x = Ap - At, S fixed):"
  )
  a("")
  a("| variant | t | row right | row left | anti-diag right | anti-diag left |")
  a("| --- | --- | --- | --- | --- | --- |")
  for v in rep["variants"]:
    for s in v["slopes"]:
      a(
        f"| {v['label']} | {s['t']} | {s['row_right']:+.5f} | {s['row_left']:+.5f} | "
        f"{s['antidiag_right']:+.5f} | {s['antidiag_left']:+.5f} |"
      )
  a("")
  a(
    "`var` turning point on Ap + At = S (minimum of w over |x|; analytic |x|* = sqrt(2S), "
    "w_min = (1 - 1/sqrt(2S)) / (1 + 1/sqrt(2S))):"
  )
  a("")
  a("| S | |x|* numeric | sqrt(2S) | w_min numeric | w_min analytic | w at |x| = S |")
  a("| --- | --- | --- | --- | --- | --- |")
  for r in rep["var_turning_points"]:
    a(
      f"| {r['S']} | {r['x_min_numeric']:.3f} | {r['x_min_analytic']:.3f} | "
      f"{r['w_min_numeric']:.4f} | {r['w_min_analytic']:.4f} | {r['w_at_x_eq_S']:.4f} |"
    )
  a("")
  for sm in rep["smooth_values"]:
    a(f"## (b) Binary masks, one-pixel moves toward the target (smooth s = {sm})")
    a("")
    a(
      "A move flips one prediction pixel where P != G (switch on a missed target pixel: "
      "Ap+1, I+1; or switch off a false positive: Ap-1). Counted: moves that raise "
      "L = 1 - w IoU. 3x3: all 262144 pairs. 5x5 exact: all 2^50 pairs through multinomial "
      f"counting over (Ap, At, I); 5x5 sample: {rep['samples_5x5']} random pairs "
      "(prediction density ~ U(0,1), target density ~ U(0,0.5) per pair, so its mix differs "
      "from the uniform one of the exact count). A rise is dL > 1e-9, with e = 1e-12 "
      "in the weights so that the e-guard itself cannot create a rise."
    )
    a("")
    a(
      "| variant | 3x3 raising moves | on missed / drop FP | 3x3 pairs with one | 3x3 max rise | 5x5 exact: pairs with one | 5x5 exact: moves raising (on missed + drop FP) | 5x5 sample: pairs with one | 5x5 sample: moves raising |"
    )
    a("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for v in rep["variants_with_baseline"]:
      b = v["masks"][str(sm)]
      t3, e5, s5 = b["3x3"], b["5x5_exact"], b["5x5_sample"]
      a(
        f"| {v['label']} | {t3['raising_moves']} / {t3['moves']} ({100 * t3['raising_moves'] / t3['moves']:.2f}%) | "
        f"{t3['raising_moves_switch_on_missed']} / {t3['raising_moves_drop_false_positive']} | "
        f"{t3['pairs_with_a_raising_move']} / {t3['pairs']} | {t3['max_rise']:.4f} | "
        f"{100 * e5['fraction_of_pairs_with_a_raising_move']:.3f}% | "
        f"{100 * e5['fraction_of_moves_raising']:.3f}% "
        f"({100 * e5['fraction_of_moves_raising_switch_on']:.3f}% + "
        f"{100 * e5['fraction_of_moves_raising_drop_fp']:.3f}%) | "
        f"{s5['pairs_with_a_raising_move']} / {s5['pairs']} | "
        f"{100 * s5['raising_moves'] / max(s5['moves'], 1):.2f}% |"
      )
    a("")
    a("First 3x3 counter-examples (rows of the mask separated by `/`):")
    a("")
    for v in rep["variants_with_baseline"]:
      exs = v["masks"][str(sm)]["3x3"]["examples"]
      if not exs:
        a(f"- {v['label']}: none")
        continue
      for e in exs[:2]:
        a(
          f"- {v['label']}: P `{e['pred']}`, G `{e['target']}`, {e['move']}: "
          f"(Ap,At,I) {tuple(e['Ap,At,I'])} -> {tuple(e['Ap,At,I after'])}, "
          f"w {e['w']:.4f} -> {e['w_after']:.4f}, L {e['loss']:.4f} -> {e['loss_after']:.4f}"
        )
    a("")
  a(
    "Brute-force 3x3 counts equal the multinomial counts for every variant: "
    f"{rep['brute_force_matches_exact']}."
  )
  a("")
  a("## (d) Saturated images: the pull on the background")
  a("")
  n, at = SATURATION_IMAGE
  a(
    f"Sum over the background pixels of dL/dz (logits) for one {int(n**0.5)} x "
    f"{int(n**0.5)} image with a {at}-pixel target, background at p_bg and target at p_fg "
    "(s = 1, e = 1e-6). Positive: the gradient step lowers the background."
  )
  a("")
  a(
    "| loss | " + " | ".join(f"{s[0]} (p_bg {s[1]}, p_fg {s[2]})" for s in SATURATION_STATES) + " |"
  )
  a("|---|" + "---:|" * len(SATURATION_STATES))
  for row in rep["saturation"]:
    a(f"| {row['loss']} | " + " | ".join(f"{row[s[0]]:.3e}" for s in SATURATION_STATES) + " |")
  a("")
  a("## (c) Figures")
  a("")
  for p in rep["figures"]:
    a(f"![{os.path.basename(p)}]({os.path.basename(p)})")
  a("")
  with open(path, "w") as f:
    f.write("\n".join(L))


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--out_dir", default="docs")
  ap.add_argument("--n", type=int, default=20, help="grid 0..N")
  ap.add_argument("--samples_5x5", type=int, default=200000)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--dpi", type=int, default=90)
  ap.add_argument(
    "--smooth", type=float, nargs="+", default=[1.0, 0.0], help="IoU smoothing values for part (b)"
  )
  ap.add_argument("--no_figures", action="store_true")
  args = ap.parse_args(argv)
  t0 = time.time()
  os.makedirs(args.out_dir, exist_ok=True)
  rep = {
    "command": "python -m tools.analysis.scale_loss_analysis "
    + " ".join(sys.argv[1:] if argv is None else argv),
    "n": args.n,
    "samples_5x5": args.samples_5x5,
    "seed": args.seed,
    "smooth_values": args.smooth,
    "eps": 1e-6,
    "platform": f"{platform.machine()}, {os.cpu_count()} CPUs, jax backend {jax.default_backend()}",
    "jax": jax.__version__,
    "numpy": np.__version__,
  }
  with jax.enable_x64(True):
    variants = []
    for label, kind, kw in VARIANTS:
      grid, _ = grid_analysis(kind, kw, args.n)
      variants.append(
        {"label": label, "kind": kind, "kwargs": kw, "grid": grid, "slopes": slopes(kind, kw)}
      )
    rep["variants"] = variants
    rep["var_turning_points"] = var_turning_points()
    withb = [{"label": "plain IoU (w = 1)", "kind": None, "kwargs": {}}] + [
      {"label": v["label"], "kind": v["kind"], "kwargs": v["kwargs"]} for v in variants
    ]
    matches = True
    for v in withb:
      v["masks"] = {}
      for sm in args.smooth:
        v["masks"][str(sm)] = {
          "3x3": mask_pairs_3x3(v["kind"], v["kwargs"], sm),
          "5x5_exact": exact_counts(v["kind"], v["kwargs"], sm, 25),
          "5x5_sample": mask_pairs_5x5_sample(
            v["kind"], v["kwargs"], sm, args.samples_5x5, args.seed
          ),
        }
        matches &= brute_vs_exact_3x3(v["kind"], v["kwargs"], sm)
    rep["variants_with_baseline"] = withb
    rep["brute_force_matches_exact"] = bool(matches)
    rep["saturation"] = saturation_table()
    rep["figures"] = [] if args.no_figures else draw_figures(args.out_dir, args.dpi)
  rep["runtime_s"] = time.time() - t0
  with open(os.path.join(args.out_dir, "scale_loss_analysis.json"), "w") as f:
    json.dump(rep, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
  write_markdown(os.path.join(args.out_dir, "scale_loss_analysis.md"), rep)
  print(
    f"wrote {args.out_dir}/scale_loss_analysis.{{md,json}} and {len(rep['figures'])} figures "
    f"in {rep['runtime_s']:.1f} s"
  )
  return rep


if __name__ == "__main__":
  main()
