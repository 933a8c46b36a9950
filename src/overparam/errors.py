"""One exception family for everything a user can get wrong.

Every message names the bad value and what is accepted. The CLI prints ``str(error)`` on one
line and exits non-zero, without a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


class OverparamError(Exception):
    """Base class of all errors raised for bad input or a bad environment."""


class ConfigError(OverparamError, ValueError):
    """A configuration value (name, number, shape, option) is not accepted."""


class DataError(OverparamError):
    """A dataset is missing, corrupted, truncated, or fails its checksum."""


class ModelError(ConfigError):
    """A model cannot be built from the given configuration."""


def choice_error(what: str, value: object, accepted: Iterable[object], cls=ConfigError) -> OverparamError:
    """``cls`` with the standard message for a value outside a fixed set of choices."""
    options = ", ".join(repr(a) for a in accepted)
    return cls(f"unknown {what} {value!r}; accepted: {options}")


def check_positive_int(name: str, value: object, minimum: int = 1, cls=ConfigError) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise ``cls`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise cls(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_optional_nonnegative(name: str, value: object, default: str, cls=ConfigError) -> float | None:
    """Return ``value`` if it is None (meaning ``default``, a rule described in words) or a finite
    number >= 0, else raise ``cls`` naming it."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not (math.isfinite(value) and value >= 0)):
        raise cls(f"{name} must be null (the default rule {default}) or a finite number >= 0, got {value!r}")
    return value


def check_fraction(name: str, value: object, *, closed_upper: bool = False, cls=ConfigError) -> float:
    """Return ``value`` as a float in [0, 1) (or [0, 1] with ``closed_upper``), else raise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = 0.0 <= value <= 1.0 if closed_upper else 0.0 <= value < 1.0
    if not ok:
        upper = "1]" if closed_upper else "1)"
        raise cls(f"{name} must be a number in [0, {upper}, got {value!r}")
    return value


def check_number(name: str, value: object, *, minimum: float = -math.inf, maximum: float = math.inf,
                 open_low: bool = False, open_high: bool = False, cls=ConfigError) -> float:
    """Return ``value`` as a float if it is a finite number in the interval from ``minimum`` to
    ``maximum`` (ends open or closed as asked), else raise ``cls`` naming it and the interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > minimum if open_low else value >= minimum) and (value < maximum if open_high else value <= maximum)
    if not ok:
        if maximum == math.inf:
            where = f" {'>' if open_low else '>='} {minimum:g}" if minimum > -math.inf else ""
        elif minimum == -math.inf:
            where = f" {'<' if open_high else '<='} {maximum:g}"
        else:
            where = f" in {'(' if open_low else '['}{minimum:g}, {maximum:g}{')' if open_high else ']'}"
        raise cls(f"{name} must be a finite number{where}, got {value!r}")
    return float(value)


def as_tuple(value: object) -> tuple:
    """A list or tuple as a tuple; any other value as a 1-tuple (a config may give one value)."""
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def check_numbers(name: str, values: object, *, at_least: int = 1, integer: bool = False, cls=ConfigError,
                  **bounds: object) -> tuple:
    """A list of at least ``at_least`` distinct numbers (integers with ``integer``), each checked
    by :func:`check_number` with ``bounds``; returned as a tuple in the given order."""
    items = as_tuple(values)
    if len(items) < at_least or len(set(items)) != len(items):
        raise cls(f"{name} must be a list of at least {at_least} different number(s), got {values!r}")
    for item in items:
        if integer and (isinstance(item, bool) or not isinstance(item, int)):
            raise cls(f"each of {name} must be an integer, got {item!r}")
        check_number(f"each of {name}", item, cls=cls, **bounds)
    return items
