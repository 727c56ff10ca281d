import functools

from conftest import tiny_config
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from irstd_jax import inference
from irstd_jax import losses
from irstd_jax import models
from irstd_jax import optim
from irstd_jax import train
from irstd_jax.datasets import synthetic


def _fixed_batch(n=4, size=32):
  images, masks = [], []
  for i in range(n):
    image, mask, _ = synthetic.generate_image(0, "train", i, size, size, empty_fraction=0.0)
    images.append(image)
    masks.append(mask)
  images = (np.stack(images)[..., None].astype(np.float32) - 90.0) / 30.0
  return {
    "image": jnp.asarray(images),
    "mask": jnp.asarray(np.stack(masks)[..., None], jnp.float32),
  }


def _setup(tmp_path, **overrides):
  config = tiny_config(tmp_path, **overrides)
  model = models.create_model(config.model)
  tx = optim.make_optimizer(config.train, optax.constant_schedule(config.train.learning_rate))
  state = jax.jit(lambda key: train.create_train_state(key, model, tx, (32, 32)))(jax.random.key(0))
  return config, state


@pytest.fixture(scope="module")
def tiny_step(tmp_path_factory):
  """dtype -> (config, initial state, train_step bound to its loss config, that step
  jitted) of the tiny model, built and compiled once per module: the tests below share
  the float32 one."""
  built = {}

  def get(dtype):
    if dtype not in built:
      config, state = _setup(tmp_path_factory.mktemp(dtype), **{"model.dtype": dtype})
      step = functools.partial(train.train_step, loss_config=config.loss, steps_per_epoch=100)
      built[dtype] = config, state, step, jax.jit(step)
    return built[dtype]

  return get


def _jitted_loss(config, epoch):
  """state, batch -> the train-mode loss; one jitted function, compiled once per test."""

  def loss(state, batch):
    (logits, sides), _ = state.apply_fn(
      {"params": state.params, "batch_stats": state.batch_stats},
      batch["image"],
      train=True,
      mutable=["batch_stats"],
    )
    return losses.total_loss(logits, sides, batch["mask"], config.loss, epoch)[0]

  return jax.jit(loss)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_one_train_step_lowers_the_loss_on_a_fixed_batch(tiny_step, dtype):
  config, state, _, step = tiny_step(dtype)
  # bf16 compute keeps float32 parameters and optimiser state.
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))
  batch = _fixed_batch()
  loss = _jitted_loss(config, 0)
  before = float(loss(state, batch))
  new_state, out = step(state, batch, jax.random.key(1))
  after = float(loss(new_state, batch))
  assert int(new_state.step) == 1
  np.testing.assert_allclose(float(out["loss"]), before, rtol=1e-5)
  assert after < before
  assert np.isfinite(float(out["grad_norm"])) and float(out["grad_norm"]) > 0
  # BatchNorm running statistics were updated by the train-mode forward pass.
  changed = jax.tree.map(
    lambda a, b: bool(jnp.any(a != b)), state.batch_stats, new_state.batch_stats
  )
  assert any(jax.tree.leaves(changed))


def test_train_step_on_a_one_device_mesh_matches_the_unsharded_step(tiny_step):
  _, state, fn, step = tiny_step("float32")
  batch = _fixed_batch()
  mesh = train.make_mesh()
  repl = jax.NamedSharding(mesh, jax.P())
  data = jax.NamedSharding(mesh, jax.P("data"))
  sharded = jax.jit(fn, in_shardings=(repl, data, repl), out_shardings=(repl, repl))
  s1, o1 = sharded(
    state, train.shard_batch({k: np.asarray(v) for k, v in batch.items()}, data), jax.random.key(1)
  )
  s2, o2 = step(state, batch, jax.random.key(1))  # jax.jit(fn), shared with the step test
  np.testing.assert_allclose(float(o1["loss"]), float(o2["loss"]), rtol=1e-6)
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s2.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)


def test_schedules_and_optimizers():
  from ml_collections import ConfigDict

  cfg = ConfigDict({"learning_rate": 1.0, "schedule": "cosine", "warmup_steps": 10})
  sched = optim.learning_rate_schedule(cfg, 110)
  assert float(sched(0)) == 0.0 and abs(float(sched(10)) - 1.0) < 1e-6
  assert abs(float(sched(110))) < 1e-6
  cfg.schedule = "poly"
  assert 0 < float(optim.learning_rate_schedule(cfg, 110)(60)) < 1
  cfg.schedule = "bogus"
  import pytest

  with pytest.raises(ValueError, match="train.schedule='bogus'"):
    optim.learning_rate_schedule(cfg, 10)


