"""``lottery``: the lottery-ticket experiment (Frankle & Carbin 2019), with its two controls.

The paper's lottery-ticket experiment (arXiv 2604.07603): layer-wise iterative magnitude
pruning (IMP) with rewinding to the original initialization. One run is one seed's whole IMP
trajectory, because each level's controls need that seed's masks:

- level 0: train the dense network from its initialization theta_0 (the seed's init).
- level k = 1..rounds: prune ``prune_fraction`` (0.2) of the remaining weights of every hidden
  layer and ``output_prune_fraction`` (0.1) of the output layer's, by smallest magnitude of the
  previous level's trained ticket; then train three networks on the same data, with the same
  data order and budget, their pruned weights held at exactly 0.0 throughout training:

  - *ticket*: the mask on theta_0 (surviving weights rewound to their initial values);
  - *reinit* (control 1): the same mask on a fresh random initialization (init seed derived
    from the run seed and the level);
  - *random* (control 2): a random mask with exactly the ticket's per-layer weight counts
    (drawn from the run seed and the level) on theta_0.

  After 10 rounds 0.8^10 = 10.7% of each hidden layer remains.

Per level the run stores the fraction of prunable weights remaining (weight matrices only;
biases are never pruned), and for each network its final test and train accuracy and the test
accuracy at its early-stopping point (the evaluation of minimum test loss), as ``metrics
["levels"]`` and as curves (step = level; the ticket curves start with the dense network at
level 0).

Claims (accuracies are final test accuracies, differences paired by seed, in percentage
points), at the level whose remaining fraction is closest to 10%: the ticket is within 1.15 pp
of the dense network (paper: within 1.15 pp); random reinitialization of the ticket's structure
loses accuracy (paper: 2.80 pp); and at the sparsest level the ticket beats both controls.

Presets: ``tiny`` (tests; seconds), ``quick`` (MNIST-1D, MLP 40-100-100-10, SGD with momentum,
12 epochs, 11 rounds to 10.1% of the weights, 3 seeds: 102 trainings, about a minute on 2 CPU
cores with one torch thread), ``mnist`` (10k-example MNIST subset, 300-300 MLP, Adam, 5 epochs,
10 rounds, 3 seeds: ~10 minutes on 2 cores), ``paper`` (full MNIST, Adam at Frankle & Carbin's
50k iterations, 15 rounds to 3.5%, 5 seeds: for a GPU).

Model note: overparam's MLP has one width for all hidden layers, so the ``mnist`` and ``paper``
presets use 300-300 hidden units rather than LeNet-300-100 (784-300-100-10).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.errors import ConfigError, check_fraction, check_positive_int
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "lottery"
NETWORKS = ("ticket", "reinit", "random")
LABELS = {"ticket": "winning ticket (IMP, rewound to init)", "reinit": "same mask, random reinit",
          "random": "random mask (same layer counts), original init", "dense": "dense"}
TARGET_REMAINING = 0.10  # the paper's claims are at ~10% of weights remaining


@dataclass(frozen=True)
class LotteryConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "seed": 0})
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "width": 100, "depth": 2})
    train: dict[str, Any] = field(default_factory=lambda: {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
                                                           "batch_size": 100, "epochs": 12})
    rounds: int = 11  # pruning rounds after the dense level
    prune_fraction: float = 0.2  # of each hidden layer's remaining weights, per round
    output_prune_fraction: float = 0.1  # of the output layer's remaining weights, per round
    seeds: int = 3

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds)
        check_positive_int("rounds", self.rounds)
        check_fraction("output_prune_fraction", self.output_prune_fraction)
        if not (check_fraction("prune_fraction", self.prune_fraction) > 0):
            raise ConfigError(f"prune_fraction must be a number in (0, 1), got {self.prune_fraction!r}")


def _run_config(config: LotteryConfig, seed: int):
    return common.run_config(config.data, config.model, config.train, seed)


def grid(config: LotteryConfig) -> list[RunSpec]:
    """One run per seed; every seed's model is built (on the meta device) before any run."""
    specs = [common.spec(NAME, _run_config(config, seed), rounds=config.rounds,
                         prune_fraction=config.prune_fraction, output_prune_fraction=config.output_prune_fraction)
             for seed in range(config.seeds)]
    common.validate_specs(specs)
    _check_prunable(_run_config(config, 0))
    return specs


