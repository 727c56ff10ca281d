"""Tests for irstd_jax.losses (SPEC.md section 2).

Small shapes only (the machine is shared); the whole file runs in well under
a minute on CPU.  Float64 checks use the ``jax.enable_x64`` context manager so
that the global x64 flag of the test session is left untouched.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irstd_jax import default_config
from irstd_jax import losses as L

KINDS = L.SCALE_WEIGHT_KINDS
SYMMETRIC = ("diff", "var", "var_denominator")


def _cfg(**kw):
  c = default_config.loss_config()
  for k, v in kw.items():
    c[k] = v
  return c


def _grid(n, dtype=np.float64):
  a = np.arange(n + 1, dtype=dtype)
  return np.meshgrid(a, a, indexing="ij")  # Ap[i, j] = i, At[i, j] = j


# ---------------------------------------------------------------- config ---


def test_default_config_fields():
  c = default_config.loss_config()
  assert c.name == "scale" and c.scale_weight == "diff"
  assert (c.b_over, c.b_under, c.smooth, c.eps) == (1.0, 1.0, 1.0, 1e-6)
  assert c.warm_epochs == 5 and c.location_weight == 0.0 and c.location_warm_epochs == 5
  assert c.deep_supervision is True and c.reduction == "per_image"
  for f in (
    "focal_alpha",
    "focal_gamma",
    "sd_delta",
    "sd_ref_area",
    "sd_ref_resolution",
    "detach_weight",
    "location_centroid",
  ):
    assert f in c


# ------------------------------------------------- mathematical facts ---


def test_weight_is_one_on_diagonal():
  t = np.arange(1, 101, dtype=np.float64)
  with jax.enable_x64(True):
    for kind in KINDS:
      w = np.asarray(L.scale_weight(t, t, kind))
      np.testing.assert_allclose(w, 1.0, rtol=0, atol=1e-6, err_msg=kind)
    # exactly 1 for the three guarded kinds, also at (0, 0)
    for kind in SYMMETRIC:
      assert float(L.scale_weight(0.0, 0.0, kind)) == 1.0
      assert np.all(np.asarray(L.scale_weight(t, t, kind)) == 1.0)
    # mobius follows SPEC literally: 2*0 / (0 + e) = 0 at the origin
    assert float(L.scale_weight(0.0, 0.0, "mobius")) == 0.0


def test_symmetric_variants_are_symmetric():
  Ap, At = _grid(25)
  with jax.enable_x64(True):
    for kind in SYMMETRIC:
      w = np.asarray(L.scale_weight(Ap, At, kind))
      np.testing.assert_allclose(w, w.T, rtol=0, atol=1e-15, err_msg=kind)
    wm = np.asarray(L.scale_weight(Ap, At, "mobius"))
    assert np.max(np.abs(wm - wm.T)) > 0.5
    wa = np.asarray(L.scale_weight(Ap, At, "diff", b_over=2.0, b_under=1.0))
    assert np.max(np.abs(wa - wa.T)) > 0.1


def test_diff_closed_form_and_asymmetric_coefficients():
  Ap, At = _grid(20)
  with jax.enable_x64(True):
    w = np.asarray(L.scale_weight(Ap, At, "diff", eps=0.0))[1:, 1:]
    np.testing.assert_allclose(w, 2 * np.minimum(Ap, At)[1:, 1:] / (Ap + At)[1:, 1:], atol=1e-15)
    # over-segmentation (Ap > At) only feels b_over, under only b_under
    w_over = float(L.scale_weight(6.0, 4.0, "diff", b_over=3.0, b_under=0.5, eps=0.0))
    w_under = float(L.scale_weight(4.0, 6.0, "diff", b_over=3.0, b_under=0.5, eps=0.0))
    assert w_over == pytest.approx(1 - 3.0 * 2 / 10)
    assert w_under == pytest.approx(1 - 0.5 * 2 / 10)


def test_diff_strictly_decreasing_on_every_antidiagonal():
  n = 40
  Ap, At = _grid(n)
  with jax.enable_x64(True):
    w = np.asarray(L.scale_weight(Ap, At, "diff"))
  for s in range(1, 2 * n + 1):
    pts = [(a, s - a) for a in range(max(0, s - n), min(n, s) + 1)]
    vals = {a - b: w[a, b] for a, b in pts}
    for sign in (+1, -1):  # over- and under-segmentation sides
      ds = sorted(d for d in vals if sign * d >= 0)
      ds = ds if sign > 0 else ds[::-1]
      seq = [vals[d] for d in ds]
      assert all(b < a for a, b in zip(seq, seq[1:])), (s, sign, seq)


def test_var_is_not_monotonic():
  with jax.enable_x64(True):
    # on Ap + At = 10: w(7,3) = 7/11 < w(8,2) = 11/17, moving away from Ap = At
    w73 = float(L.scale_weight(7.0, 3.0, "var", eps=0.0))
    w82 = float(L.scale_weight(8.0, 2.0, "var", eps=0.0))
    w100 = float(L.scale_weight(10.0, 0.0, "var", eps=0.0))
  assert w73 == pytest.approx(7 / 11) and w82 == pytest.approx(11 / 17)
  assert w82 > w73 and w100 > w82  # climbs back toward 1 as |x| grows
  # and along a row: At = 2, Ap = 4 -> 7 -> 30
  with jax.enable_x64(True):
    row = np.asarray(L.scale_weight(np.arange(2.0, 60.0), 2.0, "var"))
  assert np.any(np.diff(row) > 0)


def test_var_matches_mshnet_sls_weight():
  # MSHNet SLSIoULoss: dis = ((Ap - At) / 2)^2,
  # alpha = (min(Ap, At) + dis) / (max(Ap, At) + dis)  (smooth = 0 there)
  rng = np.random.default_rng(0)
  Ap = rng.uniform(0.01, 300, 1000)
  At = np.concatenate([rng.integers(0, 300, 999), [0]]).astype(np.float64)
  dis = ((Ap - At) / 2) ** 2
  alpha = (np.minimum(Ap, At) + dis) / (np.maximum(Ap, At) + dis)
  with jax.enable_x64(True):
    w0 = np.asarray(L.scale_weight(Ap, At, "var", eps=0.0))
    w = np.asarray(L.scale_weight(Ap, At, "var"))
  np.testing.assert_allclose(w0, alpha, rtol=1e-14)
  np.testing.assert_allclose(w, alpha, rtol=0, atol=1e-6)


def test_mobius_and_var_denominator_shapes():
  with jax.enable_x64(True):
    assert float(L.scale_weight(30.0, 10.0, "mobius")) > 1.0  # grows past 1
    assert float(L.scale_weight(1.0, 0.0, "mobius")) == pytest.approx(2.0, abs=1e-5)
    # var_denominator: zero slope at Ap = At (central derivative ~ 0)
    g = jax.grad(lambda a: L.scale_weight(a, 10.0, "var_denominator"))
    assert abs(float(g(10.0 + 1e-7))) < 1e-6
    g_diff = jax.grad(lambda a: L.scale_weight(a, 10.0, "diff"))
    assert float(g_diff(10.0 + 1e-9)) == pytest.approx(-1 / 20, rel=1e-6)


# --------------------------------------------------------- loss values ---


def _rand(shape, seed=0, p=0.1):
  rng = np.random.default_rng(seed)
  z = rng.normal(size=shape) * 2
  m = (rng.random(shape) < p).astype(np.float64)
  m[0, 1, 1, 0] = 1.0  # at least one target pixel in image 0
  return z, m


def test_scale_loss_value_by_hand():
  z, m = _rand((2, 5, 5, 1))
  p = 1 / (1 + np.exp(-z))
  Ap, At, I = p.sum((1, 2, 3)), m.sum((1, 2, 3)), (p * m).sum((1, 2, 3))
  iou = (I + 1) / (Ap + At - I + 1)
  w = 1 - np.abs(Ap - At) / (Ap + At + 1e-6)
  with jax.enable_x64(True):
    got = float(L.scale_loss(jnp.asarray(z), jnp.asarray(m), "diff"))
    plain = float(L.scale_loss(jnp.asarray(z), jnp.asarray(m), "diff", weighted=False))
    batch = float(L.scale_loss(jnp.asarray(z), jnp.asarray(m), "diff", reduction="batch"))
  assert got == pytest.approx(1 - np.mean(w * iou), rel=1e-10)
  assert plain == pytest.approx(1 - np.mean(iou), rel=1e-10)
  Ab, Tb, Ib = Ap.sum(), At.sum(), I.sum()
  assert batch == pytest.approx(
    1 - (1 - abs(Ab - Tb) / (Ab + Tb + 1e-6)) * (Ib + 1) / (Ab + Tb - Ib + 1), rel=1e-10
  )


def test_other_losses_by_hand():
  z, m = _rand((2, 4, 6, 1), seed=3)
  p = 1 / (1 + np.exp(-z))
  Ap, At, I = p.sum((1, 2, 3)), m.sum((1, 2, 3)), (p * m).sum((1, 2, 3))
  bce = -(m * np.log(p) + (1 - m) * np.log(1 - p))
  pt = np.where(m > 0, p, 1 - p)
  at = np.where(m > 0, 0.25, 0.75)
  with jax.enable_x64(True):
    zj, mj = jnp.asarray(z), jnp.asarray(m)
    assert float(L.soft_iou_loss(zj, mj)) == pytest.approx(1 - np.mean((I + 1) / (Ap + At - I + 1)))
    assert float(L.dice_loss(zj, mj)) == pytest.approx(1 - np.mean((2 * I + 1) / (Ap + At + 1)))
    assert float(L.bce_loss(zj, mj)) == pytest.approx(bce.mean())
    assert float(L.focal_loss(zj, mj)) == pytest.approx((at * (1 - pt) ** 2 * bce).mean())


def test_location_loss_by_hand_both_modes():
  z, m = _rand((2, 6, 5, 1), seed=4)
  p = 1 / (1 + np.exp(-z))
  H, W = 6, 5
  xs = (np.arange(W) / W)[None, None, :]
  ys = (np.arange(H) / H)[None, :, None]
  d = 1e-8

  def ref(mode):
    def cen(a):
      a = a[..., 0]
      den = a.sum((1, 2)) + 1e-6 if mode == "centroid" else H * W
      return (a * xs).sum((1, 2)) / den, (a * ys).sum((1, 2)) / den

    (px, py), (tx, ty) = cen(p), cen(m)
    ang = 4 / math.pi**2 * (np.arctan(py / (px + d)) - np.arctan(ty / (tx + d))) ** 2
    lp, lt = np.sqrt(px**2 + py**2 + d), np.sqrt(tx**2 + ty**2 + d)
    return np.mean(1 - np.minimum(lp, lt) / (np.maximum(lp, lt) + d) + ang)

  with jax.enable_x64(True):
    for mode in ("centroid", "mshnet"):
      got = float(L.location_loss(jnp.asarray(p), jnp.asarray(m), mode))
      assert got == pytest.approx(ref(mode), rel=1e-10), mode
  # perfect prediction -> ~0 location loss (true centroids)
  zz = jnp.asarray(np.where(m > 0, 30.0, -30.0), jnp.float32)
  assert float(L.location_loss(jax.nn.sigmoid(zz), jnp.asarray(m, jnp.float32))) < 1e-5


def test_sd_beta_and_sd_loss_value():
  At = jnp.asarray([10.0, 400.0])
  # R = 512^2 / (256 * 256) = 4; beta_b = min(At * 0.5 * 4 / 81, 0.5)
  assert float(L.sd_beta(At, 256 * 256)) == pytest.approx((10 * 2 / 81 + 0.5) / 2, rel=1e-6)
  z, m = _rand((2, 8, 8, 1), seed=5)
  cfg = _cfg(name="sd", scale_weight="var", warm_epochs=2)
  with jax.enable_x64(True):
    zj, mj = jnp.asarray(z), jnp.asarray(m)
    p = jax.nn.sigmoid(zj)
    beta = float(L.sd_beta(mj.sum((1, 2, 3)), 64))
    ls = float(L.scale_loss(zj, mj, "var"))
    ll = float(L.location_loss(p, mj))
    after = float(L.single_output_loss(zj, mj, cfg, 2)[0])
    before = float(L.single_output_loss(zj, mj, cfg, 1)[0])
  assert after == pytest.approx((1 + beta) * ls + (1 - beta) * ll, rel=1e-10)
  assert before == pytest.approx(float(L.soft_iou_loss(jnp.asarray(z), jnp.asarray(m))), rel=1e-6)


# -------------------------------------------------- warm-up and jit ---


def test_warmup_switch_under_jit_with_traced_epoch():
  z, m = _rand((2, 8, 8, 1), seed=1)
  z, m = jnp.asarray(z, jnp.float32), jnp.asarray(m, jnp.float32)
  cfg = _cfg(warm_epochs=3, location_weight=0.5, location_warm_epochs=4)
  f = jax.jit(lambda e: L.total_loss(z, (), m, cfg, e))
  plain = float(L.soft_iou_loss(z, m))
  weighted = float(L.scale_loss(z, m, "diff"))
  loc = float(L.location_loss(jax.nn.sigmoid(z), m))
  for e, want in (
    (0, plain),
    (2, plain),
    (3, weighted),
    (4, weighted + 0.5 * loc),
    (99, weighted + 0.5 * loc),
  ):
    loss, aux = f(jnp.int32(e))
    assert float(loss) == pytest.approx(want, rel=1e-5), e
    assert float(aux["warmup"]) == float(e < 3)
  assert f._cache_size() == 1  # one trace for all epochs


def test_deep_supervision_average_and_resize():
  z, m = _rand((2, 8, 8, 1), seed=2)
  z, m = jnp.asarray(z, jnp.float32), jnp.asarray(m, jnp.float32)
  side_small = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 1)), jnp.float32)
  cfg = _cfg(warm_epochs=0)
  l_main = float(L.single_output_loss(z, m, cfg, 0)[0])
  up = jax.image.resize(side_small, (2, 8, 8, 1), "bilinear")
  l_side = float(L.single_output_loss(up, m, cfg, 0)[0])
  loss, aux = L.total_loss(z, (z, side_small), m, cfg, 0)
  assert float(loss) == pytest.approx((2 * l_main + l_side) / 3, rel=1e-6)
  assert float(aux["loss_main"]) == pytest.approx(l_main, rel=1e-6)
  assert float(aux["loss_side"]) == pytest.approx((l_main + l_side) / 2, rel=1e-6)
  # odd sizes: ceil(H/2) side output resized to H
  z7, m7 = z[:, :7, :7], m[:, :7, :7]
  loss7, _ = L.total_loss(z7, (z7, z7[:, :4, :4]), m7, cfg, 0)
  assert np.isfinite(float(loss7))
  off = _cfg(warm_epochs=0, deep_supervision=False)
  assert float(L.total_loss(z, (side_small,), m, off, 0)[0]) == pytest.approx(l_main, rel=1e-6)


def test_detach_weight_same_value_different_gradient():
  z, m = _rand((2, 6, 6, 1), seed=6)
  z, m = jnp.asarray(z, jnp.float32), jnp.asarray(m, jnp.float32)
  f = lambda zz, det: L.scale_loss(zz, m, "var", detach_weight=det)  # noqa: E731
  assert float(f(z, True)) == pytest.approx(float(f(z, False)), rel=1e-7)
  assert not np.allclose(jax.grad(f)(z, True), jax.grad(f)(z, False))


# ------------------------------------- edge cases: finite values/grads ---

EDGE_CONFIGS = (
  [dict(name="scale", scale_weight=k, location_weight=1.0) for k in KINDS]
  + [dict(name="scale", scale_weight="var", location_weight=1.0, location_centroid="mshnet")]
  + [dict(name="scale", scale_weight="diff", reduction="batch", b_over=2.0, b_under=0.5)]
  + [dict(name=n) for n in ("soft_iou", "dice", "bce", "focal")]
  + [dict(name="sd", scale_weight=k) for k in KINDS]
)


def _edge_inputs():
  rng = np.random.default_rng(7)
  shape = (2, 8, 8, 1)
  m = (rng.random(shape) < 0.1).astype(np.float32)
  m[0, 2, 3, 0] = 1
  empty = np.zeros(shape, np.float32)
  rnd = rng.normal(size=shape).astype(np.float32)
  return {
    "empty_target": (rnd, empty),
    "empty_pred": (np.full(shape, -30.0, np.float32), m),
    "empty_pred_saturated": (np.full(shape, -200.0, np.float32), m),
    "empty_both": (np.full(shape, -200.0, np.float32), empty),
    "all_ones_pred": (np.full(shape, 30.0, np.float32), m),
    "all_ones_pred_empty_target": (np.full(shape, 200.0, np.float32), empty),
    "random": (rnd, m),
  }


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["f32", "bf16"])
def test_finite_loss_and_grad_on_edge_cases(dtype):
  """Every config x every edge case x epoch in {0 (warm-up), 3}: finite.

  One function over all configs, vmapped over the cases and epochs and run
  eagerly (op-by-op dispatch reuses compiled ops across configs, which on
  CPU is ~3x faster than compiling the whole graph; jit is tested above).
  """
  cfgs = [_cfg(warm_epochs=1, location_warm_epochs=1, **kw) for kw in EDGE_CONFIGS]
  cases = _edge_inputs()
  names = list(cases)
  epochs = (0, 3)
  z = jnp.asarray(np.stack([cases[n][0] for n in names for _ in epochs]), dtype)
  m = jnp.asarray(np.stack([cases[n][1] for n in names for _ in epochs]))
  e = jnp.asarray([ep for _ in names for ep in epochs], jnp.int32)

  def one(zz, mm, ee):
    out = []
    for cfg in cfgs:
      f = lambda a, b, c=cfg: L.total_loss(a, (b,), mm, c, ee)  # noqa: E731
      (loss, aux), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(zz, zz[:, ::2, ::2])
      out.append((loss, aux, grads))
    return out

  results = jax.vmap(one)(z, m, e)
  for kw, (loss, aux, (gz, gs)) in zip(EDGE_CONFIGS, results):
    assert loss.dtype == jnp.float32 and gz.dtype == dtype
    bad = [(names[i // 2], epochs[i % 2]) for i in np.flatnonzero(~np.isfinite(np.asarray(loss)))]
    assert not bad, (kw, bad)
    for k, v in aux.items():
      assert v.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(v))), (kw, k)
    for g in (gz, gs):
      ok = np.isfinite(np.asarray(g, np.float32)).reshape(len(e), -1).all(axis=1)
      bad = [(names[i // 2], epochs[i % 2]) for i in np.flatnonzero(~ok)]
      assert not bad, (kw, bad)


# ------------------------------ gradients vs central finite differences ---

GRAD_CONFIGS = (
  [dict(name="scale", scale_weight=k) for k in KINDS]
  + [dict(name="scale", scale_weight="diff", b_over=2.0, b_under=0.5)]
  + [dict(name="scale", scale_weight="var", reduction="batch")]
  + [
    dict(name="scale", scale_weight="diff", location_weight=1.0, location_centroid=c)
    for c in ("centroid", "mshnet")
  ]
  + [dict(name=n) for n in ("soft_iou", "dice", "bce", "focal")]
  + [dict(name="sd", scale_weight=k) for k in KINDS]
)


@pytest.mark.parametrize("cfg_kw", GRAD_CONFIGS, ids=lambda d: "-".join(str(v) for v in d.values()))
def test_grad_matches_central_finite_differences_float64(cfg_kw):
  cfg = _cfg(warm_epochs=0, location_warm_epochs=0, **cfg_kw)
  rng = np.random.default_rng(11)
  shape = (2, 4, 5, 1)
  z0 = rng.normal(size=shape) * 1.5
  m = (rng.random(shape) < 0.3).astype(np.float64)
  m[0, 0, 0, 0] = 1
  side0 = rng.normal(size=(2, 2, 3, 1))
  h = 1e-6
  with jax.enable_x64(True):
    mj = jnp.asarray(m)

    def f(z, s):
      return L.total_loss(z, (s,), mj, cfg, 1)[0].astype(jnp.float64)

    def f64(z, s):  # total_loss casts to float32; differentiate the float64 path
      main = L.single_output_loss(z, mj, cfg, 1)[0]
      side = L.single_output_loss(L._resize_to(s, (4, 5)), mj, cfg, 1)[0]
      return (main + side) / 2

    z, s = jnp.asarray(z0), jnp.asarray(side0)
    gz, gs = jax.grad(f64, argnums=(0, 1))(z, s)
    assert abs(float(f(z, s)) - float(f64(z, s))) < 1e-6

    # central differences along every coordinate of (z, s), one vmap
    flat = jnp.concatenate([z.ravel(), s.ravel()])
    nz = z.size

    def fv(v):
      return f64(v[:nz].reshape(z.shape), v[nz:].reshape(s.shape))

    steps = jnp.eye(flat.size, dtype=flat.dtype) * h
    num = (jax.vmap(fv)(flat + steps) - jax.vmap(fv)(flat - steps)) / (2 * h)
  ana = np.concatenate([np.asarray(gz).ravel(), np.asarray(gs).ravel()])
  np.testing.assert_allclose(ana, np.asarray(num), rtol=1e-5, atol=1e-8)
  assert np.abs(ana).max() > 1e-4  # the check is not vacuous


def test_scale_weight_grad_matches_finite_differences():
  pts = [
    (a, b) for a, b in itertools.product((0.7, 3.2, 10.5), (0.0, 1.0, 4.0, 9.0)) if abs(a - b) > 0.1
  ]
  h = 1e-6
  with jax.enable_x64(True):
    for kind in KINDS + ("diff_asym",):
      kw = dict(b_over=2.0, b_under=0.5) if kind == "diff_asym" else {}
      k = "diff" if kind == "diff_asym" else kind
      fn = lambda a, b: L.scale_weight(a, b, k, **kw)  # noqa: E731
      gfn = jax.grad(fn, argnums=(0, 1))
      for a, b in pts:
        na = (fn(a + h, b) - fn(a - h, b)) / (2 * h)
        assert float(gfn(a, b)[0]) == pytest.approx(float(na), rel=1e-6, abs=1e-9), (kind, a, b)
        if b > 0:
          nb = (fn(a, b + h) - fn(a, b - h)) / (2 * h)
          assert float(gfn(a, b)[1]) == pytest.approx(float(nb), rel=1e-6, abs=1e-9), (kind, a, b)


def test_unknown_names_raise():
  z = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError):
    L.total_loss(z, (), z, _cfg(name="nope"), 0)
  with pytest.raises(ValueError):
    L.total_loss(z, (), z, _cfg(scale_weight="nope"), 0)
  with pytest.raises(ValueError):
    L.scale_weight(1.0, 1.0, "nope")


# ------------------------------------------- the analysis tool (small) ---


def _load_tool():
  from tools.analysis import scale_loss_analysis

  return scale_loss_analysis


def test_analysis_tool_pins_findings():
  tool = _load_tool()
  with jax.enable_x64(True):
    for kind in KINDS:
      grid, _ = tool.grid_analysis(kind, {}, 10)
      all_strict = all(
        grid[f]["strict"] == grid[f]["lines"] for f in ("anti-diagonal", "row", "column")
      )
      assert all_strict == (kind in ("diff", "var_denominator")), kind
      # switching on a missed target pixel never raises the loss (3x3, s = 1)
      r = tool.mask_pairs_3x3(kind, {}, 1.0, max_examples=1)
      assert r["raising_moves_switch_on_missed"] == 0, kind
      # ... but dropping a false positive sometimes does, for every weight
      assert r["raising_moves_drop_false_positive"] > 0, kind
    assert tool.mask_pairs_3x3(None, {}, 1.0)["raising_moves"] == 0  # plain IoU never
    # exact 5x5: switching on a missed pixel never raises diff/var/mobius, but
    # can raise var_denominator (over-segmentation, e.g. (14,10,9) -> (15,10,10))
    for kind in KINDS:
      e5 = tool.exact_counts(kind, {}, 1.0, 25)
      assert (e5["stat_triples_with_raising_switch_on"] > 0) == (kind == "var_denominator"), kind
    dfn, _, _ = tool.move_effects(
      "var_denominator", {}, np.array([14.0]), np.array([10.0]), np.array([9.0]), 1.0
    )
    assert dfn[0] > 1e-4
    assert tool.brute_vs_exact_3x3("var", {}, 1.0)
    tp = tool.var_turning_points((10, 50))
    for r in tp:
      assert r["x_min_numeric"] == pytest.approx(r["x_min_analytic"], abs=1e-3)


def test_saturated_image_gets_almost_no_pull_from_the_diff_weight():
  """The trap the output prior avoids (docs/losses.md): on an image predicted positive
  almost everywhere, the paper's diff weight (w ~ 2 At / Ap) cuts the pull on the
  background ~100x below plain IoU's; at p = 0.5 everywhere (zero-bias init) ~300x below
  its pull at p = 0.01. The tool's closed form equals jax.grad through the training loss."""
  tool = _load_tool()
  n, at = tool.SATURATION_IMAGE
  side = int(math.isqrt(n))
  mask = np.zeros((1, side, side, 1))
  mask.reshape(-1)[:at] = 1.0

  def pull(cfg, p_bg, p_fg):
    logit = lambda p: math.log(p / (1.0 - p))
    z = jnp.asarray(np.where(mask > 0, logit(p_fg), logit(p_bg)))
    grad = jax.grad(lambda z: L.single_output_loss(z, jnp.asarray(mask), cfg, epoch=99)[0])(z)
    return float(jnp.sum(jnp.where(mask > 0, 0.0, grad)))

  with jax.enable_x64(True):
    pulls = {}
    for label, p_bg, p_fg in tool.SATURATION_STATES:
      for name, cfg, kind in (
        ("iou", _cfg(name="soft_iou", deep_supervision=False), None),
        ("diff", _cfg(deep_supervision=False), "diff"),
      ):
        pulls[name, label] = pull(cfg, p_bg, p_fg)
        assert pulls[name, label] == pytest.approx(
          tool.background_pull(kind, {}, p_bg, p_fg), rel=1e-6
        )
  healthy, zero_bias, prior, saturated = (s[0] for s in tool.SATURATION_STATES)
  assert pulls["iou", saturated] / pulls["diff", saturated] > 100
  assert pulls["diff", healthy] / pulls["diff", saturated] > 1e5
  assert pulls["diff", prior] / pulls["diff", zero_bias] > 250


