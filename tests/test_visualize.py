"""Figures are written, are valid PNGs, and the overlay colours are right."""

import numpy as np
from PIL import Image
import pytest

from irstd_jax import metrics as M
from irstd_jax import visualize as V

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scene():
  rng = np.random.default_rng(0)
  img = rng.uniform(0, 255, (40, 50)).astype(np.uint8)
  mask = np.zeros((40, 50), np.float32)
  mask[10:14, 20:24] = 1  # target 1, partly hit
  mask[33, 45] = 1  # target 2, missed
  probs = rng.uniform(0, 0.3, (40, 50)).astype(np.float32)
  probs[10:14, 21:25] = 0.9  # TP on cols 21-23, FP on col 24, FN on col 20
  probs[2:4, 2:4] = 0.7  # false alarm blob
  return img, mask, probs


def _read_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC
  im = Image.open(path)
  im.verify()
  return np.asarray(Image.open(path).convert("RGB"))


def test_overlay_rgb_colours():
  img, mask, probs = _scene()
  rgb = V.overlay_rgb(img, mask, probs > 0.5)
  assert tuple(rgb[11, 22]) == V.TP_COLOR == (0, 255, 0)
  assert tuple(rgb[11, 24]) == V.FP_COLOR == (255, 0, 0)
  assert tuple(rgb[11, 20]) == V.FN_COLOR == (255, 255, 0)
  assert tuple(rgb[3, 3]) == V.FP_COLOR
  g = rgb[30, 5]
  assert g[0] == g[1] == g[2]  # background stays grey


@pytest.mark.parametrize("scale", [None, 3])
def test_overlay_figure6_png_colours(tmp_path, scale):
  img, mask, probs = _scene()
  path = str(tmp_path / "fig6.png")
  info = V.overlay_figure6(img, mask, probs > 0.5, path, scale=scale)
  a = _read_png(path)
  assert a.shape[:2] == tuple(info["size"])
  s = info["scale"]

  def px(r, c):
    return tuple(int(v) for v in a[r * s + s // 2, c * s + s // 2])

  assert px(11, 22) == (0, 255, 0)  # TP green
  assert px(11, 24) == (255, 0, 0)  # FP red
  assert px(11, 20) == (255, 255, 0)  # FN yellow
  assert px(33, 45) == (255, 255, 0)  # missed single-pixel target
  assert px(3, 3) == (255, 0, 0)
  # one inset per target, and its centre shows the target colours too
  assert len(info["insets"]) == 2
  ins = info["insets"][0]
  r0, c0, _, _ = ins["window"]
  y, x = ins["inset_origin"]
  z = ins["zoom"]
  iy, ix = y + 3 + (11 - r0) * z + z // 2, x + 3 + (22 - c0) * z + z // 2
  assert tuple(int(v) for v in a[iy, ix]) == (0, 255, 0)


def test_overlay_without_targets(tmp_path):
  img, _, probs = _scene()
  info = V.overlay_figure6(
    img, np.zeros_like(img), probs > 0.5, str(tmp_path / "empty.png"), legend=False
  )
  assert info["insets"] == []
  _read_png(str(tmp_path / "empty.png"))


def test_heatmap_figure7(tmp_path):
  img, mask, probs = _scene()
  path = str(tmp_path / "fig7.png")
  bars = V.heatmap_figure7(probs, mask, path, threshold=0.5, distance=3.0, image=img)
  _read_png(path)
  assert len(bars) == 2  # false-alarm blob (label 1) + target blob
  assert bars[0]["true"] is False and bars[0]["height"] == pytest.approx(0.7)
  assert bars[1]["true"] is True and bars[1]["height"] == pytest.approx(0.9)
  assert bars[1]["area"] == 16


def test_curve_plots(tmp_path):
  img, mask, probs = _scene()
  cm = M.CurveMetrics([0.1, 0.5, 0.8], distance=3.0)
  cm.update(probs[None], mask[None])
  c = cm.compute()
  p1 = V.pdfa_curve_plot(c, str(tmp_path / "pdfa.png"))
  p2 = V.roc_plot({"model A": c, "model B": c}, str(tmp_path / "roc.png"), logx=True)
  p3 = V.pdfa_curve_plot({"a": c}, str(tmp_path / "pdfa_log.png"), logx=True)
  m = M.IRSTDMetrics(threshold=0.5, distance=3.0)
  m.update(probs[None], mask[None])
  p4 = V.size_breakdown_plot(m.size_breakdown(), str(tmp_path / "sizes.png"))
  for p in (p1, p2, p3, p4):
    a = _read_png(p)
    assert a.shape[0] > 100 and a.shape[1] > 100
