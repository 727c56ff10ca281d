"""Shared test fixtures. Tests run on CPU; real data come from IRSTD_DATASETS.

The repository root is on the import path (pyproject.toml: `pythonpath = ["."]`), so
tests import `configs.<name>`, `tools.<group>.<name>` and `irstd_jax` as modules; the
scripts under tests/scripts/ run as `python -m tests.scripts.<name>` from the root.
"""

import atexit
import os
import pathlib
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One persistent JAX compilation cache for the session (set before JAX is imported, and
# inherited by every subprocess): the many runs of main / evaluate / predict on the same
# tiny configs, and in-process jits of the same programs, compile once.
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
  _CACHE = tempfile.mkdtemp(prefix="irstd_jax_tests_xla_")
  atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

# This process and its subprocesses compile without LLVM's optimisation passes (see
# subprocess_env) unless a test asks for the optimised build. XLA_FLAGS: the caller's.
UNOPTIMISED = "--xla_backend_optimization_level=0"
XLA_FLAGS = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split() if f != UNOPTIMISED)
os.environ["XLA_FLAGS"] = f"{XLA_FLAGS} {UNOPTIMISED}".strip()

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]


# Test files by their share of one 2-core run, heaviest first (seconds, 2026-12-07: `make
# test` / `make test-e2e`). With `--no-loadscope-reorder` (Makefile) pytest-xdist hands
# whole files to its workers in collection order, so the long files start first and the
# short ones fill the gaps (longest-first scheduling); xdist's own order, most tests first,
# started the longest file last and left one worker idle for minutes. The files whose
# tests are all end to end lead: they weigh nothing in `make test`. A file missing here
# runs after these.
HEAVIEST_FIRST = (
  "test_pretrained.py",  # 0 / 443
  "test_resume.py",  # 0 / 213
  "test_multiprocess.py",  # 0 / 142
  "test_failures.py",  # 180 / 103 (two rows moved to e2e after these were measured)
  "test_train.py",  # 152 / 0
  "test_parity.py",  # 125 / 0
  "test_main.py",  # 100 / 45
  "test_benchmark.py",  # 55 / 161
  "test_models.py",  # 85 / 0
  "test_evaluate.py",  # 75 / 0
  "test_ablate.py",  # 0 / 73
  "test_attention.py",  # 50 / 0
  "test_sharding.py",  # 50 / 0
  "test_losses.py",  # 50 / 0
  "test_convert.py",  # 24 / 28
  "test_datasets.py",  # 26 / 0
  "test_metric_writers.py",  # 8 / 0
)


def pytest_collection_modifyitems(config, items):
  """Orders the collected tests file by file as HEAVIEST_FIRST; within a file as written."""
  del config
  missing = [name for name in HEAVIEST_FIRST if not (REPO / "tests" / name).is_file()]
  if missing:
    raise pytest.UsageError(f"tests/conftest.py HEAVIEST_FIRST names no file {missing}")
  rank = {name: i for i, name in enumerate(HEAVIEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def datasets_root() -> pathlib.Path:
  """IRSTD_DATASETS, else ../shared/datasets next to the repository, else /work/shared."""
  if os.environ.get("IRSTD_DATASETS"):
    return pathlib.Path(os.environ["IRSTD_DATASETS"])
  candidates = [REPO.parent / "shared" / "datasets", pathlib.Path("/work/shared/datasets")]
  return next((c for c in candidates if (c / "nuaa_sirst").is_dir()), candidates[0])


@pytest.fixture(scope="session")
def shared_datasets() -> pathlib.Path:
  root = datasets_root()
  if not (root / "nuaa_sirst" / "images").is_dir():
    if os.environ.get("CI"):
      pytest.fail(f"CI must have the real data sets, but {root}/nuaa_sirst is missing")
    pytest.skip(f"real data sets not found at {root} (set IRSTD_DATASETS)")
  return root


def tiny_config(tmp_path, **overrides):
  """A synthetic config small enough for a CPU test: 32x32 images, narrow model."""
  from configs import synthetic  # imported here: JAX only after the environment above

  config = synthetic.get_config()
  config.dataset.data_dir = str(pathlib.Path(tmp_path) / "tfds")
  config.dataset.num_train = 16
  config.dataset.num_test = 6
  config.dataset.image_size = 32
  config.dataset.crop_size = 32
  config.model.channels = (4, 4, 8, 8, 8)
  config.model.blocks = (1, 1, 1, 1)
  config.train.num_epochs = 2
  config.train.batch_size = 4
  config.train.log_every_steps = 2
  config.loss.warm_epochs = 1
  config.eval.every_epochs = 1
  config.eval.batch_size = 4
  for key, value in overrides.items():
    set_field(config, key, value)
  return config


def set_field(config, key: str, value) -> None:
  """config['a']['b'] = value for key 'a.b' (KeyError when the field does not exist).

  A string given for a non-string field is converted to the field's type, as the
  `--config.a.b=value` command line does (e.g. '1.0' for a float).
  """
  node = config
  *path, leaf = key.split(".")
  for part in path:
    node = node[part]
  if leaf not in node:
    raise KeyError(f"config has no field {key!r}")
  if isinstance(value, str) and not isinstance(node[leaf], str):
    value = type(node[leaf])(value)
  node[leaf] = value


def subprocess_env(optimise: bool = False, **extra: str) -> dict[str, str]:
  """The environment of a test's subprocess (`python -m irstd_jax.main`, a tool, a script).

  CPU only, and unless `optimise` XLA's LLVM passes off, as in the test process itself
  (set above, before any JAX backend exists): the tests' cold compiles then take about
  two thirds of the time (a tiny `main` run 61 -> 44 s on the 2-core CPU, 2026-11-29;
  the in-process test files 5 min 58 s -> 5 min 7 s). The programs are the same; only the
  machine code is less optimised. A run that is faster optimised (README's mshnet-protocol
  evaluation: one shape, 214 images) passes `optimise=True`; in-process, a jit that must
  be the optimised build passes `compiler_options={"xla_backend_optimization_level": 3}`
  (tests/reference_torch/parity.py). `extra`: more variables; an XLA_FLAGS among them (e.g.
  a device count) is appended to the caller's flags.
  """
  flags = XLA_FLAGS if optimise else f"{XLA_FLAGS} {UNOPTIMISED}"
  if "XLA_FLAGS" in extra:
    flags += " " + extra.pop("XLA_FLAGS")
  return dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags.strip(), **extra)
