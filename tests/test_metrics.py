"""Hand-computed cases for irstd_jax.metrics (mIoU, nIoU, Pd, Fa, curves)."""

import json
import math

import numpy as np
import pytest

from irstd_jax import default_config
from irstd_jax import metrics as M

EVAL = default_config.base_config().eval


def metrics_at_eval_defaults(**overrides):
  """IRSTDMetrics with config.eval's threshold and distance unless overridden."""
  return M.IRSTDMetrics(**{"threshold": EVAL.threshold, "distance": EVAL.distance, **overrides})


def _img(h=20, w=20):
  return np.zeros((h, w), np.float32)


def _one(pred, mask, **kw):
  m = metrics_at_eval_defaults(**kw)
  m.update(pred[None], mask[None])
  return m.compute()


def test_target_hit_by_large_blob_centred():
  mask = _img()
  mask[10:13, 10:13] = 1  # 9 px, centroid (11, 11)
  pred = _img()
  pred[8:15, 8:15] = 0.9  # 49 px, centroid (11, 11)
  r = _one(pred, mask)
  assert r["pd"] == 1.0 and r["num_detected"] == 1
  assert r["fa"] == 0.0 and r["fa_pixels"] == 0
  assert r["miou"] == pytest.approx(9 / 49)
  assert r["niou"] == pytest.approx(9 / 49)


def test_target_covered_by_offcentre_blob_is_missed():
  mask = _img(20, 30)
  mask[10:13, 10:13] = 1  # centroid (11, 11)
  pred = _img(20, 30)
  pred[10:13, 10:21] = 1.0  # 33 px, centroid (11, 15): 4 px away
  r = _one(pred, mask)
  assert r["pd"] == 0.0
  assert r["fa_pixels"] == 33
  assert r["fa"] == pytest.approx(33 / 600)
  assert r["miou"] == pytest.approx(9 / 33)  # IoU does not care about centroids


def test_distance_is_strict_and_configurable():
  mask = _img()
  mask[5, 5] = 1
  pred = _img()
  pred[5, 8] = 1  # exactly 3 px away
  assert _one(pred, mask)["pd"] == 0.0
  assert _one(pred, mask, distance=3.01)["pd"] == 1.0
  pred2 = _img()
  pred2[7, 7] = 1  # sqrt(8) = 2.83 < 3
  assert _one(pred2, mask)["pd"] == 1.0


def test_target_split_into_two_components():
  mask = _img()
  mask[5, 2:9] = 1  # 7 px, centroid (5, 5)
  pred = _img()
  pred[5, 2:4] = 1
  pred[5, 7:9] = 1  # centroids (5, 2.5), (5, 7.5)
  r = _one(pred, mask)
  assert r["num_targets"] == 1 and r["num_detected"] == 1
  assert r["num_pred_components"] == 2 and r["num_false_components"] == 1
  assert r["fa_strict_pixels"] == 2  # second half is a false alarm,
  assert r["fa_pixels"] == 0  # of the matched half's area
  assert r["miou"] == pytest.approx(4 / 7)


def test_two_targets_covered_by_one_component():
  mask = _img()
  mask[5, 5] = 1
  mask[5, 9] = 1  # two targets
  pred = _img()
  pred[5, 5:10] = 1  # one blob, centroid (5, 7)
  r = _one(pred, mask)
  assert r["num_targets"] == 2
  assert r["num_detected"] == 1  # component used once
  assert r["pd"] == 0.5
  assert r["fa_pixels"] == 0
  assert r["miou"] == pytest.approx(2 / 5)


def test_first_fit_matching_order():
  # target A (5,5) label 1, target B (5,8) label 2; pred P1 (5,7) label 1, P2 (8,5)
  # label 2 (raster order).  A scans P1 first: dist 2 < 3 -> A takes P1; B then has
  # only P2 at dist sqrt(9+9) > 3 -> missed.  (Nearest/Hungarian would detect both.)
  mask = _img()
  mask[5, 5] = 1
  mask[5, 8] = 1
  pred = _img()
  pred[5, 7] = 1
  pred[8, 5] = 1
  r = _one(pred, mask)
  assert r["num_detected"] == 1
  assert r["fa_strict_pixels"] == 1 and r["fa_pixels"] == 0  # P2 has P1's area


