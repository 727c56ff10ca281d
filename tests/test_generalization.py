"""tools.analysis.generalization: the shifts keep what they claim to keep (numpy only)."""

from conftest import REPO
import numpy as np
from scipy import ndimage

from tools.analysis import generalization as gen


def _records(n=5, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for k in range(n):
    h, w = 20 + 3 * k, 30 - 2 * k
    image = rng.integers(40, 120, (h, w, 1)).astype(np.uint8)
    mask = np.zeros((h, w, 1), np.uint8)
    y, x = 4 + k, 6 + k
    mask[y : y + 3, x : x + 2] = 1
    image[mask > 0] = 250
    out.append({"id": f"img{k}", "image": image, "mask": mask})
  return out


def _components(mask):
  return ndimage.label(mask[..., 0] > 0)[1]


def test_large_frames_keep_every_target_and_pixel():
  records = _records(5)
  frames = gen.large_frames(records)
  assert len(frames) == 2  # 4 + a short group of 1
  assert sum(int(f["mask"].sum()) for f in frames) == sum(int(r["mask"].sum()) for r in records)
  assert sum(_components(f["mask"]) for f in frames) == len(records)
  first = frames[0]
  cell_h = max(r["image"].shape[0] for r in records)
  cell_w = max(r["image"].shape[1] for r in records)
  assert {f["image"].shape for f in frames} == {(2 * cell_h, 2 * cell_w, 1)}
  # Record 3 sits in the lower right cell, unchanged.
  h, w = records[3]["image"].shape[:2]
  np.testing.assert_array_equal(
    first["image"][cell_h : cell_h + h, cell_w : cell_w + w], records[3]["image"]
  )
  assert first["id"] == "img0+img1+img2+img3"


def test_upscaled_doubles_sides_and_keeps_masks_binary():
  records = _records(3)
  for r, u in zip(records, gen.upscaled(records)):
    assert u["image"].shape == (2 * r["image"].shape[0], 2 * r["image"].shape[1], 1)
    assert set(np.unique(u["mask"])) <= {0, 1}
    assert int(u["mask"].sum()) == 4 * int(r["mask"].sum())  # nearest: each pixel -> 2x2


def test_gamma_is_monotone_and_keeps_the_ends():
  ramp = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
  record = [{"id": "ramp", "image": ramp, "mask": np.zeros_like(ramp)}]
  for value in gen.GAMMAS.values():
    out = gen.gamma(record, value)[0]["image"].ravel().astype(int)
    assert out[0] == 0 and out[-1] == 255
    assert np.all(np.diff(out) >= 0)
  assert (
    gen.gamma(record, 1.6)[0]["image"][8, 0, 0] < 128 < gen.gamma(record, 0.6)[0]["image"][8, 0, 0]
  )


def test_noisy_is_deterministic_and_has_its_sigma():
  records = [
    {
      "id": "flat",
      "image": np.full((64, 64, 1), 128, np.uint8),
      "mask": np.zeros((64, 64, 1), np.uint8),
    }
  ]
  a, b = gen.noisy(records)[0]["image"], gen.noisy(records)[0]["image"]
  np.testing.assert_array_equal(a, b)
  assert abs(float(a.astype(np.float64).std()) - gen.NOISE_SIGMA) < 1.0


def test_remove_targets_fills_only_the_hole_from_its_surroundings():
  image = np.full((15, 15, 1), 50, np.uint8)
  image[:, 8:] = 70  # two background levels around the hole
  image[6:9, 6:9] = 255
  mask = np.zeros_like(image)
  mask[7, 7] = 1
  filled, hole = gen.remove_targets(image, mask, margin=2)
  assert hole.sum() == 13  # a dilated pixel, 2 iterations of the cross: a diamond
  np.testing.assert_array_equal(filled[~hole], image[~hole])
  # The 255 target is gone; the fill lies between the surrounding levels.
  assert filled[hole].min() >= 50 and filled[hole].max() <= 70
  records = gen.background(_records(3))
  assert all(int(r["mask"].sum()) == 0 for r in records)
  assert all(int(r["image"].max()) < 250 for r in records)  # the 250 targets are filled


def test_unseen_goal_verdict():
  row = {"miou": 0.6, "pd": 0.95, "fa": 40e-6}
  assert gen.goal_verdict(row, 0.5, 0.9, 50.0) == "meets the goal"
  assert gen.goal_verdict(dict(row, pd=float("nan")), 0.5, 0.9, 50.0) == "misses: Pd < 0.9"
  assert "Fa > 50.0e-6" in gen.goal_verdict(dict(row, fa=60e-6), 0.5, 0.9, 50.0)


def test_shift_names_in_the_docstring():
  for name in gen.SHIFTS:
    assert f"  {name} " in gen.__doc__, name
  assert (REPO / "tools" / "analysis" / "generalization.py").exists()


def test_blobs_on_holes_counts_only_blobs_touching_a_hole():
  hole = np.zeros((8, 8), bool)
  hole[2:4, 2:4] = True
  frames = [{"id": "a", "hole": hole}, {"id": "b"}]
  scores = np.zeros((3, 10, 10, 1), np.float32)
  scores[0, 3:5, 3:5] = 0.9  # touches the hole
  scores[0, 6:8, 6:8] = 0.9  # elsewhere
  scores[0, 9, 9] = 0.9  # in the padding (sizes say 8x8): ignored
  scores[1, 2:4, 2:4] = 0.9  # a frame without a hole
  batch = {"index": np.array([0, 1, -1]), "sizes": np.array([[8, 8], [8, 8], [0, 0]])}
  counter = gen.BlobsOnHoles(frames, threshold=0.5)
  counter(batch, scores)
  assert counter.count == 1


def test_bad_arguments_are_one_error_line(tmp_path, capsys):
  out = str(tmp_path / "out")
  assert gen.main(["--checkpoint=x", f"--output={out}", "--shifts=original,bogus"]) == 2
  assert "--shifts 'original,bogus': expected some of" in capsys.readouterr().err
  assert gen.main([f"--checkpoint={tmp_path / 'missing'}", f"--output={out}"]) == 2
  assert "missing" in capsys.readouterr().err


def test_blobs_on_holes_counts_a_diagonal_blob_once():
  hole = np.zeros((8, 8), bool)
  hole[2, 2] = hole[3, 3] = True
  scores = np.zeros((1, 8, 8, 1), np.float32)
  scores[0, 2, 2] = scores[0, 3, 3] = 0.9  # one 8-connected blob over both hole pixels
  counter = gen.BlobsOnHoles([{"id": "a", "hole": hole}], threshold=0.5)
  counter({"index": np.array([0]), "sizes": np.array([[8, 8]])}, scores)
  assert counter.count == 1


def test_stripes_add_one_offset_per_column_and_keep_the_masks():
  records = _records(3)
  frames = gen.stripes(records)
  for r, f in zip(records, frames):
    np.testing.assert_array_equal(f["mask"], r["mask"])
    offset = f["image"].astype(int) - r["image"].astype(int)  # no clipping: 40..120 and 250
    unclipped = r["image"][..., 0] < 250 - 3 * gen.STRIPE_SIGMA
    for column in range(offset.shape[1]):
      assert len(np.unique(offset[unclipped[:, column], column])) == 1
  np.testing.assert_array_equal(gen.stripes(records)[2]["image"], frames[2]["image"])
  wide = [{"id": "w", "image": np.full((4, 4000, 1), 128, np.uint8), "mask": None}]
  assert abs(float(gen.stripes(wide)[0]["image"][0].std()) - gen.STRIPE_SIGMA) < 0.5


def test_a_shift_made_by_the_training_augmentation_is_marked_seen():
  import ml_collections

  dataset = ml_collections.ConfigDict({"noise_std": 16.0, "zoom_max": 1.0})
  assert gen.seen_in_training(dataset) == {"noisy": "dataset.noise_std=16"}
  dataset.zoom_max = 2.0
  assert set(gen.seen_in_training(dataset)) == {"noisy", "upscaled"}
  # A checkpoint written before the fields existed trained without them.
  assert gen.seen_in_training(ml_collections.ConfigDict({"crop_size": 128})) == {}
  row = {k: 1.0 for k in ("num_images", "num_targets", "miou", "niou", "pd")}
  row.update(fa=0.0, false_components_per_frame=0.0)
  header = {"checkpoint": "c", "command": "x", "date": "d", "machine": "m", "step": 1}
  header.update(threshold=0.5, seen_in_training={"noisy": "dataset.noise_std=16"})
  text = gen.report(header, {"noisy": row, "unseen": row}, "meets the goal")
  assert "| noisy (seen in training: dataset.noise_std=16) |" in text
  assert "unseen (every shift but original, noisy): meets the goal" in text


def test_tiled_scores_each_tile_alone_in_fixed_size_chunks():
  shapes = []

  def tile_mean(images):  # a score that depends on everything the model sees
    shapes.append(images.shape)
    return np.broadcast_to(images.mean(axis=(1, 2, 3), keepdims=True), images.shape)

  rng = np.random.default_rng(0)
  images = rng.normal(size=(3, 40, 50, 1)).astype(np.float32)
  scores = gen.tiled(tile_mean, tile=16, batch_size=4)(images)
  assert scores.shape == images.shape
  assert set(shapes) == {(4, 16, 16, 1)}  # 3 x 3 x 4 = 36 tiles, always 4 at a time
  padded = np.zeros((3, 48, 64, 1), np.float32)
  padded[:, :40, :50] = images
  for b, y, x in [(0, 0, 0), (1, 20, 33), (2, 39, 49)]:
    ty, tx = y // 16 * 16, x // 16 * 16
    assert np.isclose(scores[b, y, x, 0], padded[b, ty : ty + 16, tx : tx + 16].mean())
  # A pixelwise score is the same tiled or not.
  np.testing.assert_allclose(gen.tiled(lambda x: 2 * x, 16, 4)(images), 2 * images)


def test_tile_must_be_a_multiple_of_the_poolings(tmp_path, capsys):
  assert gen.main(["--checkpoint=x", f"--output={tmp_path}", "--tile=24"]) == 2
  assert "--tile 24: expected 0 (whole frames) or a multiple of 16" in capsys.readouterr().err
