"""Fail loudly and early: one row per failure case, each run as a subprocess on CPU.

Every row gives the command (main, evaluate or predict with the tiny config), how to
prepare its workdir, the expected exit status, a fragment of the expected stderr line,
and a check of what was (not) written. Config errors must stop before any compilation
and print exactly one line; the damaged-checkpoint, resume and divergence rows share one
tiny trained workdir. The subprocesses share a JAX compilation cache (and a constant
learning-rate schedule keeps the training program the same across runs), so the tiny
model's programs are compiled about once, unoptimised.
"""

from collections.abc import Callable
import dataclasses
import errno
import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

from conftest import REPO
from conftest import subprocess_env
import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image
import pytest
from test_main import TINY

from irstd_jax import checkpointing
from irstd_jax import cli
from irstd_jax import config_check
from irstd_jax import default_config
from irstd_jax import storage
from irstd_jax import train

# TINY with a cheaper model and data set: a plain U-Net without side outputs, 8 training
# images in RAM (2 steps an epoch), a constant schedule (the compiled step does not depend
# on the number of epochs, so the shared cache serves every row).
_REPLACED = ("--config.dataset.num_train=", "--config.dataset.num_test=")
FAST = [arg for arg in TINY if not arg.startswith(_REPLACED)] + [
  "--config.dataset.source=memory",
  "--config.dataset.num_train=8",
  "--config.dataset.num_test=2",
  "--config.model.name=unet",
  "--config.model.deep_supervision=False",
  "--config.train.schedule=constant",
]


@dataclasses.dataclass
class Ctx:
  tmp: pathlib.Path  # this row's scratch folder
  workdir: pathlib.Path  # the row's --workdir / --checkpoint
  shared: pathlib.Path  # the trained workdir every row may copy
  cache: pathlib.Path  # JAX compilation cache shared by the subprocesses
  holder: subprocess.Popen | None = None  # a process holding the workdir's lock


def _env(ctx: Ctx) -> dict:
  return subprocess_env(
    JAX_COMPILATION_CACHE_DIR=str(ctx.cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0"
  )


def _main_cmd(ctx: Ctx, args, config="configs/synthetic.py"):
  # A row's flag replaces FAST's (config_flags appends repeated tuple overrides).
  names = {arg.split("=", 1)[0] for arg in args}
  base = [arg for arg in FAST if arg.split("=", 1)[0] not in names]
  return [
    sys.executable,
    "-m",
    "irstd_jax.main",
    f"--config={config}",
    f"--workdir={ctx.workdir}",
    *base,
    *args,
  ]


def _run(ctx: Ctx, cmd) -> subprocess.CompletedProcess:
  return subprocess.run(cmd, cwd=REPO, env=_env(ctx), capture_output=True, text=True, timeout=300)


def _steps(directory: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _listing(workdir: pathlib.Path) -> dict:
  return {
    name: sorted(p.name for p in (workdir / name).iterdir())
    for name in (checkpointing.LATEST_DIR, checkpointing.BEST_DIR)
  }


def _truncate_data_files(step_dir: pathlib.Path) -> None:
  """Halves every data file of a step's OCDBT state (a disk-full / killed copy).

  Every file: how orbax spreads the data over files depends on timing, and halving only
  the largest one left a checkpoint that still restored (seen under pytest-xdist).
  """
  files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert files, f"no OCDBT data files under {step_dir}"
  for victim in files:
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])


# --------------------------------------------------------------------------- preparing


def copy_shared(ctx: Ctx) -> None:
  shutil.copytree(ctx.shared, ctx.workdir)


def damage_newest(ctx: Ctx) -> None:
  copy_shared(ctx)
  latest = ctx.workdir / checkpointing.LATEST_DIR
  _truncate_data_files(latest / str(_steps(latest)[-1]))


def damage_best(ctx: Ctx) -> None:
  copy_shared(ctx)
  best = ctx.workdir / checkpointing.BEST_DIR
  _truncate_data_files(best / str(_steps(best)[-1]))


def damage_all(ctx: Ctx) -> None:
  copy_shared(ctx)
  for name in (checkpointing.LATEST_DIR, checkpointing.BEST_DIR):
    for step in _steps(ctx.workdir / name):
      _truncate_data_files(ctx.workdir / name / str(step))


