"""One command-line layer: --config.FIELD=VALUE everywhere, one `error:` line."""

from absl import flags
import pytest

from irstd_jax import cli
from irstd_jax import config_check
from irstd_jax import default_config


def _flag_values(with_override: bool) -> flags.FlagValues:
  values = flags.FlagValues()
  flags.DEFINE_string("checkpoint", None, "", flag_values=values)
  if with_override:
    cli.define_override_flag(values)
  return values


def test_config_overrides_of_a_checkpoint_config_are_routed_and_applied():
  values = _flag_values(with_override=True)
  argv = cli.route_overrides(
    ["evaluate", "--checkpoint=w", "--config.eval.threshold=0.3", "--config.seed", "4"],
    values,
  )
  assert argv == [
    "evaluate",
    "--checkpoint=w",
    "--config_override=eval.threshold=0.3",
    "--config_override=seed=4",
  ]
  values(argv)
  config = default_config.base_config()
  cli.apply_config_overrides(config, values)
  assert config.eval.threshold == 0.3 and config.seed == 4


def test_the_older_set_spelling_still_routes_and_a_config_file_keeps_its_overrides():
  values = _flag_values(with_override=True)
  argv = ["evaluate", "--config=configs/synthetic.py", "--config.seed=1", "--set=eval.distance=2"]
  assert cli.route_overrides(argv, values) == [
    "evaluate",
    "--config=configs/synthetic.py",
    "--config.seed=1",  # config_flags applies it to the file's config
    "--config_override=eval.distance=2",
  ]
  # A command without the override flag (main) is left to config_flags entirely.
  plain = ["main", "--config.seed=1"]
  assert cli.route_overrides(plain, _flag_values(with_override=False)) == plain


def test_a_misspelt_override_names_the_flag_the_user_typed():
  values = _flag_values(with_override=True)
  values(cli.route_overrides(["evaluate", "--config.eval.treshold=0.9"], values))
  with pytest.raises(config_check.ConfigError) as info:
    cli.apply_config_overrides(default_config.base_config(), values)
  assert str(info.value) == (
    "--config.eval.treshold: no such config field (did you mean eval.threshold?)"
  )


def test_argparse_tools_take_the_same_spelling():
  assert cli.set_args(["--grid=paper", "--config.train.num_epochs=2", "--set", "seed=1"]) == [
    "--grid=paper",
    "--set=train.num_epochs=2",
    "--set",
    "seed=1",
  ]


def test_error_is_one_line_and_returns_the_status(capsys):
  assert cli.error("a\n  b   c", 3) == 3
  assert capsys.readouterr().err == "error: a b c\n"
  with pytest.raises(SystemExit) as info:
    cli.fail("x")
  assert info.value.code == 2


def test_load_config_file_gives_the_files_config_and_one_line_errors(tmp_path):
  """The one reader of a config file named on a command line (main's file check, ablate)."""
  good = tmp_path / "good.py"
  good.write_text(
    "from irstd_jax import default_config\n\n\n"
    "def get_config(seed='3'):\n"
    "  config = default_config.base_config()\n"
    "  config.seed = int(seed)\n"
    "  return config\n"
  )
  assert cli.load_config_file(str(good)).seed == 3
  assert cli.load_config_file(f"{good}:7").seed == 7  # config_flags' file.py:argument form
  bad = tmp_path / "bad.py"
  bad.write_text("def get_config():\n  return {'seed': 1}\n")
  for path, message in (
    (bad, "get_config() returned dict, not a ConfigDict"),
    (tmp_path / "none.py", "none.py does not exist"),
  ):
    with pytest.raises(config_check.ConfigError) as info:
      cli.load_config_file(str(path))
    assert info.value.field == "--config" and message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)
