"""Real-data builders: counts, pipeline on real data, accepted layouts, bad-input policy.

The real NUAA-SIRST prepare runs once per session (a few seconds); defective inputs are
built in tmp_path (small generated PNGs, or real files copied and modified there).
"""

import importlib
import json
import pathlib
import shutil

import numpy as np
from PIL import Image
import pytest

from irstd_jax import datasets
from irstd_jax import default_config
from irstd_jax import input_pipeline as ip
from irstd_jax.datasets import manual
from irstd_jax.datasets import specs

NUAA = specs.SPECS["nuaa_sirst"]


def _dataset_config(name, data_dir, manual_dir="", **fields):
  """The default config.dataset with these fields set."""
  config = default_config.base_config().dataset
  config.update(name=name, data_dir=str(data_dir), manual_dir=str(manual_dir), **fields)
  return config


def _ids(path):
  return [line.strip() for line in open(path) if line.strip()]


def _text(value):
  return value.decode() if isinstance(value, bytes) else str(value)


def _png(path, array):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _tiny_uniform(root, train=("a", "b", "c"), test=("d", "e"), size=(12, 16)):
  """A valid uniform-layout set of small generated images (one target pixel each)."""
  rng = np.random.default_rng(0)
  for i, name in enumerate(train + test):
    _png(root / "images" / f"{name}.png", rng.integers(0, 256, size))
    mask = np.zeros(size, np.uint8)
    mask[i % size[0], i % size[1]] = 255
    _png(root / "masks" / f"{name}.png", mask)
  (root / "splits").mkdir(parents=True, exist_ok=True)
  (root / "splits" / "train.txt").write_text("\n".join(train) + "\n")
  (root / "splits" / "test.txt").write_text("\n".join(test) + "\n")
  return root


# --------------------------------------------------------------------- real NUAA-SIRST


@pytest.fixture(scope="session")
def nuaa(shared_datasets, tmp_path_factory):
  """The real NUAA-SIRST prepared once: (train_source, test_source, manual_dir)."""
  manual_dir = shared_datasets / "nuaa_sirst"
  cfg = _dataset_config("nuaa_sirst", tmp_path_factory.mktemp("tfds"), manual_dir)
  train, test = datasets.load_sources(cfg)
  return train, test, manual_dir


def test_real_nuaa_counts_and_ids_match_the_split_files(nuaa):
  train, test, root = nuaa
  train_ids, test_ids = _ids(root / "splits" / "train.txt"), _ids(root / "splits" / "test.txt")
  assert (len(train), len(test)) == (len(train_ids), len(test_ids)) == (341, 86)
  assert sorted(_text(train[i]["id"]) for i in range(len(train))) == sorted(train_ids)
  assert sorted(_text(test[i]["id"]) for i in range(len(test))) == sorted(test_ids)


def test_real_nuaa_records_are_the_files_pixels(nuaa):
  train, _, root = nuaa
  for index in (0, 100, 340):
    record = train[index]
    name = _text(record["id"])
    image = np.asarray(Image.open(root / "images" / f"{name}.png"))
    mask = np.asarray(Image.open(root / "masks" / f"{name}.png"))
    assert record["image"].dtype == record["mask"].dtype == np.uint8
    np.testing.assert_array_equal(record["image"][..., 0], image)
    np.testing.assert_array_equal(record["mask"][..., 0], (mask > 0).astype(np.uint8))


def test_real_train_batch_shapes_dtypes_and_binary_masks(nuaa):
  train, _, _ = nuaa
  cfg = ip.AugmentConfig(256, True, True, 1.0, 0.0, 1.0, 0.0)
  batches = ip.TrainBatches(train, 4, cfg, mean=114.35, std=57.01, seed=0)
  assert batches.steps_per_epoch == 341 // 4
  for step in (0, 1):
    batch = batches.batch(step)
    assert batch["image"].shape == batch["mask"].shape == (4, 256, 256, 1)
    assert batch["image"].dtype == batch["mask"].dtype == np.float32
    assert set(np.unique(batch["mask"])) <= {0.0, 1.0}
    assert (batch["mask"].sum(axis=(1, 2, 3)) > 0).all()  # target-preserving crops
    assert abs(float(batch["image"].mean())) < 1.5  # roughly normalised


