import numpy as np
import pytest

from irstd_jax import input_pipeline as ip


def _source(n=23, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n):
    h, w = int(rng.integers(20, 50)), int(rng.integers(20, 50))
    image = rng.integers(0, 256, (h, w, 1), dtype=np.uint8)
    mask = np.zeros((h, w, 1), np.uint8)
    mask[rng.integers(h), rng.integers(w)] = 1
    image[..., 0][mask[..., 0] > 0] = i  # the image's index is readable at its target
    out.append({"image": image, "mask": mask, "id": f"img_{i}".encode()})
  return out


def _batches(source, processes, batch=8, step=0, crop=16):
  cfg = ip.AugmentConfig(crop, True, True, 1.0, 0.0, 1.0, 0.0)
  return [
    ip.TrainBatches(source, batch, cfg, 0.0, 1.0, seed=5, process_index=p, process_count=processes)
    for p in range(processes)
  ]


def test_processes_read_disjoint_slices_whose_union_is_the_global_batch():
  source = _source()
  (single,) = _batches(source, 1)
  pair = _batches(source, 2)
  for step in range(6):
    whole = single.local_indices(step)
    parts = [b.local_indices(step) for b in pair]
    assert not set(parts[0]) & set(parts[1])
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(
      np.concatenate([b.batch(step)["image"] for b in pair]), single.batch(step)["image"]
    )


def test_an_epoch_visits_distinct_examples_and_epochs_reshuffle():
  source = _source()
  (b,) = _batches(source, 1)
  assert b.steps_per_epoch == 2
  epoch0 = np.concatenate([b.local_indices(s) for s in range(2)])
  epoch1 = np.concatenate([b.local_indices(s) for s in range(2, 4)])
  assert len(set(epoch0)) == 16 and len(set(epoch1)) == 16
  assert not np.array_equal(epoch0, epoch1)


def test_batches_are_deterministic_and_masks_binary_with_the_target_kept():
  source = _source()
  (b,) = _batches(source, 1)
  first, again = b.batch(3), b.batch(3)
  np.testing.assert_array_equal(first["image"], again["image"])
  assert first["image"].shape == (8, 16, 16, 1) and first["image"].dtype == np.float32
  assert set(np.unique(first["mask"])) <= {0.0, 1.0}
  # target_crop_prob=1: every crop keeps its image's single target pixel, and the pixel
  # value there is still the image's own index (crop/flip/rotate move pixels together).
  assert (first["mask"].reshape(8, -1).sum(1) == 1).all()
  for image, mask, index in zip(first["image"], first["mask"], b.local_indices(3)):
    assert image[mask > 0][0] == index


def test_small_images_are_padded_up_to_the_crop():
  source = _source(n=8)
  (b,) = _batches(source, 1, crop=64)
  batch = b.batch(0)
  assert batch["image"].shape == (8, 64, 64, 1)
  # The padding mirrors image and mask alike: every crop holds its target, and every mask
  # pixel (the target and its mirror images) shows the target's value, the image's index.
  assert (batch["mask"].reshape(8, -1).sum(1) >= 1).all()
  assert (batch["mask"].reshape(8, -1).sum(1) > 1).any()  # some target was mirrored
  for image, mask, index in zip(batch["image"], batch["mask"], b.local_indices(0)):
    assert (image[mask > 0] == index).all()


def test_a_mirrored_target_is_labelled():
  image = np.full((10, 12, 1), 30, np.uint8)
  mask = np.zeros((10, 12, 1), np.uint8)
  image[8, 5], mask[8, 5] = 250, 1  # near the bottom edge: the padding mirrors it
  cfg = ip.AugmentConfig(16, False, False, 1.0, 0.0, 1.0, 0.0)
  out_image, out_mask = ip.augment(image, mask, np.random.default_rng(0), cfg)
  np.testing.assert_array_equal(out_image == 250, out_mask == 1)
  assert out_mask.sum() == 2


def test_uneven_batch_is_refused_with_a_clear_message():
  with pytest.raises(ValueError, match="not divisible by the process count 3"):
    _batches(_source(), 3, batch=8)


