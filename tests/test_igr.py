"""The igr study end to end on its tiny preset, and its config validation."""

from __future__ import annotations

import json

import pytest

from overparam.errors import ConfigError
from overparam.studies import get_study
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
        assert train["optimizer"] == "gd" and train["steps"] * train["lr"] == pytest.approx(config.time)
        # R_IG and the full training loss tracked at the same steps, at least twice
        tracked = [[step for step, _ in row["curves"][name]] for name in ("r_ig", "full_loss")]
        assert m["lambda_max"] > 0 and m["r_ig"] > 0 and tracked[0] == tracked[1] and len(tracked[0]) >= 2
    # EGR: the smallest h with λ = (h_large − h_small)/4
    assert {r["config"]["params"]["run"]["train"]["grad_penalty"] for r in kinds["egr"]} == {(2.0 - 0.5) / 4}
    assert {r["config"]["params"]["run"]["train"]["lr"] for r in kinds["egr"]} == {0.5}
    paths = build_report(tmp_path)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == [
        "igr.one_step_plain_slope", "igr.one_step_modified_slope", "igr.rig_falls_with_h",
        "igr.lambda_max_falls_with_h", "igr.test_acc_rises_with_h", "igr.egr_recovers_flatness",
        "igr.egr_recovers_test_acc"]
    assert sorted(p.name for p in paths.figures) == ["igr_flatness.png", "igr_one_step.png", "igr_training.png"]


def test_presets_resolve():
    study = get_study("igr")
    quick = study.resolve("quick")
    assert len(study.grid(quick)) == quick.seeds * (len(quick.hs) + 2)
    paper = study.resolve("paper")
    assert paper.penalty == pytest.approx((max(paper.hs) - min(paper.hs)) / 4)
    assert study.resolve("quick", overrides=["egr_penalty=0.1"]).penalty == 0.1


@pytest.mark.parametrize("override, match", [
    ("hs=[0.5]", "hs must be a list of at least 2 distinct positive"),
    ("hs=[0.5, -1]", "hs must be a list of at least 2 distinct positive"),
    ("one_step_hs=[0.01, 0.01]", "one_step_hs must be a list of at least 2 distinct"),
    ("time=0.1", "time must be a finite number >= the largest h"),
    ("egr_penalty=-1", "egr_penalty must be null"),
    ("loss=hinge", "unknown loss 'hinge'"),
    ("substeps=0", "substeps must be an integer >= 1"),
    ("seeds=0", "seeds must be an integer >= 1"),
    ("model.width=0", "width"),
])
def test_bad_configs(override, match):
    study = get_study("igr")
    with pytest.raises(ConfigError, match=match):
        study.grid(study.resolve("tiny", overrides=[override]))
