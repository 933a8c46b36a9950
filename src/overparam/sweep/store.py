"""The results store: one SQLite file per output directory (``results.sqlite``).

Tables
    runs    one row per (study, run_key): the resolved config JSON, seed, status
            (pending | running | done | failed | diverged), metrics JSON, error text, wall time,
            device, package version, git revision, full provenance JSON (versions, data digest,
            batching), attempts, timestamps.
    curves  (study, run_key, name, step, value): training curves and measures along training.
    meta    schema version.

Durability: WAL journal, ``synchronous=FULL``, and each state change in one transaction, so a
process killed at any instant (SIGINT or SIGKILL) leaves every finished run complete (its row
and all of its curves) and at most the runs in flight marked ``running``;
:meth:`ResultsStore.requeue_interrupted` turns those back into ``pending``. Only the sweep
driver writes (a single writer); readers may open the file at any time.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from overparam.errors import ConfigError, DataError

STATUSES = ("pending", "running", "done", "failed", "diverged")
FINAL_STATUSES = ("done", "diverged")  # a resumed sweep skips these; failed runs are retried
SCHEMA_VERSION = 2  # 2: runs.provenance (a version-1 store is upgraded in place)
FILENAME = "results.sqlite"

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    study TEXT NOT NULL,
    run_key TEXT NOT NULL,
    config TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    metrics TEXT,
    error TEXT,
    wall_time_s REAL,
    device TEXT,
    package_version TEXT,
    git_revision TEXT,
    provenance TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (study, run_key)
);
CREATE TABLE IF NOT EXISTS curves (
    study TEXT NOT NULL,
    run_key TEXT NOT NULL,
    name TEXT NOT NULL,
    step INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (study, run_key, name, step),
    FOREIGN KEY (study, run_key) REFERENCES runs (study, run_key) ON DELETE CASCADE
);
"""


