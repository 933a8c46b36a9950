"""Run configuration: typed, validated, serializable, hashed.

A :class:`RunConfig` is everything needed to reproduce one run from its stored JSON alone:
which data (and transforms), which model (and its constructor options), how to train, and the
seed. Configs come from defaults, a YAML/TOML file and ``key=value`` overrides with dotted
keys (``train.lr=0.1``, ``model.width=512``); an unknown key or a bad value raises
``ConfigError`` before anything runs.

The run key follows open_lth: a hash of only the fields that differ from their defaults, so
adding a new option with a default never renames existing results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from overparam.errors import ConfigError, check_fraction, check_positive_int
from overparam.train.loop import TrainConfig


@dataclass(frozen=True)
class DataConfig:
    """Which dataset and transforms (arguments of :func:`overparam.data.load`)."""

    name: str = "mnist1d"
    n_train: int | None = None
    n_test: int | None = None
    label_noise: float = 0.0
    standardize: bool | str = False
    flatten: bool = False
    options: dict[str, Any] = field(default_factory=dict)  # source options, e.g. {"p": 1000}
    # Seed of the data draw (subset, label noise, synthetic problem); None: the run's seed.
    # Fixing it keeps one dataset across seeds, so only init and data order vary.
    seed: int | None = None

    def __post_init__(self) -> None:
        from overparam.data import get_entry

        entry = get_entry(self.name)
        unknown = sorted(set(self.options) - set(entry.options))
        if unknown:
            raise ConfigError(f"dataset {self.name!r} does not take option(s) {unknown}; accepted: {entry.options}")
        for name in ("n_train", "n_test"):
            if getattr(self, name) is not None:
                check_positive_int(f"data.{name}", getattr(self, name))
        check_fraction("data.label_noise", self.label_noise, closed_upper=True)
        if self.seed is not None:
            check_positive_int("data.seed", self.seed, minimum=0)
        if self.standardize not in (False, True, "global", "feature"):
            raise ConfigError(f"data.standardize must be false, true, 'global' or 'feature', got {self.standardize!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Which model: a registry name and the constructor's keyword options."""

    name: str = "mlp"
    options: dict[str, Any] = field(default_factory=lambda: {"width": 256, "depth": 2})

    def __post_init__(self) -> None:
        from overparam.models import MODEL_NAMES

        if self.name not in MODEL_NAMES:
            from overparam.errors import choice_error

            raise choice_error("model", self.name, MODEL_NAMES)


@dataclass(frozen=True)
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int("seed", self.seed, minimum=0)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        """Build from nested dicts. For ``model`` and ``data``, keys other than the declared
        fields go into ``options`` (so ``model: {name: mlp, width: 512}`` works)."""
        raw = dict(raw)
        _reject_unknown("", raw, {f.name for f in fields(cls)})
        data = _section(DataConfig, raw.get("data", {}), "data", open_options=True)
        model = _section(ModelConfig, raw.get("model", {}), "model", open_options=True)
        train = _section(TrainConfig, raw.get("train", {}), "train", open_options=False)
        return cls(data=data, model=model, train=train, seed=raw.get("seed", 0))

    def with_overrides(self, overrides: list[str] | dict[str, Any]) -> "RunConfig":
        """Apply dotted ``key=value`` overrides (values parsed as YAML: numbers, lists, null)."""
        nested = self.to_dict()
        # Options live flat in the config file format; move them up so overrides address them.
        for section in ("data", "model"):
            nested[section].update(nested[section].pop("options"))
        pairs = list(overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides))
        if any(k == "model.name" and v != self.model.name for k, v in pairs):
            nested["model"] = {"name": self.model.name}  # another model: its options start empty
        for key, value in pairs:
            node, parts = nested, key.split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"unknown config key {key!r}; sections: data, model, train, seed")
                node = node[part]
            node[parts[-1]] = value
        return RunConfig.from_dict(nested)

    def run_key(self) -> str:
        """Hash of the fields that differ from the defaults (16 hex digits)."""
        delta = _diff(self.to_dict(), RunConfig().to_dict())
        return hashlib.sha256(json.dumps(delta, sort_keys=True).encode()).hexdigest()[:16]


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. train.lr=0.1)")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: cannot parse value {value!r} ({error})") from error
    return key.strip(), parsed


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) config file into nested dicts."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix in (".yaml", ".yml"):
            return yaml.safe_load(path.read_text()) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"config file {str(path)!r} is not valid: {error}") from error
    raise ConfigError(f"config file {str(path)!r} has suffix {path.suffix!r}; accepted: .yaml, .yml, .toml")


def _section(cls, raw: Any, name: str, open_options: bool):
    if not isinstance(raw, dict):
        raise ConfigError(f"config section {name!r} must be a mapping, got {raw!r}")
    declared = {f.name for f in fields(cls)}
    if open_options:
        options = dict(raw.get("options", {}))
        options.update({k: v for k, v in raw.items() if k not in declared})
        kwargs = {k: v for k, v in raw.items() if k in declared and k != "options"}
        if cls is ModelConfig and "options" not in raw and not options:
            options = ModelConfig().options if kwargs.get("name", "mlp") == "mlp" else {}
        kwargs["options"] = options
    else:
        _reject_unknown(f"{name}.", raw, declared)
        kwargs = dict(raw)
        for key, value in kwargs.items():  # YAML gives lists where the dataclass wants tuples
            if isinstance(value, list):
                kwargs[key] = tuple(value)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"config section {name!r}: {error}") from error


def _reject_unknown(prefix: str, raw: dict, declared: set[str]) -> None:
    unknown = sorted(set(raw) - declared)
    if unknown:
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; accepted: "
                          f"{sorted(prefix + k for k in declared)}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _diff(value: Any, default: Any) -> Any:
    if isinstance(value, dict) and isinstance(default, dict):
        out = {k: _diff(v, default.get(k)) for k, v in value.items() if k not in default or v != default[k]}
        return {k: v for k, v in out.items()}
    return value
