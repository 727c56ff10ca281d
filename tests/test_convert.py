"""irstd_jax.convert (`python -m irstd_jax.convert`): torch state_dict -> orbax ->
restore_variables -> Flax forward == torch forward; and orbax -> torch state_dict back."""

import os
import subprocess
import sys

from conftest import REPO
from conftest import subprocess_env
import numpy as np
import pytest

from configs import synthetic
from irstd_jax import convert

if os.environ.get("CI"):
  import torch  # CI installs torch==2.13.0; a missing torch must fail there
else:
  torch = pytest.importorskip(
    "torch",
    reason="PyTorch not installed: the converter tests need torch==2.13.0 "
    "(pip install -e '.[test]'); they always run in CI",
  )

OVERRIDES = [
  "--config.model.name=l1_gp_rotated",
  "--config.model.channels=(4,8,8,16,16)",
  "--config.model.blocks=(1,1,1,1)",
]
TOL = 1e-5  # max abs error relative to max |torch output|


def _config():
  config = synthetic.get_config()
  config.model.name = "l1_gp_rotated"
  config.model.channels = (4, 8, 8, 16, 16)
  config.model.blocks = (1, 1, 1, 1)
  return config


def _random_torch_model(config, seed=0):
  """Reference model with every parameter and BN statistic randomised in torch."""
  from reference_torch import model as tmodel

  from irstd_jax import models

  torch.manual_seed(seed)
  model = tmodel.create_model(models.resolve_model_config(config.model))
  with torch.no_grad():
    for _, p in model.named_parameters():
      p.add_(0.05 * torch.randn_like(p))
    for name, b in model.named_buffers():
      if name.endswith("running_var"):
        b.uniform_(0.5, 1.5)
      elif name.endswith("running_mean"):
        b.normal_(0.0, 0.1)
  return model.eval()


def test_cli_round_trip(tmp_path):
  import jax

  from irstd_jax import checkpointing
  from irstd_jax import models
  from irstd_jax import optim
  from irstd_jax import train

  config = _config()
  tmodel = _random_torch_model(config)
  pt = tmp_path / "model.pt"
  torch.save({"state_dict": tmodel.state_dict()}, pt)
  out = tmp_path / "converted"
  env = subprocess_env()
  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "irstd_jax.convert",
      f"--torch_checkpoint={pt}",
      f"--config={REPO / 'configs' / 'synthetic.py'}",
      *OVERRIDES,
      f"--output={out}",
    ],
    capture_output=True,
    text=True,
    env=env,
    cwd=REPO,
    timeout=300,
  )
  assert r.returncode == 0, r.stderr[-3000:]
  assert (out / "checkpoints" / "0").is_dir()

  variables, meta = checkpointing.restore_variables(str(out))
  assert meta["config"]["model"]["name"] == "l1_gp_rotated"
  model = models.create_model(config.model)
  x = np.random.RandomState(1).randn(2, 40, 36, 1).astype(np.float32)
  y, sides = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  with torch.no_grad():
    yt, st = tmodel(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()))
  for a, b in [(y, yt)] + list(zip(sides, st)):
    b = b.numpy()
    err = np.max(np.abs(np.asarray(a).transpose(0, 3, 1, 2) - b))
    assert err <= TOL * np.max(np.abs(b)), err

  # The directory is a resumable workdir: the fresh optimizer state has the structure
  # that train.py's TrainState expects.
  tx = optim.make_optimizer(config.train, optim.learning_rate_schedule(config.train, 10))
  abstract = jax.eval_shape(
    lambda: train.create_train_state(jax.random.key(0), model, tx, (16, 16))
  )
  ckpt = checkpointing.Checkpointer(str(out))
  state, _ = ckpt.restore_latest(train._state_dict(abstract))
  ckpt.close()
  assert int(state["step"]) == 0
  for a, b in zip(jax.tree.leaves(state["params"]), jax.tree.leaves(variables["params"])):
    np.testing.assert_array_equal(np.asarray(a), b)

  # Reverse: orbax -> torch state_dict equals the original.
  sd, _ = convert.orbax_to_torch_state_dict(str(out))
  orig = tmodel.state_dict()
  assert set(sd) == set(orig)
  for k, v in orig.items():
    if k.endswith("num_batches_tracked"):
      continue
    assert torch.equal(sd[k], v), k


@pytest.mark.e2e
def test_reverse_cli_and_mismatch(tmp_path):
  config = _config()
  tmodel = _random_torch_model(config, seed=3)
  out = tmp_path / "ck"
  convert.torch_to_orbax(tmodel.state_dict(), config, str(out))
  pt = tmp_path / "back.pt"
  r = subprocess.run(
    [
      sys.executable,
      "-m",
      "irstd_jax.convert",
      f"--flax_checkpoint={out}",
      f"--output={pt}",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
    env=subprocess_env(),
  )
  assert r.returncode == 0, r.stderr[-3000:]
  sd = torch.load(pt, weights_only=True)
  for k, v in tmodel.state_dict().items():
    if not k.endswith("num_batches_tracked"):
      assert torch.equal(sd[k], v), k
  # A state_dict of another model is refused with the list of differences.
  config.model.name = "mshnet"
  with pytest.raises(ValueError, match="spatial_attention"):
    convert.torch_to_orbax(tmodel.state_dict(), config, str(tmp_path / "bad"))


@pytest.mark.e2e
def test_cli_errors_are_one_line(tmp_path):
  """A missing checkpoint, a file torch.load cannot read and a missing --output: one
  `error:` line each, exit status 2 (no traceback, no usage text)."""
  junk = tmp_path / "junk.pt"
  junk.write_bytes(b"not a torch file")
  config = f"--config={REPO / 'configs' / 'synthetic.py'}"
  cases = [
    ([f"--flax_checkpoint={tmp_path / 'none'}", f"--output={tmp_path / 'x.pt'}"], "none"),
    ([f"--torch_checkpoint={junk}", config, f"--output={tmp_path / 'o'}"], "junk.pt: not a file"),
    ([f"--torch_checkpoint={junk}", config], "--output is required"),
  ]
  for args, expected in cases:
    r = subprocess.run(
      [sys.executable, "-m", "irstd_jax.convert", *args],
      capture_output=True,
      text=True,
      cwd=REPO,
      timeout=300,
      env=subprocess_env(),
    )
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and len(lines) == 1, (args, r.stderr[-3000:])
    assert lines[0].startswith("error: ") and expected in lines[0], lines
  assert not (tmp_path / "o").exists()