def test_real_eval_iterator_sees_every_test_image_once(nuaa):
  _, test, root = nuaa
  seen, sizes = [], {}
  for batch in ip.eval_batches(test, 8, 32, 114.35, 57.01):
    # One process: filler only in the filled-up last batch of a bucket of more than 8.
    assert 1 <= batch["image"].shape[0] <= 8 and batch["valid"].any()
    for name, valid, size in zip(batch["id"], batch["valid"], batch["sizes"]):
      if valid:
        seen.append(str(name))
        sizes[str(name)] = tuple(size)
  assert len(seen) == 86 and sorted(seen) == sorted(_ids(root / "splits" / "test.txt"))
  for i in range(len(test)):
    assert sizes[_text(test[i]["id"])] == test[i]["image"].shape[:2]


def test_original_nuaa_layout_gives_the_same_pixels_as_the_uniform_one(nuaa, tmp_path):
  """YimianDai/sirst layout: masks/<id>_pixels0.png, idx_427/{trainval,test}.txt."""
  train, test, root = nuaa
  uniform = {_text(s[i]["id"]): s[i] for s in (train, test) for i in range(len(s))}
  train_ids = _ids(root / "splits" / "train.txt")[:3]
  test_ids = _ids(root / "splits" / "test.txt")[:2]
  original = tmp_path / "sirst"
  (original / "images").mkdir(parents=True)
  (original / "masks").mkdir()
  (original / "idx_427").mkdir()
  for k, name in enumerate(train_ids + test_ids):
    if k == 0:  # the originals mix grayscale and RGB
      Image.open(root / "images" / f"{name}.png").convert("RGB").save(
        original / "images" / f"{name}.png"
      )
    else:
      shutil.copy(root / "images" / f"{name}.png", original / "images" / f"{name}.png")
    shutil.copy(root / "masks" / f"{name}.png", original / "masks" / f"{name}_pixels0.png")
  (original / "idx_427" / "trainval.txt").write_text("\n".join(train_ids) + "\n")
  (original / "idx_427" / "test.txt").write_text("\n".join(test_ids) + "\n")

  plan = manual.scan(str(original), NUAA)
  assert plan.layout.name == "sirst_idx_427"
  assert any("RGB image converted" in w for w in plan.warnings)
  cfg = _dataset_config("nuaa_sirst", tmp_path / "tfds", original)
  small_train, small_test = datasets.load_sources(cfg)
  assert (len(small_train), len(small_test)) == (3, 2)
  for source in (small_train, small_test):
    for i in range(len(source)):
      record = source[i]
      reference = uniform[_text(record["id"])]
      np.testing.assert_array_equal(record["image"], reference["image"])
      np.testing.assert_array_equal(record["mask"], reference["mask"])


def test_data_modules_below_the_dispatch_know_no_data_set_by_name():
  """One direction: only specs.py names the real sets; manual.py and builders.py are handed
  a spec (a name written there again would be a second place to add a set)."""
  for module in ("manual", "builders"):
    source = (pathlib.Path(datasets.__file__).parent / f"{module}.py").read_text()
    named = [name for name in specs.SPECS if f'"{name}"' in source or f"'{name}'" in source]
    assert named == [], f"datasets/{module}.py names {named}"


def test_fifty_fifty_split_is_a_separate_cache_entry():
  from irstd_jax.datasets import builders

  default = builders.manual_config()
  fifty = builders.manual_config("train_50_50.txt", "test_50_50.txt")
  assert default.name == "default"
  assert fifty.name == "train_50_50-test_50_50"
  assert builders.manual_config(binarize_masks=True).name == "default-binarized"


