"""Run a checkpoint on image files: masks, probability maps and overlays.

python -m irstd_jax.predict --checkpoint=runs/demo --input=FOLDER_OR_FILE --output=DIR
  [--threshold=0.5] [--latest] [--config.dataset.mean=... (overrides of the stored config)]

Inputs: *.png, *.jpg/*.jpeg, *.bmp, *.tif/*.tiff (a folder is scanned non-recursively).
  - 8-bit grayscale: used as is.
  - 16-bit (or 32-bit / float) grayscale: scaled to 8 bit by the image's own maximum,
    round(x * 255 / max) (an all-zero image stays zero); the model was trained on 8-bit
    intensities normalised with the checkpoint's dataset.mean/std.
  - RGB / RGBA / palette / other modes: converted to grayscale (PIL "L", ITU-R 601 luma)
    with a warning.
Any size: the model handles any H, W; jit compiles once per distinct image shape (cached).
Outputs per image `<name>`:
  <name>_mask.png     uint8, 0 / 255, prob > threshold, same size as the input
  <name>_prob.png     uint8, round(255 * prob)
  <name>_overlay.png  RGB: the grey input, predicted blobs tinted red with a 1-px red outline
An unreadable file is skipped with a warning and listed at the end; the exit status is 1
if any file failed, 0 otherwise. A bad flag, checkpoint or config (e.g. an --output that is
a file) is one `error:` line and exit status 2, before any image is read.
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np
from PIL import Image
from scipy import ndimage

from irstd_jax import cli
from irstd_jax import config_check
from irstd_jax import inference
from irstd_jax import input_pipeline
from irstd_jax import metrics as metrics_lib

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def list_inputs(path: str) -> list[str]:
  if os.path.isdir(path):
    return sorted(
      os.path.join(path, n)
      for n in os.listdir(path)
      if n.lower().endswith(EXTENSIONS) and os.path.isfile(os.path.join(path, n))
    )
  if os.path.isfile(path):
    return [path]
  raise FileNotFoundError(f"{path}: no such file or directory")


def check_output_outside_input(input_path: str, output: str) -> None:
  """ConfigError when --output is the --input folder or inside it: the written PNGs would
  be read back as inputs by the next run (`x_mask_mask.png`)."""
  if not os.path.isdir(input_path):
    return
  folder = os.path.realpath(input_path)
  out = os.path.realpath(output)
  if out == folder or out.startswith(folder + os.sep):
    raise config_check.ConfigError(
      "--output",
      f"{output} is {'the input folder' if out == folder else 'inside the input folder'} "
      f"{input_path}: a later run would read the predictions as inputs",
      "a folder outside --input",
    )


def read_grayscale_uint8(path: str) -> tuple[np.ndarray, list[str]]:
  """(H, W) uint8 and a list of notes (conversions made). Raises on unreadable files."""
  notes = []
  with Image.open(path) as im:
    im.load()  # decodes fully: truncated / corrupt files raise here
    mode = im.mode
    if mode in ("L", "1"):
      array = np.asarray(im.convert("L"))
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
      raw = np.asarray(im).astype(np.float64)
      if raw.ndim != 2:
        raise ValueError(f"unexpected array shape {raw.shape} for mode {mode}")
      top = float(raw.max()) if raw.size else 0.0
      if raw.min() < 0:
        raise ValueError(f"negative intensities in a {mode} image")
      array = (
        np.zeros(raw.shape, np.uint8)
        if top <= 0
        else np.round(raw * (255.0 / top)).astype(np.uint8)
      )
      notes.append(f"{mode} image scaled to 8 bit by its max {top:g}")
    else:
      array = np.asarray(im.convert("L"))
      notes.append(f"{mode} image converted to grayscale")
  if array.ndim != 2 or array.size == 0:
    raise ValueError(f"unusable image of shape {array.shape}")
  return np.ascontiguousarray(array), notes


def overlay_prediction(gray: np.ndarray, pred: np.ndarray) -> np.ndarray:
  """(H, W, 3) uint8: grey image, predicted pixels tinted red, blob outlines pure red."""
  rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
  tint = np.array([255.0, 0.0, 0.0], np.float32)
  rgb[pred] = 0.5 * rgb[pred] + 0.5 * tint
  edge = pred & ~ndimage.binary_erosion(pred, structure=np.ones((3, 3), bool), border_value=0)
  rgb[edge] = tint
  return np.round(rgb).astype(np.uint8)


def _output_stems(files: list[str]) -> dict[str, str]:
  """<name> per file; 'a.png' and 'a.tif' in one folder become 'a.png' / 'a.tif'."""
  stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
  return {f: (s if stems.count(s) == 1 else os.path.basename(f)) for f, s in zip(files, stems)}


def predict_files(
  files: list[str], output: str, predict, mean: float, std: float, threshold: float
) -> tuple[list[str], list[tuple[str, str]]]:
  """Writes the outputs of every readable file; returns (written stems, [(file, reason)])."""
  os.makedirs(output, exist_ok=True)
  done, failed = [], []
  shapes = set()
  for path, stem in _output_stems(files).items():
    try:
      gray, notes = read_grayscale_uint8(path)
    except Exception as e:  # pylint: disable=broad-except
      reason = f"{type(e).__name__}: {e}"
      print(f"warning: skipping {path}: {reason}", file=sys.stderr, flush=True)
      failed.append((path, reason))
      continue
    for note in notes:
      print(f"warning: {path}: {note}", file=sys.stderr, flush=True)
    h, w = gray.shape
    start = time.time()
    new_shape = (h, w) not in shapes
    shapes.add((h, w))
    probs = predict(input_pipeline.normalize(gray, mean, std)[None, :, :, None])[0, :, :, 0]
    pred = probs > threshold
    Image.fromarray(np.where(pred, 255, 0).astype(np.uint8)).save(
      os.path.join(output, f"{stem}_mask.png")
    )
    Image.fromarray(np.round(np.clip(probs, 0, 1) * 255).astype(np.uint8)).save(
      os.path.join(output, f"{stem}_prob.png")
    )
    Image.fromarray(overlay_prediction(gray, pred)).save(
      os.path.join(output, f"{stem}_overlay.png")
    )
    blobs = metrics_lib.connected_components(pred).num
    print(
      f"{path}: {w}x{h}, {blobs} blob(s), max prob {float(probs.max()):.3f}, "
      f"{time.time() - start:.2f}s{' (compiled for this shape)' if new_shape else ''}",
      flush=True,
    )
    done.append(stem)
  return done, failed


def main(argv) -> int:
  if len(argv) > 1:
    return cli.error(f"unexpected arguments {argv[1:]}: every option is a --flag")
  FLAGS = flags.FLAGS
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    files = list_inputs(FLAGS.input)
    variables, meta, config = inference.load_checkpoint(FLAGS.checkpoint, FLAGS.latest)
  except (FileNotFoundError, ValueError) as e:
    return cli.error(e)
  try:
    cli.apply_config_overrides(config)
    config_check.validate_config(config, workdir=FLAGS.output, purpose="predict")
    check_output_outside_input(FLAGS.input, FLAGS.output)
    if FLAGS.threshold is not None and not 0.0 <= FLAGS.threshold < 1.0:
      raise config_check.ConfigError(
        "--threshold", f"{FLAGS.threshold!r} is out of range", "a probability in [0, 1)"
      )
  except config_check.ConfigError as e:
    return cli.error(e)
  if not files:
    return cli.error(f"no {'/'.join(EXTENSIONS)} files in {FLAGS.input}")
  threshold = FLAGS.threshold if FLAGS.threshold is not None else float(config.eval.threshold)
  mean, std = float(config.dataset.mean), float(config.dataset.std)
  print(
    f"checkpoint {FLAGS.checkpoint} (step {meta.get('step')}, model "
    f"{config.model.name}); {len(files)} file(s); threshold {threshold:g}; "
    f"normalisation mean {mean:g} std {std:g}",
    flush=True,
  )
  cli.enable_compilation_cache(FLAGS.compilation_cache_dir)
  predict = inference.make_predict_fn(config.model, variables)
  done, failed = predict_files(files, FLAGS.output, predict, mean, std, threshold)
  print(f"{len(done)} image(s) written to {FLAGS.output}", flush=True)
  if failed:
    print(f"{len(failed)} file(s) failed:", file=sys.stderr)
    for path, reason in failed:
      print(f"  {path}: {reason}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  flags.DEFINE_string("checkpoint", None, "A workdir, or its checkpoints(_best)/ directory.")
  flags.DEFINE_string("input", None, "An image file or a folder of images.")
  flags.DEFINE_string("output", None, "Where <name>_mask/_prob/_overlay.png go.")
  flags.DEFINE_float(
    "threshold",
    None,
    "Probability threshold (prob > t); default: the checkpoint's eval.threshold.",
  )
  flags.DEFINE_bool("latest", False, "Use the newest checkpoint instead of the best one.")
  cli.define_override_flag()
  cli.define_compilation_cache_flag()
  flags.mark_flags_as_required(["checkpoint", "input", "output"])
  app.run(main, flags_parser=cli.parse_flags)
