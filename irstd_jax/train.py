"""Training and evaluation: pure step functions and the loop that runs them on a mesh.

`train_step` and `eval_step` are pure functions of their arguments; `train_and_evaluate`
jits them with explicit shardings on a `jax.sharding.Mesh` whose 'data' axis spans every
device of every process (parameters replicated, batches split along the batch axis).
"""

from __future__ import annotations

from collections.abc import Callable
import functools
import json
import math
import os
import signal
import sys
import time
from typing import Any

from flax.training import train_state
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from irstd_jax import checkpointing
from irstd_jax import config_check
from irstd_jax import datasets
from irstd_jax import inference
from irstd_jax import input_pipeline
from irstd_jax import losses
from irstd_jax import metric_writers
from irstd_jax import metrics as metrics_lib
from irstd_jax import models
from irstd_jax import optim


class TrainState(train_state.TrainState):
  batch_stats: Any = None


# -------------------------------------------------------------------------------- steps


def create_train_state(
  rng: jax.Array,
  model,
  tx: optax.GradientTransformation,
  image_shape: tuple[int, int],
  init_variables: dict[str, Any] | None = None,
) -> TrainState:
  """Step 0 with a fresh optimizer state; the variables of `model.init`, or
  `init_variables` ({'params', 'batch_stats'}, e.g. from train.init_from) when given."""
  if init_variables is None:
    dummy = jnp.zeros((1, *image_shape, 1), jnp.float32)
    variables = model.init(rng, dummy, train=False)
  else:
    variables = init_variables
  return TrainState.create(
    apply_fn=model.apply,
    params=variables["params"],
    tx=tx,
    batch_stats=variables.get("batch_stats", {}),
  )


def load_init_variables(config: ml_collections.ConfigDict, model) -> dict[str, Any]:
  """{'params', 'batch_stats'} of `config.train.init_from`, checked against `model`'s shapes.

  Raises ConfigError (one line) when the path holds no readable checkpoint or when its
  variables do not fit the model the config builds.
  """
  source = os.path.expanduser(config.train.init_from)
  allowed = "a workdir, checkpoints dir or exported folder of the same model.* fields"
  try:
    variables, meta = checkpointing.restore_variables(source)
  except (FileNotFoundError, ValueError) as e:
    raise config_check.ConfigError("train.init_from", str(e), allowed) from None
  crop = config.dataset.crop_size
  expected = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, crop, crop, 1), jnp.float32), train=False)
  )
  expected = {"params": expected["params"], "batch_stats": expected.get("batch_stats", {})}
  variables = {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}
  differences = checkpointing.tree_differences(expected, variables)
  if differences:
    more = f" (and {len(differences) - 1} more)" if len(differences) > 1 else ""
    raise config_check.ConfigError(
      "train.init_from",
      f"{source} (step {meta.get('step')}, model "
      f"{meta.get('config', {}).get('model', {}).get('name')}) does not fit model "
      f"{config.model.name}: {differences[0]}{more}",
      allowed,
    )
  if jax.process_index() == 0:
    print(
      f"initialising the parameters from {source} (step {meta.get('step')}); fresh "
      f"optimizer state, step 0",
      flush=True,
    )
  return variables


