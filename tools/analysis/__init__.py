"""Analyses of training runs and of the method: `ablate` (grids of main runs, one table),
`robustness` (seeds x XLA:CPU code paths, held to a floor), `learning_curve` (main's logs
as a PNG), `scale_loss_analysis` (monotonicity of the scale-loss weights) and
`inspect_kernels` (the spatial-attention kernels). Run as `python -m
tools.analysis.<name>` from the repository root."""
