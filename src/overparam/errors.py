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
