"""``igr``: implicit gradient regularization of full-batch gradient descent (Barrett & Dherin 2021, "Implicit
Gradient Regularization", ICLR).

Theory. Gradient descent with step h, θ_{k+1} = θ_k − h∇L(θ_k), stays O(h²) per step from the gradient flow
θ' = −∇L but O(h³) from the flow of the modified loss L̃ = L + (h/4)|∇L|² = L + (hP/4) R_IG, with
R_IG = (1/P) Σ_p (∂L/∂θ_p)² = |∇L|²/P over the P parameters (``measures.implicit_gradient_regularizer``). So GD
implicitly penalizes large gradients, the more so the larger h: it should reach flatter minima (smaller top Hessian
eigenvalue λ_max), smaller R_IG and higher test accuracy; and an explicit penalty λ|∇L|² at a small step should
recover what a large step does (explicit gradient regularization, EGR). The claims ``igr.<id>`` test these
predictions: stated in :func:`claims` (the trends over h in ``STEP_CLAIMS``), sources and bands in ``PAPER_CLAIMS``;
intervals over seeds, n = seeds.

Runs (one model family and dataset, ``seeds`` initializations; with ``data.seed`` set every seed sees the same data):

1. ``one_step`` (per seed): at the initialization θ_0, in float64, on ``one_step_examples`` training examples, one GD
   step of each size in ``one_step_hs`` against both flows integrated over time h from θ_0 with RK4
   (``references.flows.one_step_errors``: 2·``substeps`` RK4 steps, with a Richardson estimate of the integration
   error): the distances |θ_1 − φ(h)| and |θ_1 − φ̃(h)|, and λ_max(θ_0) (h·λ_max is the expansion parameter).
2. ``gd`` (per h in ``hs`` and seed): full-batch GD (exact gradient, no momentum) to a common training-loss target
   (``target_loss``, checked every ``time``/TARGET_CHECKS of flow time) within the same training-*time* cap
   t = steps·h <= ``time`` at every h (:func:`steps_for`), so every run follows (a discretization of) the same flow
   and no h gets more time than another; the full training loss and R_IG at ``track_points`` times of the cap (and
   where the run stops); at the stopping point λ_max (Lanczos, the full training set), R_IG, train/test loss and
   accuracy.
3. ``egr`` (per seed): GD at h_small = min(hs) with the explicit penalty λ|∇L|² (``TrainConfig.grad_penalty``),
   λ = ``egr_penalty``, by default (h_large − h_small)/4 with h_large = max(hs): GD at h_small on L + λ|∇L|²
   follows L + (λ + h_small/4)|∇L|² to first order, the modified loss of GD at h_large. Trained like ``gd``: to
   the same target within the same time cap.

Which comparisons use a training target, and why. The one-step family compares GD with the two flows over one step
of time h from θ_0: a discretization error, at equal time by construction; nothing is trained. The claims on ``gd``
and ``egr`` compare final solutions: where runs at different h (or with the explicit penalty) end, by their R_IG,
λ_max and test accuracy. At equal time t the runs end at different training losses (in the earlier equal-time quick
preset, t = 200, the train loss was 0.08-0.12 at h <= 1 and 0.19-0.28 at h = 2 over 5 seeds), and with cross-entropy
R_IG = |∇L|²/P and λ_max shrink as the loss goes to zero, so an equal-time comparison of final values mixes how far a
run trained with how strongly it is regularized. No claim is about the flow at equal time, and the backward error
analysis makes the cleaner prediction at a matched loss: of two runs at the same L, the one that followed
L + (h/4)|∇L|² with the larger h has the smaller |∇L|². So these runs train to a common target; the equal flow time
stays as the cap (no h gets more time than another), and the curves along training are still drawn against the flow
time t = step·h, each up to where its run stopped. Runs that miss the target within the cap are listed in the report
and left out of the claims and tables (:func:`overparam.analysis.split_by_target`).

Target and cap (``target_loss``, ``time``; quick: 0.05 within t <= 500). Measured on the quick preset (seed 0), the
flow time to cross-entropy 0.05 is t ≈ 256, 262, 280, 314 at h = 0.2, 0.5, 1, 2 and 272 for EGR, so the cap leaves a
factor 1.6 over the slowest; the convention's 0.01 (Jiang et al. 2020) takes t ≈ 570-720, which would triple the
training of the old t = 200 preset (mostly in the penalized EGR steps). Larger h takes more time to the same loss.

Cost: one_step, per seed and h: 24·``substeps`` gradients and 12·``substeps`` Hessian-vector products on
``one_step_examples`` examples (float64); gd: at most round(time/h) full-batch gradients (fewer when the target is
reached), an evaluation of the train and test sets every cap/TARGET_CHECKS steps, ``track_points`` gradients and
~10-20 HVPs for λ_max; egr: at most round(time/h_small) penalized steps, each about three gradients (double backprop).
"""

