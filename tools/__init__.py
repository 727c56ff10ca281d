"""Benchmarks and analyses of the project, run from the repository root as modules:

  python -m tools.bench.benchmark ...      # tools/bench/: speed against PyTorch, profiles
  python -m tools.analysis.ablate ...      # tools/analysis/: grids, robustness, curves

Not part of the installed package (pyproject.toml packages only irstd_jax); the user
commands (train, evaluate, predict, export, convert) are `python -m irstd_jax.<command>`.
`tools/prepare_data.py` is still run as a script: `python tools/prepare_data.py`.
"""
