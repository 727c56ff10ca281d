"""Evaluate a checkpoint on the whole test split: report + figures.

python -m irstd_jax.evaluate --checkpoint=runs/demo --output=runs/demo/eval [--num_figures=8]
  [--latest] [--protocol=full|mshnet] [--config=configs/x.py]
  [--config.dataset.data_dir=/data ...]

Protocols (the report states which one ran):
  full    (default) every test image at its own resolution, padded (with the mean) to a
          multiple of eval.pad_multiple (32: BasicIRSTD's protocol) and cropped back;
          pred = sigmoid(logit) > eval.threshold; Fa over the images' own pixels.
  mshnet  MSHNet's test protocol, to compare with its table: every test image resized to
          256x256 (PIL bilinear; masks PIL nearest), pred = logit > 0, Fa over 256x256
          pixels per image.

The test split alone is read (datasets.load_test_source): a labelled folder with only a
test split file evaluates (--config.dataset.manual_dir=DIR
[--config.dataset.test_split=NAME]); whenever dataset.manual_dir is a folder its test split
is read from it, not from a TFDS set prepared under the same name.

The config is the one stored in the checkpoint (meta['config']) unless --config names a
configs/*.py file; --config.FIELD=VALUE overrides fields of either, as in main (a field
name the project does not know is refused). The config is checked before anything is
computed: a bad value, or an --output that cannot be a directory, is one `error:` line and
exit status 2. Writes to --output:
  report.json, report.md    mIoU, nIoU, Pd, Fa, Fa_strict, Pd by target size, threshold sweep
                            (PD-FA curve, pixel ROC AUC)   [irstd_jax.metrics.write_report]
  pdfa_curve.png, roc.png, size_breakdown.png
  figures/<i>_<id>_fig6.png  Figure-6 overlays (TP green, FP red, FN yellow)
  figures/<i>_<id>_fig7.png  Figure-7 3-D heatmaps (one bar per predicted blob)
for the first --num_figures test images, images with targets first.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF is only the TFDS backend here

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
import numpy as np
from PIL import Image

from irstd_jax import cli
from irstd_jax import config_check
from irstd_jax import datasets
from irstd_jax import inference
from irstd_jax import input_pipeline
from irstd_jax import metrics as metrics_lib
from irstd_jax import visualize

PROTOCOLS = ("full", "mshnet")
MSHNET_SIZE = 256  # MSHNet's base_size: test images are resized to it


def resize_for_mshnet(source, size: int = MSHNET_SIZE) -> list[dict]:
  """The test records resized as MSHNet's test loader does: image bilinear, mask nearest."""
  out = []
  for i in range(len(source)):
    record = source[i]
    image = Image.fromarray(np.asarray(record["image"])[..., 0])
    mask = Image.fromarray(np.asarray(record["mask"])[..., 0])
    out.append(
      {
        "id": record["id"],
        "image": np.asarray(image.resize((size, size), Image.BILINEAR))[..., None],
        "mask": np.asarray(mask.resize((size, size), Image.NEAREST))[..., None],
      }
    )
  return out


def _safe_name(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:60] or "image"


# -------------------------------------------------------------------------- evaluation


