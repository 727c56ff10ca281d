"""Optimisers and learning-rate schedules: the registries `train.optimizer` and
`train.schedule` name, the two builders the training loop calls, and the moving average
of the weights (`train.ema_decay`) that rides in the optimizer state.

Adding an optimiser or a schedule is one entry here: config validation reads its choices
from these dicts (config_check), so nothing else restates them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

# The key of the averaged weights in the optimizer state: the live state and the raw tree
# a checkpoint restores to (orbax keeps dict keys) are both searched for it.
EMA_KEY = "ema_params"

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
  `grad_clip_norm` is set, followed by `weight_average` when `ema_decay` is set, all
  accumulated over `grad_accum_steps` when > 1 (the average then moves once per update)."""
  name = train_config.optimizer
  if name not in OPTIMIZERS:
    raise ValueError(f"train.optimizer={name!r}: expected one of {', '.join(OPTIMIZERS)}")
  chain = []
  if train_config.grad_clip_norm:
    chain.append(optax.clip_by_global_norm(train_config.grad_clip_norm))
  chain.append(OPTIMIZERS[name](schedule, train_config))
  if train_config.ema_decay:
    chain.append(weight_average(train_config.ema_decay))
  tx = optax.chain(*chain)
  accum = int(train_config.grad_accum_steps)
  return optax.MultiSteps(tx, accum) if accum > 1 else tx


def weight_average(decay: float) -> optax.GradientTransformation:
  """An exponential moving average of the weights, kept in the optimizer state.

  The last link of a chain: it sees the final updates, so it averages the weights the
  update produces, `params + updates`, and passes the updates on unchanged (training is
  the same with it or without it). Its state is {EMA_KEY: params-shaped float32 tree,
  'ema_count': int32}; at the t-th update (t = 1, 2, ...) the average moves by
  ema <- d_t ema + (1 - d_t) params with d_t = min(decay, (1 + t) / (10 + t)), so the
  initial weights are forgotten within tens of steps whatever the decay. The ramp reaches
  `decay` only at t = (10 decay - 1) / (1 - decay) (8,990 updates for 0.999); a shorter
  run averages over its last ~t / 9 updates.
  """
  if not 0.0 < decay < 1.0:
    raise ValueError(f"train.ema_decay={decay}: expected a number in (0, 1)")

  def init(params):
    return {
      EMA_KEY: jax.tree.map(lambda p: jnp.asarray(p, jnp.float32), params),
      "ema_count": jnp.zeros([], jnp.int32),
    }

  def update(updates, state, params=None):
    if params is None:
      raise ValueError("weight_average needs the parameters: call update(updates, state, params)")
    count = state["ema_count"] + 1
    t = count.astype(jnp.float32)
    d = jnp.minimum(decay, (1.0 + t) / (10.0 + t))
    new_params = optax.apply_updates(params, updates)
    ema = jax.tree.map(lambda e, p: d * e + (1.0 - d) * p, state[EMA_KEY], new_params)
    return updates, {EMA_KEY: ema, "ema_count": count}

  return optax.GradientTransformation(init, update)


def averaged_params(opt_state: Any) -> Any | None:
  """The averaged weights in an optimizer state (`weight_average`'s), or None without one.

  Works on a live optax state (tuples, named tuples, dicts) and on the raw tree a
  checkpoint restores to (lists and dicts)."""
  if isinstance(opt_state, dict):
    if EMA_KEY in opt_state:
      return opt_state[EMA_KEY]
    children = opt_state.values()
  elif isinstance(opt_state, (list, tuple)):
    children = opt_state
  else:
    return None
  for child in children:
    found = averaged_params(child)
    if found is not None:
      return found
  return None
