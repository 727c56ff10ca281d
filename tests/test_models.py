"""Tests of the model family (shapes, presets, BatchNorm, dtypes, param counts)."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from irstd_jax import default_config
from irstd_jax import models
from irstd_jax.models.unet import count_params
from irstd_jax.models.unet import maxpool2
from irstd_jax.models.unet import upsample

# Parameter counts of the MSHNet-sized defaults (channels (16,32,64,128,256),
# blocks (2,2,2,2), deep supervision on).  MSHNet's paper reports 4.07M.
EXPECTED_PARAMS = {
  "unet": 4_036_713,
  "mshnet": 4_065_481,
  "l1_gp_rotated": 4_065_513,
  "gp_rotated": 4_065_513,
  "gp_fixed": 4_065_497,
  "gp_nomask": 4_065_497,
  "pconv_unet": 3_303_881,
  "custom": 4_065_513,
}

SMALL = dict(channels=(4, 8, 8, 8, 8), blocks=(1, 1, 1, 1))


def make(name, **overrides):
  cfg = default_config.model_config()
  cfg.name = name
  for k, v in overrides.items():
    cfg[k] = v
  return models.create_model(cfg)


def abstract_init(model, h=32, w=32):
  x = jax.ShapeDtypeStruct((1, h, w, 1), jnp.float32)
  return jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)


def test_model_names_and_default_config():
  cfg = default_config.model_config()
  assert cfg.name == "l1_gp_rotated"
  assert tuple(cfg.channels) == (16, 32, 64, 128, 256)
  assert tuple(cfg.blocks) == (2, 2, 2, 2)
  assert cfg.dtype == "float32" and cfg.deep_supervision
  for f in (
    "kind",
    "kernel_size",
    "num_blades",
    "twist",
    "sigma_min",
    "sigma_init",
    "per_channel_sigma",
    "mask",
    "amplitude_init",
  ):
    assert f in cfg.attention
  assert cfg.attention.amplitude_init == pytest.approx(1 / 14)
  assert set(models.MODEL_NAMES) >= {
    "unet",
    "mshnet",
    "l1_gp_rotated",
    "gp_fixed",
    "gp_nomask",
    "pconv_unet",
  }
  with pytest.raises(ValueError):
    make("no_such_model")


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_param_counts_stable(name):
  variables = abstract_init(make(name))
  assert count_params(variables["params"]) == EXPECTED_PARAMS[name]
  assert all(l.dtype == jnp.float32 for l in jax.tree_util.tree_leaves(variables))


def test_presets_decide_architecture():
  p = abstract_init(make("l1_gp_rotated", **SMALL))["params"]
  sa = p["encoder_1"]["block_0"]["spatial_attention"]
  assert set(sa) == {"rho", "theta", "amplitude"} and sa["amplitude"].shape == (7, 7, 2, 1)
  assert set(
    abstract_init(make("gp_fixed", **SMALL))["params"]["middle"]["block_0"]["spatial_attention"]
  ) == {"rho", "amplitude"}
  assert (
    "conv"
    in abstract_init(make("mshnet", **SMALL))["params"]["decoder_0"]["block_0"]["spatial_attention"]
  )
  blk = abstract_init(make("unet", **SMALL))["params"]["encoder_0"]["block_0"]
  assert "spatial_attention" not in blk and "channel_attention" not in blk
  blk = abstract_init(make("pconv_unet", **SMALL))["params"]["encoder_2"]["block_0"]
  assert "pconv" in blk and "conv1" not in blk
  # Name decides: an attention.kind from the config is overridden ...
  cfg = default_config.model_config()
  cfg.name, cfg.attention.kind = "mshnet", "gaussian"
  assert models.resolve_model_config(cfg).attention.kind == "cbam"
  # ... other fields pass through, and 'custom' takes the config as is.
  cfg.attention.kernel_size = 5
  assert models.resolve_model_config(cfg).attention.kernel_size == 5
  cfg.name = "custom"
  assert models.resolve_model_config(cfg).attention.kind == "gaussian"
  # A partial config (e.g. an older configs/*.py) is completed with defaults.
  partial = ml_collections.ConfigDict({"name": "gp_nomask", "attention": {"twist": 0.5}})
  r = models.resolve_model_config(partial)
  assert r.attention.twist == 0.5 and r.attention.mask == "none" and r.blocks == (2, 2, 2, 2)


@pytest.mark.parametrize("name", ["unet", "mshnet", "gp_fixed", "gp_nomask", "pconv_unet"])
@pytest.mark.parametrize("deep_supervision", [True, False])
def test_output_shapes_odd_sizes_abstract(name, deep_supervision):
  model = make(name, deep_supervision=deep_supervision, **SMALL)
  variables = abstract_init(model)
  for h, w in ((300, 211), (17, 5)):
    x = jax.ShapeDtypeStruct((2, h, w, 1), jnp.float32)
    (logits, sides), _ = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]), variables, x
    )
    assert logits.shape == (2, h, w, 1) and logits.dtype == jnp.float32
    if deep_supervision:
      assert [s.shape for s in sides] == [(2, -(-h // 2**k), -(-w // 2**k), 1) for k in range(4)]
      assert all(s.dtype == jnp.float32 for s in sides)
    else:
      assert sides == ()


@pytest.fixture(scope="module")
def small_gp_run():
  """One concrete train-mode forward of a small l1_gp_rotated at 300 x 211
  (init_with_output: the init pass in train mode returns the outputs too)."""
  model = make("l1_gp_rotated", **SMALL)
  x = jax.random.normal(jax.random.key(0), (2, 300, 211, 1))
  init = jax.jit(lambda x: model.init_with_output(jax.random.key(1), x, train=True))
  outputs, variables = init(x)
  return model, x, outputs, variables


def test_l1_gp_rotated_runs_at_300x211_train_and_eval(small_gp_run):
  model, x, (logits, sides), variables = small_gp_run
  assert logits.shape == (2, 300, 211, 1) and logits.dtype == jnp.float32
  assert [s.shape for s in sides] == [
    (2, 300, 211, 1),
    (2, 150, 106, 1),
    (2, 75, 53, 1),
    (2, 38, 27, 1),
  ]
  assert np.all(np.isfinite(logits))
  # Eval mode uses running statistics: an image's output does not depend on the
  # rest of the batch (in train mode it does), and nothing needs to be mutable.
  evaluate = jax.jit(lambda v, x: model.apply(v, x, train=False))
  a, sides_a = evaluate(variables, x)
  x2 = x.at[1].set(10.0 * x[1] + 3.0)
  b, _ = evaluate(variables, x2)
  assert len(sides_a) == 4
  np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-5)
  assert np.abs(np.asarray(a[1]) - np.asarray(b[1])).max() > 1e-3


def test_bfloat16_train_step_and_bn_update(small_gp_run):
  """bfloat16 compute with the float32 variables of the float32 model (same
  tree): finite float32 outputs, float32 batch_stats that move in train mode."""
  _, _, _, variables = small_gp_run
  model = make("l1_gp_rotated", dtype="bfloat16", **SMALL)
  x = jax.random.normal(jax.random.key(3), (2, 21, 19, 1))
  train_forward = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  (logits, sides), state = train_forward(variables, x)
  assert logits.shape == (2, 21, 19, 1)
  assert logits.dtype == jnp.float32 and all(s.dtype == jnp.float32 for s in sides)
  assert np.all(np.isfinite(logits))
  assert all(l.dtype == jnp.float32 for l in jax.tree_util.tree_leaves(state))
  old = variables["batch_stats"]["encoder_0"]["block_0"]["bn1"]["mean"]
  new = state["batch_stats"]["encoder_0"]["block_0"]["bn1"]["mean"]
  assert np.abs(np.asarray(new) - np.asarray(old)).max() > 0


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_theta_and_sigma_get_gradients_through_a_residual_block(dtype):
  cfg = default_config.model_config()
  spec = models.AttentionSpec.from_config(cfg.attention)  # gaussian prior, rotated mask
  block = models.ResidualBlock(
    8,
    attention=spec,
    channel_attention=True,
    block="basic",
    bn_momentum=cfg.bn_momentum,
    bn_epsilon=cfg.bn_epsilon,
    dtype=dtype,
  )
  x = jax.random.normal(jax.random.key(0), (2, 12, 10, 4))
  variables = jax.jit(functools.partial(block.init, train=False))(jax.random.key(1), x)

  def loss(params):
    y, _ = block.apply(
      {"params": params, "batch_stats": variables["batch_stats"]},
      x,
      train=True,
      mutable=["batch_stats"],
    )
    return jnp.mean(y.astype(jnp.float32) ** 2)

  grads = jax.jit(jax.grad(loss))(variables["params"])
  assert set(variables["params"]) >= {
    "conv1",
    "bn1",
    "conv2",
    "bn2",
    "shortcut_conv",
    "shortcut_bn",
    "channel_attention",
    "spatial_attention",
  }
  sa = grads["spatial_attention"]
  assert abs(float(sa["theta"])) > 0 and abs(float(sa["rho"])) > 0
  assert all(l.dtype == jnp.float32 for l in jax.tree_util.tree_leaves(grads))


def test_pool_and_upsample_helpers():
  x = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(1, 5, 3, 2)
  p = maxpool2(x)
  assert p.shape == (1, 3, 2, 2)
  np.testing.assert_array_equal(p[0, 2, 1], x[0, 4, 2])  # ceil-mode edge window
  u = upsample(p, 2, (5, 3))
  assert u.shape == (1, 5, 3, 2)
  # Bilinear x2 with half-pixel centres: output row 1 = 0.75 row 0 + 0.25 row 1.
  np.testing.assert_allclose(u[0, 1, 0], 0.75 * p[0, 0, 0] + 0.25 * p[0, 1, 0], rtol=1e-6)


def test_inspect_kernels_tool_draws_png(tmp_path):
  from tools.analysis import inspect_kernels as tool

  cfg = models.resolve_model_config(default_config.model_config())
  gsa = models.GaussianSpatialAttention(**{k: v for k, v in cfg.attention.items() if k != "kind"})
  p = gsa.init(jax.random.key(0), jnp.ones((1, 8, 8, 2)))["params"]
  p = dict(p, theta=jnp.float32(0.3))
  params = {
    "encoder_0": {
      "block_0": {"conv1": {"kernel": jnp.zeros((3, 3, 1, 1))}, "spatial_attention": p}
    },
    "middle": {"block_1": {"spatial_attention": p}},
  }
  found = [path for path, _ in tool.find_attention_modules(params)]
  assert found == [
    ("encoder_0", "block_0", "spatial_attention"),
    ("middle", "block_1", "spatial_attention"),
  ]
  parts = tool.kernel_parts(p, cfg)
  np.testing.assert_allclose(
    parts["kernel"], gsa.apply({"params": p}, method=gsa.kernel_parts)["kernel"]
  )
  assert parts["theta"] == pytest.approx(0.3)
  out = tmp_path / "k.png"
  assert tool.draw({"params": params}, cfg, "test", str(out)) == 2
  assert out.stat().st_size > 1000


@pytest.mark.parametrize("deep_supervision", [True, False])
def test_output_prior_initialisation(deep_supervision):
  """Default init: side biases logit(pi), the fusion the mean of the sides, so every pixel
  of the first prediction is near pi (a batch at random init is then not saturated, the
  state where the overlap losses barely pull back, docs/losses.md). output_prior=0 keeps
  flax's zero biases."""
  prior = default_config.model_config().output_prior
  assert 0.0 < prior < 0.5
  model = make("l1_gp_rotated", deep_supervision=deep_supervision, **SMALL)
  x = jax.random.normal(jax.random.key(0), (2, 40, 36, 1))
  (logits, sides), variables = model.init_with_output(jax.random.key(1), x, train=True)
  params = variables["params"]
  logit_prior = np.log(prior / (1.0 - prior))
  names = [f"output_{k}" for k in range(4 if deep_supervision else 1)]
  for name in names:
    np.testing.assert_allclose(params[name]["bias"], [logit_prior], rtol=1e-6)
  probs = jax.nn.sigmoid(logits)
  assert float(probs.max()) < 0.5
  assert 0.5 * prior < float(probs.mean()) < 2.0 * prior
  if deep_supervision:
    kernel = np.asarray(params["final"]["kernel"])  # (3, 3, 4, 1)
    expected = np.zeros_like(kernel)
    expected[1, 1] = 0.25
    np.testing.assert_array_equal(kernel, expected)
    np.testing.assert_allclose(
      logits,
      sum(models.unet.upsample(s, 2**k, (40, 36)) for k, s in enumerate(sides)) / 4,
      atol=1e-5,
    )
  legacy = make("l1_gp_rotated", deep_supervision=deep_supervision, output_prior=0.0, **SMALL)
  legacy_params = abstract_init(legacy)["params"]
  init = legacy.init(jax.random.key(1), x, train=False)["params"]
  assert jax.tree_util.tree_structure(init) == jax.tree_util.tree_structure(legacy_params)
  for name in names:
    np.testing.assert_array_equal(init[name]["bias"], [0.0])
  with pytest.raises(ValueError, match="output_prior"):
    models.unet.output_initializers(0.7)
