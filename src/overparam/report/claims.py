"""Claims: a published statement beside our measurement, its 95% interval, n and verdict.

``claims.json`` is a JSON list with one object per claim and exactly the keys :data:`KEYS`:

- what is claimed: ``id``, ``study``, ``statement`` (what we measure and test), ``paper`` (the
  source's words or number as shown), ``source`` (where it is stated), ``paper_value`` and
  ``unit`` (the published number; null for a qualitative claim), ``tolerance`` and ``band`` (how
  far from the published number a measurement may lie, and the resulting interval);
- what we measured: ``measured``, ``ci`` (``[low, high]``, 95%), ``ci_method``, ``n_seeds``,
  ``agreement`` (for a statistic located on a grid, whose interval is a set of grid values: the
  fraction of seed resamples that give the estimate; null otherwise),
  ``ratio_to_paper`` (measured / paper_value, where there is a nonzero published number),
  ``test_examples`` and ``binomial_se`` (for accuracy effects: the test-set size and the binomial
  standard error it adds, in the claim's units);
- the judgement (rules in :mod:`overparam.report.verdicts`): ``direction`` and ``magnitude``
  (holds | fails | undecided; magnitude n/a without a number), ``verdict`` (reproduced |
  direction_only | not_reproduced | inconclusive), ``reason`` (why, when not plain) and ``rule``
  (the tests applied, in words).

A number that is undefined (NaN) is written as ``null``, since JSON has no NaN. ``details`` (extra
counts, the interval's extras) is kept out of the file unless asked for with
``include_details=True``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overparam.errors import ConfigError, DataError
from overparam.report.stats import CI
from overparam.report.verdicts import VERDICTS, Published, judge

KEYS = ("id", "study", "statement", "paper", "source", "paper_value", "unit", "tolerance", "band", "measured", "ci",
        "ci_method", "n_seeds", "agreement", "ratio_to_paper", "test_examples", "binomial_se", "direction", "magnitude",
        "verdict", "reason", "rule")
REQUIRED = ("id", "study", "statement", "paper", "measured", "ci", "n_seeds", "verdict")


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def _json_safe(value: Any) -> Any:
    """Plain JSON values: NaN/inf floats -> None, numpy scalars -> Python, tuples -> lists."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    return str(value)


@dataclass
class Claim:
    """One published claim and our measurement of it (the fields are the keys of claims.json,
    described in the module docstring). Build one with :meth:`judged`, which takes the published
    side (:class:`~overparam.report.verdicts.Published`) and our interval and decides direction,
    magnitude and verdict."""

    id: str
    study: str
    statement: str
    paper: str | float
    measured: float
    ci: list[float]
    n_seeds: int
    verdict: str
    details: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    paper_value: float | None = None
    unit: str = ""
    tolerance: str = ""
    band: list[float] | None = None
    ci_method: str = ""
    agreement: float | None = None
    ratio_to_paper: float | None = None
    test_examples: int | None = None
    binomial_se: float | None = None
    direction: str = ""
    magnitude: str = ""
    reason: str = ""
    rule: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(f"claim id must be a non-empty string, got {self.id!r}")
        if self.verdict not in VERDICTS:
            raise ConfigError(f"unknown verdict {self.verdict!r} for claim {self.id!r}; accepted: "
                              f"{', '.join(map(repr, VERDICTS))}")
        bounds = list(self.ci)
        if len(bounds) != 2:
            raise ConfigError(f"claim {self.id!r}: ci must be [low, high], got {self.ci!r}")
        self.ci = [_float(b) for b in bounds]
        self.measured = _float(self.measured)
        if isinstance(self.n_seeds, bool) or int(self.n_seeds) != self.n_seeds or self.n_seeds < 0:
            raise ConfigError(f"claim {self.id!r}: n_seeds must be a non-negative integer, got {self.n_seeds!r}")
        self.n_seeds = int(self.n_seeds)
        self.details = dict(self.details or {})
        if self.band is not None:
            self.band = [_float(b) for b in self.band]
        for name in ("paper_value", "agreement", "ratio_to_paper", "binomial_se"):
            if getattr(self, name) is not None:
                setattr(self, name, _float(getattr(self, name)))

    @classmethod
    def judged(cls, id: str, study: str, statement: str, published: Published, ci: CI, *, n_seeds: int | None = None,
               test_examples: int | None = None, binomial_se: float | None = None,
               details: Mapping[str, Any] | None = None) -> Claim:
        """A claim judged against its published source on direction and magnitude
        (:func:`overparam.report.verdicts.judge`). ``n_seeds`` defaults to ``ci.n``;
        ``binomial_se`` (with ``test_examples``): the test set's standard error of an accuracy
        effect, in the claim's units."""
        if n_seeds is None:
            if not isinstance(ci, CI):
                raise ConfigError(f"claim {id!r}: pass n_seeds= with a plain (estimate, low, high) tuple")
            n_seeds = ci.n
        estimate, low, high = ci
        result = judge(ci, published, n_seeds, binomial_se=binomial_se)
        record: dict[str, Any] = {}
        if isinstance(ci, CI):
            record.update({k: v for k, v in vars(ci).items() if k not in ("n", "confidence", "method")})
        record.update(details or {})
        value = published.value
        ratio = float(estimate) / value if value not in (None, 0) and estimate is not None else None
        return cls(id=id, study=study, statement=statement, paper=published.text, measured=estimate, ci=[low, high],
                   n_seeds=n_seeds, verdict=result.verdict, details=record, source=published.source,
                   paper_value=value, unit=published.unit.strip(),
                   tolerance=published.tolerance.describe() if published.tolerance else "",
                   band=list(published.band) if published.band else None,
                   ci_method=getattr(ci, "method", ""), agreement=getattr(ci, "agreement", None),
                   ratio_to_paper=ratio, test_examples=test_examples,
                   binomial_se=binomial_se, direction=result.direction, magnitude=result.magnitude,
                   reason=result.reason, rule=result.rule)

    def to_dict(self, include_details: bool = False) -> dict[str, Any]:
        """The JSON object: exactly :data:`KEYS` (plus ``"details"`` if asked), NaN as None."""
        out = {key: _json_safe(getattr(self, key)) for key in KEYS}
        if include_details:
            out["details"] = _json_safe(self.details)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Claim:
        missing = [key for key in REQUIRED if key not in data]
        if missing:
            raise DataError(f"claim {data.get('id')!r} lacks keys {missing}; a claim has {list(KEYS)}")
        return cls(**{key: data[key] for key in KEYS if key in data}, details=data.get("details") or {})


def check_unique_ids(claims: Iterable[Claim]) -> list[Claim]:
    claims = list(claims)
    seen: set[str] = set()
    for claim in claims:
        if not isinstance(claim, Claim):
            raise ConfigError(f"expected a Claim, got {type(claim).__name__}: {claim!r}")
        if claim.id in seen:
            raise ConfigError(f"claim id {claim.id!r} appears twice; claim ids must be unique within a report")
        seen.add(claim.id)
    return claims


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` via a temporary file and a rename (no half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_claims_json(claims: Iterable[Claim], path: str | Path, *, include_details: bool = False) -> Path:
    """Write claims as a JSON list (see the module docstring for the keys). Returns the path."""
    claims = check_unique_ids(claims)
    text = json.dumps([c.to_dict(include_details) for c in claims], indent=2, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def read_claims_json(path: str | Path) -> list[Claim]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read claims from {path}: {error}") from error
    if not isinstance(data, list):
        raise DataError(f"{path} should hold a JSON list of claims, got {type(data).__name__}")
    return [Claim.from_dict(item) for item in data]
