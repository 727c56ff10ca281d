"""Data sets: `load_sources(config.dataset)` -> (train, test) random-access sources.

`load_sources` is the entry of training, `load_test_source` (the test split alone) that of
evaluation; each module below imports only the ones after it:
  __init__.py   picks the source ('tfds' or 'memory') and the data set, reads the config.
  builders.py   TFDS builders that write the sets as ArrayRecord (source 'tfds' only).
  manual.py     reads and validates a real set's manual directory (numpy + PIL).
  synthetic.py  generates the synthetic set (numpy + scipy).
  specs.py      the real sets: name, folder layouts, where to get them (`SPECS`).
  errors.py     the errors every module raises.
`real_spec` is the one place that turns a config's data set name into its spec (None for
'synthetic', an error for an unknown name); the spec, not the name, is what builders.py
and manual.py are handed.
Data sets, layouts and the bad-input policy: docs/data.md.
"""

from __future__ import annotations

import concurrent.futures
import os

import jax
from jax.experimental import multihost_utils
import ml_collections

from irstd_jax import storage
from irstd_jax.datasets import manual
from irstd_jax.datasets import specs
from irstd_jax.datasets import synthetic
from irstd_jax.datasets.errors import BadInputError
from irstd_jax.datasets.errors import DataNotPreparedError
from irstd_jax.datasets.errors import how_to_prepare

__all__ = [
  "NAMES",
  "REAL_DATASETS",
  "SOURCES",
  "BadInputError",
  "DataNotPreparedError",
  "load_sources",
  "load_test_source",
  "load_memory_sources",
  "get_builder",
  "real_spec",
  "prepare",
  "data_dir",
]

REAL_DATASETS = specs.REAL_DATASETS
NAMES = ("synthetic",) + REAL_DATASETS  # what dataset.name accepts
SOURCES = ("tfds", "memory")
_DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")  # what data_dir="" means


