"""The sgd_modified_loss study end to end on its tiny preset, its spread statistic against a hand
computation, its claims judged on hand-made runs with known effects, and its config validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from overparam.analysis import Run
from overparam.errors import ConfigError
from overparam.report.verdicts import VERDICTS
from overparam.studies import get_study
from overparam.studies.sgd_modified_loss import analyze, claims, ratio_groups, spread_by_seed
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore


def test_tiny_study_end_to_end(tmp_path):
    study = get_study("sgd_modified_loss")
    config = study.resolve("tiny")
    summary = run_sweep(study, config, tmp_path, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 14  # 2 seeds x (3 lrs x 2 batches + penalty)
    with ResultsStore(tmp_path) as store:
        rows = store.runs("sgd_modified_loss")
    arms = {}
    for row in rows:
        arms.setdefault(row["config"]["params"]["arm"], []).append(row)
    assert {k: len(v) for k, v in arms.items()} == {"grid": 12, "penalty": 2}  # the large batch: a grid point
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
        # every run trained to train loss 2.2 (checked once per epoch) within the cap of 10 epochs
        assert train["target_loss"] == 2.2 and train["epochs"] == 10 and m["reached_target"]
        assert m["train_loss"] <= 2.2 and m["target_step"] == m["steps"] < 10 * 256 // b
    # the explicit arm: the large batch with λ = (ε/4)(B_L/B_s − 1), against the grid points (0.1, 32) and (0.1, 64)
    assert {(r["metrics"]["lr"], r["metrics"]["batch_size"]) for r in arms["penalty"]} == {(0.1, 64)}
    assert {r["metrics"]["grad_penalty"] for r in arms["penalty"]} == {0.1 / 4 * (64 / 32 - 1)}
    assert {r["metrics"]["grad_penalty"] for r in arms["grid"]} == {0.0}
    # seeds of a batch size trained together; the penalized runs one at a time
    assert all(r["provenance"].get("batched_with") for r in arms["grid"])
    assert not any(r["provenance"].get("batched_with") for r in arms["penalty"])
    paths = build_report(tmp_path)
    report = paths.markdown.read_text()
    assert "every run trained to a common target (training loss <= 2.2" in report and "ε·steps" in report
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == [
        "sgd_modified_loss.sharpness_falls_with_ratio", "sgd_modified_loss.variance_falls_with_ratio",
        "sgd_modified_loss.sharpness_groups_by_ratio", "sgd_modified_loss.variance_groups_by_ratio",
        "sgd_modified_loss.explicit_penalty_closes_gap", "sgd_modified_loss.explicit_penalty_recovers_flatness"]
    # two seeds: every claim judged, none decided; no published numbers, only directions
    assert all(c["verdict"] == "inconclusive" and c["reason"] == "n < 5" and c["n_seeds"] == 2 for c in claims)
    assert all(c["verdict"] in VERDICTS and c["paper_value"] is None and c["magnitude"] == "n/a" for c in claims)
    assert [c["source"] for c in claims] == ["Smith et al. 2021"] * 6
    assert claims[0]["ci_method"].startswith("jackknife over seeds")
    assert claims[4]["test_examples"] == 100 and claims[4]["binomial_se"] is None
    assert "no binomial test-set error" in claims[4]["statement"]
    assert sorted(p.name for p in paths.figures) == ["sgd_modified_loss_explicit.png", "sgd_modified_loss_terms.png"]


def test_ratio_groups_and_the_spread_by_hand():
    groups = ratio_groups((0.05, 0.1), (32, 64))
    assert groups == {0.05 / 64: [(0.05, 64)], 0.05 / 32: [(0.05, 32), (0.1, 64)], 0.1 / 32: [(0.1, 32)]}
    points = [(0.05, 32), (0.05, 64), (0.1, 32), (0.1, 64)]
    values = np.array([[1.0, 0.0, 6.0, 2.0], [1.0, 0.0, 6.0, 2.0], [1.0, 0.0, 6.0, np.nan]])
    # seeds 0 and 1: groups 0 | 1, 2 | 6, means 0, 1.5, 6; within sqrt((0.25 + 0.25)/1); across std(0, 1.5, 6)
    within, across = spread_by_seed(values, points, groups)
    assert within[:2] == pytest.approx([math.sqrt(0.5)] * 2)
    assert across[:2] == pytest.approx([np.std([0.0, 1.5, 6.0], ddof=1)] * 2)
    assert np.isnan(within[2]) and np.isnan(across[2])  # seed 2 lacks (0.1, 64): no group of two points left


def _runs(config, lam, variance, acc, n_test=10_000):
    """Runs with known outcomes: grid runs with λ_max = lam["grid"](ε, B) and v = variance(ε, B);
    the penalized runs' λ_max = lam["penalty"]; test accuracy acc["small"] and acc["large"] at the
    arm's small- and large-batch grid points, acc["penalty"] in the arm, 0.6 elsewhere; a small
    jitter."""
    runs = []
    for spec in get_study("sgd_modified_loss").grid(config):
        settings = {k: v for k, v in spec.params.items() if k != "run"}
        train = spec.config.train
        jitter = 1 + 0.01 * np.sin(spec.seed + 10 * train.lr + train.batch_size)
        arm = settings["arm"]
        point = (train.lr, train.batch_size)
        if arm == "grid" and point in ((config.explicit_lr, b) for b in (config.small_batch, config.large_batch)):
            arm = "small" if train.batch_size == config.small_batch else "large"  # the arm's unpenalized runs
        lam_value = lam["penalty"] if arm == "penalty" else lam["grid"](*point)
        metrics = {"ratio": train.lr / train.batch_size, "lambda_max": lam_value * jitter, "n_test": n_test,
                   "per_example_variance": variance(*point) * jitter, "term_full": train.lr * jitter,
                   "test_acc": acc.get(arm, 0.6) + 0.001 * np.sin(3 * spec.seed)}
        runs.append(Run(spec.key, spec.seed, "done", settings, spec.config, metrics))
    return runs


def test_claims_are_judged_on_hand_made_runs():
    """λ_max a function of ε/B alone falls with the ratio and groups by it; v a function of B
    alone spreads within equal-ratio groups more than across them (spread ratio ≈ 1.7: not
    reproduced). The penalty closing 90% of the accuracy gap and 12.5% of the λ_max gap."""
    study = get_study("sgd_modified_loss")
    config = study.resolve("tiny", overrides=["seeds=5"])
    lam = {"grid": lambda lr, b: 1e-3 * b / lr, "penalty": 0.6}
    out = {c.id.split(".")[1]: c for c in claims(analyze(_runs(config, lam, lambda lr, b: b, {
        "small": 0.70, "large": 0.60, "penalty": 0.69}), config), config)}
    assert out["sharpness_falls_with_ratio"].verdict == "reproduced" and out["sharpness_falls_with_ratio"].n_seeds == 5
    assert out["sharpness_falls_with_ratio"].measured < -0.95  # runs of one ratio tie in ε/B, not in λ_max
    assert out["sharpness_groups_by_ratio"].verdict == "reproduced" and out["sharpness_groups_by_ratio"].measured < 0.05
    spread = out["variance_groups_by_ratio"]  # log v = log B: within d/√2, across std(d, d/2, d/2, 0)
    assert spread.measured == pytest.approx(math.sqrt(0.5) / np.std([1, 0.5, 0.5, 0], ddof=1), rel=0.05)
    assert spread.verdict == "not_reproduced" and spread.ci_method == "log-t"
    gap = out["explicit_penalty_closes_gap"]  # (0.69 − 0.60)/(0.70 − 0.60)
    assert gap.measured == pytest.approx(0.9, rel=0.05) and gap.verdict == "reproduced" and gap.ci_method == "log-t"
    flat = out["explicit_penalty_recovers_flatness"]  # (0.64 − 0.6)/(0.64 − 0.32): λ_max(0.1, 64), (0.1, 32)
    assert flat.measured == pytest.approx(0.125, rel=0.05) and flat.verdict == "not_reproduced"


def _numbers(out):
    return {c.id: (c.measured, tuple(c.ci), c.n_seeds, c.verdict) for c in out}


def test_runs_that_missed_their_target_are_listed_and_left_out():
    """A grid run and a penalized run that missed the training target (with wild values that would
    move the claims) are listed in the report and judged as if they did not exist."""
    import dataclasses

    from overparam.studies.sgd_modified_loss import render

    study = get_study("sgd_modified_loss")
    config = study.resolve("tiny", overrides=["seeds=5"])
    assert config.target_loss is not None
    lam = {"grid": lambda lr, b: 1e-3 * b / lr, "penalty": 0.6}
    runs = [dataclasses.replace(r, metrics={**r.metrics, "reached_target": True, "train_loss": 0.01, "steps": 50})
            for r in _runs(config, lam, lambda lr, b: b, {"small": 0.70, "large": 0.60, "penalty": 0.69})]

    def missed(run):
        train = run.config.train
        return run.seed == 2 and (run.settings["arm"], train.lr, train.batch_size) in (
            ("grid", 0.05, 64), ("penalty", 0.1, 64))

    runs = [dataclasses.replace(r, metrics={**r.metrics, "reached_target": False, "train_loss": 1.25, "steps": 16,
                                            "lambda_max": 1e4, "per_example_variance": 1e-6, "test_acc": 0.1})
            if missed(r) else r for r in runs]
    assert sum(map(missed, runs)) == 2
    a = analyze(runs, config)
    assert sorted((r.settings["arm"], r.seed) for r in a.missed) == [("grid", 2), ("penalty", 2)]
    assert a.table.n_runs()[a.table.index((0.05, 64))] == 4
    out = claims(a, config)
    assert _numbers(out) == _numbers(claims(analyze([r for r in runs if not missed(r)], config), config))
    assert out[4].n_seeds == 4 and "2 run(s) that missed the target left out" in out[0].statement
    assert "at the common training loss" in out[2].statement and "fixed epochs" not in out[2].statement
    text = render(a, out, config)[0].text
    assert "2 run(s) missed the training target" in text
    assert "grid ε = 0.05, B = 64 seed 2 (train loss 1.25 after 16 steps)" in text
    assert "explicit arm ε = 0.1, B = 64 + λ‖∇L_B‖², λ = 0.025 seed 2" in text
    assert "to a common target (training loss <= " in text


def test_presets_resolve_and_the_default_penalty_rule():
    study = get_study("sgd_modified_loss")
    quick = study.resolve("quick")
    assert quick.seeds >= 5 and study.resolve("mnist").seeds >= 5 and study.config_type().seeds >= 5
    # the grid and the penalized large batch (its unpenalized twin is a grid point); without a target both
    assert len(study.grid(quick)) == quick.seeds * (len(quick.lrs) * len(quick.batch_sizes) + 1)
    budget = study.resolve("quick", overrides=["target_loss=null"])
    assert len(study.grid(budget)) == quick.seeds * (len(quick.lrs) * len(quick.batch_sizes) + 2)
    assert quick.penalty == pytest.approx(0.1 / 4 * (128 / 32 - 1))
    assert study.resolve("paper").penalty == pytest.approx(0.1 / 4 * (512 / 64 - 1))
    assert study.resolve("quick", overrides=["explicit_penalty=0.01"]).penalty == 0.01


@pytest.mark.parametrize("override, match", [
    ("lrs=[0.1, -0.1]", "each of lrs must be a finite number > 0"),
    ("batch_sizes=[32, 32.5]", "each of batch_sizes must be an integer"),
    ("lrs=[0.1]", "at least 3 distinct ratios"),
    ("explicit_lr=0.3", "explicit_lr must be one of lrs"),
    ("large_batch=16", "small_batch and large_batch must be batch_sizes"),
    ("explicit_penalty=-1", "explicit_penalty must be null"),
    ("epochs=0", "epochs must be a finite number > 0"),
    ("target_loss=0", "target_loss must be a finite number > 0"),
    ("loss=hinge", "unknown loss 'hinge'"),
    ("seeds=0", "seeds must be an integer >= 1"),
    ("model.width=0", "width"),
])
def test_bad_configs(override, match):
    study = get_study("sgd_modified_loss")
    with pytest.raises(ConfigError, match=match):
        study.grid(study.resolve("tiny", overrides=[override]))
