"""Tests of the Gaussian-pinwheel spatial attention and the CBAM attentions."""

import json
import math
import subprocess
import sys

from conftest import REPO
from conftest import subprocess_env
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from irstd_jax import default_config
from irstd_jax.models import attention as att

K = 7
TWIST = 0.3


def gsa(**overrides):
  """GaussianSpatialAttention with config.model.attention's defaults, then overrides."""
  fields = dict(default_config.model_config().attention)
  del fields["kind"]
  return att.GaussianSpatialAttention(**{**fields, **overrides})


def attention_spec(**overrides):
  return att.AttentionSpec(**{**dict(default_config.model_config().attention), **overrides})


def np_kernel(rho, theta, amplitude, n=4, twist=TWIST, sigma_min=0.5, k=K, hard=True, mask=True):
  """Independent numpy version of SPEC section 3 (u along W, v along H down)."""
  c = k // 2
  kernel = np.zeros((k, k, 2, 1), np.float64)
  sigma = np.log1p(np.exp(np.asarray(rho, np.float64))) + sigma_min
  sigma = np.broadcast_to(sigma, (2,))
  for i in range(k):
    for j in range(k):
      u, v = j - c, i - c
      phi, r = math.atan2(v, u), math.hypot(u, v)
      m = 0.5 * (1 + math.cos(n * (phi - theta - twist * r)))
      if hard:
        m = float(np.round(m))
      if (i, j) == (c, c) or not mask:
        m = 1.0
      for ch in range(2):
        g = math.exp(-(u * u + v * v) / (2 * sigma[ch] ** 2))
        kernel[i, j, ch, 0] = amplitude[i, j, ch, 0] * g * m
  return kernel


def np_correlate_same(d, kernel):
  """'SAME' zero-padded cross-correlation (N,H,W,2) x (k,k,2,1) -> (N,H,W,1)."""
  k = kernel.shape[0]
  p = k // 2
  n, h, w, _ = d.shape
  dp = np.pad(d, ((0, 0), (p, p), (p, p), (0, 0)))
  out = np.zeros((n, h, w, 1))
  for i in range(k):
    for j in range(k):
      out[..., 0] += np.einsum("nhwc,c->nhw", dp[:, i : i + h, j : j + w, :], kernel[i, j, :, 0])
  return out


def gsa_params(rho=0.3, theta=0.4, seed=0, per_channel=False):
  rng = np.random.default_rng(seed)
  amp = rng.uniform(0.02, 0.15, (K, K, 2, 1)).astype(np.float32)
  rho = np.asarray([rho, rho - 0.5] if per_channel else rho, np.float32)
  return {
    "rho": jnp.asarray(rho),
    "theta": jnp.asarray(theta, jnp.float32),
    "amplitude": jnp.asarray(amp),
  }


def test_softplus_inverse_and_sigma_init():
  m = gsa(sigma_init=1.7, sigma_min=0.5)
  p = m.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
  assert set(p) == {"rho", "theta", "amplitude"}
  assert p["amplitude"].shape == (K, K, 2, 1)
  np.testing.assert_allclose(p["amplitude"], 1 / 14)
  np.testing.assert_allclose(att.sigma_from_rho(p["rho"], 0.5), 1.7, rtol=1e-6)
  assert float(p["theta"]) == 0.0


