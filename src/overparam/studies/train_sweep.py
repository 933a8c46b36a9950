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


def batch_key(spec: RunSpec) -> str:
    from overparam.run import batch_signature

    return batch_signature(RunConfig.from_dict(spec.params))


def run_batch(specs: list[RunSpec], device: str | None) -> list[RunOutcome]:
    from overparam.run import run_batch as train_batch

    records = train_batch([RunConfig.from_dict(s.params) for s in specs], device=device, quiet=True)
    return [RunOutcome(r.status, r.metrics, r.curves, r.wall_time_s, r.provenance) for r in records]


def _value_at(params: dict[str, Any], dotted: str) -> Any:
    """The value of a dotted RunConfig key in stored params (model/data options live in 'options')."""
    node: Any = params
    for part in dotted.split("."):
        if isinstance(node, dict) and part not in node and "options" in node:
            node = node["options"]
        node = node.get(part) if isinstance(node, dict) else None
    return node


def summarize(rows: list[dict[str, Any]], config: TrainSweepConfig) -> list:
    """Final test/train accuracy per grid point, mean over seeds with a 95% bootstrap CI, and a
    figure of test accuracy against the first axis. The generic study makes no published claims."""
    from overparam.report import Section, bootstrap_ci, errorbar_plot, new_figure

    done = [r for r in rows if r["status"] == "done"]
    axes = list(config.axes)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in done:
        point = tuple(_value_at(row["config"]["params"], axis) for axis in axes)
        groups.setdefault(point, []).append(row["metrics"])
    lines = ["| " + " | ".join(axes + ["n", "test acc (95% CI)", "train acc (95% CI)"]) + " |",
             "|" + "---|" * (len(axes) + 3)]
    curve = []
    def order(point: tuple) -> tuple:
        return tuple((0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v)) for v in point)

    for point in sorted(groups, key=order):
        metrics = groups[point]
        test = bootstrap_ci([m["test_acc"] for m in metrics if "test_acc" in m])
        train = bootstrap_ci([m["train_acc"] for m in metrics if "train_acc" in m])
        cells = [str(v) for v in point] + [str(len(metrics)), f"{test[0]:.4f} [{test[1]:.4f}, {test[2]:.4f}]",
                                          f"{train[0]:.4f} [{train[1]:.4f}, {train[2]:.4f}]"]
        lines.append("| " + " | ".join(cells) + " |")
        curve.append((point, test, len(metrics)))
    figures = []
    if axes and curve and all(isinstance(p[0], (int, float)) for p, _, _ in curve):
        fig, ax = new_figure()
        curve.sort(key=lambda item: item[0][0])
        errorbar_plot(ax, [p[0] for p, _, _ in curve], [c[0] for _, c, _ in curve], [c[1] for _, c, _ in curve],
                      [c[2] for _, c, _ in curve], "test accuracy", [n for _, _, n in curve])
        ax.set_xlabel(axes[0])
        ax.set_ylabel("test accuracy")
        if min(p[0] for p, _, _ in curve) > 0:
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ax.set_xticks([p[0] for p, _, _ in curve])
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"test accuracy vs {axes[0]}")
        figures.append(("test_accuracy", fig))
    text = "Final metrics per grid point, mean over seeds with a 95% bootstrap CI.\n\n" + "\n".join(lines)
    return [Section("train: accuracy per grid point", text, figures, [])]


STUDY = Study(
    name="train",
    description="a grid of plain training runs over RunConfig axes x seeds (the generic study)",
    config_type=TrainSweepConfig,
    grid=grid,
    run_one=run_one,
    legacy_summarize=summarize,
    batch_key=batch_key,
    run_batch=run_batch,
    presets={
        "quick": {"train": {"lr": 0.05, "batch_size": 64, "epochs": 5}},
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 200}, "model": {"name": "mlp", "width": 16,
                 "depth": 1}, "train": {"lr": 0.05, "batch_size": 50, "epochs": 1}, "axes": {"model.width": [8, 16]}},
        "paper": {"data": {"name": "mnist1d"}, "train": {"lr": 0.05, "batch_size": 64, "epochs": 50}, "seeds": 5},
    },
)
