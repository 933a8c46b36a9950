"""Sweeps: grid expansion, config errors, resume, failures, a real kill, workers, export."""

from __future__ import annotations

import csv
import os
import signal
import sqlite3
import subprocess
import sys
import time

from dataclasses import dataclass

import pytest

from overparam.errors import ConfigError
from overparam.studies import STUDIES, RunOutcome, RunSpec, Study, get_study
from overparam.studies.base import run_key
from overparam.sweep.execute import run_study
from overparam.sweep.store import ResultsStore

TINY = ["data.n_train=120", "data.n_test=100"]


def test_grid_expansion_and_stable_keys():
    study = get_study("train")
    config = study.resolve("tiny", overrides=["axes={model.width: [4, 8, 16], train.lr: [0.1, 0.01]}", "seeds=2"])
    specs = study.grid(config)
    assert len(specs) == 3 * 2 * 2 and len({s.key for s in specs}) == 12
    assert {s.params["model"]["options"]["width"] for s in specs} == {4, 8, 16}
    assert [s.key for s in study.grid(config)] == [s.key for s in specs]  # deterministic
    assert study.resolve("tiny", overrides=["model.width=32"]).model["width"] == 32  # dotted into a mapping


@pytest.mark.parametrize("override, match", [
    ("sedes=3", r"no config key\(s\) \['sedes'\]"),
    ("seeds=0", "seeds must be an integer >= 1, got 0"),
    ("axes={model.width: 8}", "must be a non-empty list"),
    ("axes={model.width: [8, -1]}", "width must be an integer >= 1, got -1"),
    ("axes={train.optimizer: [sgd, lbfgs]}", "unknown optimizer 'lbfgs'"),
])
def test_bad_study_configs_fail_before_anything_runs(tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        run_study("train", preset="tiny", overrides=[override], out=tmp_path, progress=False)
    assert not (tmp_path / "results.sqlite").exists() or ResultsStore(tmp_path).runs() == []


def test_unknown_study_and_preset():
    with pytest.raises(ConfigError, match="unknown study 'bach_size'"):
        get_study("bach_size")
    with pytest.raises(ConfigError, match="unknown preset for study 'train' 'huge'"):
        get_study("train").resolve("huge")


def test_resume_skips_done_runs_and_adds_only_new_points(tmp_path):
    first = run_study("train", preset="tiny", overrides=TINY, out=tmp_path, progress=False)
    assert (first.total, first.ran, first.counts["done"]) == (4, 4, 4)
    again = run_study("train", preset="tiny", overrides=TINY, out=tmp_path, progress=False)
    assert (again.skipped, again.ran) == (4, 0)
    more = run_study("train", preset="tiny", overrides=TINY, seeds=3, out=tmp_path, progress=False)
    assert (more.total, more.skipped, more.ran, more.counts["done"]) == (6, 4, 2, 6)
    with ResultsStore(tmp_path) as store:
        row = store.runs("train")[0]
        assert row["config"]["study_config"]["seeds"] == 2 and row["attempts"] == 1
        assert "train_loss" in store.curves("train", row["run_key"])


@dataclass(frozen=True)
class ToyConfig:
    values: tuple = (1, -1, 2)
    seeds: int = 1


def toy_grid(config):
    return [RunSpec(run_key("toy", {"v": v}, 0), {"v": v}, 0) for v in config.values]


def toy_run(spec, device):
    if spec.params["v"] < 0:
        raise ValueError(f"negative value {spec.params['v']}")
    return RunOutcome("done", {"v2": spec.params["v"] ** 2}, {"c": [(0, 1.0)]})


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(STUDIES, "toy", Study("toy", "test study", ToyConfig, toy_grid, toy_run))
    summary = run_study("toy", out=tmp_path, progress=False)
    assert summary.counts["done"] == 2 and summary.counts["failed"] == 1
    assert summary.failures[0][1] == "ValueError: negative value -1"
    with ResultsStore(tmp_path) as store:
        (failed,) = store.runs("toy", status="failed")
        assert "Traceback" in failed["error"] and failed["config"]["params"] == {"v": -1}
    retry = run_study("toy", out=tmp_path, progress=False)
    assert retry.ran == 1  # failed runs are retried, done ones are not


def test_a_run_that_cannot_be_built_fails_before_the_sweep_starts(tmp_path):
    with pytest.raises(ConfigError, match="n_train=99999 exceeds the 4000 examples"):
        run_study("train", preset="tiny", overrides=["axes={data.n_train: [100, 99999]}"], out=tmp_path,
                  progress=False)


def test_process_pool_workers(tmp_path):
    summary = run_study("train", preset="tiny", overrides=TINY, workers=2, out=tmp_path, progress=False)
    assert summary.counts["done"] == 4


def test_killing_a_running_sweep_loses_nothing_completed_and_resume_duplicates_nothing(tmp_path):
    args = [sys.executable, "-m", "overparam.cli", "run", "train", "--preset", "tiny", "--out", str(tmp_path),
            "--device", "cpu", "--quiet", "--set", "axes={model.width: [4, 6, 8, 10, 12, 14, 16, 18]}",
            "--set", "data.n_train=400", "--set", "train.epochs=2", "--seeds", "2"]
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    done_before, deadline = [], time.time() + 120
    while time.time() < deadline and len(done_before) < 3:
        time.sleep(0.1)
        try:
            with sqlite3.connect(tmp_path / "results.sqlite", timeout=5) as db:
                done_before = db.execute("SELECT run_key, metrics, updated_at FROM runs WHERE status='done'").fetchall()
        except sqlite3.OperationalError:
            pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    assert len(done_before) >= 3
    with ResultsStore(tmp_path) as store:
        counts = store.status_counts("train")
        assert counts["done"] >= len(done_before) and counts["done"] < 16, counts
        assert counts["running"] <= 2  # the unit in flight: one grid point, its two seeds batched
    result = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with ResultsStore(tmp_path) as store:
        runs = store.runs("train")
        assert len(runs) == 16 and all(r["status"] == "done" for r in runs)
        by_key = {r["run_key"]: r for r in runs}
        for key, metrics, updated in done_before:  # completed before the kill: untouched
            assert by_key[key]["attempts"] == 1 and by_key[key]["updated_at"] == updated
        curve_rows = store._db.execute("SELECT COUNT(*) FROM curves").fetchone()[0]
        distinct = store._db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT run_key, name, step FROM curves)").fetchone()[0]
        assert curve_rows == distinct


