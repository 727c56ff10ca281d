"""Data set registry: config.dataset -> prepared TFDS builder -> random-access sources."""

from __future__ import annotations

import os

import ml_collections

DEFAULT_DATA_DIR = os.path.join("~", "tensorflow_datasets")


class DataNotPreparedError(RuntimeError):
  """A real data set was asked for, but its files are not where the config points."""


def data_dir(dataset_config: ml_collections.ConfigDict) -> str:
  return os.path.expanduser(dataset_config.get("data_dir") or DEFAULT_DATA_DIR)


def get_builder(dataset_config: ml_collections.ConfigDict):
  """The TFDS builder named by `dataset_config.name`, not yet prepared."""
  # Imported here: TFDS pulls in TensorFlow, which config parsing alone should not need.
  from irstd_jax.datasets import builders
  name = dataset_config.name
  if name == "synthetic":
    return builders.SyntheticIrst(
        config=builders.synthetic_config(dataset_config.seed, dataset_config.num_train,
                                         dataset_config.num_test, dataset_config.image_size),
        data_dir=data_dir(dataset_config), file_format=builders.FILE_FORMAT)
  raise DataNotPreparedError(
      f"data set {name!r}: real data sets are prepared from a manual directory "
      f"(images/, masks/, splits/train.txt, splits/test.txt) but this version has no "
      f"builder for {name!r} yet; train on --config=configs/synthetic.py, or see README "
      f"'Data sets' for the status of real-data support.")


def load_sources(dataset_config: ml_collections.ConfigDict):
  """Prepares the data set if needed and returns (train_source, test_source).

  Sources are random-access sequences of dicts {image (H,W,1) uint8, mask (H,W,1) uint8,
  id bytes}. Only process 0 writes; the others wait for it (shared data_dir assumed).
  """
  import jax
  from jax.experimental import multihost_utils
  builder = get_builder(dataset_config)
  if jax.process_index() == 0:
    builder.download_and_prepare()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("irstd_jax:data_prepared")
    builder = get_builder(dataset_config)  # re-read the metadata process 0 wrote
  return builder.as_data_source("train"), builder.as_data_source("test")
