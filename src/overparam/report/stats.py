"""Statistics for reports: intervals over seeds that keep their coverage at small n, and the
predicate test verdicts are built from.

Seeds are the independent units of every study: runs of one seed share its initialization (and
data order), so they are not independent of each other. Every interval here has n = the number of
seeds and is built from one value per seed, or, for a correlation over runs, by leaving one seed
out at a time:

- :func:`t_ci`: a mean or a paired difference over seeds, Student-t;
- :func:`paired_ratio_ci`: a ratio between two arms, log-scale t of the per-seed ratios (Fieller's
  interval, :func:`fieller_ci`, when a value is not positive);
- :func:`seed_slope_ci`: a (log-log) slope fitted per seed, t over seeds;
- :func:`clustered_spearman_ci`: Spearman's ρ over runs, seeds as clusters (jackknife on Fisher z);
- :func:`largest_step_ci` and :func:`trend_ci`: whether a curve falls (rises) across an axis
  without turning, with simultaneous (Bonferroni) t-intervals per step.

Their coverage at n = 3, 5 and 10 on normal and log-normal data is simulated in
tests/test_coverage.py (>= 92% at nominal 95%); a percentile bootstrap over 3-5 seeds, which the
reports used before, covers 71-88%. Statistics of a whole curve located on a grid (a threshold, a
peak) are resampled over seeds in :mod:`overparam.analysis` instead.

Every function returns a :class:`CI`, a tuple ``(estimate, low, high)`` that also carries ``n``,
the confidence level, the interval ``method`` and extras (``n_points``, ``against``, ...). Missing
values (NaN) are dropped; with too few values the bounds are NaN, and a NaN interval never decides
a claim. Costs are O(n) (O(n · points) for the jackknife).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, Self

import numpy as np

from overparam.errors import ConfigError

OUTCOMES = ("holds", "fails", "undecided")  # of :func:`decide`


class CI(tuple):
    """``(estimate, low, high)`` with attributes ``n``, ``confidence``, ``method`` and any
    extras (``n_points`` for :func:`clustered_spearman_ci`, ``against`` for :func:`trend_ci`, ...)."""

    def __new__(cls, estimate: float, low: float, high: float, *, n: int, confidence: float = 0.95,
                method: str = "none", **extras: Any) -> Self:
        self = super().__new__(cls, (float(estimate), float(low), float(high)))
        self.n = int(n)
        self.confidence = float(confidence)
        self.method = method
        self.__dict__.update(extras)
        return self

    @property
    def estimate(self) -> float:
        return self[0]

    @property
    def low(self) -> float:
        return self[1]

    @property
    def high(self) -> float:
        return self[2]

    @property
    def bounds(self) -> list[float]:
        """``[low, high]``, as :class:`~overparam.report.claims.Claim` stores it."""
        return [self[1], self[2]]

    @property
    def decided(self) -> bool:
        """Whether both bounds are numbers (not NaN)."""
        return not (math.isnan(self[1]) or math.isnan(self[2]))

    def __reduce__(self):
        extras = {k: v for k, v in self.__dict__.items() if k not in ("n", "confidence", "method")}
        return (_rebuild_ci, (tuple(self), self.n, self.confidence, self.method, extras))

    def __repr__(self) -> str:
        extras = "".join(f", {k}={v!r}" for k, v in self.__dict__.items() if k not in ("n", "confidence", "method"))
        return (f"CI(estimate={self[0]!r}, low={self[1]!r}, high={self[2]!r}, n={self.n}, "
                f"confidence={self.confidence}, method={self.method!r}{extras})")


def _rebuild_ci(values, n, confidence, method, extras) -> CI:
    return CI(*values, n=n, confidence=confidence, method=method, **extras)


# --- plumbing ------------------------------------------------------------------------------------


def _scipy():
    """scipy.stats, imported on first use (it takes about half a second; every study imports this
    module, reports are rarer)."""
    import scipy.stats

    return scipy.stats


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be a number in (0, 1), got {confidence!r}")


def _vector(name: str, values: Any) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name} must be a 1-d sequence of numbers, got {values!r}") from error
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ConfigError(f"{name} must be a 1-d sequence of numbers, got shape {array.shape}")
    return array


def _rank_correlation(x, y, axis=-1):
    """Spearman's rho along ``axis``: Pearson correlation of average ranks (ties as spearmanr)."""
    rx = _scipy().rankdata(x, axis=axis)
    ry = _scipy().rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    rho = (rx * ry).sum(axis=axis) / np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))
    return np.clip(rho, -1.0, 1.0)


