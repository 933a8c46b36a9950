"""``max_margin``: gradient descent on the logistic loss of separable data turns toward the
hard-margin SVM direction, at the rate 1/log t (Soudry, Hoffer, Nacson, Gunasekar & Srebro 2018,
"The implicit bias of gradient descent on separable data").

Setting (one run per seed; the seed draws the data). The project's ``separable`` source:
n examples x_i ~ N(0, I_d) conditioned on |<w_p, x_i>| ≥ ``margin`` for a planted unit vector
w_p, labels y_i = sign<w_p, x_i> ∈ {−1, +1}; z_i = y_i x_i (rows of Z, (n, d)). A linear model
without bias, the mean logistic loss

    L(w) = (1/n) Σ_i log(1 + exp(−z_iᵀ w)),

and full-batch gradient descent from w_0 = 0 with a fixed step,

    w_{t+1} = w_t + (η/n) Zᵀ σ(−Z w_t),    η = lr_scale / β,    β = λ_max(XᵀX) / (4n),

β being the smoothness of L (σ' ≤ 1/4); Soudry et al. need η < 2/β. The loop runs in float64
numpy on the CPU (an (n, d) matrix-vector product per step, ~10 µs for n = 200, d = 10: a GPU
would only add launch latency); the iterate is recorded at ``record_points`` log-spaced steps.

Reference: the homogeneous hard-margin SVM ŵ = argmin ‖w‖² s.t. z_iᵀw ≥ 1
(:func:`overparam.references.svm.hard_margin_svm`, exact active-set NNLS, KKT-checked), its
margin γ* = 1/‖ŵ‖ and dual variables α.

Theory (Soudry et al., for almost every dataset): w_t = ŵ log t + ρ_t with ρ_t bounded, whence
``PAPER_CLAIMS``: the angle to ŵ and the gap of the normalized margin γ_t = min_i z_iᵀw_t/‖w_t‖
to γ* shrink like 1/log t, ‖w_t‖ grows like ‖ŵ‖ log t, the loss falls like 1/t. When the support
vectors span R^d, ρ_t → w̃ with z_iᵀw̃ = log(η / (n α_i)) on every support vector (matching GD's
increment ŵ/t with (η/n) Σ_SV z_i exp(−z_iᵀ w_t)): the asymptote ŵ log t + w̃ predicts the angle
curve with no free parameter (near-support vectors, margin 1 + δ, delay this until log t ≫ 1/δ).

"1/log t" is only defined up to the unit of time (η, or the 1/n of the mean, rescales t and
shifts log t), so the rate is tested shift-free, as "1/angle is affine in log t" (the claim
``angle_inverse_log``; (log t)^(−1/2) would give a slope ratio ≈ 0.88 there).

Claims: :func:`paper_claims` (the theory's values, with bands fixed before the first run) and
:func:`_statements` (the tests). Statistics are per seed (= dataset), summarized over seeds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from overparam.analysis import Missing, Run, SeedTable, mean_ci, paired_ratio
from overparam.data.synthetic import MAX_MARGIN
from overparam.errors import ConfigError, check_number, check_positive_int
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import EXPONENT, Published, Tolerance, above, below, between
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study, run_key

NAME = "max_margin"
SOUDRY = "Soudry et al. 2018"
# Bands of the claims, fixed by the theory's asymptotic forms (module docstring).
CURVATURE_BAND = (0.9, 1.1)
THEORY_BAND = (0.8, 1.25)
LOSS_SLOPE_BAND = (-1.1, -0.9)
NORM_RATE_BAND = (0.9, 1.1)
SLOWER_THAN_LOSS = 0.5
CURVES = ("angle", "angle_planted", "margin_ratio", "norm", "loss", "angle_theory", "norm_theory")


def record_steps(steps: int, points: int) -> list[int]:
    """``points`` log-spaced steps in [1, steps] (rounded, duplicates merged), ending at ``steps``."""
    return [int(s) for s in np.unique(np.round(np.geomspace(1, steps, points)).astype(int))]


def _late_split(steps: int, late_decades: float) -> tuple[float, float]:
    """(start of the late phase, its geometric midpoint), in steps."""
    return steps * 10.0 ** (-late_decades), steps * 10.0 ** (-late_decades / 2)


@dataclass(frozen=True)
class MaxMarginConfig:
    n_train: int = 200  # examples of the separable source
    dim: int = 10  # input dimension d
    margin: float = 0.1  # the source's planted margin: |<w_p, x>| >= margin
    steps: int = 300_000  # gradient-descent steps T
    lr_scale: float = 1.0  # η β: the step in units of 1/smoothness (GD converges for < 2)
    record_points: int = 110  # log-spaced steps at which the iterate is measured
    late_decades: float = 2.0  # the late phase: steps in [T 10^-late_decades, T]
    angle_threshold: float = 0.1  # radians: "small" final angle to the SVM direction
    margin_threshold: float = 0.9  # γ_T/γ* above which the margin counts as approached
    seeds: int = 10

    def __post_init__(self) -> None:
        for name, minimum in (("n_train", 2), ("dim", 2), ("steps", 10), ("record_points", 10), ("seeds", 1)):
            check_positive_int(name, getattr(self, name), minimum=minimum)
        check_number("margin (the separable source's range)", self.margin, minimum=0.0, maximum=MAX_MARGIN)
        for what, value, maximum, open_high in (  # each in (0, maximum] or (0, maximum)
            ("lr_scale (GD on the logistic loss needs η < 2/β)", self.lr_scale, 2.0, True),
            ("angle_threshold (radians)", self.angle_threshold, math.pi / 2, False),
            ("margin_threshold (a fraction of the SVM margin)", self.margin_threshold, 1.0, True),
            (f"late_decades (decades of the {self.steps} steps)", self.late_decades, math.log10(self.steps), False),
        ):
            check_number(what, value, minimum=0.0, maximum=maximum, open_low=True, open_high=open_high)
        recorded = np.asarray(record_steps(self.steps, self.record_points))
        start, middle = _late_split(self.steps, self.late_decades)
        first, second = ((recorded >= start) & (recorded <= middle)).sum(), (recorded >= middle).sum()
        if min(first, second) < 3:
            raise ConfigError(f"late_decades={self.late_decades} with steps={self.steps} and record_points="
                              f"{self.record_points} leaves {first} and {second} recorded steps in the two halves of "
                              "the late phase; at least 3 each are needed: raise record_points or late_decades")


def _run_params(config: MaxMarginConfig) -> dict[str, Any]:
    return {"n_train": config.n_train, "dim": config.dim, "margin": float(config.margin), "steps": config.steps,
            "lr_scale": float(config.lr_scale), "record_points": config.record_points}


def grid(config: MaxMarginConfig) -> list[RunSpec]:
    """One run per seed; the seed draws the dataset (and nothing else: GD from 0 is deterministic)."""
    params = _run_params(config)
    return [RunSpec(run_key(NAME, params, seed), params, seed) for seed in range(config.seeds)]


# --- one run -------------------------------------------------------------------------------------


def smoothness(x: np.ndarray) -> float:
    """β = λ_max(XᵀX)/(4n): the largest curvature of the mean logistic loss of a linear model."""
    return float(np.linalg.eigvalsh(x.T @ x)[-1]) / (4 * len(x))


def logistic_gd(z: np.ndarray, lr: float, steps: int, record: list[int]) -> np.ndarray:
    """Full-batch GD on (1/n) Σ log(1 + exp(−z_iᵀw)) from w_0 = 0: the iterates at the steps in
    ``record`` (sorted, within [1, steps]), (len(record), d) float64. Cost O(steps · n d)."""
    from scipy.special import expit

    n, d = z.shape
    zt, step = z.T.copy(), lr / n
    w, out, k = np.zeros(d), np.empty((len(record), d)), 0
    for t in range(1, min(steps, record[-1]) + 1):  # record is sorted: its last step ends the loop
        w = w + step * (zt @ expit(-(z @ w)))
        if t == record[k]:
            out[k] = w
            k += 1
    return out


def angles(w: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Angle (radians) between each row of w (k, d) and the unit vector ``direction`` (d,),
    as atan2(‖w − (w·u)u‖, w·u): accurate for small angles, where arccos of a cosine is not."""
    along = w @ direction
    across = np.linalg.norm(w - along[:, None] * direction[None, :], axis=1)
    return np.arctan2(across, along)


