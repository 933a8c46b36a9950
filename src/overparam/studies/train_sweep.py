"""``train``: a grid of plain training runs (any RunConfig axes x seeds).

The generic study behind the others: it sweeps dotted RunConfig keys (``axes``), trains each
point with :func:`overparam.run.run_one` and stores the final metrics and training curves.

    overparam run train --preset quick --set "axes={model.width: [32, 128, 512]}" --seeds 3
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from overparam.config import RunConfig
from overparam.errors import ConfigError, check_positive_int
from overparam.studies.base import RunOutcome, RunSpec, Study, run_key


@dataclass(frozen=True)
class TrainSweepConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "n_train": 1000})
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "width": 128, "depth": 2})
    train: dict[str, Any] = field(default_factory=lambda: {"lr": 0.05, "batch_size": 64, "epochs": 10})
    axes: dict[str, Any] = field(default_factory=lambda: {"model.width": [32, 128]})
    seeds: int = 2

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds)
        for key, values in self.axes.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"axis {key!r} must be a non-empty list of values, got {values!r}")


def _base(config: TrainSweepConfig) -> dict[str, Any]:
    return {"data": dict(config.data), "model": dict(config.model), "train": dict(config.train)}


def grid(config: TrainSweepConfig) -> list[RunSpec]:
    """Cartesian product of the axes x seeds; each point is validated as a RunConfig (and its
    model built on the meta device for its data) here, so a bad value fails before any run
    starts."""
    from overparam.run import validate

    keys = list(config.axes)
    specs, run_configs = [], []
    for values in itertools.product(*(config.axes[k] for k in keys)):
        for seed in range(config.seeds):
            run_config = RunConfig.from_dict({**_base(config), "seed": seed}).with_overrides(dict(zip(keys, values)))
            params = run_config.to_dict()
            specs.append(RunSpec(run_key("train", params, seed), params, seed))
            run_configs.append(run_config)
    validate([c for c in run_configs if c.seed == 0] or run_configs)
    return specs


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    from overparam.run import run_one as train_run

    record = train_run(RunConfig.from_dict(spec.params), device=device, quiet=True)
    return RunOutcome(record.status, record.metrics, record.curves, record.wall_time_s, record.provenance)


STUDY = Study(
    name="train",
    description="a grid of plain training runs over RunConfig axes x seeds (the generic study)",
    config_type=TrainSweepConfig,
    grid=grid,
    run_one=run_one,
    presets={
        "quick": {"train": {"lr": 0.05, "batch_size": 64, "epochs": 5}},
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 200}, "model": {"name": "mlp", "width": 16,
                 "depth": 1}, "train": {"lr": 0.05, "batch_size": 50, "epochs": 1}, "axes": {"model.width": [8, 16]}},
        "paper": {"data": {"name": "mnist1d"}, "train": {"lr": 0.05, "batch_size": 64, "epochs": 50}, "seeds": 5},
    },
)
