"""Optimisers and learning-rate schedules: the registries `train.optimizer` and
`train.schedule` name, and the two builders the training loop calls.

Adding an optimiser or a schedule is one entry here: config validation reads its choices
from these dicts (config_check), so nothing else restates them.
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections
import optax

# name -> (schedule, train config) -> optax transformation.
OPTIMIZERS: dict[
  str, Callable[[optax.Schedule, ml_collections.ConfigDict], optax.GradientTransformation]
] = {
  "adam": lambda lr, cfg: optax.adam(lr),
  "adamw": lambda lr, cfg: optax.adamw(lr, weight_decay=cfg.weight_decay),
  "adagrad": lambda lr, cfg: optax.adagrad(lr),  # MSHNet's optimiser
  "sgd": lambda lr, cfg: optax.sgd(lr, momentum=cfg.momentum),
}

# name -> (peak learning rate, steps after the warm-up) -> schedule.
SCHEDULES: dict[str, Callable[[float, int], optax.Schedule]] = {
  "constant": lambda base, steps: optax.constant_schedule(base),
  "cosine": lambda base, steps: optax.cosine_decay_schedule(base, steps),
  "poly": lambda base, steps: optax.polynomial_schedule(  # MSHNet-style
    base, 0.0, power=0.9, transition_steps=steps
  ),
}


def learning_rate_schedule(
  train_config: ml_collections.ConfigDict, total_steps: int
) -> optax.Schedule:
  """Linear warm-up over `warmup_steps`, then `SCHEDULES[train_config.schedule]`."""
  base = train_config.learning_rate
  warmup = min(int(train_config.warmup_steps), max(total_steps - 1, 0))
  kind = train_config.schedule
  if kind not in SCHEDULES:
    raise ValueError(f"train.schedule={kind!r}: expected one of {', '.join(SCHEDULES)}")
  main = SCHEDULES[kind](base, max(total_steps - warmup, 1))
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, base, warmup), main], boundaries=[warmup])


def make_optimizer(
  train_config: ml_collections.ConfigDict, schedule: optax.Schedule
) -> optax.GradientTransformation:
  """`OPTIMIZERS[train_config.optimizer]`, after global-norm clipping when
  `grad_clip_norm` is set, accumulated over `grad_accum_steps` when > 1."""
  name = train_config.optimizer
  if name not in OPTIMIZERS:
    raise ValueError(f"train.optimizer={name!r}: expected one of {', '.join(OPTIMIZERS)}")
  chain = []
  if train_config.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(train_config.grad_clip_norm))
  chain.append(OPTIMIZERS[name](schedule, train_config))
  tx = optax.chain(*chain)
  accum = int(train_config.grad_accum_steps)
  return optax.MultiSteps(tx, accum) if accum > 1 else tx
