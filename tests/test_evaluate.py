"""evaluate / predict CLIs on a tiny hand-made checkpoint (one subprocess each)."""

import functools
import json
import pathlib
import subprocess
import sys

from conftest import REPO
from conftest import subprocess_env
from conftest import tiny_config
import numpy as np
import pytest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
  """A workdir with one (untrained) checkpoint of the tiny synthetic config."""
  import jax
  import jax.numpy as jnp

  from irstd_jax import checkpointing
  from irstd_jax import models

  root = tmp_path_factory.mktemp("ckpt")
  config = tiny_config(root)
  model = models.create_model(config.model)
  variables = jax.jit(functools.partial(model.init, train=False))(
    jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1))
  )
  workdir = root / "work"
  checkpointer = checkpointing.Checkpointer(str(workdir))
  checkpointer.save(
    1,
    {
      "step": 1,
      "params": variables["params"],
      "batch_stats": variables["batch_stats"],
      "opt_state": {},
    },
    {"config": json.loads(config.to_json_best_effort()), "step": 1, "epoch": 1},
    metrics={"miou": 0.1},
  )
  checkpointer.wait()
  checkpointer.close()
  return workdir, config


def _run(args, timeout=240):
  env = subprocess_env(TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
    [sys.executable, "-m", *args],
    cwd=REPO,
    env=env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )


def _is_png(path: pathlib.Path) -> bool:
  from PIL import Image

  if path.read_bytes()[:8] != PNG_MAGIC:
    return False
  with Image.open(path) as im:
    im.load()
  return True