def _blob_on_background(side=32):
  """Logits (1, side, side, 1): p = 0.01 everywhere but a 4x4 false blob at p = 0.95."""
  z = np.full((1, side, side, 1), math.log(0.01 / 0.99))
  z[0, 4:8, 4:8, 0] = math.log(0.95 / 0.05)
  return jnp.asarray(z)


def test_target_free_image_gets_no_gradient_from_the_diff_weight():
  """On an image without target pixels the diff weight is w = e / (Ap + e) ~ 0, so its
  false alarms cost nothing (docs/losses.md); 'plain_iou' gives it soft IoU's gradient,
  and leaves an image with a target exactly as the formula weights it."""
  with jax.enable_x64(True):
    z = _blob_on_background()
    empty = jnp.zeros_like(z)
    target = empty.at[0, 20:22, 20:22, 0].set(1.0)

    def grad(cfg, mask):
      return jax.grad(lambda z: L.single_output_loss(z, mask, cfg, epoch=99)[0])(z)

    formula = _cfg(deep_supervision=False)
    plain = _cfg(deep_supervision=False, target_free="plain_iou")
    iou = _cfg(name="soft_iou", deep_supervision=False)
    blob = (0, 5, 5, 0)
    assert abs(float(grad(formula, empty)[blob])) < 1e-10
    assert float(grad(plain, empty)[blob]) > 1e6 * abs(float(grad(formula, empty)[blob]))
    assert float(grad(plain, empty)[blob]) > 1e-5  # pushes the blob's logit down
    np.testing.assert_allclose(grad(plain, empty), grad(iou, empty), rtol=1e-12)
    np.testing.assert_array_equal(grad(plain, target), grad(formula, target))
    with pytest.raises(ValueError, match="target_free"):
      L.scale_loss_from_sums(jnp.ones(2), jnp.zeros(2), jnp.zeros(2), target_free="nope")
