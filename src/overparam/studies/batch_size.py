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

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.errors import ConfigError, check_positive_int, choice_error
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
    seeds: int = 3

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

    small, large = run_batch([RunConfig.from_dict(spec.params["run"]), RunConfig.from_dict(spec.params["large_run"])],
                             device=device, quiet=True)
    if "diverged" in (small.status, large.status):
        return RunOutcome("diverged", {"divergence": "an endpoint run diverged"}, {}, 0.0, small.provenance)
    loss, data, alphas = common.loss_fn(small), small.dataset, spec.params["alphas"]
    train = loss_along_line(small.model, large.model, loss, (data.x_train, data.y_train), alphas, batch_size=4096)
    test = loss_along_line(small.model, large.model, loss, (data.x_test, data.y_test), alphas, batch_size=4096)
    metrics = {"alphas": alphas, "line_train_loss": train.losses, "line_test_loss": test.losses,
               "line_train_acc": train.accuracies, "line_test_acc": test.accuracies,
               "small_test_acc": small.metrics["test_acc"], "large_test_acc": large.metrics["test_acc"]}
    curves = {name: list(enumerate(metrics[name])) for name in
              ("line_train_loss", "line_test_loss", "line_train_acc", "line_test_acc")}
    return RunOutcome("done", metrics, curves, small.wall_time_s + large.wall_time_s, small.provenance)


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    if spec.params["kind"] == "line":
        return _line(spec, device)
    return common.train_and_measure([spec], device, _measure)[0]


def run_batch(specs: list[RunSpec], device: str | None) -> list[RunOutcome]:
    return common.train_and_measure(specs, device, _measure)


def batch_key(spec: RunSpec) -> str | None:
    return None if spec.params["kind"] == "line" else common.batch_key(spec)


# --- summary -------------------------------------------------------------------------------------


# What the paper reports for each claim, and how many times sharper the largest batch must be.
PAPER_CLAIMS = {"lambda_max_ratio": "11.8x", "sharper_by": 2.0,
                "small_batch_accuracy_gain": "+1.61 pp (abstract); +2.25 pp (results list)"}