def test_eval_sees_every_image_exactly_once_with_sizes_and_padding():
  source = _source(n=23)
  buckets = ip.eval_buckets(source, multiple=16)
  assert sorted(i for _, indices in buckets for i in indices) == list(range(23))
  areas = [h * w for (h, w), _ in buckets]
  assert areas == sorted(areas)
  for (h, w), indices in buckets:
    assert h % 16 == 0 and w % 16 == 0
    for i in indices:  # each image in the smallest multiple-of-16 shape that holds it
      ih, iw = source[i]["image"].shape[:2]
      assert (h, w) == (-(-ih // 16) * 16, -(-iw // 16) * 16)
  # (processes, devices): a bucket of at most a batch is rounded up to the device count
  # only; a larger one fills its last batch (one compiled shape per bucket).
  for processes, devices in ((1, 1), (1, 2), (2, 2), (2, 4)):
    seen, rows, shapes = [], 0, set()
    for p in range(processes):
      for batch in ip.eval_batches(source, 4, 16, 10.0, 2.0, p, processes, devices):
        assert batch["image"].shape[0] * processes % devices == 0
        assert batch["image"].shape[0] <= 4 // processes
        rows += batch["image"].shape[0]
        shapes.add(batch["image"].shape)
        for img, mask, size, valid, key, index in zip(
          batch["image"], batch["mask"], batch["sizes"], batch["valid"], batch["id"], batch["index"]
        ):
          if not valid:
            assert key == "" and not mask.any() and index == -1
            continue
          i = int(key.split("_")[1])
          assert index == i
          h, w = source[i]["image"].shape[:2]
          assert tuple(size) == (h, w)
          assert img.shape[:2] == ip.eval_shape(h, w, 16)
          np.testing.assert_allclose(img[:h, :w, 0], (source[i]["image"][..., 0] - 10.0) / 2.0)
          assert not img[h:].any() and not img[:, w:].any()
          np.testing.assert_array_equal(mask[:h, :w], source[i]["mask"])
          seen.append(i)
    assert sorted(seen) == list(range(23))
    assert len(shapes) == len(buckets)
    sizes = [len(indices) for _, indices in buckets]
    assert any(n > 4 and n % 4 for n in sizes)  # a bucket with a filled last batch
    assert rows == sum(-(-n // devices) * devices if n <= 4 else -(-n // 4) * 4 for n in sizes)
  with pytest.raises(ValueError, match="multiple of the 3 devices"):
    next(ip.eval_batches(source, 4, 16, 10.0, 2.0, batch_multiple=3))


def test_zoom_enlarges_image_and_mask_and_keeps_masks_binary():
  image = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
  mask = np.zeros((3, 4, 1), np.uint8)
  mask[1, 2] = 1
  zimage, zmask = ip.zoom(image, mask, 2.0)
  assert zimage.shape == zmask.shape == (6, 8, 1)
  assert set(np.unique(zmask)) == {0, 1} and int(zmask.sum()) == 4
  assert zmask[2:4, 4:6].all()  # the target pixel became its 2x2 block


def test_zoom_max_grows_the_targets_of_the_crops():
  source = _source()
  areas = {}
  for zoom_max in (1.0, 3.0):
    cfg = ip.AugmentConfig(16, True, True, 1.0, 0.0, zoom_max, 0.0)
    crops = [
      ip.augment(r["image"], r["mask"], np.random.default_rng([k]), cfg)
      for k, r in enumerate(source)
    ]
    masks = np.stack([m for _, m in crops])
    assert set(np.unique(masks)) <= {0, 1}
    assert (masks.reshape(len(source), -1).sum(1) >= 1).all()  # target-centred crops keep it
    areas[zoom_max] = masks.sum() / len(source)
  assert areas[1.0] == 1.0 and areas[3.0] > 2.0


def test_noise_std_adds_zero_mean_noise_of_a_sigma_drawn_per_crop():
  image = np.full((40, 40, 1), 128, np.uint8)
  mask = np.zeros((40, 40, 1), np.uint8)
  mask[20, 20] = 1
  sigmas = []
  for k in range(200):
    crops = {
      std: ip.augment(
        image,
        mask,
        np.random.default_rng([k]),
        ip.AugmentConfig(32, True, True, 0.5, 0.0, 1.0, std),
      )
      for std in (0.0, 12.0)
    }
    (clean, clean_mask), (noisy, noisy_mask) = crops[0.0], crops[12.0]
    assert noisy.dtype == np.uint8
    # The noise is drawn after every other operation: the crop is the same, only noisier.
    np.testing.assert_array_equal(clean_mask, noisy_mask)
    np.testing.assert_array_equal(clean, image[:32, :32])
    residual = noisy.astype(np.float64) - clean
    assert abs(residual.mean()) < 1.0
    sigmas.append(residual.std())
  sigmas = np.array(sigmas)
  # sigma ~ U[0, 12]: its mean square is 12^2 / 3 = 48, and crops range from clean to noisy.
  assert 40 < (sigmas**2).mean() < 56
  assert sigmas.min() < 1.0 and 11.0 < sigmas.max() < 12.5
