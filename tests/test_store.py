"""The SQLite results store: round trips, resume bookkeeping, and durability under SIGKILL."""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from overparam.errors import ConfigError, DataError
from overparam.sweep.store import ResultsStore


def test_round_trip_of_config_metrics_curves_and_provenance(tmp_path):
    with ResultsStore(tmp_path) as store:
        assert store.add_pending("width", [("k1", {"model": {"width": 32}}, 0), ("k2", {"model": {"width": 64}}, 1)]) == 2
        store.mark_running("width", "k1", device="cpu:x86_64")
        store.finish("width", "k1", status="done", metrics={"test_acc": 0.91, "ratio": float("inf")},
                     curves={"train_loss": [(0, 2.3), (10, 0.5)], "lambda_max": [(0, 1.0), (10, float("nan"))]},
                     wall_time_s=1.5, provenance={"overparam": "0.1.0", "git_revision": "abc", "device": "cpu:x86_64"})
    with ResultsStore(tmp_path) as store:  # reopened from disk
        (done,) = store.runs("width", status="done")
        assert done["config"] == {"model": {"width": 32}} and done["seed"] == 0
        assert done["metrics"] == {"test_acc": 0.91, "ratio": "inf"}
        assert (done["wall_time_s"], done["device"], done["package_version"], done["git_revision"], done["attempts"]) \
            == (1.5, "cpu:x86_64", "0.1.0", "abc", 1)
        curves = store.curves("width", "k1")
        assert curves["train_loss"] == [(0, 2.3), (10, 0.5)]
        assert curves["lambda_max"][0] == (0, 1.0) and math.isnan(curves["lambda_max"][1][1])
        assert store.status_counts("width") == {"pending": 1, "running": 0, "done": 1, "failed": 0, "diverged": 0}
        mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_resume_bookkeeping(tmp_path):
    with ResultsStore(tmp_path) as store:
        store.add_pending("s", [(f"k{i}", {}, i) for i in range(5)])
        for key, status in (("k0", "done"), ("k1", "failed"), ("k2", "diverged")):
            store.mark_running("s", key)
            store.finish("s", key, status=status, metrics={}, error="Traceback..." if status == "failed" else None)
        store.mark_running("s", "k3")  # then the driver dies
        assert store.todo("s", [f"k{i}" for i in range(7)]) == ["k1", "k3", "k4", "k5", "k6"]
        assert store.requeue_interrupted("s") == 1
        assert store.add_pending("s", [(f"k{i}", {}, i) for i in range(7)]) == 2  # only new grid points
        assert store.status_counts("s")["pending"] == 4
        # a rerun replaces the curves of the failed attempt instead of duplicating them
        store.mark_running("s", "k1")
        store.finish("s", "k1", status="done", metrics={}, curves={"loss": [(0, 1.0)]})
        store.mark_running("s", "k1")
        store.finish("s", "k1", status="done", metrics={}, curves={"loss": [(0, 2.0)]})
        assert store.curves("s", "k1") == {"loss": [(0, 2.0)]}
        (k1,) = [r for r in store.runs("s") if r["run_key"] == "k1"]
        assert k1["attempts"] == 3 and k1["status"] == "done" and k1["error"] is None


def test_bad_calls_are_clear_errors(tmp_path):
    with ResultsStore(tmp_path) as store:
        with pytest.raises(ConfigError, match="not in the store"):
            store.mark_running("s", "missing")
        store.add_pending("s", [("k", {}, 0)])
        with pytest.raises(ConfigError, match="got 'running'"):
            store.finish("s", "k", status="running", metrics={})
        with pytest.raises(ConfigError, match="unknown status 'ok'"):
            store.runs(status="ok")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "results.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DataError, match="not a readable results store"):
        ResultsStore(tmp_path / "bad")


WRITER = textwrap.dedent("""
    import sys, time
    from overparam.sweep.store import ResultsStore
    store = ResultsStore(sys.argv[1])
    store.add_pending("s", [(f"k{i:05d}", {"i": i}, i) for i in range(100000)])
    for i in range(100000):
        key = f"k{i:05d}"
        store.mark_running("s", key)
        store.finish("s", key, status="done", metrics={"i": i},
                     curves={"a": [(t, float(t)) for t in range(40)], "b": [(t, -float(t)) for t in range(40)]})
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_writer_loses_nothing_it_finished(tmp_path, sig):
    """Kill a process that is writing runs as fast as it can; every run marked done must be
    complete (all 80 curve points), at most one run is left 'running', and the file is sound."""
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    done = 0
    while time.time() < deadline and done < 20:
        time.sleep(0.2)
        if (tmp_path / "results.sqlite").exists():
            try:
                with sqlite3.connect(tmp_path / "results.sqlite", timeout=5) as db:
                    done = db.execute("SELECT COUNT(*) FROM runs WHERE status='done'").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    os.kill(child.pid, sig)
    child.wait(timeout=30)
    assert done >= 20, "the writer did not get going"
    with ResultsStore(tmp_path) as store:
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finished = store.runs("s", status="done")
        assert len(finished) >= done
        for row in finished:
            assert row["metrics"] == {"i": row["config"]["i"]}
        counts = store._db.execute(
            "SELECT r.run_key, COUNT(c.step) FROM runs r LEFT JOIN curves c USING (study, run_key) "
            "WHERE r.status='done' GROUP BY r.run_key").fetchall()
        assert all(n == 80 for _, n in counts)
        assert store.status_counts("s")["running"] <= 1
        assert store.requeue_interrupted() <= 1
        assert store.status_counts("s")["running"] == 0


def test_a_version_1_store_is_upgraded_in_place(tmp_path):
    import sqlite3

    from overparam.sweep.store import _SCHEMA

    with sqlite3.connect(tmp_path / "results.sqlite") as db:  # the version-1 layout: no provenance column
        db.executescript(_SCHEMA.replace("    provenance TEXT,\n", ""))
        db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
        db.execute("INSERT INTO runs (study, run_key, config, seed, status, metrics, created_at, updated_at) "
                   "VALUES ('s', 'k', '{}', 0, 'done', '{\"acc\": 0.5}', 0, 0)")
    with ResultsStore(tmp_path) as store:
        (run,) = store.runs("s")
        assert run["metrics"] == {"acc": 0.5} and run["provenance"] == {}
        store.add_pending("s", [("k2", {}, 1)])
        store.finish("s", "k2", status="done", metrics={}, provenance={"device": "cpu", "batched_with": 3})
        assert store.runs("s", status="done")[1]["provenance"]["batched_with"] == 3
