import numpy as np
from scipy import ndimage

from irstd_jax.datasets import synthetic


def test_same_seed_same_image_different_seed_different_image():
  a_img, a_mask, _ = synthetic.generate_image(3, "train", 7)
  b_img, b_mask, _ = synthetic.generate_image(3, "train", 7)
  c_img, _, _ = synthetic.generate_image(4, "train", 7)
  np.testing.assert_array_equal(a_img, b_img)
  np.testing.assert_array_equal(a_mask, b_mask)
  assert not np.array_equal(a_img, c_img)


def test_train_and_test_splits_differ():
  train = [synthetic.generate_image(0, "train", i)[0] for i in range(5)]
  test = [synthetic.generate_image(0, "test", i)[0] for i in range(5)]
  assert all(not np.array_equal(a, b) for a in train for b in test)


def test_mask_is_exactly_the_union_of_analytic_target_masks():
  for index in range(30):
    image, mask, targets = synthetic.generate_image(1, "train", index, 64, 80)
    assert image.shape == mask.shape == (64, 80) and image.dtype == mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 1}
    expected = np.zeros((64, 80), bool)
    for t in targets:
      one = synthetic.target_mask(t, 64, 80)
      assert one.any(), "every target has at least one mask pixel"
      assert one[int(np.floor(t.cy + 0.5)), int(np.floor(t.cx + 0.5))]
      expected |= one
    np.testing.assert_array_equal(mask.astype(bool), expected)
    if not targets:
      assert not mask.any()


def test_targets_are_bright_and_small_and_some_images_are_empty():
  areas, empties, contrasts = [], 0, []
  for index in range(120):
    image, mask, targets = synthetic.generate_image(0, "train", index)
    empties += not targets
    for t in targets:
      one = synthetic.target_mask(t, 128, 128)
      areas.append(int(one.sum()))
      ring = ndimage.binary_dilation(one, iterations=4) & ~ndimage.binary_dilation(
        one, iterations=2
      )
      contrasts.append(image[one].max() - np.median(image[ring]))
  assert 1 <= min(areas) and max(areas) <= 90
  assert np.median(contrasts) > 10  # targets stand out from their surroundings
  assert 3 <= empties <= 30  # about 10 % of images have no target


def test_generate_split_ids_are_unique_and_ordered():
  ids = [key for key, _, _ in synthetic.generate_split(0, "test", 4, 32, 32)]
  assert ids == ["test_00000", "test_00001", "test_00002", "test_00003"]