def _check_prunable(run_config) -> None:
    """The model must have a prunable layer besides the output layer (a ConfigError if not)."""
    import torch

    from overparam import models
    from overparam.prune import output_layer, prunable_parameters
    from overparam.run import load_data

    dataset = load_data(run_config, torch.device("cpu"), quiet=True)
    outputs = dataset.num_classes or 1
    with torch.device("meta"):
        model = models.build(run_config.model.name, dataset.input_shape, outputs, **run_config.model.options)
    hidden = [n for n in prunable_parameters(model) if n != output_layer(model)]
    if not hidden:
        raise ConfigError(f"model {run_config.model.name!r} with options {run_config.model.options} has no prunable "
                          f"layer besides its output layer; the lottery study needs e.g. an mlp with depth >= 1")


# --- one run: a seed's IMP trajectory ------------------------------------------------------------


def _train(model, dataset, run_config, masks) -> dict[str, Any]:
    """Train ``model`` (already masked) with its pruned weights held at 0; its accuracies."""
    from overparam.prune import mask_callback, prunable_parameters
    from overparam.train import fit

    callbacks = [] if masks is None else [mask_callback(masks)]
    result = fit(model, dataset, run_config.train, seed=run_config.seed, callbacks=callbacks)
    out = {"status": result.status, "steps": result.steps, "divergence": result.divergence,
           "test_acc": result.metrics.get("test_acc"), "train_acc": result.metrics.get("train_acc"),
           "early_stopping_test_acc": result.early_stopping_test_acc}
    if result.status != "done":
        out.update(test_acc=None, train_acc=None, early_stopping_test_acc=None)
    params = prunable_parameters(model)
    out["max_abs_pruned"] = 0.0 if masks is None else max(
        (float(params[n].detach()[~m].abs().max()) for n, m in masks.items() if bool((~m).any())), default=0.0)
    return out


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    from overparam.config import RunConfig
    from overparam.device import resolve_device
    from overparam.provenance import provenance
    from overparam.prune import (
        apply_masks,
        count_remaining,
        magnitude_prune,
        random_prune,
        remaining_by_layer,
        remaining_fraction,
        rewind,
        snapshot,
    )
    from overparam.run import build_model, load_data
    from overparam.seeding import derive_seed

    started = time.perf_counter()
    run_config = RunConfig.from_dict(spec.params["run"])
    rounds, fraction, output_fraction = (spec.params[k] for k in ("rounds", "prune_fraction", "output_prune_fraction"))
    target = resolve_device(device)
    dataset = load_data(run_config, target, quiet=True)
    ticket = build_model(run_config, dataset, target)
    control = build_model(run_config, dataset, target)  # reused for the random-mask control
    init = snapshot(ticket)

    dense = _train(ticket, dataset, run_config, None)
    metrics: dict[str, Any] = {
        "dense_test_acc": dense["test_acc"], "dense_train_acc": dense["train_acc"],
        "dense_early_stopping_test_acc": dense["early_stopping_test_acc"], "steps": dense["steps"],
        "rounds": rounds, "prune_fraction": fraction, "output_prune_fraction": output_fraction,
        "n_train": dataset.n_train, "n_test": dataset.n_test, "diverged": [], "max_abs_pruned_weight": 0.0}
    levels: list[dict[str, Any]] = [{"level": 0, "remaining": 1.0, "ticket_test_acc": dense["test_acc"],
                                     "ticket_train_acc": dense["train_acc"],
                                     "ticket_early_stopping_test_acc": dense["early_stopping_test_acc"]}]
    status = "done"
    if dense["status"] != "done":
        status = "diverged"
        metrics["diverged"].append("dense")
        metrics["divergence"] = dense["divergence"]
    masks = None
    for level in range(1, rounds + 1):
        if status != "done":
            break
        masks = magnitude_prune(ticket, masks, fraction, output_fraction)  # from the previous level's trained ticket
        entry: dict[str, Any] = {"level": level, "remaining": remaining_fraction(masks),
                                 "remaining_by_layer": remaining_by_layer(masks), "counts": count_remaining(masks)}
        runs = {}
        rewind(ticket, init, masks)
        runs["ticket"] = _train(ticket, dataset, run_config, masks)
        reinit_config = dataclasses.replace(run_config, seed=derive_seed(run_config.seed, NAME, "reinit", level))
        reinit = build_model(reinit_config, dataset, target)  # a fresh init; same data order as the ticket
        apply_masks(reinit, masks)
        runs["reinit"] = _train(reinit, dataset, run_config, masks)
        random_masks = random_prune(masks, seed=derive_seed(run_config.seed, NAME, "random_mask", level))
        rewind(control, init, random_masks)
        runs["random"] = _train(control, dataset, run_config, random_masks)
        for network, result in runs.items():
            for key in ("test_acc", "train_acc", "early_stopping_test_acc"):
                entry[f"{network}_{key}"] = result[key]
            metrics["max_abs_pruned_weight"] = max(metrics["max_abs_pruned_weight"], result["max_abs_pruned"])
            if result["status"] != "done":
                metrics["diverged"].append(f"{network}@{level}")
        levels.append(entry)
        if runs["ticket"]["status"] != "done":  # the next level would prune a diverged network
            status = "diverged"
            metrics["divergence"] = f"ticket at level {level}: {runs['ticket']['divergence']}"
    metrics["levels"] = levels
    metrics["final_remaining"] = levels[-1]["remaining"]
    curves: dict[str, list[tuple[int, float]]] = {"remaining": [(e["level"], e["remaining"]) for e in levels]}
    for network in NETWORKS:
        for key in ("test_acc", "train_acc", "early_stopping_test_acc"):
            points = [(e["level"], e[f"{network}_{key}"]) for e in levels
                      if isinstance(e.get(f"{network}_{key}"), (int, float))]
            if points:
                curves[f"{network}_{key}"] = points
    provenance_info = {**provenance(target), "data": dataset.info}
    return RunOutcome(status, metrics, curves, time.perf_counter() - started, provenance_info)