from __future__ import annotations

import time as timer
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from overparam.analysis import (Missing, Run, SeedTable, binomial_se, group, mean_ci, paired_ratio, quiet,
                                split_by_target)
from overparam.errors import check_number, check_numbers, check_optional_nonnegative, check_positive_int
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import EXPONENT, Published, above, below, between
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "igr"
SOURCE = "Barrett & Dherin 2021 (backward error analysis)"
TARGET_CHECKS = 100  # target checks per time cap: every time/100 of flow time, at every h
# The default protocol of the gd and egr runs: to this training cross-entropy within this flow-time cap (docstring).
TARGET_LOSS, CAP_TIME = 0.05, 500.0


@dataclass(frozen=True)
class IGRConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "n_train": 1000, "seed": 0})
    # a smooth activation: backward error analysis expands L in Taylor series (ReLU's Hessian jumps)
    model: dict[str, Any] = field(default_factory=lambda: {"name": "mlp", "width": 64, "depth": 2,
                                                           "activation": "tanh"})
    loss: str = "cross_entropy"
    hs: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)  # GD step sizes
    time: float = CAP_TIME  # the training-time cap steps·h, equal for every h (with target_loss None: the budget)
    target_loss: float | None = TARGET_LOSS  # gd and egr runs stop at this training loss (None: train for ``time``)
    egr_penalty: float | None = None  # λ of EGR at min(hs); None: (max(hs) − min(hs))/4
    track_points: int = 25  # R_IG and loss measured this many times along training (plus step 0)
    one_step_hs: tuple[float, ...] = (0.01, 0.02, 0.04, 0.08, 0.16)
    one_step_examples: int | None = None  # training examples of the one-step comparison (None: all)
    substeps: int = 4  # RK4 steps per flow over time h (the error estimate doubles them)
    seeds: int = 5

    def __post_init__(self) -> None:
        for name in ("seeds", "track_points", "substeps"):
            check_positive_int(name, getattr(self, name))
        if self.one_step_examples is not None:
            check_positive_int("one_step_examples", self.one_step_examples, minimum=2)
        hs = check_numbers("hs", self.hs, at_least=2, minimum=0, open_low=True)
        check_numbers("one_step_hs", self.one_step_hs, at_least=2, minimum=0, open_low=True)
        check_number("time (the training time steps·h, so that every h takes at least one step)", self.time,
                     minimum=max(hs))
        check_optional_nonnegative("egr_penalty", self.egr_penalty, "(max(hs) − min(hs))/4")
        if self.target_loss is not None:
            check_number("target_loss", self.target_loss, minimum=0, open_low=True)
        common.check_workload(self.data, self.model, self.loss)  # the loss too

    @property
    def penalty(self) -> float:
        """The EGR coefficient λ (of λ|∇L|²)."""
        return (max(self.hs) - min(self.hs)) / 4 if self.egr_penalty is None else float(self.egr_penalty)


def steps_for(config: IGRConfig, h: float) -> int:
    """Steps of a GD run at step h: the training time divided by h, rounded (>= 1)."""
    return max(1, round(config.time / h))


