"""``lottery``: the lottery-ticket experiment (Frankle & Carbin 2019), with its two controls.

The paper's lottery-ticket experiment (arXiv 2604.07603): layer-wise iterative magnitude
pruning (IMP) with rewinding to the original initialization. One run is one seed's whole IMP
trajectory, because each level's controls need that seed's masks:

- level 0: train the dense network from its initialization theta_0 (the seed's init).
- level k = 1..rounds: prune ``prune_fraction`` (0.2) of the remaining weights of every hidden
  layer and ``output_prune_fraction`` (0.1) of the output layer's, by smallest magnitude of the
  previous level's trained ticket; then train three networks on the same data, with the same
  data order and budget, their pruned weights held at exactly 0.0 throughout training: the
  *ticket*, the mask on theta_0 (surviving weights rewound to their initial values); *reinit*
  (control 1), the same mask on a fresh random initialization (init seed derived from the run
  seed and the level); *random* (control 2), a random mask with exactly the ticket's per-layer
  weight counts (drawn from the run seed and the level) on theta_0. After 10 rounds
  0.8^10 = 10.7% of each hidden layer remains.

Per level the run stores the fraction of prunable weights remaining (weight matrices only;
biases are never pruned) and the remaining weights per layer in ``metrics["levels"]``, and as
curves (step = level) that fraction (``remaining``) and for each network its final test and
train accuracy and the test accuracy at its early-stopping point (the evaluation of minimum test
loss): ``<network>_test_acc``, ``<network>_train_acc``, ``<network>_early_stopping_test_acc``;
the ticket curves start with the dense network at level 0. The report pivots them by seed and
(level, network).

Claims (statements in :func:`claims`, the paper's in ``PAPER_CLAIMS``), at the level whose
remaining fraction is closest to 10%, on final test accuracies paired by seed: ticket vs dense,
vs reinit and vs random mask. The margin over the better control at every level is in the report.

Presets' costs: ``tiny`` seconds (tests); ``quick`` (MNIST-1D, MLP 40-100-100-10, 11 rounds to
10.1% of the weights, 5 seeds: 170 trainings) about 2 minutes on 2 CPU cores with one torch thread;
``mnist`` (10k MNIST examples) ~17 minutes on 2 cores; ``paper`` (full MNIST, Frankle & Carbin's
50k Adam iterations, 15 rounds to 3.5%) for a GPU. ``mnist`` and ``paper`` use a 300-300 MLP, not
LeNet-300-100 (784-300-100-10): overparam's MLP has one width for all hidden layers.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from overparam.analysis import Missing, Run, SeedTable, binomial_se, paired_difference
from overparam.errors import ConfigError, check_fraction, check_positive_int
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import DIFFERENCE_PP, Published, above, below
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "lottery"
NETWORKS = ("ticket", "reinit", "random")
LABELS = {"ticket": "winning ticket (IMP, rewound to init)", "reinit": "same mask, random reinit",
          "random": "random mask (same layer counts), original init", "dense": "dense"}
TARGET_REMAINING = 0.10  # the paper's claims are at ~10% of weights remaining
ACCURACIES = ("test_acc", "train_acc", "early_stopping_test_acc")  # stored per network and level


@dataclass(frozen=True)
class LotteryConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "seed": 0})
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "width": 100, "depth": 2})
    train: dict[str, Any] = field(default_factory=lambda: {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                                           "batch_size": 100, "epochs": 12})
    rounds: int = 11  # pruning rounds after the dense level
    prune_fraction: float = 0.2  # of each hidden layer's remaining weights, per round
    output_prune_fraction: float = 0.1  # of the output layer's remaining weights, per round
    seeds: int = 5

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds)
        check_positive_int("rounds", self.rounds)
        check_fraction("output_prune_fraction", self.output_prune_fraction)
        if not (check_fraction("prune_fraction", self.prune_fraction) > 0):
            raise ConfigError(f"prune_fraction must be a number in (0, 1), got {self.prune_fraction!r}")


def grid(config: LotteryConfig) -> list[RunSpec]:
    """One run per seed; every seed's model is built (on the meta device) before any run."""
    runs = [common.run_config(config.data, config.model, config.train, seed) for seed in range(config.seeds)]
    specs = [common.spec(NAME, run, rounds=config.rounds, prune_fraction=config.prune_fraction,
                         output_prune_fraction=config.output_prune_fraction) for run in runs]
    common.validate_specs(specs)
    _check_prunable(runs[0])
    return specs