def test_gaussian_prior_formula_and_max_one():
  g = np.asarray(att.gaussian_prior(1.3, K))
  u = np.arange(K) - K // 2
  expected = np.exp(-(u[None, :] ** 2 + u[:, None] ** 2) / (2 * 1.3**2))
  np.testing.assert_allclose(g, expected, rtol=1e-6)
  assert g.max() == 1.0 and g[K // 2, K // 2] == 1.0
  g2 = att.gaussian_prior(jnp.array([1.0, 2.0]), K)
  assert g2.shape == (K, K, 2)
  np.testing.assert_allclose(g2[..., 1], att.gaussian_prior(2.0, K), rtol=1e-6)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("theta", [0.0, 0.4, -1.3])
def test_built_kernel_equals_analytic_formula(theta, per_channel):
  params = gsa_params(theta=theta, per_channel=per_channel)
  m = gsa(twist=TWIST, per_channel_sigma=per_channel)
  parts = m.apply({"params": params}, method=m.kernel_parts)
  expected = np_kernel(np.asarray(params["rho"]), theta, np.asarray(params["amplitude"]))
  np.testing.assert_allclose(parts["kernel"], expected, rtol=1e-5, atol=1e-7)
  soft = np_kernel(np.asarray(params["rho"]), theta, np.ones((K, K, 2, 1)), hard=False)
  prior = np_kernel(np.asarray(params["rho"]), theta, np.ones((K, K, 2, 1)), mask=False)
  np.testing.assert_allclose(
    parts["soft_mask"], soft[..., 0, 0] / prior[..., 0, 0], rtol=1e-5, atol=1e-6
  )
  np.testing.assert_allclose(parts["prior"], prior[..., 0], rtol=1e-5)


def test_forward_mask_is_exactly_binary_with_centre_one():
  for theta in np.linspace(-3.0, 3.0, 13):
    for n in (3, 4, 5):
      mask = np.asarray(att.pinwheel_mask(theta, K, n, TWIST))
      assert set(np.unique(mask)) <= {0.0, 1.0}, (theta, n)
      assert mask[K // 2, K // 2] == 1.0
      # Not degenerate: both values occur.
      assert 0 < mask.sum() < K * K
  soft = np.asarray(att.pinwheel_soft_mask(0.7, K, 4, TWIST))
  assert soft.min() >= 0 and soft.max() <= 1 and soft[K // 2, K // 2] == 1.0
  assert len(np.unique(np.round(soft, 3))) > 2


def test_straight_through_gradient_equals_soft_gradient():
  w = jnp.asarray(np.random.default_rng(1).normal(size=(K, K)), jnp.float32)
  hard = lambda t: jnp.sum(w * att.pinwheel_mask(t, K, 4, TWIST, hard=True))
  soft = lambda t: jnp.sum(w * att.pinwheel_soft_mask(t, K, 4, TWIST))
  g_hard, g_soft = jax.grad(hard)(0.3), jax.grad(soft)(0.3)
  assert g_hard != 0.0
  np.testing.assert_allclose(g_hard, g_soft, rtol=1e-6)


def test_module_output_matches_numpy_and_gradients_nonzero():
  params = gsa_params(theta=0.25)
  m = gsa(twist=TWIST)
  x = jax.random.normal(jax.random.key(0), (2, 9, 13, 5))
  y = m.apply({"params": params}, x)
  xn = np.asarray(x, np.float64)
  d = np.concatenate([xn.mean(-1, keepdims=True), xn.max(-1, keepdims=True)], -1)
  kern = np_kernel(np.asarray(params["rho"]), 0.25, np.asarray(params["amplitude"]))
  expected = xn / (1 + np.exp(-np_correlate_same(d, kern)))
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)

  w = jax.random.normal(jax.random.key(1), y.shape)
  grads = jax.grad(lambda p: jnp.sum(w * m.apply({"params": p}, x)))(params)
  for name in ("rho", "theta", "amplitude"):
    g = np.asarray(grads[name])
    assert np.all(np.isfinite(g)) and np.abs(g).max() > 1e-6, name


def test_rotation_equivariance():
  """rot90(K_theta) = K_{theta - pi/2} (np.rot90 maps phi -> phi - pi/2), hence
  attention(rot90 x; theta - pi/2, rot90 A) == rot90 attention(x; theta, A).

  With n = 3 blades a quarter turn is not a symmetry of the mask (period 2pi/3),
  so the statement is non-trivial; the test also checks that keeping theta
  unchanged does *not* give the rotated output.  With n = 4 a quarter turn is a
  full blade period: the mask is then invariant and theta need not change.
  """
  x = jax.random.normal(jax.random.key(2), (2, 11, 9, 4))
  rot = lambda a: np.rot90(np.asarray(a), axes=(1, 2))
  for n, shift in ((3, -np.pi / 2), (5, -np.pi / 2), (4, 0.0)):
    m = gsa(num_blades=n, twist=TWIST)
    p = gsa_params(theta=0.35, seed=n)
    # Precondition: no soft-mask value near 0.5 (rounding is then stable).
    soft = np.asarray(att.pinwheel_soft_mask(0.35, K, n, TWIST))
    assert np.abs(soft - 0.5).min() > 1e-3
    k0 = np.asarray(m.apply({"params": p}, method=m.kernel_parts)["kernel"])
    p_rot = dict(
      p,
      theta=p["theta"] + shift,
      amplitude=jnp.asarray(np.rot90(np.asarray(p["amplitude"]), axes=(0, 1))),
    )
    k1 = np.asarray(m.apply({"params": p_rot}, method=m.kernel_parts)["kernel"])
    np.testing.assert_allclose(k1, np.rot90(k0, axes=(0, 1)), rtol=1e-5, atol=1e-7)

    y = m.apply({"params": p}, x)
    y_rot = m.apply({"params": p_rot}, jnp.asarray(rot(x)))
    np.testing.assert_allclose(y_rot, rot(y), rtol=1e-5, atol=1e-6)
    if n != 4:
      p_wrong = dict(p_rot, theta=p["theta"])
      y_wrong = m.apply({"params": p_wrong}, jnp.asarray(rot(x)))
      assert np.abs(np.asarray(y_wrong) - rot(y)).max() > 1e-3
      # The soft mask obeys the same law.
      np.testing.assert_allclose(
        np.rot90(att.pinwheel_soft_mask(0.35, K, n, TWIST)),
        att.pinwheel_soft_mask(0.35 + shift, K, n, TWIST),
        atol=1e-6,
      )


def test_ablation_switches():
  x = jnp.ones((1, 8, 8, 3))
  p = gsa(mask="fixed", theta_init=0.5).init(jax.random.key(0), x)["params"]
  assert set(p) == {"rho", "amplitude"}
  m = gsa(mask="fixed", theta_init=0.5, twist=TWIST)
  parts = m.apply({"params": p}, method=m.kernel_parts)
  np.testing.assert_array_equal(parts["mask"], att.pinwheel_mask(0.5, K, 4, TWIST))

  m = gsa(mask="none")
  p = m.init(jax.random.key(0), x)["params"]
  parts = m.apply({"params": p}, method=m.kernel_parts)
  np.testing.assert_array_equal(parts["mask"], np.ones((K, K)))
  np.testing.assert_allclose(parts["kernel"][..., 0], parts["prior"] / 14, rtol=1e-6)

  m = gsa(prior="none", learn_amplitude=False)
  p = m.init(jax.random.key(0), x)["params"]
  assert set(p) == {"theta"}

  spec = attention_spec(kind="cbam", kernel_size=5)
  sa = att.make_spatial_attention(spec, jnp.float32)
  p = sa.init(jax.random.key(0), x)["params"]
  assert p["conv"]["kernel"].shape == (5, 5, 2, 1) and "bias" not in p["conv"]
  assert att.make_spatial_attention(attention_spec(kind="none"), jnp.float32) is None
  with pytest.raises(ValueError):
    att.AttentionSpec.from_config({"kind": "cbam", "bogus": 1})


def test_cbam_spatial_and_channel_attention_formulas():
  x = jax.random.normal(jax.random.key(3), (2, 6, 7, 32))
  sa = att.SpatialAttention(kernel_size=K)
  p = sa.init(jax.random.key(0), x)["params"]
  xn = np.asarray(x, np.float64)
  d = np.concatenate([xn.mean(-1, keepdims=True), xn.max(-1, keepdims=True)], -1)
  expected = xn / (1 + np.exp(-np_correlate_same(d, np.asarray(p["conv"]["kernel"]))))
  np.testing.assert_allclose(sa.apply({"params": p}, x), expected, rtol=1e-5, atol=1e-6)

  ca = att.ChannelAttention()
  p = ca.init(jax.random.key(0), x)["params"]
  assert p["fc1"]["kernel"].shape == (32, 2) and p["fc2"]["kernel"].shape == (2, 32)
  w1, w2 = np.asarray(p["fc1"]["kernel"]), np.asarray(p["fc2"]["kernel"])
  mlp = lambda v: np.maximum(v @ w1, 0) @ w2
  a = mlp(xn.mean((1, 2))) + mlp(xn.max((1, 2)))
  expected = xn / (1 + np.exp(-a))[:, None, None, :]
  np.testing.assert_allclose(ca.apply({"params": p}, x), expected, rtol=1e-5, atol=1e-6)


def test_bfloat16_compute_keeps_float32_params():
  x = jax.random.normal(jax.random.key(4), (1, 10, 10, 4)).astype(jnp.bfloat16)
  m = gsa(dtype=jnp.bfloat16)
  p = m.init(jax.random.key(0), x)["params"]
  assert all(v.dtype == jnp.float32 for v in jax.tree_util.tree_leaves(p))
  y = m.apply({"params": p}, x)
  assert y.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(y)))
  y32 = gsa().apply({"params": p}, x.astype(jnp.float32))
  np.testing.assert_allclose(np.asarray(y, np.float32), y32, atol=5e-2)


