"""The double_descent study: the locator on curves with known answers, config validation, and
the tiny preset end to end (store -> summarize -> report)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from overparam.analysis import runs_from_rows
from overparam.errors import ConfigError
from overparam.studies import get_study
from overparam.studies.double_descent import (
    STUDY,
    DoubleDescentConfig,
    locate,
    peak_index,
    sweet_spot_index,
    threshold_index,
)

WIDTHS = [4, 8, 16, 32, 64, 128]
PARAMS = [10 * w for w in WIDTHS]
# a textbook double descent: train error reaches 0 at width 32; test error falls to a sweet spot
# at 8, rises to a peak at 16, falls beyond it
TRAIN = [0.50, 0.30, 0.10, 0.00, 0.00, 0.00]
TEST = [0.40, 0.30, 0.45, 0.40, 0.30, 0.25]


def _locate(train, test, seeds=4, jitter=0.002, num_resamples=500, tolerance=0.01):
    """locate() on per-seed errors (seeds x WIDTHS) spread around the given mean curves."""
    offsets = jitter * (np.arange(seeds)[:, None] - (seeds - 1) / 2)
    train_error = np.clip(np.asarray(train)[None, :] + np.abs(offsets) * (np.asarray(train) > 0), 0, 1)
    return locate(train_error, np.asarray(test)[None, :] + offsets, np.asarray(WIDTHS), np.asarray(PARAMS),
                  tolerance, num_resamples=num_resamples)


def _rows(train, test, seeds=3, noise=0.15, family="mlp", widths=WIDTHS, params=PARAMS):
    """Store-like rows of finished runs (what summarize reads)."""
    rows = []
    for seed in range(seeds):
        for j, w in enumerate(widths):
            shift = 0.002 * (seed - 1)
            metrics = {"train_acc": 1 - max(0.0, train[j] + (abs(shift) if train[j] > 0 else 0.0)),
                       "test_acc": 1 - (test[j] + shift), "num_parameters": params[j], "train_loss": 0.1,
                       "test_loss": 1.0}
            metrics.update(train_error=1 - metrics["train_acc"], test_error=1 - metrics["test_acc"])
            if noise > 0:
                metrics.update(noisy_train_acc=1 - train[j], clean_train_acc=1.0, noisy_clean_acc=0.0)
            rows.append({"status": "done", "seed": seed, "metrics": metrics, "config": {"params": {
                "run": {}, "family": family, "width": w, "label_noise": noise}}})
    return rows


def test_locators_on_known_curves():
    assert int(threshold_index(np.array(TRAIN), 0.01)) == 3
    assert int(threshold_index(np.array([0.5, 0.2, 0.05]), 0.01)) == -1  # none interpolates
    assert int(threshold_index(np.array([0.5, np.nan, 0.0]), 0.01)) == 2  # a missing width never does
    t = threshold_index(np.array(TRAIN), 0.01)
    sweet = sweet_spot_index(np.array(TEST), t)
    assert int(sweet) == 1
    assert int(peak_index(np.array(TEST), sweet)) == 2
    # vectorized over resamples (rows)
    batch = np.array([TRAIN, [0.5, 0.3, 0.2, 0.1, 0.0, 0.0]])
    assert threshold_index(batch, 0.01).tolist() == [3, 4]
    # an underfit smallest model has the global maximum, but the peak comes after the sweet spot
    assert int(peak_index(np.array(TEST))) == 2
    underfit = np.array([0.9, 0.3, 0.45, 0.40, 0.30, 0.25])
    assert int(peak_index(underfit)) == 0
    assert int(peak_index(underfit, sweet_spot_index(underfit, t))) == 2
    # a test error that only falls: sweet spot and peak are the largest width
    falling = np.array([0.5, 0.4, 0.3, 0.25, 0.2, 0.1])
    s = sweet_spot_index(falling, np.array(-1))
    assert int(s) == 5 and int(peak_index(falling, s)) == 5


def test_locate_gives_threshold_peak_and_fall_with_cis():
    found = _locate(TRAIN, TEST)
    assert found.threshold_index == 3 and found.sweet_index == 1 and found.peak_index == 2
    thr = found.threshold_params
    assert thr[0] == PARAMS[3] and thr.n == 4 and thr[1] <= thr[0] <= thr[2]
    ratio = found.log2_peak_over_threshold
    assert ratio[0] == pytest.approx(math.log2(16 / 32))
    assert -1 <= ratio[1] <= ratio[2] <= 1
    fall = found.fall
    assert fall[0] == pytest.approx(0.25 - 0.45)
    assert fall[2] < 0


def test_no_peak_when_test_error_never_rises():
    falling = [0.40, 0.35, 0.30, 0.28, 0.27, 0.25]
    found = _locate(TRAIN, falling, num_resamples=200)
    assert found.peak_index == found.sweet_index == 3  # the threshold, where the descent goes on
    assert math.isinf(found.log2_peak_over_threshold[0]) and found.log2_peak_over_threshold[0] > 0
    assert found.fall[0] == 0.0
    sections = STUDY.summarize(_rows(TRAIN, falling), STUDY.resolve("tiny"))
    claims = {c.id: c for s in sections for c in s.claims}
    assert claims["double_descent.mlp.noise15.peak_near_threshold"].verdict == "not_reproduced"
    assert claims["double_descent.mlp.noise15.falls_beyond_peak"].verdict == "not_reproduced"
    assert "no peak" in sections[0].text


def test_locate_without_interpolation_and_with_one_seed():
    found = _locate([0.5, 0.4, 0.3, 0.2, 0.1, 0.05], TEST, num_resamples=200)
    assert found.threshold_index == -1
    assert math.isinf(found.threshold_params[0]) and math.isinf(found.log2_peak_over_threshold[0])
    single = _locate(TRAIN, TEST, seeds=1, num_resamples=200)
    assert single.threshold_params[0] == PARAMS[3]
    assert math.isnan(single.threshold_params[1])  # no interval from one seed


def test_claims_from_synthetic_rows():
    config = STUDY.resolve("tiny")
    rows = _rows(TRAIN, TEST) + _rows(TRAIN, [0.40, 0.30, 0.28, 0.27, 0.26, 0.25], noise=0.0)
    sections = STUDY.summarize(rows, config)
    claims = {c.id: c for s in sections for c in s.claims}
    assert set(claims) == {"double_descent.mlp.noise0.interpolation_threshold",
                           "double_descent.mlp.noise15.interpolation_threshold",
                           "double_descent.mlp.noise15.peak_near_threshold",
                           "double_descent.mlp.noise15.falls_beyond_peak"}
    assert claims["double_descent.mlp.noise15.interpolation_threshold"].measured == PARAMS[3]
    assert claims["double_descent.mlp.noise15.interpolation_threshold"].verdict == "reproduced"
    assert claims["double_descent.mlp.noise15.peak_near_threshold"].measured == -1.0
    assert claims["double_descent.mlp.noise15.peak_near_threshold"].verdict == "reproduced"
    assert claims["double_descent.mlp.noise15.falls_beyond_peak"].verdict == "reproduced"
    assert "double descent" in sections[0].text
    # no width interpolates: the threshold claim is not reproduced, and the text says so
    sections = STUDY.summarize(_rows([0.5, 0.4, 0.3, 0.2, 0.1, 0.05], TEST), config)
    claims = {c.id: c for s in sections for c in s.claims}
    assert claims["double_descent.mlp.noise15.interpolation_threshold"].verdict == "not_reproduced"
    assert claims["double_descent.mlp.noise15.peak_near_threshold"].verdict == "not_reproduced"
    assert "No width reaches" in sections[0].text
    # the peak at the largest width: test error never falls again
    sections = STUDY.summarize(_rows(TRAIN, [0.4, 0.3, 0.35, 0.4, 0.45, 0.5]), config)
    claims = {c.id: c for s in sections for c in s.claims}
    assert claims["double_descent.mlp.noise15.falls_beyond_peak"].verdict == "not_reproduced"


def test_curves_tolerate_missing_runs():
    rows = _rows(TRAIN, TEST)
    del rows[4]  # seed 0 at width 64 never finished
    rows.append({**rows[0], "status": "failed"})
    curve = STUDY.analyze(runs_from_rows(rows), STUDY.resolve("tiny")).curves[("mlp", 0.15)]
    assert curve.table["train_error"].shape == (3, len(WIDTHS))
    assert np.isnan(curve.table["test_error"][0, 4]) and np.isfinite(curve.table["test_error"][1, 4])
    assert curve.located.peak_index == 2


def test_config_validation():
    assert DoubleDescentConfig().seeds >= 1
    for preset in STUDY.presets:
        STUDY.resolve(preset)
    with pytest.raises(ConfigError, match="mlp_widths"):
        STUDY.resolve("tiny", overrides={"mlp_widths": [8, 8, 16]})
    with pytest.raises(ConfigError, match="model family"):
        STUDY.resolve("tiny", overrides={"models": ["mlp", "transformer"]})
    with pytest.raises(ConfigError, match="label_noise"):
        STUDY.resolve("tiny", overrides={"label_noise": [0.0, 1.5]})
    with pytest.raises(ConfigError, match="label_noise"):
        STUDY.resolve("tiny", overrides={"data.label_noise": 0.1})
    with pytest.raises(ConfigError, match="cnn_model"):
        STUDY.resolve("tiny", overrides={"cnn_model": "vgg"})
    with pytest.raises(ConfigError, match="interpolation_error"):
        STUDY.resolve("tiny", overrides={"interpolation_error": 2})
    with pytest.raises(ConfigError, match="no config key"):
        STUDY.resolve("tiny", overrides={"widths": [1, 2, 3]})
    with pytest.raises(ConfigError):  # a bad train option fails at resolve time
        STUDY.resolve("tiny", overrides={"train.optimiser": "sgd"})
    # a width the model rejects fails in grid(), before anything runs
    config = STUDY.resolve("tiny", overrides={"cnn_model": "cnn5"})
    with pytest.raises(ConfigError):
        STUDY.grid(config)


def test_grid_shares_data_across_seeds_and_batches_them():
    config = STUDY.resolve("tiny")
    specs = STUDY.grid(config)
    assert len(specs) == 2 * 3 * 2 * config.seeds  # families x widths x noise x seeds
    assert len({s.key for s in specs}) == len(specs)
    noisy = [s for s in specs if s.params["label_noise"] > 0]
    assert all(s.params["run"]["data"]["label_noise"] == s.params["label_noise"] for s in specs)
    assert all(s.params["run"]["data"]["seed"] == 0 for s in noisy)
    keys = {STUDY.batch_key(s) for s in specs}
    assert len(keys) == len(specs) // config.seeds  # the seeds of one grid point share a batch key
    cnn = next(s for s in specs if s.params["family"] == "cnn")
    assert cnn.params["run"]["model"]["name"] == "cnn1d"


def test_tiny_end_to_end(tmp_path):
    from overparam.sweep.execute import run_sweep
    from overparam.sweep.report import build_report
    from overparam.sweep.store import ResultsStore

    assert get_study("double_descent") is STUDY
    config = STUDY.resolve("tiny")
    summary = run_sweep(STUDY, config, tmp_path, progress=False)
    assert summary.counts["done"] == summary.total == len(STUDY.grid(config))
    with ResultsStore(tmp_path) as store:
        rows = store.runs("double_descent")
    for row in rows:
        m = row["metrics"]
        assert {"train_acc", "test_acc", "train_loss", "test_loss", "num_parameters", "train_error",
                "test_error"} <= set(m)
        assert m["train_error"] == pytest.approx(1 - m["train_acc"])
        noisy = row["config"]["params"]["label_noise"] > 0
        assert ("noisy_train_acc" in m) == noisy
        if noisy:
            assert m["num_noisy_labels"] == round(0.2 * 200)
            assert 0 <= m["noisy_train_acc"] <= 1 and 0 <= m["clean_train_acc"] <= 1
    sections = STUDY.summarize(rows, config)
    assert sections[0].title.startswith("double_descent")
    assert [name for name, _ in sections[0].figures] == ["double_descent_errors", "double_descent_noisy_labels"]
    ids = {c.id for s in sections for c in s.claims}
    assert {f"double_descent.{f}.noise20.{k}" for f in ("mlp", "cnn")
            for k in ("interpolation_threshold", "peak_near_threshold", "falls_beyond_peak")} <= ids
    assert all(c.verdict in ("reproduced", "not_reproduced", "inconclusive") for s in sections for c in s.claims)

    paths = build_report(tmp_path)
    assert paths.markdown.is_file() and paths.html.is_file()
    report = paths.markdown.read_text()
    assert "## double_descent" in report and "figures/double_descent_errors.png" in report
    claims = json.loads(paths.claims.read_text())
    assert ids == {c["id"] for c in claims}
    assert all(c["study"] == "double_descent" for c in claims)
    assert all(p.is_file() for p in paths.figures)