def _check_prunable(run_config) -> None:
    """The model must have a prunable layer besides the output layer (a ConfigError if not)."""
    import torch

    from overparam import models
    from overparam.prune import output_layer, prunable_parameters
    from overparam.run import load_data

    dataset = load_data(run_config, torch.device("cpu"), quiet=True)
    with torch.device("meta"):
        model = models.build(run_config.model.name, dataset.input_shape, dataset.num_classes or 1,
                             **run_config.model.options)
    if all(n == output_layer(model) for n in prunable_parameters(model)):
        raise ConfigError(f"model {run_config.model.name!r} with options {run_config.model.options} has no prunable "
                          f"layer besides its output layer; the lottery study needs e.g. an mlp with depth >= 1")


# --- one run: a seed's IMP trajectory ------------------------------------------------------------


def _train(model, dataset, run_config, masks) -> dict[str, Any]:
    """Train ``model`` (already masked) with its pruned weights held at 0; its accuracies."""
    from overparam.prune import mask_callback, prunable_parameters
    from overparam.train import fit

    result = fit(model, dataset, run_config.train, seed=run_config.seed,
                 callbacks=[] if masks is None else [mask_callback(masks)])
    accuracies = (result.metrics.get("test_acc"), result.metrics.get("train_acc"), result.early_stopping_test_acc)
    out = {"status": result.status, "steps": result.steps, "divergence": result.divergence,
           **dict(zip(ACCURACIES, accuracies if result.status == "done" else (None,) * 3))}
    params = prunable_parameters(model)
    out["max_abs_pruned"] = 0.0 if masks is None else max(
        (float(params[n].detach()[~m].abs().max()) for n, m in masks.items() if bool((~m).any())), default=0.0)
    return out


def _train_level(ticket, control, init, masks, dataset, run_config, target, level: int) -> dict[str, dict[str, Any]]:
    """Train one pruning level's three networks: the ticket (the mask on theta_0), reinit (the
    mask on a fresh init, same data order) and random (a random mask with the ticket's per-layer
    counts, on theta_0). ``control`` is the model reused for the random-mask network."""
    from overparam.prune import apply_masks, random_prune, rewind
    from overparam.run import build_model
    from overparam.seeding import derive_seed

    rewind(ticket, init, masks)
    runs = {"ticket": _train(ticket, dataset, run_config, masks)}
    reinit = build_model(replace(run_config, seed=derive_seed(run_config.seed, NAME, "reinit", level)), dataset, target)
    apply_masks(reinit, masks)
    runs["reinit"] = _train(reinit, dataset, run_config, masks)
    random_masks = random_prune(masks, seed=derive_seed(run_config.seed, NAME, "random_mask", level))
    rewind(control, init, random_masks)
    runs["random"] = _train(control, dataset, run_config, random_masks)
    return runs


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    from overparam.device import resolve_device
    from overparam.provenance import provenance
    from overparam.prune import count_remaining, magnitude_prune, remaining_by_layer, remaining_fraction, snapshot
    from overparam.run import build_model, load_data

    started = time.perf_counter()
    run_config = spec.config
    target = resolve_device(device)
    dataset = load_data(run_config, target, quiet=True)
    ticket = build_model(run_config, dataset, target)
    control = build_model(run_config, dataset, target)  # reused for the random-mask control
    init = snapshot(ticket)
    trained = {(0, "ticket"): _train(ticket, dataset, run_config, None)}  # level 0: the dense network
    levels: list[dict[str, Any]] = [{"level": 0, "remaining": 1.0}]
    masks = None
    for level in range(1, spec.params["rounds"] + 1):
        if trained[(level - 1, "ticket")]["status"] != "done":  # the next level would prune a diverged network
            break
        masks = magnitude_prune(ticket, masks, spec.params["prune_fraction"],  # from the previous level's ticket
                                spec.params["output_prune_fraction"])
        levels.append({"level": level, "remaining": remaining_fraction(masks),
                       "remaining_by_layer": remaining_by_layer(masks), "counts": count_remaining(masks)})
        trained.update({(level, net): result for net, result in _train_level(
            ticket, control, init, masks, dataset, run_config, target, level).items()})
    return RunOutcome(*_outcome(trained, levels, spec.params, dataset), time.perf_counter() - started,
                      {**provenance(target), "data": dataset.info})


