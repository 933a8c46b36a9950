"""The optimizer study end to end on its tiny preset, and its config validation."""

from __future__ import annotations

import json

import pytest

from overparam.errors import ConfigError
from overparam.studies import get_study
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore


def test_tiny_study_end_to_end(tmp_path):
    study = get_study("optimizer")
    summary = run_sweep(study, study.resolve("tiny"), tmp_path, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 8
    with ResultsStore(tmp_path) as store:
        rows = store.runs("optimizer")
    trained_with = {(r["config"]["params"]["variant"], r["config"]["params"]["run"]["train"]["optimizer"]) for r in rows}
    assert trained_with == {("sgd", "sgd"), ("sgd_momentum", "sgd"), ("adam", "adam"), ("sam", "sam")}
    assert all(r["metrics"]["lambda_max"] > 0 for r in rows)
    batched = {r["config"]["params"]["variant"]: r["provenance"].get("batched_with") for r in rows}
    assert batched == {"sgd": 2, "sgd_momentum": 2, "adam": 2, "sam": None}  # fit_ensemble: not SAM
    for r in rows:  # trained to the common target (or listed as a miss)
        m = r["metrics"]
        assert m["reached_target"] is (m["train_loss"] <= 2.1)
        assert m["target_step"] == (m["steps"] if m["reached_target"] else None)
    paths = build_report(tmp_path)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == ["optimizer.sam_flattest", "optimizer.flatness_orders_accuracy"]
    assert [p.name for p in paths.figures] == ["optimizer_flatness.png"]


@pytest.mark.parametrize("override, match", [
    ("optimizers={adam: {optimizer: adam}}", "at least two"),
    ("optimizers={a: {lr: 0.1}, b: {optimizer: sgd}}", "'optimizer' key"),
    ("optimizers={a: {optimizer: rmsprop}, b: {optimizer: sgd}}", "rmsprop"),
])
def test_bad_configs(override, match):
    study = get_study("optimizer")
    with pytest.raises(ConfigError, match=match):
        study.grid(study.resolve("tiny", overrides=[override]))


def test_a_run_that_missed_the_target_is_listed_and_left_out():
    from overparam.analysis import Run

    study = get_study("optimizer")
    config = study.resolve("quick")
    rows = []
    for seed in range(5):
        for variant, lam in (("sgd", 2.0), ("sam", 1.0)):
            miss = variant == "sam" and seed == 0
            metrics = {"lambda_max": 100.0 if miss else lam + 0.01 * seed, "test_acc": 0.7, "train_loss": 0.3 if miss
                       else 0.009, "hessian_trace": 1.0, "keskar_sharpness": 0.1, "reached_target": not miss,
                       "target_step": None if miss else 500, "steps": 12600, "perturbation_sigmas": [0.1]}
            run = {"data": {"name": "mnist1d"}, "train": {"optimizer": variant}, "seed": seed}
            rows.append(Run.from_row({"status": "done", "seed": seed, "run_key": f"{variant}{seed}", "metrics": metrics,
                                      "curves": {"perturbation_increase": [(0, 0.01)]},
                                      "config": {"params": {"variant": variant, "run": run}}}))
    sections = study.summarize(rows, config)
    sam = next(c for c in sections[0].claims if c.id == "optimizer.sam_flattest")
    assert sam.n_seeds == 4 and sam.measured == pytest.approx(0.5, rel=0.05)
    assert "sam seed 0 (train loss 0.300 after 12600 steps)" in sections[0].text
