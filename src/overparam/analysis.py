"""The analysis layer: stored runs -> per-seed tables -> intervals. Studies compute numbers here,
never by hand.

Every study's report goes ``rows -> runs -> analyze -> claims -> render``. This module holds the
first steps and the statistics every study shares:

- :class:`Run`: one stored run parsed once: its seed, status, the study's settings of its grid
  point, the typed :class:`~overparam.config.RunConfig` (training studies), metrics and curves.
- :func:`group`: runs split into arms by a key function (sorted keys).
- :class:`SeedTable`: the runs of one arm pivoted by an axis (a function of the run, e.g.
  ``lambda run: run.config.model.options["width"]``) and seed. ``table["test_acc"]`` is an array
  ``(seeds, axis)`` (``(seeds, axis, k)`` for a list-valued metric), NaN where a run is missing
  or its value is not a finite number. From it: per-point intervals (:meth:`SeedTable.cis`),
  paired differences and ratios between two axis points (paired by seed), and the matrix of a
  curve (:meth:`SeedTable.curve`).
- :func:`resample_seeds`: the bootstrap of a statistic of whole seed curves (thresholds, peaks,
  slopes): seeds are drawn with replacement, each drawn seed keeps its whole curve, the per-axis
  means are recomputed and the statistic evaluated on every resample at once.

The interval methods themselves live in :mod:`overparam.report.stats`; this module decides which
one a kind of estimate uses, so that choice is made in one place.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.errors import ConfigError

NUM_RESAMPLES = 4000  # seed resamples for statistics of whole curves


# --- runs ----------------------------------------------------------------------------------------


def number(value: Any) -> float:
    """A stored value as a float: NaN for None, non-numbers and the store's "nan"/"inf" strings
    of non-finite floats (which plain JSON cannot hold) are parsed back."""
    if isinstance(value, bool) or value is None:
        return math.nan if value is None else float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


@dataclass(frozen=True)
class Run:
    """One stored run, parsed once from its store row.

    ``settings`` are the study's own settings of the grid point (the stored ``params`` without
    the run config); ``config`` is the typed run config of a training study (``None`` for studies
    whose runs are not a :class:`~overparam.config.RunConfig`); ``curves`` maps a curve name to
    its ``(step, value)`` points."""

    key: str
    seed: int
    status: str
    settings: Mapping[str, Any]
    config: Any
    metrics: Mapping[str, Any]
    curves: Mapping[str, Sequence[tuple[int, float]]] = field(default_factory=dict)
    wall_time_s: float = math.nan

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Run:
        from overparam.config import RunConfig

        params = dict((row.get("config") or {}).get("params") or {})
        raw = params.pop("run", None)
        if raw is None and {"data", "model", "train", "seed"} <= set(params):
            raw, params = params, {}  # the generic train study stores the run config itself
        return cls(key=str(row.get("run_key", "")), seed=int(row["seed"]), status=str(row["status"]),
                   settings=params, config=None if raw is None else RunConfig.from_dict(raw),
                   metrics=row.get("metrics") or {}, curves=row.get("curves") or {},
                   wall_time_s=number(row.get("wall_time_s")))

    def metric(self, name: str) -> float:
        """A scalar metric as a float (NaN when missing or not a number)."""
        return number(self.metrics.get(name))

    def curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A stored curve as ``(steps, values)`` arrays (empty when the run has none)."""
        points = self.curves.get(name) or []
        steps = np.asarray([int(s) for s, _ in points], dtype=np.int64)
        return steps, np.asarray([number(v) for _, v in points], dtype=float)


def split_by_target(runs: Iterable[Run]) -> tuple[list[Run], list[Run]]:
    """(runs that reached their training target or had none, runs that missed it within their
    cap). A run that trained to a target stores ``reached_target`` (see
    :class:`~overparam.train.TrainConfig`); claims compare solutions, so studies judge on the
    first list and report the second."""
    reached, missed = [], []
    for run in runs:
        (missed if run.metrics.get("reached_target") is False else reached).append(run)
    return reached, missed