def _outcome(trained: dict[tuple[int, str], dict[str, Any]], levels: list[dict[str, Any]], params: dict[str, Any],
             dataset: Any) -> tuple[str, dict[str, Any], dict[str, list[tuple[int, float]]]]:
    """A run's status, metrics and curves from its trained networks ({(level, network): result of
    :func:`_train`}, level 0 the dense network) and its levels. Accuracies are stored as curves
    (step = level); ``metrics["levels"]`` holds each level's remaining fraction and weight counts."""
    dense = trained[(0, "ticket")]
    failed = [(level, net) for (level, net), result in trained.items() if result["status"] != "done"]
    metrics: dict[str, Any] = {
        "dense_test_acc": dense["test_acc"], "dense_train_acc": dense["train_acc"],
        "dense_early_stopping_test_acc": dense["early_stopping_test_acc"], "steps": dense["steps"],
        **{k: params[k] for k in ("rounds", "prune_fraction", "output_prune_fraction")},
        "n_train": dataset.n_train, "n_test": dataset.n_test,
        "diverged": ["dense" if level == 0 else f"{net}@{level}" for level, net in failed],
        "max_abs_pruned_weight": max(result["max_abs_pruned"] for result in trained.values()),
        "levels": levels, "final_remaining": levels[-1]["remaining"]}
    ticket = next((level for level, net in failed if net == "ticket"), None)
    if ticket is not None:
        why = trained[(ticket, "ticket")]["divergence"]
        metrics["divergence"] = why if ticket == 0 else f"ticket at level {ticket}: {why}"
    curves = {"remaining": [(e["level"], e["remaining"]) for e in levels]}
    for (level, net), result in trained.items():
        for key in ACCURACIES:
            if isinstance(result[key], (int, float)):
                curves.setdefault(f"{net}_{key}", []).append((level, result[key]))
    return ("done" if ticket is None else "diverged"), metrics, curves


# --- analysis ------------------------------------------------------------------------------------

TITLE = "lottery: winning tickets under iterative magnitude pruning"
DENSE = (0, "ticket")  # the dense network: level 0 of the ticket's trajectory


def _points(run: Run) -> list[Run]:
    """One run's IMP trajectory as one :class:`Run` per (level, network) (level 0: the dense
    network, as "ticket"), read from the run's curves (step = level), with metrics "remaining"
    (fraction of prunable weights), "test_pct" and "early_stopping_pct" (final test accuracy and
    test accuracy at the early-stopping point, in %; NaN where the network has none)."""
    def percent(name: str) -> dict[int, float]:
        steps, values = run.curve(name)
        return dict(zip(steps.tolist(), 100 * values))

    pct = {(net, name): percent(f"{net}_{name}_acc") for net in NETWORKS for name in ("test", "early_stopping_test")}
    return [Run(f"{run.key}:{net}@{level}", run.seed, run.status, {"level": level, "network": net}, None,
                {"remaining": fraction, "test_pct": pct[(net, "test")].get(level, math.nan),
                 "early_stopping_pct": pct[(net, "early_stopping_test")].get(level, math.nan)})
            for level, fraction in zip(*(v.tolist() for v in run.curve("remaining")))
            for net in (NETWORKS if level > 0 else ("ticket",))]


