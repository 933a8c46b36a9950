"""``train``: a grid of plain training runs (any RunConfig axes x seeds).

The generic study behind the others: it sweeps dotted RunConfig keys (``axes``), trains each
point with :func:`overparam.run.run_one` and stores the final metrics and training curves.

    overparam run train --preset quick --set "axes={model.width: [32, 128, 512]}" --seeds 3
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from overparam.analysis import Run, SeedTable
from overparam.config import RunConfig
from overparam.errors import ConfigError, check_positive_int
from overparam.report import CI, Section
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
            specs.append(RunSpec(run_key("train", params, seed), params, seed, run_config))
            run_configs.append(run_config)
    validate([c for c in run_configs if c.seed == 0] or run_configs)
    return specs


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    from overparam.run import run_one as train_run

    record = train_run(spec.config, device=device, quiet=True)
    return RunOutcome(record.status, record.metrics, record.curves, record.wall_time_s, record.provenance)


def batch_key(spec: RunSpec) -> str:
    from overparam.run import batch_signature

    return batch_signature(spec.config)


def run_batch(specs: list[RunSpec], device: str | None) -> list[RunOutcome]:
    from overparam.run import run_batch as train_batch

    records = train_batch([s.config for s in specs], device=device, quiet=True)
    return [RunOutcome(r.status, r.metrics, r.curves, r.wall_time_s, r.provenance) for r in records]


def axis_value(config: RunConfig, dotted: str) -> Any:
    """The value of a swept RunConfig key (``model.width``, ``train.lr``): the user's axes name
    config keys, so this is the one place a study reads a config by its dotted name."""
    node: Any = config.to_dict()
    for part in dotted.split("."):
        if isinstance(node, dict) and part not in node and "options" in node:
            node = node["options"]
        node = node.get(part) if isinstance(node, dict) else None
    return node


@dataclass
class TrainAnalysis:
    axes: list[str]  # the swept config keys
    table: SeedTable  # seed x grid point (a tuple of the axes' values)
    test: list[CI]  # per grid point, the mean test accuracy over seeds
    train: list[CI]


def analyze(runs: list[Run], config: TrainSweepConfig) -> TrainAnalysis:
    axes = list(config.axes)
    table = SeedTable(runs, lambda run: tuple(axis_value(run.config, axis) for axis in axes))
    return TrainAnalysis(axes, table, table.cis("test_acc"), table.cis("train_acc"))


def render(a: TrainAnalysis, claims: list, config: TrainSweepConfig) -> list[Section]:
    """Final test/train accuracy per grid point and a figure of test accuracy against the first
    axis. The generic study makes no published claims."""
    from overparam.studies import common

    rows = [[str(v) for v in point] + [n, common.ci_text(test), common.ci_text(train)]
            for point, n, test, train in zip(a.table.axis, a.table.n_runs(), a.test, a.train)]
    table = common.table(a.axes + ["n", "test acc (95% CI)", "train acc (95% CI)"], rows)
    figures = []
    if a.axes and a.table.axis and all(isinstance(point[0], (int, float)) for point in a.table.axis):
        figures.append(("test_accuracy", _figure(a)))
    text = "Final metrics per grid point, mean over seeds with a 95% interval.\n\n" + table
    return [Section("train: accuracy per grid point", text, figures, [])]


def _figure(a: TrainAnalysis):
    from overparam.report.figures import errorbar_plot, log2_axis, new_figure

    fig, ax = new_figure()
    order = sorted(range(len(a.table.axis)), key=lambda j: a.table.axis[j][0])
    xs = [a.table.axis[j][0] for j in order]
    errorbar_plot(ax, xs, [a.test[j][0] for j in order], [a.test[j][1] for j in order], [a.test[j][2] for j in order],
                  "test accuracy", [a.table.n_runs()[j] for j in order])
    if min(xs) > 0:
        log2_axis(ax, sorted(set(xs)))
    ax.set_xlabel(a.axes[0])
    ax.set_ylabel("test accuracy")
    ax.set_title(f"test accuracy vs {a.axes[0]}")
    return fig


STUDY = Study(
    name="train",
    description="a grid of plain training runs over RunConfig axes x seeds (the generic study)",
    config_type=TrainSweepConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    render=render,
    batch_key=batch_key,
    run_batch=run_batch,
    presets={
        "quick": {"train": {"lr": 0.05, "batch_size": 64, "epochs": 5}},
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 200}, "model": {"name": "mlp", "width": 16,
                 "depth": 1}, "train": {"lr": 0.05, "batch_size": 50, "epochs": 1}, "axes": {"model.width": [8, 16]}},
        "paper": {"data": {"name": "mnist1d"}, "train": {"lr": 0.05, "batch_size": 64, "epochs": 50}, "seeds": 5},
    },
)
