"""Draws the spatial-attention kernels of a model: for every Gaussian-pinwheel
attention module, its Gaussian prior, soft and hard (forward) pinwheel masks and
the final kernel K = A * G * M (both descriptor channels), with sigma and theta
in the titles; CBAM modules show their free 7x7 kernel.

  # from a checkpoint written by irstd_jax.main
  python -m tools.analysis.inspect_kernels --checkpoint runs/demo/checkpoints --output k.png
  # from a fresh initialisation (no checkpoint needed)
  python -m tools.analysis.inspect_kernels --init_seed 0 --model_name l1_gp_rotated

Offsets follow irstd_jax.models.attention: rows = v (down), columns = u (right).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
import re

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from irstd_jax import checkpointing  # noqa: E402
from irstd_jax import default_config  # noqa: E402
from irstd_jax import models  # noqa: E402


def load_variables(args):
  """Returns (variables, resolved model config, source description)."""
  if args.checkpoint:
    variables, meta = checkpointing.restore_variables(args.checkpoint)
    config = meta.get("config", meta) if isinstance(meta, dict) else meta
    model_cfg = config["model"] if isinstance(config, dict) else config.model
    cfg = models.resolve_model_config(model_cfg)
    where = f"checkpoint {args.checkpoint}"
    if isinstance(meta, dict) and "step" in meta:
      where += f" (step {meta['step']}, epoch {meta.get('epoch', '?')})"
    return variables, cfg, where
  cfg = default_config.model_config()
  cfg.name = args.model_name
  cfg = models.resolve_model_config(cfg)
  model = models.create_model(cfg)
  # Parameter shapes do not depend on the image size: init on a tiny image.
  x = jnp.zeros((1, 16, 16, 1), jnp.float32)
  variables = jax.jit(lambda x: model.init(jax.random.key(args.init_seed), x, train=False))(x)
  return variables, cfg, f"fresh init (seed {args.init_seed}), model {cfg.name}"


def find_attention_modules(params, prefix=()):
  """Yields (path, subtree) of every spatial attention module in a params tree."""
  if not hasattr(params, "items"):
    return
  keys = set(params.keys())
  if "amplitude" in keys or "rho" in keys or "theta" in keys:
    yield prefix, params
    return
  if keys == {"conv"} and prefix and prefix[-1] == "spatial_attention":
    yield prefix, params
    return
  for k in sorted(params.keys(), key=_natural_key):
    yield from find_attention_modules(params[k], prefix + (k,))


def _natural_key(s):
  order = {"stem": 0, "encoder": 1, "middle": 2, "decoder": 3}
  head = re.split(r"_", s)[0]
  nums = [int(n) for n in re.findall(r"\d+", s)]
  if head == "decoder":  # decoder_3 runs before decoder_0
    nums = [-n for n in nums]
  return (order.get(head, 9), nums, s)


def kernel_parts(module_params, cfg):
  """numpy dict of sigma, theta, prior, soft_mask, mask, kernel for one module."""
  a = cfg.attention
  k = a.kernel_size
  if "conv" in module_params:  # CBAM free kernel
    return {"kernel": np.asarray(module_params["conv"]["kernel"], np.float32)}
  rho0 = models.attention.softplus_inverse(a.sigma_init - a.sigma_min)
  shape = (2,) if a.per_channel_sigma else ()
  rho = module_params.get("rho", np.full(shape, rho0, np.float32))
  theta = module_params.get("theta", np.float32(a.theta_init))
  amp = module_params.get("amplitude", np.full((k, k, 2, 1), a.amplitude_init, np.float32))
  parts = models.gaussian_kernel_parts(
    jnp.asarray(rho),
    jnp.asarray(theta),
    jnp.asarray(amp),
    kernel_size=k,
    num_blades=a.num_blades,
    twist=a.twist,
    sigma_min=a.sigma_min,
    mask=a.mask,
    prior=a.prior,
    hard=True,
  )
  out = {name: np.asarray(v, np.float32) for name, v in parts.items()}
  out["theta"] = float(np.asarray(theta))
  return out


def _fmt_sigma(sigma):
  sigma = np.atleast_1d(sigma)
  return "/".join(f"{s:.2f}" for s in sigma)


def draw(variables, cfg, source, output, module_filter=None, max_modules=None, dpi=70):
  params = variables["params"]
  mods = [
    (p, m)
    for p, m in find_attention_modules(params)
    if not module_filter or re.search(module_filter, "/".join(p))
  ]
  if max_modules:
    mods = mods[:max_modules]
  if not mods:
    raise SystemExit(f"no spatial attention modules found (model {cfg.name})")
  gaussian = any("conv" not in m for _, m in mods)
  cols = 5 if gaussian else 2
  nrows, ncols = len(mods), cols
  fig, axes = plt.subplots(nrows, ncols, figsize=(1.75 * ncols, 1.85 * nrows + 0.5), squeeze=False)
  a = cfg.attention
  for r, (path, mp) in enumerate(mods):
    parts = kernel_parts(mp, cfg)
    name = "/".join(p for p in path if p != "spatial_attention")
    if "conv" in mp:
      imgs = [parts["kernel"][..., 0, 0], parts["kernel"][..., 1, 0]]
      imgs += [None] * (ncols - 2)
      titles = [f"{name}\nCBAM K mean ch.", "CBAM K max ch."] + [""] * (ncols - 2)
      cmaps = ["RdBu_r", "RdBu_r"] + [None] * (ncols - 2)
    else:
      theta = parts["theta"]
      imgs = [
        parts["prior"][..., 0],
        parts["soft_mask"],
        parts["mask"],
        parts["kernel"][..., 0, 0],
        parts["kernel"][..., 1, 0],
      ]
      cmaps = ["viridis", "gray", "gray", "RdBu_r", "RdBu_r"]
      titles = [
        f"{name}\nprior, sigma={_fmt_sigma(parts['sigma'])}",
        f"soft mask\ntheta={theta:.3f} rad",
        f"hard mask (fwd)\ntheta={math.degrees(theta):.1f} deg",
        "K = A*G*M\nmean channel",
        "K = A*G*M\nmax channel",
      ]
    for c in range(ncols):
      ax = axes[r, c]
      ax.set_xticks([])
      ax.set_yticks([])
      if imgs[c] is None:
        ax.axis("off")
        continue
      img = imgs[c]
      if cmaps[c] == "RdBu_r":
        lim = float(np.abs(img).max()) or 1.0
        ax.imshow(img, cmap=cmaps[c], vmin=-lim, vmax=lim)
      else:
        ax.imshow(img, cmap=cmaps[c], vmin=0.0, vmax=1.0)
      ax.set_title(titles[c], fontsize=6.5)
  fig.suptitle(
    f"{cfg.name}: {source}\nk={a.kernel_size}, n={a.num_blades} "
    f"blades, twist={a.twist} rad/px, mask={a.mask}; rows v (down), "
    f"columns u (right)",
    fontsize=7.5,
  )
  fig.tight_layout()
  Path(output).parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(output, dpi=dpi)
  plt.close(fig)
  return len(mods)


def main(argv=None):
  ap = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  src = ap.add_mutually_exclusive_group()
  src.add_argument("--checkpoint", help="checkpoint directory (restore_variables)")
  src.add_argument(
    "--init_seed", type=int, default=0, help="fresh initialisation with this seed (default mode)"
  )
  ap.add_argument("--model_name", default="l1_gp_rotated", help="model name for fresh-init mode")
  ap.add_argument("--output", default="kernels.png")
  ap.add_argument("--modules", default=None, help='regex on module paths, e.g. "encoder|middle"')
  ap.add_argument("--max_modules", type=int, default=None)
  ap.add_argument("--dpi", type=int, default=70)
  args = ap.parse_args(argv)
  variables, cfg, source = load_variables(args)
  n = draw(variables, cfg, source, args.output, args.modules, args.max_modules, args.dpi)
  print(f"wrote {args.output} ({n} modules, {source})")


if __name__ == "__main__":
  main()