# --- a predicate against an interval ---------------------------------------------------------------


def _bounds(ci: Any) -> tuple[float, float]:
    values = list(ci)
    if len(values) == 3:  # (estimate, low, high), e.g. a CI
        values = values[1:]
    if len(values) != 2:
        raise ConfigError(f"decide needs an interval as (low, high) or (estimate, low, high), got {ci!r}")
    try:
        low, high = (math.nan if v is None else float(v) for v in values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"decide needs numeric interval bounds, got {ci!r}") from error
    if low > high:
        raise ConfigError(f"CI lower bound {low!r} exceeds its upper bound {high!r}")
    return low, high


def decide(ci: Any, *, greater_than: float | None = None, less_than: float | None = None,
           within: tuple[float, float] | None = None) -> str:
    """Whether a predicate holds for every value of an interval.

    The predicate is the conjunction of those given: ``value > greater_than``, ``value <
    less_than``, ``within[0] <= value <= within[1]``. ``'holds'`` when every value in the interval
    satisfies it, ``'fails'`` when none does, ``'undecided'`` when the interval straddles a
    boundary or a bound is NaN. ``ci`` is ``(low, high)`` or ``(estimate, low, high)`` (a
    :class:`CI`). The verdict rules (:mod:`overparam.report.verdicts`) apply it twice per claim.
    """
    if greater_than is None and less_than is None and within is None:
        raise ConfigError("decide needs a predicate: pass greater_than=, less_than= and/or within=(low, high)")
    low, high = _bounds(ci)
    # The set of values satisfying the claim, as one interval with open or closed ends.
    lo, lo_open, hi, hi_open = -math.inf, True, math.inf, True
    if greater_than is not None:
        lo, lo_open = float(greater_than), True
    if less_than is not None:
        hi, hi_open = float(less_than), True
    if within is not None:
        try:
            a, b = (float(v) for v in within)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"within must be a (low, high) pair of numbers, got {within!r}") from error
        if a > b:
            raise ConfigError(f"within=({a!r}, {b!r}) has its lower end above its upper end")
        if a > lo or (a == lo and not lo_open):
            lo, lo_open = a, False
        if b < hi or (b == hi and not hi_open):
            hi, hi_open = b, False
    if any(math.isnan(v) for v in (low, high, lo, hi)):
        return "undecided"
    inside_low = low > lo or (low == lo and not lo_open)
    inside_high = high < hi or (high == hi and not hi_open)
    if inside_low and inside_high:
        return "holds"
    empty = lo > hi or (lo == hi and (lo_open or hi_open))
    below = high < lo or (high == lo and lo_open)
    above = low > hi or (low == hi and hi_open)
    if empty or below or above:
        return "fails"
    return "undecided"


# --- intervals over seeds ------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _t_quantile(confidence: float, df: int) -> float:
    return float(_scipy().t.ppf((1 + confidence) / 2, df))