def asymptotic_offset(z: np.ndarray, alpha: np.ndarray, support: np.ndarray, lr: float) -> np.ndarray | None:
    """w̃ with z_iᵀw̃ = log(η/(n α_i)) on the support vectors, the limit of w_t − ŵ log t, or None
    when the support vectors do not span R^d (then w̃ is not determined by them)."""
    n, d = z.shape
    rows = z[support]
    if np.linalg.matrix_rank(rows) < d:
        return None
    return np.linalg.lstsq(rows, np.log(lr / (n * alpha[support])), rcond=None)[0]


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    """Data -> SVM -> GD -> the measured curves and the theory's asymptote. ``device`` is not
    used: the loop runs on the CPU (module docstring)."""
    import torch

    from overparam.data import load
    from overparam.provenance import provenance
    from overparam.references.svm import hard_margin_svm

    p = spec.params
    start = time.perf_counter()
    data = load("separable", n_train=p["n_train"], n_test=1, dim=p["dim"], margin=p["margin"], seed=spec.seed,
                dtype=torch.float64)  # only the training split is used
    x, y = data.x_train.numpy(), 2.0 * data.y_train.numpy() - 1.0
    z = y[:, None] * x
    planted = data.extras["w_star"].numpy()
    svm = hard_margin_svm(x, y)
    beta = smoothness(x)
    lr = p["lr_scale"] / beta
    steps = record_steps(p["steps"], p["record_points"])
    iterates = logistic_gd(z, lr, p["steps"], steps)
    norms = np.linalg.norm(iterates, axis=1)
    curves = {
        "angle": angles(iterates, svm.direction),
        "angle_planted": angles(iterates, planted / np.linalg.norm(planted)),
        "margin_ratio": (iterates @ z.T).min(axis=1) / norms / svm.margin,
        "norm": norms,
        "loss": np.logaddexp(0.0, -(iterates @ z.T)).mean(axis=1),
    }
    offset = asymptotic_offset(z, svm.alpha, svm.support, lr)
    if offset is not None:
        asymptote = np.log(np.asarray(steps, dtype=float))[:, None] * svm.w[None, :] + offset[None, :]
        curves["angle_theory"] = angles(asymptote, svm.direction)
        curves["norm_theory"] = np.linalg.norm(asymptote, axis=1)
    others = np.delete(z @ svm.w, svm.support)  # margins of the non-support vectors
    status = "done" if all(np.isfinite(c).all() for c in curves.values()) else "diverged"
    metrics: dict[str, Any] = {
        "n_train": p["n_train"], "dim": p["dim"], "steps": p["steps"], "lr": lr, "smoothness": beta,
        "svm_norm": svm.norm, "svm_margin": svm.margin, "support_vectors": len(svm.support),
        "svm_kkt_residual": svm.kkt_residual, "asymptote_defined": offset is not None,
        "near_support_gap": float(others.min() - 1.0) if len(others) else math.nan,
        "planted_svm_angle": float(angles(planted[None, :], svm.direction)[0]),
        **{f"final_{name}": float(values[-1]) for name, values in curves.items() if "theory" not in name},
    }
    stored = {name: list(zip(steps, map(float, values))) for name, values in curves.items()}
    return RunOutcome(status, metrics, stored, time.perf_counter() - start, provenance(torch.device("cpu")))


