"""Converts weights between the PyTorch reference model and orbax checkpoints.

PyTorch state_dict -> orbax checkpoint usable by evaluation / prediction
(``irstd_jax.checkpointing.restore_variables``):

  python tools/convert_torch_checkpoint.py --torch_checkpoint=model.pt \
      --config=configs/synthetic.py [--config.model.name=mshnet] --output=DIR

The state_dict must come from ``reference_torch.model`` built with the same
model config (names and shapes are checked against the Flax model; every mismatch is
listed).  A file holding {'state_dict': ...} or {'model': ...}, and keys prefixed with
'module.' (DataParallel), are accepted.

Written layout (what ``Checkpointer.save`` writes): ``DIR/checkpoints/<step>/`` with
items ``state`` = {step, params, batch_stats, opt_state} and ``meta`` (JSON: 'config',
'epoch', 'step', 'converted_from').  ``opt_state`` is a *fresh* optimizer state of
``config.train`` (zero Adam moments, count 0), and ``step`` is ``--step`` (0): so the
directory is also a valid ``--workdir`` from which ``irstd_jax.main`` resumes, i.e.
fine-tunes the converted weights from step 0.

Reverse direction (orbax checkpoint -> PyTorch state_dict; the model config is taken
from the checkpoint's meta):

  python tools/convert_torch_checkpoint.py --flax_checkpoint=DIR --output=model.pt
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import sys

# The PyTorch reference model is test-only code (tests/reference_torch), not installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

# Flags are defined only when run as a script, so that importing this file (tests) does
# not clash with other absl flag definitions such as irstd_jax.main's --config.
_CONFIG = _TORCH = _FLAX = _OUTPUT = _STEP = None


def _define_flags():
  global _CONFIG, _TORCH, _FLAX, _OUTPUT, _STEP
  _CONFIG = config_flags.DEFINE_config_file(
    "config", None, "configs/*.py file (torch -> flax: gives the model and optimizer)."
  )
  _TORCH = flags.DEFINE_string("torch_checkpoint", None, "PyTorch state_dict file (.pt).")
  _FLAX = flags.DEFINE_string(
    "flax_checkpoint", None, "Orbax checkpoint directory (reverse direction: flax -> torch)."
  )
  _OUTPUT = flags.DEFINE_string(
    "output", None, "Output directory (torch -> flax) or .pt file (reverse)."
  )
  _STEP = flags.DEFINE_integer("step", 0, "Step number of the written orbax checkpoint.")


def load_torch_state_dict(path: str):
  import torch

  obj = torch.load(path, map_location="cpu", weights_only=True)
  for key in ("state_dict", "model"):
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
      obj = obj[key]
  return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def abstract_variables(model_config):
  """Shapes of the Flax variables of the configured model (no compute)."""
  import jax
  import jax.numpy as jnp

  from irstd_jax import models

  model = models.create_model(model_config)
  x = jnp.zeros((1, 16, 16, 1), jnp.float32)
  return model, jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def torch_to_orbax(state_dict, config, output_dir: str, step: int = 0, source: str = "") -> str:
  """Writes ``output_dir/checkpoints/<step>/``; returns the checkpoints directory."""
  import jax
  import numpy as np
  from reference_torch import convert

  from irstd_jax import checkpointing
  from irstd_jax import train

  model, template = abstract_variables(config.model)
  variables = convert.torch_state_dict_to_flax(state_dict, template=template)
  tx = train.make_optimizer(config.train, train.learning_rate_schedule(config.train, 1))
  ts = train.TrainState.create(
    apply_fn=model.apply, params=variables["params"], tx=tx, batch_stats=variables["batch_stats"]
  )
  state = {
    "step": np.asarray(step, np.int32),
    "params": ts.params,
    "batch_stats": ts.batch_stats,
    "opt_state": jax.tree.map(np.asarray, ts.opt_state),
  }
  meta = {
    "config": json.loads(config.to_json_best_effort()),
    "epoch": 0,
    "step": step,
    "converted_from": os.path.abspath(source) if source else "torch state_dict",
  }
  ckpt = checkpointing.Checkpointer(output_dir, max_to_keep=1)
  ckpt.save(step, state, meta)
  ckpt.wait()
  ckpt.close()
  return os.path.join(os.path.abspath(output_dir), checkpointing.LATEST_DIR)


def orbax_to_torch_state_dict(checkpoint_dir: str, verify: bool = True):
  """(PyTorch state_dict, meta) of an orbax checkpoint (workdir, checkpoints dir or
  step dir).  With ``verify`` the state_dict is loaded (strict) into the reference
  model built from the checkpoint's config."""
  from reference_torch import convert

  from irstd_jax import checkpointing

  variables, meta = checkpointing.restore_variables(checkpoint_dir)
  state_dict = convert.flax_to_torch_state_dict(variables)
  if verify:
    reference_model(meta["config"]["model"]).load_state_dict(state_dict, strict=True)
  return state_dict, meta


def reference_model(model_config):
  """The PyTorch reference model of a (JAX-style, unresolved) model config."""
  import ml_collections
  from reference_torch import model as tmodel

  from irstd_jax import models

  if not isinstance(model_config, ml_collections.ConfigDict):
    model_config = ml_collections.ConfigDict(model_config)
  return tmodel.create_model(models.resolve_model_config(model_config))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _OUTPUT.value:
    raise app.UsageError("--output is required")
  if _FLAX.value:
    import torch

    state_dict, meta = orbax_to_torch_state_dict(_FLAX.value)
    torch.save(state_dict, _OUTPUT.value)
    print(
      f"wrote {_OUTPUT.value}: {len(state_dict)} tensors, model {meta['config']['model']['name']}"
    )
    return 0
  if not (_TORCH.value and _CONFIG.value):
    raise app.UsageError("need --torch_checkpoint and --config (or --flax_checkpoint)")
  state_dict = load_torch_state_dict(_TORCH.value)
  try:
    path = torch_to_orbax(state_dict, _CONFIG.value, _OUTPUT.value, _STEP.value, _TORCH.value)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {path}/{_STEP.value} (model {_CONFIG.value.model.name}, {len(state_dict)} tensors)")
  return 0


if __name__ == "__main__":
  _define_flags()
  app.run(main)