def test_evaluate_cli(tiny_checkpoint, tmp_path):
  workdir, config = tiny_checkpoint
  out = tmp_path / "eval"
  proc = _run(
    ["irstd_jax.evaluate", f"--checkpoint={workdir}", f"--output={out}", "--num_figures=2"]
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "mIoU" in proc.stdout and "batch 2/2" in proc.stdout
  report = json.loads((out / "report.json").read_text())
  for key in ("miou", "niou", "pd", "fa"):
    assert key in report["metrics"]
  assert report["metrics"]["num_images"] == config.dataset.num_test
  assert report["extra"]["test images"] == config.dataset.num_test
  assert "roc_auc" in report["curve"]
  assert set(report["size_breakdown"]) == {"small", "medium", "large"}
  assert (out / "report.md").read_text().startswith("# IRSTD evaluation")
  for name in ("pdfa_curve.png", "roc.png", "size_breakdown.png"):
    assert _is_png(out / name), name
  figures = sorted((out / "figures").glob("*.png"))
  assert len(figures) == 4 and all(_is_png(f) for f in figures)
  assert sum(f.name.endswith("_fig6.png") for f in figures) == 2


def test_predict_cli(tiny_checkpoint, tmp_path):
  from PIL import Image

  workdir, _ = tiny_checkpoint
  src = tmp_path / "in"
  src.mkdir()
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (32, 40), dtype=np.uint8)).save(src / "gray8.png")
  Image.fromarray(rng.integers(0, 4096, (24, 33)).astype(np.uint16)).save(src / "gray16.png")
  with Image.open(src / "gray16.png") as im:
    assert im.mode.startswith("I")  # really a 16-bit file
  Image.fromarray(rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)).save(src / "rgb.png")
  good = (src / "gray8.png").read_bytes()
  (src / "broken.png").write_bytes(good[: len(good) // 2])  # truncated
  (src / "notes.txt").write_text("ignored: not an image extension")
  out = tmp_path / "pred"
  proc = _run(
    [
      "irstd_jax.predict",
      f"--checkpoint={workdir}",
      f"--input={src}",
      f"--output={out}",
      "--threshold=0.5",
    ]
  )
  assert proc.returncode == 1, proc.stdout + proc.stderr
  assert "broken.png" in proc.stderr and "1 file(s) failed" in proc.stderr
  assert "converted to grayscale" in proc.stderr and "scaled to 8 bit" in proc.stderr
  for stem, (h, w) in {"gray8": (32, 40), "gray16": (24, 33), "rgb": (37, 45)}.items():
    mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
    assert mask.shape == (h, w) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    assert np.asarray(Image.open(out / f"{stem}_prob.png")).shape == (h, w)
    assert np.asarray(Image.open(out / f"{stem}_overlay.png")).shape == (h, w, 3)
  assert not list(out.glob("broken*"))


def test_mshnet_protocol_resizes_to_256_and_thresholds_logits_at_zero(tmp_path):
  """run_evaluation(protocol='mshnet') equals metrics computed by hand on 256x256 resizes."""
  import jax
  import jax.numpy as jnp
  from PIL import Image

  from irstd_jax import datasets
  from irstd_jax import evaluate
  from irstd_jax import metrics as metrics_lib
  from irstd_jax import models

  config = tiny_config(tmp_path, **{"dataset.source": "memory"})
  model = models.create_model(config.model)
  variables = jax.jit(functools.partial(model.init, train=False))(
    jax.random.PRNGKey(3), jnp.zeros((1, 32, 32, 1))
  )
  out = evaluate.run_evaluation(
    config, variables, str(tmp_path / "eval"), num_figures=1, progress=False, protocol="mshnet"
  )
  _, test_source = datasets.load_sources(config.dataset)
  expected = metrics_lib.IRSTDMetrics(threshold=0.0, distance=config.eval.distance)
  for record in test_source:
    image = Image.fromarray(record["image"][..., 0]).resize((256, 256), Image.BILINEAR)
    mask = Image.fromarray(record["mask"][..., 0]).resize((256, 256), Image.NEAREST)
    x = (np.asarray(image, np.float32)[None, ..., None] - config.dataset.mean) / config.dataset.std
    logits, _ = model.apply(variables, jnp.asarray(x), train=False)
    expected.update(np.asarray(logits, np.float32), (np.asarray(mask) > 0)[None, ..., None])
  want = expected.compute()
  assert want["num_pixels"] == 256 * 256 * len(test_source)
  for key in (
    "miou",
    "niou",
    "fa",
    "fa_strict",
    "num_pixels",
    "num_targets",
    "num_detected",
    "intersection",
    "union",
  ):
    assert out["metrics"][key] == pytest.approx(want[key], rel=1e-12, abs=0), key
  report = json.loads((tmp_path / "eval" / "report.json").read_text())
  assert report["extra"]["protocol"].startswith("mshnet")
  assert out["protocol"] == "mshnet"


def test_exported_weights_round_trip_and_evaluate_like_the_workdir(
  tiny_checkpoint, tmp_path, capsys
):
  """irstd_jax.export (`python -m irstd_jax.export`): same variables and meta, same
  metrics, clear bad-file error."""
  from irstd_jax import checkpointing
  from irstd_jax import evaluate
  from irstd_jax import export as tool
  from irstd_jax import inference

  workdir, _ = tiny_checkpoint
  export = tmp_path / "pretrained" / "tiny"
  assert tool.main([f"--checkpoint={tmp_path / 'none'}", f"--output={export}"]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: ") and "\n" not in err and not export.exists(), err
  assert tool.main([f"--checkpoint={workdir}", f"--output={export}", "--note=test"]) == 0
  assert sorted(p.name for p in export.iterdir()) == ["meta.json", "variables.msgpack"]
  original, meta = checkpointing.restore_variables(str(workdir))
  exported, exported_meta = checkpointing.restore_variables(str(export))
  flat_a = jax_leaves_with_paths(original)
  flat_b = jax_leaves_with_paths(exported)
  assert [k for k, _ in flat_a] == [k for k, _ in flat_b]
  for (key, a), (_, b) in zip(flat_a, flat_b):
    assert a.dtype == b.dtype and np.array_equal(a, b), key
  assert exported_meta["config"] == meta["config"]
  assert exported_meta["exported_from"]["note"] == "test"
  config = inference.load_checkpoint(str(export))[2]
  a = evaluate.run_evaluation(config, original, str(tmp_path / "a"), 0, progress=False)
  b = evaluate.run_evaluation(config, exported, str(tmp_path / "b"), 0, progress=False)
  np.testing.assert_equal(a["metrics"], b["metrics"])  # NaN (no target) equals NaN
  (export / "variables.msgpack").write_bytes(b"\x00not msgpack")
  with pytest.raises(ValueError, match="variables.msgpack: not a readable msgpack"):
    checkpointing.restore_variables(str(export))


def jax_leaves_with_paths(tree):
  import jax

  return [
    (jax.tree_util.keystr(path), np.asarray(leaf))
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  ]
