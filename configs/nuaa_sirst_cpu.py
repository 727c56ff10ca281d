"""NUAA-SIRST on the 50/50 split (DNANet/BasicIRSTD, 213 train / 214 test): the CPU recipe.

The recipe this project measured to converge on a 2-core CPU in about an hour (learning
curve and numbers: docs/results.md); it trains the weights in pretrained/.

  python -m irstd_jax.main --config=configs/nuaa_sirst_cpu.py --workdir=runs/nuaa_cpu \
      --config.dataset.manual_dir=/path/to/sirst

Differences from configs/nuaa_sirst.py (MSHNet's 400-epoch GPU recipe): half MSHNet's
width, 128x128 crops, batch 8, Adam 2e-3 with a cosine decay, 100 epochs, 3 warm-up
epochs, data decoded into RAM (no TFDS).
"""

from irstd_jax import default_config


def get_config():
  config = default_config.base_config()
  config.dataset.name = "nuaa_sirst"
  config.dataset.source = "memory"
  config.dataset.train_split = "train_50_50.txt"
  config.dataset.test_split = "test_50_50.txt"
  # Measured by python -m irstd_jax.prepare_data on the 50/50 train split (213 images).
  config.dataset.mean = 113.36
  config.dataset.std = 59.39
  config.dataset.crop_size = 128
  config.model.channels = (8, 16, 32, 64, 128)
  config.train.num_epochs = 100
  config.train.batch_size = 8
  config.train.optimizer = "adam"
  config.train.learning_rate = 2e-3
  config.train.schedule = "cosine"
  config.train.log_every_steps = 27
  config.loss.warm_epochs = 3
  config.eval.every_epochs = 4
  return config
