"""Does a checkpoint hold on images unlike its training set? The test split under shifts.

    python -m tools.analysis.generalization --checkpoint=pretrained/nuaa_sirst_l1_gp_rotated \
        --output=runs/generalization --config.dataset.manual_dir=../shared/datasets/nuaa_sirst

No second IRST collection ships with the project, so this makes frames unlike the
training set's out of the test split itself, each shift a pure function of the test
records (`SHIFTS`, deterministic; nothing here is ever trained on):

  original      the test split as `evaluate` reads it (the reference row)
  large_frames  2x2 mosaics of 4 consecutive test images, each in a cell of the split's
                largest height and width (the rest of the cell at the image's median grey):
                frames of 4+ times the area, targets unchanged, four scenes' clutter in one
                frame (the channel attention pools over all of it); one frame shape, so one
                compile
  upscaled      every frame resized x2 (image bilinear, mask nearest): a sensor with twice
                the resolution over the same field of view
  gamma_dark    intensities through gamma 1.6 (255 (x/255)^1.6): another sensor's response
  gamma_bright  the same with gamma 0.6
  noisy         additive Gaussian noise of 12 grey levels (seeded per image): a noisier sensor
  stripes       a fixed offset per column, Gaussian of 8 grey levels (seeded per image): the
                column non-uniformity of an uncalibrated focal-plane array, noise that is
                not independent from pixel to pixel
  background    every target removed (its pixels, dilated by 2, filled inwards from the
                surrounding background): cluttered frames without targets, where only
                false alarms can happen (the report counts the blobs that touch a
                filled-in target apart)

Each shift is scored as `evaluate` scores a split (own size padded to eval.pad_multiple,
prob > eval.threshold); the `unseen` row pools every shift but `original` and those the
checkpoint's own augmentation makes (`SEEN_IN_TRAINING`: `noisy` when it trained with
dataset.noise_std > 0, `upscaled` with dataset.zoom_max > 1; they are still scored, and
marked) (counts summed, so its mIoU is total intersection over total union and its Fa is
over all their pixels; its nIoU is left out, as target-free frames would count as IoU 0).
With --tile=N every frame is scored as N x N tiles (padded with the normalisation mean),
each seen by the model alone, instead of whole: the model then pools over a training
crop's context, not the frame's. Writes OUTPUT/generalization.json and generalization.md;
prints the table. The unseen row is held to --min_miou, --min_pd and --max_fa (the goal of
issue 28); exit status 0 when it meets them, 1 when not, 2 for a bad argument.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
import json
import os
import sys

import numpy as np
from scipy import ndimage

from irstd_jax import cli
from irstd_jax import config_check
from irstd_jax import datasets
from irstd_jax import default_config
from irstd_jax import inference
from irstd_jax import input_pipeline
from irstd_jax import metrics as metrics_lib
from tools.analysis.ablate import run_record

NOISE_SIGMA = 12.0  # grey levels
STRIPE_SIGMA = 8.0  # grey levels, one offset per column
GAMMAS = {"gamma_dark": 1.6, "gamma_bright": 0.6}
TARGET_MARGIN = 2  # pixels around a target also refilled by `remove_targets`


def _record(record_id, image: np.ndarray, mask: np.ndarray) -> dict:
  return {"id": record_id, "image": image, "mask": mask}


def large_frames(records: list[dict]) -> list[dict]:
  """2x2 mosaics of consecutive records in cells of the largest (H, W) of all records,
  (2 H, 2 W, 1) uint8 each; a short last group leaves its empty cells at the first image's
  median grey."""
  cell_h = max(r["image"].shape[0] for r in records)
  cell_w = max(r["image"].shape[1] for r in records)
  out = []
  for start in range(0, len(records), 4):
    group = records[start : start + 4]
    fill = np.median(group[0]["image"])
    image = np.full((2 * cell_h, 2 * cell_w, 1), fill, np.uint8)
    mask = np.zeros((2 * cell_h, 2 * cell_w, 1), np.uint8)
    for k, r in enumerate(group):
      y0, x0 = (k // 2) * cell_h, (k % 2) * cell_w
      h, w = r["image"].shape[:2]
      image[y0 : y0 + cell_h, x0 : x0 + cell_w] = np.median(r["image"])
      image[y0 : y0 + h, x0 : x0 + w] = r["image"]
      mask[y0 : y0 + h, x0 : x0 + w] = r["mask"]
    out.append(_record("+".join(input_pipeline.id_text(r["id"]) for r in group), image, mask))
  return out


def upscaled(records: list[dict], factor: int = 2) -> list[dict]:
  """Every record resized by `factor`: image bilinear, mask nearest (stays binary)."""
  return [_record(r["id"], *input_pipeline.zoom(r["image"], r["mask"], factor)) for r in records]


def gamma(records: list[dict], value: float) -> list[dict]:
  """Intensities through 255 (x / 255)^value; 0 and 255 stay, the order of grey levels too."""
  table = np.round(255.0 * (np.arange(256) / 255.0) ** value).astype(np.uint8)
  return [_record(r["id"], table[r["image"]], r["mask"]) for r in records]


def _add_seeded_noise(records: list[dict], sigma: float, stream: int, shape_of) -> list[dict]:
  """Every record plus Gaussian noise of std `sigma` grey levels (rounded, clipped) of shape
  `shape_of(image.shape)` (broadcast over the image), drawn from the stream (position,
  `stream`), so every call gives the same frames."""
  out = []
  for k, r in enumerate(records):
    noise = np.random.default_rng([k, stream]).normal(0.0, sigma, shape_of(r["image"].shape))
    image = np.clip(np.round(r["image"].astype(np.float32) + noise), 0, 255).astype(np.uint8)
    out.append(_record(r["id"], image, r["mask"]))
  return out


def noisy(records: list[dict], sigma: float = NOISE_SIGMA) -> list[dict]:
  """Additive Gaussian noise, independent per pixel (std `sigma` grey levels)."""
  return _add_seeded_noise(records, sigma, 12, lambda shape: shape)


def stripes(records: list[dict], sigma: float = STRIPE_SIGMA) -> list[dict]:
  """A Gaussian offset (std `sigma` grey levels) per column, the same in every row."""
  return _add_seeded_noise(records, sigma, 13, lambda shape: (1, shape[1], 1))


def remove_targets(image: np.ndarray, mask: np.ndarray, margin: int = TARGET_MARGIN):
  """(H, W, 1) uint8 image with every target pixel (dilated by `margin`) replaced by the
  mean of its already-filled 4-neighbours, ring by ring from the hole's edge inwards; the
  pixels outside the hole are unchanged. Returns (image, the hole (H, W) bool)."""
  hole = ndimage.binary_dilation(mask[..., 0] > 0, iterations=margin)
  values = image[..., 0].astype(np.float64)
  known = ~hole
  cross = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.float64)
  if not known.any():
    raise ValueError("the image is all target: nothing to fill the hole from")
  while not known.all():
    total = ndimage.convolve(np.where(known, values, 0.0), cross, mode="constant")
    count = ndimage.convolve(known.astype(np.float64), cross, mode="constant")
    ring = ~known & (count > 0)
    values[ring] = total[ring] / count[ring]
    known = known | ring
  return np.round(values).astype(np.uint8)[..., None], hole


def background(records: list[dict]) -> list[dict]:
  """Every record with its targets removed (`remove_targets`) and an empty mask; 'hole'
  keeps where the fill went, (H, W) bool."""
  out = []
  for r in records:
    image, hole = remove_targets(r["image"], r["mask"])
    out.append(dict(_record(r["id"], image, np.zeros_like(r["mask"])), hole=hole))
  return out


def tiled(
  predict: Callable[[np.ndarray], np.ndarray], tile: int, batch_size: int
) -> Callable[[np.ndarray], np.ndarray]:
  """`predict` ((N, T, T, 1) -> (N, T, T, 1) scores) applied to (tile, tile) squares of
  each frame alone: (B, H, W, 1) -> (B, H, W, 1). Frames are padded with 0 (the
  normalised mean) to multiples of `tile`; the tiles go `batch_size` at a time, the last
  chunk padded, so the model compiles once."""

  def predict_tiled(images: np.ndarray) -> np.ndarray:
    b, h, w, c = images.shape
    rows, cols = -(-h // tile), -(-w // tile)
    padded = np.zeros((b, rows * tile, cols * tile, c), np.float32)
    padded[:, :h, :w] = images
    tiles = padded.reshape(b, rows, tile, cols, tile, c).transpose(0, 1, 3, 2, 4, 5)
    tiles = tiles.reshape(-1, tile, tile, c)
    scores = []
    for start in range(0, len(tiles), batch_size):
      chunk = np.zeros((batch_size, tile, tile, c), np.float32)
      part = tiles[start : start + batch_size]
      chunk[: len(part)] = part
      scores.append(np.asarray(predict(chunk))[: len(part)])
    out = np.concatenate(scores).reshape(b, rows, cols, tile, tile, c).transpose(0, 1, 3, 2, 4, 5)
    return out.reshape(b, rows * tile, cols * tile, c)[:, :h, :w]

  return predict_tiled


class BlobsOnHoles:
  """Counts the predicted blobs (8-connected, as the metrics count them) that touch a
  record's 'hole' (the filled-in targets of `background`): false alarms the fill itself
  may cause rather than the clutter."""

  def __init__(self, frames: list[dict], threshold: float):
    self.frames, self.threshold, self.count = frames, threshold, 0

  def __call__(self, batch: dict[str, np.ndarray], scores: np.ndarray) -> None:
    for slot, index in enumerate(batch["index"]):
      if index < 0 or "hole" not in self.frames[index]:
        continue
      h, w = batch["sizes"][slot]
      labels = metrics_lib.connected_components(scores[slot, :h, :w, 0] > self.threshold).labels
      self.count += len(np.setdiff1d(np.unique(labels[self.frames[index]["hole"]]), [0]))


SHIFTS = {
  "original": list,
  "large_frames": large_frames,
  "upscaled": upscaled,
  "gamma_dark": lambda records: gamma(records, GAMMAS["gamma_dark"]),
  "gamma_bright": lambda records: gamma(records, GAMMAS["gamma_bright"]),
  "noisy": noisy,
  "stripes": stripes,
  "background": background,
}

# The shifts a training augmentation makes, by the config field that turns it on: a
# checkpoint trained with one is not tested out of distribution on that shift.
SEEN_IN_TRAINING = {
  "noisy": ("noise_std", lambda value: value > 0),
  "upscaled": ("zoom_max", lambda value: value > 1),
}


def seen_in_training(dataset_config) -> dict[str, str]:
  """{shift: 'dataset.FIELD=VALUE'} for the shifts the checkpoint's augmentation made."""
  seen = {}
  for name, (field, is_on) in SEEN_IN_TRAINING.items():
    value = dataset_config.get(field)
    if value is not None and is_on(value):
      seen[name] = f"dataset.{field}={value:g}"
  return seen


