"""The lottery study: the tiny preset end to end (store rows, exact per-level weight counts,
pruned weights at zero, curves, report and claims), summaries on hand-made rows, config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from overparam.errors import ConfigError
from overparam.studies import get_study
from overparam.studies.lottery import NETWORKS, STUDY
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore

CLAIM_IDS = ["lottery.ticket_vs_dense_10pct", "lottery.reinit_loss_10pct", "lottery.ticket_beats_controls"]


def test_registered():
    assert get_study("lottery") is STUDY


def test_tiny_preset_end_to_end(tmp_path):
    config = STUDY.resolve("tiny")
    summary = run_sweep(STUDY, config, tmp_path, progress=False)
    assert summary.counts["done"] == config.seeds == 2 and not summary.failures
    with ResultsStore(tmp_path) as store:
        rows = store.runs("lottery", curves=True)
        curves = {row["run_key"]: store.curves("lottery", row["run_key"]) for row in rows}
    assert sorted(row["seed"] for row in rows) == [0, 1]
    for row in rows:
        metrics = row["metrics"]
        levels = metrics["levels"]
        assert [e["level"] for e in levels] == [0, 1, 2]
        # mlp 40 -> 16 -> 10: hidden 640 weights lose round(0.2 * remaining) per round, the readout's
        # 160 lose round(0.1 * remaining): 640 -> 512 -> 410, 160 -> 144 -> 130.
        assert levels[1]["counts"] == {"hidden.0.weight": 512, "readout.weight": 144}
        assert levels[2]["counts"] == {"hidden.0.weight": 410, "readout.weight": 130}
        assert levels[2]["remaining"] == pytest.approx((410 + 130) / 800)
        assert levels[2]["remaining_by_layer"] == pytest.approx({"hidden.0.weight": 410 / 640,
                                                                 "readout.weight": 130 / 160})
        assert set(levels[1]) == {"level", "remaining", "remaining_by_layer", "counts"}  # accuracies: curves
        assert metrics["max_abs_pruned_weight"] == 0.0  # pruned weights stayed exactly zero
        assert metrics["diverged"] == []
        run_curves = curves[row["run_key"]]
        assert run_curves == row["curves"]
        assert [step for step, _ in run_curves["remaining"]] == [0, 1, 2]
        assert [v for _, v in run_curves["remaining"]] == pytest.approx([e["remaining"] for e in levels])
        assert run_curves["ticket_test_acc"][0] == (0, pytest.approx(metrics["dense_test_acc"]))
        assert run_curves["ticket_early_stopping_test_acc"][0] == (0, pytest.approx(
            metrics["dense_early_stopping_test_acc"]))
        for net in NETWORKS:  # every network at every level (the ticket from the dense level 0 on)
            steps = [0, 1, 2] if net == "ticket" else [1, 2]
            for key in ("test_acc", "train_acc", "early_stopping_test_acc"):
                assert [step for step, _ in run_curves[f"{net}_{key}"]] == steps
                assert all(0.0 <= v <= 1.0 for _, v in run_curves[f"{net}_{key}"])

    sections = STUDY.summarize(rows, config)
    assert len(sections) == 1
    assert [c.id for c in sections[0].claims] == CLAIM_IDS
    assert [name for name, _ in sections[0].figures] == ["lottery_accuracy_vs_remaining"]
    assert "67.5%" in sections[0].claims[0].statement  # the level closest to 10% in a 2-round run
    assert all(c.n_seeds == 2 for c in sections[0].claims)

    paths = build_report(tmp_path)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == CLAIM_IDS
    assert all(c["verdict"] in ("reproduced", "not_reproduced", "inconclusive") for c in claims)
    assert (tmp_path / "figures" / "lottery_accuracy_vs_remaining.png").stat().st_size > 0
    assert "lottery.reinit_loss_10pct" in paths.markdown.read_text()

    again = run_sweep(STUDY, config, tmp_path, progress=False)  # resumable: nothing left to do
    assert (again.skipped, again.ran) == (2, 0)


def _row(seed: int, remaining: list[float], dense: float, ticket: list[float], reinit: list[float],
         random: list[float]) -> dict:
    """A store row (with curves, step = level) of one finished IMP trajectory."""
    levels = range(len(remaining) + 1)
    metrics = {"dense_test_acc": dense, "dense_early_stopping_test_acc": dense, "diverged": [],
               "levels": [{"level": i, "remaining": r} for i, r in zip(levels, [1.0] + remaining)],
               "max_abs_pruned_weight": 0.0}
    curves = {"remaining": list(zip(levels, [1.0] + remaining)), "ticket_test_acc": list(zip(levels, [dense] + ticket)),
              "ticket_early_stopping_test_acc": list(zip(levels, [dense] + ticket)),
              "reinit_test_acc": list(zip(levels[1:], reinit)), "random_test_acc": list(zip(levels[1:], random))}
    return {"seed": seed, "status": "done", "metrics": metrics, "curves": curves, "config": {}}


def test_summary_claims_use_the_level_closest_to_ten_percent_and_paired_differences():
    remaining = [0.5, 0.12, 0.09, 0.05]  # closest to 10%: level 3 (9%)
    rows = [
        _row(0, remaining, 0.80, [0.81, 0.80, 0.796, 0.70], [0.78, 0.75, 0.74, 0.60], [0.77, 0.74, 0.75, 0.65]),
        _row(1, remaining, 0.82, [0.82, 0.81, 0.814, 0.72], [0.80, 0.78, 0.77, 0.62], [0.79, 0.77, 0.76, 0.66]),
        _row(2, remaining, 0.78, [0.79, 0.78, 0.775, 0.69], [0.77, 0.74, 0.73, 0.58], [0.75, 0.73, 0.72, 0.68]),
        {"seed": 3, "status": "failed", "metrics": {}, "config": {}},  # ignored
    ]
    (section,) = STUDY.summarize(rows, STUDY.resolve("tiny"))
    claims = {c.id: c for c in section.claims}
    gap = claims["lottery.ticket_vs_dense_10pct"]
    assert "9.0%" in gap.statement and "level 3" in gap.statement
    assert gap.measured == pytest.approx(100 * np.mean([0.80 - 0.796, 0.82 - 0.814, 0.78 - 0.775]))
    assert gap.n_seeds == 3 and gap.verdict == "reproduced"  # paired gaps 0.4, 0.6, 0.5 pp: all below 1.15
    reinit = claims["lottery.reinit_loss_10pct"]
    assert reinit.measured == pytest.approx(100 * np.mean([0.796 - 0.74, 0.814 - 0.77, 0.775 - 0.73]))
    assert reinit.verdict == "reproduced"
    beats = claims["lottery.ticket_beats_controls"]  # sparsest: level 4, 5%
    assert "5.0%" in beats.statement
    assert beats.measured == pytest.approx(100 * np.mean([0.70 - 0.65, 0.72 - 0.66, 0.69 - 0.68]))
    assert beats.verdict == "reproduced"
    assert "| 3 | 9 | 3 |" in section.text  # the per-level table: level, remaining %, n


def test_summary_without_pruned_levels_says_so():
    (section,) = STUDY.summarize([], STUDY.resolve("tiny"))
    assert section.claims == [] and "No finished run" in section.text


@pytest.mark.parametrize("override, match", [
    ("prune_fraction=1.2", r"prune_fraction must be a number in \[0, 1\), got 1.2"),
    ("prune_fraction=0", r"prune_fraction must be a number in \(0, 1\), got 0"),
    ("output_prune_fraction=-0.1", r"output_prune_fraction must be a number in \[0, 1\), got -0.1"),
    ("rounds=0", "rounds must be an integer >= 1, got 0"),
    ("seeds=0", "seeds must be an integer >= 1, got 0"),
])
def test_bad_configs_are_config_errors_naming_the_value(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=[override])


def test_a_model_without_hidden_layers_fails_before_any_run(tmp_path):
    config = STUDY.resolve("tiny", overrides=["model.depth=0"])
    with pytest.raises(ConfigError, match="no prunable layer besides its output layer"):
        run_sweep(STUDY, config, tmp_path, progress=False)
