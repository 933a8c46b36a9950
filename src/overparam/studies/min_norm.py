"""``min_norm``: gradient descent from zero on over-parameterized linear regression converges to
the minimum-ℓ2-norm interpolant; controls that break the theorem; linear double descent.

Problem (one trial = one seed): the project's ``linear_regression`` source (x ~ N(0, I_p),
w* ~ N(0, I_p / p), y = X w* + noise_std · ε), n examples, p > n features, float64 throughout
(the 0.1% claim is about convergence; float32 rounding would dominate it). Loss
L(w) = ||X w − y||² / (2n), gradient X^T (X w − y) / n. The interpolants form an affine space of
dimension p − n; the minimum-norm one is w_mn = X^T (X X^T)^{-1} y (:mod:`overparam.references.linear`).

Methods, each stopped by :func:`iterate` at relative residual ``residual_tol`` or after ``max_steps``
passes over the data (a GD or Adam step, or a coordinate sweep, is one pass, ~2np flops):

- ``gd_zero``: full-batch GD from w = 0 with step η = step_fraction · 2 / λ_max(X^T X / n)
  (stable for step_fraction < 1; 0.5 gives η = 1 / λ_max). Every gradient lies in row(X), so
  the iterates stay there and the limit is w_mn: the theorem.
- ``gd_init`` (control): the same GD from w0 ~ N(0, init_scale² I_p / p). The null-space part
  of w0 never moves, so GD converges to the interpolant nearest w0,
  w0 + X^+ (y − X w0), at relative distance ||P_null w0|| / ||w_mn|| from w_mn.
- ``adam`` (control): Adam from 0 at ``adam_lr``; its per-coordinate normalization makes the steps
  leave row(X), so it converges (when it does) to an interpolant with a non-zero null-space part.
- ``coordinate`` (control): cyclic exact coordinate descent from 0, a sweep being one Gauss-Seidel
  step (:func:`coordinate_update`; O(p²) per sweep after forming X^T X in O(n p²)). It reaches an
  interpolant (Gauss-Seidel converges on consistent PSD systems), but its updates are not in row(X):
  the null-space part it accumulates is never removed, and the limit depends on the coordinate order
  (randomized Kaczmarz, a row-action method, would stay in row(X)).

Measured per method (:class:`Convergence`): the distance to w_mn, its null-space part
||w − X^+ X w|| / ||w_mn|| (what fitting cannot remove), the residual, the passes and the distance
along the way; the ridge path at each of ``ridge_lambdas`` (exact, by SVD).

Linear double descent (data seed derive_seed(seed, 'min_norm', 'double_descent'): independent of
the convergence part): one teacher over D = max p features, w* ~ N(0, I_D / D) (E||w*||² = 1),
label noise N(0, noise_std²); the student with p features uses the first p columns and is
w_p = X_p^+ y (the minimum-norm interpolant for p > n, least squares for p < n). Its test error is
the exact population risk for a fresh (x, y): R = noise_std² + ||w* − (w_p, 0)||² (x isotropic; no
test sample needed). The unseen features act as extra noise of variance ||w*_{>p}||², so the
expected risk given the teacher is σ_eff² + isotropic_min_norm_risk(n, p, ||w*_{≤p}||², σ_eff²)
with σ_eff² = noise_std² + ||w*_{>p}||², infinite for |p − n| <= 1: the peak (the "theory" line).

Claims (statements in :func:`claims`, published sides in :func:`paper_claims`; trials are the seeds):
GD from zero reaches w_mn, the three controls do not (GD from w0 reaches its nearest interpolant),
ridge tends to w_mn linearly in λ, and the risk peaks at p = n.

Cost: a convergence trial is O(n p²) (forming X^T X once) plus O(n p) per pass; a double-descent
trial is one SVD-based solve per p. Everything runs on the CPU whatever the device (these are
small dense float64 problems; LAPACK's ``gelsd`` has no CUDA version).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from overparam.analysis import Missing, Run, SeedTable, mean_ci, paired_ratio, quiet
from overparam.errors import ConfigError, as_tuple, check_number, check_numbers, check_positive_int
from overparam.references.linear import isotropic_min_norm_risk, min_norm_interpolant, nearest_interpolant, ridge
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import EXPONENT, Published, above, below, between
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study, run_key

NAME = "min_norm"
F64 = torch.float64
METHODS = ("gd_zero", "gd_init", "adam", "coordinate")
LABELS = dict(zip(METHODS, ("GD from 0", "GD from w0 ≠ 0", "Adam from 0", "cyclic coordinate descent from 0")))
PARTS = ("convergence", "double_descent")


@dataclass(frozen=True)
class MinNormConfig:
    n: int = 100  # training examples (both parts)
    p: int = 1000  # features of the convergence part (> n)
    noise_std: float = 0.5  # label noise (both parts); ||w*||² ≈ 1
    seeds: int = 100  # convergence trials
    step_fraction: float = 0.5  # GD step = step_fraction · 2 / λ_max(X^T X / n)
    residual_tol: float = 1e-10  # stop when ||X w − y|| <= residual_tol · ||y||
    max_steps: int = 20000  # passes over the data at most, per method
    init_scale: float = 1.0  # non-zero init w0 ~ N(0, init_scale² I / p), ||w0|| ≈ init_scale
    adam_lr: float = 1e-3
    ridge_lambdas: tuple[float, ...] = (10.0, 1.0, 0.1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
    distance_tolerance: float = 1e-3  # "converges to w_mn": relative distance below this (paper 0.1%)
    control_threshold: float = 1e-2  # "clearly not w_mn": 10x the tolerance
    dd_ratios: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)  # p/n
    dd_seeds: int = 50  # double-descent trials

    def __post_init__(self) -> None:
        for name in ("n", "seeds", "dd_seeds", "max_steps"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("p (the theorem's over-parameterized regime: p > n)", self.p, minimum=self.n + 1)
        check_number("noise_std", self.noise_std, minimum=0.0)
        for name in ("step_fraction", "residual_tol"):
            check_number(name, getattr(self, name), minimum=0.0, maximum=1.0, open_low=True, open_high=True)
        for name in ("init_scale", "adam_lr", "distance_tolerance", "control_threshold"):
            check_number(name, getattr(self, name), minimum=0.0, open_low=True)
        check_numbers("ridge_lambdas (a rate is fitted on the smaller half)", self.ridge_lambdas, at_least=4,
                      minimum=0.0, open_low=True)
        ratios = check_numbers("dd_ratios", self.dd_ratios, at_least=3, minimum=0.0, open_low=True)
        ps = dd_features(self)
        if len(set(ps)) != len(ps) or min(ps) < 1 or not min(ratios) < 1 < max(ratios):
            raise ConfigError(f"dd_ratios (p/n) needs values giving distinct p = round(ratio·n) >= 1, some below 1 "
                              f"and some above (the peak at p = n lies inside); got {self.dd_ratios!r} (p = {ps})")


def dd_features(config: MinNormConfig) -> list[int]:
    """The student sizes p of the double-descent curve: round(ratio · n), in increasing order."""
    return sorted(round(r * config.n) for r in as_tuple(config.dd_ratios))


def grid(config: MinNormConfig) -> list[RunSpec]:
    """One run per convergence trial and one per double-descent trial; a run's seed draws its problem."""
    names = ("n", "p", "noise_std", "step_fraction", "residual_tol", "max_steps", "init_scale", "adam_lr")
    convergence = {"part": "convergence", **{k: getattr(config, k) for k in names},
                   "ridge_lambdas": [float(v) for v in as_tuple(config.ridge_lambdas)]}
    dd = {"part": "double_descent", "n": config.n, "noise_std": config.noise_std, "features": dd_features(config)}
    return ([RunSpec(run_key(NAME, convergence, s), convergence, s) for s in range(config.seeds)]
            + [RunSpec(run_key(NAME, dd, s), dd, s) for s in range(config.dd_seeds)])