@dataclass
class LotteryAnalysis:
    """Accuracies are final test accuracies in %, means over seeds with 95% t-intervals;
    differences are in percentage points, paired by seed (t-intervals); remaining fractions are of
    the prunable weights, in [0, 1]."""

    table: SeedTable  # seed x (level, network), metrics of :func:`_points`; DENSE is the dense network
    levels: list[int]  # the pruned levels (>= 1), ascending
    remaining: dict[int, float]  # pruned level -> fraction of prunable weights remaining (mean over seeds)
    at10: int  # the pruned level whose remaining fraction is closest to TARGET_REMAINING
    sparsest: int  # the last pruned level
    dense: CI  # the dense network's accuracy
    accuracy: dict[int, dict[str, CI]]  # pruned level -> network -> accuracy
    gaps: dict[int, dict[str, CI]]  # pruned level -> "dense" | "reinit" | "random" -> ticket − that network
    dense_gap: CI  # dense − ticket at ``at10`` (what pruning costs)
    margins: dict[int, CI]  # pruned level -> ticket − max(reinit, random) (seeds with both controls)
    n_test: int | None  # test examples (None: not stored)
    binomial_se: dict[str, float]  # "dense" | "reinit" | "random": the test set's SE of ticket − it at ``at10``, pp
    diverged: list[str]  # "seed s: dense, reinit@3, ..." per run with diverged trainings (left out)
    max_abs_pruned: float  # largest |w| of a pruned weight after training, over all runs (0.0: the masks held)


def analyze(runs: list[Run], config: LotteryConfig) -> LotteryAnalysis | Missing:
    table = SeedTable([p for run in runs for p in _points(run)], lambda p: (p.settings["level"], p.settings["network"]))
    levels = sorted({level for level, _ in table.axis if level > 0})
    if not levels or DENSE not in table.axis:
        return Missing(TITLE, "No finished run with a pruned level yet.")
    means = dict(zip(table.axis, table.mean("remaining")))
    remaining = {level: float(means[(level, "ticket")]) for level in levels}
    at10 = min(levels, key=lambda level: (abs(remaining[level] - TARGET_REMAINING), level))
    gaps = {level: {other: table.difference("test_pct", (level, "ticket"), key)
                    for other, key in (("dense", DENSE), ("reinit", (level, "reinit")), ("random", (level, "random")))}
            for level in levels}
    margins = {level: paired_difference(table.at("test_pct", (level, "ticket")), np.maximum(
        table.at("test_pct", (level, "reinit")), table.at("test_pct", (level, "random")))) for level in levels}
    n_test = max((r.metric("n_test") for r in runs), default=math.nan)
    n_test = int(n_test) if math.isfinite(n_test) else None
    accuracy = dict(zip(table.axis, table.mean("test_pct") / 100))
    se = {other: binomial_se(accuracy[(at10, "ticket")], accuracy[key], n_test)
          for other, key in (("dense", DENSE), ("reinit", (at10, "reinit")), ("random", (at10, "random")))}
    return LotteryAnalysis(
        table, levels, remaining, at10, levels[-1], table.ci("test_pct", DENSE),
        {level: {net: table.ci("test_pct", (level, net)) for net in NETWORKS} for level in levels}, gaps,
        table.difference("test_pct", DENSE, (at10, "ticket")), margins, n_test, se,
        [f"seed {r.seed}: {', '.join(r.metrics['diverged'])}" for r in runs if r.metrics.get("diverged")],
        max((r.metric("max_abs_pruned_weight") for r in runs), default=math.nan))


# The paper's claims (arXiv 2604.07603, after Frankle & Carbin 2019), fixed before any run.
PAPER_CLAIMS = {
    "ticket_vs_dense_10pct": Published("within 1.15 pp of dense at ~10% of weights", common.PAPER, below(1.15)),
    "reinit_loss_10pct": Published("2.80 pp lower after random reinitialization", common.PAPER, above(0.0), 2.80,
                                   " pp", DIFFERENCE_PP),
    "random_mask_loss_10pct": Published("winning tickets outperform random pruning", common.PAPER, above(0.0)),
}


