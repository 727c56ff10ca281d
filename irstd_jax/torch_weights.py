"""Weight mapping between Flax variables and PyTorch state_dicts of the reference model.

Used by ``irstd_jax.convert`` (``python -m irstd_jax.convert``) in both directions, and by
the parity and benchmark tests.  Numpy only: torch tensors are accepted as inputs and
converted with ``.numpy()``; torch itself is needed only to return torch tensors.

The module trees have the same names on both sides (see ``tests/reference_torch/model.py``),
so a state_dict key is the Flax path joined with dots plus a leaf name:

  Flax (params / batch_stats)              PyTorch state_dict            transform
  conv   .../kernel (kh, kw, in, out) HWIO  .../weight (out, in, kh, kw)  transpose(3, 2, 0, 1)
  dense  .../fc{1,2}/kernel (in, out)       .../fc{1,2}.weight (out, in, 1, 1)
                                                                        k.T[:, :, None, None]
  conv / dense .../bias (out,)              .../bias                      same
  BN     .../scale, .../bias                .../weight, .../bias          same
  BN     batch_stats .../mean, .../var      .../running_mean, running_var same
  -                                         .../num_batches_tracked       0 (int64) / dropped
  Gaussian attention .../rho, .../theta     .../rho, .../theta            same
  Gaussian attention .../amplitude (k,k,2,1) .../amplitude (1, 2, k, k)   transpose(3, 2, 0, 1)

Dense kernels are recognised by their Flax rank (2) or, from the PyTorch side, by the
module names ``fc1`` / ``fc2`` (the channel-attention MLP, 1x1 convs in PyTorch).
BN modules are recognised, from the PyTorch side, by their ``running_mean`` buffer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

_DENSE_NAMES = ("fc1", "fc2")


def _np(x) -> np.ndarray:
  if hasattr(x, "detach"):  # torch.Tensor
    x = x.detach().cpu().numpy()
  return np.asarray(x)


def flatten(tree: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
  """Nested mapping -> {path tuple: leaf}."""
  out = {}
  for k, v in tree.items():
    if hasattr(v, "items"):
      out.update(flatten(v, prefix + (str(k),)))
    else:
      out[prefix + (str(k),)] = v
  return out


def unflatten(flat: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
  out: dict[str, Any] = {}
  for path, v in flat.items():
    node = out
    for p in path[:-1]:
      node = node.setdefault(p, {})
    node[path[-1]] = v
  return out


def flax_to_torch_state_dict(variables: Mapping[str, Any], as_torch: bool = True):
  """{'params', 'batch_stats'} (numpy or jax arrays) -> state_dict (torch tensors when
  ``as_torch``, else numpy), including ``num_batches_tracked`` = 0 for every BN."""
  sd: dict[str, Any] = {}
  for path, leaf in flatten(variables["params"]).items():
    mod, name = ".".join(path[:-1]), path[-1]
    a = np.asarray(leaf, np.float32)
    if name == "kernel" and a.ndim == 4:
      key, a = "weight", a.transpose(3, 2, 0, 1)
    elif name == "kernel" and a.ndim == 2:
      key, a = "weight", a.T[:, :, None, None]
    elif name == "scale":
      key = "weight"
    elif name == "amplitude":
      key, a = "amplitude", a.transpose(3, 2, 0, 1)
    elif name in ("bias", "rho", "theta"):
      key = name
    else:
      raise ValueError(f"no PyTorch name for Flax parameter {'/'.join(path)} {a.shape}")
    sd[f"{mod}.{key}" if mod else key] = np.array(a, np.float32)  # keeps 0-d shapes
  for path, leaf in flatten(variables.get("batch_stats", {}) or {}).items():
    mod, name = ".".join(path[:-1]), path[-1]
    key = {"mean": "running_mean", "var": "running_var"}.get(name)
    if key is None:
      raise ValueError(f"unexpected batch_stats entry {'/'.join(path)}")
    sd[f"{mod}.{key}"] = np.asarray(leaf, np.float32)
    sd[f"{mod}.num_batches_tracked"] = np.asarray(0, np.int64)
  if as_torch:
    import torch  # optional: torch is a test extra, not a dependency of the package

    sd = {k: torch.from_numpy(np.array(v, copy=True)) for k, v in sd.items()}
  return sd


def torch_state_dict_to_flax(state_dict: Mapping[str, Any], template: Mapping[str, Any] = None):
  """PyTorch state_dict -> {'params', 'batch_stats'} of float32 numpy arrays.

  ``template``: optional Flax variables (arrays or ShapeDtypeStructs, e.g. from
  ``jax.eval_shape(model.init, ...)``); when given, the result must have exactly its
  tree structure and shapes, otherwise ValueError lists every difference.
  """
  sd = {k: _np(v) for k, v in state_dict.items()}
  bn_modules = {k[: -len(".running_mean")] for k in sd if k.endswith(".running_mean")}
  params: dict[tuple[str, ...], np.ndarray] = {}
  stats: dict[tuple[str, ...], np.ndarray] = {}
  for key, a in sd.items():
    mod, _, name = key.rpartition(".")
    path = tuple(mod.split(".")) if mod else ()
    if name == "num_batches_tracked":
      continue
    a = a.astype(np.float32)
    if name == "running_mean":
      stats[path + ("mean",)] = a
    elif name == "running_var":
      stats[path + ("var",)] = a
    elif name == "weight" and mod in bn_modules:
      params[path + ("scale",)] = a
    elif name == "weight" and path and path[-1] in _DENSE_NAMES:
      if a.ndim == 4:
        a = a[:, :, 0, 0]
      params[path + ("kernel",)] = np.ascontiguousarray(a.T)
    elif name == "weight" and a.ndim == 4:
      params[path + ("kernel",)] = np.ascontiguousarray(a.transpose(2, 3, 1, 0))
    elif name == "amplitude":
      params[path + ("amplitude",)] = np.ascontiguousarray(a.transpose(2, 3, 1, 0))
    elif name in ("bias", "rho", "theta"):
      params[path + (name,)] = a
    else:
      raise ValueError(f"no Flax name for PyTorch entry {key} {a.shape}")
  out = {"params": unflatten(params), "batch_stats": unflatten(stats)}
  if template is not None:
    check_matches(out, template)
  return out


def check_matches(variables: Mapping[str, Any], template: Mapping[str, Any]) -> None:
  """Raise ValueError unless ``variables`` has the keys and shapes of ``template``
  (collections 'params' and 'batch_stats')."""
  problems = []
  for col in ("params", "batch_stats"):
    got = flatten(variables.get(col, {}) or {})
    want = flatten(template.get(col, {}) or {})
    for p in sorted(set(want) - set(got)):
      problems.append(f"missing {col}/{'/'.join(p)} {tuple(want[p].shape)}")
    for p in sorted(set(got) - set(want)):
      problems.append(f"unexpected {col}/{'/'.join(p)} {tuple(got[p].shape)}")
    for p in sorted(set(got) & set(want)):
      if tuple(got[p].shape) != tuple(want[p].shape):
        problems.append(
          f"shape of {col}/{'/'.join(p)}: {tuple(got[p].shape)} != expected {tuple(want[p].shape)}"
        )
  if problems:
    raise ValueError("weights do not match the model:\n  " + "\n  ".join(problems))