def test_fifty_fifty_split_files_resolve_in_the_uniform_layout(shared_datasets):
  plan = manual.scan(str(shared_datasets / "nuaa_sirst"), NUAA, "train_50_50.txt", "test_50_50.txt")
  assert (len(plan.splits["train"]), len(plan.splits["test"])) == (213, 214)


# --------------------------------------------------------------------- other layouts


def _write_pair(root, image_rel, mask_rel, rng, value=255):
  _png(root / image_rel, rng.integers(0, 256, (10, 14)))
  mask = np.zeros((10, 14), np.uint8)
  mask[3, 4] = value
  path = root / mask_rel
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(mask).save(path, quality=90) if str(path).endswith(".jpg") else _png(path, mask)


@pytest.mark.parametrize(
  "dataset,layout,image_fmt,mask_fmt,train_file,test_file",
  [
    ("irstd1k", "isnet", "IRSTD1k_Img/{}.png", "IRSTD1k_Label/{}.png", "trainval.txt", "test.txt"),
    ("irstd1k", "flat", "images/{}.png", "masks/{}.png", "trainval.txt", "test.txt"),
    ("nudt_sirst", "flat", "images/{}.png", "masks/{}.png", "trainval.txt", "test.txt"),
    ("nudt_sirst", "dnanet", "images/{}.png", "masks/{}.png", "50_50/train.txt", "50_50/test.txt"),
    (
      "nuaa_sirst",
      "sirst_idx_320",
      "images/{}.png",
      "masks/{}_pixels0.png",
      "idx_320/trainval.txt",
      "idx_320/test.txt",
    ),
    ("sirst_uavb", "sirst_uavb", "images/all/{}.jpg", "masks/{}.jpg", "train.txt", "val.txt"),
  ],
)
def test_published_layouts_are_recognised(
  tmp_path, dataset, layout, image_fmt, mask_fmt, train_file, test_file
):
  rng = np.random.default_rng(1)
  for name in ("x1", "x2", "y1"):
    _write_pair(tmp_path, image_fmt.format(name), mask_fmt.format(name), rng)
  for rel, names in ((train_file, ["x1", "x2"]), (test_file, ["y1"])):
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).write_text("\n".join(names) + "\n")
  plan = manual.scan(str(tmp_path), specs.SPECS[dataset])
  assert plan.layout.name == layout
  assert [e.id for e in plan.splits["train"]] == ["x1", "x2"]
  assert [e.id for e in plan.splits["test"]] == ["y1"]
  image, mask = manual.load_pair(plan.splits["test"][0], manual.Policy())
  assert image.dtype == mask.dtype == np.uint8 and image.shape == mask.shape == (10, 14)
  assert set(np.unique(mask)) == {0, 1}  # JPEG masks too (thresholded at 128)


# --------------------------------------------------------------------- bad inputs


def _scan_error(root, dataset="nuaa_sirst", **kwargs):
  with pytest.raises(datasets.BadInputError) as info:
    manual.scan(str(root), specs.SPECS[dataset], **kwargs)
  message = str(info.value)
  assert "\n" not in message  # one clean line for main.py
  return info.value, message


def test_manual_dir_that_does_not_exist(tmp_path):
  _, message = _scan_error(tmp_path / "nope")
  assert str(tmp_path / "nope") in message and "does not exist" in message
  cfg = _dataset_config("nuaa_sirst", tmp_path / "tfds", tmp_path / "nope")
  with pytest.raises(datasets.BadInputError, match="does not exist"):
    datasets.load_sources(cfg)
  assert not (tmp_path / "tfds" / "nuaa_sirst").exists()  # nothing written


def test_empty_manual_dir_setting_says_how_to_prepare(tmp_path):
  cfg = _dataset_config("irstd1k", tmp_path / "tfds", "")
  with pytest.raises(datasets.DataNotPreparedError) as info:
    datasets.load_sources(cfg)
  assert not isinstance(info.value, datasets.BadInputError)
  assert "manual_dir is empty" in str(info.value)
  assert "python -m irstd_jax.prepare_data --dataset=irstd1k" in str(info.value)