# --- late-phase statistics -----------------------------------------------------------------------


def _slope(x: np.ndarray, y: np.ndarray) -> float:  # LAYER CANDIDATE
    """Least-squares slope of y on x (NaN with fewer than two points or no spread in x)."""
    return float(np.polyfit(x, y, 1)[0]) if len(x) >= 2 and np.ptp(x) > 0 else math.nan


def late_statistics(steps: np.ndarray, curve: Mapping[str, np.ndarray], svm_norm: float,
                    late_decades: float) -> dict[str, float]:
    """One seed's late-phase statistics from its curves (``curve``: name -> values at ``steps``; late
    phase: t in [T 10^-late_decades, T]): the least-squares slopes, ratios and fit 1/angle = (log t + t_0)/c
    labelled in ``QUANTITIES`` (‖w_t‖'s slope in units of ‖ŵ‖ = ``svm_norm``; the asymptote's ratios NaN
    without ``angle_theory``), and the final angle to the planted separator over that to ŵ."""
    t = np.asarray(steps, dtype=float)
    curve = {name: np.asarray(values, dtype=float) for name, values in curve.items()}
    start, middle = _late_split(int(t[-1]), late_decades)
    late = t >= start
    log_t = np.log(t[late])
    angle, inverse = curve["angle"][late], 1.0 / curve["angle"][late]
    first, second = log_t <= math.log(middle), log_t >= math.log(middle)
    intercept_slope = np.polyfit(log_t, inverse, 1)
    gap = 1.0 - curve["margin_ratio"][late]
    positive = gap > 0
    out = {
        "angle_exponent_logt": _slope(np.log(log_t), np.log(angle)),
        "angle_exponent_t": _slope(log_t, np.log(angle)),
        "loss_exponent_t": _slope(log_t, np.log(curve["loss"][late])),
        "inverse_angle_curvature": _slope(log_t[second], inverse[second]) / _slope(log_t[first], inverse[first]),
        "norm_rate": _slope(log_t, curve["norm"][late]) / svm_norm,
        "margin_gap_exponent_logt": (_slope(np.log(log_t[positive]), np.log(gap[positive]))
                                     if positive.sum() >= 2 else math.nan),
        "fit_c": 1.0 / intercept_slope[0], "fit_t0": intercept_slope[1] / intercept_slope[0],
        "theory_ratio": math.nan, "theory_rate_ratio": math.nan,
    }
    if "angle_theory" in curve:
        out["theory_ratio"] = curve["angle"][-1] / curve["angle_theory"][-1]
        out["theory_rate_ratio"] = _slope(log_t, inverse) / _slope(log_t, 1.0 / curve["angle_theory"][late])
    out["angle_over_loss_exponent"] = out["angle_exponent_t"] / out["loss_exponent_t"]
    out["planted_over_svm_angle"] = curve["angle_planted"][-1] / curve["angle"][-1]
    return out


