"""``batch_saturation``: steps to a target training loss vs batch size, each batch size at its own
best learning rate: perfect (linear) scaling below a critical batch size, saturation above it.

After McCandlish, Kaplan, Amodei et al. (2018, "An Empirical Model of Large-Batch Training") and
Ma, Bassily & Belkin (2018, "The Power of Interpolation"). For each workload, batch size B and
seed, SGD (momentum 0, constant LR) trains at every LR of a small grid; the train loss on the
whole training set is evaluated every ``eval_every(B)`` steps, and a run's steps-to-target is the
first evaluated step whose loss is <= ``target_loss`` (an upper bound, resolution eval_every(B)).
The (B, seed) steps-to-target is the minimum over the LR grid (the run that got there first; the
smaller LR on a tie); runs that diverge or never reach the target within their budget do not
count, and a B at which some seed never reached it is left out of the fits (and listed).

Workloads (each a dict of settings, see ``WORKLOAD_DEFAULTS``):

- ``linear``: noiseless realizable least squares (``linear_regression``, x ~ N(0, I_p), n > p,
  y = <x, w*>), the model f(x) = wᵀx (``deep_linear`` of depth 1, near-zero init) and torch's
  ``mse_loss``: the interpolation regime, where SGD converges linearly (Ma et al.'s setting).
  Its LR grid (``lr_rule: ma``) is multiples of Ma et al.'s optimal step η*(B) = B/(β + (B−1)λ_1),
  halved for the mean-of-squares loss.
- ``mlp``: a small ReLU MLP on MNIST-1D with cross-entropy, one fixed LR grid for every B
  (``lr_rule: fixed``).

Estimates of the critical batch size, per workload:

- the fit S(B) = S_min (1 + B_noise/B) (:func:`overparam.references.batch.fit_saturation`: least
  squares on relative residuals; B_crit = E_min/S_min = B_noise), once to the mean over seeds of
  the steps-to-target (the figure, the table and the slope ranges) and once per seed, to the batch
  sizes that seed reached (at least ``MIN_FIT_POINTS``; intervals: :func:`_b_noise_over`).
- the simple gradient noise scale B_simple = tr(Σ)/|G|² (:func:`overparam.measures.
  gradient_noise_scale`, per-example gradients over the whole training set), measured along one
  extra run per seed (kind ``noise``: B = ``noise_batch_size``, the geometric mean of that B's LR
  grid) at step 0, at the first evaluation with loss <= sqrt(L_0 · target) (halfway to the target
  on a log scale) and at the target.
- linear only: Ma et al.'s m* = β/λ_1 of the training design (β = max|x_i|², λ_1 the top eigenvalue
  of XᵀX/n; :func:`overparam.references.batch.ma_critical_batch`); their bound predicts B_noise = m* − 1.

Claims per workload (ids ``batch_saturation.<workload>.<claim>``, sources in :data:`PAPER_CLAIMS`):
perfect scaling below B_noise/``regime_factor``, saturation above regime_factor·B_noise, B_noise vs
B_simple (halfway) and, linear only, vs m*.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.analysis import (Missing, Run, SeedTable, group, mean_ci, paired_ratio, quiet, resample_seeds,
                                resampled_ci)
from overparam.errors import ConfigError, check_number, check_numbers, check_positive_int, choice_error
from overparam.references.batch import SaturationFit, fit_saturation, ma_critical_batch
from overparam.report import CI, Claim, Section
from overparam.report.stats import seed_slope_ci
from overparam.report.verdicts import Published, Tolerance, above, between
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "batch_saturation"
WORKLOADS = ("linear", "mlp")
NOISE_LEVELS = ("start", "half", "target")
# A fitted B_noise of ∞ (S_min = 0: steps still ∝ 1/B at the largest batch) or 0 (steps flat from
# the smallest batch) only says that B_noise lies beyond the batch sizes tried; the per-seed values
# are clipped to [min B / B_NOISE_RANGE, max B · B_NOISE_RANGE] so that intervals stay numbers.
B_NOISE_RANGE = 1e6
MIN_FIT_POINTS = 3  # batch sizes a seed must have reached for its own fit (two parameters, one to spare)
MA, MCCANDLISH = "Ma, Bassily & Belkin 2018", "McCandlish et al. 2018"
# "Perfect scaling" is slope −1 only as B -> 0: over B <= B_noise/regime_factor the model S_min(1 + B_noise/B)
# itself has local slopes from −1 down to −0.75 (at regime_factor 3), so the study's band is [−1.25, −0.75],
# stated with the study before its first run; the exponent rule's ±0.1 would fail the model's own curve.
SMALL_SLOPE_BAND = (-1.25, -0.75)
PAPER_CLAIMS = {  # fixed before any run
    "perfect_scaling": Published("S ∝ 1/B below the critical batch size: slope −1 (Ma et al. 2018 'linear scaling'; "
                                 "McCandlish et al. 2018 'perfect scaling')", f"{MA}; {MCCANDLISH}",
                                 between(*SMALL_SLOPE_BAND), -1.0, "", Tolerance.range(*SMALL_SLOPE_BAND)),
    "saturation": Published("S → S_min above the critical batch size: slope → 0 (Ma et al. 2018 'saturation'; "
                            "McCandlish et al. 2018)", f"{MA}; {MCCANDLISH}", above(-0.5)),
    "b_noise_vs_b_simple": Published("B_crit ≈ B_noise ≈ B_simple within an order of magnitude (McCandlish et al. "
                                     "2018)", MCCANDLISH, between(0.1, 10.0)),
    "b_noise_vs_ma": Published("critical mini-batch size m* = β/λ_1 (Ma, Bassily & Belkin 2018; their bound gives "
                               "B_noise = m* − 1)", MA, between(10 ** -0.5, 10 ** 0.5)),
}

WORKLOAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {
        "data": {"name": "linear_regression", "n_train": 4096, "n_test": 256, "p": 64, "noise_std": 0.0, "seed": 0},
        "model": {"name": "deep_linear", "width": 1, "depth": 1, "init": "gaussian", "scale": 1e-3},
        "loss": "mse", "batch_sizes": [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048], "target_loss": 1e-6,
        "lr_rule": "ma", "lr_grid": [1.0, 1.41, 2.0, 2.83],  # LR = factor · η*(B) (Ma et al.) for each factor
        "budget_epochs": 0.6, "budget_steps": 40,
        "evals": None, "noise_batch_size": 16,  # evals None: evaluate the training loss after every step
    },
    "mlp": {
        "data": {"name": "mnist1d", "n_test": 200, "seed": 0}, "model": {"name": "mlp", "width": 128, "depth": 1},
        "loss": "cross_entropy", "batch_sizes": [8, 16, 32, 64, 128, 256, 512, 1024, 2048], "target_loss": 1.0,
        "lr_rule": "fixed", "lr_grid": [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0],  # the same LRs at every B
        "budget_epochs": 5.0, "budget_steps": 120, "evals": 60, "noise_batch_size": 64,
    },
}


def _complete(workload: str, settings: Any) -> dict[str, Any]:
    """The workload's settings with defaults filled in, validated (ConfigError naming the bad one)."""
    if not isinstance(settings, dict):
        raise ConfigError(f"{workload} must be a mapping of workload settings, got {settings!r}")
    defaults = WORKLOAD_DEFAULTS[workload]
    if unknown := sorted(set(settings) - set(defaults)):
        raise ConfigError(f"{workload} has no setting(s) {unknown}; accepted: {sorted(defaults)}")
    w, where = {**copy.deepcopy(defaults), **copy.deepcopy(settings)}, f"{workload}."
    w["batch_sizes"] = sorted(check_numbers(f"{where}batch_sizes", w["batch_sizes"], at_least=3, integer=True,
                                            minimum=1))  # three: a fit of two parameters
    check_number(f"{where}target_loss", w["target_loss"], minimum=0, open_low=True)
    for key, choices in (("loss", ("mse", "cross_entropy")), ("lr_rule", ("fixed", "ma"))):
        if w[key] not in choices:
            raise choice_error(f"{where}{key}", w[key], choices)
    w["lr_grid"] = sorted(float(v) for v in check_numbers(f"{where}lr_grid", w["lr_grid"], minimum=0, open_low=True))
    check_number(f"{where}budget_epochs", w["budget_epochs"], minimum=0)
    check_positive_int(f"{where}budget_steps", w["budget_steps"], minimum=0)
    if w["budget_epochs"] == 0 and w["budget_steps"] == 0:
        raise ConfigError(f"{where}budget_epochs and {where}budget_steps are both 0: no run would take a step")
    if w["evals"] is not None:
        check_positive_int(f"{where}evals", w["evals"])
    check_positive_int(f"{where}noise_batch_size", w["noise_batch_size"])
    if not isinstance(w["data"], dict) or not isinstance(w["model"], dict):
        raise ConfigError(f"{where}data and {where}model must be mappings, got {w['data']!r} and {w['model']!r}")
    check_positive_int(f"{where}data.seed (one dataset for every seed and batch size)", w["data"].get("seed"), 0)
    model = w["model"]
    if w["lr_rule"] == "ma" and (model.get("name") != "deep_linear" or model.get("depth") != 1 or w["loss"] != "mse"):
        raise ConfigError(f"{where}lr_rule 'ma' (Ma et al.'s η*(B) for least squares) needs the linear model "
                          f"f(x) = wᵀx (model deep_linear with depth 1) and loss 'mse'; got model {model!r}, "
                          f"loss {w['loss']!r}")
    common.run_config(w["data"], w["model"], {"loss": w["loss"], "momentum": 0.0}, 0)  # names and options
    return w