def test_unrecognised_layout_lists_the_accepted_ones(tmp_path):
  (tmp_path / "something").mkdir()
  _, message = _scan_error(tmp_path, "irstd1k")
  assert "no recognised irstd1k layout" in message and "IRSTD1k_Img" in message


def test_missing_mask(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  (root / "masks" / "b.png").unlink()
  _, message = _scan_error(root)
  assert message.startswith(str(root / "images" / "b.png")) and "has no mask" in message


def test_real_misc_111_size_mismatch(shared_datasets, tmp_path):
  bad = shared_datasets / "bad_inputs" / "nuaa_sirst_Misc_111"
  root = _tiny_uniform(tmp_path / "set", train=("a", "Misc_111"))
  shutil.copy(bad / "image.png", root / "images" / "Misc_111.png")
  shutil.copy(bad / "mask.png", root / "masks" / "Misc_111.png")
  _, message = _scan_error(root)
  assert message.startswith(str(root / "masks" / "Misc_111.png"))
  assert "592x400" in message and "325x220" in message and "fix_mask_size" in message
  # Opt-in repair: nearest-neighbour resize gives exactly the staged (fixed) mask.
  plan = manual.scan(str(root), NUAA, policy=manual.Policy(fix_mask_size=True))
  entry = [e for e in plan.splits["train"] if e.id == "Misc_111"][0]
  _, mask = manual.load_pair(entry, manual.Policy(fix_mask_size=True))
  staged = np.asarray(Image.open(shared_datasets / "nuaa_sirst" / "masks" / "Misc_111.png"))
  np.testing.assert_array_equal(mask, (staged > 0).astype(np.uint8))
  assert any("resized (nearest)" in w for w in plan.warnings)


def test_non_binary_mask_is_refused_unless_binarize_masks(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  mask = np.zeros((12, 16), np.uint8)
  mask[2, 2], mask[2, 3], mask[5, 5] = 255, 200, 40
  _png(root / "masks" / "c.png", mask)
  _, message = _scan_error(root)
  assert message.startswith(str(root / "masks" / "c.png"))
  assert "not binary" in message and "{0, 40, 200, 255}" in message
  plan = manual.scan(str(root), NUAA, policy=manual.Policy(binarize_masks=True))
  entry = [e for e in plan.splits["train"] if e.id == "c"][0]
  _, fixed = manual.load_pair(entry, manual.Policy(binarize_masks=True))
  assert fixed.sum() == 2 and fixed[2, 2] == fixed[2, 3] == 1 and fixed[5, 5] == 0
  assert any("thresholded at 128" in w for w in plan.warnings)


def test_zero_one_masks_and_empty_masks_are_accepted(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  mask = np.zeros((12, 16), np.uint8)
  mask[4, 4] = 1
  _png(root / "masks" / "a.png", mask)
  _png(root / "masks" / "b.png", np.zeros((12, 16), np.uint8))  # images without targets exist
  plan = manual.scan(str(root), NUAA)
  a, b = plan.splits["train"][:2]
  assert manual.load_pair(a, manual.Policy())[1].sum() == 1
  assert manual.load_pair(b, manual.Policy())[1].sum() == 0


def test_truncated_png(tmp_path):
  root = _tiny_uniform(tmp_path / "set", size=(64, 64))
  path = root / "images" / "d.png"
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  _, message = _scan_error(root)
  assert message.startswith(str(path)) and "cannot decode" in message


def test_corrupt_file_that_is_not_an_image(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  (root / "masks" / "e.png").write_bytes(b"this is not a png")
  _, message = _scan_error(root)
  assert message.startswith(str(root / "masks" / "e.png")) and "cannot decode" in message


def test_rgb_image_is_converted_to_grayscale_with_a_warning(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  rgb = np.random.default_rng(3).integers(0, 256, (12, 16, 3)).astype(np.uint8)
  Image.fromarray(rgb, "RGB").save(root / "images" / "a.png")
  plan = manual.scan(str(root), NUAA)
  assert any("a.png: RGB image converted to grayscale" in w for w in plan.warnings)
  image, _ = manual.load_pair(plan.splits["train"][0], manual.Policy())
  np.testing.assert_array_equal(image, np.asarray(Image.fromarray(rgb, "RGB").convert("L")))


def test_sixteen_bit_image_is_refused(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  Image.fromarray(np.full((12, 16), 40000, np.uint16)).save(root / "images" / "a.png")
  _, message = _scan_error(root)
  assert message.startswith(str(root / "images" / "a.png")) and "8-bit" in message


def test_id_in_split_without_image(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  with open(root / "splits" / "test.txt", "a") as f:
    f.write("ghost\n")
  _, message = _scan_error(root)
  assert message.startswith(str(root / "splits" / "test.txt"))
  assert "'ghost' has no image" in message


def test_empty_split(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  (root / "splits" / "test.txt").write_text("\n\n")
  _, message = _scan_error(root)
  assert message.startswith(str(root / "splits" / "test.txt")) and "empty" in message


def test_missing_chosen_split_file(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  _, message = _scan_error(root, train_split="train_50_50.txt", test_split="test_50_50.txt")
  assert "train_50_50.txt: split file does not exist" in message


def test_duplicate_id_in_a_split(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  (root / "splits" / "train.txt").write_text("a\nb\na\n")
  _, message = _scan_error(root)
  assert "train.txt:3: id 'a' is listed twice" in message


def test_split_file_with_a_utf8_byte_order_mark_and_crlf_reads_the_same_ids(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  (root / "splits" / "train.txt").write_bytes("\ufeffa\r\nb.png\r\nc\r\n".encode("utf-8"))
  plan = manual.scan(str(root), NUAA)
  assert [e.id for e in plan.splits["train"]] == ["a", "b", "c"]


def test_utf16_split_file_is_refused_naming_the_file(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  (root / "splits" / "train.txt").write_text("a\nb\nc\n", encoding="utf-16")
  error, message = _scan_error(root)
  assert message.startswith(f"{root / 'splits' / 'train.txt'}: split file is not UTF-8 text")
  assert "UTF-16" in message
  assert len(error.problems) == 1  # not also reported as an empty split


def test_every_problem_is_collected_and_counted(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  (root / "masks" / "a.png").unlink()
  (root / "images" / "e.png").write_bytes(b"junk")
  error, message = _scan_error(root)
  assert len(error.problems) == 2
  assert "(and 1 more problem;" in message


def test_failed_prepare_leaves_nothing_and_a_fixed_rerun_works(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  good_mask = (root / "masks" / "c.png").read_bytes()
  (root / "masks" / "c.png").write_bytes(good_mask[:20])  # truncated
  cfg = _dataset_config("nudt_sirst", tmp_path / "tfds", root)
  with pytest.raises(datasets.BadInputError, match="c.png: cannot decode"):
    datasets.load_sources(cfg)
  assert not datasets.get_builder(cfg).is_prepared()
  leftovers = list((tmp_path / "tfds").rglob("*incomplete*"))
  assert not leftovers and not list((tmp_path / "tfds").rglob("*.array_record*"))
  (root / "masks" / "c.png").write_bytes(good_mask)
  train, test = datasets.load_sources(cfg)
  assert (len(train), len(test)) == (3, 2)


def test_failure_while_writing_leaves_no_dataset_behind(tmp_path, monkeypatch):
  root = _tiny_uniform(tmp_path / "set")
  cfg = _dataset_config("irstd1k", tmp_path / "tfds", root)
  real_load_pair, calls = manual.load_pair, []

  def flaky(entry, policy, notes=None):
    calls.append(entry.id)
    if len(calls) == 7:  # 5 checks during validation, then the 2nd example written
      raise OSError("disk on fire")
    return real_load_pair(entry, policy, notes)

  monkeypatch.setattr(manual, "load_pair", flaky)
  with pytest.raises(OSError, match="disk on fire"):
    datasets.load_sources(cfg)
  assert len(calls) == 7
  assert not datasets.get_builder(cfg).is_prepared()
  assert not list((tmp_path / "tfds").rglob("*incomplete*"))
  assert not list((tmp_path / "tfds").rglob("*.array_record*"))


# --------------------------------------------------------------------- irstd_jax/prepare_data.py


@pytest.fixture
def prepare_tool():
  """The prepare_data tool, imported (once: its absl flags are defined at import)."""
  from absl import flags

  from irstd_jax import prepare_data

  yield prepare_data
  flags.FLAGS.unparse_flags()


def test_prepare_tool_validates_builds_and_writes_stats(tmp_path, prepare_tool, capsys):
  from absl import flags

  root = _tiny_uniform(tmp_path / "set")
  flags.FLAGS(
    [
      "prepare_data",
      "--dataset=nudt_sirst",
      f"--manual_dir={root}",
      f"--data_dir={tmp_path / 'tfds'}",
    ]
  )
  assert prepare_tool.main(["prepare_data"]) == 0
  out = capsys.readouterr().out
  pixels = np.concatenate(
    [np.asarray(Image.open(root / "images" / f"{n}.png")).ravel() for n in "abc"]
  ).astype(np.float64)
  assert f"config.dataset.mean = {pixels.mean():.2f}" in out
  assert f"config.dataset.std = {pixels.std():.2f}" in out
  stats_files = list((tmp_path / "tfds").rglob("normalization.json"))
  assert len(stats_files) == 1
  stats = json.loads(stats_files[0].read_text())
  assert stats["num_images"] == 3 and abs(stats["mean"] - pixels.mean()) < 1e-9


def test_prepare_tool_lists_every_problem_and_writes_nothing(tmp_path, prepare_tool, capsys):
  from absl import flags

  root = _tiny_uniform(tmp_path / "set")
  (root / "masks" / "a.png").unlink()
  (root / "images" / "e.png").write_bytes(b"junk")
  flags.FLAGS(
    [
      "prepare_data",
      "--dataset=nudt_sirst",
      f"--manual_dir={root}",
      f"--data_dir={tmp_path / 'tfds'}",
    ]
  )
  assert prepare_tool.main(["prepare_data"]) == 2
  err = capsys.readouterr().err
  assert "has no mask" in err and "cannot decode" in err and "2 problem(s)" in err
  assert not (tmp_path / "tfds").exists()


# --------------------------------------------------------------------- configs


@pytest.mark.parametrize("name", list(specs.SPECS))
def test_real_configs_load_and_name_their_builder(name, tmp_path):
  """Each spec has a config file, a TFDS builder registered under its name that carries
  the spec's download instructions, and is a `dataset.name` choice."""
  import tensorflow_datasets as tfds

  config = importlib.import_module(f"configs.{name}").get_config()
  assert config.dataset.name == name and config.dataset.crop_size == 256
  assert 0 < config.dataset.std and 0 < config.dataset.mean < 255
  config.dataset.data_dir = str(tmp_path)
  builder = datasets.get_builder(config.dataset)
  assert builder.name == name and builder.builder_config.name == "default"
  spec = specs.SPECS[name]
  assert type(builder).MANUAL_DOWNLOAD_INSTRUCTIONS == spec.instructions
  assert builder.info.homepage == spec.homepage and spec.layouts[0].name == "uniform"
  assert tfds.builder_cls(name) is type(builder)
  assert name in datasets.NAMES


# ----------------------------------------------------------- dataset.source = "memory"


def _same_records(a, b):
  assert len(a) == len(b)
  by_id = {_text(b[i]["id"]): b[i] for i in range(len(b))}
  for i in range(len(a)):
    other = by_id[_text(a[i]["id"])]
    for key in ("image", "mask"):
      assert a[i][key].dtype == other[key].dtype == np.uint8
      np.testing.assert_array_equal(a[i][key], other[key])


def test_memory_source_equals_the_tfds_source_on_real_nuaa(nuaa):
  train, test, root = nuaa
  cfg = _dataset_config("nuaa_sirst", "/nonexistent-tfds-dir", root, source="memory")
  mem_train, mem_test = datasets.load_sources(cfg)
  _same_records(mem_train, train)
  _same_records(mem_test, test)


def test_memory_source_equals_the_tfds_source_on_synthetic(tmp_path):
  fields = dict(seed=3, num_train=5, num_test=2, image_size=32)
  tfds_train, tfds_test = datasets.load_sources(_dataset_config("synthetic", tmp_path, **fields))
  mem = _dataset_config("synthetic", tmp_path / "unused", source="memory", **fields)
  mem_train, mem_test = datasets.load_sources(mem)
  _same_records(mem_train, tfds_train)
  _same_records(mem_test, tfds_test)
  assert not (tmp_path / "unused").exists()  # nothing written


@pytest.mark.parametrize("source", ["tfds", "memory"])
def test_a_missing_dataset_field_is_an_error_naming_it(tmp_path, source):
  """No second default in the code: a field the config lacks is an AttributeError."""
  cfg = _dataset_config("nudt_sirst", tmp_path / "tfds", _tiny_uniform(tmp_path / "set"))
  cfg.source = source
  del cfg["train_split"]
  with pytest.raises(AttributeError, match="train_split"):
    datasets.load_sources(cfg)


def test_memory_source_reports_bad_input_like_tfds(tmp_path):
  root = _tiny_uniform(tmp_path / "set")
  (root / "masks" / "b.png").unlink()
  cfg = _dataset_config("nudt_sirst", tmp_path / "tfds", root, source="memory")
  with pytest.raises(datasets.BadInputError, match="b.png: image has no mask"):
    datasets.load_sources(cfg)
  with pytest.raises(datasets.DataNotPreparedError, match="manual_dir, which is empty"):
    datasets.load_sources(_dataset_config("nudt_sirst", tmp_path, "", source="memory"))
  with pytest.raises(datasets.DataNotPreparedError, match="unknown data set 'sirst2'"):
    datasets.load_sources(_dataset_config("sirst2", tmp_path, root, source="memory"))
  with pytest.raises(ValueError, match="dataset.source='disk'"):
    datasets.load_sources(_dataset_config("nudt_sirst", tmp_path, root, source="disk"))


def test_memory_source_prints_the_scan_warnings(tmp_path, capsys):
  """The warnings docs/data.md promises reach the user with the memory source too: a
  train/test overlap and an RGB image converted to grey, one `warning:` line each."""
  root = _tiny_uniform(tmp_path / "set", train=("a", "b", "c"), test=("c", "d"))
  rgb = np.random.default_rng(3).integers(0, 256, (12, 16, 3)).astype(np.uint8)
  Image.fromarray(rgb, "RGB").save(root / "images" / "a.png")
  cfg = default_config.base_config().dataset
  cfg.name, cfg.source, cfg.manual_dir = "nuaa_sirst", "memory", str(root)
  train, test = datasets.load_sources(cfg)
  assert len(train) == 3 and len(test) == 2
  lines = capsys.readouterr().err.splitlines()
  assert any(
    line.startswith("warning: nuaa_sirst: 1 id(s) are in both the train and the test split")
    for line in lines
  ), lines
  assert any("a.png: RGB image converted to grayscale" in line for line in lines), lines


# ------------------------------------------------- evaluation: the test split alone

MINE = ("Misc_138", "Misc_139")  # two NUAA-SIRST test images of one size (256x200)


def _test_only_folder(shared_datasets, root):
  """A user's labelled folder in the uniform layout with splits/test.txt and no train
  split: real NUAA-SIRST files copied into tmp_path (the shared set itself is only read)."""
  for sub in ("images", "masks"):
    (root / sub).mkdir(parents=True)
    for name in MINE:
      shutil.copy(shared_datasets / "nuaa_sirst" / sub / f"{name}.png", root / sub)
  (root / "splits").mkdir()
  (root / "splits" / "test.txt").write_text("\n".join(MINE) + "\n")
  return root


@pytest.mark.parametrize("source", ["tfds", "memory"])
def test_evaluation_reads_only_the_test_split_of_a_folder_without_a_train_split(
  shared_datasets, tmp_path, source
):
  root = _test_only_folder(shared_datasets, tmp_path / "mine")
  cfg = _dataset_config("nuaa_sirst", tmp_path / "tfds", root, source=source)
  test = datasets.load_test_source(cfg)
  assert [_text(record["id"]) for record in test] == list(MINE)
  for record in test:
    name = _text(record["id"])
    image = manual.load_image(str(root / "images" / f"{name}.png"))
    mask = manual.load_mask(str(root / "masks" / f"{name}.png"), manual.Policy())
    np.testing.assert_array_equal(record["image"][..., 0], image)
    np.testing.assert_array_equal(record["mask"][..., 0], mask)
  assert not (tmp_path / "tfds").exists()  # read from the folder: nothing prepared
  # Training reads and checks both splits, and this folder has no train split.
  cfg.source = "memory"  # the same scan, without importing TensorFlow
  with pytest.raises(datasets.BadInputError, match="no recognised nuaa_sirst layout"):
    datasets.load_sources(cfg)


def test_a_missing_chosen_split_file_is_named_where_the_layout_keeps_split_files(
  shared_datasets, tmp_path
):
  root = _test_only_folder(shared_datasets, tmp_path / "mine")
  cfg = _dataset_config(
    "nuaa_sirst",
    tmp_path / "tfds",
    root,
    source="memory",
    train_split="train_50_50.txt",
    test_split="test_50_50.txt",
  )
  with pytest.raises(datasets.BadInputError) as info:  # evaluation: the test split only
    datasets.load_test_source(cfg)
  assert str(info.value) == (
    f"{root}/splits/test_50_50.txt: split file does not exist (nor {root}/test_50_50.txt)"
  )
  cfg.test_split = "test.txt"  # found in splits/
  assert len(datasets.load_test_source(cfg)) == len(MINE)
  with pytest.raises(datasets.BadInputError) as info:  # training: the train split too
    datasets.load_sources(cfg)
  assert str(info.value) == (
    f"{root}/splits/train_50_50.txt: split file does not exist (nor {root}/train_50_50.txt)"
  )


def test_evaluate_runs_on_a_folder_with_only_a_test_split(shared_datasets, tmp_path):
  """evaluate.run_evaluation (what `python -m irstd_jax.evaluate --set=dataset.manual_dir=`
  runs) on the folder: a tiny untrained model, the report counts both images."""
  import functools

  from conftest import tiny_config
  import jax
  import jax.numpy as jnp

  from irstd_jax import evaluate
  from irstd_jax import models

  config = tiny_config(tmp_path)
  config.dataset.update(name="nuaa_sirst", manual_dir=str(tmp_path / "mine"))
  _test_only_folder(shared_datasets, tmp_path / "mine")
  model = models.create_model(config.model)
  variables = jax.jit(functools.partial(model.init, train=False))(
    jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 1))
  )
  out = evaluate.run_evaluation(config, variables, str(tmp_path / "eval"), 0, progress=False)
  assert out["num_images"] == len(MINE)
  report = json.loads((tmp_path / "eval" / "report.json").read_text())
  assert report["metrics"]["num_images"] == len(MINE)
  assert not (tmp_path / "tfds").exists()