def load_records(source) -> list[dict]:
  return [
    _record(source[i]["id"], np.asarray(source[i]["image"]), np.asarray(source[i]["mask"]))
    for i in range(len(source))
  ]


def summarize(result: dict) -> dict:
  """The row of the table: metrics, plus false components per frame."""
  keys = ("miou", "niou", "pd", "fa", "num_images", "num_targets", "num_false_components")
  row = {k: float(result[k]) for k in keys}
  row["num_saturated"] = float(result.get("num_saturated", 0))
  row["false_components_per_frame"] = row["num_false_components"] / max(row["num_images"], 1)
  return row


def goal_verdict(row: dict, min_miou: float, min_pd: float, max_fa: float) -> str:
  missed = []
  if not row["miou"] >= min_miou:
    missed.append(f"mIoU < {min_miou}")
  if not row["pd"] >= min_pd:
    missed.append(f"Pd < {min_pd}")
  if not row["fa"] * 1e6 <= max_fa:
    missed.append(f"Fa > {max_fa}e-6")
  return "meets the goal" if not missed else "misses: " + ", ".join(missed)


def report(header: dict, rows: dict[str, dict], verdict: str) -> str:
  def cell(value, fmt):
    return "-" if value != value else format(value, fmt)  # NaN: no targets

  lines = [
    f"# Generalization of `{header['checkpoint']}`",
    "",
    f"Command: `{header['command']}`  ",
    f"Date: {header['date']}  ",
    f"Machine: {header['machine']}  ",
    f"Checkpoint: step {header['step']}, threshold {header['threshold']}, "
    + (f"{header['tile']}x{header['tile']} tiles" if header.get("tile") else "whole frames"),
    "",
    "| shift | frames | targets | mIoU | nIoU | Pd | Fa (x1e-6) | false blobs per frame |",
    "|---|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for name, row in rows.items():
    label = f"**{name}**" if name == "unseen" else name
    if name in header.get("seen_in_training", {}):
      label += f" (seen in training: {header['seen_in_training'][name]})"
    lines.append(
      f"| {label} | {row['num_images']:.0f} | {row['num_targets']:.0f} | "
      f"{cell(row['miou'] if row['num_targets'] else float('nan'), '.4f')} | "
      f"{cell(row['niou'] if row['num_targets'] else float('nan'), '.4f')} | "
      f"{cell(row['pd'], '.4f')} | {row['fa'] * 1e6:.2f} | "
      f"{row['false_components_per_frame']:.2f} |"
    )
  if "background" in rows:
    lines += [
      "",
      f"background: {rows['background']['blobs_on_removed_targets']:.0f} of its "
      f"{rows['background']['num_false_components']:.0f} false blobs touch a removed target's "
      "filled pixels (the fill, not the clutter, may have caused those)",
    ]
  seen = sorted(header.get("seen_in_training", {}))
  excluded = ", ".join(["original"] + seen)
  lines += ["", f"unseen (every shift but {excluded}): {verdict}"]
  return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--checkpoint", required=True, help="a workdir, checkpoints dir or export")
  p.add_argument("--output", required=True, help="where generalization.json/.md go")
  p.add_argument("--latest", action="store_true", help="the newest checkpoint, not the best")
  p.add_argument("--shifts", default=",".join(SHIFTS), help="comma-separated, of SHIFTS")
  p.add_argument(
    "--set",
    action="append",
    default=[],
    metavar="FIELD=VALUE",
    help="config override, spelled --config.FIELD=VALUE as in evaluate (repeatable)",
  )
  p.add_argument(
    "--tile",
    type=int,
    default=0,
    help="score every frame as TILE x TILE tiles, each alone (e.g. the training crop size); "
    "0 = whole frames, as evaluate does",
  )
  p.add_argument("--min_miou", type=float, default=0.5)
  p.add_argument("--min_pd", type=float, default=0.9)
  p.add_argument("--max_fa", type=float, default=50.0, help="x1e-6")
  return p.parse_args(cli.set_args(sys.argv[1:] if argv is None else argv))


def main(argv=None) -> int:
  args = parse_args(argv)
  shifts = [s.strip() for s in args.shifts.split(",") if s.strip()]
  unknown = [s for s in shifts if s not in SHIFTS]
  if unknown or not shifts:
    print(f"error: --shifts {args.shifts!r}: expected some of {list(SHIFTS)}", file=sys.stderr)
    return 2
  if args.tile < 0 or args.tile % default_config.MIN_CROP_SIZE:
    print(
      f"error: --tile {args.tile}: expected 0 (whole frames) or a multiple of {default_config.MIN_CROP_SIZE} "
      "(the model's four 2x poolings)",
      file=sys.stderr,
    )
    return 2
  try:
    variables, meta, config = inference.load_checkpoint(args.checkpoint, args.latest)
    cli.apply_overrides(config, args.set)
    config_check.validate_config(config, workdir=args.output, purpose="eval")
    records = load_records(datasets.load_test_source(config.dataset))
  except (FileNotFoundError, ValueError, config_check.ConfigError) as e:
    return cli.error(e)
  os.makedirs(args.output, exist_ok=True)
  predict = inference.make_predict_fn(config.model, variables)
  if args.tile:
    predict = tiled(predict, args.tile, config.eval.batch_size)
  threshold, distance = float(config.eval.threshold), float(config.eval.distance)
  pooled = metrics_lib.IRSTDMetrics(threshold=threshold, distance=distance)
  seen = seen_in_training(config.dataset)
  held_out = [name for name in shifts if name != "original" and name not in seen]
  rows = {}
  for name in shifts:
    frames = SHIFTS[name](records)
    accumulator = metrics_lib.IRSTDMetrics(threshold=threshold, distance=distance)
    accumulators = [accumulator] + ([pooled] if name in held_out else [])
    on_holes = BlobsOnHoles(frames, threshold)
    inference.score_test_split(
      predict, frames, config.eval, config.dataset, accumulators, on_batch=on_holes
    )
    rows[name] = summarize(accumulator.compute())
    if name == "background":
      rows[name]["blobs_on_removed_targets"] = float(on_holes.count)
    row = rows[name]
    print(
      f"{name}: mIoU {row['miou']:.4f} nIoU {row['niou']:.4f} Pd {row['pd']:.4f} "
      f"Fa {row['fa'] * 1e6:.2f}e-6, {row['num_false_components']:.0f} false blobs in "
      f"{row['num_images']:.0f} frames",
      flush=True,
    )
  if held_out:
    # nIoU, a mean over frames, is not pooled: target-free frames would count as IoU 0.
    rows["unseen"] = dict(summarize(pooled.compute()), niou=float("nan"))
  header = {
    "checkpoint": args.checkpoint,
    **run_record("tools.analysis.generalization", argv),
    "step": meta.get("step"),
    "threshold": threshold,
    "tile": args.tile,
    "seen_in_training": {name: seen[name] for name in shifts if name in seen},
  }
  goal = (args.min_miou, args.min_pd, args.max_fa)
  verdict = goal_verdict(rows["unseen"], *goal) if "unseen" in rows else "no held-out shift ran"
  with open(os.path.join(args.output, "generalization.json"), "w") as f:
    json.dump(metrics_lib.strict_json({**header, "rows": rows, "verdict": verdict}), f, indent=2)
  text = report(header, rows, verdict)
  with open(os.path.join(args.output, "generalization.md"), "w") as f:
    f.write(text)
  print(text)
  return 0 if verdict == "meets the goal" else 1


if __name__ == "__main__":
  sys.exit(main())