def test_export_csv_round_trip(tmp_path):
    run_study("train", preset="tiny", overrides=TINY, out=tmp_path, progress=False)
    from overparam.sweep.export import export

    path = export(tmp_path, "csv")
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"done"}
    assert {r["params.model.options.width"] for r in rows} == {"8", "16"}
    assert all(0 <= float(r["metrics.test_acc"]) <= 1 for r in rows)
    with pytest.raises(ConfigError, match="unknown export format 'xlsx'"):
        export(tmp_path, "xlsx")


def test_ray_backend_on_a_real_local_instance(tmp_path):
    pytest.importorskip("ray")
    summary = run_study("train", preset="tiny", overrides=TINY, out=tmp_path, progress=False, backend="ray",
                        workers=2)
    assert summary.counts["done"] == 4 and summary.ran == 4
    again = run_study("train", preset="tiny", overrides=TINY, seeds=3, out=tmp_path, progress=False, backend="ray",
                      workers=2)
    assert (again.ran, again.counts["done"]) == (2, 6)
    with ResultsStore(tmp_path) as store:
        assert all("train_loss" in store.curves("train", r["run_key"]) for r in store.runs("train"))


def test_unknown_backend(tmp_path):
    with pytest.raises(ConfigError, match="unknown backend 'slurm'"):
        run_study("train", preset="tiny", overrides=TINY, out=tmp_path, progress=False, backend="slurm")