def test_max_to_one_index_value_and_gradient_at_ties():
  """The value is jnp.max's; the gradient goes to the first maximal entry only (as
  PyTorch's max routes it), over one axis and over two adjacent axes."""
  x = jnp.asarray([[[1.0, 3.0, 3.0, -2.0], [0.5, 0.5, 0.25, 0.5]]])  # (1, 2, 4), ties
  np.testing.assert_array_equal(att.max_to_one_index(x, -1), jnp.max(x, -1, keepdims=True))
  grad = jax.grad(lambda x: jnp.sum(att.max_to_one_index(x, -1) * jnp.asarray([[[2.0], [5.0]]])))
  np.testing.assert_array_equal(grad(x), [[[0, 2, 0, 0], [5, 0, 0, 0]]])
  y = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 4, 5)), jnp.float32)
  y = y.at[1, 2, 3, 4].set(10.0).at[1, 0, 1, 4].set(10.0)  # tie in (batch 1, channel 4)
  spatial = att.max_to_one_index(y, (1, 2))
  assert spatial.shape == (2, 1, 1, 5)
  np.testing.assert_array_equal(spatial, jnp.max(y, (1, 2), keepdims=True))
  g = jax.grad(lambda y: jnp.sum(att.max_to_one_index(y, (1, 2))))(y)
  np.testing.assert_array_equal(jnp.sum(g, (1, 2)), np.ones((2, 5)))
  assert g[1, 0, 1, 4] == 1 and g[1, 2, 3, 4] == 0  # the first in row-major order
  # Non-finite entries: the value is still jnp.max's (the other entries must not leak in,
  # e.g. as inf * 0), and the gradient still goes to one entry.
  z = jnp.asarray([[-np.inf, -np.inf, -np.inf], [np.inf, 2.0, -np.inf], [1.0, np.nan, 3.0]])
  for dtype in (jnp.float32, jnp.bfloat16):
    got = att.max_to_one_index(z.astype(dtype), -1)
    assert got.dtype == dtype
    want = jnp.max(z.astype(dtype), -1, keepdims=True)
    # float32 for the comparison: numpy matches NaN with NaN only in its own float types.
    np.testing.assert_array_equal(np.float32(got), np.float32(want))
  gz = jax.grad(lambda z: jnp.sum(att.max_to_one_index(z, -1)[:2]))(z)
  np.testing.assert_array_equal(gz, [[1, 0, 0], [1, 0, 0], [0, 0, 0]])


def test_first_gradient_is_finite_with_xla_cpus_other_convolution_kernels():
  """Regression: with XLA:CPU's Eigen convolutions instead of YNN's, or compiled at -O0,
  the demo model's first gradient was NaN (132 of its 252 leaves with Eigen at -O3; at -O0,
  with either kernels, from the decoder's BatchNorm on): jnp.max's gradient found no entry
  equal to the max XLA had recomputed, and divided by that count of 0.
  `max_to_one_index` routes it without a division. Run at -O0 with Eigen (20 s; checked
  2026-11-29 to report NaN leaves with jnp.max and none with the fix)."""
  proc = subprocess.run(
    [sys.executable, "-m", "tests.scripts.first_gradient"],
    cwd=REPO,
    env=subprocess_env(XLA_FLAGS="--xla_cpu_experimental_ynn_fusion_type="),
    capture_output=True,
    text=True,
    timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert result["leaves"] == 252 and result["non_finite"] == [], result