# --- analysis ------------------------------------------------------------------------------------


TITLE = "max_margin: GD on separable data converges to the max-margin direction, like 1/log t"
STORED = ("final_angle", "final_angle_planted", "planted_svm_angle", "final_margin_ratio", "near_support_gap",
          "support_vectors", "svm_norm", "lr")  # per-seed metrics the report reads as stored
QUANTITIES = (  # statistic, label, theory
    ("final_angle", "angle(w_T, ŵ) (rad)", "→ 0 like 1/log t"),
    ("final_angle_planted", "angle(w_T, w_p), planted separator (rad)", "→ angle(ŵ, w_p)"),
    ("planted_svm_angle", "angle(ŵ, w_p) (rad)", "—"),
    ("final_margin_ratio", "γ_T/γ*", "→ 1, gap ∝ 1/log t"),
    ("angle_exponent_logt", "slope of log angle on log log t", "−1 (+ shift: −log t/(log t + t_0))"),
    ("inverse_angle_curvature", "1/angle vs log t: late/early slope ratio", "1"),
    ("theory_rate_ratio", "slope of 1/angle on log t, measured / asymptote's", "1"),
    ("theory_ratio", "angle(w_T)/angle(ŵ log T + w̃)", "1"),
    ("angle_exponent_t", "slope of log angle on log t", "≈ −1/log t → 0"),
    ("loss_exponent_t", "slope of log loss on log t", "−1"),
    ("angle_over_loss_exponent", "log-log slope vs t: angle / loss", "→ 0"),
    ("norm_rate", "(d‖w_t‖/d log t)/‖ŵ‖", "1"),
    ("margin_gap_exponent_logt", "slope of log(1 − γ_t/γ*) on log log t", "−1"),
    ("fit_c", "fit 1/angle = (log t + t_0)/c: c", "—"),
    ("fit_t0", "fit: t_0", "—"),
    ("near_support_gap", "δ_min: smallest margin − 1 of a non-support vector", "—"),
    ("support_vectors", "support vectors", "≤ d"),
)


@dataclass
class MaxMarginAnalysis:
    """The runs of one configuration, one per seed (= dataset), in seed order."""

    table: SeedTable  # the runs: seed x one column
    steps: np.ndarray  # (K,) the recorded GD steps t
    curves: dict[str, np.ndarray]  # CURVES name -> (S, K); a NaN row where a seed has no such curve
    per_seed: dict[str, np.ndarray]  # STORED metrics and late_statistics -> (S,) one value per seed
    cis: dict[str, CI]  # QUANTITIES statistic -> mean over seeds; planted_over_svm_angle: paired ratio (log-t)

    def present(self, name: str) -> np.ndarray:
        """(S', K): the seeds that stored curve ``name`` (the asymptote's: where the SVs span R^d)."""
        values = self.curves[name]
        return values[np.isfinite(values).any(axis=1)]