def t_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> CI:
    """Student-t interval of a mean over seeds: x̄ ± t_{n−1} s/√n (NaNs dropped, n = values left).

    Exact for normal data; for paired differences of log-normal arms it also holds its level (see
    the coverage test). n < 2: NaN bounds. Cost O(n)."""
    _check_confidence(confidence)
    x = _vector("values", values)
    x = x[~np.isnan(x)]
    n = x.size
    if n == 0:
        return CI(math.nan, math.nan, math.nan, n=0, confidence=confidence, method="t")
    mean = float(x.mean())
    if n < 2:
        return CI(mean, math.nan, math.nan, n=n, confidence=confidence, method="t")
    half = _t_quantile(confidence, n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return CI(mean, mean - half, mean + half, n=n, confidence=confidence, method="t")


def fieller_ci(numerators: np.ndarray, denominators: np.ndarray, confidence: float = 0.95) -> CI:
    """Fieller's interval for mean(a) / mean(b) from paired values (a_i, b_i) of n seeds: the set
    of ρ with (ā − ρ b̄)² <= t² (v_aa − 2ρ v_ab + ρ² v_bb), v the covariances of the means. Exact
    for bivariate normal data. When b̄ is not distinguishable from 0 the set is unbounded and the
    bounds are (−inf, inf)."""
    a, b = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    n = a.size
    estimate = float(a.mean() / b.mean()) if n and b.mean() != 0 else math.nan
    if n < 2:
        return CI(estimate, math.nan, math.nan, n=n, confidence=confidence, method="Fieller")
    q = _t_quantile(confidence, n - 1) ** 2
    cov = np.cov(a, b, ddof=1) / n
    quad = b.mean() ** 2 - q * cov[1, 1]
    lin = a.mean() * b.mean() - q * cov[0, 1]
    const = a.mean() ** 2 - q * cov[0, 0]
    disc = lin * lin - quad * const
    if quad <= 0 or disc < 0:
        return CI(estimate, -math.inf, math.inf, n=n, confidence=confidence, method="Fieller (unbounded)")
    root = math.sqrt(disc)
    return CI(estimate, (lin - root) / quad, (lin + root) / quad, n=n, confidence=confidence, method="Fieller")


def paired_ratio_ci(numerators: Sequence[float] | np.ndarray, denominators: Sequence[float] | np.ndarray,
                    confidence: float = 0.95) -> CI:
    """A ratio between two arms measured on the same seeds (entry i of each is seed i; pairs with
    a NaN dropped; n = pairs).

    Positive values (the usual case: λ_max, movement, steps): the log-scale t-interval of the
    per-seed ratios r_i = a_i / b_i, exp(mean log r ± t_{n−1} s_log/√n), whose estimate is their
    geometric mean (exact when the ratios are log-normal) — method ``"log-t"``. With a zero or
    negative value: Fieller's interval for mean(a) / mean(b) (:func:`fieller_ci`)."""
    a, b = _vector("numerators", numerators), _vector("denominators", denominators)
    if a.size != b.size:
        raise ConfigError(f"a paired ratio needs as many numerators as denominators, got {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    if a.size and (a > 0).all() and (b > 0).all():
        logs = t_ci(np.log(a / b), confidence)
        return CI(math.exp(logs.estimate), math.exp(logs.low) if logs.decided else math.nan,
                  math.exp(logs.high) if logs.decided else math.nan, n=logs.n, confidence=confidence, method="log-t")
    return fieller_ci(a, b, confidence)


def seed_slope_ci(x: Sequence[float] | np.ndarray, y: np.ndarray, confidence: float = 0.95, *,
                  log: bool = True) -> CI:
    """The slope of y on x (of log y on log x with ``log``: the exponent b of y ~ c x^b) fitted per
    seed by least squares, then a t-interval over seeds.

    ``x``: (A,) axis values; ``y``: (S, A), one row per seed, NaN where missing. Each seed's fit
    uses its finite points (a seed with fewer than two distinct x is left out; n = seeds fitted).
    With every seed at every x the mean of the per-seed slopes equals the pooled least-squares
    slope. Non-positive values cannot be logged: a ``ConfigError`` names the first one."""
    xs = _vector("x", x)
    ys = np.asarray(y, dtype=float)
    if ys.ndim != 2 or ys.shape[1] != xs.size:
        raise ConfigError(f"seed_slope_ci needs y of shape (seeds, {xs.size}), got {ys.shape}")
    if log:
        finite = np.isfinite(ys)
        bad = (xs[None, :] <= 0) & finite | (ys <= 0) & finite
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise ConfigError(f"a log-log slope needs positive x and y; got x={xs[j]!r}, y={ys[i, j]!r}")
        with np.errstate(all="ignore"):
            xs, ys = np.log(xs), np.log(ys)
    slopes = []
    for row in ys:
        keep = np.isfinite(row) & np.isfinite(xs)
        if np.unique(xs[keep]).size >= 2:
            cx = xs[keep] - xs[keep].mean()
            slopes.append(float((cx * (row[keep] - row[keep].mean())).sum() / (cx * cx).sum()))
    out = t_ci(slopes, confidence)
    return CI(*out, n=out.n, confidence=confidence, method="t over per-seed slopes")


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(_rank_correlation(x, y))


def clustered_spearman_ci(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                          groups: Sequence[Any], confidence: float = 0.95) -> CI:
    """Spearman's ρ of paired points pooled over seeds, with seeds as clusters.

    ``groups[i]`` is the seed of point i (points of a seed share its noise, so they are not
    independent). Estimate: ρ of all points. Interval: the delete-one-seed jackknife on Fisher's
    z = atanh ρ, z ± t_{S−1} SE_jack, mapped back with tanh; n = S seeds (>= 3 for bounds). In
    simulation it covers 95% at 3 to 10 seeds where a percentile bootstrap over seeds covers
    80-90%. ``ci.n_points`` is the number of points."""
    xs, ys = _vector("x", x), _vector("y", y)
    labels = np.asarray(groups, dtype=object).reshape(-1)
    if not xs.size == ys.size == labels.size:
        raise ConfigError(f"clustered_spearman_ci needs x, y and groups of one length, got {xs.size}, {ys.size}, "
                          f"{labels.size}")
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys, labels = xs[keep], ys[keep], labels[keep]
    seeds = sorted(set(labels.tolist()), key=str)
    estimate = _spearman(xs, ys)
    extras = {"n_points": int(xs.size)}
    if len(seeds) < 3 or math.isnan(estimate):
        return CI(estimate, math.nan, math.nan, n=len(seeds), confidence=confidence, method="jackknife over seeds",
                  **extras)
    clip = 1 - 1e-9
    leave_out = np.array([_spearman(xs[labels != s], ys[labels != s]) for s in seeds])
    if np.isnan(leave_out).any():
        return CI(estimate, math.nan, math.nan, n=len(seeds), confidence=confidence, method="jackknife over seeds",
                  **extras)
    z = np.arctanh(np.clip(leave_out, -clip, clip))
    se = math.sqrt((len(seeds) - 1) / len(seeds) * float(((z - z.mean()) ** 2).sum()))
    centre = math.atanh(max(-clip, min(clip, estimate)))
    half = _t_quantile(confidence, len(seeds) - 1) * se
    return CI(estimate, math.tanh(centre - half), math.tanh(centre + half), n=len(seeds), confidence=confidence,
              method="jackknife over seeds (Fisher z, t)", **extras)


def largest_step_ci(values: np.ndarray, confidence: float = 0.95) -> CI:
    """How far a curve is from falling at every step: the largest mean rise between neighbouring
    axis points, max_j mean(y_{j+1} − y_j), with a simultaneous interval.

    ``values``: (S, A), one row per seed (NaN where missing). Each step's paired difference gets a
    t-interval at level 1 − (1 − confidence)/(A − 1) (Bonferroni), so with the stated confidence
    every step lies in its interval at once, and the largest true step lies in
    [max of the lower bounds, max of the upper bounds]. The curve falls monotonically when the
    upper end is < 0; a rise anywhere shows as a lower end > 0. n = the fewest seeds of a step.
    ``ci.steps`` holds each step's mean rise."""
    y = np.asarray(values, dtype=float)
    if y.ndim != 2 or y.shape[1] < 2:
        raise ConfigError(f"largest_step_ci needs values of shape (seeds, points >= 2), got {y.shape}")
    level = 1 - (1 - confidence) / (y.shape[1] - 1)
    steps = [t_ci(y[:, j + 1] - y[:, j], level) for j in range(y.shape[1] - 1)]
    n = min(s.n for s in steps)
    estimates = [s.estimate for s in steps]
    if any(math.isnan(e) for e in estimates):
        return CI(math.nan, math.nan, math.nan, n=n, confidence=confidence, method="t per step (Bonferroni)",
                  steps=estimates)
    return CI(max(estimates), max(s.low for s in steps), max(s.high for s in steps), n=n, confidence=confidence,
              method="t per step (Bonferroni)", steps=estimates)


def trend_ci(values: np.ndarray, confidence: float = 0.95, *, rising: bool = False) -> CI:
    """Does a curve fall (or, with ``rising``, rise) across the sweep, without turning?

    ``values``: (S, A), one row per seed. The estimate and interval are those of the change from
    the first to the last axis point, last − first, paired by seed (Student-t). ``ci.against`` is
    the largest step against the claimed direction between neighbouring points (a rise for a
    falling curve, a fall for a rising one) with its simultaneous interval
    (:func:`largest_step_ci`): when its lower end is above 0 the curve turns somewhere, and a
    claim that it falls (rises) fails whatever the overall change (see
    :func:`overparam.report.verdicts.judge`). A curve that falls and then levels off keeps its
    claim; a U-shaped one does not. n = seeds with both end points."""
    y = np.asarray(values, dtype=float)
    if y.ndim != 2 or y.shape[1] < 2:
        raise ConfigError(f"trend_ci needs values of shape (seeds, points >= 2), got {y.shape}")
    change = t_ci(y[:, -1] - y[:, 0], confidence)
    against = largest_step_ci(-y if rising else y, confidence)
    return CI(*change, n=change.n, confidence=confidence, method="t (last − first), Bonferroni t per step",
              against=against)
