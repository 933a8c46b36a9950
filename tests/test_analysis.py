"""The analysis layer: stored rows parsed once, the seed x axis table, paired intervals, seed
resampling of curve statistics and quantities located on a grid, on hand-made runs with known
answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from overparam.analysis import (
    Run,
    SeedTable,
    binomial_se,
    correlation,
    group,
    locate_on_grid,
    number,
    resample_seeds,
    resampled_ci,
    runs_from_rows,
)
from overparam.errors import ConfigError


def _row(seed, width, metrics, status="done", curves=None):
    run = {"data": {"name": "mnist1d"}, "model": {"name": "mlp", "width": width, "depth": 1}, "seed": seed}
    return {"run_key": f"w{width}-s{seed}", "seed": seed, "status": status, "metrics": metrics,
            "curves": curves or {}, "config": {"params": {"run": run, "kind": "train"}}}


def _rows():
    rows = []
    for seed in range(4):
        for width in (64, 16, 256):  # out of order on purpose
            loss = [(0, 2.0), (10 * (seed + 1), 1.0 / width)]
            rows.append(_row(seed, width, {"test_acc": 0.5 + 0.001 * width + 0.01 * seed, "sizes": [width, seed]},
                             curves={"train_loss": loss}))
    rows.append(_row(9, 16, {}, status="failed"))
    return rows


def test_rows_become_typed_runs_once():
    runs = runs_from_rows(_rows())
    assert len(runs) == 12 and all(isinstance(r, Run) for r in runs)  # the failed row is left out
    run = runs[0]
    assert run.config.model.options["width"] == 64 and run.config.data.name == "mnist1d"
    assert run.settings == {"kind": "train"} and run.metric("test_acc") == pytest.approx(0.564)
    assert math.isnan(run.metric("missing"))
    steps, values = run.curve("train_loss")
    assert steps.tolist() == [0, 10] and values.tolist() == [2.0, 1.0 / 64]
    generic = Run.from_row({"seed": 0, "status": "done", "config": {"params": {
        "data": {"name": "mnist1d"}, "model": {"name": "mlp"}, "train": {"lr": 0.1}, "seed": 0}}})
    assert generic.config.train.lr == 0.1 and generic.settings == {}  # the generic train study's params
    assert number("nan") != number("nan") and number("inf") == math.inf and math.isnan(number(None))


def test_seed_table_pivots_by_an_axis_with_nan_where_missing():
    runs = runs_from_rows(_rows())[:-1]  # seed 3 lacks width 256
    table = SeedTable(runs, lambda r: r.config.model.options["width"])
    assert table.axis == [16, 64, 256] and table.seeds == [0, 1, 2, 3] and table.shape == (4, 3)
    acc = table["test_acc"]
    assert acc[0].tolist() == pytest.approx([0.516, 0.564, 0.756]) and math.isnan(acc[3, 2])
    assert table["sizes"].shape == (4, 3, 2) and table["sizes"][1, 2].tolist() == [256, 1]  # list-valued metric
    assert table.n_runs() == [4, 4, 3] and table.counts("test_acc") == [4, 4, 3]
    assert table.by_seed("test_acc", 256) == pytest.approx({0: 0.756, 1: 0.766, 2: 0.776})
    steps, curves = table.curve("train_loss")  # the union of the steps any run recorded
    assert steps.tolist() == [0, 10, 20, 30, 40] and curves.shape == (4, 3, 5)
    assert curves[1, 0, 0] == 2.0 and math.isnan(curves[1, 0, 1]) and curves[1, 0, 2] == pytest.approx(1 / 16)
    assert np.isnan(curves[3, 2]).all()  # the missing run
    with pytest.raises(ConfigError, match="two runs at seed 0"):
        SeedTable(runs, lambda r: "one column")
    with pytest.raises(ConfigError, match="not in this table"):
        table.at("test_acc", 32)


def test_paired_intervals_come_from_the_per_seed_values():
    table = SeedTable(runs_from_rows(_rows()), lambda r: r.config.model.options["width"])
    difference = table.difference("test_acc", 256, 16, scale=100)
    assert difference.estimate == pytest.approx(24.0) and difference.method == "t" and difference.n == 4
    assert difference.low == pytest.approx(24.0) and difference.high == pytest.approx(24.0)  # the same every seed
    ratio = table.ratio("test_acc", 256, 16)
    per_seed = [(0.756 + 0.01 * s) / (0.516 + 0.01 * s) for s in range(4)]
    assert ratio.method == "log-t" and ratio.estimate == pytest.approx(math.exp(np.mean(np.log(per_seed))))
    assert ratio.low < ratio.estimate < ratio.high
    assert table.cis("test_acc")[0].estimate == pytest.approx(0.531)
    runs = runs_from_rows(_rows())
    rho = correlation(runs, lambda r: r.config.model.options["width"], "test_acc")
    pooled = scipy.stats.spearmanr([r.config.model.options["width"] for r in runs], [r.metric("test_acc") for r in runs])
    assert rho.estimate == pytest.approx(pooled.statistic) and rho.n == 4 and rho.n_points == 12
    assert list(group(runs_from_rows(_rows()), lambda r: r.config.model.options["width"])) == [16, 64, 256]


def test_binomial_se_of_a_difference_of_accuracies():
    assert binomial_se(0.7, 0.7, 1000) == pytest.approx(100 * math.sqrt(2 * 0.21 / 1000))  # ~2.05 pp
    assert binomial_se(0.5, 0.5, 100, scale=1.0) == pytest.approx(math.sqrt(0.5 / 100))
    assert math.isnan(binomial_se(0.5, math.nan, 100)) and math.isnan(binomial_se(0.5, 0.5, 0))


def test_resampling_whole_seed_curves_and_locating_on_a_grid():
    rng = np.random.default_rng(0)
    curves = np.array([0.5, 0.4, 0.6, 0.3]) + 0.01 * rng.normal(size=(5, 4))  # peak at index 2 in every seed
    estimate, draws = resample_seeds({"y": curves}, lambda m: np.argmax(m["y"], axis=-1), num_resamples=200)
    assert int(estimate) == 2 and draws.shape == (200,) and set(draws.tolist()) == {2}
    again = resample_seeds({"y": curves}, lambda m: np.argmax(m["y"], axis=-1), num_resamples=200)[1]
    assert np.array_equal(draws, again)  # seeded: a report rebuilt from the store is the same
    ci = resampled_ci(estimate, draws, n=5)
    assert (ci.low, ci.high, ci.agreement, ci.resamples) == (2.0, 2.0, 1.0, 200)
    assert math.isnan(resampled_ci(1.0, None, n=1).low)
    widths = [8, 16, 32, 64]
    peak = locate_on_grid(widths, 2, draws, 5, kind="extremum")
    assert (peak.value, peak.low, peak.high, peak.agreement) == (32.0, 16.0, 64.0, 1.0)
    crossing = locate_on_grid(widths, 1, np.array([1, 1, 2, 1]), 5)
    assert (crossing.low, crossing.high, crossing.agreement) == (8.0, 16.0, 0.75)
    assert "between 8 and 16; 75% of seed resamples" in crossing.describe()
    assert locate_on_grid(widths, -1, None, 5).describe() == "not located on this grid"
    with pytest.raises(ConfigError, match="one row per seed"):
        resample_seeds({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))}, lambda m: m["a"])
