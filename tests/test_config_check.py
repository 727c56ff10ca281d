"""The config schema (default_config.FIELDS) drives defaults, validation, the resume check
and docs/config.md; a registry entry is all a new choice needs."""

from conftest import REPO
import pytest

from irstd_jax import checkpointing
from irstd_jax import config_check
from irstd_jax import config_reference
from irstd_jax import default_config
from irstd_jax import losses
from irstd_jax import models
from irstd_jax import optim


def _set(config, path, value):
  *parents, leaf = path.split(".")
  for part in parents:
    config = config[part]
  config[leaf] = value


def _refusal(path, value, purpose="train") -> str:
  config = default_config.base_config()
  with config.ignore_type():  # the wrong types a hand-written config file can hold
    _set(config, path, value)
  with pytest.raises(config_check.ConfigError) as info:
    config_check.validate_config(config, purpose=purpose)
  assert info.value.field == path and "\n" not in str(info.value)
  return str(info.value)


def test_config_reference_is_generated_from_the_schema():
  reference = (REPO / "docs" / "config.md").read_text()
  assert reference == config_reference.reference_markdown(), (
    "docs/config.md is stale: python -m irstd_jax.config_reference > docs/config.md"
  )
  for path in default_config.FIELDS:
    assert f"| `{path}` |" in reference


def test_every_default_passes_its_own_field_check():
  for path, field in default_config.FIELDS.items():
    config_check.check_field(path, field, field.default)
    if field.choices is not None:
      assert field.default in config_check.choices(field), path
  fields = default_config.field_names(default_config.base_config())
  assert sorted(fields) == sorted(default_config.FIELDS)


@pytest.mark.parametrize(
  "path, value, message",
  [
    (
      "train.learning_rate",
      1e9,
      "train.learning_rate: 1000000000.0 is too large (a number in (0, 10])",
    ),
    ("dataset.flip", "yes", "dataset.flip: 'yes' is not a boolean (True or False)"),
    ("model.attention.mask", "spiral", "model.attention.mask: 'spiral' is not a known mask"),
    ("model.block", "dense", "model.block: 'dense' is not a known block (one of basic, pconv)"),
    ("eval.pad_multiple", 0, "eval.pad_multiple: 0 is too small (an integer >= 1)"),
    ("dataset.manual_dir", 3, "dataset.manual_dir: 3 is not a string (text)"),
    ("model.blocks", (2, 2, 0, 2), "model.blocks: (2, 2, 0, 2) is not 4 positive integers"),
  ],
)
def test_schema_refuses(path, value, message):
  assert _refusal(path, value).startswith(message)


def test_checks_follow_the_purpose_and_the_condition():
  # A loss field is the training's business: evaluation of a stored config ignores it.
  config = default_config.base_config()
  config.loss.name = "iou"
  config_check.validate_config(config, purpose="eval")
  assert _refusal("dataset.num_test", 0, purpose="eval").startswith("dataset.num_test: 0")
  # Synthetic-only fields are not checked for a real set.
  config = default_config.base_config()
  config.dataset.name, config.dataset.num_test = "nuaa_sirst", 0
  config_check.validate_config(config, purpose="eval")


def test_a_new_registry_entry_is_a_valid_choice(monkeypatch):
  for path, registry, name in [
    ("loss.name", losses.LOSSES, "my_loss"),
    ("loss.scale_weight", losses.SCALE_WEIGHTS, "my_weight"),
    ("train.optimizer", optim.OPTIMIZERS, "my_optimizer"),
    ("train.schedule", optim.SCHEDULES, "my_schedule"),
  ]:
    assert _refusal(path, name).startswith(f"{path}: {name!r} is not a known")
    monkeypatch.setitem(registry, name, registry[next(iter(registry))])
    config = default_config.base_config()
    _set(config, path, name)
    config_check.validate_config(config)
  monkeypatch.setattr(models, "MODEL_NAMES", models.MODEL_NAMES + ("my_model",))
  config = default_config.base_config()
  config.model.name = "my_model"
  config_check.validate_config(config)


def test_a_model_preset_never_overrides_a_value_silently():
  message = _refusal("model.attention.kind", "none")  # the paper's preset sets 'gaussian'
  assert message == (
    "model.attention.kind: 'none' would be overridden by model.name='l1_gp_rotated', which "
    "sets 'gaussian' (leave it at its default, or set model.name=custom to choose every "
    "switch)"
  )
  config = default_config.base_config()
  config.model.name, config.model.attention.kind = "custom", "none"
  config_check.validate_config(config)  # custom: the config decides
  config.model.name, config.model.attention.kind = "mshnet", "cbam"
  config_check.validate_config(config)  # the preset's own value
  assert models.preset_summary(config.model) == (
    "model.name='mshnet' sets block='basic', channel_attention=True, attention.kind='cbam', "
    "attention.mask='none', attention.prior='gaussian'"
  )
  assert models.preset_summary(default_config.model_config()).startswith(
    "model.name='l1_gp_rotated' sets "
  )
  config.model.name = "custom"
  assert models.preset_summary(config.model) == ""


def test_resume_check_reads_the_schema():
  stored = default_config.base_config().to_dict()
  for path, field in default_config.FIELDS.items():
    config = default_config.base_config()
    default = field.default
    if isinstance(default, bool):
      changed = not default
    elif isinstance(default, tuple):
      changed = tuple(v + 1 for v in default)
    elif isinstance(default, (int, float)):
      changed = default + 2
    else:
      changed = default + "_changed"
    _set(config, path, changed)
    changes = checkpointing.state_changes(stored, config)
    if field.state is None:
      assert changes == [], path
    else:
      assert len(changes) == 1 and changes[0].startswith(f"{path} ("), (path, changes)