def summarize(rows: list[dict[str, Any]], config: BatchSizeConfig, name: str = NAME,
              paper: dict[str, Any] = PAPER_CLAIMS) -> list:
    from overparam.report import Claim, Section, bootstrap_ci, ratio_ci, spearman_ci

    title = f"{name}: SGD batch size (LR scaling '{config.lr_scaling}'), sharpness and generalization"

    done = common.done_rows(rows)
    train_rows = [r for r in done if common.run_params(r)["kind"] == "train"]
    line_rows = [r for r in done if common.run_params(r)["kind"] == "line"]
    by_batch = common.group(train_rows, lambda r: common.option(r, "train.batch_size"))
    if not by_batch:
        return [Section(title, "No finished runs yet.")]
    metrics = ("test_acc", "train_loss", "lambda_max", "hessian_trace", "keskar_sharpness")
    cis = {b: {m: bootstrap_ci(common.values(rs, m)) for m in metrics} for b, rs in by_batch.items()}
    table = common.table(
        ["batch size", "lr", "n", "test acc", "train loss", "λ_max", "tr(H)", "Keskar ε-sharpness (%)"],
        [[b, common.fmt(rs[0]["metrics"].get("lr", math.nan)), len(rs)] + [common.ci_text(cis[b][m]) for m in metrics]
         for b, rs in by_batch.items()])

    small, large = min(by_batch), max(by_batch)
    claims = []
    lam_small, lam_large = common.by_seed(by_batch[small], "lambda_max"), common.by_seed(by_batch[large], "lambda_max")
    seeds = sorted(set(lam_small) & set(lam_large))
    ratio = ratio_ci([lam_large[s] for s in seeds], [lam_small[s] for s in seeds])
    sharper_by = paper["sharper_by"]
    how_much = "larger than" if sharper_by == 1 else f"more than {sharper_by:g} times"
    claims.append(Claim.from_ci(
        f"{name}.lambda_max_ratio", name,
        f"The top Hessian eigenvalue at the largest batch (B={large}) is {how_much} that at the smallest "
        f"(B={small}): ratio λ_max(B={large}) / λ_max(B={small}) > {sharper_by:g}, paired by seed.",
        paper["lambda_max_ratio"], ratio, greater_than=sharper_by))
    acc_small, acc_large = common.by_seed(by_batch[small], "test_acc"), common.by_seed(by_batch[large], "test_acc")
    seeds = sorted(set(acc_small) & set(acc_large))
    gain = bootstrap_ci([100 * (acc_small[s] - acc_large[s]) for s in seeds])
    claims.append(Claim.from_ci(
        f"{name}.small_batch_accuracy_gain", name,
        f"Smaller batches generalize better: test accuracy at B={small} minus at B={large}, in percentage points, "
        f"paired by seed (> 0).", paper["small_batch_accuracy_gain"], gain, greater_than=0.0))
    pairs = [(r["metrics"]["lambda_max"], 1 - r["metrics"]["test_acc"]) for r in train_rows
             if "lambda_max" in r["metrics"] and "test_acc" in r["metrics"]]
    rho = spearman_ci([p[0] for p in pairs], [p[1] for p in pairs])
    claims.append(Claim.from_ci(
        f"{name}.sharpness_error_correlation", name,
        "Sharpness (λ_max) and test error are positively rank-correlated across all runs (Spearman ρ > 0).",
        "positive correlation", rho, greater_than=0.0, n_seeds=config.seeds,
        details={"n_runs": len(pairs)}))

    reading = (f"Trained for the same number of epochs with LR scaling '{config.lr_scaling}', the smallest batch "
               f"(B={small}) reached test accuracy {common.ci_text(cis[small]['test_acc'])} and the largest "
               f"(B={large}) {common.ci_text(cis[large]['test_acc'])}: a difference of {common.fmt(gain[0], 3)} pp "
               f"[{common.fmt(gain[1], 3)}, {common.fmt(gain[2], 3)}]. λ_max went from "
               f"{common.fmt(cis[small]['lambda_max'][0], 3)} to {common.fmt(cis[large]['lambda_max'][0], 3)} "
               f"({common.fmt(ratio[0], 3)}x; paper: {paper['lambda_max_ratio']}), and the rank correlation between sharpness and test error "
               f"over {len(pairs)} runs is ρ = {common.fmt(rho[0], 3)} [{common.fmt(rho[1], 3)}, "
               f"{common.fmt(rho[2], 3)}]. Final training loss: {common.ci_text(cis[small]['train_loss'], 3)} at "
               f"B={small} vs {common.ci_text(cis[large]['train_loss'], 3)} at B={large}"
               + (" — at equal epochs the large batch takes far fewer steps and did not fit the training set as "
                  "well, so part of the accuracy gap is under-training rather than generalization (Hoffer et al. "
                  "2017)." if cis[large]["train_loss"][0] > max(10 * cis[small]["train_loss"][0], 0.05) else ".")
               + " With cross-entropy, λ_max also shrinks as the training loss goes to zero, so runs that end at "
                 "different losses are not compared at equal loss.")
    text = ("Per batch size: mean over seeds with a 95% bootstrap CI; λ_max, tr(H), ε-sharpness and the "
            f"perturbation curve are measured on {train_rows[0]['metrics'].get('measure_examples', '?')} training "
            f"examples.\n\n{table}\n\n{reading}")
    figures = [(f"{name}_accuracy_sharpness", _accuracy_sharpness_figure(by_batch, cis)),
               (f"{name}_perturbation", _perturbation_figure(by_batch[small], by_batch[large], small, large))]
    if line_rows:
        figures.append((f"{name}_line", _line_figure(line_rows, small, large)))
    return [Section(title, text, figures, claims)]


