"""Benchmarks and analyses of the project, run from the repository root as modules:

  python -m tools.bench.benchmark ...      # tools/bench/: speed against PyTorch, profiles
  python -m tools.analysis.ablate ...      # tools/analysis/: grids, robustness, curves

Not part of the installed package (pyproject.toml packages only irstd_jax); the user
commands (main, evaluate, predict, prepare_data, export, convert) are
`python -m irstd_jax.<command>`.
"""