def train_step(
  state: TrainState,
  batch: dict[str, jax.Array],
  rng: jax.Array,
  *,
  loss_config: ml_collections.ConfigDict,
  steps_per_epoch: int,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser step on a global batch.

  Args:
    state: replicated TrainState. batch: image (B, H, W, 1) float32, mask (B, H, W, 1)
      float32 {0,1}, sharded over 'data'. rng: PRNG key (unused by deterministic models;
      part of the signature so stochastic layers need no plumbing).
  Returns:
    (new state, metrics dict of float32 scalars, global means over the batch).
  """
  del rng
  epoch = state.step // steps_per_epoch

  def loss_fn(params):
    (logits, side_logits), new_model_state = state.apply_fn(
      {"params": params, "batch_stats": state.batch_stats},
      batch["image"],
      train=True,
      mutable=["batch_stats"],
    )
    loss, aux = losses.total_loss(logits, side_logits, batch["mask"], loss_config, epoch)
    return loss, (aux, new_model_state)

  (loss, (aux, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(grads=grads, batch_stats=new_model_state["batch_stats"])
  out = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
  out.update({k: jnp.asarray(v, jnp.float32) for k, v in aux.items()})
  return new_state, out


def eval_step(state: TrainState, batch: dict[str, jax.Array]) -> jax.Array:
  """Probabilities (B, H, W, 1) float32 of the fused output, BatchNorm in inference mode,
  with the averaged weights when train.ema_decay keeps them (as every loading tool)."""
  variables = checkpointing.model_variables(_state_dict(state))
  return inference.predict_scores(state.apply_fn, variables, batch["image"])


# ------------------------------------------------------------------------------ sharding


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh over `devices` (default: all devices of all processes), axis 'data'."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh(
    (len(devices),), ("data",), devices=devices, axis_types=(jax.sharding.AxisType.Auto,)
  )


def shard_batch(
  batch: dict[str, np.ndarray],
  sharding: jax.sharding.Sharding,
  keys: tuple[str, ...] = ("image", "mask"),
) -> dict[str, jax.Array]:
  """Process-local numpy batch -> global jax.Arrays split over the 'data' axis."""
  return {k: jax.make_array_from_process_local_data(sharding, batch[k]) for k in keys}


def local_rows(array: jax.Array) -> np.ndarray:
  """The rows of a batch-sharded global array that live on this process, in order."""
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  seen, rows = set(), []
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:  # replicas along other mesh axes hold the same rows
      seen.add(start)
      rows.append(np.asarray(shard.data))
  return np.concatenate(rows, axis=0)


# ---------------------------------------------------------------------------- evaluation


def evaluate(
  jit_eval_step: Callable, state: TrainState, source, eval_config, dataset_config, data_sharding
) -> dict[str, float]:
  """mIoU / nIoU / Pd / Fa / Fa_strict over the whole test split (each image once, at its
  own size padded to a multiple of eval.pad_multiple), summed over every process."""
  accumulator = metrics_lib.IRSTDMetrics(
    threshold=eval_config.threshold, distance=eval_config.distance
  )

  def score(images: np.ndarray) -> np.ndarray:
    batch = shard_batch({"image": images}, data_sharding, ("image",))
    return local_rows(jit_eval_step(state, batch))

  inference.score_test_split(
    score,
    source,
    eval_config,
    dataset_config,
    [accumulator],
    jax.process_index(),
    jax.process_count(),
    batch_multiple=jax.device_count(),
  )
  return merge_across_processes(accumulator).compute()


def merge_across_processes(accumulator: metrics_lib.IRSTDMetrics) -> metrics_lib.IRSTDMetrics:
  """The metric counts summed over every process (the accumulator itself with one)."""
  if jax.process_count() == 1:
    return accumulator
  gathered = multihost_utils.process_allgather(accumulator.counts())
  summed = {k: np.sum(v, axis=0) for k, v in gathered.items()}
  return metrics_lib.IRSTDMetrics.from_counts(summed, **accumulator.config())


# ---------------------------------------------------------------------------------- loop


def warn_if_degenerate(result: dict[str, Any], when: str) -> None:
  """One stderr line when the detector fires on test images' background (saturated
  images) or predicts no positive pixel on a test split that has targets."""
  saturated = int(result.get("num_saturated", 0))
  if saturated:
    problem = (
      f"{saturated} of {result['num_images']} test images are predicted positive on more "
      f"than a tenth of their pixels: the detector fires on their background"
    )
  elif result.get("pred_pixels", 1) == 0 and result.get("num_targets", 0):
    problem = "no test pixel is predicted positive: the detector finds nothing"
  else:
    return
  if jax.process_index() == 0:
    print(
      f"warning: at {when}, {problem} (docs/training.md, 'A detector that fires everywhere')",
      file=sys.stderr,
      flush=True,
    )


def _format_eta(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _profile_window(spec: str, start_step: int, total_steps: int) -> tuple[int, int] | None:
  """train.profile = "" (off), "N" (N steps after the first 2) or "A:B" (steps A..B-1)."""
  if not spec:
    return None
  spec = str(spec)
  if ":" in spec:
    first, end = (int(v) for v in spec.split(":"))
  else:
    first = start_step + 2  # skip compilation
    end = first + int(spec)
  first, end = max(first, start_step), min(end, total_steps)
  return (first, end) if first < end else None


def _state_dict(state: TrainState) -> dict[str, Any]:
  return {field: getattr(state, field) for field in checkpointing.STATE_FIELDS}


class _Preemption:
  """Turns SIGTERM and SIGINT (Ctrl-C) into a flag the loop checks, so a checkpoint is
  written before exit (status 128 + signal: 143 for SIGTERM, 130 for SIGINT).

  A second Ctrl-C while the checkpoint is written interrupts at once (KeyboardInterrupt).
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.signum: int | None = None
    self._previous: dict[int, Any] = {}

  @property
  def requested(self) -> bool:
    return self.signum is not None

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum is not None else ""

  @property
  def exit_status(self) -> int:
    return 128 + int(self.signum)

  def __enter__(self):
    for sig in self.SIGNALS:
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: leave signals alone
        pass
    return self

  def _handle(self, signum, frame):
    del frame
    if self.signum is None:
      self.signum = signum
    if signum == signal.SIGINT and signal.SIGINT in self._previous:
      signal.signal(signal.SIGINT, self._previous[signal.SIGINT])

  def __exit__(self, *exc):
    for sig, previous in self._previous.items():
      signal.signal(sig, previous)
    self._previous = {}