@dataclass(frozen=True)
class BatchSaturationConfig:
    workloads: tuple[str, ...] = WORKLOADS
    linear: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(WORKLOAD_DEFAULTS["linear"]))
    mlp: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(WORKLOAD_DEFAULTS["mlp"]))
    seeds: int = 5
    regime_factor: float = 3.0  # small-B range: B <= B_noise/f; large-B range: B >= f·B_noise

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds, minimum=2)
        if not (ws := self.workloads) or not set(ws) <= set(WORKLOADS) or len(set(ws)) != len(ws):
            raise ConfigError(f"workloads must be a non-empty list of distinct entries of {list(WORKLOADS)}, got "
                              f"{list(self.workloads)}")
        check_number("regime_factor", self.regime_factor, minimum=1, open_low=True)
        for workload in WORKLOADS:
            object.__setattr__(self, workload, _complete(workload, getattr(self, workload)))


# --- grid and runs ------------------------------------------------------------------------------


def _ma_constants(workload: str, dataset) -> dict[str, float]:
    if dataset.num_classes is not None or dataset.y_train.dim() != 1:
        raise ConfigError(f"{workload}.lr_rule 'ma' needs scalar regression targets (e.g. data linear_regression), "
                          f"got dataset {dataset.name!r}")
    ma = ma_critical_batch(dataset.x_train.flatten(1))
    return {"beta": ma.beta, "lambda_1": ma.lambda_1, "m_star": ma.m_star}


def learning_rates(w: dict[str, Any], batch_size: int, ma: dict[str, float] | None) -> list[float]:
    """The LR grid at ``batch_size``: lr_grid itself ('fixed'), or its factors times Ma et al.'s
    η*(B) = B/(β + (B−1)λ_1), halved because torch's mse_loss is twice their ½-mean-square ('ma')."""
    if w["lr_rule"] == "fixed":
        return list(w["lr_grid"])
    eta = batch_size / (ma["beta"] + (batch_size - 1) * ma["lambda_1"]) / 2
    return [factor * eta for factor in w["lr_grid"]]


