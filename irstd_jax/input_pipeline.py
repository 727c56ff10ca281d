"""Index-based input pipeline over TFDS ArrayRecord data sources.

Why index-based rather than a streaming tf.data pipeline: the batch of global step `s` is a
pure function of (seed, s), so resume after interruption is exact (no iterator state beyond
the step), and each process reads only its own slice of each global batch, which makes a
multi-host run see exactly the same global batches as a single-host one.

Batches are numpy dicts:
  train: image (B_local, C, C, 1) float32 normalised, mask (B_local, C, C, 1) float32 {0,1}
  eval:  the same at a fixed padded size, plus sizes (B_local, 2) int32 and valid (B_local,) bool
"""

from __future__ import annotations

from collections.abc import Iterator
from collections.abc import Sequence
import concurrent.futures
import dataclasses
from typing import Any

import numpy as np
from PIL import Image

_NUM_THREADS = 8


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """The training augmentation fields of config.dataset (defaults: default_config)."""

  crop_size: int
  flip: bool
  rot90: bool
  target_crop_prob: float  # chance the crop is centred near a target pixel
  intensity_jitter: float  # multiplicative gain jitter, e.g. 0.1 = +-10 %
  zoom_max: float  # zoom-in factor log-uniform in [1, zoom_max]; 1 = off
  noise_std: float  # additive Gaussian noise, sigma uniform in [0, noise_std] grey levels

  @classmethod
  def from_config(cls, dataset_config) -> AugmentConfig:
    """The fields of the same names in config.dataset."""
    return cls(**{f.name: dataset_config[f.name] for f in dataclasses.fields(cls)})


def normalize(image_uint8: np.ndarray, mean: float, std: float) -> np.ndarray:
  """uint8 intensities -> float32 (x - mean) / std."""
  return (image_uint8.astype(np.float32) - mean) / std