def claims(a: LotteryAnalysis, config: LotteryConfig, paper: dict[str, Published] = PAPER_CLAIMS) -> list[Claim]:
    where = f"At {100 * a.remaining[a.at10]:.1f}% of prunable weights remaining (level {a.at10}, the closest to 10%)"
    details = {"level": a.at10, "remaining": a.remaining[a.at10]}
    measured = {  # claim -> (the network the ticket is compared with, the paired difference, the statement's rest)
        "ticket_vs_dense_10pct": ("dense", a.dense_gap, (
            "the winning ticket's final test accuracy is within 1.15 pp of the dense network's: dense − ticket, in "
            "percentage points, paired by seed, is below 1.15. A bound on what pruning costs: a ticket more accurate "
            "than the dense network (a negative gap) satisfies it.")),
        "reinit_loss_10pct": ("reinit", a.gaps[a.at10]["reinit"], (
            "randomly reinitializing the winning ticket's sparse structure loses test accuracy: ticket − reinit, in "
            "percentage points, paired by seed (> 0).")),
        "random_mask_loss_10pct": ("random", a.gaps[a.at10]["random"], (
            "a random mask with the ticket's per-layer weight counts on the original initialization loses test "
            "accuracy: ticket − random-mask, in percentage points, paired by seed (> 0). With the reinit claim: the "
            "ticket beats both controls.")),
    }
    return [Claim.judged(f"lottery.{key}", NAME, f"{where}, {rest}", paper[key], ci, test_examples=a.n_test,
                         binomial_se=a.binomial_se[other], details=details)
            for key, (other, ci, rest) in measured.items()]


# --- report --------------------------------------------------------------------------------------


_cell = functools.partial(common.ci_text, digits=3)


def render(a: LotteryAnalysis, claims: list[Claim], config: LotteryConfig) -> list[Section]:
    early = dict(zip(a.table.axis, a.table.mean("early_stopping_pct")))
    early_table = common.table(["level", "remaining %", "ticket", "reinit", "random-mask"], [
        [level, common.fmt(100 * a.remaining[level], 3)] + [common.fmt(early[(level, net)], 3) for net in NETWORKS]
        for level in a.levels])
    text = (f"Layer-wise iterative magnitude pruning with rewinding to the original initialization: per round, "
            f"{100 * config.prune_fraction:g}% of each hidden layer's remaining weights and "
            f"{100 * config.output_prune_fraction:g}% of the output layer's are removed. Accuracies are final test "
            f"accuracies in %, mean over seeds with a 95% t-interval; differences are paired by seed, in "
            f"percentage points (t-interval). 'remaining %' counts weight matrices only (biases are never pruned).\n\n"
            f"{_level_table(a)}\n\nTest accuracy at each network's early-stopping point (the evaluation of minimum "
            f"test loss; mean over seeds, %; dense: {common.fmt(early[DENSE], 3)}):\n\n{early_table}\n\n"
            f"{_reading(a)}\n\n")
    text += ("Every pruned weight was exactly 0.0 after training, in every trained network (checked). "
             if a.max_abs_pruned == 0.0 else "WARNING: a pruned weight was nonzero after training (largest |w| over "
             f"pruned weights: {common.fmt(a.max_abs_pruned, 3)}). ")
    text += f"Diverged trainings (left out): {'; '.join(a.diverged)}." if a.diverged else "No training diverged."
    return [Section(TITLE, text, [("lottery_accuracy_vs_remaining", _accuracy_figure(a))], claims)]


def _level_table(a: LotteryAnalysis) -> str:
    return common.table(
        ["level", "remaining %", "n", "ticket test acc %", "reinit test acc %", "random-mask test acc %",
         "ticket − dense (pp)", "ticket − reinit (pp)", "ticket − random (pp)", "ticket − better control (pp)"],
        [[0, "100", a.dense.n, _cell(a.dense) + " (dense)", "", "", "", "", "", ""]]
        + [[level, common.fmt(100 * a.remaining[level], 3), a.accuracy[level]["ticket"].n]
           + [_cell(a.accuracy[level][net]) for net in NETWORKS]
           + [_cell(a.gaps[level][other]) for other in ("dense", "reinit", "random")] + [_cell(a.margins[level])]
           for level in a.levels])


