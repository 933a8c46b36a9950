"""The igr study end to end on its tiny preset, its claims judged on hand-made runs with known
effects, and its config validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from overparam.analysis import Run
from overparam.errors import ConfigError
from overparam.report.verdicts import VERDICTS
from overparam.studies import get_study
from overparam.studies.igr import analyze, claims
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore


def test_tiny_study_end_to_end(tmp_path):
    study = get_study("igr")
    config = study.resolve("tiny")
    summary = run_sweep(study, config, tmp_path, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 8  # 2 seeds x (one_step, 2 h, egr)
    with ResultsStore(tmp_path) as store:
        rows = store.runs("igr", curves=True)
    kinds = {}
    for row in rows:
        kinds.setdefault(row["config"]["params"]["kind"], []).append(row)
    assert {k: len(v) for k, v in kinds.items()} == {"one_step": 2, "gd": 4, "egr": 2}
    for row in kinds["one_step"]:
        m = row["metrics"]
        # GD is closer to the modified flow than to the gradient flow at every h, and the
        # integration error is negligible against both
        assert all(mod < plain for mod, plain in zip(m["modified_error"], m["plain_error"]))
        assert max(m["integration_error"]) < 1e-2 * min(m["modified_error"])
        assert 1.8 < m["plain_slope"] < 2.2 and 2.7 < m["modified_slope"] < 3.3
    for row in kinds["gd"] + kinds["egr"]:
        train = row["config"]["params"]["run"]["train"]
        m = row["metrics"]
        assert train["optimizer"] == "gd" and train["steps"] * train["lr"] == pytest.approx(config.time)  # the cap
        # trained to the common target: stopped at the first check at or below it, before the time cap
        assert train["target_loss"] == config.target_loss and m["reached_target"] and m["train_loss"] <= 1.75
        assert m["target_step"] == m["steps"] < train["steps"] and m["time"] == pytest.approx(m["steps"] * train["lr"])
        # R_IG and the full training loss tracked at the same steps, at least twice
        tracked = [[step for step, _ in row["curves"][name]] for name in ("r_ig", "full_loss")]
        assert m["lambda_max"] > 0 and m["r_ig"] > 0 and tracked[0] == tracked[1] and len(tracked[0]) >= 2
    # EGR: the smallest h with λ = (h_large − h_small)/4
    assert {r["config"]["params"]["run"]["train"]["grad_penalty"] for r in kinds["egr"]} == {(2.0 - 0.5) / 4}
    assert {r["config"]["params"]["run"]["train"]["lr"] for r in kinds["egr"]} == {0.5}
    assert all(r["config"]["params"]["run"]["train"].get("target_loss") is None for r in kinds["one_step"])
    paths = build_report(tmp_path)
    report = paths.markdown.read_text()
    assert "to a common training loss" in report and "missed the training target" not in report
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == [
        "igr.one_step_plain_slope", "igr.one_step_modified_slope", "igr.rig_falls_with_h",
        "igr.lambda_max_falls_with_h", "igr.test_acc_rises_with_h", "igr.egr_recovers_flatness",
        "igr.egr_recovers_test_acc"]
    # two seeds: every claim judged, none decided
    assert all(c["verdict"] == "inconclusive" and c["reason"] == "n < 5" and c["n_seeds"] == 2 for c in claims)
    assert all(c["direction"] in ("holds", "fails", "undecided") and c["verdict"] in VERDICTS for c in claims)
    assert claims[0]["paper_value"] == 2.0 and claims[0]["band"] == pytest.approx([1.9, 2.1])
    assert claims[1]["paper_value"] == 3.0 and claims[1]["ci_method"] == "t over per-seed slopes"
    assert claims[3]["ci_method"] == "t (last − first), Bonferroni t per step" and claims[3]["paper_value"] is None
    assert claims[4]["test_examples"] == 100 and claims[4]["binomial_se"] > 0
    assert claims[6]["binomial_se"] is None and "no binomial test-set error" in claims[6]["statement"]
    assert sorted(p.name for p in paths.figures) == ["igr_flatness.png", "igr_one_step.png", "igr_training.png"]


def _runs(config, plain=2.0, modified=3.0, lam=None, acc=None, n_test=10_000):
    """Runs with known outcomes: one-step distances c_s·h^plain and c_s·h^modified; GD/EGR runs
    with λ_max, R_IG and test accuracy from ``lam``/``acc`` (step size or "egr" -> value), a
    small seed-dependent jitter."""
    lam = lam or {0.5: 8.0, 1.0: 4.0, 2.0: 2.0, "egr": 2.4}
    acc = acc or {0.5: 0.60, 1.0: 0.65, 2.0: 0.70, "egr": 0.69}
    runs = []
    for spec in get_study("igr").grid(config):
        settings = {k: v for k, v in spec.params.items() if k != "run"}
        jitter = 1 + 0.01 * np.sin(spec.seed + 1)
        if settings["kind"] == "one_step":
            hs = np.asarray(settings["hs"])
            metrics = {"one_step_hs": hs.tolist(), "plain_error": (jitter * hs ** plain).tolist(),
                       "modified_error": (jitter * hs ** modified).tolist(), "integration_error": [1e-15] * len(hs),
                       "max_h_lambda": 0.2, "lambda_max_init": 1.0}
        else:
            column = "egr" if settings["kind"] == "egr" else settings["h"]
            metrics = {"lambda_max": lam[column] * jitter, "r_ig": 1e-7 * jitter * lam[column], "n_test": n_test,
                       "test_acc": acc[column] + 0.001 * np.sin(3 * spec.seed)}
        runs.append(Run(spec.key, spec.seed, "done", settings, spec.config, metrics))
    return runs


def _claims(runs, config):
    return {c.id.split(".")[1]: c for c in claims(analyze(runs, config), config)}


def test_claims_are_judged_against_the_theory():
    """Slopes of exactly 2 and 3 reproduce the theory (published values with a ±0.1 band); a
    slope of 2.5 is outside the band, so the direction (the band itself) fails. Monotone curves
    reproduce the "falls with h" claims, a turn at the last step does not; an accuracy rise
    within 2 binomial SE of the test set is not called a rise."""
    config = get_study("igr").resolve("tiny", overrides=["seeds=5", "hs=[0.5, 1.0, 2.0]"])
    good = _claims(_runs(config), config)
    assert {c.verdict for c in good.values()} == {"reproduced"}
    slope = good["one_step_plain_slope"]
    assert slope.measured == pytest.approx(2.0) and slope.paper_value == 2.0 and slope.band == pytest.approx([1.9, 2.1])
    assert slope.ratio_to_paper == pytest.approx(1.0) and slope.n_seeds == 5 and slope.magnitude == "holds"
    assert good["lambda_max_falls_with_h"].measured == pytest.approx(-6.0, abs=0.15)  # from h = 0.5 to 2: 8 -> 2
    assert good["egr_recovers_flatness"].measured == pytest.approx((8 - 2.4) / (8 - 2), rel=0.01)
    assert good["egr_recovers_test_acc"].ci_method == "log-t"  # positive differences: a log-t ratio
    bad = _claims(_runs(config, plain=2.5, modified=3.0, lam={0.5: 8.0, 1.0: 4.0, 2.0: 5.0, "egr": 7.5}), config)
    assert (bad["one_step_plain_slope"].direction, bad["one_step_plain_slope"].magnitude) == ("fails", "fails")
    assert bad["one_step_plain_slope"].verdict == "not_reproduced"
    assert bad["lambda_max_falls_with_h"].verdict == "not_reproduced"  # rises from h = 1 to 2
    assert bad["lambda_max_falls_with_h"].measured == pytest.approx(-3.0, abs=0.1)  # though lower at the end
    assert bad["lambda_max_falls_with_h"].reason.startswith("it turns")
    assert bad["rig_falls_with_h"].verdict == "not_reproduced"  # R_IG ∝ λ_max rises from h = 1 to 2 too
    assert bad["egr_recovers_flatness"].verdict == "not_reproduced"  # (8 − 7.5)/(8 − 5) ≈ 0.17
    # +10 pp from h = 0.5 to 2 on 100 test examples (binomial SE ≈ 6.6 pp): within 2 SE of no change
    small_test = _claims(_runs(config, n_test=100), config)["test_acc_rises_with_h"]
    assert small_test.ci[1] > 0 and small_test.binomial_se == pytest.approx(0.067, abs=0.002)
    assert small_test.verdict == "inconclusive" and small_test.reason == "within 2 binomial SE of the test set"


def _numbers(out):
    return {name: (c.measured, tuple(c.ci), c.n_seeds, c.verdict) for name, c in out.items()}


def test_runs_that_missed_their_target_are_listed_and_left_out():
    """A GD run at the largest h and an EGR run that missed the training target (with values that
    would turn the claims) are listed in the report and judged as if they did not exist; the
    one-step runs have no target."""
    import dataclasses

    from overparam.studies.igr import render

    config = get_study("igr").resolve("tiny", overrides=["seeds=5", "hs=[0.5, 1.0, 2.0]"])
    assert config.target_loss is not None
    runs = [dataclasses.replace(r, metrics={**r.metrics, **({"num_parameters": 100, "examples": 100} if r.settings[
        "kind"] == "one_step" else {"reached_target": True, "train_loss": 0.04, "steps": 10})}) for r in _runs(config)]

    def missed(run):
        return (run.seed, run.settings["kind"], run.settings.get("h")) in ((1, "gd", 2.0), (3, "egr", 0.5))

    runs = [dataclasses.replace(r, metrics={**r.metrics, "reached_target": False, "train_loss": 0.8, "steps": 5,
                                            "lambda_max": 50.0, "r_ig": 1e-3, "test_acc": 0.1})
            if missed(r) else r for r in runs]
    a = analyze(runs, config)
    assert sorted((r.settings["kind"], r.seed) for r in a.missed) == [("egr", 3), ("gd", 1)]
    out = _claims(runs, config)
    assert _numbers(out) == _numbers(_claims([r for r in runs if not missed(r)], config))
    assert out["lambda_max_falls_with_h"].n_seeds == 4 and out["egr_recovers_flatness"].n_seeds == 3
    assert out["one_step_plain_slope"].n_seeds == 5
    assert "2 run(s) that missed the target left out" in out["lambda_max_falls_with_h"].statement
    text = render(a, list(out.values()), config)[0].text
    assert "2 run(s) missed the training target" in text
    assert "EGR h = 0.5, λ = 0.375 seed 3 (train loss 0.800 after 5 steps)" in text and "GD h = 2 seed 1" in text
    assert "to a common training loss" in text


def test_presets_resolve():
    study = get_study("igr")
    quick = study.resolve("quick")
    assert quick.seeds >= 5 and study.resolve("paper").seeds >= 5 and study.config_type().seeds >= 5
    assert len(study.grid(quick)) == quick.seeds * (len(quick.hs) + 2)
    paper = study.resolve("paper")
    assert paper.penalty == pytest.approx((max(paper.hs) - min(paper.hs)) / 4)
    assert study.resolve("quick", overrides=["egr_penalty=0.1"]).penalty == 0.1


@pytest.mark.parametrize("override, match", [
    ("hs=[0.5]", "hs must be a list of at least 2 different"),
    ("hs=[0.5, -1]", "each of hs must be a finite number > 0"),
    ("one_step_hs=[0.01, 0.01]", "one_step_hs must be a list of at least 2 different"),
    ("time=0.1", r"so that every h takes at least one step\) must be a finite number >= 2"),
    ("egr_penalty=-1", "egr_penalty must be null"),
    ("target_loss=-0.1", "target_loss must be a finite number > 0"),
    ("loss=hinge", "unknown loss 'hinge'"),
    ("substeps=0", "substeps must be an integer >= 1"),
    ("seeds=0", "seeds must be an integer >= 1"),
    ("model.width=0", "width"),
])
def test_bad_configs(override, match):
    study = get_study("igr")
    with pytest.raises(ConfigError, match=match):
        study.grid(study.resolve("tiny", overrides=[override]))
