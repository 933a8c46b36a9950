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
    MNIST1D,
    PAPER_CLAIMS,
    STUDY,
    DoubleDescentConfig,
    _noise_levels,
    _run_config,
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
BEATS = "double_descent.mlp.noise15.largest_beats_underparameterized"
# the notebook's grids (greydanus/mnist1d, notebooks/deep-double-descent.ipynb)
NOTEBOOK_MLP = np.unique(np.geomspace(2, 300, 20, dtype=int)).tolist()
NOTEBOOK_CNN = np.concatenate((np.arange(2, 30, 2), np.arange(30, 101, 5))).tolist()


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
    assert set(claims) == {PEAK, FALL, BEATS}  # claims at noise > 0 only; the threshold is located, not claimed
    peak, fall = claims[PEAK], claims[FALL]
    assert peak.measured == -1.0 and peak.verdict == "reproduced" and peak.magnitude == "n/a"
    assert peak.paper == PAPER_CLAIMS["peak_near_threshold"].text and peak.source == "Nakkiran et al. 2019"
    assert peak.paper_value is None and peak.band is None and peak.ci_method == "percentile (seeds resampled)"
    # the fall: largest width (0.25) minus the peak (0.45), paired by seed, with the test set's binomial SE
    assert fall.measured == pytest.approx(-0.20) and fall.ci_method == "t" and fall.n_seeds == 5
    assert fall.test_examples == 1000
    assert fall.binomial_se == pytest.approx(math.sqrt((0.25 * 0.75 + 0.45 * 0.55) / 1000), rel=0.05)
    assert fall.verdict == "reproduced" and fall.direction == "holds"
    # the largest width (0.25) against the sweet spot (width 8, 0.30), in percentage points, paired by seed
    beats = claims[BEATS]
    assert beats.measured == pytest.approx(-5.0) and beats.ci_method == "t" and beats.n_seeds == 5
    assert beats.ci == pytest.approx([-5.0, -5.0])  # every seed is shifted alike: paired, no spread
    assert beats.binomial_se == pytest.approx(100 * math.sqrt((0.25 * 0.75 + 0.30 * 0.70) / 1000), rel=0.05)
    assert beats.verdict == "reproduced" and beats.source == MNIST1D and beats.paper_value is None
    assert beats.paper == PAPER_CLAIMS["largest_beats_underparameterized"].text
    assert "sweet spot (width 8;" in beats.statement and "largest width (128)" in beats.statement
    assert "double descent" in sections[0].text and "over-parameterized model generalizes best" in sections[0].text
    assert "width 32 (between 16 and 32; 100% of seed resamples" in sections[0].text  # the threshold, located
    assert "peak: width 16 (between 8 and 32" in sections[1].text
    # no width interpolates: the peak cannot be near a threshold, and the text says so
    claims, sections = _claims(_rows([0.5, 0.4, 0.3, 0.2, 0.1, 0.05], TEST))
    assert claims[PEAK].verdict == "not_reproduced" and claims[PEAK].measured == -math.inf
    assert "No width reaches" in sections[0].text
    # the peak at the largest width: test error never falls again (a fall of exactly 0)
    claims, _ = _claims(_rows(TRAIN, [0.4, 0.3, 0.35, 0.4, 0.45, 0.5]))
    assert claims[FALL].verdict == "not_reproduced" and claims[FALL].ci == [0.0, 0.0]


def test_largest_beats_underparameterized_on_known_cases():
    # a double descent whose second descent stays above the sweet spot (0.30 at width 8): the fall beyond
    # the peak holds, the largest model does not beat the classical regime's best
    claims, sections = _claims(_rows(TRAIN, [0.40, 0.30, 0.45, 0.40, 0.35, 0.33]))
    assert claims[FALL].verdict == "reproduced"
    assert claims[BEATS].measured == pytest.approx(3.0) and claims[BEATS].verdict == "not_reproduced"
    assert "Together: a double descent in model size." in sections[0].text
    # beating the sweet spot by less than 2 binomial SE of a 100-example test set: undecided
    claims, _ = _claims(_rows(TRAIN, [0.40, 0.30, 0.45, 0.40, 0.35, 0.29], n_test=100))
    assert claims[BEATS].ci[1] < 0 and claims[BEATS].verdict == "inconclusive"
    assert claims[BEATS].reason == "within 2 binomial SE of the test set"
    # no width interpolates: the largest model is not over-parameterized, nothing to measure
    claims, _ = _claims(_rows([0.5, 0.4, 0.3, 0.2, 0.1, 0.05], TEST))
    beats = claims[BEATS]
    assert beats.verdict == "inconclusive" and math.isnan(beats.ci[0]) and beats.ci_method.startswith("none")
    # only the largest width interpolates and has the lowest test error: it is the sweet spot itself
    claims, _ = _claims(_rows([0.5, 0.4, 0.3, 0.2, 0.1, 0.0], [0.5, 0.4, 0.3, 0.25, 0.2, 0.1]))
    beats = claims[BEATS]
    assert beats.verdict == "inconclusive" and beats.ci_method == "none: the sweet spot is the largest width"


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
    with pytest.raises(ConfigError, match="label_noise"):
        STUDY.resolve("tiny", overrides={"cnn_label_noise": [0.15, 1.5]})
    with pytest.raises(ConfigError, match="mlp_options cannot set 'width'"):
        STUDY.resolve("tiny", overrides={"mlp_options": {"width": 8}})
    with pytest.raises(ConfigError, match="mlp_options must be a mapping"):
        STUDY.resolve("tiny", overrides={"mlp_options": 0.5})
    with pytest.raises(ConfigError, match="w_stdd"):  # an option the model does not take fails in grid()
        STUDY.grid(STUDY.resolve("tiny", overrides={"mlp_options": {"w_stdd": 0.5}}))
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
    # the CNN at its own noise levels; the MLP's extra model options reach its runs
    config = STUDY.resolve("tiny", overrides={"cnn_label_noise": [0.2], "mlp_options": {"w_std": 0.5}})
    specs = STUDY.grid(config)
    assert {s.params["label_noise"] for s in specs if s.params["family"] == "cnn"} == {0.2}
    assert {s.params["label_noise"] for s in specs if s.params["family"] == "mlp"} == {0.0, 0.2}
    assert len(specs) == (2 * 3 + 3) * config.seeds
    assert all(s.config.model.options["w_std"] == 0.5 for s in specs if s.params["family"] == "mlp")


