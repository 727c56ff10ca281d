"""Validates and prepares a real IRST data set from its manual directory, then measures it.

  python -m irstd_jax.prepare_data --dataset=nuaa_sirst --manual_dir=/path/to/sirst \
      [--data_dir=~/tensorflow_datasets] [--train_split=train_50_50.txt \
       --test_split=test_50_50.txt] [--binarize_masks] [--fix_mask_size]

1. validates the whole manual directory (every split id, image and mask decoded and
   checked; every problem listed; nothing written when there is one: exit status 2);
   a --data_dir that is a file or read-only is refused first, in one line (status 2);
2. writes the TFDS ArrayRecord data set (progress bars), unless already prepared; a write
   the file system refuses (disk full, quota, file-size limit) is one line naming
   --data_dir, the OS error and the free space (status 2), and leaves nothing behind;
3. measures the normalisation statistics of the prepared train split (mean / std of all
   uint8 pixels), prints them as config lines to paste into configs/<dataset>.py and writes
   them to normalization.json next to the prepared data.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time

from absl import app
from absl import flags
from absl import logging
import ml_collections
import numpy as np
import tensorflow_datasets as tfds  # imports TensorFlow only when a builder needs it
import tqdm

from irstd_jax import cli
from irstd_jax import datasets
from irstd_jax import storage
from irstd_jax.datasets import manual

_DATASET = flags.DEFINE_enum("dataset", None, list(datasets.REAL_DATASETS), "Data set.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "The downloaded data set's folder.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data dir (default ~/tensorflow_datasets).")
_TRAIN_SPLIT = flags.DEFINE_string(
  "train_split",
  "",
  "Train split file name (default: the layout's official one, e.g. splits/train.txt).",
)
_TEST_SPLIT = flags.DEFINE_string("test_split", "", "Test split file name.")
_BINARIZE = flags.DEFINE_bool(
  "binarize_masks", False, "Threshold non-binary masks at 128 instead of refusing them."
)
_FIX_SIZE = flags.DEFINE_bool(
  "fix_mask_size",
  False,
  "Nearest-resize masks whose size differs "
  "from their image's (same aspect ratio) instead of refusing.",
)
_VALIDATE_ONLY = flags.DEFINE_bool("validate_only", False, "Only validate; write nothing.")
flags.mark_flags_as_required(["dataset", "manual_dir"])


def dataset_config():
  return ml_collections.ConfigDict(
    {
      "name": _DATASET.value,
      "manual_dir": _MANUAL_DIR.value,
      "data_dir": _DATA_DIR.value,
      "train_split": _TRAIN_SPLIT.value,
      "test_split": _TEST_SPLIT.value,
      "binarize_masks": _BINARIZE.value,
      "fix_mask_size": _FIX_SIZE.value,
    }
  )


def pixel_stats(source) -> dict:
  """Mean and std over every pixel of every image of a source (float64 accumulation)."""
  total, total_sq, count = 0.0, 0.0, 0
  for i in range(len(source)):
    image = source[i]["image"].astype(np.float64)
    total += image.sum()
    total_sq += np.square(image).sum()
    count += image.size
  mean = total / count
  return {
    "mean": mean,
    "std": float(np.sqrt(max(total_sq / count - mean * mean, 0.0))),
    "num_images": len(source),
    "num_pixels": int(count),
  }


def _close_progress_bars() -> None:
  """Closes the bars a failed preparation left open, so that their last redraw comes before
  the error line, not after it (at exit)."""
  bars = list(getattr(tqdm.tqdm, "_instances", ()))
  for bar in bars:
    bar.close()
  if bars:  # a closed bar leaves the cursor at the start of a cleared line
    print(file=sys.stderr)


def main(argv):
  if len(argv) > 1:
    return cli.error(f"unexpected arguments {argv[1:]}: every option is a --flag")
  logging.set_verbosity(logging.WARNING)  # TFDS logs every file it writes at INFO
  cfg = dataset_config()
  name = cfg.name
  start = time.time()
  problem = None if _VALIDATE_ONLY.value else storage.directory_problem(datasets.data_dir(cfg))
  if problem:  # before the validation (seconds to minutes): nothing could be written
    return cli.error(f"--data_dir: {problem} (a writable directory, or one that can be created)")
  print(f"validating {name} in {cfg.manual_dir} ...", flush=True)
  try:
    plan = manual.scan(
      cfg.manual_dir,
      datasets.real_spec(name),
      cfg.train_split,
      cfg.test_split,
      manual.Policy(cfg.binarize_masks, cfg.fix_mask_size),
      progress=lambda it, n: tqdm.tqdm(it, total=n, desc="checking files", unit=" pairs"),
    )
  except datasets.BadInputError as e:
    print(f"error: {e.problems[0]}", file=sys.stderr)
    for problem in e.problems[1:]:
      print(f"error: {problem}", file=sys.stderr)
    print(f"{len(e.problems)} problem(s); nothing was written.", file=sys.stderr)
    return 2
  print(
    f"layout {plan.layout.name!r}: train {len(plan.splits['train'])} "
    f"({plan.split_files['train']}), test {len(plan.splits['test'])} "
    f"({plan.split_files['test']})"
  )
  manual.print_warnings(name, plan.warnings, limit=10)
  if _VALIDATE_ONLY.value:
    print(f"valid ({time.time() - start:.1f} s); --validate_only: nothing written")
    return 0

  tfds.display_progress_bar(True)
  builder = datasets.get_builder(cfg)
  was_prepared = builder.is_prepared()
  try:
    datasets.prepare(builder, cfg)
  except datasets.DataNotPreparedError as e:
    _close_progress_bars()
    return cli.error(e)
  builder = datasets.get_builder(cfg)  # re-read the written metadata
  prepare_s = time.time() - start
  print(
    ("already prepared" if was_prepared else f"prepared in {prepare_s:.1f} s")
    + f": {builder.data_dir}"
  )

  stats = pixel_stats(builder.as_data_source("train"))
  stats.update(
    {
      "dataset": name,
      "builder_config": builder.builder_config.name,
      "split_files": plan.split_files,
      "layout": plan.layout.name,
      "test_images": len(plan.splits["test"]),
      "prepare_seconds": None if was_prepared else round(prepare_s, 1),
      "measured_on": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPU(s)",
      "date": datetime.date.today().isoformat(),
      "command": " ".join(["python", "-m", "irstd_jax.prepare_data"] + sys.argv[1:]),
    }
  )
  path = os.path.join(os.fspath(builder.data_dir), "normalization.json")
  try:
    with open(path, "w") as f:
      json.dump(stats, f, indent=2)
  except OSError as e:  # the data set itself is written and kept
    print(
      f"error: {path}: cannot be written: {storage.os_error_text(e)}; "
      f"{storage.free_space_text(path)}; the prepared data set is complete",
      file=sys.stderr,
    )
    return 2
  print(
    f"\n# {name}: train split ({stats['num_images']} images, {stats['num_pixels']} "
    f"pixels) of {builder.builder_config.name!r}; from python -m irstd_jax.prepare_data"
  )
  print(f"config.dataset.mean = {stats['mean']:.2f}")
  print(f"config.dataset.std = {stats['std']:.2f}")
  print(f"\n(also written to {path})")
  return 0


def run() -> None:
  """`python -m irstd_jax.prepare_data` and the `irstd-prepare` command (pyproject.toml)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
