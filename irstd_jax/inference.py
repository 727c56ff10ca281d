"""Inference shared by training-time evaluation, `evaluate` and `predict`.

One forward function (`predict_scores`: the fused output with BatchNorm in inference
mode), one way to load a checkpoint for inference (`load_checkpoint`) and one loop over a
test split (`score_test_split`): `train.evaluate` runs it on the mesh during training,
`evaluate.run_evaluation` on one device with report and figures, so both compute the
same numbers by construction.
"""

from __future__ import annotations

from collections.abc import Callable
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from irstd_jax import checkpointing
from irstd_jax import default_config
from irstd_jax import input_pipeline
from irstd_jax import models

SCORE_KINDS = ("probs", "logits")


def predict_scores(
  apply_fn: Callable, variables: dict[str, Any], images: jax.Array, output: str = "probs"
) -> jax.Array:
  """The fused output of the model, BatchNorm in inference mode.

  Args:
    apply_fn: the model's `apply`.
    variables: {'params', 'batch_stats'}.
    images: (N, H, W, 1) normalised float32.
    output: 'probs' (sigmoid) or 'logits'.
  Returns:
    (N, H, W, 1) float32.
  """
  logits, _ = apply_fn(variables, images, train=False)
  logits = logits.astype(jnp.float32)
  return logits if output == "logits" else jax.nn.sigmoid(logits)


def make_predict_fn(
  model_config: ml_collections.ConfigDict, variables: dict[str, Any], output: str = "probs"
) -> Callable[[np.ndarray], np.ndarray]:
  """images (N, H, W, 1) normalised float32 numpy -> (N, H, W, 1) float32 numpy
  `predict_scores` on one device. Jitted once; compiled once per input shape."""
  if output not in SCORE_KINDS:
    raise ValueError(f"output={output!r}: expected one of {SCORE_KINDS}")
  model = models.create_model(model_config)
  variables = jax.device_put(
    {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  )
  forward = jax.jit(functools.partial(predict_scores, model.apply, output=output))

  def predict(images: np.ndarray) -> np.ndarray:
    return np.asarray(forward(variables, jnp.asarray(images, jnp.float32)))

  return predict


def load_checkpoint(checkpoint: str, latest: bool = False):
  """(variables, meta, config) of the best (or, with `latest`, the newest) checkpoint of a
  workdir, checkpoints dir or exported folder; config = the stored config over today's
  defaults, so a checkpoint written before a field existed (e.g. eval.pad_multiple) is
  read with that field's default."""
  variables, meta = checkpointing.restore_variables(checkpoint, prefer_best=not latest)
  if "config" not in meta:
    raise ValueError(f"{checkpoint}: the checkpoint meta holds no 'config'")
  return variables, meta, default_config.with_defaults(meta["config"])


def score_test_split(
  score_fn: Callable[[np.ndarray], np.ndarray],
  source,
  eval_config: ml_collections.ConfigDict,
  dataset_config: ml_collections.ConfigDict,
  accumulators: list,
  process_index: int = 0,
  process_count: int = 1,
  on_batch: Callable[[dict[str, np.ndarray], np.ndarray], None] | None = None,
  batch_multiple: int | None = None,
) -> None:
  """Scores every test image once and feeds every accumulator.

  Each image is padded (with the normalisation mean) to its own multiple of
  eval.pad_multiple and images of one padded shape are batched
  (`input_pipeline.eval_batches`); padding is excluded from the metrics by `sizes`.

  Args:
    score_fn: (B, H, W, 1) normalised float32 -> (B, H, W, 1) scores of this process's
      rows (probabilities or logits, whatever the accumulators threshold).
    source: the test records (indexable, each {'image', 'mask', 'id'} uint8 (H, W, 1)).
    accumulators: objects with `update(scores, masks, sizes=, valid=)`
      (metrics.IRSTDMetrics, metrics.CurveMetrics).
    process_index, process_count: this process's share of the batches.
    batch_multiple: a bucket smaller than eval.batch_size is one batch rounded up to a
      multiple of this (the mesh's device count; default the process count).
    on_batch: called with (batch, scores) after the accumulators (figures, progress).
  """
  for batch in input_pipeline.eval_batches(
    source,
    eval_config.batch_size,
    eval_config.pad_multiple,
    dataset_config.mean,
    dataset_config.std,
    process_index,
    process_count,
    batch_multiple,
  ):
    scores = score_fn(batch["image"])
    for accumulator in accumulators:
      accumulator.update(scores, batch["mask"], sizes=batch["sizes"], valid=batch["valid"])
    if on_batch is not None:
      on_batch(batch, scores)
