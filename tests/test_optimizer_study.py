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
    assert batched == {"sgd": 2, "sgd_momentum": 2, "adam": None, "sam": None}  # fit_ensemble: SGD only
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