def _log2_axis(ax, xs) -> None:
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks(list(xs))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _accuracy_sharpness_figure(by_batch: dict, cis: dict):
    from overparam.report import errorbar_plot, new_figure

    fig, (left, right) = new_figure(1, 2, width=11, height=4.2)
    xs, ns = list(by_batch), [len(rs) for rs in by_batch.values()]
    for ax, metric, label in ((left, "test_acc", "test accuracy"), (right, "lambda_max", "λ_max (top Hessian eigenvalue)")):
        c = [cis[b][metric] for b in xs]
        errorbar_plot(ax, xs, [v[0] for v in c], [v[1] for v in c], [v[2] for v in c], label, ns)
        _log2_axis(ax, xs)
        ax.set_xlabel("batch size B")
        ax.set_ylabel(label)
    right.set_yscale("log")
    left.set_title("test accuracy vs batch size")
    right.set_title("sharpness vs batch size")
    fig.tight_layout()
    return fig


def _perturbation_figure(small_rows: list, large_rows: list, small: int, large: int):
    from overparam.report import bootstrap_ci, errorbar_plot, new_figure

    fig, ax = new_figure()
    for rows, b, colour in ((small_rows, small, "tab:blue"), (large_rows, large, "tab:red")):
        curves = [r["metrics"]["perturbation_increase"] for r in rows if "perturbation_increase" in r["metrics"]]
        if not curves:
            continue
        sigmas = rows[0]["metrics"]["perturbation_sigmas"]
        c = [bootstrap_ci([curve[i] for curve in curves]) for i in range(len(sigmas))]
        errorbar_plot(ax, sigmas, [v[0] for v in c], [v[1] for v in c], [v[2] for v in c], f"B={b}", len(curves),
                      color=colour)
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_xlabel("perturbation size σ (relative to each layer's norm)")
    ax.set_ylabel("E[L(θ+δ) − L(θ)] (train loss increase)")
    ax.set_title("weight-perturbation sensitivity: small vs large batch")
    return fig


def _line_figure(line_rows: list, small: int, large: int):
    from overparam.report import new_figure

    fig, (ax_loss, ax_acc) = new_figure(1, 2, width=11, height=4.2)
    alphas = np.asarray(line_rows[0]["metrics"]["alphas"])
    for split, style in (("train", "-"), ("test", "--")):
        for ax, metric in ((ax_loss, f"line_{split}_loss"), (ax_acc, f"line_{split}_acc")):
            curves = np.asarray([r["metrics"][metric] for r in line_rows], dtype=float)
            mean = curves.mean(axis=0)
            ax.plot(alphas, mean, style, color="black" if split == "train" else "tab:purple",
                    label=f"{split} (mean of n={len(curves)} seeds; band: min-max)")
            ax.fill_between(alphas, curves.min(axis=0), curves.max(axis=0), alpha=0.2,
                            color="black" if split == "train" else "tab:purple")
    for ax, label in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        for x, text in ((0.0, f"B={small}"), (1.0, f"B={large}")):
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
    summarize=summarize,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 100, "seed": 0},
                 "model": {"name": "mlp", "width": 16, "depth": 1}, "train": {"lr": 0.05, "epochs": 1},
                 "batch_sizes": [16, 64], "flatness": _TINY_FLATNESS, "line_points": 5, "seeds": 2},
        "quick": {"data": {"name": "mnist1d", "seed": 0}, "model": {"name": "mlp", "width": 256, "depth": 2},
                  "train": {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "epochs": 30},
                  "batch_sizes": [16, 64, 256, 1024, 2048], "seeds": 3},
        "mnist": {"data": {"name": "mnist", "n_train": 10000, "n_test": 10000, "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 512, "depth": 2},
                  "train": {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "epochs": 10},
                  "batch_sizes": [16, 64, 256, 1024, 2048], "seeds": 3},
        "paper": {"data": {"name": "mnist", "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 1024, "depth": 2},
                  "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "epochs": 20},
                  "batch_sizes": [32, 128, 512, 2048, 8192], "flatness": {"examples": 5000}, "seeds": 5},
    },
)