def held_by_another_run(ctx: Ctx) -> None:
  """The shared run's copy, its lock held by a live process (a second terminal's run)."""
  copy_shared(ctx)
  code = (
    "import sys, time\nfrom irstd_jax import workdir_lock\n"
    "with workdir_lock.hold(sys.argv[1]):\n  print('held', flush=True)\n  time.sleep(300)"
  )
  ctx.holder = subprocess.Popen(
    [sys.executable, "-c", code, str(ctx.workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True
  )
  assert ctx.holder.stdout.readline().strip() == "held"


def checkpoints_dir_is_a_file(ctx: Ctx) -> None:
  ctx.workdir.mkdir(parents=True)
  (ctx.workdir / checkpointing.LATEST_DIR).write_text("not a directory")


def file_as_checkpoint(ctx: Ctx) -> None:
  ctx.workdir.parent.mkdir(parents=True, exist_ok=True)
  ctx.workdir.write_text("not a checkpoint")


def checkpoints_file_untouched(ctx: Ctx, proc) -> None:
  assert (ctx.workdir / checkpointing.LATEST_DIR).read_text() == "not a directory"
  assert sorted(p.name for p in ctx.workdir.iterdir()) == [checkpointing.LATEST_DIR, "lock"]


def no_predict_output(ctx: Ctx, proc) -> None:
  assert not (ctx.tmp / "out").exists()
  assert ctx.workdir.read_text() == "not a checkpoint"


def shared_and_an_image_folder(ctx: Ctx) -> None:
  copy_shared(ctx)
  (ctx.tmp / "in").mkdir()
  Image.fromarray(np.zeros((16, 16), np.uint8)).save(ctx.tmp / "in" / "a.png")


def random_bytes_everywhere(ctx: Ctx) -> None:
  """Every file of every checkpoint replaced with random bytes of the same size."""
  copy_shared(ctx)
  rng = np.random.default_rng(0)
  for name in (checkpointing.LATEST_DIR, checkpointing.BEST_DIR):
    for path in (ctx.workdir / name).rglob("*"):
      if path.is_file():
        path.write_bytes(rng.integers(0, 256, max(path.stat().st_size, 16), np.uint8).tobytes())


def file_as_workdir(ctx: Ctx) -> None:
  ctx.workdir.parent.mkdir(parents=True, exist_ok=True)
  ctx.workdir.write_text("not a directory")


def tiny_set(ctx: Ctx) -> pathlib.Path:
  """A tiny uniform-layout NUAA-SIRST folder, ctx.tmp/manual: 3 train and 1 test images of
  32x32 noise (about 1 kB each as PNG)."""
  root = ctx.tmp / "manual"
  rng = np.random.default_rng(0)
  for name in ("a", "b", "c", "d"):
    for sub in ("images", "masks"):
      (root / sub).mkdir(parents=True, exist_ok=True)
      array = rng.integers(0, 256, (32, 32)) if sub == "images" else np.zeros((32, 32))
      Image.fromarray(array.astype(np.uint8)).save(root / sub / f"{name}.png")
  (root / "splits").mkdir()
  (root / "splits" / "train.txt").write_text("a\nb\nc\n")
  (root / "splits" / "test.txt").write_text("d\n")
  return root


def utf16_split_set(ctx: Ctx) -> None:
  """tiny_set, its train split saved as UTF-16."""
  root = tiny_set(ctx)
  (root / "splits" / "train.txt").write_text("a\nb\nc\n", encoding="utf-16")


def tiny_set_and_a_file_as_data_dir(ctx: Ctx) -> None:
  tiny_set(ctx)
  (ctx.tmp / "tfds").write_text("not a directory")


def tiny_set_and_a_read_only_data_dir(ctx: Ctx) -> None:
  if os.geteuid() == 0:
    pytest.skip("root writes into read-only folders")
  tiny_set(ctx)
  (ctx.tmp / "tfds").mkdir(mode=0o555)


# ---------------------------------------------------------------------------- commands


def main_with(*args, config="configs/synthetic.py") -> Callable:
  return lambda ctx: _run(ctx, _main_cmd(ctx, [a.format(ctx=ctx) for a in args], config))


def evaluate_with(*args) -> Callable:
  return lambda ctx: _run(
    ctx,
    [
      sys.executable,
      "-m",
      "irstd_jax.evaluate",
      f"--checkpoint={ctx.workdir}",
      f"--output={ctx.tmp / 'eval'}",
      "--num_figures=0",
      *[a.format(ctx=ctx) for a in args],
    ],
  )


def predict_with(*args) -> Callable:
  return lambda ctx: _run(
    ctx,
    [
      sys.executable,
      "-m",
      "irstd_jax.predict",
      f"--checkpoint={ctx.workdir}",
      f"--input={REPO / 'tests'}",
      *[a.format(ctx=ctx) for a in args],
    ],
  )


# Runs argv[2:] with RLIMIT_FSIZE at argv[1] bytes. Not subprocess's preexec_fn: forking a
# process whose JAX threads run is unsafe (JAX warns of deadlocks); exec keeps one process.
_WITH_FILE_SIZE_LIMIT = (
  "import os, resource, sys; n = int(sys.argv[1]); "
  "resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); os.execv(sys.argv[2], sys.argv[2:])"
)


def main_with_file_size_limit(limit: int, *args) -> Callable:
  """main whose every file may grow to `limit` bytes (RLIMIT_FSIZE): a write past it fails
  with EFBIG (Python ignores SIGXFSZ), as a write to a full disk fails with ENOSPC. Without
  the compilation cache: its entries are larger than a checkpoint's files."""

  def run(ctx: Ctx) -> subprocess.CompletedProcess:
    cmd = _main_cmd(ctx, [*args, "--compilation_cache_dir="])
    env = _env(ctx)
    del env["JAX_COMPILATION_CACHE_DIR"]
    limited = [sys.executable, "-c", _WITH_FILE_SIZE_LIMIT, str(limit), *cmd]
    return subprocess.run(limited, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

  return run


def prepare_data_with(*args, file_size_limit: int = 0) -> Callable:
  """python -m irstd_jax.prepare_data on tiny_set's folder into ctx.tmp/tfds (optionally with every
  file limited to `file_size_limit` bytes, as main_with_file_size_limit)."""

  def run(ctx: Ctx) -> subprocess.CompletedProcess:
    cmd = [
      sys.executable,
      "-m",
      "irstd_jax.prepare_data",
      "--dataset=nuaa_sirst",
      f"--manual_dir={ctx.tmp / 'manual'}",
      f"--data_dir={ctx.tmp / 'tfds'}",
      *args,
    ]
    if file_size_limit:
      cmd = [sys.executable, "-c", _WITH_FILE_SIZE_LIMIT, str(file_size_limit), *cmd]
    return _run(ctx, cmd)

  return run


def main_interrupted(at_step: int, *args) -> Callable:
  """main, sent SIGINT once it logs `step <at_step>/`."""

  def run(ctx: Ctx) -> subprocess.CompletedProcess:
    cmd = _main_cmd(ctx, ["--config.train.log_every_steps=1", *args])
    proc = subprocess.Popen(
      cmd, cwd=REPO, env=_env(ctx), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = []
    for line in proc.stdout:
      lines.append(line)
      if f" step {at_step}/" in line:
        proc.send_signal(signal.SIGINT)
        break
    rest, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, "".join(lines) + rest, err)

  return run


def main_interrupted_at_start(signum: int, after_s: float = 1.0) -> Callable:
  """main, sent `signum` `after_s` seconds after it starts (while it imports JAX)."""

  def run(ctx: Ctx) -> subprocess.CompletedProcess:
    cmd = _main_cmd(ctx, [])
    proc = subprocess.Popen(
      cmd, cwd=REPO, env=_env(ctx), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(after_s)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

  return run


# ------------------------------------------------------------------------------ checks


def nothing_written(ctx: Ctx, proc) -> None:
  assert not ctx.workdir.exists(), sorted(ctx.workdir.iterdir())


def no_checkpoint_written(ctx: Ctx, proc) -> None:
  assert not (ctx.workdir / checkpointing.LATEST_DIR).exists()


def input_folder_untouched(ctx: Ctx, proc) -> None:
  assert "inside the input folder" in proc.stderr
  assert sorted(p.name for p in (ctx.tmp / "in").iterdir()) == ["a.png"]


def workdir_still_a_file(ctx: Ctx, proc) -> None:
  assert ctx.workdir.read_text() == "not a directory"


def no_eval_output(ctx: Ctx, proc) -> None:
  assert not (ctx.tmp / "eval").exists()


def checkpoints_untouched(ctx: Ctx, proc) -> None:
  assert _listing(ctx.workdir) == _listing(ctx.shared)
  assert (ctx.workdir / "final_metrics.json").read_text() == (
    ctx.shared / "final_metrics.json"
  ).read_text()


def refused_naming_the_holder(ctx: Ctx, proc) -> None:
  try:
    assert f"in use by pid {ctx.holder.pid} on " in proc.stderr
    checkpoints_untouched(ctx, proc)
  finally:
    ctx.holder.kill()
    ctx.holder.wait()


def resumed_from_the_older_step(ctx: Ctx, proc) -> None:
  latest = ctx.workdir / checkpointing.LATEST_DIR
  newest = _steps(ctx.shared / checkpointing.LATEST_DIR)[-1]
  assert f"{newest}.corrupt" in os.listdir(latest)
  assert _steps(latest)[-1] == newest  # trained again up to it
  older = _steps(ctx.shared / checkpointing.LATEST_DIR)[-2]
  assert f"resumed from step {older} " in proc.stdout
  assert json.loads((ctx.workdir / "final_metrics.json").read_text())["step"] == newest


def evaluated_the_fallback(ctx: Ctx, proc) -> None:
  newest = _steps(ctx.shared / checkpointing.LATEST_DIR)[-1]
  assert f"using {ctx.workdir / checkpointing.LATEST_DIR / str(newest)} instead" in proc.stderr
  assert json.loads((ctx.tmp / "eval" / "report.json").read_text())["metrics"]
  assert _listing(ctx.workdir) == _listing(ctx.shared)  # evaluate moves nothing


def started_from_the_shared_weights(ctx: Ctx, proc) -> None:
  assert "initialising the parameters from" in proc.stdout
  source, _ = checkpointing.restore_variables(str(ctx.shared))
  trained, meta = checkpointing.restore_variables(str(ctx.workdir), prefer_best=False)
  assert meta["step"] == 2  # counted from 0: one epoch of 2 steps
  # Two Adam steps of 2e-3 move a parameter by at most ~4e-3; a fresh init (seed 1)
  # would differ by the size of the weights themselves.
  for a, b in zip(jax.tree.leaves(source["params"]), jax.tree.leaves(trained["params"])):
    np.testing.assert_allclose(a, b, atol=1e-2)


def saved_at_the_interrupt(ctx: Ctx, proc) -> None:
  saved = [line for line in proc.stdout.splitlines() if line.startswith("SIGINT: saved")]
  assert saved, proc.stdout
  step = int(saved[0].split("step ")[1].split(";")[0])
  assert step >= 1 and _steps(ctx.workdir / checkpointing.LATEST_DIR)[-1] == step
  assert not (ctx.workdir / "final_metrics.json").exists()  # it stopped early


def diverged_and_saved_nothing(ctx: Ctx, proc) -> None:
  line = proc.stderr.splitlines()[-1]
  assert "; last finite loss " in line and " at step 1; " in line, line
  assert line.endswith("lower train.learning_rate (now 10) or set train.grad_clip_norm")
  # Step 2 ends the first epoch: its evaluation and checkpoint never happened.
  assert _listing(ctx.workdir) == {checkpointing.LATEST_DIR: [], checkpointing.BEST_DIR: []}
  assert not (ctx.workdir / "final_metrics.json").exists()
  assert "test @ epoch" not in proc.stdout


def kept_the_complete_checkpoints(ctx: Ctx, proc) -> None:
  # Steps 2 and 4 (and best 4) as they were; no trace of step 6, complete or temporary.
  assert _listing(ctx.workdir) == _listing(ctx.shared)
  assert not list(ctx.workdir.rglob("*orbax-checkpoint-tmp*"))
  assert (ctx.workdir / "final_metrics.json").read_text() == (
    ctx.shared / "final_metrics.json"
  ).read_text()
  line = proc.stderr.splitlines()[-1]
  assert " free of " in line and line.endswith("resume from step 4"), line
  assert all(x.startswith(("warning: ", "error: ")) for x in proc.stderr.splitlines())
  _, meta = checkpointing.restore_variables(str(ctx.workdir), prefer_best=False)
  assert meta["step"] == 4  # the newest complete step still loads


def data_dir_file_untouched(ctx: Ctx, proc) -> None:
  assert (ctx.tmp / "tfds").read_text() == "not a directory"
  assert "validating" not in proc.stdout  # refused before the folder was validated


def data_dir_left_empty(ctx: Ctx, proc) -> None:
  assert sorted(p.name for p in (ctx.tmp / "tfds").iterdir()) == []


def no_data_set_written(ctx: Ctx, proc) -> None:
  """Nothing of the data set: no record file, no incomplete.* folder, no version folder."""
  written = [p for p in (ctx.tmp / "tfds").rglob("*") if p.is_file()]
  assert all(p.name == "metadata.json" for p in written), written  # TFDS's .config note
  assert not list((ctx.tmp / "tfds").rglob("incomplete*"))
  assert not list((ctx.tmp / "tfds").rglob("1.0.0"))


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  run: Callable  # Ctx -> CompletedProcess
  status: int
  stderr: str  # a fragment of the last stderr line
  check: Callable  # (Ctx, proc) -> None: what was (not) written
  prepare: Callable | None = None  # Ctx -> None, before the run
  one_line: bool = False  # stderr is exactly that one line (config errors)


ROWS = [
  # 1. Config errors: before TensorFlow, data or compilation; one line; nothing written.
  #    (Every checked field: test_validate_config_refuses below, in-process.)
  Row(
    "negative learning rate",
    main_with("--config.train.learning_rate=-0.001"),
    2,
    "error: train.learning_rate: -0.001 is too small (a number in (0, 10])",
    nothing_written,
    one_line=True,
  ),
  Row(
    "unknown model",
    main_with("--config.model.name=unet3"),
    2,
    "error: model.name: 'unet3' is not a known model (one of unet, ",
    nothing_written,
    one_line=True,
  ),
  Row(
    "misspelt field",
    main_with("--config.train.learning_rte=0.1"),
    2,
    "error: --config.train.learning_rte: no such config field (did you mean train.learning_rate?)",
    nothing_written,
    one_line=True,
  ),
  Row(
    "workdir is a file",
    main_with(),
    2,
    "is an existing file, not a directory",
    workdir_still_a_file,
    prepare=file_as_workdir,
    one_line=True,
  ),
  Row(
    "evaluate override typo",
    evaluate_with("--config.eval.treshold=0.9"),
    2,
    "error: --config.eval.treshold: no such config field (did you mean eval.threshold?)",
    no_eval_output,
    prepare=copy_shared,
    one_line=True,
  ),
  Row(
    "predict into a file",
    predict_with("--output={ctx.workdir}/final_metrics.json"),
    2,
    "error: --output: ",
    checkpoints_untouched,
    prepare=copy_shared,
    one_line=True,
  ),
  # 1b. Checks that need the data: right after loading it, before compiling.
  Row(
    "batch larger than the data set",
    main_with("--config.train.batch_size=64"),
    2,
    "error: train.batch_size: 64 is larger than the 8 training images (at most 8)",
    nothing_written,
  ),
  # 4. A split file that is not UTF-8 text.
  Row(
    "UTF-16 split file",
    main_with("--config.dataset.manual_dir={ctx.tmp}/manual", config="configs/nuaa_sirst.py"),
    2,
    "splits/train.txt: split file is not UTF-8 text (byte 0xff at offset 0: it starts "
    "with a UTF-16 byte-order mark)",
    nothing_written,
    prepare=utf16_split_set,
  ),
  # 2. Divergence: stops at the first non-finite loss, saves nothing. train.learning_rate
  #    is at most 10, and this BatchNorm network shrugs off SGD at 10 on sane inputs: here
  #    every input pixel is about -4e17 (an absurd normalisation mean), so the first step is
  #    finite and the second is NaN (XLA:CPU, optimised or not; means of 1e19 and 1e20 do).
  Row(
    "divergence",
    main_with(
      "--config.train.optimizer=sgd",
      "--config.train.learning_rate=10",
      "--config.dataset.mean=1e20",
    ),
    3,
    "error: training diverged at step 2 (loss nan, grad_norm ",
    diverged_and_saved_nothing,
  ),
  Row(
    "learning rate far too large",
    main_with("--config.train.learning_rate=1e9"),
    2,
    "error: train.learning_rate: 1000000000.0 is too large (a number in (0, 10])",
    nothing_written,
    one_line=True,
  ),
  # 3. SIGINT: a checkpoint at the current step, then 130.
  Row("SIGINT", main_interrupted(1), 130, "", saved_at_the_interrupt),
  # 5. Damaged checkpoints: resume from the newest good one; evaluate falls back.
  Row(
    "damaged newest checkpoint, resume",
    main_with("--config.train.num_epochs=2"),
    0,
    "cannot be read (ValueError: ",
    resumed_from_the_older_step,
    prepare=damage_newest,
  ),
  Row(
    "damaged best checkpoint, evaluate",
    evaluate_with(),
    0,
    "is damaged (ValueError: ",
    evaluated_the_fallback,
    prepare=damage_best,
  ),
  Row(
    "every checkpoint damaged, evaluate",
    evaluate_with(),
    2,
    ": no readable checkpoint: ",
    no_eval_output,
    prepare=damage_all,
  ),
  Row(
    "config file missing",
    main_with("--config={ctx.tmp}/nope.py"),
    2,
    "error: --config: ",
    nothing_written,
    one_line=True,
  ),
  Row("positional argument", main_with("extra"), 2, "error: unexpected arguments", nothing_written),
  Row(
    "checkpoints folder is a file",
    main_with(),
    2,
    "/checkpoints is an existing file, not a directory",
    checkpoints_file_untouched,
    prepare=checkpoints_dir_is_a_file,
    one_line=True,
  ),
  Row(
    "checkpoint path is a file, predict",
    predict_with("--output={ctx.tmp}/out"),
    2,
    ": is a file, not a checkpoint directory",
    no_predict_output,
    prepare=file_as_checkpoint,
  ),
  Row(
    "SIGINT at start-up",
    main_interrupted_at_start(signal.SIGINT),
    130,
    "error: stopped by SIGINT; checkpoints already written are kept",
    no_checkpoint_written,
    one_line=True,
  ),
  Row(
    "predict output inside its input",
    predict_with("--input={ctx.tmp}/in", "--output={ctx.tmp}/in/pred"),
    2,
    "error: --output: ",
    input_folder_untouched,
    prepare=shared_and_an_image_folder,
  ),
  Row(
    "evaluate with a negative figure count",
    evaluate_with("--num_figures=-1"),
    2,
    "error: --num_figures: -1 is negative (an integer >= 0)",
    no_eval_output,
    prepare=copy_shared,
  ),
  Row(
    "every checkpoint file random bytes, evaluate",
    evaluate_with(),
    2,
    "/_CHECKPOINT_METADATA: cannot be read (UnicodeDecodeError: ",
    no_eval_output,
    prepare=random_bytes_everywhere,
    one_line=True,
  ),
  # 7. A second run on a workdir whose run is still alive: refused before anything moves.
  Row(
    "workdir held by a live run",
    main_with(),
    2,
    "is in use by pid ",
    refused_naming_the_holder,
    prepare=held_by_another_run,
    one_line=True,
  ),
  # 6. A resume whose config changed the saved state's shape; train.init_from.
  Row(
    "resume with another model and optimizer",
    main_with("--config.model.channels=(8,8,8,8,8)", "--config.train.optimizer=sgd"),
    2,
    "holds a run (checkpoint step 4) that differs from this config where the saved "
    "state's shape depends on it: model.channels ((4, 4, 8, 8, 8) -> (8, 8, 8, 8, 8)), "
    "train.optimizer ('adam' -> 'sgd') (resume with the old values; or pass another "
    "--workdir; or start another --workdir from its weights with "
    "--config.train.init_from=",
    checkpoints_untouched,
    prepare=copy_shared,
  ),
  Row(
    "init_from of another shape",
    main_with("--config.train.init_from={ctx.shared}", "--config.model.channels=(8,8,8,8,8)"),
    2,
    "error: train.init_from: ",
    nothing_written,
  ),
  Row(
    "init_from",
    main_with(
      "--config.train.init_from={ctx.shared}", "--config.seed=1", "--config.train.num_epochs=1"
    ),
    0,
    "",
    started_from_the_shared_weights,
  ),
  # 8. The file system refuses a write (disk full, quota, file-size limit).
  Row(
    "checkpoint save over the file-size limit",
    # Resumes at step 4 and saves step 6: the state's files (20-140 kB) exceed 20 kB.
    main_with_file_size_limit(20_000, "--config.train.num_epochs=3"),
    4,
    "/checkpoints/6: checkpoint not saved: [Errno 27] File too large (EFBIG): a file would "
    "exceed this process's file-size limit (ulimit -f); ",
    kept_the_complete_checkpoints,
    prepare=copy_shared,
  ),
  Row(
    "prepare_data into a file",
    prepare_data_with(),
    2,
    "error: --data_dir: ",
    data_dir_file_untouched,
    prepare=tiny_set_and_a_file_as_data_dir,
    one_line=True,
  ),
  Row(
    "prepare_data into a read-only folder",
    prepare_data_with(),
    2,
    "/tfds is not writable (a writable directory, or one that can be created)",
    data_dir_left_empty,
    prepare=tiny_set_and_a_read_only_data_dir,
    one_line=True,
  ),
  Row(
    "prepare_data over the file-size limit",
    # The train split's record file (3 noise images of about 1 kB) exceeds 2000 bytes.
    prepare_data_with(file_size_limit=2000),
    2,
    "/tfds: the nuaa_sirst data set cannot be written: [Errno 27] File too large (EFBIG): ",
    no_data_set_written,
    prepare=tiny_set,
  ),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
  """One tiny trained workdir: 2 epochs of 2 steps, checkpoints at steps 2 and 4."""
  root = tmp_path_factory.mktemp("failures")
  ctx = Ctx(root, root / "shared", root / "shared", root / "jax_cache")
  proc = _run(ctx, _main_cmd(ctx, ["--config.train.num_epochs=2"]))
  assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
  assert _steps(ctx.workdir / checkpointing.LATEST_DIR) == [2, 4]
  return ctx


# Rows that train a whole run (resume after damage, init_from) or until the file system
# refuses a write: whole commands, 25-37 s each on 2 cores (`make test-e2e`).
E2E_ROWS = (
  "damaged newest checkpoint, resume",
  "init_from",
  "checkpoint save over the file-size limit",
  "prepare_data over the file-size limit",
)


@pytest.mark.parametrize(
  "row",
  [pytest.param(r, marks=pytest.mark.e2e) if r.name in E2E_ROWS else r for r in ROWS],
  ids=[row.name for row in ROWS],
)
def test_failure_case(row, shared, tmp_path):
  ctx = Ctx(tmp_path, tmp_path / "run", shared.workdir, shared.cache)
  if row.prepare is not None:
    row.prepare(ctx)
  proc = row.run(ctx)
  report = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-3000:]}"
  assert proc.returncode == row.status, report
  assert "Traceback" not in proc.stderr, report
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  if row.stderr:
    assert any(row.stderr in line for line in lines), report
  if row.status not in (0, 130):
    assert lines[-1].startswith("error: ") and row.stderr in lines[-1], report
  if row.one_line:
    assert len(lines) == 1, report
  row.check(ctx, proc)


# ---------------------------------------------------------------- in-process details


def test_metrics_files_are_strict_json(shared):
  final = (shared.workdir / "final_metrics.json").read_text()
  json.loads(final, parse_constant=lambda name: pytest.fail(f"{name} in final_metrics.json"))
  assert "null" in final  # Pd of the size classes without targets is NaN -> null


VALIDATION = [  # field, value, the message of validate_config(purpose='train')
  ("train.learning_rate", float("nan"), "train.learning_rate: nan is not a finite number"),
  ("train.learning_rate", float("inf"), "train.learning_rate: inf is not a finite number"),
  ("train.learning_rate", "1e-3", "train.learning_rate: '1e-3' is not a number"),
  ("train.optimizer", "adamax", "train.optimizer: 'adamax' is not a known optimizer"),
  (
    "train.schedule",
    "linear",
    "train.schedule: 'linear' is not a known schedule (one of constant, cosine, poly)",
  ),
  ("loss.scale_weight", "variance", "loss.scale_weight: 'variance' is not a known"),
  ("loss.name", "iou", "loss.name: 'iou' is not a known loss"),
  ("dataset.source", "disk", "dataset.source: 'disk' is not a known data source"),
  ("dataset.name", "sirst", "dataset.name: 'sirst' is not a known data set"),
  ("model.dtype", "float16", "model.dtype: 'float16' is not a known compute dtype"),
  ("model.channels", (4, 8), "model.channels: (4, 8) is not 5 positive integers"),
  ("train.batch_size", 0, "train.batch_size: 0 is too small (an integer >= 1)"),
  ("train.batch_size", 2.5, "train.batch_size: 2.5 is not an integer"),
  ("eval.batch_size", 0, "eval.batch_size: 0 is too small (an integer >= 1)"),
  ("dataset.crop_size", 8, "dataset.crop_size: 8 is too small (an integer >= 16)"),
  ("train.num_epochs", 0, "train.num_epochs: 0 is too small (an integer >= 1)"),
  ("loss.warm_epochs", -1, "loss.warm_epochs: -1 is too small (an integer >= 0)"),
  ("eval.threshold", 1.0, "eval.threshold: 1.0 is too large (a number in [0, 1))"),
  ("eval.threshold", -0.1, "eval.threshold: -0.1 is too small (a number in [0, 1))"),
  ("train.grad_accum_steps", 0, "train.grad_accum_steps: 0 is too small"),
  ("train.weight_decay", -1e-4, "train.weight_decay: -0.0001 is too small"),
  ("eval.every_epochs", 0, "eval.every_epochs: 0 is too small"),
  ("dataset.std", 0.0, "dataset.std: 0.0 is too small (a finite number > 0)"),
  ("train.profile", "5:2", "train.profile: '5:2' is not a step count or range"),
  ("model.output_prior", 0.9, "model.output_prior: 0.9 is too large (a number in [0, 0.5])"),
]


@pytest.mark.parametrize(
  "field, value, message", VALIDATION, ids=[f"{f}={v!r}" for f, v, _ in VALIDATION]
)
def test_validate_config_refuses(field, value, message):
  config = default_config.base_config()
  section, name = field.split(".")
  with config.ignore_type():  # the wrong types a hand-written config file can hold
    config[section][name] = value
  with pytest.raises(config_check.ConfigError) as info:
    config_check.validate_config(config, purpose="train")
  assert str(info.value).startswith(message) and "\n" not in str(info.value)
  assert info.value.field == field


def test_the_default_and_shipped_configs_are_valid(tmp_path):
  config_check.validate_config(default_config.base_config(), workdir=str(tmp_path / "w"))
  names = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem != "__init__")
  assert "synthetic" in names and "nuaa_sirst_cpu" in names
  for name in names:
    module = importlib.import_module(f"configs.{name}")
    config_check.validate_config(module.get_config(), purpose="train")


def test_divergence_guard_names_the_step_and_checks_the_state_before_a_save():
  guard = train._DivergenceGuard(default_config.base_config().train)
  guard.check_window([{"loss": np.float32(0.75), "grad_norm": np.float32(2.0)}] * 2, 7)
  with pytest.raises(
    train.TrainingDiverged,
    match=(
      r"^training diverged at step 10 \(loss inf, grad_norm 3\); last finite loss 0.75 at "
      r"step 9; lower train.learning_rate \(now 0.001\) or set train.grad_clip_norm$"
    ),
  ):
    guard.check_window(
      [
        {"loss": np.float32(0.75), "grad_norm": np.float32(2.0)},
        {"loss": np.float32(np.inf), "grad_norm": np.float32(3.0)},
      ],
      9,
    )
  state = train.TrainState.create(
    apply_fn=None, params={"w": jnp.ones(3)}, tx=optax.adam(1e-3), batch_stats={}
  )
  guard.check_state(state, 9)
  bad = state.replace(params={"w": jnp.array([1.0, np.nan, 1.0])})
  with pytest.raises(train.TrainingDiverged, match="at step 11 .non-finite parameters"):
    guard.check_state(bad, 11)


def _tiny_state(step: int) -> dict:
  leaf = np.full(3, float(step), np.float32)
  return {"step": np.int32(step), "params": {"w": leaf}, "batch_stats": {"m": leaf}}


def test_a_save_on_a_full_disk_is_one_line_naming_the_step_and_keeps_the_complete_ones(
  tmp_path, monkeypatch
):
  checkpoints = tmp_path / checkpointing.LATEST_DIR
  with pytest.raises(checkpointing.CheckpointSaveError) as info:
    with checkpointing.Checkpointer(str(tmp_path)) as checkpointer:
      checkpointer.save(1, _tiny_state(1), {"step": 1})

      def full_disk(step, **kwargs):  # what orbax leaves when a write fails: a tmp folder
        (checkpoints / f"{step}.orbax-checkpoint-tmp").mkdir()
        raise OSError(errno.ENOSPC, "No space left on device")

      monkeypatch.setattr(checkpointer.latest, "save", full_disk)
      checkpointer.save(2, _tiny_state(2), {"step": 2})
  line = str(info.value)
  assert line.startswith(
    f"{checkpoints}/2: checkpoint not saved: [Errno 28] No space left on device (ENOSPC); "
  )
  assert " free of " in line and line.endswith("resume from step 1") and "\n" not in line
  assert sorted(os.listdir(checkpoints)) == ["1"]  # the failed step's tmp folder is gone
  variables, meta = checkpointing.restore_variables(str(tmp_path), prefer_best=False)
  assert meta["step"] == 1 and variables["params"]["w"].tolist() == [1.0, 1.0, 1.0]


def test_check_saves_raises_when_a_background_save_failed(tmp_path, monkeypatch):
  """An async save's failure surfaces at the next training step, not at the next save."""
  with checkpointing.Checkpointer(str(tmp_path)) as checkpointer:
    checkpointer.save(3, _tiny_state(3), {"step": 3})
    checkpointer.latest.wait_until_finished()  # really written; the failure is simulated
    tensorstore_error = ValueError(
      'OUT_OF_RANGE: Error writing local file "x": Failed to write 64194 bytes to '
      "file 6: File too large [os_error_code='27']"
    )
    monkeypatch.setattr(checkpointer.latest, "is_saving_in_progress", lambda: False)
    monkeypatch.setattr(
      checkpointer.latest,
      "wait_until_finished",
      lambda: (_ for _ in ()).throw(tensorstore_error),
    )
    with pytest.raises(checkpointing.CheckpointSaveError, match=r"/checkpoints/3: .*\(EFBIG\)"):
      checkpointer.check_saves()
    with pytest.raises(checkpointing.CheckpointSaveError):  # and at every later save
      checkpointer.save(4, _tiny_state(4), {"step": 4})
    monkeypatch.undo()


def test_os_error_numbers_are_found_in_orbax_and_tensorstore_errors():
  assert storage.os_error_number(OSError(errno.EDQUOT, "Disk quota exceeded")) == (errno.EDQUOT)
  wrapped = RuntimeError("save failed")
  wrapped.__cause__ = ValueError("Failed writing ... [os_error_code='28']")
  assert storage.os_error_number(wrapped) == errno.ENOSPC
  assert storage.os_error_number(ValueError("not an OS error")) is None
  # ArrayRecord (TFDS's writer) gives only the C library's text.
  arrayrecord = RuntimeError(
    'Failed to finalize writing of split "train": write() failed: File too large'
  )
  assert storage.os_error_number(arrayrecord) == errno.EFBIG
  assert storage.os_error_text(wrapped) == "[Errno 28] No space left on device (ENOSPC)"


def test_directory_problem_names_a_file_a_read_only_folder_and_what_blocks_a_new_one(
  tmp_path, monkeypatch
):
  (tmp_path / "file").write_text("x")
  assert storage.directory_problem(str(tmp_path / "file")) == (
    f"{tmp_path}/file is an existing file, not a directory"
  )
  assert storage.directory_problem(str(tmp_path / "file" / "sub")) == (
    f"{tmp_path}/file/sub cannot be created: {tmp_path}/file is a file"
  )
  assert storage.directory_problem(str(tmp_path / "new" / "sub")) is None
  monkeypatch.setattr(storage.os, "access", lambda path, mode: False)  # read-only, for root too
  assert storage.directory_problem(str(tmp_path)) == f"{tmp_path} is not writable"
  assert storage.directory_problem(str(tmp_path / "new")) == (
    f"{tmp_path}/new cannot be created: {tmp_path} is not writable"
  )


def _wait_for_handler(done: Callable[[], bool]) -> None:
  """Python runs a signal handler in the main thread at a later bytecode boundary (and a
  signal sent to the process may first land on another thread): wait up to 5 s."""
  deadline = time.monotonic() + 5.0
  while not done() and time.monotonic() < deadline:
    time.sleep(0.001)


def test_sigint_and_sigterm_ask_for_a_checkpoint_then_128_plus_the_signal():
  with train._Preemption() as preemption:
    signal.raise_signal(signal.SIGTERM)
    _wait_for_handler(lambda: preemption.requested)
    assert (preemption.name, preemption.exit_status) == ("SIGTERM", 143)
  # A second Ctrl-C does not wait for the save: it goes to the handler that was there
  # before (Python's default raises KeyboardInterrupt). A recording handler stands in for
  # it, so the test does not depend on what the rest of the session left installed.
  received = []
  outer = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
  try:
    with train._Preemption() as preemption:
      signal.raise_signal(signal.SIGINT)
      _wait_for_handler(lambda: preemption.requested)
      assert (preemption.name, preemption.exit_status) == ("SIGINT", 130)
      assert received == []
      signal.raise_signal(signal.SIGINT)
      _wait_for_handler(lambda: bool(received))
      assert received == [signal.SIGINT]
  finally:
    signal.signal(signal.SIGINT, outer)


def test_a_read_only_parent_is_refused(tmp_path):
  if os.geteuid() == 0:
    pytest.skip("root writes into read-only folders")
  parent = tmp_path / "ro"
  parent.mkdir()
  parent.chmod(0o555)
  try:
    with pytest.raises(config_check.ConfigError, match="ro is not writable"):
      config_check.validate_config(default_config.base_config(), workdir=str(parent / "run"))
  finally:
    parent.chmod(0o755)


def test_state_changes_name_only_fields_that_shape_the_saved_state():
  config = default_config.base_config()
  stored = json.loads(config.to_json_best_effort())
  config.train.learning_rate = 0.5  # a hyperparameter: resuming with it is fine
  config.model.dtype = "bfloat16"  # float32 parameters are saved either way
  config.train.grad_clip_norm = 0.0
  config.train.grad_accum_steps = 1
  assert checkpointing.state_changes(stored, config) == []
  config.train.grad_accum_steps = 4
  config.model.attention.num_blades = 8
  config.train.ema_decay = 0.999
  assert checkpointing.state_changes(stored, config) == [
    "model.attention.num_blades (4 -> 8)",
    "train.ema_decay (0.0 -> 0.999: weight averaging turned on)",
    "train.grad_accum_steps (1 -> 4: accumulation turned on)",
  ]
  stored["train"]["ema_decay"] = 0.99  # another decay keeps the state's shape
  assert "train.ema_decay" not in " ".join(checkpointing.state_changes(stored, config))


def test_overrides_accept_fields_older_configs_lack_and_refuse_unknown_names():
  config = default_config.base_config()
  del config.train["init_from"]  # a checkpoint written before the field existed
  cli.apply_overrides(
    config,
    [
      "train.init_from=runs/x",
      "model.channels=(1,2,3,4,5)",
      "dataset.manual_dir=True",
      "train.learning_rate=1",
    ],
  )
  assert config.train.init_from == "runs/x" and config.model.channels == (1, 2, 3, 4, 5)
  assert config.dataset.manual_dir == "True" and config.train.learning_rate == 1.0
  with pytest.raises(config_check.ConfigError, match=r"^trian\.seed: no such config field"):
    cli.apply_overrides(config, ["trian.seed=1"])


def test_workdir_lock_is_exclusive_released_on_exit_and_ignores_a_dead_holder(tmp_path):
  from irstd_jax import workdir_lock

  fresh = tmp_path / "fresh"
  with workdir_lock.hold(str(fresh)):
    pass
  assert not fresh.exists()  # created by the lock, nothing written: removed again
  workdir = tmp_path / "run"
  workdir.mkdir()
  with workdir_lock.hold(str(workdir)) as path:
    holder = json.loads(pathlib.Path(path).read_text())
    assert holder["pid"] == os.getpid()
    with pytest.raises(workdir_lock.WorkdirInUse, match=f"in use by pid {os.getpid()} on "):
      with workdir_lock.hold(str(workdir)):
        pass
  # Released on exit (also on an exception), and a lock file whose holder died is stale:
  with pytest.raises(KeyError):
    with workdir_lock.hold(str(workdir)):
      raise KeyError("boom")
  dead = subprocess.run(
    [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
  )
  stale = {"pid": int(dead.stdout), "host": "h", "started": "t", "command": "c"}
  pathlib.Path(path).write_text(json.dumps(stale))
  with workdir_lock.hold(str(workdir)):
    assert json.loads(pathlib.Path(path).read_text())["pid"] == os.getpid()


CONFIG_FILES = [
  ("missing", None, "does not exist"),
  (
    "imports a missing module",
    "import no_such_module\n",
    "cannot be imported (line 1): ModuleNotFoundError: No module named 'no_such_module'",
  ),
  ("syntax error", "x = 1\ndef get_config(:\n", "cannot be imported (line 2): SyntaxError"),
  (
    "get_config raises",
    "def get_config():\n  raise ValueError('no data here')\n",
    "get_config() raised (line 2) ValueError: no data here",
  ),
  ("no get_config", "x = 1\n", "defines no get_config()"),
  ("returns None", "def get_config():\n  pass\n", "returned NoneType, not a ConfigDict"),
  ("returns a dict", "def get_config():\n  return {}\n", "returned dict, not a ConfigDict"),
]


@pytest.mark.parametrize(
  "text, message", [c[1:] for c in CONFIG_FILES], ids=[c[0] for c in CONFIG_FILES]
)
def test_config_file_errors_are_one_line_naming_the_file(tmp_path, text, message):
  path = tmp_path / "my_config.py"
  if text is not None:
    path.write_text(text)
  with pytest.raises(config_check.ConfigError) as info:
    cli.load_config_file(str(path))
  line = str(info.value)
  assert line.startswith(f"--config: {path}") and message in line and "\n" not in line, line
  cli.load_config_file(str(REPO / "configs" / "synthetic.py"))  # a good one passes


def test_a_degenerate_evaluation_warns_and_a_saturated_one_is_never_best(capsys):
  healthy = {"miou": 0.6, "niou": 0.5, "pd": 0.8, "fa": 1e-5, "fa_strict": 1e-5, "num_images": 4}
  healthy.update(num_saturated=0, pred_pixels=9, num_targets=5)
  assert train.report_evaluation(healthy, "epoch 3") == {"miou": 0.6}
  assert "warning" not in capsys.readouterr().err
  saturated = dict(healthy, miou=0.04, num_saturated=2)
  assert train.report_evaluation(saturated, "epoch 6") is None  # never offered as best
  err = capsys.readouterr().err.strip()
  assert err.startswith("warning: at epoch 6, 2 of 4 test images are predicted positive on ")
  assert len(err.splitlines()) == 1
  blind = dict(healthy, miou=0.0, pred_pixels=0)  # e.g. train.learning_rate=1e9
  assert train.report_evaluation(blind, "the end") == {"miou": 0.0}
  assert "no test pixel is predicted positive" in capsys.readouterr().err