# --- summary -------------------------------------------------------------------------------------


def _level_table(rows: list) -> dict[int, dict[int, dict[str, Any]]]:
    """{level: {seed: level entry}} over the finished runs."""
    out: dict[int, dict[int, dict[str, Any]]] = {}
    for row in rows:
        for entry in row["metrics"].get("levels", []):
            out.setdefault(entry["level"], {})[row["seed"]] = entry
    return dict(sorted(out.items()))


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def _accuracies(entries: dict[int, dict[str, Any]], network: str, key: str = "test_acc") -> dict[int, float]:
    """{seed: accuracy in %} of one network at one level (seeds without a value left out)."""
    values = {seed: 100 * _number(e.get(f"{network}_{key}")) for seed, e in entries.items()}
    return {seed: v for seed, v in values.items() if math.isfinite(v)}


def _paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a − b over the seeds both have."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def summarize(rows: list[dict[str, Any]], config: LotteryConfig) -> list:
    from overparam.report import Claim, Section, bootstrap_ci

    title = "lottery: winning tickets under iterative magnitude pruning"
    done = common.done_rows(rows)
    by_level = _level_table(done)
    if len(by_level) < 2:
        return [Section(title, "No finished run with a pruned level yet.")]
    dense = {seed: 100 * v for seed, v in ((r["seed"], _number(r["metrics"].get("dense_test_acc"))) for r in done)
             if math.isfinite(v)}
    dense_ci = bootstrap_ci(list(dense.values()))
    remaining = {level: float(np.mean([e["remaining"] for e in entries.values()])) for level, entries in by_level.items()}
    acc = {level: {net: _accuracies(entries, net) for net in NETWORKS} for level, entries in by_level.items()}
    cis = {level: {net: bootstrap_ci(list(acc[level][net].values())) for net in NETWORKS} for level in by_level}
    gaps = {level: {net: bootstrap_ci(_paired(acc[level]["ticket"], acc[level][net])) for net in ("reinit", "random")}
            for level in by_level if level > 0}
    vs_dense = {level: bootstrap_ci(_paired(acc[level]["ticket"], dense)) for level in by_level if level > 0}

    pruned = [level for level in by_level if level > 0]
    at10 = min(pruned, key=lambda level: (abs(remaining[level] - TARGET_REMAINING), level))
    sparsest = max(pruned)
    pct10, pct_sparsest = 100 * remaining[at10], 100 * remaining[sparsest]

    claims = []
    gap_dense = bootstrap_ci(_paired(dense, acc[at10]["ticket"]))
    claims.append(Claim.from_ci(
        "lottery.ticket_vs_dense_10pct", NAME,
        f"At {pct10:.1f}% of prunable weights remaining (level {at10}, the level closest to 10%), the winning ticket's "
        f"final test accuracy is within 1.15 pp of the dense network's: dense − ticket, in percentage points, paired "
        f"by seed, is below 1.15. Read as a bound on what pruning costs: a ticket more accurate than the dense "
        f"network (a negative gap) satisfies it.", "within 1.15 pp of dense at ~10% of weights", gap_dense,
        less_than=1.15, details={"level": at10, "remaining": remaining[at10]}))
    reinit_loss = gaps[at10]["reinit"]
    claims.append(Claim.from_ci(
        "lottery.reinit_loss_10pct", NAME,
        f"At {pct10:.1f}% of prunable weights remaining (level {at10}), randomly reinitializing the winning ticket's "
        f"sparse structure loses test accuracy: ticket − reinit, in percentage points, paired by seed (> 0).",
        "2.80 pp lower after random reinitialization", reinit_loss, greater_than=0.0,
        details={"level": at10, "remaining": remaining[at10]}))
    best_control = {s: max(acc[sparsest]["reinit"][s], acc[sparsest]["random"][s])
                    for s in set(acc[sparsest]["reinit"]) & set(acc[sparsest]["random"])}
    beats = bootstrap_ci(_paired(acc[sparsest]["ticket"], best_control))
    claims.append(Claim.from_ci(
        "lottery.ticket_beats_controls", NAME,
        f"At the sparsest level ({pct_sparsest:.1f}% of prunable weights remaining, level {sparsest}), the winning "
        f"ticket beats both controls: ticket − max(reinit, random-mask) test accuracy, in percentage points, paired "
        f"by seed (> 0).", "winning tickets outperform random reinitialization and random pruning", beats,
        greater_than=0.0, details={"level": sparsest, "remaining": remaining[sparsest]}))

    def cell(ci) -> str:
        return common.ci_text(ci, 3)

    table = common.table(
        ["level", "remaining %", "n", "ticket test acc %", "reinit test acc %", "random-mask test acc %",
         "ticket − dense (pp)", "ticket − reinit (pp)", "ticket − random (pp)"],
        [[0, "100", dense_ci.n, cell(dense_ci) + " (dense)", "", "", "", "", ""]]
        + [[level, common.fmt(100 * remaining[level], 3), cis[level]["ticket"].n]
           + [cell(cis[level][net]) for net in NETWORKS]
           + [cell(vs_dense[level]), cell(gaps[level]["reinit"]), cell(gaps[level]["random"])] for level in pruned])
    early = common.table(
        ["level", "remaining %", "ticket", "reinit", "random-mask"],
        [[level, common.fmt(100 * remaining[level], 3)]
         + [common.fmt(float(np.mean(list(_accuracies(entries, net, "early_stopping_test_acc").values()) or [math.nan])), 3)
            for net in NETWORKS] for level, entries in by_level.items() if level > 0])
    dense_early = [100 * _number(r["metrics"].get("dense_early_stopping_test_acc")) for r in done]
    diverged = [f"seed {r['seed']}: {', '.join(r['metrics']['diverged'])}" for r in done if r["metrics"].get("diverged")]
    max_pruned = max((_number(r["metrics"].get("max_abs_pruned_weight")) for r in done), default=math.nan)
    first = min(pruned)

    best_level = max(pruned, key=lambda level: cis[level]["ticket"][0])
    best_acc = cis[best_level]["ticket"][0]
    margin_first = _mean(_paired(acc[first]["ticket"], {s: max(acc[first]["reinit"].get(s, -math.inf),
                                                                 acc[first]["random"].get(s, -math.inf))
                                                         for s in acc[first]["ticket"]}))
    reading = [
        (f"The dense network reached {cell(dense_ci)}% test accuracy (n={dense_ci.n} seeds). At {pct10:.1f}% of its "
         f"prunable weights (level {at10}) the winning ticket reached {cell(cis[at10]['ticket'])}%, "
         f"{_direction(-gap_dense[0])} the dense network by {common.fmt(abs(gap_dense[0]), 3)} pp "
         f"(dense − ticket = {cell(gap_dense)} pp; the paper: within 1.15 pp)."),
        (f"With the same mask but a fresh initialization the network reached {cell(cis[at10]['reinit'])}% "
         f"(ticket − reinit = {cell(reinit_loss)} pp; paper 2.80 pp), and a random mask with the same per-layer counts "
         f"on the original initialization {cell(cis[at10]['random'])}% (ticket − random = "
         f"{cell(gaps[at10]['random'])} pp)."),
        (f"The most accurate ticket was at level {best_level} ({100 * remaining[best_level]:.1f}% remaining): "
         f"{common.fmt(best_acc, 3)}%, {_direction(best_acc - dense_ci[0])} the dense network's "
         f"{common.fmt(dense_ci[0], 3)}% by {common.fmt(abs(best_acc - dense_ci[0]), 3)} pp (means over seeds). The "
         f"ticket's mean margin over the better of its two controls was {common.fmt(margin_first, 3)} pp at the first "
         f"pruning level ({100 * remaining[first]:.1f}% remaining) and {common.fmt(beats[0], 3)} pp at the sparsest "
         f"({pct_sparsest:.1f}%): {'larger' if beats[0] > margin_first else 'not larger'} at the sparsest level."),
    ]
    if max_pruned == 0.0:
        checks = "Every pruned weight was exactly 0.0 after training, in every trained network (checked). "
    else:
        checks = (f"WARNING: a pruned weight was nonzero after training (largest |w| over pruned weights: "
                  f"{common.fmt(max_pruned, 3)}). ")
    checks += f"Diverged trainings (left out): {'; '.join(diverged)}." if diverged else "No training diverged."
    text = (f"Layer-wise iterative magnitude pruning with rewinding to the original initialization: per round, "
            f"{100 * config.prune_fraction:g}% of each hidden layer's remaining weights and "
            f"{100 * config.output_prune_fraction:g}% of the output layer's are removed. Accuracies are final test "
            f"accuracies in %, mean over seeds with a 95% bootstrap CI; differences are paired by seed, in "
            f"percentage points. 'remaining %' counts weight matrices only (biases are never pruned).\n\n{table}\n\n"
            f"Test accuracy at each network's early-stopping point (the evaluation of minimum test loss; mean over "
            f"seeds, %; dense: {common.fmt(_mean(dense_early), 3)}):\n\n{early}\n\n" + " ".join(reading)
            + f"\n\n{checks}")
    figure = _accuracy_figure(by_level, remaining, cis, dense_ci, at10)
    return [Section(title, text, [("lottery_accuracy_vs_remaining", figure)], claims)]