def _pad_to(array: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
  pad_h, pad_w = max(height - array.shape[0], 0), max(width - array.shape[1], 0)
  if pad_h == 0 and pad_w == 0:
    return array
  pads = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (array.ndim - 2)
  if mode == "reflect" and (array.shape[0] < 2 or array.shape[1] < 2):
    mode = "edge"
  return np.pad(array, pads, mode=mode)


def zoom(image: np.ndarray, mask: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
  """(H, W, 1) uint8 image and mask resized by `factor` (>= 1): image bilinear, mask
  nearest (still exactly binary, every target kept)."""
  height, width = image.shape[:2]
  size = (max(round(width * factor), 1), max(round(height * factor), 1))
  image = Image.fromarray(image[..., 0]).resize(size, Image.BILINEAR)
  mask = Image.fromarray(mask[..., 0]).resize(size, Image.NEAREST)
  return np.asarray(image)[..., None], np.asarray(mask)[..., None]


def augment(
  image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
  """Random zoom-in, crop (target-preserving with prob. cfg.target_crop_prob), flips,
  90-degree turns, intensity gain, additive sensor noise.

  Args:
    image: (H, W, 1) uint8. mask: (H, W, 1) uint8 {0,1}.
  Returns:
    (C, C, 1) uint8 image and mask, C = cfg.crop_size; masks stay exactly binary because
    every operation is a nearest-neighbour resize, a pure pixel permutation (crop, flip,
    transpose) or a reflection (padding, the same for both). The zoom only enlarges: shrinking would drop a 1-pixel
    target from the mask while its blurred trace stays in the image.
  """
  if cfg.zoom_max > 1:  # drawn only when on: runs without it keep their random stream
    image, mask = zoom(image, mask, float(np.exp(rng.uniform(0.0, np.log(cfg.zoom_max)))))
  size = cfg.crop_size
  # The mask is mirrored with the image: a target the padding mirrors stays labelled (with a
  # zero-padded mask, 22% of 256-px crops of NUAA-SIRST's 50/50 train split held an
  # unlabelled mirrored target).
  image = _pad_to(image, size, size, "reflect")
  mask = _pad_to(mask, size, size, "reflect")
  height, width = image.shape[:2]
  ys, xs = np.nonzero(mask[..., 0])
  if len(ys) and rng.uniform() < cfg.target_crop_prob:
    k = rng.integers(len(ys))
    # Any window that contains the chosen target pixel, clipped to the image.
    y0 = rng.integers(max(ys[k] - size + 1, 0), min(ys[k], height - size) + 1)
    x0 = rng.integers(max(xs[k] - size + 1, 0), min(xs[k], width - size) + 1)
  else:
    y0 = rng.integers(0, height - size + 1)
    x0 = rng.integers(0, width - size + 1)
  image = image[y0 : y0 + size, x0 : x0 + size]
  mask = mask[y0 : y0 + size, x0 : x0 + size]
  if cfg.flip and rng.uniform() < 0.5:
    image, mask = image[:, ::-1], mask[:, ::-1]
  if cfg.flip and rng.uniform() < 0.5:
    image, mask = image[::-1], mask[::-1]
  if cfg.rot90:
    turns = int(rng.integers(4))
    image, mask = np.rot90(image, turns), np.rot90(mask, turns)
  if cfg.intensity_jitter > 0:
    gain = rng.uniform(1.0 - cfg.intensity_jitter, 1.0 + cfg.intensity_jitter)
    image = np.clip(np.round(image.astype(np.float32) * gain), 0, 255).astype(np.uint8)
  if cfg.noise_std > 0:  # drawn only when on, like the zoom
    # A sigma per crop, from 0: the model sees clean and noisy frames alike.
    noise = rng.normal(0.0, rng.uniform(0.0, cfg.noise_std), image.shape)
    image = np.clip(np.round(image + noise), 0, 255).astype(np.uint8)
  return np.ascontiguousarray(image), np.ascontiguousarray(mask)


class TrainBatches:
  """The training batch of any global step, for one process.

  Epoch e visits the split in the order `permutation(seed, e)`; global step s takes the
  `global_batch_size` indices starting at (s mod steps_per_epoch) * global_batch_size, and
  process p keeps the p-th contiguous slice of them. The last incomplete batch of an
  epoch is dropped. Augmentation randomness is seeded by (seed, epoch, example index),
  so it does not depend on how many processes share the work.
  """

  def __init__(
    self,
    source: Sequence[dict[str, Any]],
    global_batch_size: int,
    augment_cfg: AugmentConfig,
    mean: float,
    std: float,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
  ):
    if global_batch_size % process_count:
      raise ValueError(
        f"global batch size {global_batch_size} is not divisible by the "
        f"process count {process_count}"
      )
    self.source = source
    self.global_batch_size = global_batch_size
    self.local_batch_size = global_batch_size // process_count
    self.steps_per_epoch = len(source) // global_batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(
        f"the training split has {len(source)} examples, fewer than one "
        f"global batch of {global_batch_size}; lower train.batch_size"
      )
    self.augment_cfg = augment_cfg
    self.mean, self.std, self.seed = mean, std, seed
    self.process_index = process_index
    self._pool = concurrent.futures.ThreadPoolExecutor(_NUM_THREADS)

  def local_indices(self, step: int) -> np.ndarray:
    epoch, within = divmod(step, self.steps_per_epoch)
    order = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
    start = within * self.global_batch_size + self.process_index * self.local_batch_size
    return order[start : start + self.local_batch_size]

  def _example(self, epoch: int, index: int):
    record = self.source[int(index)]
    rng = np.random.default_rng([self.seed, epoch, int(index), 1])
    return augment(record["image"], record["mask"], rng, self.augment_cfg)

  def batch(self, step: int) -> dict[str, np.ndarray]:
    epoch = step // self.steps_per_epoch
    pairs = list(self._pool.map(lambda i: self._example(epoch, i), self.local_indices(step)))
    images = np.stack([p[0] for p in pairs])
    masks = np.stack([p[1] for p in pairs])
    return {"image": normalize(images, self.mean, self.std), "mask": (masks > 0).astype(np.float32)}

  def iterate(self, start_step: int, end_step: int) -> Iterator[dict[str, np.ndarray]]:
    """Batches for steps [start_step, end_step), one batch prefetched in the background."""
    if start_step >= end_step:
      return
    future = self._pool.submit(self.batch, start_step)
    for step in range(start_step, end_step):
      batch = future.result()
      if step + 1 < end_step:
        future = self._pool.submit(self.batch, step + 1)
      yield batch


def round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def eval_shape(height: int, width: int, multiple: int) -> tuple[int, int]:
  """The padded (H, W) an image of (height, width) is evaluated at: each side rounded up
  to a multiple of `multiple` (BasicIRSTD's protocol pads every test image to multiples
  of 32 and crops the prediction back)."""
  return round_up(height, multiple), round_up(width, multiple)


def eval_buckets(
  source: Sequence[dict[str, Any]], multiple: int
) -> list[tuple[tuple[int, int], list[int]]]:
  """[(padded shape, [indices in split order]), ...], smallest area first.

  Images that round up to the same padded shape share a bucket: a handful of compiled
  shapes serves a split of mixed sizes, and each image is computed at its own padded
  size (the result never depends on the other images of the split).
  """
  buckets: dict[tuple[int, int], list[int]] = {}
  for i in range(len(source)):
    h, w = source[i]["image"].shape[:2]
    buckets.setdefault(eval_shape(h, w, multiple), []).append(i)
  return sorted(buckets.items(), key=lambda item: (item[0][0] * item[0][1], item[0]))


def eval_batches(
  source: Sequence[dict[str, Any]],
  global_batch_size: int,
  multiple: int,
  mean: float,
  std: float,
  process_index: int = 0,
  process_count: int = 1,
  batch_multiple: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
  """Every image of the split exactly once, bucket by bucket (`eval_buckets`), each batch
  zero-padded (after normalisation, i.e. to the mean) to its bucket's shape.

  A bucket's batches hold `global_batch_size` images. A bucket of at most that many
  images is one batch of its images rounded up to a multiple of `batch_multiple` (the
  mesh's device count, so every device gets the same number of rows; default the process
  count); a larger bucket's last batch is filled up to `global_batch_size`, so that each
  bucket is one compiled shape (a compile costs more than the few filler images). Filler
  images are blank and marked valid=False; all processes run the same steps. `sizes`
  holds each image's true (h, w) for un-padding and `index` its position in the split
  (-1 for filler).
  """
  batch_multiple = batch_multiple or process_count
  if global_batch_size % batch_multiple or batch_multiple % process_count:
    raise ValueError(
      f"eval batch size {global_batch_size} must be a multiple of the {batch_multiple} "
      f"devices, and they of the process count {process_count}"
    )
  for (height, width), indices in eval_buckets(source, multiple):
    rows = min(global_batch_size, round_up(len(indices), batch_multiple))
    for start in range(0, len(indices), rows):
      local = rows // process_count
      chunk = indices[start : start + rows][process_index * local : (process_index + 1) * local]
      images = np.zeros((local, height, width, 1), np.float32)  # zero = mean after normalising
      masks = np.zeros((local, height, width, 1), np.uint8)
      sizes = np.zeros((local, 2), np.int32)
      valid = np.zeros((local,), bool)
      index = np.full((local,), -1, np.int64)
      ids = [""] * local
      for slot, i in enumerate(chunk):
        record = source[i]
        h, w = record["image"].shape[:2]
        images[slot, :h, :w] = normalize(record["image"], mean, std)
        masks[slot, :h, :w] = record["mask"]
        sizes[slot] = (h, w)
        valid[slot] = True
        index[slot] = i
        ids[slot] = id_text(record["id"])
      yield {
        "image": images,
        "mask": (masks > 0).astype(np.float32),
        "sizes": sizes,
        "valid": valid,
        "index": index,
        "id": np.asarray(ids),
      }


def id_text(value) -> str:
  """A record's id as str (TFDS sources give bytes, in-memory ones str)."""
  return value.decode() if isinstance(value, bytes) else str(value)
