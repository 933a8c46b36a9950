"""OpenMP threading defaults for the ``overparam`` command and its worker processes.

torch's CPU kernels run on GNU OpenMP (libgomp), whose worker threads spin-wait after each
parallel region (by default ~300 000 spins) before they sleep. On cores that other processes
also want (several studies at once, other jobs), that spinning takes the time slices the
other worker thread needs, and a small model trains many times slower.

``DEFAULTS`` (GOMP_SPINCOUNT=1000: spin briefly, then sleep) from bench/bench_threads.py on the
project's 2-core CPU, 2 torch threads, medians, relative to libgomp's default on a quiet
machine. Small MLP (40-128-128-10, batch 64): quiet 1.15-1.18x (PASSIVE 2.9-3.0x); with two
busy-loop processes 0.65 s vs 1.17 s; with other people's jobs as well (load average 5-15)
2.3 s vs >60 s. Large MLP (784-512-512-10, batch 1024): quiet 0.98-1.01x (PASSIVE 1.08x);
busy 1.11 s vs 1.82 s, and 2.5-4.7 s vs 14-33 s under the heavier load. GOMP_SPINCOUNT=10000
was as fast as the default when quiet but still collapsed when busy (14-26 s, small).

libgomp reads its environment once, when torch is imported, so the defaults must be in the
environment before that: :func:`apply_defaults` runs first thing in the CLI, and
:func:`worker_environment` wraps the start of process-pool (and local Ray) workers. A user's
own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is always left alone. This module does not
import torch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # either one set by the user: no defaults
DEFAULTS = {"GOMP_SPINCOUNT": "1000"}


def openmp_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """The variables :func:`apply_defaults` would add to ``environ`` (default ``os.environ``):
    ``DEFAULTS``, or nothing when the user has set OMP_WAIT_POLICY or GOMP_SPINCOUNT (libgomp
    lets GOMP_SPINCOUNT override OMP_WAIT_POLICY, so neither is added next to the other)."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in WAIT_VARIABLES):
        return {}
    return dict(DEFAULTS)


def apply_defaults(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Add :func:`openmp_defaults` to ``environ`` (default ``os.environ``); return what was set.

    On ``os.environ`` of a process that has already imported torch it sets nothing: its
    libgomp has read the environment already, and a setting not in effect would only make the
    provenance of its runs wrong (its pool workers get the defaults from
    :func:`worker_environment`)."""
    if environ is None:
        if "torch" in sys.modules:
            return {}
        environ = os.environ
    added = openmp_defaults(environ)
    environ.update(added)
    return added


@contextmanager
def worker_environment() -> Iterator[dict[str, str]]:
    """Within the block, ``os.environ`` holds :func:`openmp_defaults` (unless the user set
    their own), so that worker processes started in it (spawned, so torch is imported afresh)
    run with them; the variables added are removed again on exit. Yields what was added."""
    added = openmp_defaults()
    os.environ.update(added)
    try:
        yield added
    finally:
        for name in added:
            os.environ.pop(name, None)


def describe(wait_policy: str | None, spincount: str | None) -> str:
    """A short text for a report: 'GOMP_SPINCOUNT=10000', 'OMP_WAIT_POLICY=PASSIVE', or
    'libgomp default wait' when neither is set."""
    parts = [f"{name}={value}" for name, value in zip(WAIT_VARIABLES, (wait_policy, spincount), strict=True)
             if value is not None]
    return " ".join(parts) or "libgomp default wait"
