"""`overparam run theory` and `overparam run dynamics`: each suite into one store and one report."""

from __future__ import annotations

import json

import pytest

from overparam.cli import main
from overparam.studies import SUITES, get_study


@pytest.mark.parametrize("suite", ["theory", "dynamics"])
def test_every_study_of_the_suite_has_tiny_quick_and_paper_presets(suite):
    for name in SUITES[suite]:
        study = get_study(name)
        assert {"tiny", "quick", "paper"} <= set(study.presets), name
        for preset in ("quick", "paper"):
            study.resolve(preset)  # every preset is a valid config


@pytest.mark.parametrize("suite", ["theory", "dynamics"])
def test_suite_runs_every_study_into_one_report_and_resumes(suite, tmp_path, capsys):
    names = SUITES[suite]
    assert main(["run", suite, "--preset", "tiny", "--out", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    first = capsys.readouterr().out
    claims = json.loads((tmp_path / "claims.json").read_text())
    assert {c["study"] for c in claims} == set(names)  # every study states at least one claim
    assert all(c["id"].startswith(c["study"] + ".") for c in claims)
    assert all(c["verdict"] in ("reproduced", "direction_only", "not_reproduced", "inconclusive") for c in claims)
    assert all(c["verdict"] == "inconclusive" for c in claims if c["n_seeds"] < 5)  # no verdict from < 5 seeds
    report = (tmp_path / "report.md").read_text()
    assert report.startswith(f"# overparam report: {suite} (")
    positions = [report.index(f"## {name}") for name in names]
    assert report.index("## Claims") < min(positions) and positions == sorted(positions)
    assert report.count("preset tiny") == len(names)
    figures = list((tmp_path / "figures").glob("*.png"))
    assert {p.name.split("_")[0] for p in figures} >= {n.split("_")[0] for n in names}  # a figure per study
    for claim in claims:
        assert claim["id"] in first
    assert main(["run", suite, "--preset", "tiny", "--out", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    assert capsys.readouterr().out.count(", ran 0;") == len(names)