def analyze(runs: list[Run], config: MaxMarginConfig) -> MaxMarginAnalysis | Missing:
    params = _run_params(config)
    runs = [r for r in runs if r.settings == params]  # a store may also hold runs of other settings
    if len(runs) < 2:
        return Missing(TITLE, f"{len(runs)} finished run(s) of this configuration; at least two seeds are needed.")
    table = SeedTable(runs)
    steps, _ = table.curve("angle")  # every run records the same steps
    curves = {}
    for name in CURVES:
        at, values = table.curve(name)
        curves[name] = values[:, 0] if len(at) else np.full((len(table.seeds), len(steps)), np.nan)
    per_seed = {name: table.at(name, None) for name in STORED}
    late = [late_statistics(steps, {k: v[i] for k, v in curves.items() if np.isfinite(v[i]).any()},
                            per_seed["svm_norm"][i], config.late_decades) for i in range(len(table.seeds))]
    per_seed.update({name: np.asarray([s[name] for s in late]) for name in late[0]})
    cis = {name: mean_ci(per_seed[name]) for name, _, _ in QUANTITIES}
    cis["planted_over_svm_angle"] = paired_ratio(per_seed["final_angle_planted"], per_seed["final_angle"])
    return MaxMarginAnalysis(table, steps.astype(float), curves, per_seed, cis)


# --- claims --------------------------------------------------------------------------------------


def paper_claims(config: MaxMarginConfig) -> dict[str, Published]:
    """The published side of each claim: Soudry et al.'s asymptotic forms with the study's own
    bands (module docstring), fixed before its first run; the angle and margin thresholds are the
    config's."""
    return {
        "final_angle": Published("w_t/‖w_t‖ → ŵ/‖ŵ‖", SOUDRY, below(config.angle_threshold)),
        "svm_not_planted": Published("the limit direction is the L2 max-margin one among all separators", SOUDRY,
                                     above(1.0)),
        "angle_inverse_log": Published("‖w_t/‖w_t‖ − ŵ/‖ŵ‖‖ = O(1/log t)", SOUDRY, between(*CURVATURE_BAND), 1.0, "",
                                       Tolerance.range(*CURVATURE_BAND)),
        "angle_rate_matches_theory": Published("w_t − ŵ log t → w̃, the solution of the support-vector equations",
                                               SOUDRY, between(*THEORY_BAND), 1.0, "", Tolerance.range(*THEORY_BAND)),
        "margin_approaches_svm": Published("γ_t → γ* with a gap O(1/log t)", SOUDRY,
                                           between(config.margin_threshold, 1.0)),
        "loss_rate": Published("L(w_t) = O(1/t)", SOUDRY, between(*LOSS_SLOPE_BAND), -1.0, "", EXPONENT),
        "angle_slower_than_loss": Published("the loss falls like 1/t while the direction converges like 1/log t",
                                            SOUDRY, below(SLOWER_THAN_LOSS)),
        "norm_log_rate": Published("w_t = ŵ log t + O(1)", SOUDRY, between(*NORM_RATE_BAND), 1.0, "",
                                   Tolerance.range(*NORM_RATE_BAND)),
    }


PAPER_CLAIMS = paper_claims(MaxMarginConfig())  # with the default thresholds


def claims(a: MaxMarginAnalysis, config: MaxMarginConfig) -> list[Claim]:
    where = (f"(GD from 0 with η = {config.lr_scale:g}/β on the mean logistic loss of {config.n_train} separable "
             f"examples in d = {config.dim}, T = {config.steps} steps; late phase: the last {config.late_decades:g} "
             "decades of steps)")
    paper = paper_claims(config)
    return [Claim.judged(f"{NAME}.{name}", NAME, f"{first} {where}: {test}", paper[name], a.cis[statistic])
            for name, (first, test, statistic) in _statements(config).items()]


