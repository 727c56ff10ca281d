"""Speed: `benchmark` (the project's jitted JAX steps against idiomatic PyTorch,
`torch_models`), `profile_step` (where the JAX step's time goes) and `gpu_report.sh`
(one GPU session's training rows and benchmark). Run as `python -m tools.bench.<name>`
from the repository root."""