def runs_from_rows(rows: Iterable[Mapping[str, Any] | Run], statuses: Sequence[str] = ("done",)) -> list[Run]:
    """The rows of the given statuses (default: finished runs) as :class:`Run` objects."""
    out = []
    for row in rows:
        run = row if isinstance(row, Run) else None
        status = run.status if run is not None else row["status"]
        if status in statuses:
            out.append(run if run is not None else Run.from_row(row))
    return out


def sort_key(value: Any) -> Any:
    """Numbers before strings, tuples elementwise: a total order for mixed axis values."""
    if isinstance(value, tuple):
        return tuple(sort_key(v) for v in value)
    if value is None:
        return (-1, 0, "")
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def group(runs: Iterable[Run], key: Callable[[Run], Any]) -> dict[Any, list[Run]]:
    """Runs grouped by ``key(run)``, keys in sorted order (numbers before strings)."""
    out: dict[Any, list[Run]] = {}
    for run in runs:
        out.setdefault(key(run), []).append(run)
    return dict(sorted(out.items(), key=lambda item: sort_key(item[0])))


@dataclass(frozen=True)
class Missing:
    """What ``analyze`` returns when there is nothing to analyze yet: the report shows
    ``message`` under ``title`` and makes no claims."""

    title: str
    message: str


# --- the per-seed table --------------------------------------------------------------------------


