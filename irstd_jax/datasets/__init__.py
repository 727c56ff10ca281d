"""Data set registry: config.dataset -> prepared TFDS builder -> random-access sources."""

from __future__ import annotations

import os

import ml_collections

DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


REAL_DATASETS = ("nuaa_sirst", "nudt_sirst", "irstd1k", "sirst_uavb")


class DataNotPreparedError(RuntimeError):
  """A real data set was asked for, but its files are not where the config points."""


class BadInputError(DataNotPreparedError):
  """The manual directory of a real data set has a defect (one-line message, file first).

  `problems` lists every defect found (the message shows the first one and a count), so a
  CLI prints one clean line and tools/prepare_data.py can list them all.
  """

  def __init__(self, message: str, problems=None, root: str | None = None, path: str | None = None):
    message = " ".join(str(message).split("\n"))
    self.problems = [" ".join(str(p).split("\n")) for p in (problems or [message])]
    self.root, self.path = root, path
    more = len(self.problems) - 1
    if more:
      message += (
        f" (and {more} more problem{'s' if more > 1 else ''}; "
        f"`python tools/prepare_data.py` lists them all)"
      )
    super().__init__(message)


def data_dir(dataset_config: ml_collections.ConfigDict) -> str:
  return os.path.expanduser(dataset_config.get("data_dir") or DEFAULT_DATA_DIR)


def _unknown_dataset(name: str) -> DataNotPreparedError:
  return DataNotPreparedError(
    f"unknown data set {name!r}: expected 'synthetic' or one of {', '.join(REAL_DATASETS)}"
  )


def get_builder(dataset_config: ml_collections.ConfigDict):
  """The TFDS builder named by `dataset_config.name`, not yet prepared."""
  # Imported here: TFDS pulls in TensorFlow, which config parsing alone should not need.
  from irstd_jax.datasets import builders

  name = dataset_config.name
  if name == "synthetic":
    return builders.make_builder(
      builders.SyntheticIrst,
      builders.synthetic_config(
        dataset_config.seed,
        dataset_config.num_train,
        dataset_config.num_test,
        dataset_config.image_size,
      ),
      data_dir(dataset_config),
    )
  if name in REAL_DATASETS:
    return builders.make_builder(
      builders.REAL_BUILDERS[name],
      builders.manual_config(
        train_split=dataset_config.get("train_split", "") or "",
        test_split=dataset_config.get("test_split", "") or "",
        binarize_masks=bool(dataset_config.get("binarize_masks", False)),
        fix_mask_size=bool(dataset_config.get("fix_mask_size", False)),
      ),
      data_dir(dataset_config),
    )
  raise _unknown_dataset(name)


def how_to_prepare(name: str) -> str:
  return (
    f"get the {name} files (see docs/data.md for where), "
    f"then pass --config.dataset.manual_dir=DIR or run "
    f"`python tools/prepare_data.py --dataset={name} --manual_dir=DIR`"
  )


def prepare(builder, dataset_config: ml_collections.ConfigDict) -> None:
  """Writes the data set if it is not prepared yet (validating a real set's files first).

  Raises DataNotPreparedError when a real set is not prepared and config.dataset.manual_dir
  is empty, BadInputError (a subclass) when the manual directory is missing or defective.
  Nothing is left behind by a failed prepare: TFDS writes into an `*.incomplete*` directory
  that it renames only on success and deletes on error.
  """
  if builder.is_prepared():
    return
  name = dataset_config.name
  if name not in REAL_DATASETS:
    builder.download_and_prepare()
    return
  import tensorflow_datasets as tfds

  from irstd_jax.datasets import manual

  manual_dir = dataset_config.get("manual_dir", "") or ""
  if not manual_dir:
    raise DataNotPreparedError(
      f"data set {name!r} is not prepared in {data_dir(dataset_config)} and "
      f"config.dataset.manual_dir is empty: {how_to_prepare(name)}"
    )
  root = manual.check_manual_dir(manual_dir, name)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))


SOURCES = ("tfds", "memory")


def _record(key: str, image, mask) -> dict:
  return {"image": image[..., None], "mask": mask[..., None], "id": key.encode()}


def load_memory_sources(dataset_config: ml_collections.ConfigDict):
  """(train, test) lists decoded straight into RAM: no TFDS, no TensorFlow, nothing written.

  The synthetic set is generated; a real set is read from `manual_dir` after the same
  whole-directory validation as the TFDS builders (`manual.scan`, BadInputError on a
  defect), so both sources hold identical records. Meant for small sets (NUAA-SIRST is
  55 MiB decoded) and for machines without TensorFlow.
  """
  import concurrent.futures

  from irstd_jax.datasets import manual
  from irstd_jax.datasets import synthetic

  name = dataset_config.name
  if name == "synthetic":
    size = dataset_config.image_size
    return tuple(
      [
        _record(key, image, mask)
        for key, image, mask in synthetic.generate_split(
          dataset_config.seed, split, count, size, size
        )
      ]
      for split, count in (("train", dataset_config.num_train), ("test", dataset_config.num_test))
    )
  if name not in REAL_DATASETS:
    raise _unknown_dataset(name)
  manual_dir = dataset_config.get("manual_dir", "") or ""
  if not manual_dir:
    raise DataNotPreparedError(
      f"config.dataset.source='memory' reads {name!r} from config.dataset.manual_dir, "
      f"which is empty: {how_to_prepare(name)}"
    )
  policy = manual.Policy(
    binarize_masks=bool(dataset_config.get("binarize_masks", False)),
    fix_mask_size=bool(dataset_config.get("fix_mask_size", False)),
  )
  plan = manual.scan(
    manual_dir,
    name,
    dataset_config.get("train_split", "") or "",
    dataset_config.get("test_split", "") or "",
    policy,
  )

  def load(entry):
    return _record(entry.id, *manual.load_pair(entry, policy))

  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    return tuple(list(pool.map(load, plan.splits[split])) for split in ("train", "test"))


def load_sources(dataset_config: ml_collections.ConfigDict):
  """Prepares the data set if needed and returns (train_source, test_source).

  Sources are random-access sequences of dicts {image (H,W,1) uint8, mask (H,W,1) uint8,
  id bytes}. `dataset_config.source`: "tfds" (default; prepared once into data_dir, read
  through ArrayRecord) or "memory" (`load_memory_sources`). With TFDS only process 0
  writes; the others wait for it (shared data_dir assumed).
  """
  source = dataset_config.get("source", "tfds")
  if source == "memory":
    return load_memory_sources(dataset_config)
  if source != "tfds":
    raise ValueError(f"dataset.source={source!r}: expected one of {SOURCES}")
  import jax
  from jax.experimental import multihost_utils

  builder = get_builder(dataset_config)
  if jax.process_index() == 0:
    prepare(builder, dataset_config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("irstd_jax:data_prepared")
    builder = get_builder(dataset_config)  # re-read the metadata process 0 wrote
  return builder.as_data_source("train"), builder.as_data_source("test")
