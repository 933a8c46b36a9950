"""``lottery``: the lottery-ticket experiment (Frankle & Carbin 2019), with its two controls.

The paper's lottery-ticket experiment (arXiv 2604.07603): layer-wise iterative magnitude
pruning (IMP) with rewinding to the original initialization. One run is one seed's whole IMP
trajectory, because each level's controls need that seed's masks:

- level 0: train the dense network from its initialization theta_0 (the seed's init).
- level k = 1..rounds: prune ``prune_fraction`` of the remaining weights of every hidden layer
  and ``output_prune_fraction`` of the output layer's (Frankle & Carbin: 0.2 and 0.1, the
  defaults), by smallest magnitude of the previous level's trained ticket; then train three
  networks on the same data, with the same data order (the run seed's) and budget, their pruned
  weights held at exactly 0.0 throughout training: the *ticket*, the mask on theta_0 (surviving
  weights rewound to their initial values); *reinit* (control 1), the same mask on a fresh random
  initialization (init seed derived from the run seed and the level); *random* (control 2), a
  random mask with exactly the ticket's per-layer weight counts (drawn from the run seed and the
  level) on theta_0. With the defaults, 0.8^10 = 10.7% of each hidden layer remains after 10 rounds.

Execution: the seeds' trajectories run in lockstep (``run_batch``; the sweep hands the seeds of
one configuration over together, ``batch_key``): the dense networks of all seeds are trained as
one :func:`~overparam.train.fit_ensemble`, then each level's 3 x seeds networks as one (each
member with its own pruning mask). The ensemble is member-equal to ``fit`` with
``prune.mask_callback`` (up to float rounding), so every run's stored numbers are those of its
own trajectory trained network by network (tests/test_lottery.py checks both). ``run_one`` is
the same path with one seed (its level's three networks as one ensemble).

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

The ``quick`` preset follows the MNIST-1D lottery-ticket experiment (greydanus/mnist1d,
notebooks/lottery-tickets.ipynb with notebooks/train.py) where the framework allows: MNIST-1D
(4000 train / 1000 test), MLP 40-500-500-10, Adam lr 0.02 (betas 0.9/0.999, no weight decay),
batch 100, 1500 steps per network (the notebook: total_steps 1501), evaluated every 100 steps;
layer-wise magnitude pruning of the previous round's trained weights with rewinding to the
original init; controls trained with the same budget. Where it differs:

- the notebook's second layer is residual, h + relu(W2 h); overparam's MLP is a plain
  relu(W2 h). Its init is torch's nn.Linear default (U(+-1/sqrt(fan_in)) weights and biases);
  overparam's MLP draws N(0, 1/fan_in) weights and zero biases.
- the notebook's batches walk the training set in order (batch i = examples 100i..100i+99 mod
  4000, the same order for every network); ``fit`` draws a fresh permutation each epoch (from
  the run seed, the same for a run's dense network, tickets and controls).
- pruning schedule: the notebook prunes each layer (biases included) to sparsity
  linspace(0, 1, 100)[i] at retrain i, 100 retrains, and compares with random pruning (random
  scores, a fresh random mask per retrain); here Frankle & Carbin's rule (a fraction of each
  layer's remaining weights per round, the output layer at half the hidden layers' rate, biases
  never pruned) and both of their controls. ``quick`` prunes 44% per round (output 22%) for 4
  rounds, to 10.3% of the weights, instead of 20%/10% for 10 rounds (to 11.2%): on 2 CPU cores a
  pruning level of 5 seeds (15 networks of 275k weights, 1500 Adam steps) takes about a minute,
  and the 20% rule's 10 levels would take ~10 minutes, the paper suite's 15 minutes being for all
  its studies.

Measured with ``quick`` (5 seeds): the dense network overfits (64% test accuracy) and every
pruned network, controls included, beats it by 4-12 pp, so "ticket within 1.15 pp of dense"
holds by a wide margin there and says little about tickets; the reinit and random-mask gaps at
10.3% were +0.7 pp and +2.5 pp.

Presets' costs: ``tiny`` seconds (tests); ``quick`` (1 dense + 4 pruned levels, 5 seeds: 65
trainings in 5 ensembles) about 4 minutes on a quiet 2-core CPU (estimated from CPU time; a
level of 15 networks is ~1 minute with 2 threads); ``mnist`` (10k MNIST examples) ~17 minutes on
2 cores; ``paper`` (full MNIST, Frankle & Carbin's 50k Adam iterations, 15 rounds to 3.5%) for
a GPU. ``mnist`` and ``paper`` use a 300-300 MLP, not LeNet-300-100 (784-300-100-10): overparam's
MLP has one width for all hidden layers.
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


# --- runs: seeds' IMP trajectories, in lockstep ---------------------------------------------------


@dataclass
class _Trajectory:
    """One run (one seed's IMP trajectory) while it is trained: its models, theta_0, current
    masks and the results so far ({(level, network): :func:`_result`})."""

    spec: RunSpec
    dataset: Any
    ticket: Any  # theta_0, then the ticket trained at the last level
    control: Any  # the model reused for the random-mask control
    init: dict[str, Any]  # theta_0 (a prune.snapshot)
    masks: Any = None  # the last level's ticket masks (None: dense)
    trained: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)
    levels: list[dict[str, Any]] = field(default_factory=lambda: [{"level": 0, "remaining": 1.0}])

    @property
    def alive(self) -> bool:
        """Whether the last trained ticket finished (the next level would prune a diverged network)."""
        return self.trained[(len(self.levels) - 1, "ticket")]["status"] == "done"


def _result(model, result, masks) -> dict[str, Any]:
    """What a run keeps of one trained network: status, steps, accuracies (None unless it
    finished) and the largest |w| among its pruned weights after training (0.0: the mask held)."""
    from overparam.prune import prunable_parameters

    accuracies = (result.metrics.get("test_acc"), result.metrics.get("train_acc"), result.early_stopping_test_acc)
    out = {"status": result.status, "steps": result.steps, "divergence": result.divergence,
           **dict(zip(ACCURACIES, accuracies if result.status == "done" else (None,) * 3))}
    params = prunable_parameters(model)
    out["max_abs_pruned"] = 0.0 if masks is None else max(
        (float(params[n].detach()[~m].abs().max()) for n, m in masks.items() if bool((~m).any())), default=0.0)
    return out


def _train_together(members: list[tuple[Any, Any, Any]], dataset) -> list[dict[str, Any]]:
    """Train ``members`` ((model, run config, masks or None), models already masked), each as
    ``fit(model, dataset, config.train, seed=config.seed, callbacks=[mask_callback(masks)])``:
    together with :func:`~overparam.train.fit_ensemble` (member-equal to those fits up to float
    rounding) when it supports them, else one by one. Their results (:func:`_result`), in order."""
    from overparam.prune import mask_callback
    from overparam.train import ensemble_unsupported, fit, fit_ensemble

    models = [model for model, _, _ in members]
    train = members[0][1].train  # the members differ at most in seed and LR (the study's batch key)
    if ensemble_unsupported(models, train) is None:
        results = fit_ensemble(models, dataset, train, [config.seed for _, config, _ in members],
                               lrs=[config.train.lr for _, config, _ in members],
                               masks=[masks for _, _, masks in members])
    else:
        results = [fit(model, dataset, config.train, seed=config.seed,
                       callbacks=[] if masks is None else [mask_callback(masks)]) for model, config, masks in members]
    return [_result(model, result, masks) for (model, _, masks), result in zip(members, results)]


def _level_networks(run: _Trajectory, level: int, target) -> list[tuple[str, Any, Any]]:
    """Prune ``run``'s last trained ticket (``prune_fraction`` of each hidden layer's remaining
    weights, ``output_prune_fraction`` of the output layer's, by magnitude), record the level, and
    return its three networks as (network, model, masks), pruned weights at 0: the ticket (the
    mask on theta_0), reinit (the mask on a fresh init, from the run seed and the level) and
    random (a random mask with the ticket's per-layer counts, drawn from the run seed and the
    level, on theta_0)."""
    from overparam.prune import (apply_masks, count_remaining, magnitude_prune, random_prune, remaining_by_layer,
                                 remaining_fraction, rewind)
    from overparam.run import build_model
    from overparam.seeding import derive_seed

    config, params = run.spec.config, run.spec.params
    masks = magnitude_prune(run.ticket, run.masks, params["prune_fraction"], params["output_prune_fraction"])
    run.masks = masks
    run.levels.append({"level": level, "remaining": remaining_fraction(masks),
                       "remaining_by_layer": remaining_by_layer(masks), "counts": count_remaining(masks)})
    rewind(run.ticket, run.init, masks)
    reinit = build_model(replace(config, seed=derive_seed(config.seed, NAME, "reinit", level)), run.dataset, target)
    apply_masks(reinit, masks)
    random_masks = random_prune(masks, seed=derive_seed(config.seed, NAME, "random_mask", level))
    rewind(run.control, run.init, random_masks)
    return [("ticket", run.ticket, masks), ("reinit", reinit, masks), ("random", run.control, random_masks)]


def _same_data(a, b) -> bool:
    import torch

    return a is b or all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("x_train", "y_train", "x_test", "y_test"))


def _run_lockstep(runs: list[_Trajectory], target) -> None:
    """Train the trajectories of ``runs`` (one dataset) level by level: the dense networks in one
    ensemble, then per pruning level the three networks of every run still going in one ensemble
    (3 x runs members). Each run's results are those of its own trajectory trained alone."""
    for run, result in zip(runs, _train_together([(run.ticket, run.spec.config, None) for run in runs],
                                                 runs[0].dataset)):
        run.trained[(0, "ticket")] = result  # level 0: the dense network
    for level in range(1, runs[0].spec.params["rounds"] + 1):
        going = [run for run in runs if run.alive]
        if not going:
            break
        networks = [(run, net, model, masks) for run in going for net, model, masks in _level_networks(run, level, target)]
        results = _train_together([(model, run.spec.config, masks) for run, _, model, masks in networks],
                                  going[0].dataset)
        for (run, net, _, _), result in zip(networks, results):
            run.trained[(level, net)] = result


def _trajectories(specs: list[RunSpec], target) -> list[_Trajectory]:
    """The runs of ``specs`` trained (runs on identical data in lockstep, one group per dataset)."""
    from overparam.prune import snapshot
    from overparam.run import build_model, load_data

    runs: list[_Trajectory] = []
    for spec in specs:
        dataset = load_data(spec.config, target, quiet=True)
        dataset = next((run.dataset for run in runs if _same_data(run.dataset, dataset)), dataset)
        ticket = build_model(spec.config, dataset, target)
        runs.append(_Trajectory(spec, dataset, ticket, build_model(spec.config, dataset, target), snapshot(ticket)))
    for dataset in {id(run.dataset): run.dataset for run in runs}.values():
        _run_lockstep([run for run in runs if run.dataset is dataset], target)
    return runs


def run_batch(specs: list[RunSpec], device: str | None) -> list[RunOutcome]:
    """Several seeds' IMP trajectories in lockstep (runs with one :func:`common.batch_key`: equal
    but for seed and LR): each level's networks of all runs trained as one ensemble (runs on
    different data in separate ensembles). One outcome per spec, each what :func:`run_one` gives
    for it alone (up to float rounding); a run's wall time is its equal share of the batch's."""
    from overparam.device import resolve_device
    from overparam.provenance import provenance

    started = time.perf_counter()
    target = resolve_device(device)
    runs = _trajectories(specs, target)
    wall = time.perf_counter() - started
    batched = {"batched_with": len(runs), "batch_wall_time_s": wall} if len(runs) > 1 else {}
    return [RunOutcome(*_outcome(run.trained, run.levels, run.spec.params, run.dataset), wall / len(runs),
                       {**provenance(target), "data": run.dataset.info, **batched}) for run in runs]


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    """One seed's IMP trajectory (each level's three networks trained together)."""
    return run_batch([spec], device)[0]


def _outcome(trained: dict[tuple[int, str], dict[str, Any]], levels: list[dict[str, Any]], params: dict[str, Any],
             dataset: Any) -> tuple[str, dict[str, Any], dict[str, list[tuple[int, float]]]]:
    """A run's status, metrics and curves from its trained networks ({(level, network): result of
    :func:`_result`}, level 0 the dense network) and its levels. Accuracies are stored as curves
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
            f"{100 * config.output_prune_fraction:g}% of the output layer's are removed, {config.rounds} rounds. "
            f"{_budget_text(config)} Accuracies are final test "
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


def _budget_text(config: LotteryConfig) -> str:
    """How every network was trained, in words (the same for the dense network, tickets and controls)."""
    train = common.run_config(config.data, config.model, config.train, 0).train
    budget = f"{train.steps} steps" if train.steps is not None else f"{train.epochs if train.epochs else 10:g} epochs"
    return (f"Every network (dense, tickets and both controls) is trained with the same budget and data order: "
            f"{train.optimizer}, lr {train.lr:g}, batch size {train.batch_size}, {budget}.")


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
    """Final test accuracy (mean over seeds, 95% t-interval bands) of the ticket, reinit and
    random-mask networks against the fraction of weights remaining (log scale, sparser to the
    right), the dense network as a point at 100% (the start of the ticket's trajectory) and a
    dashed line across, and the level of the claims."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from overparam.report.figures import n_label, new_figure

    fig, ax = new_figure(width=7.4, height=5.4)
    xs = np.array([100 * a.remaining[level] for level in a.levels])
    dense = np.array(tuple(a.dense))
    for net, colour, marker in zip(NETWORKS, ("tab:blue", "tab:orange", "tab:green"), "os^"):
        est, low, high = (np.array([a.accuracy[level][net][i] for level in a.levels]) for i in range(3))
        x = xs
        if net == "ticket":  # the ticket's trajectory starts at the dense network (level 0)
            x, est, low, high = np.r_[100.0, xs], np.r_[dense[0], est], np.r_[dense[1], low], np.r_[dense[2], high]
        ax.plot(x, est, marker=marker, markersize=4.5, color=colour, zorder=3,
                label=f"{LABELS[net]} ({n_label([a.accuracy[level][net].n for level in a.levels])}, 95% CI)")
        band = ~(np.isnan(low) | np.isnan(high))
        if band.any():
            ax.fill_between(x[band], low[band], high[band], color=colour, alpha=0.18, linewidth=0, zorder=2)
    ax.axhline(a.dense[0], color="0.3", linestyle="--", linewidth=1.2, zorder=1,
               label=f"dense, 100% of weights ({n_label(a.dense.n)}, 95% CI)")
    if a.dense.decided:
        ax.axhspan(a.dense[1], a.dense[2], color="0.3", alpha=0.12, linewidth=0, zorder=0)
        ax.errorbar([100.0], [dense[0]], yerr=[[dense[0] - dense[1]], [dense[2] - dense[0]]], fmt="none",
                    ecolor="0.2", capsize=3, linewidth=1, zorder=4)
    ax.plot([100.0], [dense[0]], marker="D", markersize=5.5, color="0.2", linestyle="none", zorder=5)
    at10 = 100 * a.remaining[a.at10]
    ax.axvline(at10, color="0.5", linestyle=":", linewidth=1)
    ax.annotate(f"claims at {at10:.1f}%", (at10, 0.98), xycoords=("data", "axes fraction"), xytext=(-4, 0),
                textcoords="offset points", ha="right", va="top", fontsize=8, color="0.35")
    ax.set_xscale("log")
    ticks = np.r_[100.0, xs if len(xs) <= 8 else xs[::2]]
    ax.set_xlim(100 * 1.12, xs.min() / 1.12)  # reversed: sparsity grows to the right
    ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(xlabel="weights remaining (% of prunable weights, log scale)", ylabel="test accuracy (%)",
           title="final test accuracy vs fraction of weights remaining (mean over seeds)")
    ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)  # off the data
    return fig


STUDY = Study(
    name=NAME,
    description="lottery tickets: iterative magnitude pruning with rewinding vs random-reinit and random-mask controls",
    config_type=LotteryConfig,
    grid=grid,
    run_one=run_one,
    run_batch=run_batch,
    batch_key=common.batch_key,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 200, "seed": 0},
                 "model": {"name": "mlp", "width": 16, "depth": 1},
                 "train": {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "batch_size": 50, "epochs": 2},
                 "rounds": 2, "seeds": 2},
        "quick": {"data": {"name": "mnist1d", "seed": 0}, "model": {"name": "mlp", "width": 500, "depth": 2},
                  "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 100, "steps": 1500, "eval_every": 100},
                  "rounds": 4, "prune_fraction": 0.44, "output_prune_fraction": 0.22, "seeds": 5},
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
