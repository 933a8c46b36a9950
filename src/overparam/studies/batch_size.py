"""``batch_size``: SGD across batch sizes at equal epochs: accuracy, sharpness, flatness.

The paper's experiment 1 (arXiv 2604.07603; after Keskar et al. 2017): one model and data,
trained with SGD at batch sizes B (quick: 16..2048, paper: 32..8192) for the same number of
epochs, the learning rate scaled with B by a selectable rule (none | linear | sqrt). Per run:
test accuracy, train loss, the top Hessian eigenvalue λ_max and tr(H), Keskar's ε-sharpness
and the loss increase under random weight perturbations of growing size. Per seed, one more
run trains the smallest- and largest-batch models again (deterministically the same) and
evaluates the loss along the line between them (Keskar's parametric plot).

Claims: λ_max(B_max) is several times λ_max(B_min) (paper: 11.8x); the smallest batch reaches
higher test accuracy than the largest (paper: +1.61 pp in the abstract, +2.25 pp in its
results list); sharpness and test error are positively rank-correlated across runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.analysis import Missing, Run, SeedTable, binomial_se, correlation, mean_ci
from overparam.errors import ConfigError, check_positive_int, choice_error
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import DIFFERENCE_PP, RATIO, Published, above
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study, run_key
from overparam.train.optim import LR_SCALING

NAME = "batch_size"


@dataclass(frozen=True)
class BatchSizeConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "seed": 0})
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "width": 256, "depth": 2})
    train: dict[str, Any] = field(default_factory=lambda: {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9,
                                                           "epochs": 30})
    batch_sizes: tuple[int, ...] = (16, 64, 256, 1024, 2048)
    lr_scaling: str = "none"  # none | linear | sqrt, relative to base_batch_size
    base_batch_size: int = 128
    flatness: dict[str, Any] = field(default_factory=dict)  # see common.FLATNESS_DEFAULTS
    line_points: int = 13  # α values in [-0.5, 1.5] for the loss along the small-large line
    seeds: int = 5

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds)
        check_positive_int("base_batch_size", self.base_batch_size)
        check_positive_int("line_points", self.line_points, minimum=2)
        if len(self.batch_sizes) < 2:
            raise ConfigError(f"batch_sizes needs at least two sizes, got {list(self.batch_sizes)}")
        for b in self.batch_sizes:
            check_positive_int("each batch size", b)
        if len(set(self.batch_sizes)) != len(self.batch_sizes):
            raise ConfigError(f"batch_sizes has repeated values: {list(self.batch_sizes)}")
        if self.lr_scaling not in LR_SCALING:
            raise choice_error("lr_scaling rule", self.lr_scaling, LR_SCALING)
        if self.train.get("optimizer", "sgd") not in ("sgd", "sam"):
            raise ConfigError(f"the batch_size study trains with minibatch SGD (optimizer 'sgd' or 'sam'), "
                              f"got optimizer={self.train.get('optimizer')!r}")
        common.check_flatness_settings(self.flatness)


def _config(config: BatchSizeConfig, batch_size: int, seed: int):
    return common.run_config(config.data, config.model, config.train, seed, **{
        "train.batch_size": batch_size, "train.lr_scaling": config.lr_scaling,
        "train.base_batch_size": config.base_batch_size})


def _alphas(config: BatchSizeConfig) -> list[float]:
    return [float(a) for a in np.linspace(-0.5, 1.5, config.line_points)]


def grid(config: BatchSizeConfig, name: str = NAME) -> list[RunSpec]:
    flatness = common.check_flatness_settings(config.flatness)
    specs = [common.spec(name, _config(config, b, seed), kind="train", flatness=flatness)
             for b in config.batch_sizes for seed in range(config.seeds)]
    small, large = min(config.batch_sizes), max(config.batch_sizes)
    for seed in range(config.seeds):
        params = {"kind": "line", "run": _config(config, small, seed).to_dict(),
                  "large_run": _config(config, large, seed).to_dict(), "alphas": _alphas(config)}
        specs.append(RunSpec(run_key(name, params, seed), params, seed))
    common.validate_specs(specs)
    return specs


def _measure(spec: RunSpec, record: Any) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    return common.flatness_metrics(record, spec.params["flatness"])


def _line(spec: RunSpec, device: str | None) -> RunOutcome:
    """Train the smallest- and largest-batch runs of this seed and evaluate the line between."""
    from overparam.config import RunConfig
    from overparam.measures import loss_along_line
    from overparam.run import run_batch

    small, large = run_batch([spec.config, RunConfig.from_dict(spec.params["large_run"])],
                             device=device, quiet=True)
    if "diverged" in (small.status, large.status):
        return RunOutcome("diverged", {"divergence": "an endpoint run diverged"}, {}, 0.0, small.provenance)
    loss, data, alphas = common.loss_fn(small), small.dataset, spec.params["alphas"]
    train = loss_along_line(small.model, large.model, loss, (data.x_train, data.y_train), alphas, batch_size=4096)
    test = loss_along_line(small.model, large.model, loss, (data.x_test, data.y_test), alphas, batch_size=4096)
    metrics = {"alphas": alphas, "small_test_acc": small.metrics["test_acc"], "large_test_acc": large.metrics["test_acc"]}
    lines = {"line_train_loss": train.losses, "line_test_loss": test.losses, "line_train_acc": train.accuracies,
             "line_test_acc": test.accuracies}
    curves = {name: list(enumerate(values)) for name, values in lines.items()}  # step = index of α
    return RunOutcome("done", metrics, curves, small.wall_time_s + large.wall_time_s, small.provenance)


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    if spec.params["kind"] == "line":
        return _line(spec, device)
    return common.train_and_measure([spec], device, _measure)[0]


def run_batch(specs: list[RunSpec], device: str | None) -> list[RunOutcome]:
    return common.train_and_measure(specs, device, _measure)


def batch_key(spec: RunSpec) -> str | None:
    return None if spec.params["kind"] == "line" else common.batch_key(spec)


# --- analysis -------------------------------------------------------------------------------------


# The paper's claims (arXiv 2604.07603, experiment 1), fixed before any run.
PAPER_CLAIMS = {
    "lambda_max_ratio": Published("11.8x", common.PAPER, above(1.0), 11.8, "x", RATIO),
    "small_batch_accuracy_gain": Published("+1.61 pp (abstract); +2.25 pp (results list)", f"{common.PAPER}, abstract",
                                           above(0.0), 1.61, " pp", DIFFERENCE_PP),
    "sharpness_error_correlation": Published("positive correlation", common.PAPER, above(0.0)),
}
METRICS = ("test_acc", "train_loss", "lambda_max", "hessian_trace", "keskar_sharpness")


@dataclass
class BatchSizeAnalysis:
    name: str
    table: SeedTable  # training runs: seed x batch size
    lines: list[Run]  # the per-seed runs along the line between the smallest- and largest-batch solutions
    cis: dict[str, list[CI]]  # per metric, the mean over seeds at each batch size
    small: int
    large: int
    ratio: CI  # λ_max(large) / λ_max(small), geometric mean of the per-seed ratios
    gain: CI  # test accuracy(small) − (large), pp, paired by seed
    gain_se: float  # the binomial standard error of that difference on the test set, pp
    test_examples: int
    rho: CI  # Spearman(λ_max, test error) over the runs, seeds as clusters
    measure_examples: int  # training examples the flatness measures use


def analyze(runs: list[Run], config: BatchSizeConfig, name: str = NAME) -> BatchSizeAnalysis | Missing:
    train = [r for r in runs if r.settings["kind"] == "train"]
    if not train:
        return Missing(_title(name, config), "No finished runs yet.")
    table = SeedTable(train, lambda r: r.config.train.batch_size)
    small, large = table.axis[0], table.axis[-1]
    accuracy = table.mean("test_acc")
    n_test = int(np.nanmax(table["n_test"]))
    return BatchSizeAnalysis(
        name, table, [r for r in runs if r.settings["kind"] == "line"], {m: table.cis(m) for m in METRICS},
        small, large, table.ratio("lambda_max", large, small), table.difference("test_acc", small, large, scale=100),
        binomial_se(accuracy[0], accuracy[-1], n_test), n_test,
        correlation(train, "lambda_max", lambda r: 1 - r.metric("test_acc")), int(np.nanmax(table["measure_examples"])))


def claims(a: BatchSizeAnalysis, config: BatchSizeConfig, paper: dict[str, Published] = PAPER_CLAIMS) -> list[Claim]:
    return [
        Claim.judged(
            f"{a.name}.lambda_max_ratio", a.name,
            f"Larger batches end sharper: λ_max(B={a.large}) / λ_max(B={a.small}), the geometric mean over seeds of "
            f"the per-seed ratio.", paper["lambda_max_ratio"], a.ratio),
        Claim.judged(
            f"{a.name}.small_batch_accuracy_gain", a.name,
            f"Smaller batches generalize better: test accuracy at B={a.small} minus at B={a.large}, in percentage "
            f"points, paired by seed.", paper["small_batch_accuracy_gain"], a.gain, test_examples=a.test_examples,
            binomial_se=a.gain_se),
        Claim.judged(
            f"{a.name}.sharpness_error_correlation", a.name,
            "Sharpness (λ_max) and test error are positively rank-correlated across the runs (Spearman ρ over "
            f"{a.rho.n_points} runs, seeds as clusters).", paper["sharpness_error_correlation"], a.rho),
    ]


# --- report --------------------------------------------------------------------------------------


def _title(name: str, config: BatchSizeConfig) -> str:
    return f"{name}: SGD batch size (LR scaling '{config.lr_scaling}'), sharpness and generalization"


def render(a: BatchSizeAnalysis, claims: list[Claim], config: BatchSizeConfig,
           paper: dict[str, Published] = PAPER_CLAIMS) -> list[Section]:
    lrs = a.table.mean("lr")
    table = common.table(
        ["batch size", "lr", "n", "test acc", "train loss", "λ_max", "tr(H)", "Keskar ε-sharpness (%)"],
        [[b, common.fmt(lrs[j]), count] + [common.ci_text(a.cis[m][j]) for m in METRICS]
         for j, (b, count) in enumerate(zip(a.table.axis, a.table.n_runs()))])
    text = ("Per batch size: mean over seeds with a 95% t-interval; λ_max, tr(H), ε-sharpness and the "
            f"perturbation curve are measured on {a.measure_examples} training "
            f"examples.\n\n{table}\n\n{_reading(a, config, paper)}")
    figures = [(f"{a.name}_accuracy_sharpness", _accuracy_sharpness_figure(a)),
               (f"{a.name}_perturbation", _perturbation_figure(a))]
    if a.lines:
        figures.append((f"{a.name}_line", _line_figure(a)))
    return [Section(_title(a.name, config), text, figures, claims)]


def _reading(a: BatchSizeAnalysis, config: BatchSizeConfig, paper: dict[str, Published]) -> str:
    first, last = 0, len(a.table) - 1
    acc, lam, loss = a.cis["test_acc"], a.cis["lambda_max"], a.cis["train_loss"]
    under_trained = loss[last][0] > max(10 * loss[first][0], 0.05)
    return (f"Trained for the same number of epochs with LR scaling '{config.lr_scaling}', the smallest batch "
            f"(B={a.small}) reached test accuracy {common.ci_text(acc[first])} and the largest (B={a.large}) "
            f"{common.ci_text(acc[last])}: a difference of {common.fmt(a.gain[0], 3)} pp [{common.fmt(a.gain[1], 3)}, "
            f"{common.fmt(a.gain[2], 3)}]. λ_max went from {common.fmt(lam[first][0], 3)} to "
            f"{common.fmt(lam[last][0], 3)} ({common.fmt(a.ratio[0], 3)}x; paper: {paper['lambda_max_ratio'].text}), and "
            f"the rank correlation between sharpness and test error over {a.rho.n_points} runs is ρ = "
            f"{common.fmt(a.rho[0], 3)} [{common.fmt(a.rho[1], 3)}, {common.fmt(a.rho[2], 3)}]. Final training loss: "
            f"{common.ci_text(loss[first], 3)} at B={a.small} vs {common.ci_text(loss[last], 3)} at B={a.large}"
            + (" — at equal epochs the large batch takes far fewer steps and did not fit the training set as "
               "well, so part of the accuracy gap is under-training rather than generalization (Hoffer et al. "
               "2017)." if under_trained else ".")
            + " With cross-entropy, λ_max also shrinks as the training loss goes to zero, so runs that end at "
              "different losses are not compared at equal loss.")


def _accuracy_sharpness_figure(a: BatchSizeAnalysis):
    from overparam.report.figures import errorbar_plot, log2_axis, new_figure

    fig, (left, right) = new_figure(1, 2, width=11, height=4.2)
    xs, ns = a.table.axis, a.table.n_runs()
    for ax, metric, label in ((left, "test_acc", "test accuracy"), (right, "lambda_max", "λ_max (top Hessian eigenvalue)")):
        c = a.cis[metric]
        errorbar_plot(ax, xs, [v[0] for v in c], [v[1] for v in c], [v[2] for v in c], label, ns)
        log2_axis(ax, xs)
        ax.set_xlabel("batch size B")
        ax.set_ylabel(label)
    right.set_yscale("log")
    left.set_title("test accuracy vs batch size")
    right.set_title("sharpness vs batch size")
    fig.tight_layout()
    return fig


def _perturbation_figure(a: BatchSizeAnalysis):
    from overparam.report.figures import errorbar_plot, new_figure

    fig, ax = new_figure()
    sigmas = a.table["perturbation_sigmas"]
    _, curves = a.table.curve("perturbation_increase")  # (S, B, σ)
    for b, colour in ((a.small, "tab:blue"), (a.large, "tab:red")):
        j = a.table.index(b)
        values = curves[:, j]
        values = values[np.isfinite(values).any(axis=1)]
        if not len(values):
            continue
        c = [mean_ci(values[:, i]) for i in range(values.shape[1])]
        errorbar_plot(ax, np.nanmax(sigmas[:, j], axis=0), [v[0] for v in c], [v[1] for v in c], [v[2] for v in c],
                      f"B={b}", len(values), color=colour)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("perturbation size σ (relative to each layer's norm)")
    ax.set_ylabel("E[L(θ+δ) − L(θ)] (train loss increase)")
    ax.set_title("weight-perturbation sensitivity: small vs large batch")
    return fig


def _line_figure(a: BatchSizeAnalysis):
    from overparam.report.figures import new_figure

    fig, (ax_loss, ax_acc) = new_figure(1, 2, width=11, height=4.2)
    lines = SeedTable(a.lines)
    alphas = np.nanmax(lines["alphas"][:, 0], axis=0)
    for split, colour, style in (("train", "black", "-"), ("test", "tab:purple", "--")):
        for ax, metric in ((ax_loss, f"line_{split}_loss"), (ax_acc, f"line_{split}_acc")):
            curves = lines.curve(metric)[1][:, 0]  # (seeds, α)
            ax.plot(alphas, curves.mean(axis=0), style, color=colour,
                    label=f"{split} (mean of n={len(curves)} seeds; band: min-max)")
            ax.fill_between(alphas, curves.min(axis=0), curves.max(axis=0), alpha=0.2, color=colour)
    for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for x, text in ((0.0, f"B={a.small}"), (1.0, f"B={a.large}")):
            ax.axvline(x, color="grey", linewidth=0.8, linestyle=":")
            ax.annotate(text, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=9)
        ax.set_xlabel("α  (θ = (1−α) θ_small + α θ_large)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8, frameon=False)
    ax_loss.set_yscale("log")
    fig.suptitle("loss along the line from the small-batch to the large-batch solution (Keskar et al. 2017)",
                 fontsize=10)
    fig.tight_layout()
    return fig


_TINY_FLATNESS = {"examples": 100, "sigmas": [0.05, 0.2], "draws": 2, "trace_hvps": 6}

STUDY = Study(
    name=NAME,
    description="SGD across batch sizes at equal epochs: test accuracy, λ_max, ε-sharpness, perturbation and line plots",
    config_type=BatchSizeConfig,
    grid=grid,
    run_one=run_one,
    run_batch=run_batch,
    batch_key=batch_key,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 100, "seed": 0},
                 "model": {"name": "mlp", "width": 16, "depth": 1}, "train": {"lr": 0.05, "epochs": 1},
                 "batch_sizes": [16, 64], "flatness": _TINY_FLATNESS, "line_points": 5, "seeds": 2},
        "quick": {"data": {"name": "mnist1d", "seed": 0}, "model": {"name": "mlp", "width": 256, "depth": 2},
                  "train": {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "epochs": 30},
                  "batch_sizes": [16, 64, 256, 1024, 2048], "seeds": 5},
        "mnist": {"data": {"name": "mnist", "n_train": 10000, "n_test": 10000, "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 512, "depth": 2},
                  "train": {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "epochs": 10},
                  "batch_sizes": [16, 64, 256, 1024, 2048], "seeds": 5},
        "paper": {"data": {"name": "mnist", "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 1024, "depth": 2},
                  "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 20},
                  "batch_sizes": [32, 128, 512, 2048, 8192], "flatness": {"examples": 5000}, "seeds": 5},
    },
)