@pytest.mark.parametrize("preset", ["quick", "notebook"])
def test_quick_and_notebook_presets_are_the_mnist1d_notebook_protocol(preset):
    """greydanus/mnist1d, notebooks/deep-double-descent.ipynb: 16000 samples at train_split 0.25,
    MLP with two hidden layers and the ConvBase CNN, SGD lr 0.01 momentum 0.9, batch 100, 500
    epochs; the MLP without and with 15% label noise, the CNN with it; widths from its grids
    (``notebook``: all of them; ``quick``: a subset, and no CNN, which does not fit its time)."""
    config = STUDY.resolve(preset)
    assert config.data == {"name": "mnist1d", "num_samples": 16000, "train_split": 0.25, "seed": 0}
    train = dict(config.train)
    assert train.pop("eval_every") >= 4000  # evaluations only every 100 epochs: the final one is what counts
    assert train == {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9, "batch_size": 100, "epochs": 500}
    assert not config.cnn_data and not config.cnn_train
    assert config.mlp_depth == 2 and config.cnn_model == "cnn1d"
    assert config.mlp_options == {"w_std": pytest.approx(3 ** -0.5)}  # PyTorch's default weight variance
    assert config.label_noise == (0.0, 0.15) and config.cnn_label_noise == (0.15,) and config.seeds == 5
    assert set(config.mlp_widths) <= set(NOTEBOOK_MLP) and max(config.mlp_widths) == 300
    assert set(config.cnn_widths) <= set(NOTEBOOK_CNN)
    # the notebook's thresholds (train error 0: MLP width 61 with noise, 47 without; CNN 24 channels), the
    # widths just below them and its sweet spots (MLP 16, CNN 10) are on the grids, with widths on both sides
    assert {9, 16, 27, 36, 47, 61, 104} <= set(config.mlp_widths)
    assert {10, 18, 24} <= set(config.cnn_widths) and min(config.cnn_widths) < 10 and max(config.cnn_widths) > 24
    if preset == "notebook":
        assert config.models == ("mlp", "cnn")
        assert list(config.mlp_widths) == NOTEBOOK_MLP and list(config.cnn_widths) == NOTEBOOK_CNN
    else:
        assert config.models == ("mlp",)
        on = STUDY.resolve(preset, overrides=["models=[mlp, cnn]"])  # the CNN on its thin grid, at 15% only
        assert _noise_levels(on, "cnn") == (0.15,) and _noise_levels(on, "mlp") == (0.0, 0.15)


def test_quick_preset_builds_the_notebook_models():
    import torch
    from torch import nn

    from overparam.models import build, count_parameters

    config = STUDY.resolve("quick")
    model = _run_config(config, "mlp", 16, 0.15, seed=0).model  # what the grid runs (without loading the data)
    mlp = build(model.name, (40,), 10, **model.options)
    notebook = nn.Sequential(nn.Linear(40, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 10))
    assert count_parameters(mlp) == count_parameters(notebook)
    assert [tuple(p.shape) for p in mlp.parameters()] == [tuple(p.shape) for p in notebook.parameters()]
    with torch.no_grad():
        weight = mlp.hidden[1].weight  # N(0, 1/(3 fan_in)): PyTorch's default variance
        assert float(weight.var()) == pytest.approx(1 / (3 * 16), rel=0.35)
    model = _run_config(STUDY.resolve("quick", overrides=["models=[mlp, cnn]"]), "cnn", 10, 0.15, seed=0).model
    cnn = build(model.name, (40,), 10, **model.options)
    conv = nn.Sequential(nn.Conv1d(1, 10, 5, stride=2, padding=1), nn.ReLU(), nn.Conv1d(10, 10, 3, stride=2, padding=1),
                         nn.ReLU(), nn.Conv1d(10, 10, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(10 * 5, 10))
    assert [tuple(p.shape) for p in cnn.parameters()] == [tuple(p.shape) for p in conv.parameters()]


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
                   for k in ("peak_near_threshold", "falls_beyond_peak", "largest_beats_underparameterized")}
    assert all(c.verdict == "inconclusive" and c.reason == "n < 5" for s in sections for c in s.claims)  # 2 seeds

    paths = build_report(tmp_path)
    assert paths.markdown.is_file() and paths.html.is_file()
    report = paths.markdown.read_text()
    assert "## double_descent" in report and "figures/double_descent_errors.png" in report
    claims = json.loads(paths.claims.read_text())
    assert ids == {c["id"] for c in claims}
    assert all(c["study"] == "double_descent" and c["source"] == (
        MNIST1D if c["id"].endswith("largest_beats_underparameterized") else "Nakkiran et al. 2019") for c in claims)
    assert all(c["paper_value"] is None and c["magnitude"] == "n/a" for c in claims)
    assert all(c["direction"] in ("holds", "fails", "undecided") for c in claims)
    assert {c["test_examples"] for c in claims if c["id"].endswith("falls_beyond_peak")} == {200}
    assert all(p.is_file() for p in paths.figures)
