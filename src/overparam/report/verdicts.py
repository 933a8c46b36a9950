"""The verdict rules: a published claim against our interval, on direction and on magnitude.

A claim's source is a :class:`Published`: what the paper (or the theory) states, where, the
direction of the effect (a predicate on the quantity: ``> 1`` for a ratio, ``> 0`` for a gain,
``< 0`` for a slope) and, when the source gives a number, that number with a
:class:`Tolerance` chosen for its kind of quantity before any run:

=====================  ==========================================  ================================
quantity               tolerance band around the published value v  example
=====================  ==========================================  ================================
ratio, positive level  within a factor 2: [v/2, 2v]                 λ_max ratio 11.8x -> [5.9, 23.6]
difference (pp)        ± max(1 pp, 50% of v)                       +2.80 pp -> [1.4, 4.2]
exponent / slope       ± 0.1                                       −0.5 -> [−0.6, −0.4]
correlation            ± 0.2, same sign, inside [−1, 1]            −0.89 -> [−1, −0.69]
a study's own band     the band the study states (``range``)      η·λ_max in [1.8, 2.2] around 2
=====================  ==========================================  ================================

A claim that a quantity sits at a theory's value with no sign to test (an exponent of 2, a
ratio of 1) takes that band as its direction too; a claim the source states as a bound ("within
1.15 pp", "< 0.1%", "within an order of magnitude") is judged on the bound alone (no number).

Two tests from the 95% interval [low, high] of our estimate:

- direction: ``holds`` when every value of the interval satisfies the predicate, ``fails`` when
  none does, ``undecided`` otherwise. For an accuracy effect, an estimate within 2 binomial
  standard errors of the predicate's boundary (the test set's sampling error, which no seed
  interval contains) is never ``holds``. For a trend ("falls with width"), the interval is the
  change across the sweep and a significant step the other way between neighbouring points
  fails the direction (the curve turns).
- magnitude (only with a published number): ``holds`` when the interval lies inside the band,
  ``fails`` when it lies outside it, ``undecided`` when it straddles an end.

One verdict from both:

- ``reproduced``: direction holds and magnitude holds (or there is no number to check);
- ``direction_only``: direction holds, magnitude fails;
- ``not_reproduced``: direction fails, or the direction is undecided while the published
  magnitude is excluded;
- ``inconclusive``: anything else (an interval that decides neither), and always with fewer than
  :data:`MIN_SEEDS` seeds (``reason`` says so).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from overparam.errors import ConfigError

VERDICTS = ("reproduced", "direction_only", "not_reproduced", "inconclusive")
OUTCOMES = ("holds", "fails", "undecided")
MIN_SEEDS = 5  # no verdict from fewer seeds


@dataclass(frozen=True)
class Tolerance:
    """How far from a published number a measurement may lie and still reproduce it.

    ``kind``: ``"factor"`` (band [v/amount, v·amount], for ratios), ``"absolute"`` (v ± amount,
    for exponents), ``"points"`` (v ± max(amount, relative·|v|), for differences in percentage
    points), ``"correlation"`` (v ± amount clipped to [−1, 1] and to v's sign)."""

    kind: str
    amount: float = 0.0
    relative: float = 0.0
    low: float = math.nan
    high: float = math.nan

    @classmethod
    def range(cls, low: float, high: float) -> Tolerance:
        """A band the study states itself (fixed before its first run), e.g. η·λ_max in
        [1.8, 2.2] around 2/η, whatever the published value."""
        return cls("range", low=float(low), high=float(high))

    def band(self, value: float) -> tuple[float, float]:
        if self.kind == "range":
            return self.low, self.high
        if self.kind == "factor":
            low, high = sorted((value / self.amount, value * self.amount))
            return low, high
        if self.kind == "absolute":
            return value - self.amount, value + self.amount
        if self.kind == "points":
            width = max(self.amount, self.relative * abs(value))
            return value - width, value + width
        if self.kind == "correlation":
            low, high = max(-1.0, value - self.amount), min(1.0, value + self.amount)
            return (max(low, 0.0), high) if value > 0 else (low, min(high, 0.0))
        raise ConfigError(f"unknown tolerance kind {self.kind!r}; accepted: factor, absolute, points, correlation, "
                          f"range")

    def describe(self) -> str:
        if self.kind == "factor":
            return f"within a factor {self.amount:g}"
        if self.kind == "absolute":
            return f"± {self.amount:g}"
        if self.kind == "range":
            return f"in [{self.low:g}, {self.high:g}]"
        if self.kind == "points":
            return f"± max({self.amount:g} pp, {self.relative:.0%})"
        return f"same sign, ± {self.amount:g}"


RATIO = Tolerance("factor", 2.0)
DIFFERENCE_PP = Tolerance("points", 1.0, 0.5)
EXPONENT = Tolerance("absolute", 0.1)
CORRELATION = Tolerance("correlation", 0.2)


@dataclass(frozen=True)
class Direction:
    """The effect's sign or order as a predicate on the quantity: ``value > greater_than``,
    ``value < less_than``, ``within[0] <= value <= within[1]`` (the conjunction of those given)."""

    greater_than: float | None = None
    less_than: float | None = None
    within: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.greater_than is None and self.less_than is None and self.within is None:
            raise ConfigError("a Direction needs greater_than=, less_than= and/or within=(low, high)")

    def kwargs(self) -> dict[str, Any]:
        return {k: v for k, v in (("greater_than", self.greater_than), ("less_than", self.less_than),
                                  ("within", self.within)) if v is not None}

    def boundary(self) -> float:
        """The value the effect must clear (for the 2-binomial-SE rule)."""
        return self.greater_than if self.greater_than is not None else (
            self.less_than if self.less_than is not None else math.nan)

    def describe(self) -> str:
        parts = []
        if self.greater_than is not None:
            parts.append(f"> {self.greater_than:g}")
        if self.less_than is not None:
            parts.append(f"< {self.less_than:g}")
        if self.within is not None:
            parts.append(f"in [{self.within[0]:g}, {self.within[1]:g}]")
        return " and ".join(parts)


def above(value: float) -> Direction:
    return Direction(greater_than=value)


def below(value: float) -> Direction:
    return Direction(less_than=value)


def between(low: float, high: float) -> Direction:
    return Direction(within=(low, high))


@dataclass(frozen=True)
class Published:
    """A claim as its source states it, fixed before any run.

    ``text``: the source's words or number as the report shows them; ``source``: where (paper
    section, or the theory it comes from); ``direction``: the effect's sign/order; ``value``,
    ``unit`` and ``tolerance``: the published number, when there is one (``value=None``: a
    qualitative claim, judged on direction only)."""

    text: str
    source: str
    direction: Direction
    value: float | None = None
    unit: str = ""
    tolerance: Tolerance | None = None

    def __post_init__(self) -> None:
        if (self.value is None) != (self.tolerance is None):
            raise ConfigError(f"published claim {self.text!r}: a number needs a tolerance and a tolerance a number "
                              f"(value={self.value!r}, tolerance={self.tolerance!r})")

    @property
    def band(self) -> tuple[float, float] | None:
        return None if self.value is None else self.tolerance.band(self.value)


@dataclass(frozen=True)
class Judgement:
    direction: str  # holds | fails | undecided
    magnitude: str  # holds | fails | undecided | n/a
    verdict: str
    reason: str
    rule: str


def _outcome(ci: Any, **predicate: Any) -> str:
    from overparam.report.stats import decide

    return decide(ci, **predicate)


def judge(ci: Any, published: Published, n_seeds: int, *, binomial_se: float | None = None,
          min_seeds: int = MIN_SEEDS) -> Judgement:
    """Direction, magnitude and the verdict of ``ci`` (estimate, low, high) against ``published``
    (rules in the module docstring). ``binomial_se``: the test set's standard error of an accuracy
    effect, in the quantity's units."""
    estimate, low, high = (math.nan if v is None else float(v) for v in ci)
    direction = _outcome((low, high), **published.direction.kwargs())
    rule = f"direction: {published.direction.describe()}"
    reason = ""
    if direction == "holds" and binomial_se is not None and binomial_se > 0:
        rule += f" and more than 2 binomial SE ({2 * binomial_se:.3g}) from {published.direction.boundary():g}"
        if abs(estimate - published.direction.boundary()) <= 2 * binomial_se:
            direction, reason = "undecided", "within 2 binomial SE of the test set"
    against = getattr(ci, "against", None)  # a trend's largest step the wrong way (stats.trend_ci)
    if against is not None:
        rule += (f" without a step the other way (largest such step {against[0]:.3g} "
                 f"[{against[1]:.3g}, {against[2]:.3g}], simultaneous)")
        if against[1] > 0:
            direction, reason = "fails", "it turns: a step between neighbouring points goes the other way"
    magnitude = "n/a"
    if published.band is not None:
        band = published.band
        magnitude = _outcome((low, high), within=band)
        if published.tolerance.kind == "range":
            rule += f"; magnitude: {published.value:g}{published.unit}, the study's band [{band[0]:.3g}, {band[1]:.3g}]"
        else:
            rule += (f"; magnitude: {published.tolerance.describe()} of {published.value:g}{published.unit} "
                     f"= [{band[0]:.3g}, {band[1]:.3g}]")
    else:
        rule += "; magnitude: no published number"
    if n_seeds < min_seeds:
        return Judgement(direction, magnitude, "inconclusive", f"n < {min_seeds}", rule)
    if direction == "fails":
        verdict = "not_reproduced"
    elif direction == "holds":
        verdict = {"holds": "reproduced", "n/a": "reproduced", "fails": "direction_only"}.get(magnitude, "inconclusive")
        if magnitude == "undecided":
            reason = "magnitude undecided"
    elif magnitude == "fails":
        verdict, reason = "not_reproduced", reason or "direction undecided and the published magnitude excluded"
    else:
        verdict, reason = "inconclusive", reason or "direction undecided"
    return Judgement(direction, magnitude, verdict, reason, rule)
