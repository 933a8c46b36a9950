"""Run configs: strict parsing, overrides, files, and the run key."""

from __future__ import annotations

import pytest

from overparam.config import RunConfig, load_config_file, parse_override
from overparam.errors import ConfigError


def test_defaults_round_trip_through_dict():
    config = RunConfig()
    assert RunConfig.from_dict(config.to_dict()) == config


def test_flat_model_and_data_options_go_into_options():
    config = RunConfig.from_dict({"model": {"name": "mlp", "width": 512, "depth": 3},
                                  "data": {"name": "linear_regression", "p": 200}})
    assert config.model.options == {"width": 512, "depth": 3}
    assert config.data.options == {"p": 200}


def test_overrides_parse_values_as_yaml_and_rebuild():
    config = RunConfig().with_overrides(["train.lr=0.1", "model.width=1024", "train.milestones=[0.3, 0.6]",
                                         "data.n_train=500", "seed=4"])
    assert config.train.lr == 0.1 and config.model.options["width"] == 1024
    assert config.train.milestones == (0.3, 0.6) and config.data.n_train == 500 and config.seed == 4


def test_switching_model_drops_the_previous_models_options():
    config = RunConfig().with_overrides(["model.name=cnn1d", "model.channels=16"])
    assert config.model.options == {"channels": 16}


@pytest.mark.parametrize("override, match", [
    ("train.lrr=0.1", r"unknown config key\(s\) \['train.lrr'\]"),
    ("optim.lr=0.1", r"unknown config key"),
    ("train.lr=-3", "lr must be a positive finite number, got -3"),
    ("data.name=imagenet", "unknown dataset 'imagenet'"),
    ("data.label_noise=1.5", "label_noise must be a number in"),
    ("data.p=5", r"dataset 'mnist1d' does not take option\(s\) \['p'\]"),
    ("model.name=transformer", "unknown model 'transformer'"),
    ("seed=-1", "seed must be an integer >= 0, got -1"),
])
def test_bad_values_are_clear_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        RunConfig().with_overrides([override])


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        parse_override("train.lr")


def test_run_key_depends_only_on_non_default_fields():
    a = RunConfig().with_overrides(["train.lr=0.1"])
    b = RunConfig.from_dict({"train": {"lr": 0.1}})
    assert a.run_key() == b.run_key()
    assert a.run_key() != RunConfig().run_key()
    assert a.run_key() != a.with_overrides(["seed=1"]).run_key()
    # Setting a field to its default value does not rename the run.
    assert RunConfig().with_overrides(["train.momentum=0.9"]).run_key() == RunConfig().run_key()


def test_yaml_and_toml_files(tmp_path):
    (tmp_path / "c.yaml").write_text("model:\n  name: mlp\n  width: 64\n  depth: 1\ntrain:\n  lr: 0.2\nseed: 2\n")
    (tmp_path / "c.toml").write_text('seed = 2\n[model]\nname = "mlp"\nwidth = 64\ndepth = 1\n[train]\nlr = 0.2\n')
    a = RunConfig.from_dict(load_config_file(tmp_path / "c.yaml"))
    b = RunConfig.from_dict(load_config_file(tmp_path / "c.toml"))
    assert a == b and a.model.options == {"width": 64, "depth": 1}
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ConfigError, match="accepted: .yaml, .yml, .toml"):
        load_config_file(tmp_path / "c.json")