def test_eight_connectivity():
  mask = _img()
  mask[3, 3] = 1
  mask[4, 4] = 1  # diagonal neighbours: 1 target
  pred = _img()
  pred[3, 3] = 1
  pred[4, 4] = 1
  r = _one(pred, mask)
  assert r["num_targets"] == 1 and r["num_pred_components"] == 1 and r["pd"] == 1.0


def test_empty_mask_with_false_alarm():
  mask = _img()
  pred = _img()
  pred[0:2, 0:2] = 0.7
  r = _one(pred, mask)
  assert r["num_targets"] == 0
  assert math.isnan(r["pd"])
  assert r["fa_pixels"] == 4 and r["fa"] == pytest.approx(4 / 400)
  assert r["miou"] == 0.0 and r["niou"] == 0.0


def test_empty_prediction():
  mask = _img()
  mask[4:6, 4:6] = 1
  pred = _img() + 0.5  # 0.5 is not > 0.5
  r = _one(pred, mask)
  assert r["pd"] == 0.0 and r["fa"] == 0.0 and r["miou"] == 0.0 and r["niou"] == 0.0
  assert r["num_pred_components"] == 0


def test_empty_mask_empty_prediction_niou_conventions():
  e = _img()
  good_mask = _img()
  good_mask[2:4, 2:4] = 1
  probs = np.stack([e, good_mask])
  masks = np.stack([e, good_mask])
  vals = {}
  for conv in ("zero", "one", "skip"):
    m = metrics_at_eval_defaults(niou_empty=conv)
    m.update(probs, masks)
    vals[conv] = m.compute()
    assert vals[conv]["miou"] == 1.0
  assert vals["zero"]["niou"] == 0.5
  assert vals["one"]["niou"] == 1.0
  assert vals["skip"]["niou"] == 1.0


def test_miou_vs_niou():
  m1 = _img()
  m1[0, 0:2] = 1
  p1 = _img()
  p1[0, 0] = 1  # I=1, U=2
  m2 = _img()
  m2[5:15, 5:15] = 1
  p2 = m2.copy()
  p2[5, 5:15] = 0  # I=90, U=100
  m = metrics_at_eval_defaults()
  records = m.update(np.stack([p1, p2]), np.stack([m1, m2]))
  r = m.compute()
  assert r["miou"] == pytest.approx(91 / 102)
  assert r["niou"] == pytest.approx((0.5 + 0.9) / 2)
  np.testing.assert_allclose([x.intersection / x.union for x in records], [0.5, 0.9])


def _random_set(rng, n, h, w):
  probs, masks = [], []
  for _ in range(n):
    mk = np.zeros((h, w), np.float32)
    pr = rng.uniform(0, 0.3, (h, w)).astype(np.float32)
    for _ in range(rng.integers(0, 4)):
      r, c = rng.integers(0, h - 4), rng.integers(0, w - 4)
      s = rng.integers(1, 4)
      mk[r : r + s, c : c + s] = 1
      dr, dc = rng.integers(-2, 3, size=2)
      rr, cc = np.clip(r + dr, 0, h - s), np.clip(c + dc, 0, w - s)
      pr[rr : rr + s, cc : cc + s] = rng.uniform(0.3, 1.0)
    pr[rng.integers(0, h), rng.integers(0, w)] = rng.uniform(0.4, 1.0)
    probs.append(pr)
    masks.append(mk)
  return probs, masks