def _statements(config: MaxMarginConfig) -> dict[str, tuple[str, str, str]]:
    """Per claim: what is claimed, the test, and the statistic (a key of ``MaxMarginAnalysis.cis``)."""
    return {
        "final_angle": ("The GD iterate's direction converges to the hard-margin SVM direction",
                        f"angle(w_T, ŵ) < {config.angle_threshold:g} rad.", "final_angle"),
        "svm_not_planted": (
            "GD selects the max-margin separator, not the planted separator that generated the data",
            "angle(w_T, w_p) / angle(w_T, ŵ) > 1 (geometric mean of the per-seed ratios).", "planted_over_svm_angle"),
        "angle_inverse_log": (
            "The angle to ŵ falls like 1/log t",
            "1/angle is affine in log t, i.e. the slope of 1/angle on log t over the second half of the late phase "
            f"divided by the slope over the first half lies in {list(CURVATURE_BAND)} (1 for c/(log t + t_0); over "
            "the two decades before T = 10⁵, t^(−0.1) gives ≈ 1.26 and (log t)^(−2) ≈ 1.3).",
            "inverse_angle_curvature"),
        "angle_rate_matches_theory": (
            "The angle falls at the rate of the theory's parameter-free asymptote ŵ log t + w̃ (z_iᵀw̃ = "
            "log(η/(n α_i)) on the support vectors)",
            f"the late-phase slope of 1/angle on log t divided by the asymptote's lies in {list(THEORY_BAND)} (the "
            "slope is the coefficient of the 1/log t law, free of the time shift; seeds whose support vectors do not "
            "span R^d have no prediction and are left out).", "theory_rate_ratio"),
        "margin_approaches_svm": (
            "The normalized margin approaches the SVM margin",
            f"γ_T/γ* = min_i y_i w_Tᵀx_i / (‖w_T‖ γ*) lies in [{config.margin_threshold:g}, 1].", "final_margin_ratio"),
        "loss_rate": ("The training loss falls like 1/t", "the late-phase log-log slope of L(w_t) vs t lies in "
                      f"{list(LOSS_SLOPE_BAND)}.", "loss_exponent_t"),
        "angle_slower_than_loss": (
            "The direction converges far more slowly than the loss",
            f"the late-phase log-log slope of the angle vs t divided by that of the loss is < {SLOWER_THAN_LOSS:g} "
            "(theory: it tends to 0, as 1/log t against 1/t).", "angle_over_loss_exponent"),
        "norm_log_rate": ("‖w_t‖ grows like ‖ŵ‖ log t", "the late-phase slope of ‖w_t‖ on log t divided by ‖ŵ‖ lies "
                          f"in {list(NORM_RATE_BAND)}.", "norm_rate"),
    }


# --- report --------------------------------------------------------------------------------------


def render(a: MaxMarginAnalysis, claims: list[Claim], config: MaxMarginConfig) -> list[Section]:
    intro = (f"{len(a.table.seeds)} datasets (seeds) from the `separable` source (n = {config.n_train} examples "
             f"in d = {config.dim}, planted margin {config.margin:g}, labels ±1); a linear model without bias, "
             f"full-batch GD from w_0 = 0 on the mean logistic loss, η = {config.lr_scale:g}/β with β = "
             f"λ_max(XᵀX)/(4n) the loss's smoothness (seed {a.table.seeds[0]}: η = "
             f"{common.fmt(float(a.per_seed['lr'][0]), 4)}), float64, T = {config.steps} steps, measured at "
             f"{len(a.steps)} log-spaced steps. ŵ is the homogeneous hard-margin SVM (exact, KKT-checked), γ* = 1/‖ŵ‖ "
             "its margin, w_p the planted separator; the asymptote ŵ log t + w̃ (z_iᵀw̃ = log(η/(n α_i)) on the "
             "support vectors) exists when they span R^d. Late-phase rates are least-squares fits over t in "
             f"[T·10^−{config.late_decades:g}, T], one per seed.")
    parts = [intro, _table(a), "Per seed:", _seed_table(a), "**Reading.** " + _reading(a, config)]
    figures = [("max_margin_angle", _angle_figure(a, config)),
               ("max_margin_margin_and_loss", _margin_loss_figure(a, config)),
               ("max_margin_norm", _norm_figure(a, config))]
    return [Section(TITLE, "\n\n".join(parts), figures, claims)]


def _table(a: MaxMarginAnalysis) -> str:
    body = [[label, theory, common.ci_text(a.cis[name], 3), a.cis[name].n] for name, label, theory in QUANTITIES]
    return common.table(["quantity", "theory (t → ∞)", "mean over seeds [95% t-interval]", "n"], body)


def _seed_table(a: MaxMarginAnalysis) -> str:
    header = ["seed", "SVs", "δ_min", "angle(w_T, ŵ)", "γ_T/γ*", "1/angle slope ratio", "rate / theory",
              "angle / theory", "loss slope", "norm rate"]
    columns = (("near_support_gap", 3), ("final_angle", 3), ("final_margin_ratio", 4), ("inverse_angle_curvature", 3),
               ("theory_rate_ratio", 3), ("theory_ratio", 3), ("loss_exponent_t", 3), ("norm_rate", 3))
    s = a.per_seed
    body = [[seed, int(s["support_vectors"][i])] + [common.fmt(float(s[name][i]), digits) for name, digits in columns]
            for i, seed in enumerate(a.table.seeds)]
    return common.table(header, body)