def _reading(a: LotteryAnalysis) -> str:
    """What the level table shows beyond the claims (at level ``at10``, below): where the ticket is
    best, and whether its margin over the better control grows with sparsity."""
    first, dense = a.levels[0], a.dense[0]
    best_level = max(a.levels, key=lambda level: a.accuracy[level]["ticket"][0])
    best, margin_first, beats = a.accuracy[best_level]["ticket"][0], a.margins[first][0], a.margins[a.sparsest]
    side = "above" if best > dense else "below" if best < dense else "level with"
    return (f"The most accurate ticket was at level {best_level} ({100 * a.remaining[best_level]:.1f}% remaining): "
            f"{common.fmt(best, 3)}%, {side} the dense network's {common.fmt(dense, 3)}% by "
            f"{common.fmt(abs(best - dense), 3)} pp (means over seeds). The ticket's margin over the better of its two "
            f"controls (per seed) was {common.fmt(margin_first, 3)} pp at the first pruning level "
            f"({100 * a.remaining[first]:.1f}% remaining) and {_cell(beats)} pp at the sparsest "
            f"({100 * a.remaining[a.sparsest]:.1f}%): {'larger' if beats[0] > margin_first else 'not larger'} there.")


def _accuracy_figure(a: LotteryAnalysis):
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from overparam.report.figures import n_label, new_figure

    fig, ax = new_figure(width=7.4, height=4.6)
    xs = np.array([100 * a.remaining[level] for level in a.levels])
    for net, colour, marker in zip(NETWORKS, ("tab:blue", "tab:orange", "tab:green"), "os^"):
        est, low, high = (np.array([a.accuracy[level][net][i] for level in a.levels]) for i in range(3))
        ax.plot(xs, est, marker=marker, markersize=4.5, color=colour, zorder=3,
                label=f"{LABELS[net]} ({n_label([a.accuracy[level][net].n for level in a.levels])}, 95% CI)")
        band = ~(np.isnan(low) | np.isnan(high))
        if band.any():
            ax.fill_between(xs[band], low[band], high[band], color=colour, alpha=0.18, linewidth=0, zorder=2)
    ax.axhline(a.dense[0], color="0.3", linestyle="--", linewidth=1.2, zorder=1,
               label=f"dense, 100% of weights ({n_label(a.dense.n)}, 95% CI)")
    if a.dense.decided:
        ax.axhspan(a.dense[1], a.dense[2], color="0.3", alpha=0.12, linewidth=0, zorder=0)
    at10 = 100 * a.remaining[a.at10]
    ax.axvline(at10, color="0.5", linestyle=":", linewidth=1)
    ax.annotate(f"claims at {at10:.1f}%", (at10, 0.98), xycoords=("data", "axes fraction"), xytext=(-4, 0),
                textcoords="offset points", ha="right", va="top", fontsize=8, color="0.35")
    ax.set_xscale("log")
    ax.set_xlim(xs.max() * 1.12, xs.min() / 1.12)  # reversed: sparsity grows to the right
    ax.set_xticks(xs if len(xs) <= 8 else xs[::2])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="weights remaining (% of prunable weights, log scale)", ylabel="test accuracy (%)",
           title="test accuracy vs fraction of weights remaining")
    ax.legend(fontsize=8, frameon=False, loc="best")
    return fig


STUDY = Study(
    name=NAME,
    description="lottery tickets: iterative magnitude pruning with rewinding vs random-reinit and random-mask controls",
    config_type=LotteryConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 200, "seed": 0},
                 "model": {"name": "mlp", "width": 16, "depth": 1},
                 "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 50, "epochs": 2},
                 "rounds": 2, "seeds": 2},
        "quick": {"data": {"name": "mnist1d", "seed": 0}, "model": {"name": "mlp", "width": 100, "depth": 2},
                  "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 100, "epochs": 12},
                  "rounds": 11, "seeds": 5},
        "mnist": {"data": {"name": "mnist", "n_train": 10000, "n_test": 10000, "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 300, "depth": 2},
                  "train": {"optimizer": "adam", "lr": 1.2e-3, "batch_size": 60, "epochs": 5},
                  "rounds": 10, "seeds": 5},
        "paper": {"data": {"name": "mnist", "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 300, "depth": 2},
                  "train": {"optimizer": "adam", "lr": 1.2e-3, "batch_size": 60, "steps": 50000, "eval_every": 1000},
                  "rounds": 15, "seeds": 5},
    },
)