def _run(w: dict[str, Any], batch_size: int, lr: float, n_train: int, seed: int):
    """SGD for budget_steps + ceil(budget_epochs · n / B) steps (the shape of S(B), with slack), the
    training loss evaluated every step (evals None) or every steps // evals steps: the resolution of
    the run's steps-to-target."""
    steps = w["budget_steps"] + math.ceil(w["budget_epochs"] * n_train / batch_size)
    train = {"optimizer": "sgd", "momentum": 0.0, "loss": w["loss"], "batch_size": batch_size, "lr": lr,
             "steps": steps, "eval_every": 1 if w["evals"] is None else max(1, steps // w["evals"])}
    return common.run_config(w["data"], w["model"], train, seed)


def grid(config: BatchSaturationConfig) -> list[RunSpec]:
    import torch

    from overparam.run import load_data

    specs = []
    for workload in config.workloads:  # the training data every run of the workload shares (data.seed)
        w = getattr(config, workload)
        dataset = load_data(common.run_config(w["data"], w["model"], {"loss": w["loss"]}, 0), torch.device("cpu"),
                            torch.float64, quiet=True)
        n = dataset.n_train
        if too_large := [b for b in w["batch_sizes"] + [w["noise_batch_size"]] if b > n]:
            raise ConfigError(f"{workload}: batch size(s) {too_large} exceed the {n} training examples; accepted: "
                              f"1 <= B <= {n}")
        ma = _ma_constants(workload, dataset) if w["lr_rule"] == "ma" else None
        settings = {"workload": workload, "target_loss": w["target_loss"], "ma": ma}
        specs += [common.spec(NAME, _run(w, b, lr, n, seed), kind="train", lr_factor=factor, **settings)
                  for b in w["batch_sizes"] for factor, lr in zip(w["lr_grid"], learning_rates(w, b, ma))
                  for seed in range(config.seeds)]
        noise_lr = math.exp(np.mean(np.log(learning_rates(w, w["noise_batch_size"], ma))))
        specs += [common.spec(NAME, _run(w, w["noise_batch_size"], noise_lr, n, seed), kind="noise", **settings)
                  for seed in range(config.seeds)]
    common.validate_specs(specs)
    return specs


def _measure(spec: RunSpec, record: Any) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    """Steps to target: the first evaluated step whose training loss is <= target (None if none is)."""
    curve, target = record.curves.get("train_loss", []), spec.params["target_loss"]
    steps = next((int(step) for step, loss in curve if loss <= target), None)
    return {"steps_to_target": steps, "reached": steps is not None,
            "eval_every": spec.config.train.eval_every}, {}


def _noise_run(spec: RunSpec, device: str | None) -> RunOutcome:
    """Train at the noise batch size and measure B_simple = tr(Σ)/|G|² on the whole training set
    at step 0, at the first evaluation with loss <= sqrt(L_0 · target) and at the target."""
    from overparam.measures import gradient_noise_scale
    from overparam.run import run_one as train_run
    from overparam.train import Callback, loss_function

    config, target = spec.config, spec.params["target_loss"]
    thresholds: dict[str, float] = {}  # level -> the loss that marks it; measured: level -> B_simple and more
    measured: dict[str, dict[str, float]] = {}

    def on_eval(state) -> None:
        loss = state.metrics["train_loss"]
        if not thresholds:  # step 0
            thresholds.update(start=math.inf, half=math.sqrt(loss * target), target=target)
        crossed = [name for name, level in thresholds.items() if name not in measured and loss <= level]
        if not crossed:
            return
        loss_fn = loss_function(config.train.loss, state.data.num_classes)
        scale = gradient_noise_scale(state.model, loss_fn, (state.data.x_train, state.data.y_train))
        for name in crossed:
            measured[name] = {"step": state.step, "loss": loss, "b_simple": scale.b_simple,
                              "trace_sigma": scale.trace_sigma, "grad_norm_sq": scale.grad_norm_sq}

    record = train_run(config, device=device, callbacks=[Callback(on_eval, every=config.train.eval_every)],
                       quiet=True)
    metrics = {**record.metrics, "half_level": thresholds.get("half"),  # the loss sqrt(L_0 · target)
               **{f"{key}_{name}": value for name, values in measured.items() for key, value in values.items()}}
    curves = {**record.curves, "b_simple": sorted((v["step"], v["b_simple"]) for v in measured.values())}
    return RunOutcome(record.status, metrics, curves, record.wall_time_s, record.provenance)


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    return _noise_run(spec, device) if spec.params["kind"] == "noise" else common.single(_measure)(spec, device)


def batch_key(spec: RunSpec) -> str | None:
    """Train runs of one workload and batch size train together, every seed and LR of the grid."""
    return common.batch_key(spec, ignore=("lr_factor",)) if spec.params["kind"] == "train" else None


# --- analysis ------------------------------------------------------------------------------------


@dataclass
class WorkloadAnalysis:
    """One workload's numbers. Axes: the seeds S and the batch sizes B (ascending) with a finished
    training run."""

    workload: str
    settings: dict[str, Any]  # the workload's settings, defaults filled in
    table: SeedTable  # seed x B: the run of the LR grid that reached the target first (the smaller LR on a tie)
    steps: np.ndarray  # (S, B) its steps to the target loss; NaN: no LR reached the target
    best_lr: np.ndarray  # (S, B) its LR; NaN where no LR reached the target
    best_factor: np.ndarray  # (S, B) its entry of lr_grid (× η*(B) for lr_rule 'ma'); NaN likewise
    ma: dict[str, float] | None  # Ma et al.'s constants of the design (beta, lambda_1, m_star); None: no 'ma' rule
    fit: SaturationFit | None  # S(B) = S_min(1 + B_noise/B) fitted to the mean steps at the used B; None: < 2 used
    seed_fits: np.ndarray  # (2, S) per seed: S_min and B_noise (clipped, see B_NOISE_RANGE); NaN: not fitted
    per_seed: bool  # most seeds have their own fit: intervals from the per-seed values (else seeds resampled)
    b_noise: CI  # B_noise = B_crit (examples): geometric mean of the per-seed fits, log-t (see per_seed)
    s_min: CI  # S_min (steps): mean of the per-seed fits, t
    small: np.ndarray  # (B,) bool: used and B <= B_noise/regime_factor (the mean-curve fit's B_noise)
    large: np.ndarray  # (B,) bool: used and B >= regime_factor·B_noise
    small_slope: CI  # log-log slope of steps vs B over `small`, fitted per seed, t over seeds
    large_slope: CI  # the same over `large`
    noise: dict[str, np.ndarray]  # "{b_simple,step,loss}_{level}" -> (S,) per seed; NaN: not measured
    noise_cis: dict[str, CI]  # level -> mean B_simple over seeds (examples)
    ratio_b_simple: CI  # B_noise / B_simple halfway, per seed (see per_seed)
    ratio_ma: CI | None  # B_noise / m* (None without Ma et al.'s constants)
    unfinished: tuple[int, int]  # (training runs of the config's grid without a finished run, runs in that grid)

    @property
    def batch_sizes(self) -> np.ndarray:
        return np.asarray(self.table.axis, dtype=float)

    @property
    def used(self) -> np.ndarray:
        """(B,) bool: batch sizes where every seed reached the target: the points of the mean-curve fit."""
        return np.all(np.isfinite(self.steps), axis=0)


@dataclass
class BatchSaturationAnalysis:
    workloads: list[WorkloadAnalysis]  # in config.workloads order, those with finished training runs


def _first_to_target(runs: list[Run]) -> Run:
    """The run with the fewest steps to target, the smaller LR on a tie (the smallest LR if none reached it)."""
    return min(runs, key=lambda r: (np.nan_to_num(r.metric("steps_to_target"), nan=math.inf), r.config.train.lr))


def _clip(b_noise: Any, sizes: np.ndarray) -> np.ndarray:
    return np.clip(b_noise, sizes.min() / B_NOISE_RANGE, sizes.max() * B_NOISE_RANGE)


def _seed_fits(sizes: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(2, S): S_min and B_noise (clipped) of S(B) fitted to each seed's steps at the batch sizes it
    reached; NaN for a seed that reached fewer than MIN_FIT_POINTS."""
    out = np.full((2, len(steps)), np.nan)
    for i, row in enumerate(steps):
        keep = np.isfinite(row) & (row > 0)
        if keep.sum() >= MIN_FIT_POINTS:
            fit = fit_saturation(sizes[keep], row[keep])
            out[:, i] = fit.s_min, _clip(fit.b_noise, sizes)
    return out


def _b_noise_over(steps: np.ndarray, sizes: np.ndarray, seed_b_noise: np.ndarray, per_seed: bool,
                  denominators: np.ndarray) -> CI:
    """B_noise / ``denominators`` (S,): the per-seed ratios with a log-t interval; without per-seed
    fits for most seeds, the mean-curve fit over the mean denominator, seeds resampled (seeds
    with a NaN denominator left out)."""
    if per_seed:
        return paired_ratio(seed_b_noise, denominators)
    used, keep = np.all(np.isfinite(steps), axis=0), np.isfinite(denominators)
    if used.sum() < 2 or not keep.any():
        return CI(math.nan, math.nan, math.nan, n=int(keep.sum()))
    estimate, draws = resample_seeds(
        {"steps": steps[keep][:, used], "d": denominators[keep]},
        lambda mean: _clip(fit_saturation(sizes[used], mean["steps"]).b_noise, sizes) / mean["d"])
    return resampled_ci(estimate, draws, int(keep.sum()))


def _slope(sizes: np.ndarray, steps: np.ndarray, mask: np.ndarray) -> CI:
    """Log-log slope of steps (S, B) vs B over the batch sizes in ``mask``: per-seed fits, t over seeds."""
    return (seed_slope_ci(sizes[mask], steps[:, mask]) if mask.sum() >= 2
            else CI(math.nan, math.nan, math.nan, n=len(steps), method="t over per-seed slopes"))


def _noise_scales(noise: list[Run], seeds: list[int]) -> dict[str, np.ndarray]:
    """B_simple (and step, loss) at each level, per seed of ``seeds`` (NaN where not measured)."""
    measured = SeedTable(noise).by_seed if noise else (lambda metric: {})
    return {f"{key}_{level}": np.asarray([measured(f"{key}_{level}").get(s, math.nan) for s in seeds], dtype=float)
            for level in NOISE_LEVELS for key in ("b_simple", "step", "loss")}


def _analyze_workload(workload: str, train: list[Run], noise: list[Run],
                      config: BatchSaturationConfig) -> WorkloadAnalysis:
    w, f, ma = getattr(config, workload), config.regime_factor, train[0].settings.get("ma")
    by_point = group(train, lambda r: (r.config.train.batch_size, r.seed))
    table = SeedTable([_first_to_target(runs) for runs in by_point.values()], lambda r: r.config.train.batch_size)
    steps = table["steps_to_target"]
    reached, sizes, seeds = np.isfinite(steps), np.asarray(table.axis, dtype=float), table.seeds
    used = reached.all(axis=0)
    fit = fit_saturation(sizes[used], steps[:, used].mean(axis=0)) if used.sum() >= 2 else None
    b_noise = fit.b_noise if fit is not None else math.nan
    small, large = used & (sizes <= b_noise / f), used & (sizes >= b_noise * f)
    values, seed_fits = _noise_scales(noise, seeds), _seed_fits(sizes, steps)
    per_seed = np.isfinite(seed_fits[1]).sum() > len(seeds) / 2

    def over(denominators: np.ndarray) -> CI:  # B_noise / denominators, one per seed
        return _b_noise_over(steps, sizes, seed_fits[1], per_seed, denominators)

    grid_points = {(b, g, s) for b in w["batch_sizes"] for g in w["lr_grid"] for s in range(config.seeds)}
    finished = {(r.config.train.batch_size, r.settings["lr_factor"], r.seed) for r in train}
    return WorkloadAnalysis(
        workload=workload, settings=w, table=table, steps=steps,
        best_lr=np.where(reached, table[lambda r: r.config.train.lr], np.nan),
        best_factor=np.where(reached, table[lambda r: r.settings["lr_factor"]], np.nan), ma=ma, fit=fit,
        seed_fits=seed_fits, per_seed=per_seed, b_noise=over(np.ones(len(seeds))), s_min=mean_ci(seed_fits[0]),
        small=small, large=large, small_slope=_slope(sizes, steps, small), large_slope=_slope(sizes, steps, large),
        noise=values, noise_cis={level: mean_ci(values[f"b_simple_{level}"]) for level in NOISE_LEVELS},
        ratio_b_simple=over(values["b_simple_half"]),
        ratio_ma=None if ma is None else over(np.full(len(seeds), ma["m_star"])),
        unfinished=(len(grid_points - finished), len(grid_points)))


def analyze(runs: list[Run], config: BatchSaturationConfig) -> BatchSaturationAnalysis | Missing:
    by = group(runs, lambda r: (r.settings["workload"], r.settings["kind"]))
    out = [_analyze_workload(w, by[w, "train"], by.get((w, "noise"), []), config) for w in config.workloads
           if (w, "train") in by]
    return BatchSaturationAnalysis(out) if out else Missing(TITLE, "No finished runs yet.")


# --- claims --------------------------------------------------------------------------------------


LABELS = {"linear": "least squares (linear model, noiseless teacher)", "mlp": "MLP on MNIST-1D"}
SLOPES = "per-seed least-squares slopes of log steps on log B, t-interval over seeds"


def _fit_method(a: WorkloadAnalysis) -> str:
    """How the B_noise intervals were made, in words (for the claims' statements)."""
    if not a.per_seed:
        return (f"most seeds reached fewer than {MIN_FIT_POINTS} batch sizes, so: the fit of the seed-mean curve, "
                "percentile interval over seed resamples")
    b, sizes = a.seed_fits[1], a.batch_sizes
    clipped = int(np.sum((b <= sizes.min() / B_NOISE_RANGE) | (b >= sizes.max() * B_NOISE_RANGE)))
    text = "S(B) fitted per seed to the batch sizes it reached; geometric mean of the per-seed ratios, log-t interval"
    return text + (f"; {clipped} seed(s) whose fit found B_noise beyond the batch sizes tried (∞ or 0) are carried "
                   f"at {B_NOISE_RANGE:g} times past that end" if clipped else "")


def _workload_claims(a: WorkloadAnalysis, config: BatchSaturationConfig,
                     paper: dict[str, Published] = PAPER_CLAIMS) -> list[Claim]:
    w, prefix, f = a.settings, f"{NAME}.{a.workload}.", config.regime_factor
    where = (f"{LABELS[a.workload]}, SGD (momentum 0) to train loss <= {w['target_loss']:g}, each B at its best LR "
             f"of a {len(w['lr_grid'])}-point grid")
    claims, slopes = [], {"perfect_scaling": ("Perfect scaling below", f"B <= B_noise/{f:g}", a.small, a.small_slope),
                          "saturation": ("Saturation above", f"B >= {f:g}·B_noise", a.large, a.large_slope)}
    for key, (what, side, mask, slope) in slopes.items():
        sizes = [int(b) for b in a.batch_sizes[mask]]
        claims.append(Claim.judged(
            prefix + key, NAME, f"{what} the critical batch size ({where}): the log-log slope of steps-to-target vs B "
            f"over {side} (B in {sizes}, the range fixed by the fit of the seed-mean curve) is "
            f"{paper[key].direction.describe()} ({SLOPES}).", paper[key], slope, details={"batch_sizes": sizes}))
    claims.append(Claim.judged(
        prefix + "b_noise_vs_b_simple", NAME,
        f"The fitted B_noise of S = S_min(1 + B_noise/B) ({where}) agrees with the simple gradient noise scale "
        f"B_simple = tr(Σ)/|G|² measured halfway to the target within an order of magnitude: B_noise/B_simple "
        f"{paper['b_noise_vs_b_simple'].direction.describe()} ({_fit_method(a)}).", paper["b_noise_vs_b_simple"],
        a.ratio_b_simple))
    if a.ratio_ma is not None:
        claims.append(Claim.judged(
            prefix + "b_noise_vs_ma", NAME,
            f"The fitted B_noise ({where}) is of the order of Ma et al.'s critical mini-batch size m* = β/λ_1 = "
            f"{a.ma['m_star']:.4g} (β = max|x_i|², λ_1 = top eigenvalue of XᵀX/n): B_noise/m* within half a decade, "
            f"{paper['b_noise_vs_ma'].direction.describe()} ({_fit_method(a)}).", paper["b_noise_vs_ma"], a.ratio_ma,
            details={"m_star": a.ma["m_star"]}))
    return claims


def claims(analysis: BatchSaturationAnalysis, config: BatchSaturationConfig) -> list[Claim]:
    return [c for a in analysis.workloads for c in _workload_claims(a, config)]


# --- report --------------------------------------------------------------------------------------


TITLE = "batch_saturation: steps to a target loss vs batch size (critical batch size)"
INTRO = ("Per workload and batch size B: SGD with momentum 0 and a constant LR at every LR of the grid, for every "
         "seed; steps to target = the first evaluated step (every eval_every(B) steps, table: an upper bound by less "
         "than that) with training loss (whole training set) <= target, minimized over the LR grid; mean over the "
         "seeds that reached it, with a 95% t-interval. Runs with no finished result (diverged, or not run yet) count "
         "as not reaching the target. The fit of the seed-mean curve (table, figure, slope ranges) and the slopes use "
         "the batch sizes where every seed reached the target; B_noise and S_min are also fitted per seed, with "
         "intervals over those per-seed fits.")


def render(analysis: BatchSaturationAnalysis, claims: list[Claim], config: BatchSaturationConfig) -> list[Section]:
    parts = [INTRO]
    for a in analysis.workloads:
        w = a.settings
        rule = ("multiples " + ", ".join(f"{v:g}" for v in w["lr_grid"]) + " of Ma et al.'s η*(B) (halved for "
                "the mean-of-squares loss)" if w["lr_rule"] == "ma" else
                "the same grid " + ", ".join(f"{v:g}" for v in w["lr_grid"]) + " at every B")
        parts += [f"**{LABELS[a.workload]}** — data {w['data']}, model {w['model']}, loss {w['loss']}, target train "
                  f"loss {w['target_loss']:g}; LRs: {rule}.", _table(a),
                  f"Simple gradient noise scale along the run at B = {w['noise_batch_size']} (per-example gradients "
                  f"over the whole training set):", _noise_table(a), _reading(a, config)]
    title = "steps to a target training loss vs batch size, each B at its best LR: perfect scaling, then saturation"
    figures = [(f"{NAME}_steps", _figure(analysis.workloads, _steps_panel, 6.8, 5.0, title)),
               (f"{NAME}_learning_rates", _figure(analysis.workloads, _lr_panel, 6.4, 4.4))]
    return [Section(TITLE, "\n\n".join(parts), figures, claims)]


def _table(a: WorkloadAnalysis) -> str:
    with quiet():  # a batch size's budget and evaluation interval (the same for every seed)
        budgets, every = (np.nanmax(a.table[lambda r, k=k: getattr(r.config.train, k)], axis=0).astype(int)
                          for k in ("steps", "eval_every"))
    body = []
    for j, b in enumerate(a.batch_sizes.astype(int)):
        column, reached = a.steps[:, j], int(np.isfinite(a.steps[:, j]).sum())
        grid_lrs, best = learning_rates(a.settings, int(b), a.ma), a.best_lr[:, j]  # best: NaN where not reached
        best = ", ".join(common.fmt(v, 3) for v in sorted(set(best[np.isfinite(best)].tolist()))) or "n/a"
        fitted = common.fmt(float(a.fit.steps(np.array([b]))[0]), 3) if a.fit is not None else "n/a"
        region = "small" if a.small[j] else ("large" if a.large[j] else "")
        body.append([b, f"{budgets[j]} / {every[j]}", f"{common.fmt(grid_lrs[0], 3)} – {common.fmt(grid_lrs[-1], 3)}",
                     f"{reached}/{len(column)}", common.ci_text(mean_ci(column), 3) if reached else "not reached",
                     best, fitted, region])
    return common.table(["B", "budget / eval every", "LR grid", "reached", "steps to target", "best LR(s)",
                         "fitted S(B)", "slope range"], body)


def _noise_table(a: WorkloadAnalysis) -> str:
    names = {"start": "step 0", "half": "halfway (loss <= sqrt(L_0·target))", "target": "at the target"}
    body = []
    for level in NOISE_LEVELS:
        steps, losses = a.noise[f"step_{level}"], a.noise[f"loss_{level}"]
        measured = int(np.isfinite(steps).sum())
        body.append([names[level], f"{measured}/{len(steps)}"] + ([
            common.fmt(float(np.nanmean(steps)), 4), common.fmt(float(np.nanmean(losses)), 3),
            common.ci_text(a.noise_cis[level], 3)] if measured else ["n/a"] * 3))
    return common.table(["where", "measured", "step (mean)", "train loss (mean)", "B_simple [95% CI]"], body)


def _reading(a: WorkloadAnalysis, config: BatchSaturationConfig) -> str:
    unreached = [int(b) for b, ok in zip(a.batch_sizes, a.used) if not ok]
    if a.fit is None:
        return (f"Fewer than two batch sizes had every seed reach the target loss {a.settings['target_loss']:g}, so "
                f"no curve was fitted (not reached at B = {unreached}).")
    left_out = (f" Left out of the fits (some seed never reached the target within the budget): B = {unreached}."
                if unreached else "")
    return _fit_text(a, config) + _noise_text(a) + _ma_and_grid_text(a) + left_out


def _fit_text(a: WorkloadAnalysis, config: BatchSaturationConfig) -> str:
    """The fits (mean curve and per seed), and the slope the fitted form itself has below B_noise."""
    fit, f, text = a.fit, config.regime_factor, ""
    if not 0 < fit.b_noise < math.inf:
        where = "above the largest" if fit.b_noise == math.inf else "below the smallest"
        text = (f"The fit of the seed-mean curve finds B_noise {where} batch size tried (the steps "
                + ("still fall as 1/B at the largest B" if fit.b_noise == math.inf else "do not fall with B")
                + f"); a seed whose fit does so is carried at {common.fmt(B_NOISE_RANGE, 2)} times beyond that end. ")
    text += (
        f"The fit S(B) = S_min(1 + B_noise/B) to the mean steps over {len(a.table.seeds)} seeds at "
        f"{int(a.used.sum())} batch sizes gives S_min = {common.fmt(fit.s_min, 3)} steps and B_noise = B_crit = "
        f"{common.fmt(fit.b_noise, 3)} (root-mean-square relative residual {common.fmt(fit.residual, 2)}); fitted "
        f"per seed ({int(np.isfinite(a.seed_fits[1]).sum())} seeds), S_min = {common.ci_text(a.s_min, 3)} (t) and "
        f"B_noise = {common.ci_text(a.b_noise, 3)} ({a.b_noise.method}).")
    if a.small.sum() >= 2:
        implied = np.polyfit(np.log(a.batch_sizes[a.small]), np.log(fit.steps(a.batch_sizes[a.small])), 1)[0]
        text += (f" Below B_noise/{f:g} the fitted form itself is no pure 1/B: its slope there is "
                 f"{common.fmt(implied, 3)} (local slope −B_noise/(B + B_noise), {common.fmt(-f / (f + 1), 2)} at "
                 f"B = B_noise/{f:g}), which is why perfect scaling is judged on a band around −1.")
    return text


def _noise_text(a: WorkloadAnalysis) -> str:
    """How B_simple moves along training (table above), and the caveats of the fit's form."""
    fit, data, text = a.fit, a.settings["data"], ""
    with quiet():
        start, target = np.nanmean(a.noise["b_simple_start"]), np.nanmean(a.noise["b_simple_target"])
    if math.isfinite(start) and math.isfinite(target) and max(start, target) > 1.5 * min(start, target):
        text += (f" B_simple changed by a factor {common.fmt(target / start, 3)} between step 0 and the target (the "
                 f"noise scale grows as the loss falls, as McCandlish et al. observe), so the comparison depends on "
                 f"where it is measured: B_noise/B_simple is {common.fmt(fit.b_noise / start, 3)} against step 0 and "
                 f"{common.fmt(fit.b_noise / target, 3)} against the target (mean-curve fit, point estimates).")
    if data["name"] == "linear_regression" and "p" in data:
        text += (f" For x ~ N(0, I_p) the population B_simple of least squares is p + 1 = {data['p'] + 1} "
                 f"whatever the error e = w − w* (per-example gradient x xᵀe, up to the loss's factor 2: "
                 f"E|g|² = (p + 2)|e|², |G|² = |e|²), which is why it hardly moves along training here.")
    if fit.s_min < 20:
        text += (f" Note that S_min is only {common.fmt(fit.s_min, 3)} steps: each large-batch step removes much of "
                 f"the remaining loss, while McCandlish et al.'s form assumes many steps of small relative progress; "
                 f"with a per-step loss contraction ρ the count is log(L_0/target)/log(1/ρ), which bends the curve "
                 f"away from that form near saturation.")
    return text


def _ma_and_grid_text(a: WorkloadAnalysis) -> str:
    """Ma et al.'s constants (linear) and where the best LRs sit in the grid."""
    ma, text = a.ma, ""
    if a.ratio_ma is not None:
        text = (f" Ma et al.'s constants of this design: β = {common.fmt(ma['beta'], 4)}, λ_1 = "
                f"{common.fmt(ma['lambda_1'], 4)}. Their η*(B) comes from an upper bound on the per-step "
                f"contraction and is conservative: the best grid factor (× η*) was "
                + ", ".join(f"{common.fmt(v, 3)} at {int((a.best_factor == v).sum())}"
                            for v in a.settings["lr_grid"] if (a.best_factor == v).any())
                + " (B, seed) pairs. Their analysis samples batches with replacement; the training loop draws "
                  "them without replacement within an epoch (less noise at large B, exact full-batch steps at "
                  "B = n).")
    grid_lrs, edge = a.settings["lr_grid"], np.isfinite(a.best_factor)
    at_edge = (np.isclose(a.best_factor, grid_lrs[0]) & edge, np.isclose(a.best_factor, grid_lrs[-1]) & edge)
    return text + (
        f" The best LR was the grid's smallest at {int(at_edge[0].sum())} and its largest at {int(at_edge[1].sum())} "
        f"of {int(edge.sum())} (B, seed) pairs that reached the target"
        + ("; where it sits at an edge, a wider grid could lower that B's steps." if (at_edge[0] | at_edge[1]).any()
           else ", so the grid brackets every optimum.")
        + f" {a.unfinished[0]} of {a.unfinished[1]} runs of the grid have no finished result.")


def _figure(analyses: list[WorkloadAnalysis], panel, width: float, height: float, title: str | None = None):
    """One panel per workload, side by side."""
    from overparam.report.figures import new_figure

    fig, axes = new_figure(1, len(analyses), width=width * len(analyses), height=height, squeeze=False)
    for ax, a in zip(axes[0], analyses):
        panel(ax, a)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def _steps_panel(ax, a: WorkloadAnalysis) -> None:
    """Steps to target vs B: each seed, the mean with its CI, the fit and the critical batch sizes (B_noise
    of the mean-curve fit, B_simple halfway, Ma et al.'s m*)."""
    from overparam.report.figures import errorbar_cis, log2_axis

    fit, used, sizes = a.fit, a.used, a.batch_sizes
    ax.plot(np.tile(sizes, len(a.steps)), a.steps.ravel(), linestyle="none", marker=".", color="0.6", markersize=5,
            zorder=2, label="each seed")
    if used.any():
        errorbar_cis(ax, sizes[used], [mean_ci(a.steps[:, j]) for j in np.flatnonzero(used)],
                     "mean steps to target (best LR)", len(a.table.seeds), color="black", legend=False)
    if fit is not None:
        grid_b = np.geomspace(sizes.min(), sizes.max(), 200)
        ax.plot(grid_b, fit.steps(grid_b), color="tab:blue", linewidth=1.8, zorder=1,
                label=f"fit S_min(1 + B_noise/B), S_min = {common.fmt(fit.s_min, 3)}")
        if math.isfinite(fit.b_noise):
            small = grid_b[grid_b <= fit.b_noise]
            ax.plot(small, fit.e_min / small, linestyle=":", color="tab:blue", linewidth=1.3,
                    label="perfect scaling E_min/B (slope −1)")
        ax.axhline(fit.s_min, linestyle=":", color="tab:blue", linewidth=1.0)
    b_noise = (fit.b_noise if fit is not None else math.nan, a.b_noise[1], a.b_noise[2])  # band: per-seed fits
    marks = [("B_noise (fit of the mean curve)", b_noise, "tab:blue"),
             ("B_simple halfway", a.noise_cis["half"], "tab:green")]
    marks += [("Ma et al. m* = β/λ_1", (a.ma["m_star"], math.nan, math.nan), "tab:red")] if a.ma is not None else []
    for label, ci, colour in marks:  # lines at the estimates, bands over their 95% intervals
        if math.isfinite(ci[0]):
            ax.axvline(ci[0], color=colour, linestyle="--", linewidth=1.3,
                       label=f"{label} = {common.fmt(ci[0], 3)}" + (" (band: 95% CI)" if math.isfinite(ci[1]) else ""))
        if math.isfinite(ci[1]) and math.isfinite(ci[2]):
            ax.axvspan(max(ci[1], sizes.min() / 2), ci[2], color=colour, alpha=0.12, linewidth=0)
    ax.set_yscale("log")
    finite_steps = a.steps[np.isfinite(a.steps)]
    if finite_steps.size:
        low = min(finite_steps.min(), fit.s_min) if fit is not None and fit.s_min > 0 else finite_steps.min()
        ax.set_ylim(0.6 * low, 1.8 * finite_steps.max())
    missing = sizes[~used]
    if missing.size:
        ax.plot(missing, [ax.get_ylim()[1] / 1.15] * missing.size, linestyle="none", marker="x", color="tab:red",
                label="not reached by every seed")
    log2_axis(ax, sizes)
    ax.set_xlim(sizes.min() / 1.4, sizes.max() * 1.4)
    ax.set(xlabel="batch size B", ylabel=f"steps to train loss <= {a.settings['target_loss']:g}")
    ax.set_title(LABELS[a.workload], fontsize=10)
    ax.legend(fontsize=7.5, loc="upper right", framealpha=0.85, edgecolor="none")


def _lr_panel(ax, a: WorkloadAnalysis) -> None:
    """The LR grid at each B, each seed's best LR and (linear) Ma et al.'s η*(B)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from overparam.report.figures import log2_axis

    sizes, seeds = [int(b) for b in a.batch_sizes], len(a.table.seeds)
    lrs = {b: learning_rates(a.settings, b, a.ma) for b in sizes}
    ax.plot([b for b in sizes for _ in lrs[b]], [lr for b in sizes for lr in lrs[b]], linestyle="none",
            marker="_", markersize=12, color="0.55", label="LR grid")
    for i, offset in enumerate(np.linspace(-0.08, 0.08, seeds)):  # seeds side by side (log2 units)
        ax.plot(a.batch_sizes * 2 ** offset, a.best_lr[i], linestyle="none", marker="o", markersize=4,
                color="tab:purple", label=f"best LR, each of {seeds} seeds" if i == 0 else None)
    if a.ma is not None:
        grid_b = np.geomspace(min(sizes), max(sizes), 200)
        ax.plot(grid_b, grid_b / (a.ma["beta"] + (grid_b - 1) * a.ma["lambda_1"]) / 2, color="tab:red",
                linewidth=1.2, label="Ma et al. η*(B), halved for the mean-of-squares loss")
    ax.set_yscale("log")
    if a.settings["lr_rule"] == "fixed":
        ax.set_yticks(a.settings["lr_grid"])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    log2_axis(ax, sizes)
    ax.set(xlabel="batch size B", ylabel="learning rate")
    ax.set_title(f"{LABELS[a.workload]}: the LR that reached the target first", fontsize=10)
    ax.legend(fontsize=8, framealpha=0.9, edgecolor="none")


_TINY_LINEAR = {"data": {"name": "linear_regression", "n_train": 256, "n_test": 16, "p": 8, "seed": 0},
                "batch_sizes": [2, 4, 8, 16, 32, 64, 128, 256], "target_loss": 1e-3, "lr_grid": [1.0, 1.41],
                "budget_epochs": 0.5, "budget_steps": 20, "noise_batch_size": 4}
_TINY_MLP = {"data": {"name": "mnist1d", "n_train": 200, "n_test": 20, "seed": 0}, "target_loss": 2.1,
             "model": {"name": "mlp", "width": 16, "depth": 1}, "batch_sizes": [8, 32, 128], "lr_grid": [0.5, 2.0],
             "budget_epochs": 2.0, "budget_steps": 20, "evals": 10, "noise_batch_size": 32}

STUDY = Study(
    name=NAME,
    description="steps to a target loss vs batch size at the best LR per B: perfect scaling, saturation, and the "
                "critical batch from the fit, the gradient noise scale and Ma et al.'s m*",
    config_type=BatchSaturationConfig,
    grid=grid,
    run_one=run_one,
    run_batch=common.batched(_measure),
    batch_key=batch_key,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"linear": _TINY_LINEAR, "mlp": _TINY_MLP, "seeds": 3},
        "quick": {"linear": WORKLOAD_DEFAULTS["linear"], "mlp": WORKLOAD_DEFAULTS["mlp"], "seeds": 5},
        "paper": {"linear": {"data": {"name": "linear_regression", "n_train": 16384, "n_test": 1000, "p": 256,
                                      "seed": 0}, "batch_sizes": [2 ** k for k in range(15)], "target_loss": 1e-8,
                             "budget_epochs": 1.0, "budget_steps": 100, "noise_batch_size": 16},
                  "mlp": {"data": {"name": "mnist", "seed": 0, "standardize": True}, "target_loss": 0.1,
                          "model": {"name": "mlp", "width": 512, "depth": 2},
                          "batch_sizes": [2 ** k for k in range(3, 15)],
                          "lr_grid": [2.0 ** k for k in range(-5, 2)], "budget_epochs": 20.0, "budget_steps": 1000,
                          "evals": 200, "noise_batch_size": 128}, "seeds": 5},
    },
)