def _reading(a: MaxMarginAnalysis, config: MaxMarginConfig) -> str:
    delta = float(np.median(a.per_seed["near_support_gap"]))
    horizon = math.log(config.steps)
    return (
        "A small angle to ŵ with a larger one to w_p means GD finds the max-margin direction, not merely some "
        "separator. A time shift t_0 bends the local exponents (the bare −1 against log t holds only for t_0 = 0; "
        "the table gives the fitted t_0) and sets the angle's level at T against the asymptote, so the rate "
        "claims use shift-free slopes.\n\nHow far this horizon is from the asymptotic regime: an example with "
        "margin 1 + δ under ŵ pulls on w_t with a weight fading only like t^(−δ); for the median over seeds of the "
        f"smallest δ, {common.fmt(delta, 3)}, that is T^(−δ) = {common.fmt(config.steps ** -delta, 3)} over the "
        f"run (log T = {horizon:.3g}), so until log t ≫ 1/δ near-support vectors act as extra support vectors and "
        f"finite-horizon rates can differ from their limits. The rates are fitted over {config.late_decades:g} "
        f"decades of t, a factor {horizon / (horizon - config.late_decades * math.log(10)):.2g} in log t, which "
        "limits how sharply a 1/log t law can be told apart from its neighbours."
    )


def _band(ax, steps: np.ndarray, curves: np.ndarray, label: str, color: str, *, lines: bool = False) -> np.ndarray:
    """Mean over seeds of ``curves`` (S, K) with a 95% t-interval band (per step); thin per-seed
    lines if ``lines``. Returns the mean curve (K,)."""
    cis = np.asarray([mean_ci(curves[:, j]) for j in range(curves.shape[1])])
    if lines:
        for curve in curves:
            ax.plot(steps, curve, color=color, alpha=0.2, linewidth=0.7)
    ax.plot(steps, cis[:, 0], color=color, linewidth=1.8, label=f"{label} (n={len(curves)}, 95% CI)")
    ax.fill_between(steps, cis[:, 1], cis[:, 2], color=color, alpha=0.2, linewidth=0)
    return cis[:, 0]


def _finish(ax, title: str, ylabel: str, loc: str, *, fontsize: int = 8, late: tuple[float, float] | None = None,
            xlabel: str = "gradient-descent step t (log scale)") -> None:
    """Log x axis, labels and legend; shade the late phase ``late`` = (start, T) if given."""
    if late:
        ax.axvspan(*late, color="0.95", zorder=0, label="late phase")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=fontsize, frameon=False, loc=loc)


def _angle_figure(a: MaxMarginAnalysis, config: MaxMarginConfig):
    """Left: the angle to ŵ (and to w_p) vs t, log-log; right: 1/angle vs log t, where the 1/log t
    law is a straight line; each with the fit c/(log t + t_0) over the late phase and the asymptote."""
    from overparam.report.figures import PlainLogFormatter, new_figure

    steps = a.steps
    start, _ = _late_split(config.steps, config.late_decades)
    late = steps >= start
    angle, theory = a.present("angle"), a.present("angle_theory")
    fig, (left, right) = new_figure(1, 2, width=12.5, height=4.8)
    _band(left, steps, a.present("angle_planted"), "angle(w_t, w_p), planted separator", "tab:brown")
    mean_angle = _band(left, steps, angle, "angle(w_t, ŵ), SVM direction", "tab:blue", lines=True)
    mean_inverse = _band(right, steps, 1.0 / angle, "1/angle(w_t, ŵ)", "tab:blue", lines=True)
    # each panel's fit is to the mean it shows (the mean of 1/angle is not 1/the mean angle)
    for ax, transform, inverse in ((left, lambda v: v, 1.0 / mean_angle), (right, lambda v: 1.0 / v, mean_inverse)):
        slope, intercept = np.polyfit(np.log(steps[late]), inverse[late], 1)
        c, t0 = 1.0 / slope, intercept / slope
        shown = (steps >= start / 10) & (np.log(steps) + t0 > 0)
        ax.plot(steps[shown], transform(c / (np.log(steps[shown]) + t0)), color="tab:red", linestyle=":",
                linewidth=1.6, label=f"fit c/(log t + t_0) to the late-phase mean: c = {c:.3g}, t_0 = {t0:.3g}")
        if len(theory):
            ax.plot(steps[late], transform(theory[:, late]).mean(axis=0), color="black", linestyle="--", linewidth=1.3,
                    label=f"theory: the asymptote ŵ log t + w̃, mean of {len(theory)} seeds")
    left.set_yscale("log")
    left.yaxis.set_major_formatter(PlainLogFormatter())
    left.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    labels = (("angle between w_t and the SVM direction ŵ", "angle (radians, log scale)", "lower left"),
              ("1/angle vs log t: the 1/log t law is a straight line", "1 / angle(w_t, ŵ)", "upper left"))
    for ax, (title, ylabel, loc) in zip((left, right), labels):
        _finish(ax, title, ylabel, loc, fontsize=7, late=(start, config.steps))
    return fig