class TrainingDiverged(RuntimeError):
  """A non-finite loss, gradient norm or training state stopped training (one line)."""


def _all_finite(tree) -> bool:
  """True when every floating-point leaf of `tree` is finite, checked on the host.

  Each leaf is replicated, so this process's first shard holds all of it (also when other
  processes hold the other devices). On the host, not jitted: a jitted reduction over the
  ~840 leaves of a state compiled for 3.4 s on the 2-core CPU, per run, for a check made
  once per evaluation or save.
  """
  for leaf in jax.tree.leaves(tree):
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.result_type(leaf)  # Python scalars
    if not jnp.issubdtype(dtype, jnp.floating):
      continue  # step counters and the like
    value = np.asarray(leaf.addressable_data(0) if isinstance(leaf, jax.Array) else leaf)
    if not np.isfinite(value).all():
      return False
  return True


class _DivergenceGuard:
  """Stops training at the first non-finite loss or gradient norm, before anything is saved.

  The per-step metrics are read on the host only where the loop reads them anyway (each
  log window, and before a preemption save), so the check adds no synchronisation; the
  state itself is checked (on the host) before every evaluation and save.
  """

  def __init__(self, train_config: ml_collections.ConfigDict):
    self.learning_rate = train_config.learning_rate
    self.grad_clip_norm = train_config.grad_clip_norm
    self.last_finite: tuple[int, float] | None = None  # (step, loss)
    self._last = (math.nan, math.nan)  # (loss, grad_norm) of the newest step read
    self._state_checked_at: int | None = None

  def _advice(self) -> str:
    lr = f"lower train.learning_rate (now {self.learning_rate:g})"
    if self.grad_clip_norm:
      return f"{lr} or train.grad_clip_norm (now {self.grad_clip_norm:g})"
    return f"{lr} or set train.grad_clip_norm"

  def _last_finite_text(self) -> str:
    if self.last_finite is None:
      return "no finite loss before it"
    step, loss = self.last_finite
    return f"last finite loss {loss:.6g} at step {step}"

  def check_window(self, host_metrics: list[dict[str, Any]], first_step: int) -> None:
    """`host_metrics`: the per-step metric dicts (numpy) of steps first_step, first_step+1..."""
    for offset, metrics in enumerate(host_metrics):
      loss, grad_norm = float(metrics["loss"]), float(metrics["grad_norm"])
      if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        raise TrainingDiverged(
          f"training diverged at step {first_step + offset} (loss {loss:.6g}, grad_norm "
          f"{grad_norm:.6g}); {self._last_finite_text()}; {self._advice()}"
        )
      self.last_finite = (first_step + offset, loss)
      self._last = (loss, grad_norm)

  def check_state(self, state: TrainState, step: int) -> None:
    """Raises TrainingDiverged when the state about to be saved or evaluated is not finite."""
    if self._state_checked_at == step:
      return
    if not _all_finite(_state_dict(state)):
      loss, grad_norm = self._last
      raise TrainingDiverged(
        f"training diverged at step {step} (non-finite parameters or optimizer state "
        f"after loss {loss:.6g}, grad_norm {grad_norm:.6g}); {self._advice()}"
      )
    self._state_checked_at = step


