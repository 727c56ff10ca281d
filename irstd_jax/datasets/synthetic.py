"""Deterministic synthetic infrared small-target images with exact masks (numpy only).

Each image is a cluttered background (smooth clouds, straight intensity edges, sensor
noise, hot pixels) plus 0..`max_targets` Gaussian-profile targets of random size,
elongation and orientation. The mask of a target is defined analytically: the pixels whose
centre lies inside the ellipse of `MASK_SIGMAS` standard deviations of the target's
Gaussian, plus the pixel nearest the target centre (so a one-pixel target still has a
one-pixel mask). Hot pixels are deliberate distractors and are never in the mask.

Everything is a pure function of (seed, split, index), so the train and test splits are
fixed by the seed and any single image can be regenerated on its own.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
from scipy import ndimage

MASK_SIGMAS = 1.5  # mask = ellipse at 1.5 sigma, where the profile is exp(-1.125) ~ 0.32 of peak
_SPLIT_SALT = {"train": 0, "test": 1}


@dataclasses.dataclass(frozen=True)
class Target:
  """One target: centre (y, x) in pixels, sigmas along its own axes, angle in radians."""

  cy: float
  cx: float
  sigma_major: float
  sigma_minor: float
  angle: float
  amplitude: float


def image_rng(seed: int, split: str, index: int) -> np.random.Generator:
  """The generator of image `index` of `split`: independent of every other image."""
  salt = _SPLIT_SALT.get(split, zlib.crc32(split.encode()) + 2)
  return np.random.default_rng([seed, salt, index])


def target_mask(target: Target, height: int, width: int) -> np.ndarray:
  """(H, W) bool: pixel centres inside the MASK_SIGMAS ellipse, plus the nearest pixel."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
  dy, dx = yy - target.cy, xx - target.cx
  c, s = np.cos(target.angle), np.sin(target.angle)
  u = (c * dx + s * dy) / (MASK_SIGMAS * target.sigma_major)
  v = (-s * dx + c * dy) / (MASK_SIGMAS * target.sigma_minor)
  mask = u * u + v * v <= 1.0
  iy = min(max(int(np.floor(target.cy + 0.5)), 0), height - 1)
  ix = min(max(int(np.floor(target.cx + 0.5)), 0), width - 1)
  mask[iy, ix] = True
  return mask


def target_profile(target: Target, height: int, width: int) -> np.ndarray:
  """(H, W) float64 Gaussian intensity profile of the target, peak = amplitude."""
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
  dy, dx = yy - target.cy, xx - target.cx
  c, s = np.cos(target.angle), np.sin(target.angle)
  u = (c * dx + s * dy) / target.sigma_major
  v = (-s * dx + c * dy) / target.sigma_minor
  return target.amplitude * np.exp(-0.5 * (u * u + v * v))


def _sample_target(rng: np.random.Generator, height: int, width: int, noise_std: float) -> Target:
  # Mask area ~ pi * 1.5^2 * s_major * s_minor; log-uniform area in [1, 80] px.
  area = float(np.exp(rng.uniform(np.log(1.0), np.log(80.0))))
  elongation = float(rng.uniform(1.0, 2.5))
  s_minor = np.sqrt(area / (np.pi * MASK_SIGMAS**2 * elongation))
  s_major = max(s_minor * elongation, 0.35)
  s_minor = max(s_minor, 0.35)
  margin = 3.0 * s_major + 2.0
  return Target(
    cy=float(rng.uniform(margin, height - 1 - margin)),
    cx=float(rng.uniform(margin, width - 1 - margin)),
    sigma_major=float(s_major),
    sigma_minor=float(s_minor),
    angle=float(rng.uniform(0.0, np.pi)),
    # SNR between ~4 and ~14 over the sensor noise: faint but findable.
    amplitude=float(rng.uniform(4.0, 14.0) * noise_std + 12.0),
  )


def _background(rng: np.random.Generator, height: int, width: int, noise_std: float):
  """Clouds + edges + sensor noise, float64, roughly in [0, 200]."""
  level = rng.uniform(50.0, 120.0)
  clouds = np.zeros((height, width))
  for scale, weight in ((24.0, 30.0), (8.0, 12.0), (3.0, 4.0)):
    field = ndimage.gaussian_filter(rng.standard_normal((height, width)), scale, mode="wrap")
    field /= field.std() + 1e-12
    clouds += rng.uniform(0.3, 1.0) * weight * field
  edges = np.zeros((height, width))
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
  for _ in range(rng.integers(0, 3)):  # horizons, buildings, sea lines
    angle = rng.uniform(0.0, np.pi)
    offset = rng.uniform(0.2, 0.8) * (height * abs(np.sin(angle)) + width * abs(np.cos(angle)))
    dist = xx * np.cos(angle) + yy * np.sin(angle) - offset
    edges += rng.uniform(-40.0, 40.0) / (1.0 + np.exp(-dist / rng.uniform(0.5, 3.0)))
  noise = rng.normal(0.0, noise_std, (height, width))
  return level + clouds + edges + noise


def generate_image(
  seed: int,
  split: str,
  index: int,
  height: int = 128,
  width: int = 128,
  max_targets: int = 3,
  empty_fraction: float = 0.1,
):
  """One synthetic sample.

  Returns:
    image: (H, W) uint8; mask: (H, W) uint8 in {0, 1}; targets: list of `Target`.
  """
  rng = image_rng(seed, split, index)
  noise_std = float(rng.uniform(2.0, 6.0))
  image = _background(rng, height, width, noise_std)
  num_targets = 0 if rng.uniform() < empty_fraction else int(rng.integers(1, max_targets + 1))
  mask = np.zeros((height, width), bool)
  targets = []
  for _ in range(num_targets):
    target = _sample_target(rng, height, width, noise_std)
    image += target_profile(target, height, width)
    mask |= target_mask(target, height, width)
    targets.append(target)
  for _ in range(rng.integers(0, 6)):  # hot pixels: bright single-pixel distractors
    y, x = rng.integers(0, height), rng.integers(0, width)
    if not mask[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3].any():
      image[y, x] += rng.uniform(40.0, 90.0)
  image = np.clip(np.round(image), 0, 255).astype(np.uint8)
  return image, mask.astype(np.uint8), targets


def generate_split(seed: int, split: str, num_images: int, height: int = 128, width: int = 128):
  """Yields (id, image (H, W) uint8, mask (H, W) uint8 {0,1}) for a whole split."""
  for index in range(num_images):
    image, mask, _ = generate_image(seed, split, index, height, width)
    yield f"{split}_{index:05d}", image, mask
