"""Statistics for reports: bootstrap confidence intervals over seeds, and verdicts.

Every function returns a :class:`CI`, a tuple ``(estimate, low, high)`` that also carries
``n`` (the number of independent units resampled: seeds, pairs or groups), the confidence level
and the interval ``method`` actually used. So ``est, low, high = bootstrap_ci(x)`` works, and
``ci.n`` is there for the "n=..." that every reported figure states.

Resampling is done by :func:`scipy.stats.bootstrap`. The default ``method="BCa"`` (bias-corrected
and accelerated) falls back to the plain percentile interval of the same bootstrap distribution
when BCa is undefined, which happens for degenerate data (all values equal, a statistic that is
constant on every resample); ``ci.method`` then reads ``"percentile"``. Missing values (NaN) are
dropped before resampling, and ``n`` counts what is left. With fewer units than a bootstrap can
use (n < 2 for means, n < 3 for correlations and slopes) the bounds are NaN, and a NaN interval
always gives the verdict ``inconclusive``.

Costs: ``num_resamples`` evaluations of a vectorized statistic (O(num_resamples * n) memory,
taken in batches), plus n jackknife evaluations for BCa.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Self

import numpy as np

from overparam.errors import ConfigError, check_positive_int

VERDICTS = ("reproduced", "not_reproduced", "inconclusive")
METHODS = ("BCa", "percentile", "basic")
_BATCH_ELEMENTS = 2_000_000  # resampled values held at once per sample (~16 MB of float64)


class CI(tuple):
    """``(estimate, low, high)`` with attributes ``n``, ``confidence``, ``method`` and any
    extras (``pvalue`` for :func:`spearman_ci`, ``intercept`` for :func:`loglog_slope_ci`, ...)."""

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
    """scipy.stats, imported on first use (it takes about half a second; studies import this
    module whenever they are loaded, reports are rarer)."""
    import scipy.stats

    return scipy.stats


def _check_options(confidence: float, num_resamples: int, method: str) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0 < confidence < 1:
        raise ConfigError(f"confidence must be a number in (0, 1), got {confidence!r}")
    check_positive_int("num_resamples", num_resamples)
    if method not in METHODS:
        raise ConfigError(f"unknown bootstrap method {method!r}; accepted: {', '.join(map(repr, METHODS))}")


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


def _resample(data: tuple[np.ndarray, ...], statistic: Callable, *, paired: bool, confidence: float,
              num_resamples: int, seed: int | None, method: str, vectorized: bool | None = True
              ) -> tuple[float, float, str]:
    """(low, high, method used) from scipy's bootstrap, BCa falling back to percentile."""
    size = max(len(sample) for sample in data)
    batch = int(min(num_resamples, max(1, _BATCH_ELEMENTS // max(size, 1))))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # DegenerateDataWarning, divide-by-zero in degenerate resamples
        result = _scipy().bootstrap(data, statistic, n_resamples=num_resamples, batch=batch,
                                       vectorized=vectorized, paired=paired, confidence_level=confidence,
                                       method=method, rng=np.random.default_rng(seed))
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    distribution = np.asarray(result.bootstrap_distribution, dtype=float).reshape(-1)
    finite = distribution[~np.isnan(distribution)]
    # Degenerate: the statistic is the same on every resample (up to rounding), where BCa's
    # bias correction and acceleration are undefined or meaningless.
    degenerate = finite.size > 0 and np.ptp(finite) <= 1e-12 * float(np.max(np.abs(finite)))
    if not degenerate and math.isfinite(low) and math.isfinite(high) and low <= high:
        return low, high, method
    # BCa (or basic) undefined: the percentile interval of the same resamples; resamples on which
    # the statistic is undefined (NaN) are left out, unless they are most of them.
    if finite.size < max(2, distribution.size // 2):
        return math.nan, math.nan, "percentile"
    alpha = (1 - confidence) / 2
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high), "percentile"


# --- intervals -----------------------------------------------------------------------------------


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic: Callable = np.mean, confidence: float = 0.95,
                 num_resamples: int = 10000, seed: int | None = 0, *, method: str = "BCa") -> CI:
    """Bootstrap CI of ``statistic`` of independent values (one per seed).

    ``statistic(sample, axis=-1)`` is called vectorized when it takes an ``axis`` argument (as
    ``np.mean`` and ``np.median`` do), else once per resample. NaNs are dropped; ``n`` is the
    number of values used. With n < 2: ``(statistic(values) or NaN, NaN, NaN)``.
    """
    _check_options(confidence, num_resamples, method)
    array = _vector("values", values)
    array = array[~np.isnan(array)]
    n = array.size
    if n == 0:
        return CI(math.nan, math.nan, math.nan, n=0, confidence=confidence)
    with np.errstate(all="ignore"):
        estimate = float(statistic(array))
    if n < 2:
        return CI(estimate, math.nan, math.nan, n=n, confidence=confidence)
    low, high, used = _resample((array,), statistic, paired=False, confidence=confidence,
                                num_resamples=num_resamples, seed=seed, method=method, vectorized=None)
    return CI(estimate, low, high, n=n, confidence=confidence, method=used)


def _ratio_of_means(numerators, denominators, axis=-1):
    return np.mean(numerators, axis=axis) / np.mean(denominators, axis=axis)


def ratio_ci(numerators: Sequence[float], denominators: Sequence[float], confidence: float = 0.95,
             num_resamples: int = 10000, seed: int | None = 0, *, paired: bool = True, method: str = "BCa") -> CI:
    """CI of ``mean(numerators) / mean(denominators)``, a ratio of means across seeds.

    ``paired=True`` (default): ``numerators[i]`` and ``denominators[i]`` come from the same seed
    (e.g. one seed's model measured two ways), so seeds are resampled as pairs, which keeps their
    correlation; the lengths must match, a pair with a NaN is dropped, and ``n`` is the number of
    pairs. ``paired=False``: the two lists are independent samples (different seeds, possibly
    different counts), each resampled on its own; NaNs are dropped from each, and ``n`` is the
    smaller count (``ci.n_numerators`` and ``ci.n_denominators`` give both).
    A denominator mean near zero makes the ratio, and its interval, unstable.
    """
    _check_options(confidence, num_resamples, method)
    num, den = _vector("numerators", numerators), _vector("denominators", denominators)
    if paired:
        if num.size != den.size:
            raise ConfigError(f"paired ratio_ci needs as many numerators as denominators, got {num.size} and "
                              f"{den.size}; pass paired=False for independent samples")
        keep = ~(np.isnan(num) | np.isnan(den))
        num, den = num[keep], den[keep]
        n = num.size
    else:
        num, den = num[~np.isnan(num)], den[~np.isnan(den)]
        n = min(num.size, den.size)
    counts = {"n_numerators": int(num.size), "n_denominators": int(den.size)}
    with np.errstate(all="ignore"):
        estimate = float(_ratio_of_means(num, den)) if n else math.nan
    if n < 2:
        return CI(estimate, math.nan, math.nan, n=n, confidence=confidence, **counts)
    low, high, used = _resample((num, den), _ratio_of_means, paired=paired, confidence=confidence,
                                num_resamples=num_resamples, seed=seed, method=method)
    return CI(estimate, low, high, n=n, confidence=confidence, method=used, paired=paired, **counts)


def _rank_correlation(x, y, axis=-1):
    """Spearman's rho along ``axis``: Pearson correlation of average ranks (ties as spearmanr)."""
    rx = _scipy().rankdata(x, axis=axis)
    ry = _scipy().rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    rho = (rx * ry).sum(axis=axis) / np.sqrt((rx * rx).sum(axis=axis) * (ry * ry).sum(axis=axis))
    return np.clip(rho, -1.0, 1.0)


def spearman_ci(x: Sequence[float], y: Sequence[float], confidence: float = 0.95, num_resamples: int = 10000,
                seed: int | None = 0, *, method: str = "BCa") -> CI:
    """Spearman rank correlation of paired points with a bootstrap CI over the pairs.

    The estimate and ``ci.pvalue`` (two-sided, no correlation as the null) are
    :func:`scipy.stats.spearmanr`'s. Pairs with a NaN are dropped; ``n`` is the number of pairs.
    Resamples in which x or y is constant (rho undefined) are left out of the interval. With
    n < 3 the bounds are NaN.
    """
    _check_options(confidence, num_resamples, method)
    xs, ys = _vector("x", x), _vector("y", y)
    if xs.size != ys.size:
        raise ConfigError(f"spearman_ci needs x and y of the same length, got {xs.size} and {ys.size}")
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys = xs[keep], ys[keep]
    n = xs.size
    if n < 2:
        return CI(math.nan, math.nan, math.nan, n=n, confidence=confidence, pvalue=math.nan)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # constant input: rho undefined, reported as NaN
        result = _scipy().spearmanr(xs, ys)
    estimate, pvalue = float(result.statistic), float(result.pvalue)
    if n < 3 or math.isnan(estimate):
        return CI(estimate, math.nan, math.nan, n=n, confidence=confidence, pvalue=pvalue)
    low, high, used = _resample((xs, ys), _rank_correlation, paired=True, confidence=confidence,
                                num_resamples=num_resamples, seed=seed, method=method)
    return CI(estimate, low, high, n=n, confidence=confidence, method=used, pvalue=pvalue)


def loglog_slope_ci(x: Sequence[float], y: Sequence[float], groups: Sequence[Any] | None = None,
                    confidence: float = 0.95, num_resamples: int = 10000, seed: int | None = 0, *,
                    method: str = "BCa") -> CI:
    """Least-squares slope of ``log y`` on ``log x`` (the exponent b of ``y ~ c x^b``), with a
    bootstrap CI.

    ``groups`` (e.g. the seed of each point): whole groups are resampled, so points of one seed
    (which share its noise) stay together, and ``n`` is the number of groups. Without groups
    the points are resampled, and ``n`` is the number of points. Points with a NaN are dropped;
    x and y must otherwise be positive. ``ci.intercept`` is log c (natural log) and
    ``ci.n_points`` the number of points. With fewer than two distinct x the estimate is NaN;
    with n < 3 the bounds are NaN.
    """
    _check_options(confidence, num_resamples, method)
    xs, ys = _vector("x", x), _vector("y", y)
    if xs.size != ys.size:
        raise ConfigError(f"loglog_slope_ci needs x and y of the same length, got {xs.size} and {ys.size}")
    labels = np.arange(xs.size) if groups is None else np.asarray(groups, dtype=object).reshape(-1)
    if labels.size != xs.size:
        raise ConfigError(f"loglog_slope_ci needs one group per point, got {labels.size} groups for {xs.size} points")
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys, labels = xs[keep], ys[keep], labels[keep]
    bad = (xs <= 0) | (ys <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(f"loglog_slope_ci needs positive x and y; got x={xs[i]!r}, y={ys[i]!r} "
                          f"({int(bad.sum())} non-positive point(s)); drop or offset them explicitly")
    lx, ly = np.log(xs), np.log(ys)
    # Per-group sufficient statistics (count, sums, sums of squares and products) about the
    # overall means, so a resample's slope is a sum over its groups: fully vectorized.
    mx, my = (lx.mean(), ly.mean()) if lx.size else (0.0, 0.0)
    cx, cy = lx - mx, ly - my
    _, index = np.unique(labels.astype(str) if groups is not None else labels, return_inverse=True)
    index = index.reshape(-1)
    k = int(index.max()) + 1 if index.size else 0
    sums = np.zeros((k, 5))
    for column, values in enumerate((np.ones_like(cx), cx, cy, cx * cx, cx * cy)):
        np.add.at(sums[:, column], index, values)

    def slope(chosen, axis=-1):
        chosen = np.moveaxis(np.asarray(chosen), axis, -1).astype(np.intp)
        total = sums[chosen].sum(axis=-2)
        count, sx, sy, sxx, sxy = np.moveaxis(total, -1, 0)
        return (sxy - sx * sy / count) / (sxx - sx * sx / count)

    extras = {"n_points": int(xs.size)}
    n = k
    with np.errstate(all="ignore"):
        estimate = float(slope(np.arange(k))) if k else math.nan
    if np.unique(lx).size < 2:
        estimate = math.nan
    intercept = float(my - estimate * mx) if math.isfinite(estimate) else math.nan
    if n < 3 or math.isnan(estimate):
        return CI(estimate, math.nan, math.nan, n=n, confidence=confidence, intercept=intercept, **extras)
    low, high, used = _resample((np.arange(k),), slope, paired=False, confidence=confidence,
                                num_resamples=num_resamples, seed=seed, method=method)
    return CI(estimate, low, high, n=n, confidence=confidence, method=used, intercept=intercept, **extras)


# --- verdicts ------------------------------------------------------------------------------------


def _bounds(ci: Any) -> tuple[float, float]:
    values = list(ci)
    if len(values) == 3:  # (estimate, low, high), e.g. a CI
        values = values[1:]
    if len(values) != 2:
        raise ConfigError(f"verdict needs a CI as (low, high) or (estimate, low, high), got {ci!r}")
    try:
        low, high = (math.nan if v is None else float(v) for v in values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"verdict needs numeric CI bounds, got {ci!r}") from error
    if low > high:
        raise ConfigError(f"CI lower bound {low!r} exceeds its upper bound {high!r}")
    return low, high


def verdict(ci: Any, *, greater_than: float | None = None, less_than: float | None = None,
            within: tuple[float, float] | None = None) -> str:
    """The verdict on a claim about a quantity, given the quantity's CI.

    The claim is the conjunction of the predicates given: ``value > greater_than``,
    ``value < less_than``, ``within[0] <= value <= within[1]``. ``'reproduced'`` when every value
    in the CI satisfies it, ``'not_reproduced'`` when none does, ``'inconclusive'`` when the CI
    straddles a boundary or a bound is NaN. ``ci`` is ``(low, high)`` or ``(estimate, low, high)``
    (a :class:`CI`).
    """
    if greater_than is None and less_than is None and within is None:
        raise ConfigError("verdict needs a claim: pass greater_than=, less_than= and/or within=(low, high)")
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
        return "inconclusive"
    inside_low = low > lo or (low == lo and not lo_open)
    inside_high = high < hi or (high == hi and not hi_open)
    if inside_low and inside_high:
        return "reproduced"
    empty = lo > hi or (lo == hi and (lo_open or hi_open))
    below = high < lo or (high == lo and lo_open)
    above = low > hi or (low == hi and hi_open)
    if empty or below or above:
        return "not_reproduced"
    return "inconclusive"