class ProgressLog:
  """Every `train.log_every_steps` steps, at each epoch's end and at the last step: the
  window's mean metrics to the writer, one progress line, and the divergence check (the
  one place the loop reads the per-step metrics on the host)."""

  def __init__(self, config, writer, schedule, guard, steps_per_epoch, total_steps, start_step):
    self.config, self.writer, self.schedule, self.guard = config, writer, schedule, guard
    self.steps_per_epoch, self.total_steps, self.start_step = (
      steps_per_epoch,
      total_steps,
      start_step,
    )
    self.every = max(int(config.train.log_every_steps), 1)
    self.window: list[dict[str, jax.Array]] = []
    self.window_start = self.loop_start = time.time()

  def __call__(self, step: int, step_metrics: dict[str, jax.Array]) -> None:
    self.window.append(step_metrics)
    if step % self.every == 0 or step % self.steps_per_epoch == 0 or step == self.total_steps:
      self.flush(step)

  def flush(self, step: int) -> None:
    """Writes and checks the steps since the last window (also before a preemption save)."""
    if not self.window:
      return
    host_window, self.window = jax.device_get(self.window), []
    elapsed, self.window_start = time.time() - self.window_start, time.time()
    summary = {k: float(np.mean([m[k] for m in host_window])) for k in host_window[0]}
    summary["images_per_sec"] = len(host_window) * self.config.train.batch_size / max(elapsed, 1e-9)
    summary["step_time_ms"] = 1000.0 * elapsed / len(host_window)
    summary["learning_rate"] = float(self.schedule(step - 1))
    self.writer.write_scalars(step, summary)
    if jax.process_index() == 0:
      rate = (step - self.start_step) / max(time.time() - self.loop_start, 1e-9)
      print(
        f"epoch {math.ceil(step / self.steps_per_epoch)}/{self.config.train.num_epochs} "
        f"step {step}/{self.total_steps} loss {summary['loss']:.4f} "
        f"{summary['images_per_sec']:.1f} img/s ETA "
        f"{_format_eta((self.total_steps - step) / max(rate, 1e-9))}",
        flush=True,
      )
    self.guard.check_window(host_window, step - len(host_window) + 1)


class ProfileWindow:
  """A profiler trace of the steps `train.profile` names (lead process only)."""

  def __init__(self, spec: str, start_step: int, total_steps: int, workdir: str):
    window = _profile_window(spec, start_step, total_steps)
    self.first, self.end = window if window and jax.process_index() == 0 else (None, None)
    self.path = os.path.join(workdir, "profile")

  def before_step(self, step: int) -> None:
    if step == self.first:
      jax.profiler.start_trace(self.path)

  def after_step(self, step: int, state: TrainState) -> None:
    if step == self.end:
      jax.block_until_ready(state)
      jax.profiler.stop_trace()
      print(f"profiler trace of steps {self.first}..{step - 1} written to {self.path}", flush=True)


def report_evaluation(result: dict[str, Any], when: str) -> dict[str, float] | None:
  """The evaluation line (lead process) and warn_if_degenerate's; the metrics that rank
  the checkpoint for best, None when its images are saturated."""
  if jax.process_index() == 0:
    print(
      f"  test @ {when}: mIoU {result['miou']:.4f} nIoU {result['niou']:.4f} Pd "
      f"{result['pd']:.4f} Fa {result['fa'] * 1e6:.2f}e-6 Fa_strict "
      f"{result['fa_strict'] * 1e6:.2f}e-6",
      flush=True,
    )
  warn_if_degenerate(result, when)
  return ranking_metrics(result)


def ranking_metrics(result: dict[str, Any]) -> dict[str, float] | None:
  """What ranks a checkpoint for best: its mIoU; None (never best) when it saturates."""
  return None if result.get("num_saturated", 0) else {"miou": result["miou"]}