def _json(value: Any) -> str:
    """JSON with non-finite floats as strings ("nan", "inf"), which plain JSON cannot hold."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), sort_keys=True, default=str)


class ResultsStore:
    """The SQLite store of one output directory. Use as a context manager or call close()."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / FILENAME
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._transaction():
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(statement)
                row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                elif int(row["value"]) == 1:  # added column; old rows keep NULL provenance
                    self._db.execute("ALTER TABLE runs ADD COLUMN provenance TEXT")
                    self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
                elif int(row["value"]) != SCHEMA_VERSION:
                    raise DataError(f"{self.path} has schema version {row['value']}; this overparam reads "
                                    f"version {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as error:
            raise DataError(f"{self.path} is not a readable results store: {error}") from error

    # --- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self):
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultsStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing (the driver only) -------------------------------------------------------------

    def add_pending(self, study: str, runs: Iterable[tuple[str, Mapping[str, Any], int]]) -> int:
        """Register grid points (run_key, config, seed) as pending; existing rows are kept
        as they are. Returns the number of new rows."""
        now = time.time()
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT OR IGNORE INTO runs (study, run_key, config, seed, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                [(study, key, _json(config), int(seed), now, now) for key, config, seed in runs])
            return self._db.total_changes - before

    def mark_running(self, study: str, run_key: str, device: str | None = None) -> None:
        with self._transaction():
            updated = self._db.execute(
                "UPDATE runs SET status='running', attempts=attempts+1, device=COALESCE(?, device), updated_at=? "
                "WHERE study=? AND run_key=?", (device, time.time(), study, run_key)).rowcount
        if not updated:
            raise ConfigError(f"run {study}/{run_key} is not in the store; add it with add_pending first")

    def finish(self, study: str, run_key: str, *, status: str, metrics: Mapping[str, Any],
               curves: Mapping[str, Sequence[tuple[int, float]]] = (), wall_time_s: float | None = None,
               provenance: Mapping[str, Any] | None = None, error: str | None = None) -> None:
        """Store a run's outcome and all its curves in one transaction (replacing any curves of
        an earlier attempt)."""
        if status not in STATUSES or status in ("pending", "running"):
            raise ConfigError(f"finish() takes status 'done', 'failed' or 'diverged', got {status!r}")
        provenance = provenance or {}
        rows = [(study, run_key, name, int(step), None if value is None or not math.isfinite(value) else float(value))
                for name, points in dict(curves).items() for step, value in points]
        with self._transaction():
            updated = self._db.execute(
                "UPDATE runs SET status=?, metrics=?, error=?, wall_time_s=?, device=COALESCE(?, device), "
                "package_version=?, git_revision=?, provenance=?, updated_at=? WHERE study=? AND run_key=?",
                (status, _json(dict(metrics)), error, wall_time_s, provenance.get("device"),
                 provenance.get("overparam"), provenance.get("git_revision"), _json(dict(provenance)), time.time(),
                 study, run_key)).rowcount
            if not updated:
                raise ConfigError(f"run {study}/{run_key} is not in the store; add it with add_pending first")
            self._db.execute("DELETE FROM curves WHERE study=? AND run_key=?", (study, run_key))
            self._db.executemany("INSERT OR REPLACE INTO curves VALUES (?, ?, ?, ?, ?)", rows)

    def requeue_interrupted(self, study: str | None = None) -> int:
        """Runs left 'running' by a killed driver become 'pending'. Returns how many."""
        with self._transaction():
            query = "UPDATE runs SET status='pending', updated_at=? WHERE status='running'"
            args: tuple = (time.time(),)
            if study is not None:
                query, args = query + " AND study=?", args + (study,)
            return self._db.execute(query, args).rowcount

    # --- reading -------------------------------------------------------------------------------

    def todo(self, study: str, run_keys: Iterable[str]) -> list[str]:
        """The keys among ``run_keys`` that still need running (not done or diverged), in order."""
        finished = {row["run_key"] for row in self._db.execute(
            f"SELECT run_key FROM runs WHERE study=? AND status IN ({', '.join('?' * len(FINAL_STATUSES))})",
            (study, *FINAL_STATUSES))}
        return [key for key in run_keys if key not in finished]

    def runs(self, study: str | None = None, status: str | None = None, *, curves: bool = False
             ) -> list[dict[str, Any]]:
        """Rows as dicts, with ``config`` and ``metrics`` parsed from JSON; with ``curves=True``
        each row also has ``curves`` ({name: [(step, value), ...]}, read in one query)."""
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if study is not None:
            query, args = query + " AND study=?", args + [study]
        if status is not None:
            if status not in STATUSES:
                raise ConfigError(f"unknown status {status!r}; accepted: {STATUSES}")
            query, args = query + " AND status=?", args + [status]
        out = []
        for row in self._db.execute(query + " ORDER BY created_at, run_key", args):
            record = dict(row)
            record["config"] = json.loads(record["config"])
            record["metrics"] = json.loads(record["metrics"]) if record["metrics"] else {}
            record["provenance"] = json.loads(record["provenance"]) if record["provenance"] else {}
            out.append(record)
        if curves:
            by_run: dict[tuple[str, str], dict[str, list[tuple[int, float]]]] = {}
            query, args = "SELECT study, run_key, name, step, value FROM curves", ()
            if study is not None:
                query, args = query + " WHERE study=?", (study,)
            for row in self._db.execute(query + " ORDER BY study, run_key, name, step", args):
                value = float("nan") if row["value"] is None else row["value"]
                by_run.setdefault((row["study"], row["run_key"]), {}).setdefault(row["name"], []).append(
                    (row["step"], value))
            for record in out:
                record["curves"] = by_run.get((record["study"], record["run_key"]), {})
        return out

    def curves(self, study: str, run_key: str) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for row in self._db.execute("SELECT name, step, value FROM curves WHERE study=? AND run_key=? "
                                    "ORDER BY name, step", (study, run_key)):
            out.setdefault(row["name"], []).append((row["step"], float("nan") if row["value"] is None else row["value"]))
        return out

    def status_counts(self, study: str | None = None) -> dict[str, int]:
        query, args = "SELECT status, COUNT(*) AS n FROM runs", ()
        if study is not None:
            query, args = query + " WHERE study=?", (study,)
        counts = {s: 0 for s in STATUSES}
        counts.update({row["status"]: row["n"] for row in self._db.execute(query + " GROUP BY status", args)})
        return counts