# --- the methods ---------------------------------------------------------------------------------


def _gradient(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    return X.T @ (X @ w - y) / X.shape[0]


def _relative(w: Tensor, target: Tensor) -> float:
    return float((w - target).norm() / target.norm())


def _recorded(step: int) -> bool:
    """Steps 0..100, every 10th up to 1000, every 100th up to 10^4, ...: ~90 points per decade."""
    return step <= 100 or step % 10 ** (int(math.log10(step)) - 1) == 0


def iterate(update, w0: Tensor, X: Tensor, y: Tensor, residual_tol: float, max_steps: int,
            targets: dict[str, Tensor]) -> tuple[Tensor, int, dict[str, list[tuple[int, float]]]]:
    """Apply ``update(w) -> w`` until ||X w − y|| <= residual_tol · ||y|| or ``max_steps`` updates.
    Returns the last iterate, the number of updates and, per target, the relative distance
    ||w − target|| / ||target|| at the recorded steps (see :func:`_recorded`) and the last one."""
    w, step = w0, 0
    curves: dict[str, list[tuple[int, float]]] = {name: [] for name in targets}
    limit = residual_tol * float(y.norm())
    while True:
        done = not (float((X @ w - y).norm()) > limit and step < max_steps)
        if done or _recorded(step):
            for name, t in targets.items():
                curves[name].append((step, _relative(w, t)))
        if done:
            return w, step, curves
        w, step = update(w), step + 1


def gd_update(X: Tensor, y: Tensor, step_size: float):
    return lambda w: w - step_size * _gradient(X, y, w)


def adam_update(X: Tensor, y: Tensor, w0: Tensor, lr: float):
    """torch.optim.Adam on L(w) = ||X w − y||² / (2n) from ``w0`` (default betas and eps). The
    optimizer holds the iterate (and its moment estimates); ``update`` returns a copy of it."""
    param = torch.nn.Parameter(w0.clone())
    optimizer = torch.optim.Adam([param], lr=lr)

    def update(w: Tensor) -> Tensor:
        param.grad = _gradient(X, y, param.detach())
        optimizer.step()
        return param.detach().clone()

    return update


def coordinate_update(X: Tensor, y: Tensor):
    """One sweep of cyclic exact coordinate descent (j = 1..p in order), as the equivalent
    Gauss-Seidel step w + (D + L)^{-1} X^T (y − X w) with D + L the lower triangle of X^T X."""
    lower = torch.tril(X.T @ X)
    return lambda w: w + torch.linalg.solve_triangular(lower, (X.T @ (y - X @ w))[:, None], upper=False)[:, 0]


def null_part(X: Tensor, w: Tensor) -> Tensor:
    """w − X^+ X w: the component of w in null(X)."""
    return w - min_norm_interpolant(X, X @ w)


# --- one run -------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _provenance() -> dict[str, Any]:
    from overparam.provenance import provenance

    return provenance(torch.device("cpu"))


def _problem(n: int, p: int, noise_std: float, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    from overparam.data.synthetic import linear_regression

    split = linear_regression(n_train=n, n_test=1, p=p, noise_std=noise_std, seed=seed)
    return split.x_train, split.y_train, split.extras["w_star"]


def _convergence(params: dict[str, Any], seed: int) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    from overparam.seeding import generator

    n, p = params["n"], params["p"]
    X, y, _ = _problem(n, p, params["noise_std"], seed)
    w_mn = min_norm_interpolant(X, y)
    eigenvalues = torch.linalg.eigvalsh(X @ X.T / n)  # the non-zero spectrum of X^T X / n (rank n)
    step_size = params["step_fraction"] * 2.0 / float(eigenvalues[-1])
    w0 = params["init_scale"] / math.sqrt(p) * torch.randn(p, dtype=F64, generator=generator(seed, NAME, "init"))
    w_near = nearest_interpolant(X, y, w0)
    zero = torch.zeros(p, dtype=F64)
    runs = {"gd_zero": (gd_update(X, y, step_size), zero, {"gd_zero": w_mn}),
            "gd_init": (gd_update(X, y, step_size), w0, {"gd_init": w_mn, "gd_init_nearest": w_near}),
            "adam": (adam_update(X, y, zero, params["adam_lr"]), zero, {"adam": w_mn}),
            "coordinate": (coordinate_update(X, y), zero, {"coordinate": w_mn})}
    mn_norm = float(w_mn.norm())
    metrics: dict[str, Any] = {"lambda_max": float(eigenvalues[-1]), "lambda_min": float(eigenvalues[0]),
                               "step_size": step_size, "min_norm_norm": mn_norm,
                               "gd_init_predicted": float(null_part(X, w0).norm()) / mn_norm}
    curves: dict[str, list[tuple[int, float]]] = {}
    for method, (update, start, targets) in runs.items():
        w, steps, traces = iterate(update, start, X, y, params["residual_tol"], params["max_steps"], targets)
        residual = float((X @ w - y).norm() / y.norm())
        metrics.update({f"{method}_distance": _relative(w, w_mn), f"{method}_steps": steps,
                        f"{method}_residual": residual, f"{method}_converged": residual <= params["residual_tol"],
                        f"{method}_null": float(null_part(X, w).norm()) / mn_norm})
        curves.update(traces)
    metrics["gd_init_nearest_distance"] = curves["gd_init_nearest"][-1][1]
    path = ridge(X, y, [n * lam for lam in params["ridge_lambdas"]])  # (1/n)||Xw − y||² + λ||w||²
    metrics.update(ridge_lambdas=params["ridge_lambdas"], ridge_distance=[_relative(w, w_mn) for w in path])
    return metrics, curves


def _double_descent(params: dict[str, Any], seed: int) -> dict[str, Any]:
    from overparam.seeding import derive_seed

    n, features, sigma2 = params["n"], params["features"], params["noise_std"] ** 2
    X, y, w_star = _problem(n, max(features), params["noise_std"], derive_seed(seed, NAME, "double_descent"))
    risk, theory, residual = [], [], []
    for p in features:
        w = min_norm_interpolant(X[:, :p], y)
        unseen = float(w_star[p:].pow(2).sum())
        risk.append(sigma2 + float((w_star[:p] - w).pow(2).sum()) + unseen)
        effective_noise = sigma2 + unseen
        theory.append(effective_noise + isotropic_min_norm_risk(n, p, float(w_star[:p].pow(2).sum()), effective_noise))
        residual.append(float((X[:, :p] @ w - y).norm() / y.norm()))
    return {"dd_features": features, "dd_ratio": [p / n for p in features], "dd_risk": risk, "dd_theory": theory,
            "dd_train_residual": residual, "dd_null_risk": sigma2 + float(w_star.pow(2).sum()), "dd_noise": sigma2}


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    """One trial, on the CPU in float64 (``device`` is not used: see the module docstring)."""
    start = time.perf_counter()
    metrics, curves = (_convergence(spec.params, spec.seed) if spec.params["part"] == "convergence"
                       else (_double_descent(spec.params, spec.seed), {}))
    return RunOutcome("done", metrics, curves, time.perf_counter() - start, dict(_provenance()))


# --- analysis ------------------------------------------------------------------------------------

TITLE = "min_norm: gradient descent and the minimum-norm interpolant"
PEAK_CLAIM = f"{NAME}.double_descent_peak"


def hold_last(values: np.ndarray) -> np.ndarray:  # LAYER CANDIDATE
    """Curves (..., K) with every NaN replaced by the last value before it along the last axis:
    a run that stopped early stays where it stopped (leading NaNs stay NaN)."""
    index = np.where(np.isfinite(values), np.arange(values.shape[-1]), 0)
    np.maximum.accumulate(index, axis=-1, out=index)
    return np.take_along_axis(values, index, axis=-1)


@dataclass
class Convergence:
    """The convergence part over its T trials. Distances are relative to ||w_mn|| (for GD from w0's nearest
    interpolant, to that interpolant's norm); CIs are means over trials with 95% Student-t intervals."""

    trials: int  # T
    cis: dict[str, CI]  # <method>_distance, <method>_null, gd_init_nearest_distance, gd_init_predicted (||P_null w0||)
    medians: dict[str, float]  # over trials: <method>_residual, <method>_steps (passes), condition (cond(X Xᵀ))
    converged: dict[str, int]  # per method: trials that reached the residual tolerance
    lambdas: np.ndarray  # (L,) the ridge λ grid, in the configured order
    ridge: list[CI]  # (L,) ||w_λ − w_mn|| / ||w_mn|| per λ
    small: np.ndarray  # indices into ``lambdas`` of the smaller half of the grid
    slope: CI  # log-log slope of the ridge distance on λ over ``small``, per trial, t over trials
    traces: dict[str, tuple[np.ndarray, np.ndarray]]  # curve -> (passes (K,), distance (T, K)), held when stopped


@dataclass
class DoubleDescent:
    """The double-descent part over its T trials (risks are exact population risks)."""

    features: np.ndarray  # (P,) student sizes p, increasing
    ratios: np.ndarray  # (P,) p / n
    risk: np.ndarray  # (T, P) test risk per trial and p
    cis: list[CI]  # (P,) mean test risk over trials, 95% t-interval
    median: np.ndarray  # (P,) median test risk over trials (the risk is heavy-tailed near p = n)
    theory: np.ndarray  # (P,) mean over trials of E[risk | teacher]; NaN where infinite (|p − n| <= 1)
    peak: int  # index of the p/n nearest 1
    ratio: CI  # risk at the peak / the larger risk at the two ends: geometric mean of per-trial ratios, log-t
    noise: float  # label-noise variance σ²
    null: CI  # risk of the null predictor w = 0 (σ² + ||w*||²)


@dataclass
class MinNormAnalysis:
    """The two parts of the study, each over its finished trials of this configuration."""

    convergence: Convergence | None  # None when no convergence trial finished
    double_descent: DoubleDescent | None  # None when no double-descent trial finished


def analyze(runs: list[Run], config: MinNormConfig) -> MinNormAnalysis | Missing:
    current = {s.key for s in grid(config)}  # a store may also hold runs of other configs
    parts = {part: [r for r in runs if r.key in current and r.settings["part"] == part] for part in PARTS}
    if not any(parts.values()):
        return Missing(TITLE, "No finished runs yet.")
    return MinNormAnalysis(_convergence_analysis(parts["convergence"]) if parts["convergence"] else None,
                           _double_descent_analysis(parts["double_descent"]) if parts["double_descent"] else None)


def _convergence_analysis(runs: list[Run]) -> Convergence:
    from overparam.report.stats import seed_slope_ci

    table = SeedTable(runs)
    values = functools.partial(table.at, value=None)  # (T,), or (T, K) for a list-valued metric
    lambdas = np.asarray(runs[0].settings["ridge_lambdas"], dtype=float)
    ridge = values("ridge_distance")  # (T, L)
    small = np.argsort(lambdas)[: len(lambdas) // 2]
    means = [f"{m}_{k}" for m in METHODS for k in ("distance", "null")] + ["gd_init_nearest_distance",
                                                                           "gd_init_predicted"]
    with quiet():
        medians = {f"{m}_{k}": float(np.nanmedian(values(f"{m}_{k}"))) for m in METHODS for k in ("residual", "steps")}
        medians["condition"] = float(np.nanmedian(values("lambda_max") / values("lambda_min")))
    traces = {name: table.curve(name) for name in METHODS + ("gd_init_nearest",)}
    traces = {name: (steps, hold_last(curves[:, 0])) for name, (steps, curves) in traces.items()}
    return Convergence(len(runs), {name: mean_ci(values(name)) for name in means}, medians,
                       {m: sum(bool(r.metrics[f"{m}_converged"]) for r in runs) for m in METHODS}, lambdas,
                       [mean_ci(column) for column in ridge.T], small, seed_slope_ci(lambdas[small], ridge[:, small]),
                       traces)


def _double_descent_analysis(runs: list[Run]) -> DoubleDescent:
    table = SeedTable(runs)
    features = np.asarray(runs[0].settings["features"])
    ratios, risk = features / runs[0].settings["n"], table["dd_risk"][:, 0]  # risk: (T, P)
    peak = int(np.argmin(np.abs(ratios - 1.0)))
    with quiet():
        median, theory = np.nanmedian(risk, axis=0), np.nanmean(table["dd_theory"][:, 0], axis=0)
    return DoubleDescent(features, ratios, risk, [mean_ci(column) for column in risk.T], median, theory, peak,
                         paired_ratio(risk[:, peak], np.maximum(risk[:, 0], risk[:, -1])),
                         float(np.nanmean(table["dd_noise"])), mean_ci(table["dd_null_risk"][:, 0]))


# --- claims --------------------------------------------------------------------------------------


def paper_claims(config: MinNormConfig) -> dict[str, Published]:
    """The published side of each claim. The bounds are the config's ``distance_tolerance`` (the
    paper's 0.1% by default) and ``control_threshold`` (10x that), fixed before any run."""
    reaches, misses = below(config.distance_tolerance), above(config.control_threshold)
    nearest = "a non-zero init converges to the interpolant nearest the init"
    return {
        "gd_zero_reaches_min_norm": Published("< 0.1% relative distance over 100 trials (p = 1000, n = 100)",
                                              f"{common.PAPER}, mathematical analysis", reaches),
        "nonzero_init_not_min_norm": Published(nearest, "theory", misses),
        "nonzero_init_nearest_interpolant": Published(nearest, "theory", reaches),
        "adam_not_min_norm": Published("Adam does not find the minimum-norm solution", "theory", misses),
        "coordinate_not_min_norm": Published("coordinate-wise methods break the theorem", "theory", misses),
        "ridge_limit": Published("ridge → minimum-norm interpolant as λ → 0", "theory", reaches),
        "ridge_rate": Published("||w_λ − w_mn|| = O(λ) (theory)", "theory (ridge path near λ = 0)",
                                between(0.9, 1.1), 1.0, "", EXPONENT),
        "double_descent_peak": Published("test error peaks at p = n (linear double descent)",
                                         "theory (linear double descent)", above(1.0)),
    }


PAPER_CLAIMS = paper_claims(MinNormConfig())  # with the default (the paper's) bounds


def claims(a: MinNormAnalysis, config: MinNormConfig) -> list[Claim]:
    c, d, tol, threshold = a.convergence, a.double_descent, config.distance_tolerance, config.control_threshold
    statements = {} if c is None else {
        "gd_zero_reaches_min_norm": (
            f"GD from zero converges to the minimum-norm interpolant X^T(XX^T)^-1 y: mean relative distance "
            f"||w − w_mn|| / ||w_mn|| < {tol:g} (p = {config.p}, n = {config.n}).", c.cis["gd_zero_distance"]),
        "nonzero_init_not_min_norm": (
            f"Control: GD from w0 ~ N(0, {config.init_scale:g}² I/p) does not reach w_mn: mean relative distance "
            f"> {threshold:g} (10x the tolerance).", c.cis["gd_init_distance"]),
        "nonzero_init_nearest_interpolant": (
            f"Control: GD from w0 converges to the interpolant nearest w0, w0 + X^+(y − X w0): mean relative "
            f"distance < {tol:g}.", c.cis["gd_init_nearest_distance"]),
        "adam_not_min_norm": (
            f"Control: Adam from zero (lr {config.adam_lr:g}) does not reach w_mn: mean relative distance "
            f"> {threshold:g}.", c.cis["adam_distance"]),
        "coordinate_not_min_norm": (
            f"Control: cyclic exact coordinate descent from zero does not reach w_mn: mean relative distance "
            f"> {threshold:g}.", c.cis["coordinate_distance"]),
        "ridge_limit": (
            f"Ridge regression tends to w_mn as λ → 0: mean relative distance at the smallest λ = "
            f"{c.lambdas.min():g} < {tol:g}.", c.ridge[int(np.argmin(c.lambdas))]),
        "ridge_rate": (
            f"The ridge path approaches w_mn linearly in λ: log-log slope of the distance over the smaller half of "
            f"the λ grid ({c.lambdas[c.small].min():g} .. {c.lambdas[c.small].max():g}), fitted per trial, in "
            f"[0.9, 1.1].", c.slope),
    }
    if d is not None:
        statements["double_descent_peak"] = (
            f"Linear double descent: the minimum-norm interpolant's test risk at p/n = {d.ratios[d.peak]:g} exceeds "
            f"both ends of the curve (p/n = {d.ratios[0]:g} and {d.ratios[-1]:g}): risk(peak) / max(risk(ends)) per "
            f"trial, geometric mean over trials, > 1.", d.ratio)
    paper = paper_claims(config)
    return [Claim.judged(f"{NAME}.{name}", NAME, statement, paper[name], interval)
            for name, (statement, interval) in statements.items()]


# --- report --------------------------------------------------------------------------------------


def render(a: MinNormAnalysis, claims: list[Claim], config: MinNormConfig) -> list[Section]:
    c, d, sections = a.convergence, a.double_descent, []
    if c is not None:
        figures = [("min_norm_convergence", _convergence_figure(c, config.distance_tolerance)),
                   ("min_norm_ridge_path", _ridge_figure(c))]
        sections.append(Section("min_norm: gradient descent from zero finds the minimum-norm interpolant",
                                _convergence_text(c, config), figures, [x for x in claims if x.id != PEAK_CLAIM]))
    if d is not None:
        figures = [("min_norm_double_descent", _double_descent_figure(d))]
        sections.append(Section("min_norm: linear double descent of the minimum-norm interpolant",
                                _double_descent_text(d, config.n), figures, [x for x in claims if x.id == PEAK_CLAIM]))
    return sections


def _convergence_text(c: Convergence, config: MinNormConfig) -> str:
    ci = common.ci_text
    method_table = common.table(
        ["method", "n", "rel. distance to w_mn", "null-space part", "rel. residual", "passes (median)", "converged"],
        [[LABELS[m], c.trials, ci(c.cis[f"{m}_distance"]), ci(c.cis[f"{m}_null"]),
          common.fmt(c.medians[f"{m}_residual"], 3), int(c.medians[f"{m}_steps"]), f"{c.converged[m]}/{c.trials}"]
         for m in METHODS])
    ridge_table = common.table(["λ", "rel. distance to w_mn (mean, 95% t-interval)"],
                               [[f"{lam:g}", ci(interval)] for lam, interval in zip(c.lambdas, c.ridge)])
    share = {m: c.cis[f"{m}_null"][0] / c.cis[f"{m}_distance"][0] for m in ("adam", "coordinate")}
    margin = min(c.cis[f"{m}_distance"][1] for m in ("gd_init", "adam", "coordinate")) / config.control_threshold
    unconverged = [LABELS[m] for m in METHODS if c.converged[m] < c.trials]
    return (
        f"Gaussian design, p = {config.p}, n = {config.n}, noise std {config.noise_std:g}, float64; {c.trials} "
        f"trials; GD step {config.step_fraction:g} · 2/λ_max(XᵀX/n); every method stops at relative residual "
        f"{config.residual_tol:g} or {config.max_steps} passes. Means over trials with 95% Student-t intervals."
        f"\n\n{method_table}\n\nRidge path (ridge of (1/n)||Xw − y||² + λ||w||²):\n\n{ridge_table}\n\n"
        "The null-space part is what fitting cannot remove (an interpolant w has ||w||² = ||w_mn||² + "
        "||P_null w||²): GD from zero keeps it at rounding level when its iterates stay in the row space; from a "
        f"random w0 it should equal that of w0, {ci(c.cis['gd_init_predicted'], 3)} predicted; for Adam and cyclic "
        f"coordinate descent it is {share['adam']:.1%} and {share['coordinate']:.1%} of the distance (means): what "
        f"their updates put into null(X), not an unfinished fit. cond(XXᵀ) over trials had median "
        f"{c.medians['condition']:.3g}, which sets GD's number of passes. The lowest CI bound of the three controls "
        f"is {margin:.3g}x the 'clearly does not' threshold. Adam's distance depends on its learning rate and ε (one "
        f"setting, lr {config.adam_lr:g}, was run)."
        + (f" Not every trial reached the residual tolerance within {config.max_steps} passes: "
           f"{', '.join(unconverged)} (see the converged column)." if unconverged else ""))


def _convergence_figure(c: Convergence, tolerance: float):
    from overparam.report.figures import new_figure

    fig, ax = new_figure(width=8.0, height=5.0)
    colors = dict(zip(METHODS, ("tab:blue", "tab:orange", "tab:green", "tab:red")), gd_init_nearest="tab:orange")
    labels = {**LABELS, "gd_init_nearest": "GD from w0: distance to its nearest interpolant"}
    for name, (steps, matrix) in c.traces.items():
        with quiet():
            low, median, high = np.nanquantile(matrix, [0.05, 0.5, 0.95], axis=0)
        ax.plot(steps, median, "--" if name == "gd_init_nearest" else "-", color=colors[name],
                label=f"{labels[name]} (median, n={c.trials})")
        ax.fill_between(steps, np.maximum(low, 1e-300), high, color=colors[name], alpha=0.2)
    ax.axhline(tolerance, color="0.4", linestyle=":", linewidth=1.2, label=f"tolerance {tolerance:g}")
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set(xlim=(0, None), yscale="log", xlabel="passes over the data (GD/Adam steps, coordinate sweeps)",
           ylabel="relative distance to w_mn  ||w − w_mn|| / ||w_mn||",
           title="Distance to the minimum-norm interpolant (band: 5th–95th percentile of trials)")
    ax.legend(fontsize=8, frameon=False, loc="lower left")
    return fig


def _ridge_figure(c: Convergence):
    from overparam.report.figures import loglog_with_reference, new_figure

    order = np.argsort(c.lambdas)
    fig, ax = new_figure()
    loglog_with_reference(ax, c.lambdas[order], *([c.ridge[i][k] for i in order] for k in range(3)), slope=1.0,
                          label="mean distance", n=c.trials)
    ax.set(xlabel="λ  (ridge of (1/n)||Xw − y||² + λ||w||²)", ylabel="||w_λ − w_mn|| / ||w_mn||",
           title="Ridge path → minimum-norm interpolant")
    return fig


def _double_descent_text(d: DoubleDescent, n: int) -> str:
    ratios, features, median = d.ratios, d.features, d.median
    table = common.table(["p/n", "p", "test risk (mean, 95% t-interval)", "median", "theory E[risk]"],
                         [[f"{r:g}", int(p), common.ci_text(ci, 3), common.fmt(float(m), 3), common.fmt(float(t), 3)]
                          for r, p, ci, m, t in zip(ratios, features, d.cis, median, d.theory)])
    means = np.asarray([ci[0] for ci in d.cis])
    agreement = means[np.isfinite(d.theory)] / d.theory[np.isfinite(d.theory)]
    return (
        f"One teacher over D = {int(features[-1])} features, ||w*||² ≈ 1, noise variance {d.noise:g}; the student "
        f"with p features uses the first p and is X_p^+ y; n = {n}; exact population risk; {len(d.risk)} trials."
        f"\n\n{table}\n\nThe mean test risk is largest at p/n = {ratios[int(np.argmax(means))]:g}. Where the exact "
        f"expectation is finite (|p − n| > 1) the measured mean is {agreement.min():.3g} to {agreement.max():.3g} "
        "times it. Near p = n the risk is heavy-tailed (the smallest singular value of a square Gaussian matrix is "
        f"O(1/sqrt(n))): there the mean is {means[d.peak] / median[d.peak]:.3g}x the median and its CI is wide, so "
        "the median is shown too. Left of the peak the risk includes the unseen features' signal as noise; at p = D "
        "the student sees every feature and its risk is the noise plus the part of w* outside the row space "
        f"((1 − n/p)||w*||² in expectation) plus the noise it fits. The null predictor w = 0 has risk "
        f"{common.ci_text(d.null, 3)}; the noise floor is {d.noise:g}.")


def _double_descent_figure(d: DoubleDescent):
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    from overparam.report.figures import new_figure

    fig, ax = new_figure(width=7.5, height=4.8)
    ratios = d.ratios
    mean, low, high = (np.asarray([ci[i] for ci in d.cis]) for i in range(3))
    ax.plot(ratios, mean, "o-", color="tab:blue", label=f"mean test risk (n={len(d.risk)} trials, 95% t-interval)")
    ax.fill_between(ratios, low, high, color="tab:blue", alpha=0.2)
    ax.plot(ratios, d.median, "s--", color="tab:purple", markersize=4, linewidth=1, label="median")
    ax.plot(ratios, d.theory, "x:", color="black", label="theory: E[risk] (infinite for |p − n| <= 1)")
    ax.axhline(d.null[0], color="tab:gray", linestyle="-.", linewidth=1, label="null predictor w = 0")
    ax.axhline(d.noise, color="tab:gray", linestyle=":", linewidth=1, label="noise floor")
    ax.axvline(1.0, color="tab:red", linestyle="--", linewidth=1, alpha=0.7)
    ax.plot([ratios[d.peak]], [mean[d.peak]], marker="*", markersize=14, color="tab:red", linestyle="none",
            label=f"p/n = {ratios[d.peak]:g}: the grid point nearest p = n")
    ax.set(xscale="log", yscale="log", xlabel="p / n  (features per training example)", ylabel="test risk E(y − x·ŵ)²",
           title="Linear double descent of the minimum-norm interpolant")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.legend(fontsize=8, frameon=False)
    return fig


STUDY = Study(
    name=NAME,
    description="GD from zero on p > n linear regression reaches X^T(XX^T)^-1 y; non-zero init, Adam, coordinate "
                "descent do not; ridge path; linear double descent",
    config_type=MinNormConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"n": 20, "p": 60, "seeds": 4, "dd_seeds": 4, "dd_ratios": [0.25, 0.5, 1.0, 2.0, 3.0]},
        "quick": {"n": 100, "p": 1000, "seeds": 100, "dd_seeds": 50},
        "paper": {"n": 100, "p": 1000, "seeds": 100, "dd_seeds": 100,
                  "dd_ratios": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.2, 1.3, 1.5,
                                1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0]},
    },
)
