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
    PAPER_CLAIMS,
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
PEAK = "double_descent.mlp.noise15.peak_near_threshold"
FALL = "double_descent.mlp.noise15.falls_beyond_peak"


def _locate(train, test, seeds=4, jitter=0.002, num_resamples=500, tolerance=0.01):
    """locate() on per-seed errors (seeds x WIDTHS) spread around the given mean curves."""
    offsets = jitter * (np.arange(seeds)[:, None] - (seeds - 1) / 2)
    train_error = np.clip(np.asarray(train)[None, :] + np.abs(offsets) * (np.asarray(train) > 0), 0, 1)
    return locate(train_error, np.asarray(test)[None, :] + offsets, np.asarray(WIDTHS), tolerance,
                  num_resamples=num_resamples)


def _rows(train, test, seeds=5, noise=0.15, family="mlp", widths=WIDTHS, params=PARAMS, n_test=1000):
    """Store-like rows of finished runs (what summarize reads)."""
    rows = []
    for seed in range(seeds):
        for j, w in enumerate(widths):
            shift = 0.002 * (seed - 1)
            metrics = {"train_acc": 1 - max(0.0, train[j] + (abs(shift) if train[j] > 0 else 0.0)),
                       "test_acc": 1 - (test[j] + shift), "num_parameters": params[j], "train_loss": 0.1,
                       "test_loss": 1.0, "n_test": n_test}
            metrics.update(train_error=1 - metrics["train_acc"], test_error=1 - metrics["test_acc"])
            if noise > 0:
                metrics.update(noisy_train_acc=1 - train[j], clean_train_acc=1.0, noisy_clean_acc=0.0)
            rows.append({"status": "done", "seed": seed, "metrics": metrics, "config": {"params": {
                "run": {}, "family": family, "width": w, "label_noise": noise}}})
    return rows


def _claims(rows, config=None):
    sections = STUDY.summarize(rows, config or STUDY.resolve("tiny"))
    return {c.id: c for s in sections for c in s.claims}, sections


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


def test_locate_gives_located_threshold_sweet_spot_and_peak():
    found = _locate(TRAIN, TEST)
    # the threshold is a crossing: between the last width that does not interpolate and the first that does
    assert (found.threshold.index, found.threshold.value, found.threshold.low, found.threshold.high) == (3, 32, 16, 32)
    assert found.threshold.agreement == 1.0 and found.threshold.n == 4
    assert "32 (between 16 and 32; 100% of seed resamples" in found.threshold.describe()
    assert (found.sweet.index, found.peak.index) == (1, 2)
    assert (found.peak.low, found.peak.high) == (8, 32)  # an extremum: between its neighbours
    ratio = found.log2_peak_over_threshold
    assert ratio[0] == pytest.approx(math.log2(16 / 32)) and ratio.method == "percentile (seeds resampled)"
    assert -1 <= ratio[1] <= ratio[2] <= 1


def test_no_peak_when_test_error_never_rises():
    falling = [0.40, 0.35, 0.30, 0.28, 0.27, 0.25]
    found = _locate(TRAIN, falling, num_resamples=200)
    assert found.sweet.index == 3 and found.peak.index == -1  # lowest at the threshold, and the descent goes on
    assert found.peak.agreement == 1.0 and "not located" in found.peak.describe()
    assert math.isinf(found.log2_peak_over_threshold[0]) and found.log2_peak_over_threshold[0] > 0
    claims, sections = _claims(_rows(TRAIN, falling))
    assert claims[PEAK].verdict == "not_reproduced" and claims[PEAK].direction == "fails"  # +inf in every resample
    fall = claims[FALL]  # no peak, no fall to measure: no interval, no verdict
    assert fall.verdict == "inconclusive" and fall.direction == "undecided" and math.isnan(fall.ci[0])
    assert "no peak" in sections[0].text


def test_locate_without_interpolation_and_with_one_seed():
    found = _locate([0.5, 0.4, 0.3, 0.2, 0.1, 0.05], TEST, num_resamples=200)
    assert found.threshold.index == -1 and math.isnan(found.threshold.value)
    assert math.isinf(found.log2_peak_over_threshold[0]) and found.log2_peak_over_threshold[0] < 0
    single = _locate(TRAIN, TEST, seeds=1, num_resamples=200)
    assert single.threshold.value == 32 and math.isnan(single.threshold.agreement)
    assert math.isnan(single.log2_peak_over_threshold[1])  # no interval from one seed