def run_evaluation(
  config,
  variables,
  output: str,
  num_figures: int = 8,
  extra: dict | None = None,
  progress: bool = True,
  protocol: str = "full",
) -> dict[str, Any]:
  """Evaluates on config.dataset's test split; writes report + figures; returns compute().

  `protocol`: 'full' or 'mshnet' (module docstring).
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol={protocol!r}: expected one of {PROTOCOLS}")
  os.makedirs(output, exist_ok=True)
  test_source = datasets.load_test_source(config.dataset)
  num = len(test_source)
  if num == 0:
    raise ValueError("the test split is empty")
  if protocol == "mshnet":
    test_source = resize_for_mshnet(test_source)
  buckets = input_pipeline.eval_buckets(test_source, config.eval.pad_multiple)
  batch_size = int(config.eval.batch_size)
  threshold = float(config.eval.threshold)
  distance = float(config.eval.distance)
  # MSHNet thresholds logits at 0; the default thresholds probabilities.
  predict = inference.make_predict_fn(
    config.model, variables, output="logits" if protocol == "mshnet" else "probs"
  )
  score_threshold = 0.0 if protocol == "mshnet" else threshold
  if protocol == "mshnet":
    threshold = 0.5  # the figures' probability threshold equivalent to logit > 0

  accumulator = metrics_lib.IRSTDMetrics(threshold=score_threshold, distance=distance)
  curve_acc = metrics_lib.CurveMetrics(distance=distance)
  # Figures: the first num_figures images in split order, those with targets first.
  has_target = [bool(np.any(test_source[i]["mask"])) for i in range(num)]
  figure_indices = (
    [i for i in range(num) if has_target[i]] + [i for i in range(num) if not has_target[i]]
  )[:num_figures]
  figure_data: dict[int, tuple] = {}  # index -> (id, image, mask, probs)
  num_batches = sum(-(-len(indices) // batch_size) for _, indices in buckets)
  progress_state = {"batches": 0, "images": 0}
  start = time.time()

  def on_batch(batch: dict[str, np.ndarray], scores: np.ndarray) -> None:
    probs = 1.0 / (1.0 + np.exp(-scores.astype(np.float64))) if protocol == "mshnet" else scores
    curve_acc.update(probs, batch["mask"], sizes=batch["sizes"], valid=batch["valid"])
    for slot in np.flatnonzero(batch["valid"]):
      progress_state["images"] += 1
      h, w = batch["sizes"][slot]
      index = int(batch["index"][slot])
      if index in figure_indices:
        figure_data[index] = (
          str(batch["id"][slot]),
          batch["image"][slot, :h, :w, 0],
          batch["mask"][slot, :h, :w, 0],
          probs[slot, :h, :w, 0],
        )
    progress_state["batches"] += 1
    if progress:
      print(
        f"  batch {progress_state['batches']}/{num_batches}: {progress_state['images']}/{num} "
        f"images, {time.time() - start:.1f}s",
        flush=True,
      )

  inference.score_test_split(
    predict, test_source, config.eval, config.dataset, [accumulator], on_batch=on_batch
  )
  evaluated = progress_state["images"]
  if evaluated != num:
    raise RuntimeError(f"evaluated {evaluated} images, the test split has {num}")

  result = accumulator.compute()
  curve = curve_acc.compute()
  figures = {
    "PD-FA curve": "pdfa_curve.png",
    "pixel ROC": "roc.png",
    "Pd by target size": "size_breakdown.png",
  }
  visualize.pdfa_curve_plot(curve, os.path.join(output, "pdfa_curve.png"))
  visualize.roc_plot(curve, os.path.join(output, "roc.png"))
  visualize.size_breakdown_plot(
    accumulator.size_breakdown(), os.path.join(output, "size_breakdown.png")
  )
  if figure_indices:
    os.makedirs(os.path.join(output, "figures"), exist_ok=True)
  for index in figure_indices:
    image_id, image, mask, probs = figure_data[index]
    stem = f"figures/{index:04d}_{_safe_name(image_id)}"
    visualize.overlay_figure6(
      image,
      mask,
      probs > threshold,
      os.path.join(output, stem + "_fig6.png"),
      title=f"{image_id} (t = {threshold:g})",
    )
    visualize.heatmap_figure7(
      probs,
      mask,
      os.path.join(output, stem + "_fig7.png"),
      threshold=threshold,
      distance=distance,
      image=image,
      title=f"{image_id}: prediction heatmap (t = {threshold:g})",
    )
    figures[f"Figure 6: {image_id}"] = stem + "_fig6.png"
    figures[f"Figure 7: {image_id}"] = stem + "_fig7.png"
  info = {
    "data set": config.dataset.name,
    "model": config.model.name,
    "test images": evaluated,
    "protocol": _PROTOCOL_TEXT[protocol],
    "eval sizes (padded)": ", ".join(f"{h}x{w} ({len(i)})" for (h, w), i in buckets),
  }
  info.update(extra or {})
  metrics_lib.write_report(
    output, accumulator, curve, title="IRSTD evaluation", extra=info, figures=figures
  )
  return {
    "metrics": result,
    "roc_auc": curve["roc_auc"],
    "num_images": evaluated,
    "protocol": protocol,
  }


_PROTOCOL_TEXT = {
  "full": "full (native resolution, sigmoid > eval.threshold)",
  "mshnet": f"mshnet (resized to {MSHNET_SIZE}x{MSHNET_SIZE}, logit > 0)",
}


# --------------------------------------------------------------------------------- CLI


def _define_flags():
  config = config_flags.DEFINE_config_file(
    "config",
    None,
    "Optional configs/*.py file; default: the config saved in the checkpoint. "
    "--config.FIELD=VALUE overrides either.",
    lock_config=False,
  )
  flags.DEFINE_string(
    "checkpoint",
    None,
    "A workdir (as main.py writes), or its checkpoints/ or checkpoints_best/ directory.",
  )
  flags.DEFINE_string("output", None, "Where report.json/.md and the PNGs go.")
  flags.DEFINE_integer("num_figures", 8, "Figure-6/7 PNGs for this many test images.")
  flags.DEFINE_bool("latest", False, "Use the newest checkpoint instead of the best one.")
  flags.DEFINE_enum(
    "protocol",
    "full",
    list(PROTOCOLS),
    "full: native resolution; mshnet: MSHNet's test protocol (256x256 resize, logit > 0).",
  )
  cli.define_override_flag()
  cli.define_compilation_cache_flag()
  flags.mark_flags_as_required(["checkpoint", "output"])
  return config


def main(argv, config_flag=None) -> int:
  if len(argv) > 1:
    return cli.error(f"unexpected arguments {argv[1:]}: every option is a --flag")
  FLAGS = flags.FLAGS
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    variables, meta, config = inference.load_checkpoint(FLAGS.checkpoint, FLAGS.latest)
  except (FileNotFoundError, ValueError) as e:
    return cli.error(e)
  if config_flag is not None and config_flag.value is not None:
    config = config_flag.value
  try:
    if FLAGS.num_figures < 0:
      raise config_check.ConfigError(
        "--num_figures", f"{FLAGS.num_figures} is negative", "an integer >= 0"
      )
    cli.apply_config_overrides(config)
    config_check.validate_config(config, workdir=FLAGS.output, purpose="eval")
  except config_check.ConfigError as e:
    return cli.error(e)
  cli.enable_compilation_cache(FLAGS.compilation_cache_dir)
  step = meta.get("step")
  which = "latest" if FLAGS.latest else "best"
  print(
    f"checkpoint {FLAGS.checkpoint} ({which}, step {step}, epoch {meta.get('epoch')})", flush=True
  )
  try:
    out = run_evaluation(
      config,
      variables,
      FLAGS.output,
      FLAGS.num_figures,
      extra={"checkpoint": FLAGS.checkpoint, "checkpoint step": step, "which": which},
      protocol=FLAGS.protocol,
    )
  except datasets.DataNotPreparedError as e:
    return cli.error(e)
  r = out["metrics"]
  print(
    f"test ({out['num_images']} images, protocol {FLAGS.protocol}): mIoU {r['miou']:.4f}  "
    f"nIoU {r['niou']:.4f}  Pd {r['pd']:.4f}  Fa {r['fa'] * 1e6:.2f}e-6  "
    f"Fa_strict {r['fa_strict'] * 1e6:.2f}e-6  ROC AUC {out['roc_auc']:.4f}  "
    f"(Pd small {r['pd_small']:.4f}, medium {r['pd_medium']:.4f}, "
    f"large {r['pd_large']:.4f})",
    flush=True,
  )
  print(f"report: {os.path.join(FLAGS.output, 'report.md')}", flush=True)
  return 0


if __name__ == "__main__":
  _config_flag = _define_flags()
  app.run(lambda argv: main(argv, _config_flag), flags_parser=cli.parse_flags)
