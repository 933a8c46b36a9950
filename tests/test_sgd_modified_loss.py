"""The sgd_modified_loss study end to end on its tiny preset, its spread statistic against a hand
computation, and its config validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from overparam.errors import ConfigError
from overparam.studies import get_study
from overparam.studies.sgd_modified_loss import ratio_groups, spread_ratio
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore


def test_tiny_study_end_to_end(tmp_path):
    study = get_study("sgd_modified_loss")
    config = study.resolve("tiny")
    summary = run_sweep(study, config, tmp_path, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 16  # 2 seeds x (3 lrs x 2 batches + 2 arms)
    with ResultsStore(tmp_path) as store:
        rows = store.runs("sgd_modified_loss")
    arms = {}
    for row in rows:
        arms.setdefault(row["config"]["params"]["arm"], []).append(row)
    assert {k: len(v) for k, v in arms.items()} == {"grid": 12, "large": 2, "penalty": 2}
    for row in rows:
        m = row["metrics"]
        train = row["config"]["params"]["run"]["train"]
        assert m["ratio"] == pytest.approx(train["lr"] / train["batch_size"])
        assert m["term_full"] == pytest.approx(train["lr"] / 4 * m["grad_norm_sq"])
        assert m["term_variance"] == pytest.approx(train["lr"] / 4 * m["expected_variance_term"])
        n = m["n_train"]  # the exact expectation over partitions: (N − B)/(B(N − 1)) · v
        b = train["batch_size"]
        assert m["expected_variance_term"] == pytest.approx((n - b) / (b * (n - 1)) * m["per_example_variance"])
        assert m["lambda_max"] > 0
    # the explicit arm: the large batch for the small batch's number of steps; λ = (ε/4)(B_L/B_s − 1)
    for row in arms["large"] + arms["penalty"]:
        assert row["metrics"]["steps"] == 2 * 256 // 32
    assert {r["metrics"]["grad_penalty"] for r in arms["penalty"]} == {0.1 / 4 * (64 / 32 - 1)}
    assert {r["metrics"]["grad_penalty"] for r in arms["large"] + arms["grid"]} == {0.0}
    # seeds of a batch size trained together; the penalized runs one at a time
    assert all(r["provenance"].get("batched_with") for r in arms["grid"])
    assert not any(r["provenance"].get("batched_with") for r in arms["penalty"])
    paths = build_report(tmp_path)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == [
        "sgd_modified_loss.sharpness_falls_with_ratio", "sgd_modified_loss.variance_falls_with_ratio",
        "sgd_modified_loss.sharpness_groups_by_ratio", "sgd_modified_loss.variance_groups_by_ratio",
        "sgd_modified_loss.explicit_penalty_closes_gap", "sgd_modified_loss.explicit_penalty_recovers_flatness"]
    assert sorted(p.name for p in paths.figures) == ["sgd_modified_loss_explicit.png", "sgd_modified_loss_terms.png"]


def test_ratio_groups_and_the_spread_ratio_by_hand():
    groups = ratio_groups((0.05, 0.1), (32, 64))
    assert groups == {0.05 / 64: [(0.05, 64)], 0.05 / 32: [(0.05, 32), (0.1, 64)], 0.1 / 32: [(0.1, 32)]}
    values = {(0.05, 64): [0.0, 0.0], (0.05, 32): [1.0, 1.0], (0.1, 64): [2.0, 2.0], (0.1, 32): [6.0, 6.0]}
    # point means 0, 1, 2, 6; group means 0, 1.5, 6; within: sqrt((0.25 + 0.25)/1); across: std(0, 1.5, 6)
    expected = math.sqrt(0.5) / np.std([0.0, 1.5, 6.0], ddof=1)
    ci = spread_ratio(values, groups)
    assert ci[0] == pytest.approx(expected)
    assert ci[1] == pytest.approx(expected) and ci[2] == pytest.approx(expected)  # no seed noise: no spread
    assert ci.n == 2


def test_presets_resolve_and_the_default_penalty_rule():
    study = get_study("sgd_modified_loss")
    quick = study.resolve("quick")
    assert len(study.grid(quick)) == quick.seeds * (len(quick.lrs) * len(quick.batch_sizes) + 2)
    assert quick.penalty == pytest.approx(0.1 / 4 * (128 / 32 - 1))
    assert study.resolve("paper").penalty == pytest.approx(0.1 / 4 * (512 / 64 - 1))
    assert study.resolve("quick", overrides=["explicit_penalty=0.01"]).penalty == 0.01


@pytest.mark.parametrize("override, match", [
    ("lrs=[0.1, -0.1]", "lrs must be a list of distinct positive finite learning rates"),
    ("batch_sizes=[32, 32.5]", "batch_sizes must be a list of distinct positive integer batch sizes"),
    ("lrs=[0.1]", "at least 3 distinct ratios"),
    ("explicit_lr=0.3", "explicit_lr must be one of lrs"),
    ("large_batch=16", "small_batch and large_batch must be batch_sizes"),
    ("explicit_penalty=-1", "explicit_penalty must be null"),
    ("epochs=0", "epochs must be a positive number"),
    ("loss=hinge", "unknown loss 'hinge'"),
    ("seeds=0", "seeds must be an integer >= 1"),
    ("model.width=0", "width"),
])
def test_bad_configs(override, match):
    study = get_study("sgd_modified_loss")
    with pytest.raises(ConfigError, match=match):
        study.grid(study.resolve("tiny", overrides=[override]))