def test_report_renders_from_a_partially_filled_store(tmp_path):
    import json

    from overparam.cli import main

    run_study("train", preset="tiny", overrides=[*TINY, "axes={model.width: [8, 16, 4]}"], out=tmp_path,
              progress=False)
    with ResultsStore(tmp_path) as store:  # a later, unfinished invocation: pending and failed rows
        store.add_pending("train", [("zz-pending", {"params": {}}, 9), ("zz-failed", {"params": {}}, 8)])
        store.mark_running("train", "zz-failed")
        store.finish("train", "zz-failed", status="failed", metrics={},
                     error="Traceback (most recent call last):\n  ...\nRuntimeError: out of memory")
    assert main(["report", str(tmp_path)]) == 0
    markdown = (tmp_path / "report.md").read_text()
    assert "8 runs of 'train': 6 done, 1 failed, 0 diverged, 1 pending" in markdown
    assert "RuntimeError: out of memory" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0] for row in rows] == ["| 4", "| 8", "| 16"]  # numeric order
    assert json.loads((tmp_path / "claims.json").read_text()) == []
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html
    png = (tmp_path / "figures" / "test_accuracy.png").read_bytes()
    assert png.startswith(b"\x89PNG")


def test_batched_sweep_matches_separate_runs(tmp_path):
    """Seeds x LRs on one fixed dataset (data.seed) train as one vectorized model; every
    stored run matches the same run trained alone (--no-batch)."""
    overrides = [*TINY, "data.seed=7", "axes={train.lr: [0.02, 0.1]}", "seeds=3"]
    batched = run_study("train", preset="tiny", overrides=overrides, out=tmp_path / "batched", progress=False)
    alone = run_study("train", preset="tiny", overrides=overrides, out=tmp_path / "alone", progress=False, batch=False)
    assert batched.counts["done"] == alone.counts["done"] == 6
    with ResultsStore(tmp_path / "batched") as a, ResultsStore(tmp_path / "alone") as b:
        rows_a, rows_b = {r["run_key"]: r for r in a.runs("train")}, {r["run_key"]: r for r in b.runs("train")}
        assert rows_a.keys() == rows_b.keys()
        batch_clock = max(row["provenance"]["batch_wall_time_s"] for row in rows_a.values())
        for key, row in rows_a.items():
            assert row["provenance"]["batched_with"] == 6
            assert row["wall_time_s"] == pytest.approx(batch_clock / 6)  # shares sum to the batch's time
            assert "batched_with" not in rows_b[key]["provenance"]
            for name in ("train_loss", "test_loss", "test_acc"):
                assert row["metrics"][name] == pytest.approx(rows_b[key]["metrics"][name], rel=1e-4, abs=1e-5)
            curve_a, curve_b = a.curves("train", key)["train_loss"], b.curves("train", key)["train_loss"]
            assert [s for s, _ in curve_a] == [s for s, _ in curve_b]
            assert [v for _, v in curve_a] == pytest.approx([v for _, v in curve_b], rel=1e-4)


def test_runs_on_per_seed_data_are_not_batched(tmp_path):
    from overparam.config import RunConfig
    from overparam.run import run_batch

    base = RunConfig.from_dict({"data": {"name": "mnist1d", "n_train": 100, "n_test": 50},
                                "model": {"name": "mlp", "width": 8, "depth": 1}, "train": {"epochs": 1}})
    per_seed = run_batch([base.with_overrides({"seed": s}) for s in range(2)], device="cpu", quiet=True)
    fixed = run_batch([base.with_overrides({"seed": s, "data.seed": 0}) for s in range(2)], device="cpu", quiet=True)
    sam = run_batch([base.with_overrides({"seed": s, "data.seed": 0, "train.optimizer": "sam"}) for s in range(2)],
                    device="cpu", quiet=True)
    assert [r.provenance.get("batched_with") for r in per_seed] == [None, None]  # different subsets
    assert [r.provenance.get("batched_with") for r in fixed] == [2, 2]
    assert [r.provenance.get("batched_with") for r in sam] == [None, None]  # fit_ensemble: not SAM
    assert [r.config["seed"] for r in fixed] == [0, 1]
    assert fixed[0].metrics["test_acc"] != fixed[1].metrics["test_acc"] or \
        fixed[0].metrics["train_loss"] != fixed[1].metrics["train_loss"]