def initial_state(config, model, tx, rng, resuming: bool, replicated) -> TrainState:
  """Step 0: random, or `train.init_from`'s variables when not resuming (a resume restores
  over it, `Checkpointer.restore_into`)."""
  init_variables = None
  if resuming:
    if config.train.init_from and jax.process_index() == 0:
      print("train.init_from ignored: resuming from the checkpoints in the workdir", flush=True)
  elif config.train.init_from:
    init_variables = load_init_variables(config, model)
  crop = config.dataset.crop_size
  # Run once, so compiled without LLVM's optimisation passes: each parameter's random
  # initialiser is its own kernel, and the optimised compile of ~840 of them took 16.3 s
  # against 5.9 s (demo config, 2-core Xeon); 4% of the initial values move by <= 2.4e-7.
  make_state = jax.jit(
    functools.partial(create_train_state, model=model, tx=tx, image_shape=(crop, crop)),
    out_shardings=replicated,
    compiler_options={"xla_backend_optimization_level": 0},
  )
  return make_state(rng, init_variables=init_variables)


def data_seed(config) -> int:
  """The seed of the training data order and augmentation: config.data_seed, or config.seed
  when it is -1 (so one seed sets both, and the initialisation and the data stream can be
  varied one at a time)."""
  return config.seed if config.data_seed == -1 else config.data_seed


def make_train_batches(config, train_source) -> input_pipeline.TrainBatches:
  if config.train.batch_size > len(train_source):
    raise config_check.ConfigError(
      "train.batch_size",
      f"{config.train.batch_size} is larger than the {len(train_source)} training images",
      f"at most {len(train_source)}",
    )
  d = config.dataset
  return input_pipeline.TrainBatches(
    train_source,
    config.train.batch_size,
    input_pipeline.AugmentConfig.from_config(d),
    d.mean,
    d.std,
    data_seed(config),
    jax.process_index(),
    jax.process_count(),
  )