def test_streaming_padding_and_filler_equal_single_pass():
  rng = np.random.default_rng(0)
  shapes = [(12, 17), (20, 20), (9, 14), (20, 11), (15, 15)]
  probs, masks = [], []
  for h, w in shapes:
    p, m = _random_set(rng, 1, h, w)
    probs += p
    masks += m
  ref = metrics_at_eval_defaults()
  ref.update(probs, masks)  # ragged list, no padding
  ref_r = ref.compute()
  assert ref_r["num_pixels"] == sum(h * w for h, w in shapes)

  # Padded batches of 2 (H=W=20 canvas, junk in the padding), last batch has filler.
  bs, H, W = 2, 20, 20
  st = metrics_at_eval_defaults()
  for start in range(0, len(shapes), bs):
    pb = np.ones((bs, H, W, 1), np.float32)  # padding predicts "target"
    mb = np.ones((bs, H, W, 1), np.float32)  # and the padded mask is junk too
    sizes = np.zeros((bs, 2), np.int32)
    valid = np.zeros((bs,), bool)
    for j, i in enumerate(range(start, min(start + bs, len(shapes)))):
      h, w = shapes[i]
      pb[j, :, :, 0] = 0.0
      mb[j, :, :, 0] = 0.0
      pb[j, :h, :w, 0] = probs[i]
      mb[j, :h, :w, 0] = masks[i]
      pb[j, h:, :, 0] = 1.0
      mb[j, :, w:, 0] = 1.0
      sizes[j] = (h, w)
      valid[j] = True
    st.update(pb, mb, sizes=sizes, valid=valid)
  r = st.compute()
  for k in ref_r:
    if isinstance(ref_r[k], float) and math.isnan(ref_r[k]):
      assert math.isnan(r[k]), k
    else:
      assert r[k] == pytest.approx(ref_r[k]), k
  assert r["num_images"] == len(shapes)


def test_jax_inputs_threshold_and_4d():
  import jax.numpy as jnp

  mask = _img()
  mask[3:5, 3:5] = 1
  pred = _img()
  pred[3:5, 3:5] = 0.4
  r = metrics_at_eval_defaults(threshold=0.3)
  r.update(jnp.asarray(pred)[None, ..., None], jnp.asarray(mask)[None, ..., None])
  assert r.compute()["miou"] == 1.0
  r2 = metrics_at_eval_defaults(threshold=0.5)
  r2.update(pred[None], mask[None])
  assert r2.compute()["miou"] == 0.0
  r3 = metrics_at_eval_defaults()  # bool prediction maps work too
  r3.update((pred > 0.3)[None], mask[None])
  assert r3.compute()["miou"] == 1.0


def test_fa_community_convention_and_strict():
  # Target matched by a 2-px component; an unmatched 2-px component elsewhere has the
  # same area, so BasicIRSTD's value-based removal does not count it (fa); fa_strict does.
  mask = _img()
  mask[5, 5:7] = 1
  pred = _img()
  pred[5, 5:7] = 1
  pred[15, 15:17] = 1
  pred[0, 0:3] = 1
  r = _one(pred, mask)
  assert r["fa_strict_pixels"] == 5 and r["fa_strict"] == pytest.approx(5 / 400)
  assert r["fa_pixels"] == 3 and r["fa"] == pytest.approx(3 / 400)
  # The metrics guide's example: a matched 2x2 target plus a separate 2x2 false alarm.
  mask = _img()
  mask[2:4, 2:4] = 1
  pred = mask.copy()
  pred[12:14, 12:14] = 1
  r = _one(pred, mask)
  assert (r["fa_pixels"], r["fa_strict_pixels"]) == (0, 4)


def test_size_breakdown():
  mask = np.zeros((40, 40), np.float32)
  mask[1, 1] = 1  # area 1  -> small
  mask[5:8, 5:8] = 1  # area 9  -> small
  mask[12:16, 12:16] = 1  # area 16 -> medium, detected below
  mask[25:34, 25:34] = 1  # area 81 -> large, detected below
  pred = np.zeros_like(mask)
  pred[12:16, 12:16] = 1
  pred[25:34, 25:34] = 1
  pred[5, 5] = 1  # centroid (5,5) vs (6,6): 1.41 -> detected
  m = metrics_at_eval_defaults()
  m.update(pred[None], mask[None])
  sb = m.size_breakdown()
  assert sb["small"]["num_targets"] == 2 and sb["small"]["num_detected"] == 1
  assert sb["medium"]["num_targets"] == 1 and sb["medium"]["pd"] == 1.0
  assert sb["large"]["num_targets"] == 1 and sb["large"]["pd"] == 1.0
  r = m.compute()
  assert r["pd_small"] == 0.5 and r["pd"] == 0.75