def test_claims_from_synthetic_rows():
    rows = _rows(TRAIN, TEST) + _rows(TRAIN, [0.40, 0.30, 0.28, 0.27, 0.26, 0.25], noise=0.0)
    claims, sections = _claims(rows)
    assert set(claims) == {PEAK, FALL}  # claims at noise > 0 only; the threshold is located, not claimed
    peak, fall = claims[PEAK], claims[FALL]
    assert peak.measured == -1.0 and peak.verdict == "reproduced" and peak.magnitude == "n/a"
    assert peak.paper == PAPER_CLAIMS["peak_near_threshold"].text and peak.source == "Nakkiran et al. 2019"
    assert peak.paper_value is None and peak.band is None and peak.ci_method == "percentile (seeds resampled)"
    # the fall: largest width (0.25) minus the peak (0.45), paired by seed, with the test set's binomial SE
    assert fall.measured == pytest.approx(-0.20) and fall.ci_method == "t" and fall.n_seeds == 5
    assert fall.test_examples == 1000
    assert fall.binomial_se == pytest.approx(math.sqrt((0.25 * 0.75 + 0.45 * 0.55) / 1000), rel=0.05)
    assert fall.verdict == "reproduced" and fall.direction == "holds"
    assert "double descent" in sections[0].text
    assert "width 32 (between 16 and 32; 100% of seed resamples" in sections[0].text  # the threshold, located
    assert "peak: width 16 (between 8 and 32" in sections[1].text
    # no width interpolates: the peak cannot be near a threshold, and the text says so
    claims, sections = _claims(_rows([0.5, 0.4, 0.3, 0.2, 0.1, 0.05], TEST))
    assert claims[PEAK].verdict == "not_reproduced" and claims[PEAK].measured == -math.inf
    assert "No width reaches" in sections[0].text
    # the peak at the largest width: test error never falls again (a fall of exactly 0)
    claims, _ = _claims(_rows(TRAIN, [0.4, 0.3, 0.35, 0.4, 0.45, 0.5]))
    assert claims[FALL].verdict == "not_reproduced" and claims[FALL].ci == [0.0, 0.0]


def test_verdicts_follow_the_rules_on_known_cases():
    # a fall that is clear over seeds but within 2 binomial SE of 0 on a 100-example test set: undecided
    small = [0.40, 0.30, 0.45, 0.42, 0.41, 0.40]
    claims, _ = _claims(_rows(TRAIN, small, n_test=100))
    fall = claims[FALL]
    assert fall.ci[1] < 0  # the interval over seeds is below 0 ...
    assert fall.direction == "undecided" and fall.verdict == "inconclusive"  # ... but not 2 SE from it
    assert fall.reason == "within 2 binomial SE of the test set"
    claims, _ = _claims(_rows(TRAIN, small, n_test=100_000))
    assert claims[FALL].verdict == "reproduced"  # the same fall on a large test set
    # fewer than 5 seeds: no verdict, whatever the interval
    claims, _ = _claims(_rows(TRAIN, TEST, seeds=3))
    assert claims[PEAK].direction == "holds" and claims[PEAK].verdict == "inconclusive"
    assert claims[FALL].reason == "n < 5"
    # the peak two doublings beyond the threshold: outside [-1, 1] in every resample
    claims, _ = _claims(_rows([0.5, 0.2, 0.0, 0.0, 0.0, 0.0], [0.4, 0.3, 0.32, 0.35, 0.45, 0.3]))
    assert claims[PEAK].measured == 2.0 and claims[PEAK].verdict == "not_reproduced"


def test_figures_keep_title_and_legend_on_the_canvas():
    """1 or 2 families, 1 to 3 noise levels: the suptitle and the legends lie inside the figure."""
    config = STUDY.resolve("quick")
    for families in (("mlp",), ("mlp", "cnn")):
        for noises in ((0.15,), (0.0, 0.1, 0.2)):
            rows = [r for f in families for p in noises for r in _rows(TRAIN, TEST, noise=p, family=f)]
            analysis = STUDY.analyze(runs_from_rows(rows), config)
            (section, *_) = STUDY.render(analysis, STUDY.claims(analysis, config), config)
            for name, fig in section.figures:
                fig.draw_without_rendering()
                texts = fig.legends + [t for t in (fig._suptitle,) if t is not None]
                for artist in texts:
                    box = artist.get_window_extent()
                    assert 0 <= box.x0 and box.x1 <= fig.bbox.width, (name, families, noises, box)
                    assert 0 <= box.y0 and box.y1 <= fig.bbox.height, (name, families, noises, box)


def test_curves_tolerate_missing_runs():
    rows = _rows(TRAIN, TEST)
    del rows[4]  # seed 0 at width 64 never finished
    rows.append({**rows[0], "status": "failed"})
    curve = STUDY.analyze(runs_from_rows(rows), STUDY.resolve("tiny")).curves[("mlp", 0.15)]
    assert curve.table["train_error"].shape == (5, len(WIDTHS))
    assert np.isnan(curve.table["test_error"][0, 4]) and np.isfinite(curve.table["test_error"][1, 4])
    assert curve.located.peak.index == 2
    assert curve.fall.n == 5  # the peak and the largest width: every seed has both


def test_config_validation():
    assert DoubleDescentConfig().seeds >= 5
    for preset in STUDY.presets:
        STUDY.resolve(preset)
    assert STUDY.resolve("quick").seeds >= 5 and STUDY.resolve("mnist").seeds >= 5
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
    assert ids == {f"double_descent.{f}.noise20.{k}" for f in ("mlp", "cnn")
                   for k in ("peak_near_threshold", "falls_beyond_peak")}
    assert all(c.verdict == "inconclusive" and c.reason == "n < 5" for s in sections for c in s.claims)  # 2 seeds

    paths = build_report(tmp_path)
    assert paths.markdown.is_file() and paths.html.is_file()
    report = paths.markdown.read_text()
    assert "## double_descent" in report and "figures/double_descent_errors.png" in report
    claims = json.loads(paths.claims.read_text())
    assert ids == {c["id"] for c in claims}
    assert all(c["study"] == "double_descent" and c["source"] == "Nakkiran et al. 2019" for c in claims)
    assert all(c["paper_value"] is None and c["magnitude"] == "n/a" for c in claims)
    assert all(c["direction"] in ("holds", "fails", "undecided") for c in claims)
    assert {c["test_examples"] for c in claims if c["id"].endswith("falls_beyond_peak")} == {200}
    assert all(p.is_file() for p in paths.figures)