class SeedTable:
    """Runs pivoted by seed (rows) and an axis (columns).

    ``SeedTable(runs, axis)``: ``axis(run)`` gives each run's column (None: one column). Two runs
    at the same (seed, axis value) are a ``ConfigError``. ``table[metric]`` is ``(S, A)`` float
    for a scalar metric and ``(S, A, K)`` for a list-valued one (NaN-padded), NaN where a run is
    missing or the value is not a finite number; ``metric`` may also be a function of the run.
    """

    def __init__(self, runs: Iterable[Run], axis: Callable[[Run], Any] | None = None) -> None:
        runs = list(runs)
        axis = axis or (lambda run: None)
        self.axis = sorted({axis(r) for r in runs}, key=sort_key)
        self.seeds = sorted({r.seed for r in runs})
        column = {value: j for j, value in enumerate(self.axis)}
        row = {seed: i for i, seed in enumerate(self.seeds)}
        self.runs: list[list[Run | None]] = [[None] * len(self.axis) for _ in self.seeds]
        for run in runs:
            i, j = row[run.seed], column[axis(run)]
            if self.runs[i][j] is not None:
                raise ConfigError(f"two runs at seed {run.seed} and axis value {self.axis[j]!r} ({self.runs[i][j].key} "
                                  f"and {run.key}); pivot a table by an axis that tells them apart")
            self.runs[i][j] = run
        self._cache: dict[Any, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.axis)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.seeds), len(self.axis)

    def index(self, value: Any) -> int:
        try:
            return self.axis.index(value)
        except ValueError:
            raise ConfigError(f"axis value {value!r} is not in this table; it has {self.axis}") from None

    def __getitem__(self, metric: str | Callable[[Run], Any]) -> np.ndarray:
        if metric in self._cache:
            return self._cache[metric]
        get = metric if callable(metric) else (lambda run: run.metrics.get(metric))
        cells = [[None if run is None else get(run) for run in row] for row in self.runs]
        lengths = {len(v) for row in cells for v in row if isinstance(v, (list, tuple))}
        if lengths:
            out = np.full(self.shape + (max(lengths),), np.nan)
            for i, row in enumerate(cells):
                for j, value in enumerate(row):
                    if isinstance(value, (list, tuple)):
                        out[i, j, :len(value)] = [number(v) for v in value]
        else:
            out = np.asarray([[number(v) for v in row] for row in cells], dtype=float).reshape(self.shape)
        out[~np.isfinite(out)] = np.nan
        self._cache[metric] = out
        return out

    def at(self, metric: str | Callable[[Run], Any], value: Any) -> np.ndarray:
        """The metric at one axis value, one entry per seed (S,) (NaN where missing)."""
        return self[metric][:, self.index(value)]

    def by_seed(self, metric: str | Callable[[Run], Any], value: Any = None) -> dict[int, float]:
        """{seed: value} at one axis value, finite values only."""
        column = self.at(metric, value)
        return {seed: float(v) for seed, v in zip(self.seeds, column) if math.isfinite(v)}

    def counts(self, metric: str | Callable[[Run], Any]) -> list[int]:
        """Seeds with a finite value, per axis point."""
        values = self[metric]
        finite_mask = np.isfinite(values) if values.ndim == 2 else np.isfinite(values).any(axis=-1)
        return [int(c) for c in finite_mask.sum(axis=0)]

    def n_runs(self) -> list[int]:
        """Runs per axis point."""
        return [sum(row[j] is not None for row in self.runs) for j in range(len(self.axis))]

    def mean(self, metric: str | Callable[[Run], Any]) -> np.ndarray:
        """Mean over seeds per axis point (NaN where no seed has a value)."""
        with quiet():
            return np.nanmean(self[metric], axis=0)

    def cis(self, metric: str | Callable[[Run], Any], scale: float = 1.0) -> list:
        """The interval of the mean over seeds at every axis point (:func:`mean_ci`)."""
        values = self[metric]
        return [mean_ci(scale * values[:, j]) for j in range(len(self.axis))]

    def ci(self, metric: str | Callable[[Run], Any], value: Any = None, scale: float = 1.0):
        """The interval of the mean over seeds at one axis point (:func:`mean_ci`)."""
        return mean_ci(scale * self.at(metric, value))

    def difference(self, metric: str | Callable[[Run], Any], a: Any, b: Any, scale: float = 1.0):
        """``(metric[a] − metric[b]) · scale``, paired by seed (:func:`paired_difference`)."""
        return paired_difference(self.at(metric, a), self.at(metric, b), scale)

    def ratio(self, metric: str | Callable[[Run], Any], a: Any, b: Any):
        """``mean(metric[a]) / mean(metric[b])``, paired by seed (:func:`paired_ratio`)."""
        return paired_ratio(self.at(metric, a), self.at(metric, b))

    def slope(self, metric: str | Callable[[Run], Any], x: Sequence[float] | None = None, *, log: bool = True):
        """The (log-log) slope of the metric against the axis (or ``x``, one value per axis point),
        fitted per seed, with a t-interval over seeds (:func:`seed_slope_ci`)."""
        from overparam.report.stats import seed_slope_ci

        return seed_slope_ci(self.axis if x is None else x, self[metric], log=log)

    def trend(self, metric: str | Callable[[Run], Any], *, rising: bool = False):
        """Whether the metric falls (``rising``: rises) across the axis without turning: the
        change from the first to the last point, paired by seed, with the largest step the other
        way between neighbours (:func:`~overparam.report.stats.trend_ci`). The claim for "falls
        with width" is ``below(0)``; for "rises", ``above(0)``."""
        from overparam.report.stats import trend_ci

        return trend_ci(self[metric], rising=rising)

    def correlation(self, x: str | Callable[[Run], Any], y: str | Callable[[Run], Any]):
        """Spearman's ρ between two metrics over every run of the table, seeds as clusters
        (:func:`clustered_spearman_ci`; n = seeds)."""
        from overparam.report.stats import clustered_spearman_ci

        xs, ys = self[x], self[y]
        seeds = np.broadcast_to(np.asarray(self.seeds)[:, None], xs.shape)
        return clustered_spearman_ci(xs.reshape(-1), ys.reshape(-1), seeds.reshape(-1))

    def curve(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """A stored curve of every run as ``(steps (K,), values (S, A, K))``, on the union of
        the steps any run recorded (NaN where a run has no point)."""
        points = [[(run.curve(name) if run is not None else (np.zeros(0, np.int64), np.zeros(0))) for run in row]
                  for row in self.runs]
        steps = np.unique(np.concatenate([s for row in points for s, _ in row] or [np.zeros(0, np.int64)]))
        where = {int(s): k for k, s in enumerate(steps)}
        out = np.full(self.shape + (len(steps),), np.nan)
        for i, row in enumerate(points):
            for j, (s, v) in enumerate(row):
                out[i, j, [where[int(t)] for t in s]] = v
        out[~np.isfinite(out)] = np.nan
        return steps, out


# --- intervals: which method each kind of estimate uses ------------------------------------------
#
# Seeds are the independent units. Means and paired differences over seeds: Student-t. Ratios
# between two arms: the log-scale t-interval of the per-seed ratios (Fieller's interval when a
# value is not positive). Slopes: per-seed fits, t over seeds. Correlations over runs: Spearman
# pooled over the runs, seeds as clusters (delete-one-seed jackknife). Statistics of whole curves
# (thresholds, peaks): seeds resampled with their whole curves. Coverage: tests/test_coverage.py.


def mean_ci(values: Sequence[float] | np.ndarray):
    """The mean over seeds with its 95% Student-t interval (NaNs dropped; n = the seeds left)."""
    from overparam.report.stats import t_ci

    return t_ci(values)


def _pairs(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ConfigError(f"paired values need the same shape (one per seed), got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, scale: float = 1.0):
    """The mean of ``(a − b) · scale`` over the seeds both have (entry i of each is seed i), with
    its 95% Student-t interval."""
    a, b = _pairs(a, b)
    return mean_ci(scale * (a - b))


def paired_ratio(numerators: Sequence[float] | np.ndarray, denominators: Sequence[float] | np.ndarray):
    """The ratio of two arms over the seeds both have: the geometric mean of the per-seed ratios
    with its log-scale t-interval (positive values), else mean/mean with Fieller's interval
    (:func:`~overparam.report.stats.paired_ratio_ci`)."""
    from overparam.report.stats import paired_ratio_ci

    a, b = _pairs(numerators, denominators)
    return paired_ratio_ci(a, b)


def correlation(runs: Iterable[Run], x: str | Callable[[Run], float], y: str | Callable[[Run], float]):
    """Spearman's ρ between two metrics over runs, seeds as clusters: the estimate pools every
    run with both values finite; the interval leaves one seed out at a time (n = seeds;
    :func:`~overparam.report.stats.clustered_spearman_ci`)."""
    from overparam.report.stats import clustered_spearman_ci

    get_x = x if callable(x) else (lambda run: run.metric(x))
    get_y = y if callable(y) else (lambda run: run.metric(y))
    points = [(number(get_x(r)), number(get_y(r)), r.seed) for r in runs]
    points = [p for p in points if math.isfinite(p[0]) and math.isfinite(p[1])]
    return clustered_spearman_ci([p[0] for p in points], [p[1] for p in points], [p[2] for p in points])


def binomial_se(accuracy_a: float, accuracy_b: float, test_examples: int, scale: float = 100.0) -> float:
    """The standard error a finite test set adds to a difference of two accuracies measured on
    it, sqrt((p_a(1 − p_a) + p_b(1 − p_b)) / n_test) · scale (percentage points by default; an
    upper bound, since both models see the same examples). Every seed is evaluated on the same
    test set, so no interval over seeds contains this error."""
    if not test_examples or not (math.isfinite(accuracy_a) and math.isfinite(accuracy_b)):
        return math.nan
    return scale * math.sqrt((accuracy_a * (1 - accuracy_a) + accuracy_b * (1 - accuracy_b)) / test_examples)


# --- statistics of whole seed curves -------------------------------------------------------------


@contextlib.contextmanager
def quiet():
    """Silence numpy's warnings about empty slices and invalid values (an all-NaN column is a
    missing point, and stays NaN)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def resample_seeds(values: Mapping[str, np.ndarray], statistic: Callable[[dict[str, np.ndarray]], Any],
                   num_resamples: int = NUM_RESAMPLES, seed: int = 0) -> tuple[Any, Any]:
    """A statistic of the mean curves, on all seeds and on seed resamples.

    ``values`` maps names to arrays ``(S, ...)`` whose first axis is the seed (the same seeds in
    every array). ``statistic(means)`` receives ``{name: mean over seeds}`` with a leading batch
    axis of any size, shape ``(..., A)``, and must be vectorized over it. Returns ``(estimate,
    resampled)``: the statistic of the means over all seeds, and of the means over
    ``num_resamples`` resamples (each draws S seeds with replacement, whole curves kept together,
    so differences between axis points stay paired by seed). ``resampled`` is None with fewer
    than two seeds. Cost: ``num_resamples · S`` curve rows held at once.
    """
    sizes = {len(v) for v in values.values()}
    if len(sizes) != 1:
        raise ConfigError(f"resample_seeds needs one row per seed in every array, got sizes {sorted(sizes)}")
    n = sizes.pop()
    with quiet():
        estimate = statistic({k: np.nanmean(v, axis=0) for k, v in values.items()})
        if n < 2:
            return estimate, None
        index = np.random.default_rng(seed).integers(0, n, size=(num_resamples, n))
        resampled = statistic({k: np.nanmean(v[index], axis=1) for k, v in values.items()})
    return estimate, resampled


def percentile_interval(draws: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The order-statistic percentile interval of resampled values (no interpolation, so values
    on a grid stay on it and infinite values are kept as such)."""
    ordered = np.sort(np.asarray(draws, dtype=float).reshape(-1))
    alpha = (1 - confidence) / 2
    return float(ordered[math.floor(alpha * len(ordered))]), float(ordered[math.ceil((1 - alpha) * len(ordered)) - 1])


def resampled_ci(estimate: float, draws: np.ndarray | None, n: int, **extras: Any):
    """A :class:`~overparam.report.stats.CI` from a curve statistic and its seed resamples
    (:func:`resample_seeds`): the percentile interval, NaN bounds without resamples. For a
    statistic on a grid (a located peak, a width ratio) the interval is a set of grid values, so
    ``ci.agreement`` also gives the fraction of resamples equal to the estimate (the report shows
    it beside the interval)."""
    from overparam.report.stats import CI

    if draws is None or n < 2:
        return CI(float(estimate), math.nan, math.nan, n=n, **extras)
    low, high = percentile_interval(draws)
    values = np.asarray(draws, dtype=float).reshape(-1)
    agreement = float(np.mean(values == float(estimate)))
    return CI(float(estimate), low, high, n=n, method="percentile (seeds resampled)", resamples=int(values.size),
              agreement=agreement, **extras)


@dataclass(frozen=True)
class Located:
    """A quantity located on a grid (an interpolation threshold, a peak): not a point with a
    confidence interval, but the grid point the seed-mean curve picks, the bracket of grid values
    the true location lies in, and how many seed resamples pick the same grid point.

    ``index``: the picked grid index (-1: none); ``value``: the grid value there (NaN if none);
    ``low``/``high``: the bracket (for a first crossing, the previous grid value and this one;
    for an extremum, its two neighbours, clipped to the grid's ends); ``agreement``: the fraction
    of resamples that pick the same index (NaN without resamples); ``n``: seeds."""

    index: int
    value: float
    low: float
    high: float
    agreement: float
    n: int

    def describe(self, unit: str = "", digits: int = 4) -> str:
        """E.g. '6538 (between 3274 and 6538; 96% of 4000 seed resamples agree)'."""
        if self.index < 0:
            return "not located on this grid"
        text = f"{self.value:.{digits}g}{unit} (between {self.low:.{digits}g} and {self.high:.{digits}g}"
        if math.isfinite(self.agreement):
            text += f"; {self.agreement:.0%} of seed resamples pick the same grid point"
        return text + ")"


def locate_on_grid(grid: Sequence[float], estimate: int, resampled: np.ndarray | None, n: int, *,
                   kind: str = "crossing") -> Located:
    """A :class:`Located` from the index the seed-mean curve picks (``estimate``; -1 for none)
    and the indices seed resamples pick (:func:`resample_seeds`). ``kind``: ``"crossing"`` (the
    first grid point past a level: the true crossing lies after the previous point) or
    ``"extremum"`` (a peak or a minimum: it lies between the neighbours)."""
    values = np.asarray(grid, dtype=float)
    agreement = math.nan if resampled is None else float(np.mean(np.asarray(resampled) == estimate))
    if estimate < 0:
        return Located(-1, math.nan, math.nan, math.nan, agreement, n)
    if kind == "crossing":
        low, high = values[max(estimate - 1, 0)], values[estimate]
    elif kind == "extremum":
        low, high = values[max(estimate - 1, 0)], values[min(estimate + 1, len(values) - 1)]
    else:
        raise ConfigError(f"unknown located kind {kind!r}; accepted: 'crossing', 'extremum'")
    return Located(int(estimate), float(values[estimate]), float(low), float(high), agreement, n)