def train_settings(config: IGRConfig, h: float, penalty: float = 0.0, target: bool = True) -> dict[str, Any]:
    """A GD run's training settings at step ``h``: the time cap in steps, the target (unless
    ``target`` is False or the config has none), checked every cap/TARGET_CHECKS steps."""
    steps = steps_for(config, h)
    train = {"optimizer": "gd", "momentum": 0.0, "lr": h, "steps": steps, "loss": config.loss,
             "eval_every": max(1, steps // config.track_points), "grad_penalty": penalty}
    if target and config.target_loss is not None:
        train.update(target_loss=config.target_loss, target_every=max(1, steps // TARGET_CHECKS))
    return train


def _run_config(config: IGRConfig, seed: int, h: float = 1.0, penalty: float = 0.0, target: bool = True):
    return common.run_config(config.data, config.model, train_settings(config, h, penalty, target), seed)


def grid(config: IGRConfig) -> list[RunSpec]:
    """one_step x seed, gd x h x seed, egr x seed; every distinct model is built on the meta device first."""
    hs = sorted(config.hs)
    specs = []
    for seed in range(config.seeds):
        # the one-step comparison uses the run config's data, model, loss and seed (not its training settings)
        specs.append(common.spec(NAME, _run_config(config, seed, target=False), kind="one_step",
                                 hs=list(sorted(config.one_step_hs)), substeps=config.substeps,
                                 examples=config.one_step_examples))
        specs += [common.spec(NAME, _run_config(config, seed, h), kind="gd", h=h, track_points=config.track_points)
                  for h in hs]
        specs.append(common.spec(NAME, _run_config(config, seed, hs[0], config.penalty), kind="egr", h=hs[0],
                                 h_large=hs[-1], track_points=config.track_points))
    common.validate_specs(specs)
    return specs


# --- one run -------------------------------------------------------------------------------------


def _one_step(spec: RunSpec, device: str | None) -> RunOutcome:
    """GD's one-step distance to the gradient flow and to the modified flow at the initialization."""
    from overparam.device import resolve_device
    from overparam.measures import hessian_eigenvalues
    from overparam.provenance import provenance
    from overparam.references.flows import loss_fields, network_loss, one_step_errors
    from overparam.run import build_model, load_data
    from overparam.train import loss_function

    started = timer.perf_counter()
    config = spec.config
    target = resolve_device(device)
    dataset = load_data(config, target, torch.float64, quiet=True)
    model = build_model(config, dataset, target)
    x, y = common.probe(dataset.x_train, dataset.y_train, spec.params["examples"], seed=0)
    loss_fn = loss_function(config.train.loss, dataset.num_classes)
    loss, theta0 = network_loss(model, loss_fn, x, y)
    result = one_step_errors(*loss_fields(loss), theta0, spec.params["hs"], substeps=spec.params["substeps"])
    top = float(hessian_eigenvalues(model, loss_fn, (x, y), k=1, seed=spec.seed).values[0])
    metrics = {"one_step_hs": result.hs.tolist(), "plain_error": result.plain.tolist(), "gd_step": result.step.tolist(),
               "modified_error": result.modified.tolist(), "integration_error": result.integration.tolist(),
               "plain_slope": result.plain_slope, "modified_slope": result.modified_slope, "lambda_max_init": top,
               "max_h_lambda": max(result.hs) * top, "loss_init": float(loss(theta0)), "examples": len(x),
               "num_parameters": theta0.numel()}
    return RunOutcome("done", metrics, {}, timer.perf_counter() - started, {**provenance(target), "data": dataset.info})


def _train(spec: RunSpec, device: str | None) -> RunOutcome:
    """Full-batch GD (with the EGR penalty for kind 'egr'), R_IG and the loss tracked along
    training, λ_max and R_IG at the end."""
    from overparam.measures import hessian_eigenvalues, implicit_gradient_regularizer
    from overparam.run import run_one as train_run
    from overparam.train import Callback, loss_function

    started = timer.perf_counter()
    config = spec.config
    chunk = config.train.gd_chunk_size

    def track(state) -> None:
        r = implicit_gradient_regularizer(state.model, loss_function(config.train.loss, state.data.num_classes),
                                          (state.data.x_train, state.data.y_train), batch_size=chunk)
        state.record("r_ig", r.r_ig)
        state.record("full_loss", r.loss)

    every = max(1, config.train.steps // spec.params["track_points"])
    record = train_run(config, device=device, callbacks=[Callback(track, every=every)], quiet=True)
    metrics = dict(record.metrics)  # the tracked curves r_ig and full_loss are stored as curves
    if record.status == "done":
        loss_fn = common.loss_fn(record)
        data = (record.dataset.x_train, record.dataset.y_train)
        final = implicit_gradient_regularizer(record.model, loss_fn, data, batch_size=chunk)
        top = hessian_eigenvalues(record.model, loss_fn, data, k=1, batch_size=chunk, seed=spec.seed)
        metrics.update(r_ig=final.r_ig, grad_norm_sq=final.grad_norm_sq, lambda_max=float(top.values[0]),
                       h=spec.params["h"], grad_penalty=config.train.grad_penalty,
                       time=record.metrics["steps"] * spec.params["h"], time_cap=config.train.steps * spec.params["h"])
    return RunOutcome(record.status, metrics, record.curves, timer.perf_counter() - started, record.provenance)


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    return _one_step(spec, device) if spec.params["kind"] == "one_step" else _train(spec, device)


# --- analysis ------------------------------------------------------------------------------------


TITLE = "igr: implicit gradient regularization of full-batch GD"
ERRORS = ("plain_error", "modified_error")  # one-step distance of GD to the gradient flow / the modified flow
METRICS = ("train_loss", "train_acc", "test_acc", "r_ig", "lambda_max", "steps", "time")
EGR = "egr"  # the EGR column of the training table (after the GD step sizes)

# What the source states, fixed before any run.
PAPER_CLAIMS = {
    "one_step_plain_slope": Published("2 (GD = gradient flow + O(h²) per step)", SOURCE, between(1.9, 2.1), 2.0, "",
                                      EXPONENT),
    "one_step_modified_slope": Published("3 (backward error analysis: modified flow + O(h³) per step)", SOURCE,
                                         between(2.9, 3.1), 3.0, "", EXPONENT),
    "rig_falls_with_h": Published("larger learning rate -> smaller R_IG", SOURCE, below(0.0)),
    "lambda_max_falls_with_h": Published("larger learning rate -> flatter minimum", SOURCE, below(0.0)),
    "test_acc_rises_with_h": Published("larger learning rate -> higher test accuracy", SOURCE, above(0.0)),
    "egr_recovers_flatness": Published("EGR at small h behaves like IGR at large h", SOURCE, above(0.5)),
    "egr_recovers_test_acc": Published("EGR at small h reaches the large-h test accuracy", SOURCE, above(0.5)),
}
# "falls (rises) with h" claims (judged by SeedTable.trend, stats.trend_ci): name, metric, rising, statement
STEP_CLAIMS = (
    ("rig_falls_with_h", "r_ig", False, "Larger steps end with a smaller implicit gradient regularizer R_IG = "
     "|∇L|²/P: the final R_IG falls across the h grid without rising between neighbouring h"),
    ("lambda_max_falls_with_h", "lambda_max", False, "Larger steps end in flatter minima: the final λ_max falls "
     "across the h grid without rising between neighbouring h"),
    ("test_acc_rises_with_h", "test_acc", True, "Larger steps generalize better: test accuracy (a fraction) rises "
     "across the h grid without falling between neighbouring h"),
)


@dataclass
class OneStep:
    """The one-step comparison over seeds, at K step sizes h."""

    table: SeedTable  # one_step runs, seed x one column; list metrics are (S, 1, K)
    hs: np.ndarray  # (K,) the step sizes h
    slopes: dict[str, CI]  # per metric of ERRORS, the log-log slope of the distance vs h, fitted per seed (t)
    cis: dict[str, list[CI]]  # per metric of ERRORS, (K,) the mean distance over seeds per h
    integration: np.ndarray  # (K,) the largest RK4 error estimate over seeds per h


@dataclass
class Training:
    """The GD runs at every h and the EGR runs that reached the training target (or had none)."""

    table: SeedTable  # gd and egr runs: seed x (the GD step sizes h ascending, then EGR)
    hs: list[float]  # the GD step sizes (the table's axis without EGR)
    column_hs: list[float]  # the step size of each table column (EGR's last)
    cis: dict[str, list[CI]]  # per metric of METRICS, the mean over seeds per table column (steps and time
    # t = steps·h: where the runs stopped)
    steps: dict[str, CI]  # per STEP_CLAIMS name, the change from the smallest to the largest h (stats.trend_ci)
    test_examples: int  # the test set's size
    step_se: float  # binomial SE (fraction) of the test-accuracy difference between the smallest and largest h
    fractions: dict[str, CI]  # λ_max and test_acc: the gap fraction EGR closes, paired by seed ({}: no EGR)
    egr: tuple[float, float] | None  # EGR's step size h and penalty λ (None: no EGR runs)
    curves: dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]  # per column: (training time t = step·h,
    # training loss, R_IG), each (K,): geometric means over seeds at the tracked steps


@dataclass
class IGRAnalysis:
    one_step: OneStep | None  # None: no finished one_step runs
    training: Training | None  # None: GD runs that reached the target at fewer than two step sizes
    missed: list[Run] = field(default_factory=list)  # gd/egr runs that missed the training target: listed only


def analyze(runs: list[Run], config: IGRConfig) -> IGRAnalysis | Missing:
    reached, missed = split_by_target(runs)
    kinds = group(reached, lambda r: r.settings["kind"])
    one_step, gd = kinds.get("one_step", []), kinds.get("gd", [])
    training = _training_analysis(gd, kinds.get(EGR, [])) if len({r.config.train.lr for r in gd}) >= 2 else None
    if not one_step and training is None:
        return Missing(TITLE, "No finished one-step runs, and GD runs that reached the training target at fewer "
                       "than two step sizes, yet." + (" " + _misses(missed) if missed else ""))
    return IGRAnalysis(_one_step_analysis(one_step) if one_step else None, training, missed)


def _misses(missed: list[Run]) -> str:
    def label(run: Run) -> str:
        h = run.config.train.lr
        if run.settings["kind"] == EGR:
            return f"EGR h = {h:g}, λ = {run.config.train.grad_penalty:g}"
        return f"GD h = {h:g}"
    return common.misses_text(missed, label)


def _one_step_analysis(runs: list[Run]) -> OneStep:
    from overparam.report.stats import seed_slope_ci  # SeedTable.slope's method; here h is inside each run

    table = SeedTable(runs)
    hs = np.asarray(runs[0].metrics["one_step_hs"], dtype=float)
    with quiet():  # a distance of 0 has no logarithm: left out of its seed's fit
        slopes = {m: seed_slope_ci(hs, np.where(table[m][:, 0] > 0, table[m][:, 0], np.nan)) for m in ERRORS}
    return OneStep(table, hs, slopes, {m: [mean_ci(column) for column in table[m][:, 0].T] for m in ERRORS},
                   np.nanmax(table["integration_error"][:, 0], axis=0))


def _training_analysis(gd: list[Run], egr: list[Run]) -> Training:
    table = SeedTable(gd + egr, lambda r: EGR if r.settings["kind"] == EGR else r.config.train.lr)
    by_h = SeedTable(gd, lambda r: r.config.train.lr)
    hs, accuracy, n_test = list(by_h.axis), by_h.mean("test_acc"), int(np.nanmax(by_h["n_test"]))
    steps = {name: by_h.trend(metric, rising=rising) for name, metric, rising, _ in STEP_CLAIMS}
    fractions, small, large = {}, hs[0], hs[-1]
    if egr:  # λ_max: (λ(h_small) − λ(EGR)) / (λ(h_small) − λ(h_large)); accuracy: the same with signs flipped
        def gap(m, a, b):
            return table.at(m, a) - table.at(m, b)
        fractions = {"lambda_max": paired_ratio(gap("lambda_max", small, EGR), gap("lambda_max", small, large)),
                     "test_acc": paired_ratio(gap("test_acc", EGR, small), gap("test_acc", large, small))}
    settings = (egr[0].config.train.lr, egr[0].config.train.grad_penalty) if egr else None
    column_hs = hs + ([settings[0]] if egr else [])
    return Training(table, hs, column_hs, {m: table.cis(m) for m in METRICS}, steps, n_test,
                    binomial_se(accuracy[0], accuracy[-1], n_test, scale=1.0), fractions, settings,
                    _mean_curves(table, column_hs))


def _mean_curves(table: SeedTable, hs: list[float]) -> dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per column (step size ``hs[j]``): (training time, loss, R_IG) at the steps its runs tracked,
    geometric means over seeds (on log axes a single seed's spike does not dominate them)."""
    steps, loss = table.curve("full_loss")
    with quiet():  # (A, K) each
        loss, rig = (np.exp(np.nanmean(np.log(v), axis=0)) for v in (loss, table.curve("r_ig")[1]))
    keep = np.isfinite(loss) & np.isfinite(rig)
    return {column: (steps[keep[j]] * h, loss[j, keep[j]], rig[j, keep[j]])
            for j, (column, h) in enumerate(zip(table.axis, hs))}


def claims(a: IGRAnalysis, config: IGRConfig) -> list[Claim]:
    return (_one_step_claims(a.one_step) if a.one_step is not None else []) + (
        _training_claims(a.training, config, a.missed) if a.training is not None else [])


def _one_step_claims(o: OneStep) -> list[Claim]:
    where = (f"one full-batch GD step from the initialization, {o.table.n_runs()[0]} seeds, float64, "
             f"h = {min(o.hs):g}..{max(o.hs):g}, h·λ_max(θ_0) <= "
             f"{common.fmt(float(np.nanmax(o.table['max_h_lambda'])), 3)}; fitted per seed, t-interval over seeds")
    return [
        Claim.judged(f"{NAME}.one_step_plain_slope", NAME,
                     f"GD's distance to the gradient flow after one step is O(h²): the log-log slope of "
                     f"|θ_1 − φ(h)| vs h ({where}).", PAPER_CLAIMS["one_step_plain_slope"], o.slopes["plain_error"]),
        Claim.judged(f"{NAME}.one_step_modified_slope", NAME, f"GD follows the modified flow of L + (h/4)|∇L|² to "
                     f"O(h³) per step: the log-log slope of |θ_1 − φ̃(h)| vs h ({where}).",
                     PAPER_CLAIMS["one_step_modified_slope"], o.slopes["modified_error"]),
    ]


def _protocol(config: IGRConfig, missed: list[Run]) -> str:
    """How the gd/egr runs were trained, and how many were left out, for the claims' statements."""
    if config.target_loss is None:
        return f"equal training time t = steps·h = {config.time:g}"
    return (f"every run trained to training loss <= {config.target_loss:g} (checked every "
            f"{config.time / TARGET_CHECKS:g} of flow time) within the same time cap t = steps·h <= {config.time:g}"
            + (f"; {len(missed)} run(s) that missed the target left out" if missed else ""))


def _training_claims(t: Training, config: IGRConfig, missed: list[Run]) -> list[Claim]:
    setting = (f"full-batch GD at h = {', '.join(f'{h:g}' for h in t.hs)}, {_protocol(config, missed)}; the change "
               f"from the smallest to the largest h, paired by seed")
    accuracy = {"test_examples": t.test_examples, "binomial_se": t.step_se}
    out = [Claim.judged(f"{NAME}.{name}", NAME, f"{text} ({setting}).", PAPER_CLAIMS[name], t.steps[name],
                        **(accuracy if name == "test_acc_rises_with_h" else {})) for name, _, _, text in STEP_CLAIMS]
    if not t.fractions:
        return out
    setting = (f"GD at h = {t.hs[0]:g} with the explicit penalty {t.egr[1]:g}·|∇L|² "
               f"(= (h_large − h_small)/4 by default, so that L + (λ + h_small/4)|∇L|² is the modified "
               f"loss of h_large = {t.hs[-1]:g}), {_protocol(config, missed)}; a ratio of per-seed differences, "
               f"paired by seed")
    gap = t.cis["test_acc"][len(t.hs) - 1][0] - t.cis["test_acc"][0][0]
    return out + [
        Claim.judged(f"{NAME}.egr_recovers_flatness", NAME,
                     f"Explicit gradient regularization at a small step recovers the large step's flatness: "
                     f"the fraction (λ_max(h_small) − λ_max(EGR))/(λ_max(h_small) − λ_max(h_large)) of the "
                     f"gap that EGR closes is > 0.5, i.e. EGR ends closer to the large-h λ_max ({setting}).",
                     PAPER_CLAIMS["egr_recovers_flatness"], t.fractions["lambda_max"]),
        Claim.judged(f"{NAME}.egr_recovers_test_acc", NAME,
                     f"Explicit gradient regularization at a small step recovers the large step's test accuracy: the "
                     f"fraction (acc(EGR) − acc(h_small))/(acc(h_large) − acc(h_small)) of the gap that EGR closes is "
                     f"> 0.5 ({setting}). A fraction of a gap, not an accuracy difference, so no binomial test-set "
                     f"error is applied to it; the gap itself is {100 * gap:.2f} pp, binomial SE "
                     f"{100 * t.step_se:.2f} pp on {t.test_examples} test examples.",
                     PAPER_CLAIMS["egr_recovers_test_acc"], t.fractions["test_acc"], test_examples=t.test_examples),
    ]


# --- report --------------------------------------------------------------------------------------


def render(a: IGRAnalysis, claims: list[Claim], config: IGRConfig) -> list[Section]:
    o, t = a.one_step, a.training
    parts = ([_one_step_text(o)] if o is not None else []) + ([_training_text(t, config)] if t is not None else [])
    if a.missed:
        parts.append(_misses(a.missed))
    figures = ([("igr_one_step", _one_step_figure(o))] if o is not None else []) + (
        [("igr_training", _training_figure(t)), ("igr_flatness", _flatness_figure(t))] if t is not None else [])
    return [Section(TITLE, "\n\n".join(parts), figures, claims)]


def _one_step_text(o: OneStep) -> str:
    body = [[f"{h:g}", common.ci_text(p, 3), common.ci_text(m, 3), common.fmt(m[0] / p[0], 3), common.fmt(e, 2)]
            for h, p, m, e in zip(o.hs, o.cis["plain_error"], o.cis["modified_error"], o.integration)]
    table = common.table(["h", "‖θ_1 − φ(h)‖ (gradient flow)", "‖θ_1 − φ̃(h)‖ (modified flow)", "ratio",
                          "max RK4 error estimate"], body)
    lam, first = o.table["lambda_max_init"], next(run for row in o.table.runs for run in row if run is not None)
    return (f"**One GD step against the two flows.** From each seed's initialization θ_0 (a "
            f"{first.metrics['num_parameters']}-parameter model, {first.metrics['examples']} training examples, "
            f"float64), one GD step θ_1 = θ_0 − h∇L(θ_0) is compared with the gradient flow φ and the modified flow "
            f"φ̃ of L + (h/4)|∇L|², both integrated over time h from θ_0 by RK4. λ_max(θ_0) = "
            f"{common.fmt(float(np.nanmin(lam)), 3)}..{common.fmt(float(np.nanmax(lam)), 3)}, so h·λ_max stays small. "
            f"Distances are means over {o.table.n_runs()[0]} seeds with 95% t-intervals.\n\n{table}\n\n"
            f"The RK4 error estimate is the difference between integrations with K and 2K steps; where it is far below "
            f"the distances, the slopes (theory: 2 and 3) are those of GD itself, not of the integrator.")


def _column_label(t: Training, column: Any) -> str:
    return f"EGR h={t.egr[0]:g}, λ={t.egr[1]:g}" if column == EGR else f"GD h={column:g}"


def _training_text(t: Training, config: IGRConfig) -> str:
    shown = [m for m in METRICS if m not in ("steps", "time")]
    body = [[_column_label(t, column), n, common.ci_text(t.cis["steps"][j], 3), common.ci_text(t.cis["time"][j], 3),
             steps_for(config, h), *(common.ci_text(t.cis[m][j], 3) for m in shown), common.fmt(2 / h, 3)]
            for j, (column, h, n) in enumerate(zip(t.table.axis, t.column_hs, t.table.n_runs()))]
    table = common.table(["run", "n", "steps", "t = steps·h", "cap (steps)", "train loss", "train acc", "test acc",
                          "R_IG = ‖∇L‖²/P", "λ_max", "2/h"], body)
    edge = ", ".join(f"{common.fmt(h * t.cis['lambda_max'][j][0] / 2, 2)} (h = {h:g})" for j, h in enumerate(t.hs))
    if config.target_loss is None:
        head = (f"**GD at several step sizes, equal training time.** Full-batch GD (no momentum) for time "
                f"t = steps·h = {config.time:g} at every h")
        level = ("At equal time the runs end at different training losses (see the table), so the final R_IG, which "
                 "shrinks with the loss, mixes how far a run has trained with how strongly it is regularized; the "
                 "R_IG-vs-loss panel of the training figure compares the runs at matched loss instead.")
    else:
        head = (f"**GD at several step sizes, to a common training loss.** Full-batch GD (no momentum), every run "
                f"trained to training loss <= {config.target_loss:g} (checked every {config.time / TARGET_CHECKS:g} of "
                f"flow time) within the same time cap t = steps·h <= {config.time:g}")
        level = ("Every run in the table stopped at the same training loss (up to one check's progress), so the final "
                 "R_IG and λ_max compare solutions at one loss level, where the backward error analysis makes its "
                 "prediction (at a matched L, the larger h has followed the larger penalty (h/4)‖∇L‖²); the t column "
                 "is the flow time each needed, and the R_IG-vs-loss panel of the training figure shows the whole "
                 "way there.")
    return (f"{head}; means over seeds with 95% t-intervals. The EGR row trains at the smallest h on L + λ|∇L|² "
            f"(λ = {config.penalty:g}).\n\n{table}\n\n{level} At the end h·λ_max/2 = {edge}: 1 is the stability "
            f"limit λ_max = 2/h, where GD oscillates (the edge of stability) and the small-h expansion behind the "
            f"modified loss no longer holds. With cross-entropy λ_max and R_IG also shrink as the loss goes to zero."
            + (" The EGR claims' fractions of a gap are unstable where the gap itself is small: see the table."
               if t.fractions else ""))


def _one_step_figure(o: OneStep):
    from overparam.report.figures import errorbar_cis, log2_axis, new_figure

    fig, ax = new_figure(width=6.8, height=4.6)
    for m, flow, color, slope in zip(ERRORS, ("gradient", "modified"), ("tab:red", "tab:blue"), (2, 3)):
        errorbar_cis(ax, o.hs, o.cis[m], f"GD vs {flow} flow, slope {common.ci_text(o.slopes[m], 3)}",
                     n=o.table.n_runs()[0], color=color, legend=False)
        # drawn a factor 3 below the first point, so that it does not hide the measured line
        ax.plot(o.hs, o.cis[m][0][0] / 3 * (o.hs / o.hs[0]) ** slope, linestyle="--", color=color, alpha=0.7,
                linewidth=1.1, label=f"reference slope {slope}")
    ax.plot(o.hs, o.integration, linestyle=":", marker=".", color="0.4", label="RK4 error estimate (max over seeds)")
    log2_axis(ax, o.hs)
    ax.set(yscale="log", xlabel="step size h", ylabel="distance after one step  ‖θ_1 − flow(h)‖",
           title="one GD step vs gradient flow and modified flow")
    ax.legend(fontsize=8, frameon=False)
    return fig


def _training_figure(t: Training):
    from matplotlib import colormaps

    from overparam.report.figures import new_figure

    fig, axes = new_figure(1, 3, width=16, height=4.4)
    colors = list(colormaps["viridis"](np.linspace(0.0, 0.85, len(t.hs)))) + ["tab:red"]
    for column, n, color in zip(t.table.axis, t.table.n_runs(), colors):
        times, loss, rig = t.curves[column]
        style = {"linestyle": "--" if column == EGR else "-", "color": color,
                 "label": f"{_column_label(t, column)} (n={n})"}
        axes[0].plot(times, loss, **style)
        axes[1].plot(times, rig, **style)
        axes[2].plot(loss, rig, marker=".", markersize=3, **style)
    axes[0].set(xlabel="training time t = step · h", ylabel="training loss (geometric mean over seeds)", yscale="log",
                title="loss along training")
    axes[1].set(xlabel="training time t = step · h", ylabel="R_IG = ‖∇L‖²/P (geometric mean over seeds)",
                yscale="log", title="implicit gradient regularizer along training")
    axes[2].set(xlabel="training loss", ylabel="R_IG", xscale="log", yscale="log",
                title="R_IG at matched training loss")
    axes[2].invert_xaxis()  # training proceeds left to right
    axes[0].legend(fontsize=8, frameon=False)
    return fig


def _flatness_figure(t: Training):
    from overparam.report.figures import errorbar_cis, log2_axis, new_figure

    fig, axes = new_figure(1, 2, width=12, height=4.4)
    hs, n, gd = np.asarray(t.hs), t.table.n_runs(), len(t.hs)
    for ax, metric, label, title in ((axes[0], "lambda_max", "λ_max (top Hessian eigenvalue)", "flatness"),
                                     (axes[1], "test_acc", "test accuracy", "test accuracy")):
        errorbar_cis(ax, hs, t.cis[metric][:gd], "GD", n=n[:gd], legend=False)
        if t.egr is not None:  # drawn 5% to the right of its h so that it does not cover the plain GD point
            errorbar_cis(ax, [t.egr[0] * 1.05], t.cis[metric][-1:], f"EGR at h={t.egr[0]:g}, λ={t.egr[1]:g}",
                         n=n[-1], color="tab:red", marker="*", linestyle="none", legend=False)
        log2_axis(ax, hs)
        ax.set(xlabel="step size h", ylabel=f"{label}, end of training", title=f"{title} vs step size",
               yscale="log" if metric == "lambda_max" else "linear")
    grid_h = np.geomspace(hs.min(), hs.max(), 50)
    axes[0].plot(grid_h, 2 / grid_h, linestyle="--", color="0.5", label="stability limit 2/h")
    for ax in axes:
        ax.legend(fontsize=8, frameon=False)
    return fig


STUDY = Study(
    name=NAME,
    description="implicit gradient regularization: GD follows L + (h/4)|∇L|² (one-step O(h³)), larger h -> "
                "smaller R_IG and λ_max; explicit gradient regularization at small h",
    config_type=IGRConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 100, "seed": 0},
                 "model": {"name": "mlp", "width": 16, "depth": 1, "activation": "tanh"},
                 # every run reaches train loss 1.75 by t = 6-8 (1.53-1.58 at the cap t = 10)
                 "hs": [0.5, 2.0], "time": 10.0, "target_loss": 1.75, "track_points": 4,
                 "one_step_hs": [0.02, 0.04, 0.08], "one_step_examples": 100, "substeps": 2, "seeds": 2},
        # train loss 0.05 at t ≈ 256, 262, 280, 314 for h = 0.2, 0.5, 1, 2 and 272 for EGR (seed 0): the cap
        # t = 500 leaves 1.6x; the Jiang et al. level 0.01 (t ≈ 570-720) would triple the old t = 200 training
        "quick": {"data": {"name": "mnist1d", "n_train": 1000, "seed": 0},
                  "model": {"name": "mlp", "width": 64, "depth": 2, "activation": "tanh"},
                  "hs": [0.2, 0.5, 1.0, 2.0], "time": 500.0, "target_loss": 0.05, "seeds": 5},
        # Barrett & Dherin's MNIST MLPs, at a subset the CPU can hold in full-batch GD; the convention's
        # cross-entropy 0.01, with a cap of 3x the old equal-time budget t = 500 (not measured on this CPU)
        "paper": {"data": {"name": "mnist", "n_train": 10000, "n_test": 10000, "seed": 0, "standardize": True},
                  "model": {"name": "mlp", "width": 400, "depth": 2, "activation": "tanh"},
                  "hs": [0.05, 0.1, 0.2, 0.5, 1.0], "time": 1500.0, "target_loss": 0.01, "one_step_examples": 2000,
                  "seeds": 5},
    },
)
