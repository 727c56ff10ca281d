"""Converts weights between the PyTorch reference model and orbax checkpoints.

PyTorch state_dict -> orbax checkpoint usable by evaluation / prediction
(``irstd_jax.checkpointing.restore_variables``):

  python -m irstd_jax.convert --torch_checkpoint=model.pt \
      --config=configs/synthetic.py [--config.model.name=mshnet] --output=DIR

(``irstd-convert`` is the same command, installed with the package.)

The state_dict must come from the PyTorch reference model (tests/reference_torch/model.py)
built with the same model config (names and shapes are checked against the Flax model;
every mismatch is listed); the name mapping is ``irstd_jax.torch_weights``.  A file
holding {'state_dict': ...} or {'model': ...}, and keys prefixed with 'module.'
(DataParallel), are accepted.  PyTorch itself is needed only to read or write the .pt
file (it is a test extra, not a dependency of the package).

Written layout (what ``Checkpointer.save`` writes): ``DIR/checkpoints/<step>/`` with
items ``state`` = {step, params, batch_stats, opt_state} and ``meta`` (JSON: 'config',
'epoch', 'step', 'converted_from').  ``opt_state`` is a *fresh* optimizer state of
``config.train`` (zero Adam moments, count 0), and ``step`` is ``--step`` (0): so the
directory is also a valid ``--workdir`` from which ``irstd_jax.main`` resumes, i.e.
fine-tunes the converted weights from step 0.

Reverse direction (orbax checkpoint -> PyTorch state_dict; the model config is taken
from the checkpoint's meta):

  python -m irstd_jax.convert --flax_checkpoint=DIR --output=model.pt

Errors (a missing or unreadable file, weights of another model, PyTorch not installed,
a bad flag) are one ``error:`` line, exit status 2.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from ml_collections import config_flags  # noqa: E402
import numpy as np  # noqa: E402

from irstd_jax import checkpointing  # noqa: E402
from irstd_jax import cli  # noqa: E402
from irstd_jax import models  # noqa: E402
from irstd_jax import optim  # noqa: E402
from irstd_jax import torch_weights  # noqa: E402
from irstd_jax import train  # noqa: E402

# Flags are defined only when the command runs (`run`), so that importing this module
# (tests) does not clash with other absl flag definitions such as irstd_jax.main's --config.
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


def import_torch():
  """torch, or one error line (exit status 2): PyTorch is a test extra, not a dependency of
  the package."""
  try:
    import torch
  except ImportError:
    cli.fail(
      "PyTorch is not installed (pip install torch): the converter reads and writes .pt files with it"
    )
  return torch


def load_torch_state_dict(path: str):
  """The state_dict in a .pt file (unwrapped from {'state_dict': ...} / {'model': ...},
  'module.' prefixes dropped); ValueError naming the file when it holds none."""
  torch = import_torch()
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except OSError as e:
    raise ValueError(f"{path}: {e.strerror or e}") from None
  except Exception as e:  # noqa: BLE001 (torch's unpickler raises several kinds)
    raise ValueError(f"{path}: not a file torch.load reads: {type(e).__name__}: {e}") from None
  for key in ("state_dict", "model"):
    if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
      obj = obj[key]
  if not isinstance(obj, dict):
    raise ValueError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
  return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in obj.items()}


def abstract_variables(model_config):
  """Shapes of the Flax variables of the configured model (no compute)."""
  model = models.create_model(model_config)
  x = jnp.zeros((1, 16, 16, 1), jnp.float32)
  return model, jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def torch_to_orbax(state_dict, config, output_dir: str, step: int = 0, source: str = "") -> str:
  """Writes ``output_dir/checkpoints/<step>/``; returns the checkpoints directory."""
  model, template = abstract_variables(config.model)
  variables = torch_weights.torch_state_dict_to_flax(state_dict, template=template)
  tx = optim.make_optimizer(config.train, optim.learning_rate_schedule(config.train, 1))
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


def orbax_to_torch_state_dict(checkpoint_dir: str):
  """(PyTorch state_dict, meta) of an orbax checkpoint (workdir, checkpoints dir or
  step dir).  The state_dict is mapped back and must give the checkpoint's names and
  shapes (ValueError lists every difference)."""
  variables, meta = checkpointing.restore_variables(checkpoint_dir)
  state_dict = torch_weights.flax_to_torch_state_dict(variables)
  torch_weights.torch_state_dict_to_flax(state_dict, template=variables)
  return state_dict, meta


def main(argv) -> int:
  if len(argv) > 1:
    return cli.error(f"unexpected argument(s) {' '.join(argv[1:])}: every input is a --flag")
  if not _OUTPUT.value:
    return cli.error("--output is required (a folder, or a .pt file with --flax_checkpoint)")
  if _FLAX.value:
    torch = import_torch()
    try:
      state_dict, meta = orbax_to_torch_state_dict(_FLAX.value)
      torch.save(state_dict, _OUTPUT.value)
    except (FileNotFoundError, ValueError) as e:
      return cli.error(e)
    except OSError as e:
      return cli.error(f"--output {_OUTPUT.value}: {e.strerror or e}")
    print(
      f"wrote {_OUTPUT.value}: {len(state_dict)} tensors, model {meta['config']['model']['name']}"
    )
    return 0
  if not (_TORCH.value and _CONFIG.value):
    return cli.error("need --torch_checkpoint and --config (or --flax_checkpoint)")
  try:
    state_dict = load_torch_state_dict(_TORCH.value)
    path = torch_to_orbax(state_dict, _CONFIG.value, _OUTPUT.value, _STEP.value, _TORCH.value)
  except ValueError as e:
    return cli.error(e)
  print(f"wrote {path}/{_STEP.value} (model {_CONFIG.value.model.name}, {len(state_dict)} tensors)")
  return 0


def run() -> None:
  """`python -m irstd_jax.convert` and the `irstd-convert` command (pyproject.toml)."""
  _define_flags()
  app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
  run()