def test_grad_accumulation_applies_the_mean_update_every_k_steps(tmp_path):
  config, state = _setup(
    tmp_path, **{"train.grad_accum_steps": 2, "train.optimizer": "sgd", "train.momentum": 0.0}
  )
  batch = _fixed_batch()
  step = jax.jit(functools.partial(train.train_step, loss_config=config.loss, steps_per_epoch=100))
  s1, _ = step(state, batch, jax.random.key(0))
  same = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), state.params, s1.params)
  assert all(jax.tree.leaves(same)), "no update after the first of two micro-steps"
  s2, _ = step(s1, batch, jax.random.key(0))
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), s1.params, s2.params)
  assert any(jax.tree.leaves(moved))


def test_data_seed_sets_the_data_stream_alone_and_minus_one_follows_seed(tmp_path):
  source = [
    {
      "image": np.full((32, 32, 1), i, np.uint8),
      "mask": np.zeros((32, 32, 1), np.uint8),
      "id": f"img_{i}".encode(),
    }
    for i in range(16)
  ]

  def order(**overrides):
    batches = train.make_train_batches(tiny_config(tmp_path, **overrides), source)
    return [tuple(batches.local_indices(step)) for step in range(8)]

  assert order(seed=3) == order(seed=3, data_seed=-1)
  assert order(seed=0, data_seed=3) == order(seed=3)  # the init seed plays no part
  assert order(seed=3, data_seed=0) == order(seed=0)
  assert order(seed=0) != order(seed=3)


def _optimizer(**fields):
  from ml_collections import ConfigDict

  cfg = {"optimizer": "sgd", "momentum": 0.0, "grad_clip_norm": 0.0, "grad_accum_steps": 1}
  return optim.make_optimizer(ConfigDict({**cfg, "ema_decay": 0.0, **fields}), lambda step: 0.1)


def test_weight_average_follows_its_recursion_and_leaves_the_training_unchanged():
  decay, rng = 0.9, np.random.default_rng(0)
  grads = [{"w": rng.normal(size=3).astype(np.float32)} for _ in range(40)]
  runs = {}
  for ema_decay in (0.0, decay):
    tx = _optimizer(ema_decay=ema_decay)
    params = {"w": jnp.ones(3)}
    state = tx.init(params)
    trajectory = []
    for g in grads:
      updates, state = tx.update(g, state, params)
      params = optax.apply_updates(params, updates)
      trajectory.append(np.asarray(params["w"]))
    runs[ema_decay] = trajectory, state
  (plain, plain_state), (averaged, ema_state) = runs[0.0], runs[decay]
  np.testing.assert_array_equal(np.stack(plain), np.stack(averaged))
  assert optim.averaged_params(plain_state) is None
  expected = np.ones(3)
  for t, params in enumerate(averaged, start=1):
    d = min(decay, (1 + t) / (10 + t))  # the warm-up, then the decay
    expected = d * expected + (1 - d) * params
  np.testing.assert_allclose(optim.averaged_params(ema_state)["w"], expected, rtol=1e-6)
  assert not np.allclose(expected, averaged[-1])  # an average, not the last weights


def test_weight_average_moves_once_per_accumulated_update():
  tx = _optimizer(ema_decay=0.5, grad_accum_steps=2)
  params = {"w": jnp.zeros(2)}
  state = tx.init(params)
  counts = []
  for _ in range(4):
    updates, state = tx.update({"w": jnp.ones(2)}, state, params)
    params = optax.apply_updates(params, updates)
    counts.append(int(state.inner_opt_state[-1]["ema_count"]))  # the chain's last link
  assert counts == [0, 1, 1, 2]


def test_eval_and_every_loading_tool_use_the_averaged_weights(tmp_path):
  from irstd_jax import checkpointing

  config, state = _setup(tmp_path, **{"train.ema_decay": 0.9})
  step = jax.jit(functools.partial(train.train_step, loss_config=config.loss, steps_per_epoch=100))
  batch = _fixed_batch()
  for _ in range(3):
    state, _ = step(state, batch, jax.random.key(0))
  averaged = optim.averaged_params(state.opt_state)
  assert averaged is not None
  differs = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), averaged, state.params)
  assert any(jax.tree.leaves(differs))
  with checkpointing.Checkpointer(str(tmp_path / "run")) as checkpointer:
    checkpointer.save(3, train._state_dict(state), {"step": 3})
  variables, _ = checkpointing.restore_variables(str(tmp_path / "run"), prefer_best=False)
  for a, b in zip(jax.tree.leaves(variables["params"]), jax.tree.leaves(averaged)):
    np.testing.assert_array_equal(a, np.asarray(b))
  expected = inference.predict_scores(
    state.apply_fn, {"params": averaged, "batch_stats": state.batch_stats}, batch["image"]
  )
  np.testing.assert_allclose(train.eval_step(state, batch), expected, rtol=1e-6, atol=1e-7)