def check_batch_sizes(config) -> None:
  for section, name in (("train", "batch_size"), ("eval", "batch_size")):
    if config[section][name] % jax.device_count():
      raise config_check.ConfigError(
        f"{section}.{name}",
        f"{config[section][name]} is not divisible by the {jax.device_count()} devices of the mesh",
        f"a multiple of {jax.device_count()}",
      )


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains, evaluates every `eval.every_epochs`, checkpoints, and resumes from workdir.

  Returns the final summary dict (also written to workdir/final_metrics.json). Raises
  config_check.ConfigError before any compilation when the config cannot work with the
  devices, the data or the checkpoints already in workdir (a changed model or optimizer;
  a train.init_from that does not fit), TrainingDiverged when the loss, the gradient
  norm or the state stops being finite (nothing non-finite is saved), and
  checkpointing.CheckpointSaveError when a checkpoint cannot be written (disk full).
  """
  is_lead = jax.process_index() == 0
  check_batch_sizes(config)
  model = models.create_model(config.model)
  preset = models.preset_summary(config.model)
  if is_lead and preset:
    print(preset, flush=True)
  resuming = checkpointing.check_resume(config, workdir)  # before the data: refusing is cheap
  train_source, test_source = datasets.load_sources(config.dataset)
  train_batches = make_train_batches(config, train_source)
  steps_per_epoch = train_batches.steps_per_epoch
  total_steps = steps_per_epoch * config.train.num_epochs
  mesh = make_mesh()
  replicated = jax.NamedSharding(mesh, jax.P())
  data_sharding = jax.NamedSharding(mesh, jax.P("data"))
  schedule = optim.learning_rate_schedule(config.train, total_steps)
  tx = optim.make_optimizer(config.train, schedule)
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))
  state = initial_state(config, model, tx, init_rng, resuming, replicated)
  meta_base = {"config": json.loads(config.to_json_best_effort())}
  os.makedirs(workdir, exist_ok=True)
  with (
    metric_writers.create_metric_writer(workdir, is_lead) as writer,
    checkpointing.Checkpointer(workdir, config.train.max_to_keep) as checkpointer,
    _Preemption() as preemption,
  ):
    state = checkpointer.restore_into(state, workdir, replicated)
    start_step = step = int(state.step)
    jit_train_step = jax.jit(
      functools.partial(train_step, loss_config=config.loss, steps_per_epoch=steps_per_epoch),
      in_shardings=(replicated, data_sharding, replicated),
      out_shardings=(replicated, replicated),
      donate_argnums=(0,),
    )
    jit_eval_step = jax.jit(
      eval_step, in_shardings=(replicated, data_sharding), out_shardings=data_sharding
    )
    run_evaluation = lambda state: evaluate(
      jit_eval_step, state, test_source, config.eval, config.dataset, data_sharding
    )
    guard = _DivergenceGuard(config.train)
    progress = ProgressLog(
      config, writer, schedule, guard, steps_per_epoch, total_steps, start_step
    )
    profile = ProfileWindow(config.train.profile, start_step, total_steps, workdir)
    eval_every = max(int(config.eval.every_epochs), 1)
    last_eval = None
    if is_lead:
      print(
        f"training {config.model.name} on {config.dataset.name}: {len(train_source)} train "
        f"/ {len(test_source)} test images, {steps_per_epoch} steps/epoch x "
        f"{config.train.num_epochs} epochs, global batch {config.train.batch_size} on "
        f"{jax.device_count()} device(s)",
        flush=True,
      )
    for batch in train_batches.iterate(start_step, total_steps):
      profile.before_step(step)
      step_rng = jax.random.fold_in(train_rng, step)
      state, step_metrics = jit_train_step(state, shard_batch(batch, data_sharding), step_rng)
      step += 1
      checkpointer.check_saves()  # a background save that failed (disk full) stops it here
      profile.after_step(step, state)
      progress(step, step_metrics)
      epoch, epoch_done = step // steps_per_epoch, step % steps_per_epoch == 0
      meta = dict(meta_base, epoch=epoch, step=step)
      if epoch_done and (epoch % eval_every == 0 or step == total_steps):
        guard.check_state(state, step)  # nothing non-finite is evaluated or saved
        last_eval = run_evaluation(state)
        writer.write_scalars(step, {f"test/{k}": v for k, v in last_eval.items() if np.isscalar(v)})
        checkpointer.save(
          step,
          _state_dict(state),
          metrics_lib.strict_json(dict(meta, metrics=last_eval)),
          metrics=report_evaluation(last_eval, f"epoch {epoch}"),
        )
      elif epoch_done and epoch % config.train.checkpoint_every_epochs == 0:
        guard.check_state(state, step)
        checkpointer.save(step, _state_dict(state), meta)
      if preemption.requested:  # saved at once (a no-op when this step just was)
        progress.flush(step)
        guard.check_state(state, step)
        checkpointer.save(step, _state_dict(state), meta)
        if is_lead:
          print(f"{preemption.name}: saved a checkpoint at step {step}; exiting", flush=True)
        raise SystemExit(preemption.exit_status)
    guard.check_state(state, step)
    if last_eval is None:  # resumed at the end: nothing ran, evaluate the restored state
      last_eval = run_evaluation(state)
    checkpointer.save(  # a no-op when the last epoch's evaluation saved this step
      step,
      _state_dict(state),
      metrics_lib.strict_json(
        dict(meta_base, epoch=step // steps_per_epoch, step=step, metrics=last_eval)
      ),
      metrics=ranking_metrics(last_eval),
    )
    final = {
      "step": step,
      "epochs": config.train.num_epochs,
      "test": {k: float(v) for k, v in last_eval.items() if np.isscalar(v)},
      "wall_time_s": time.time() - progress.loop_start,
    }
  if is_lead:
    with open(os.path.join(workdir, "final_metrics.json"), "w") as f:
      json.dump(metrics_lib.strict_json(final), f, indent=2, allow_nan=False)
    print(
      f"final test ({config.dataset.name}, {len(test_source)} images): "
      f"mIoU {last_eval['miou']:.4f}  nIoU {last_eval['niou']:.4f}  "
      f"Pd {last_eval['pd']:.4f}  Fa {last_eval['fa'] * 1e6:.2f}e-6  "
      f"Fa_strict {last_eval['fa_strict'] * 1e6:.2f}e-6",
      flush=True,
    )
    warn_if_degenerate(last_eval, "the end")
  return final
