"""`overparam run paper`: the five studies into one store and one report, resumable."""

from __future__ import annotations

import json

import pytest

from overparam.cli import main
from overparam.errors import ConfigError
from overparam.report import CLAIM_KEYS
from overparam.studies import SUITES, get_study
from overparam.sweep.execute import run_suite

PAPER = SUITES["paper"]


def test_every_paper_study_has_the_presets_the_suite_uses():
    for name in PAPER:
        study = get_study(name)
        assert {"tiny", "quick", "mnist", "paper"} <= set(study.presets), name
        for preset in ("quick", "mnist", "paper"):
            study.resolve(preset)  # every preset is a valid config


def test_run_paper_writes_one_report_with_every_claim_and_resumes(tmp_path, capsys):
    assert main(["run", "paper", "--preset", "tiny", "--out", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    first = capsys.readouterr().out
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert {c["id"].split(".")[0] for c in claims} == set(PAPER)
    assert all(list(c) == list(CLAIM_KEYS) for c in claims)
    assert all(c["verdict"] == "inconclusive" and c["reason"] == "n < 5" for c in claims)  # tiny: 2-3 seeds
    assert all(c["direction"] in ("holds", "fails", "undecided") and c["rule"] for c in claims)
    numbered = [c for c in claims if c["paper_value"] is not None]
    assert {c["id"] for c in numbered} >= {"batch_size.lambda_max_ratio", "batch_size.small_batch_accuracy_gain",
                                           "width.movement_ratio", "lottery.reinit_loss_10pct"}
    assert all(c["band"] and c["tolerance"] and c["magnitude"] in ("holds", "fails", "undecided") for c in numbered)
    report = (tmp_path / "report.md").read_text()
    # the claims table comes first, then one section per study in the suite's order
    assert report.index("## Claims") < min(report.index(f"## {name}") for name in PAPER)
    assert [report.index(f"## {name}") for name in PAPER] == sorted(report.index(f"## {name}") for name in PAPER)
    assert report.count("preset tiny") == len(PAPER)
    assert (tmp_path / "report.html").read_text().count("<img src=\"data:image/png;base64,") >= len(PAPER)
    for claim in claims:
        assert claim["id"] in first  # the verdicts are printed
    # a second invocation resumes: nothing is recomputed
    assert main(["run", "paper", "--preset", "tiny", "--out", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    second = capsys.readouterr().out
    assert second.count(", ran 0;") == len(PAPER)


def test_suite_overrides_route_to_one_study_or_all(tmp_path):
    with pytest.raises(ConfigError, match="batch_sizes"):
        run_suite("paper", preset="tiny", overrides=["batch_size.batch_sizes=[8]"], out=tmp_path, progress=False)
    with pytest.raises(ConfigError, match="section"):
        run_suite("paper", preset="tiny", file_values={"nonsense": {}}, out=tmp_path, progress=False)
    assert not (tmp_path / "results.sqlite").exists()  # nothing ran: validation comes first
