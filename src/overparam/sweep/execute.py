"""Running a study's grid into the store: plan, execute (inline or a process pool), record.

The driver alone writes the store. Each run is marked ``running`` when it starts and finished
in one transaction with its metrics and curves, so killing the driver loses at most the runs
in flight; the next invocation requeues them and skips every run already done or diverged.
A run that raises is stored as ``failed`` with its traceback, and the sweep goes on.
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from overparam.errors import ConfigError, check_positive_int
from overparam.studies import get_study
from overparam.studies.base import RunOutcome, RunSpec, Study, config_dict
from overparam.sweep.store import ResultsStore


@dataclass
class SweepSummary:
    study: str
    total: int
    skipped: int
    ran: int
    counts: dict[str, int]
    failures: list[tuple[str, str]]  # (run key, last line of the traceback)


def _execute(study_name: str, spec: RunSpec, device: str | None) -> tuple[str, RunOutcome | None, str | None]:
    """Run one grid point; never raises (a failure comes back as its traceback)."""
    try:
        return spec.key, get_study(study_name).run_one(spec, device), None
    except Exception:  # noqa: BLE001 - every failure is recorded, the sweep goes on
        return spec.key, None, traceback.format_exc()


BACKENDS = ("local", "ray")


def run_sweep(study: Study, config: Any, out: str | Path, *, workers: int = 1, device: str | None = None,
              progress: bool = True, backend: str = "local", address: str | None = None,
              num_cpus_per_run: float = 1.0, num_gpus_per_run: float = 0.0) -> SweepSummary:
    """Run every grid point of ``study`` under ``config`` not yet done in ``out``'s store.

    backend 'local': inline (``workers=1``) or a spawn process pool of ``workers``.
    backend 'ray': each run is a Ray task with ``num_cpus_per_run``/``num_gpus_per_run``;
    ``address`` joins an existing cluster, otherwise a local instance is started (and shut
    down afterwards). Results flow back to this driver, which alone writes the store.
    """
    check_positive_int("workers", workers)
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; accepted: {BACKENDS}")
    specs = study.grid(config)  # validates every point before anything runs
    resolved = config_dict(config)
    with ResultsStore(out) as store:
        store.requeue_interrupted(study.name)
        store.add_pending(study.name, [(s.key, {"study_config": resolved, "params": s.params}, s.seed)
                                       for s in specs])
        todo_keys = set(store.todo(study.name, [s.key for s in specs]))
        todo = [s for s in specs if s.key in todo_keys]
        failures: list[tuple[str, str]] = []

        def record(key: str, outcome: RunOutcome | None, error: str | None) -> None:
            if outcome is None:
                failures.append((key, error.strip().splitlines()[-1]))
                store.finish(study.name, key, status="failed", metrics={}, error=error)
            else:
                store.finish(study.name, key, status=outcome.status, metrics=outcome.metrics, curves=outcome.curves,
                             wall_time_s=outcome.wall_time_s, provenance=outcome.provenance)

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn(f"{study.name}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      TextColumn("{task.fields[last]}"), disable=not progress, transient=False) as bar:
            task = bar.add_task(study.name, total=len(todo), last="")
            if backend == "ray":
                for key, outcome, error, spec in _ray_results(study.name, todo, device, address, num_cpus_per_run,
                                                              num_gpus_per_run, workers,
                                                              lambda spec: store.mark_running(study.name, spec.key,
                                                                                              device=device)):
                    record(key, outcome, error)
                    bar.update(task, advance=1, last=spec.key)
            elif workers == 1:
                for spec in todo:
                    store.mark_running(study.name, spec.key, device=device)
                    record(*_execute(study.name, spec, device))
                    bar.update(task, advance=1, last=spec.key)
            else:
                context = multiprocessing.get_context("spawn")
                with futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                    pending = {}
                    for spec in todo:
                        store.mark_running(study.name, spec.key, device=device)
                        pending[pool.submit(_execute, study.name, spec, device)] = spec
                    for done in futures.as_completed(pending):
                        record(*done.result())
                        bar.update(task, advance=1, last=pending[done].key)
        counts = store.status_counts(study.name)
    return SweepSummary(study.name, len(specs), len(specs) - len(todo), len(todo), counts, failures)


def _ray_results(study_name: str, todo: list[RunSpec], device: str | None, address: str | None, num_cpus: float,
                 num_gpus: float, workers: int, on_submit):
    """Yield (key, outcome, error, spec) as Ray tasks finish."""
    try:
        import ray
    except ImportError as error:
        raise ConfigError("backend 'ray' needs Ray: pip install 'overparam[ray]' (or pip install ray)") from error
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=max(workers, int(num_cpus)), include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_retries=0)(_execute)
        pending = {}
        for spec in todo:
            on_submit(spec)
            pending[remote.remote(study_name, spec, device)] = spec
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(ready[0])
            try:
                key, outcome, error = ray.get(ready[0])
            except Exception:  # noqa: BLE001 - a task that died (worker crash) is a failed run
                key, outcome, error = spec.key, None, traceback.format_exc()
            yield key, outcome, error, spec
    finally:
        if started_here:
            ray.shutdown()


def run_study(name: str, *, preset: str | None = None, file_values: dict | None = None, overrides=(),
              seeds: int | None = None, out: str | Path, workers: int = 1, device: str | None = None,
              progress: bool = True, backend: str = "local", address: str | None = None) -> SweepSummary:
    study = get_study(name)
    config = study.resolve(preset, file_values, [*overrides, *([f"seeds={seeds}"] if seeds is not None else [])])
    return run_sweep(study, config, out, workers=workers, device=device, progress=progress, backend=backend,
                     address=address)
