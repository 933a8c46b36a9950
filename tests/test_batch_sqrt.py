"""batch_sqrt: the batch_size study under its own name with η ∝ sqrt(B)."""

from __future__ import annotations

import json
import math

import pytest

from overparam.studies import get_study
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore


def test_every_preset_scales_the_learning_rate_with_sqrt_batch():
    study = get_study("batch_sqrt")
    for preset in study.presets:
        assert study.resolve(preset).lr_scaling == "sqrt", preset
    assert list(study.resolve("paper").batch_sizes) == [32, 128, 512, 2048, 8192]


def test_tiny_sweep_trains_with_sqrt_scaled_lr_and_reports_under_its_own_name(tmp_path):
    study = get_study("batch_sqrt")
    config = study.resolve("tiny")
    summary = run_sweep(study, config, tmp_path, progress=False, preset="tiny")
    assert summary.failures == [] and summary.counts["done"] == 6
    with ResultsStore(tmp_path) as store:
        rows = store.runs("batch_sqrt")
        assert store.runs("batch_size") == []
    base_lr = config.train["lr"]
    for row in rows:
        params = row["config"]["params"]
        if params["kind"] == "train":
            b = params["run"]["train"]["batch_size"]
            assert row["metrics"]["lr"] == pytest.approx(base_lr * math.sqrt(b / config.base_batch_size))
    paths = build_report(tmp_path)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == ["batch_sqrt.lambda_max_ratio", "batch_sqrt.small_batch_accuracy_gain",
                                         "batch_sqrt.sharpness_error_correlation"]
    assert claims[1]["paper"] == "about +3 pp (B=32 vs B=8192)" and claims[1]["paper_value"] == 3.0
    assert claims[1]["band"] == [1.5, 4.5]  # ± max(1 pp, 50%)
    assert claims[0]["paper_value"] is None and claims[0]["magnitude"] == "n/a"  # "larger batches sharper"
    assert "Larger batches find sharper regions at matched training loss" in claims[0]["statement"]
    assert sorted(p.name for p in paths.figures) == ["batch_sqrt_accuracy_sharpness.png", "batch_sqrt_line.png",
                                                    "batch_sqrt_perturbation.png", "batch_sqrt_sharpness_vs_loss.png"]
    assert "LR scaling 'sqrt'" in paths.markdown.read_text()
