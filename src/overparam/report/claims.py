"""Claims: a published statement beside our measurement, its 95% CI, n and verdict.

``claims.json`` is a JSON list with one object per claim and exactly these keys::

    {"id", "study", "statement", "paper", "measured", "ci", "n_seeds", "verdict"}

``ci`` is ``[low, high]``; a number that is undefined (NaN, e.g. the bounds with fewer than two
seeds) is written as ``null``, since JSON has no NaN. ``details`` (how the number was computed:
interval method, extra counts, the predicate tested) is kept out of the file unless asked for
with ``include_details=True``, which adds it under the key ``"details"``.
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
from overparam.report.stats import CI, VERDICTS
from overparam.report.stats import verdict as decide

KEYS = ("id", "study", "statement", "paper", "measured", "ci", "n_seeds", "verdict")


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


def describe_predicate(*, greater_than: float | None = None, less_than: float | None = None,
                       within: tuple[float, float] | None = None) -> str:
    """The claim's predicate as text, e.g. ``'value > 0 and value < 1'``."""
    parts = []
    if greater_than is not None:
        parts.append(f"value > {greater_than:g}")
    if less_than is not None:
        parts.append(f"value < {less_than:g}")
    if within is not None:
        parts.append(f"{within[0]:g} <= value <= {within[1]:g}")
    return " and ".join(parts)


@dataclass
class Claim:
    """One published claim and our measurement of it.

    ``paper`` is the published value or a short quote; ``measured`` our estimate; ``ci`` its
    ``[low, high]`` 95% interval over ``n_seeds`` seeds; ``verdict`` one of ``reproduced``,
    ``not_reproduced``, ``inconclusive``. Build one from a :class:`~overparam.report.stats.CI`
    with :meth:`from_ci`, which also decides the verdict.
    """

    id: str
    study: str
    statement: str
    paper: str | float
    measured: float
    ci: list[float]
    n_seeds: int
    verdict: str
    details: dict[str, Any] = field(default_factory=dict)

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

    @classmethod
    def from_ci(cls, id: str, study: str, statement: str, paper: str | float, ci: CI, *,
                greater_than: float | None = None, less_than: float | None = None,
                within: tuple[float, float] | None = None, n_seeds: int | None = None,
                details: Mapping[str, Any] | None = None) -> Claim:
        """A claim whose verdict is :func:`~overparam.report.stats.verdict` of ``ci`` against the
        predicate given. ``n_seeds`` defaults to ``ci.n``; ``details`` records the predicate,
        the interval method and the CI's extras (p-value, counts, ...)."""
        record: dict[str, Any] = {"predicate": describe_predicate(greater_than=greater_than, less_than=less_than,
                                                                  within=within)}
        if isinstance(ci, CI):
            record.update({"confidence": ci.confidence, "method": ci.method})
            record.update({k: v for k, v in vars(ci).items() if k not in ("n", "confidence", "method")})
        record.update(details or {})
        estimate, low, high = ci
        if n_seeds is None:
            if not isinstance(ci, CI):
                raise ConfigError(f"claim {id!r}: pass n_seeds= with a plain (estimate, low, high) tuple")
            n_seeds = ci.n
        result = decide(ci, greater_than=greater_than, less_than=less_than, within=within)
        return cls(id=id, study=study, statement=statement, paper=paper, measured=estimate, ci=[low, high],
                   n_seeds=n_seeds, verdict=result, details=record)

    def to_dict(self, include_details: bool = False) -> dict[str, Any]:
        """The JSON object: exactly :data:`KEYS` (plus ``"details"`` if asked), NaN as None."""
        out = {key: _json_safe(getattr(self, key)) for key in KEYS}
        if include_details:
            out["details"] = _json_safe(self.details)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Claim:
        missing = [key for key in KEYS if key not in data]
        if missing:
            raise DataError(f"claim {data.get('id')!r} lacks keys {missing}; a claim has {list(KEYS)}")
        return cls(**{key: data[key] for key in KEYS}, details=data.get("details") or {})


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