def _margin_loss_figure(a: MaxMarginAnalysis, config: MaxMarginConfig):
    from overparam.report.figures import new_figure

    steps = a.steps
    fig, (left, right) = new_figure(1, 2, width=12.5, height=4.6)
    margin = a.present("margin_ratio")
    _band(left, steps, margin, "normalized margin γ_t/γ*", "tab:green", lines=True)
    left.axhline(1.0, color="black", linestyle="--", linewidth=1.2, label="SVM margin γ*")
    left.axhline(config.margin_threshold, color="tab:red", linestyle=":", linewidth=1.1,
                 label=f"claim threshold {config.margin_threshold:g}")
    left.set_ylim(max(-0.5, float(np.nanmin(margin[:, steps >= 10])) - 0.05), 1.05)
    _finish(left, "normalized margin relative to the SVM margin", "min_i y_i w_tᵀx_i / (‖w_t‖ γ*)", "lower right")
    reference = int(np.argmin(np.abs(steps - _late_split(config.steps, config.late_decades)[0])))
    for name, label, color in (("loss", "training loss L(w_t)", "tab:orange"), ("angle", "angle(w_t, ŵ)", "tab:blue")):
        curves = a.present(name)
        _band(right, steps, curves / curves[:, [reference]], label, color)
    grid = steps[steps >= 2]
    for values, style, label in ((steps[reference] / grid, "--", "∝ 1/t"),
                                 (math.log(steps[reference]) / np.log(grid), ":", "∝ 1/log t")):
        right.plot(grid, values, color="0.4", linestyle=style, linewidth=1.1, label=label)
    right.set_yscale("log")
    right.set_ylim(max(1e-6, 0.3 * steps[reference] / steps[-1]), None)
    _finish(right, "loss and angle, each relative to its value at the late phase's start",
            f"value / value at t = {int(steps[reference])} (log scale)", "lower left")
    return fig


def _norm_figure(a: MaxMarginAnalysis, config: MaxMarginConfig):
    """‖w_t‖/‖ŵ‖ vs t with log x: the theory's slope is 1 per unit log t for every dataset."""
    from overparam.report.figures import new_figure

    steps = a.steps
    start, _ = _late_split(config.steps, config.late_decades)
    late = steps >= start
    svm_norms = a.per_seed["svm_norm"][:, None]
    fig, ax = new_figure(width=7.0, height=4.6)
    mean = _band(ax, steps, a.curves["norm"] / svm_norms, "‖w_t‖/‖ŵ‖", "tab:purple", lines=True)
    log_t = np.log(steps[late])
    ax.plot(steps[late], mean[late][-1] + log_t - log_t[-1], color="black", linestyle="--", linewidth=1.2,
            label="slope 1 per unit log t (w_t ≈ ŵ log t), through the last point")
    theory = a.present("norm_theory") / svm_norms[np.isfinite(a.curves["norm_theory"]).any(axis=1)]
    if len(theory):
        ax.plot(steps[late], theory[:, late].mean(axis=0), color="tab:red", linestyle=":", linewidth=1.4,
                label=f"theory ‖ŵ log t + w̃‖/‖ŵ‖, mean of {len(theory)} seeds")
    _finish(ax, "growth of ‖w_t‖ in units of the SVM solution's norm", "‖w_t‖ / ‖ŵ‖", "upper left",
            late=(start, config.steps), xlabel="gradient-descent step t (log scale, so log t is linear)")
    return fig


STUDY = Study(
    name=NAME,
    description="logistic-loss GD on separable data: angle to the hard-margin SVM direction (1/log t), "
                "normalized margin, ‖w_t‖ ~ ‖ŵ‖ log t, loss ~ 1/t",
    config_type=MaxMarginConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"n_train": 40, "dim": 5, "steps": 2000, "record_points": 40, "late_decades": 1.0, "seeds": 3},
        "quick": {"n_train": 200, "dim": 10, "steps": 300_000, "record_points": 110, "late_decades": 2.0, "seeds": 10},
        # a longer horizon (log T = 16 instead of 11.5) and more datasets
        "paper": {"n_train": 200, "dim": 10, "steps": 10_000_000, "record_points": 160, "late_decades": 3.0,
                  "seeds": 16},
    },
)
