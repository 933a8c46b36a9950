"""``optimizer``: SGD, SGD+momentum, Adam and SAM on one model and budget: which finds the
flattest minimum, and does flatness order test accuracy?

The paper's experiment 5 (arXiv 2604.07603). Every optimizer trains the same model on the same
data at the same batch size, each at its own conventional learning rate (a setting of the
config, stated in the report), until the training loss over the whole training set reaches a
common target (``train.target_loss``, default cross-entropy 0.01 as in Jiang et al. 2020;
checked once per epoch) within an epoch cap: optimizers are compared at the solutions they
find, not after equal epochs, where they end at different losses (and λ_max shrinks with the
loss under cross-entropy). Runs that miss the target are listed and left out of the claims.
Per run: test accuracy, λ_max, tr(H), Keskar's ε-sharpness and the perturbation-sensitivity
curve (common.flatness_metrics) at the end of training.

Claims: SAM (which minimizes the worst-case loss in a ρ-ball) finds the flattest minimum, i.e.
the lowest λ_max; across runs, sharpness and test error are positively rank-correlated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.analysis import Missing, Run, SeedTable, correlation, mean_ci, split_by_target
from overparam.errors import ConfigError, check_positive_int
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import Published, above, below
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "optimizer"

DEFAULT_OPTIMIZERS = {
    "sgd": {"optimizer": "sgd", "momentum": 0.0, "lr": 0.1},
    "sgd_momentum": {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05},
    "adam": {"optimizer": "adam", "lr": 0.001},
    "sam": {"optimizer": "sam", "momentum": 0.9, "lr": 0.05, "sam_rho": 0.05},
}


@dataclass(frozen=True)
class OptimizerConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "seed": 0})
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "width": 256, "depth": 2})
    train: dict[str, Any] = field(default_factory=lambda: {"batch_size": 64, "epochs": 200,  # the cap
                                                           "target_loss": 0.01})
    optimizers: dict[str, Any] = field(default_factory=lambda: {k: dict(v) for k, v in DEFAULT_OPTIMIZERS.items()})
    flatness: dict[str, Any] = field(default_factory=dict)  # see common.FLATNESS_DEFAULTS
    seeds: int = 5

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds)
        if len(self.optimizers) < 2:
            raise ConfigError(f"optimizers needs at least two entries (name -> train settings), got {self.optimizers!r}")
        for name, settings in self.optimizers.items():
            if not isinstance(settings, dict) or "optimizer" not in settings:
                raise ConfigError(f"optimizers[{name!r}] must be a mapping of train settings with an 'optimizer' key, "
                                  f"e.g. {{optimizer: adam, lr: 0.001}}; got {settings!r}")
        common.check_flatness_settings(self.flatness)


def _config(config: OptimizerConfig, name: str, seed: int):
    return common.run_config(config.data, config.model, {**config.train, **config.optimizers[name]}, seed)


def grid(config: OptimizerConfig) -> list[RunSpec]:
    flatness = common.check_flatness_settings(config.flatness)
    specs = [common.spec(NAME, _config(config, name, seed), variant=name, flatness=flatness)
             for name in config.optimizers for seed in range(config.seeds)]
    common.validate_specs(specs)
    return specs


def _measure(spec: RunSpec, record: Any) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    return common.flatness_metrics(record, spec.params["flatness"])


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    return common.train_and_measure([spec], device, _measure)[0]


def run_batch(specs: list[RunSpec], device: str | None) -> list[RunOutcome]:
    return common.train_and_measure(specs, device, _measure)


# --- analysis ------------------------------------------------------------------------------------


METRICS = ("test_acc", "train_loss", "lambda_max", "hessian_trace", "keskar_sharpness")
TITLE = "optimizer: SGD, momentum, Adam and SAM — flatness and accuracy"


@dataclass
class OptimizerAnalysis:
    table: SeedTable  # runs that reached the target: seed x optimizer (the config's order)
    missed: list[Run]  # runs that missed the target within the cap (left out)
    cis: dict[str, list[CI]]  # per metric, the mean over seeds for each optimizer
    sam_ratio: CI | None  # λ_max(SAM) / λ_max(the flattest other optimizer), geometric mean of per-seed ratios
    runner_up: str | None  # that other optimizer
    rho: CI  # Spearman(λ_max, test error) over the runs, seeds as clusters


def analyze(runs: list[Run], config: OptimizerConfig) -> OptimizerAnalysis | Missing:
    runs, missed = split_by_target(runs)
    if not runs:
        return Missing(TITLE, "No finished runs that reached the training target yet."
                       + ("\n\n" + common.misses_text(missed, lambda r: r.settings["variant"]) if missed else ""))
    known = list(DEFAULT_OPTIMIZERS)  # stored configs sort their keys: show the usual order
    table = SeedTable(runs, lambda r: (known.index(r.settings["variant"]) if r.settings["variant"] in known
                                       else len(known), r.settings["variant"]))
    cis = {m: table.cis(m) for m in METRICS}
    names = [v for _, v in table.axis]
    ratio = runner_up = None
    if "sam" in names and len(names) > 1:
        lam = {v: ci[0] for v, ci in zip(names, cis["lambda_max"])}
        runner_up = min((v for v in names if v != "sam"), key=lam.get)
        ratio = table.ratio("lambda_max", table.axis[names.index("sam")], table.axis[names.index(runner_up)])
    rho = correlation(runs, "lambda_max", lambda r: 1 - r.metric("test_acc"))
    return OptimizerAnalysis(table, missed, cis, ratio, runner_up, rho)


PAPER_CLAIMS = {
    "sam_flattest": Published("SAM flattest (sharpness-aware training)", common.PAPER, below(1.0)),
    "flatness_orders_accuracy": Published("flatness orders test accuracy", common.PAPER, above(0.0)),
}


def claims(a: OptimizerAnalysis, config: OptimizerConfig) -> list[Claim]:
    out = []
    if a.sam_ratio is not None:
        out.append(Claim.judged(
            "optimizer.sam_flattest", NAME,
            f"SAM finds the flattest minimum: λ_max(SAM) / λ_max({a.runner_up}, the flattest of the others), the "
            f"geometric mean over seeds of the per-seed ratio, is below 1.", PAPER_CLAIMS["sam_flattest"], a.sam_ratio))
    out.append(Claim.judged(
        "optimizer.flatness_orders_accuracy", NAME,
        f"Flatter minima generalize better across optimizers: Spearman ρ between λ_max and test error over the "
        f"{a.rho.n_points} runs (seeds as clusters) is positive.", PAPER_CLAIMS["flatness_orders_accuracy"], a.rho))
    return out


# --- report --------------------------------------------------------------------------------------


def _settings(run: Run) -> str:
    train = run.config.train
    text = f"{train.optimizer}, lr {train.lr}"
    if train.optimizer in ("sgd", "sam"):
        text += f", momentum {train.momentum}"
    if train.optimizer == "sam":
        text += f", ρ {train.sam_rho}"
    return text


def render(a: OptimizerAnalysis, claims: list[Claim], config: OptimizerConfig) -> list[Section]:
    names = [v for _, v in a.table.axis]
    first = [next(row[j] for row in a.table.runs if row[j] is not None) for j in range(len(names))]
    table = common.table(["optimizer", "settings", "n", "test acc", "train loss", "λ_max", "tr(H)",
                          "Keskar ε-sharpness (%)"],
                         [[v, _settings(run), count] + [common.ci_text(a.cis[m][j]) for m in METRICS]
                          for j, (v, run, count) in enumerate(zip(names, first, a.table.n_runs()))])
    lam, acc = [c[0] for c in a.cis["lambda_max"]], [c[0] for c in a.cis["test_acc"]]
    flattest, best = names[int(np.argmin(lam))], names[int(np.argmax(acc))]
    reading = (f"Lowest mean λ_max: {flattest} ({common.fmt(min(lam), 3)}); highest mean test accuracy: {best} "
               f"({common.fmt(max(acc), 4)}). Across {a.rho.n_points} runs the rank correlation between λ_max and test "
               f"error is ρ = {common.ci_text(a.rho, 3)}. λ_max depends on the parameterization of the solution "
               f"(Adam's and SGD's minima differ in weight scale), so it is compared together with the scale-aware "
               f"perturbation curve and ε-sharpness; with cross-entropy it also shrinks as the training loss goes to "
               f"zero, hence the common training-loss target (final train losses are in the table).")
    misses = common.misses_text(a.missed, lambda r: r.settings["variant"])
    text = (f"Same model, data and batch size ({config.train.get('batch_size')}) for every optimizer, each trained "
            f"{common.target_text(config.train)}; mean over seeds with a 95% t-interval.\n\n{table}\n\n"
            + (f"{misses}\n\n" if misses else "") + reading)
    return [Section(TITLE, text, [("optimizer_flatness", _figure(a))], claims)]


def _figure(a: OptimizerAnalysis):
    from overparam.report.figures import new_figure

    fig, axes = new_figure(1, 3, width=15, height=4.2)
    names = [v for _, v in a.table.axis]
    positions = range(len(names))
    for ax, metric, label in ((axes[0], "test_acc", "test accuracy"), (axes[1], "lambda_max", "λ_max")):
        est, low, high = (np.array([c[i] for c in a.cis[metric]]) for i in range(3))
        ax.bar(positions, est, yerr=np.nan_to_num([est - low, high - est]), capsize=4, color="tab:blue", alpha=0.75)
        ax.set_xticks(list(positions), names)
        ax.set_ylabel(f"{label} (mean, 95% CI)")
        ax.set_title(f"{label} by optimizer (n={min(a.table.n_runs())} seeds)")
    lows = [c[1] for c in a.cis["test_acc"] if not np.isnan(c[1])]
    if lows:
        axes[0].set_ylim(max(0.0, min(lows) - 0.05), None)
    ax = axes[2]
    sigmas = np.nanmax(a.table["perturbation_sigmas"], axis=0)  # (optimizer, σ)
    _, curves = a.table.curve("perturbation_increase")  # (seeds, optimizer, σ)
    for j, name in enumerate(names):
        values = curves[:, j][np.isfinite(curves[:, j]).any(axis=1)]
        if not len(values):
            continue
        c = [mean_ci(values[:, i]) for i in range(values.shape[1])]
        ax.plot(sigmas[j], [x[0] for x in c], marker="o", label=name)
        ax.fill_between(sigmas[j], [x[1] for x in c], [x[2] for x in c], alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("perturbation size σ (relative to each layer's norm)")
    ax.set_ylabel("train loss increase (mean, 95% CI band)")
    ax.set_title("weight-perturbation sensitivity")
    ax.legend(fontsize=9, frameon=False)
    return fig


STUDY = Study(
    name=NAME,
    description="SGD, SGD+momentum, Adam and SAM trained to one train loss: flatness (λ_max, ε-sharpness) vs accuracy",
    config_type=OptimizerConfig,
    grid=grid,
    run_one=run_one,
    run_batch=run_batch,
    batch_key=common.batch_key,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 100, "seed": 0},
                 "model": {"name": "mlp", "width": 16, "depth": 1},
                 "train": {"batch_size": 50, "epochs": 3, "target_loss": 2.1},
                 "flatness": {"examples": 100, "sigmas": [0.05, 0.2], "draws": 2, "trace_hvps": 6}, "seeds": 2},
        "quick": {"data": {"name": "mnist1d", "seed": 0}, "model": {"name": "mlp", "width": 256, "depth": 2},
                  "train": {"batch_size": 64, "epochs": 200, "target_loss": 0.01}, "seeds": 5},
        "mnist": {"data": {"name": "mnist", "n_train": 10000, "n_test": 10000, "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 512, "depth": 2},
                  "train": {"batch_size": 128, "epochs": 100, "target_loss": 0.01}, "seeds": 5},
        "paper": {"data": {"name": "cifar10", "seed": 0, "standardize": "feature"},
                  "model": {"name": "cnn5", "width": 64},
                  "train": {"batch_size": 128, "epochs": 200, "target_loss": 0.01},
                  "flatness": {"examples": 5000}, "seeds": 5},
    },
)