def test_curve_metrics():
  rng = np.random.default_rng(3)
  probs, masks = _random_set(rng, 4, 16, 16)
  th = [0.2, 0.5, 0.8]
  cm = M.CurveMetrics(th, distance=EVAL.distance)
  cm.update(np.stack(probs), np.stack(masks))
  c = cm.compute()
  P = np.stack(probs)
  T = np.stack(masks) > 0.5
  for i, t in enumerate(th):
    single = metrics_at_eval_defaults(threshold=t)
    single.update(P, T.astype(np.float32))
    s = single.compute()
    assert c["fa"][i] == pytest.approx(s["fa"])
    assert c["fa_strict"][i] == pytest.approx(s["fa_strict"])
    assert c["pd"][i] == pytest.approx(s["pd"])
    assert c["tpr"][i] == pytest.approx(((P > t) & T).sum() / T.sum())
    assert c["fpr"][i] == pytest.approx(((P > t) & ~T).sum() / (~T).sum())
  assert all(np.diff(c["fpr"]) <= 0) and all(np.diff(c["tpr"]) <= 0)
  assert 0.5 < c["roc_auc"] <= 1.0
  # a perfect separator has AUC 1
  perfect = M.CurveMetrics([0.5], distance=EVAL.distance)
  perfect.update(T.astype(np.float32), T)
  assert perfect.compute()["roc_auc"] == pytest.approx(1.0)


def test_write_report(tmp_path):
  mask = _img()
  mask[3:5, 3:5] = 1
  m = metrics_at_eval_defaults()
  m.update(np.stack([mask, _img()]), np.stack([mask, _img()]))
  cm = M.CurveMetrics([0.3, 0.6], distance=EVAL.distance)
  cm.update(np.stack([mask]), np.stack([mask]))
  jp, mp = M.write_report(
    str(tmp_path), m, cm.compute(), extra={"dataset": "toy"}, figures={"pdfa": "pdfa.png"}
  )
  data = json.loads(open(jp).read())
  assert data["metrics"]["miou"] == 1.0
  assert data["size_breakdown"]["large"]["pd"] is None  # NaN -> null
  md = open(mp).read()
  assert "| 100.00 |" in md and "Pd by target size" in md and "pdfa.png" in md


def _bfs_components(b):
  """Independent reference: 8-connected flood fill, components in raster order of
  their first pixel, as lists of (row, col)."""
  h, w = b.shape
  seen = np.zeros_like(b, bool)
  comps = []
  for r in range(h):
    for c in range(w):
      if b[r, c] and not seen[r, c]:
        stack, pix = [(r, c)], []
        seen[r, c] = True
        while stack:
          y, x = stack.pop()
          pix.append((y, x))
          for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
              yy, xx = y + dy, x + dx
              if 0 <= yy < h and 0 <= xx < w and b[yy, xx] and not seen[yy, xx]:
                seen[yy, xx] = True
                stack.append((yy, xx))
        comps.append(pix)
  return comps


def test_against_bruteforce_reference():
  rng = np.random.default_rng(7)
  for trial in range(15):
    mask = rng.uniform(size=(14, 14)) > 0.85
    pred = rng.uniform(size=(14, 14)) > 0.8
    tc = [np.mean(p, axis=0) for p in _bfs_components(mask)]
    pcs = _bfs_components(pred)
    pc = [np.mean(p, axis=0) for p in pcs]
    used = [False] * len(pc)
    det = 0
    for t in tc:  # BasicIRSTD loop: targets, then free preds
      for j, p in enumerate(pc):
        if not used[j] and np.linalg.norm(p - t) < 3:
          used[j] = True
          det += 1
          break
    fa = sum(len(pcs[j]) for j in range(len(pcs)) if not used[j])
    r = _one(pred.astype(np.float32), mask.astype(np.float32), distance=3.0)
    assert r["num_targets"] == len(tc)
    assert r["num_detected"] == det, trial
    assert r["fa_strict_pixels"] == fa, trial