def _mean(values: list[float]) -> float:
    values = [v for v in values if math.isfinite(v)]
    return float(np.mean(values)) if values else math.nan


def _direction(difference: float) -> str:
    return "above" if difference > 0 else "below" if difference < 0 else "level with"


def _accuracy_figure(by_level: dict, remaining: dict, cis: dict, dense_ci, at10: int):
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from overparam.report import new_figure
    from overparam.report.figures import n_label

    fig, ax = new_figure(width=7.4, height=4.6)
    colours = {"ticket": "tab:blue", "reinit": "tab:orange", "random": "tab:green", "dense": "0.3"}
    markers = {"ticket": "o", "reinit": "s", "random": "^"}
    pruned = [level for level in by_level if level > 0]
    xs = np.array([100 * remaining[level] for level in pruned])
    for net in NETWORKS:
        est, low, high = (np.array([cis[level][net][i] for level in pruned]) for i in range(3))
        ns = [cis[level][net].n for level in pruned]
        ax.plot(xs, est, marker=markers[net], markersize=4.5, color=colours[net], zorder=3,
                label=f"{LABELS[net]} ({n_label(ns)}, 95% CI)")
        band = ~(np.isnan(low) | np.isnan(high))
        if band.any():
            ax.fill_between(xs[band], low[band], high[band], color=colours[net], alpha=0.18, linewidth=0, zorder=2)
    ax.axhline(dense_ci[0], color=colours["dense"], linestyle="--", linewidth=1.2, zorder=1,
               label=f"dense, 100% of weights ({n_label(dense_ci.n)}, 95% CI)")
    if dense_ci.decided:
        ax.axhspan(dense_ci[1], dense_ci[2], color=colours["dense"], alpha=0.12, linewidth=0, zorder=0)
    ax.axvline(100 * remaining[at10], color="0.5", linestyle=":", linewidth=1)
    ax.annotate(f"claims at {100 * remaining[at10]:.1f}%", (100 * remaining[at10], 0.98),
                xycoords=("data", "axes fraction"), xytext=(-4, 0), textcoords="offset points", ha="right", va="top",
                fontsize=8, color="0.35")
    ax.set_xscale("log")
    ax.set_xlim(xs.max() * 1.12, xs.min() / 1.12)  # reversed: sparsity grows to the right
    ticks = xs if len(xs) <= 8 else xs[::2]
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("weights remaining (% of prunable weights, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("test accuracy vs fraction of weights remaining")
    ax.legend(fontsize=8, frameon=False, loc="best")
    return fig


STUDY = Study(
    name=NAME,
    description="lottery tickets: iterative magnitude pruning with rewinding vs random-reinit and random-mask controls",
    config_type=LotteryConfig,
    grid=grid,
    run_one=run_one,
    legacy_summarize=summarize,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 200, "seed": 0},
                 "model": {"name": "mlp", "width": 16, "depth": 1},
                 "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 50, "epochs": 2},
                 "rounds": 2, "seeds": 2},
        "quick": {"data": {"name": "mnist1d", "seed": 0}, "model": {"name": "mlp", "width": 100, "depth": 2},
                  "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 100, "epochs": 12},
                  "rounds": 11, "seeds": 3},
        "mnist": {"data": {"name": "mnist", "n_train": 10000, "n_test": 10000, "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 300, "depth": 2},
                  "train": {"optimizer": "adam", "lr": 1.2e-3, "batch_size": 60, "epochs": 5},
                  "rounds": 10, "seeds": 3},
        "paper": {"data": {"name": "mnist", "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 300, "depth": 2},
                  "train": {"optimizer": "adam", "lr": 1.2e-3, "batch_size": 60, "steps": 50000, "eval_every": 1000},
                  "rounds": 15, "seeds": 5},
    },
)