def load_sources(dataset_config: ml_collections.ConfigDict):
  """Prepares the data set if needed and returns (train_source, test_source).

  Sources are random-access sequences of dicts {image (H,W,1) uint8, mask (H,W,1) uint8,
  id bytes}. `dataset_config.source`: "tfds" (prepared once into data_dir, read through
  ArrayRecord) or "memory" (`load_memory_sources`). With TFDS only process 0 writes; the
  others wait for it (shared data_dir assumed).
  """
  source = dataset_config.source
  if source == "memory":
    return load_memory_sources(dataset_config)
  if source != "tfds":
    raise ValueError(f"dataset.source={source!r}: expected one of {SOURCES}")
  builder = get_builder(dataset_config)
  if jax.process_index() == 0:
    prepare(builder, dataset_config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("irstd_jax:data_prepared")
    builder = get_builder(dataset_config)  # re-read the metadata process 0 wrote
  return builder.as_data_source("train"), builder.as_data_source("test")


def load_test_source(dataset_config: ml_collections.ConfigDict):
  """The test split alone, for evaluation: nothing of the train split is read or checked.

  A real set whose `manual_dir` is a folder is read from it (its test split file and the
  files it lists validated as `manual.scan` does, decoded into RAM, nothing written),
  whatever `source` says: a user's own labelled folder needs no train split, and a set
  prepared from another folder under the same TFDS name is never read in its place. Without
  such a folder a prepared TFDS set's test split is read; the synthetic set is generated
  (memory) or prepared (tfds) as for training.
  """
  name, source = dataset_config.name, dataset_config.source
  if source not in SOURCES:
    raise ValueError(f"dataset.source={source!r}: expected one of {SOURCES}")
  if real_spec(name) is None:
    if source == "memory":
      return load_memory_sources(dataset_config, splits=("test",))[0]
    return load_sources(dataset_config)[1]
  manual_dir = dataset_config.manual_dir
  if source == "tfds" and not (manual_dir and os.path.isdir(os.path.expanduser(manual_dir))):
    builder = get_builder(dataset_config)
    if builder.is_prepared():
      return builder.as_data_source("test")
    if not manual_dir:
      raise DataNotPreparedError(
        f"data set {name!r} is not prepared in {data_dir(dataset_config)} and "
        f"config.dataset.manual_dir is empty: {how_to_prepare(name)}"
      )
  return load_memory_sources(dataset_config, splits=("test",))[0]  # scan names a bad folder


# ------------------------------------------------------------------ source = "memory"


def load_memory_sources(dataset_config: ml_collections.ConfigDict, splits=specs.SPLITS):
  """Lists of the `splits` (default: train, test) decoded straight into RAM: no TFDS, no
  TensorFlow, nothing written.

  The synthetic set is generated; a real set is read from `manual_dir` after the same
  validation of those splits as the TFDS builders make (`manual.scan`, BadInputError on a
  defect), so both sources hold identical records. Meant for small sets (NUAA-SIRST is
  55 MiB decoded) and for machines without TensorFlow.
  """
  name, spec = dataset_config.name, real_spec(dataset_config.name)
  if spec is None:
    size = dataset_config.image_size
    counts = {"train": dataset_config.num_train, "test": dataset_config.num_test}
    return tuple(
      [
        _record(key, image, mask)
        for key, image, mask in synthetic.generate_split(
          dataset_config.seed, split, counts[split], size, size
        )
      ]
      for split in splits
    )
  if not dataset_config.manual_dir:
    raise DataNotPreparedError(
      f"config.dataset.source='memory' reads {name!r} from config.dataset.manual_dir, "
      f"which is empty: {how_to_prepare(name)}"
    )
  policy = _mask_policy(dataset_config)
  plan = manual.scan(
    dataset_config.manual_dir,
    spec,
    dataset_config.train_split,
    dataset_config.test_split,
    policy,
    splits=splits,
  )
  manual.print_warnings(name, plan.warnings)

  def load(entry):
    return _record(entry.id, *manual.load_pair(entry, policy))

  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    return tuple(list(pool.map(load, plan.splits[split])) for split in splits)


def _record(key: str, image, mask) -> dict:
  """(H, W) uint8 image and mask -> the record a TFDS source returns."""
  return {"image": image[..., None], "mask": mask[..., None], "id": key.encode()}


# --------------------------------------------------------------------- source = "tfds"


def get_builder(dataset_config: ml_collections.ConfigDict):
  """The TFDS builder named by `dataset_config.name`, not yet prepared."""
  # Imported here, not at the top: TFDS is needed by source='tfds' only, so 'memory'
  # runs on a machine without it (docs/data.md); importing it also takes 0.25-0.37 s.
  from irstd_jax.datasets import builders

  spec = real_spec(dataset_config.name)
  if spec is None:
    builder_config = builders.synthetic_config(
      dataset_config.seed,
      dataset_config.num_train,
      dataset_config.num_test,
      dataset_config.image_size,
    )
    return builders.make_builder(builders.SyntheticIrst, builder_config, data_dir(dataset_config))
  policy = _mask_policy(dataset_config)
  builder_config = builders.manual_config(
    train_split=dataset_config.train_split,
    test_split=dataset_config.test_split,
    binarize_masks=policy.binarize_masks,
    fix_mask_size=policy.fix_mask_size,
  )
  return builders.make_builder(
    builders.REAL_BUILDERS[spec.name], builder_config, data_dir(dataset_config)
  )


def _hide_accelerators_from_tensorflow() -> None:
  """TF (TFDS's backend when it writes a data set) must not reserve GPU/TPU memory JAX
  needs. Called only before a preparation: reading a prepared set imports no TF."""
  import tensorflow as tf  # here, not at the top: slow to import (~5 s on 2 cores)

  tf.config.set_visible_devices([], "GPU")
  tf.config.set_visible_devices([], "TPU")


def prepare(builder, dataset_config: ml_collections.ConfigDict) -> None:
  """Writes the data set if it is not prepared yet (validating a real set's files first).

  Raises DataNotPreparedError when a real set is not prepared and config.dataset.manual_dir
  is empty, when data_dir cannot be a folder to write into (a file, read-only) or the file
  system refuses a write (disk full, quota, file-size limit: one line naming data_dir, the
  OS error and the free space), BadInputError (a subclass) when the manual directory is
  missing or defective. Nothing is left behind by a failed prepare: TFDS writes into an
  `*.incomplete*` directory that it renames only on success and deletes on error.
  """
  from irstd_jax.datasets import builders  # see get_builder

  if builder.is_prepared():
    return
  name, directory = dataset_config.name, data_dir(dataset_config)
  spec = real_spec(name)
  if spec is not None and not dataset_config.manual_dir:
    raise DataNotPreparedError(
      f"data set {name!r} is not prepared in {directory} and "
      f"config.dataset.manual_dir is empty: {how_to_prepare(name)}"
    )
  problem = storage.directory_problem(directory)
  if problem:
    raise DataNotPreparedError(
      f"dataset.data_dir: {problem}: the {name} data set cannot be prepared there (a "
      f"writable directory, or one that can be created)"
    )
  _hide_accelerators_from_tensorflow()
  try:
    if spec is None:
      builder.download_and_prepare()
    else:
      builders.prepare_from_manual_dir(
        builder, manual.check_manual_dir(dataset_config.manual_dir, name)
      )
  except Exception as e:  # pylint: disable=broad-except
    if isinstance(e, DataNotPreparedError) or storage.os_error_number(e) is None:
      raise
    raise DataNotPreparedError(write_error_message(name, directory, e)) from None


def write_error_message(name: str, directory: str, error: BaseException) -> str:
  """One line for a write the file system refused while preparing (disk full, quota,
  file-size limit, read-only): the folder, the OS error, the free space."""
  return (
    f"{directory}: the {name} data set cannot be written: {storage.os_error_text(error)}; "
    f"{storage.free_space_text(directory)}; nothing of it was kept (TFDS removes its "
    f"incomplete.* folder): make room and run again"
  )


def data_dir(dataset_config: ml_collections.ConfigDict) -> str:
  """The TFDS data directory, user-expanded ('' means ~/tensorflow_datasets)."""
  return os.path.expanduser(dataset_config.data_dir or _DEFAULT_DATA_DIR)


# --------------------------------------------------------------------------- helpers


def _mask_policy(dataset_config: ml_collections.ConfigDict) -> manual.Policy:
  return manual.Policy(
    binarize_masks=dataset_config.binarize_masks, fix_mask_size=dataset_config.fix_mask_size
  )


def real_spec(name: str) -> specs.DatasetSpec | None:
  """The spec of real data set `name`; None for 'synthetic' (generated, no folder)."""
  if name == "synthetic":
    return None
  if name not in specs.SPECS:
    raise DataNotPreparedError(
      f"unknown data set {name!r}: expected 'synthetic' or one of {', '.join(REAL_DATASETS)}"
    )
  return specs.SPECS[name]