def test_kdtree_matching_path_equals_dense_rule():
  rng = np.random.default_rng(11)
  t = rng.integers(0, 60, (300, 2)).astype(np.float64)  # lattice points give
  p = rng.integers(0, 60, (400, 2)).astype(np.float64) + 0.5 * rng.integers(0, 2, (400, 2))
  got = M.match_components(t, p, 3.0)  # exact-3 ties
  dist = np.sqrt(((t[:, None] - p[None]) ** 2).sum(-1))
  used = np.zeros(len(p), bool)
  ref = np.full(len(t), -1)
  for i in range(len(t)):
    c = np.flatnonzero((dist[i] < 3.0) & ~used)
    if c.size:
      ref[i] = c[0]
      used[c[0]] = True
  assert (dist == 3.0).any()
  np.testing.assert_array_equal(got, ref)


def test_summable_counts_across_hosts():
  rng = np.random.default_rng(5)
  probs, masks = _random_set(rng, 7, 16, 16)
  empty = np.zeros((16, 16), np.float32)
  probs.append(empty)
  masks.append(empty)  # one image with U = 0
  for conv in ("zero", "one", "skip"):
    full = metrics_at_eval_defaults(niou_empty=conv)
    records = full.update(probs, masks)
    hosts = [metrics_at_eval_defaults(niou_empty=conv) for _ in range(3)]
    for i, (p, m) in enumerate(zip(probs, masks)):
      hosts[i % 3].update(p[None], m[None])
    stacked = {k: np.stack([h.counts()[k] for h in hosts]) for k in hosts[0].counts()}
    for v in stacked.values():
      assert v.shape[0] == 3  # fixed shape per host
    summed = M.IRSTDMetrics.from_counts({k: v.sum(0) for k, v in stacked.items()}, **full.config())
    a, b = full.compute(), summed.compute()
    for k in a:
      if isinstance(a[k], float) and math.isnan(a[k]):
        assert math.isnan(b[k])
      else:
        assert b[k] == pytest.approx(a[k]), (conv, k)
    key = lambda sb: [(v["num_targets"], v["num_detected"]) for v in sb.values()]
    assert key(summed.size_breakdown()) == key(full.size_breakdown())
    # nIoU from the summed counts equals the mean of the per-image IoUs.
    ious = [x.intersection / x.union for x in records if x.union > 0]
    num_empty = sum(x.union == 0 for x in records)
    assert num_empty == 1
    expected_niou = {
      "zero": sum(ious) / len(records),
      "one": (sum(ious) + num_empty) / len(records),
      "skip": sum(ious) / len(ious),
    }[conv]
    assert a["niou"] == pytest.approx(expected_niou)


def test_num_saturated_counts_images_more_than_a_tenth_positive():
  """An image is saturated when more than a tenth of its (cropped) pixels are predicted
  positive; exactly a tenth is not. Padding outside `sizes` and filler images do not count."""
  assert M.SATURATED_FRACTION == 0.1
  tenth = _img()
  tenth[:2] = 0.9  # 40 of 400 pixels: not more than a tenth
  over = _img()
  over[:2] = 0.9
  over[2, 0] = 0.9  # 41 of 400
  padded = np.full((20, 20), 0.9, np.float32)  # positive everywhere, but cropped to 10 x 10
  padded[:10, :10] = 0.0
  m = metrics_at_eval_defaults()
  m.update(
    np.stack([tenth, over, padded, over]),
    np.zeros((4, 20, 20), np.float32),
    sizes=[(20, 20), (20, 20), (10, 10), (20, 20)],
    valid=[True, True, True, False],
  )
  assert m.compute()["num_saturated"] == 1
  assert M.IRSTDMetrics.from_counts(m.counts(), **m.config()).compute()["num_saturated"] == 1
