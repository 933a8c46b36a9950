"""The report layer: bootstrap statistics against known truths, verdict logic, and a report
rendered from a partially filled store (claims table, failure summary, self-contained HTML,
valid non-blank PNGs, claims.json keys)."""

from __future__ import annotations

import json
import math
import pickle
from html.parser import HTMLParser

import numpy as np
import pytest
import scipy.stats
from matplotlib.image import imread

from overparam.errors import ConfigError
from overparam.report import (
    CI,
    CLAIM_KEYS,
    Claim,
    Section,
    bootstrap_ci,
    errorbar_plot,
    loglog_slope_ci,
    loglog_with_reference,
    new_figure,
    ratio_ci,
    read_claims_json,
    render_report,
    spearman_ci,
    status_line,
    verdict,
    write_claims_json,
)
from overparam.report.render import error_reason
from overparam.sweep.store import ResultsStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# --- bootstrap_ci -------------------------------------------------------------------------------


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(12345)
    true_mean, experiments = 1.5, 200
    covered = 0
    for _ in range(experiments):
        sample = rng.normal(true_mean, 2.0, size=30)
        estimate, low, high = bootstrap_ci(sample, num_resamples=2000, seed=int(rng.integers(1 << 31)))
        assert estimate == pytest.approx(sample.mean())
        covered += low <= true_mean <= high
    assert 0.90 <= covered / experiments <= 0.99


def test_bootstrap_ci_width_shrinks_with_n_and_states_n():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.normal(size=10))
    large = bootstrap_ci(rng.normal(size=1000))
    assert (small.n, large.n) == (10, 1000)
    # the width of a mean's CI scales as 1/sqrt(n): 10x narrower here, allow for noise
    assert (large.high - large.low) < (small.high - small.low) / 4


def test_bootstrap_ci_with_fewer_than_two_values_has_nan_bounds():
    estimate, low, high = bootstrap_ci([3.25])
    assert estimate == 3.25 and math.isnan(low) and math.isnan(high)
    empty = bootstrap_ci([])
    assert empty.n == 0 and all(math.isnan(v) for v in empty)
    nan_dropped = bootstrap_ci([2.0, float("nan")])
    assert nan_dropped.n == 1 and nan_dropped.estimate == 2.0 and math.isnan(nan_dropped.low)


def test_bootstrap_ci_of_constant_data_falls_back_to_percentile():
    ci = bootstrap_ci([0.7] * 6)
    assert tuple(ci) == pytest.approx((0.7, 0.7, 0.7)) and ci.method == "percentile"


def test_bootstrap_ci_other_statistics_and_bad_options():
    rng = np.random.default_rng(1)
    sample = rng.normal(size=40)
    median = bootstrap_ci(sample, np.median, num_resamples=2000)
    assert median.estimate == pytest.approx(np.median(sample)) and median.low < median.estimate < median.high
    spread = bootstrap_ci(sample, lambda v: float(np.std(v)), num_resamples=500)  # no axis: not vectorized
    assert spread.low < np.std(sample) < spread.high
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_ci(sample, confidence=95)
    with pytest.raises(ConfigError, match="method"):
        bootstrap_ci(sample, method="bootstrap-t")


def test_ci_is_a_three_tuple_that_pickles():
    ci = CI(1.0, 0.5, 1.5, n=4, method="BCa", pvalue=0.01)
    assert list(ci) == [1.0, 0.5, 1.5] and ci.bounds == [0.5, 1.5] and ci.decided
    again = pickle.loads(pickle.dumps(ci))
    assert again == ci and again.n == 4 and again.method == "BCa" and again.pvalue == 0.01


# --- ratio_ci -----------------------------------------------------------------------------------


def test_ratio_ci_paired_keeps_the_pairing_and_unpaired_does_not():
    rng = np.random.default_rng(2)
    denominators = rng.uniform(1.0, 10.0, size=12)  # varies a lot between seeds
    numerators = 2.0 * denominators * (1 + 0.01 * rng.normal(size=12))  # but the ratio per seed is ~2
    paired = ratio_ci(numerators, denominators)
    unpaired = ratio_ci(numerators, denominators, paired=False)
    assert paired.estimate == pytest.approx(numerators.mean() / denominators.mean())
    assert paired.low <= 2.0 <= paired.high and paired.n == 12
    assert (paired.high - paired.low) * 5 < unpaired.high - unpaired.low
    with pytest.raises(ConfigError, match="paired"):
        ratio_ci([1.0, 2.0, 3.0], [1.0, 2.0])
    assert ratio_ci([1.0, 2.0, 3.0], [1.0, 2.0], paired=False).n == 2


# --- spearman_ci --------------------------------------------------------------------------------


def test_spearman_estimate_and_pvalue_are_scipys():
    rng = np.random.default_rng(3)
    x = rng.normal(size=25)
    y = x + rng.normal(size=25)
    ci = spearman_ci(x, y)
    reference = scipy.stats.spearmanr(x, y)
    assert ci.estimate == pytest.approx(reference.statistic, abs=1e-12)
    assert ci.pvalue == pytest.approx(reference.pvalue)
    assert ci.low < ci.estimate < ci.high and ci.n == 25


def test_spearman_of_monotone_data_is_one_with_a_ci_at_one():
    x = np.arange(15.0)
    ci = spearman_ci(x, np.exp(x / 3))
    assert ci.estimate == pytest.approx(1.0)
    assert ci.low == pytest.approx(1.0) and ci.high == pytest.approx(1.0)
    decreasing = spearman_ci(x, -x ** 2)
    assert tuple(decreasing) == pytest.approx((-1.0, -1.0, -1.0))


def test_spearman_with_too_few_pairs_has_nan_bounds():
    ci = spearman_ci([1.0, 2.0], [3.0, 4.0])
    assert ci.n == 2 and math.isnan(ci.low) and math.isnan(ci.high)
    with pytest.raises(ConfigError, match="same length"):
        spearman_ci([1.0, 2.0, 3.0], [1.0, 2.0])


# --- loglog_slope_ci ----------------------------------------------------------------------------


def test_loglog_slope_of_a_power_law_is_recovered_within_the_ci():
    rng = np.random.default_rng(4)
    widths = np.repeat([16, 32, 64, 128, 256, 512, 1024], 6).astype(float)
    seeds = np.tile(np.arange(6), 7)
    y = 3.0 * widths ** -0.5 * np.exp(0.05 * rng.normal(size=widths.size))
    by_seed = loglog_slope_ci(widths, y, groups=seeds)
    assert by_seed.estimate == pytest.approx(np.polyfit(np.log(widths), np.log(y), 1)[0], abs=1e-10)
    assert by_seed.low <= -0.5 <= by_seed.high and by_seed.high - by_seed.low < 0.1
    assert by_seed.n == 6 and by_seed.n_points == widths.size
    assert by_seed.intercept == pytest.approx(np.log(3.0), abs=0.1)
    by_point = loglog_slope_ci(widths, y)
    assert by_point.low <= -0.5 <= by_point.high and by_point.n == widths.size


def test_loglog_slope_rejects_non_positive_values_and_needs_two_x():
    with pytest.raises(ConfigError, match="positive"):
        loglog_slope_ci([1.0, 2.0, 4.0], [1.0, 0.0, 0.5])
    flat = loglog_slope_ci([8.0, 8.0, 8.0], [1.0, 2.0, 3.0])
    assert math.isnan(flat.estimate) and verdict(flat, less_than=0) == "inconclusive"


# --- verdict ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ci, claim, expected", [
    ((0.1, 0.5), {"greater_than": 0}, "reproduced"),
    ((-0.5, -0.1), {"greater_than": 0}, "not_reproduced"),
    ((-0.1, 0.1), {"greater_than": 0}, "inconclusive"),
    ((0.0, 0.5), {"greater_than": 0}, "inconclusive"),  # 0 itself is not > 0
    ((-1.0, 0.0), {"greater_than": 0}, "not_reproduced"),
    ((-3.0, -2.0), {"less_than": -1}, "reproduced"),
    ((0.0, 1.0), {"less_than": -1}, "not_reproduced"),
    ((-2.0, 0.0), {"less_than": -1}, "inconclusive"),
    ((-0.55, -0.45), {"within": (-0.6, -0.4)}, "reproduced"),
    ((-0.6, -0.4), {"within": (-0.6, -0.4)}, "reproduced"),  # closed ends
    ((-0.3, -0.1), {"within": (-0.6, -0.4)}, "not_reproduced"),
    ((-0.9, -0.7), {"within": (-0.6, -0.4)}, "not_reproduced"),
    ((-0.5, -0.3), {"within": (-0.6, -0.4)}, "inconclusive"),
    ((-1.0, 1.0), {"within": (-0.6, -0.4)}, "inconclusive"),
    ((0.2, 0.3), {"greater_than": 0, "less_than": 1}, "reproduced"),
    ((0.5, 1.5), {"greater_than": 0, "less_than": 1}, "inconclusive"),
    ((4.0, 4.5), {"greater_than": 5, "less_than": 3}, "not_reproduced"),  # no value satisfies the claim
    ((float("nan"), float("nan")), {"greater_than": 0}, "inconclusive"),
    ((0.1, float("nan")), {"greater_than": 0}, "inconclusive"),
    ((None, None), {"within": (0, 1)}, "inconclusive"),
    ((0.3, 0.1, 0.5), {"greater_than": 0}, "reproduced"),  # (estimate, low, high)
    (CI(-0.2, -0.4, -0.1, n=5), {"less_than": 0}, "reproduced"),
])
def test_verdict_branches(ci, claim, expected):
    assert verdict(ci, **claim) == expected


def test_verdict_rejects_no_claim_and_inverted_intervals():
    with pytest.raises(ConfigError, match="greater_than"):
        verdict((0.0, 1.0))
    with pytest.raises(ConfigError, match="exceeds"):
        verdict((1.0, 0.0), greater_than=0)
    with pytest.raises(ConfigError, match="within"):
        verdict((0.0, 1.0), within=(1.0, 0.0))


# --- claims -------------------------------------------------------------------------------------


def test_claim_from_ci_json_round_trip_with_nan_as_null(tmp_path):
    decided = Claim.from_ci("c1", "width", "error falls with width", "slope -0.5", CI(-0.48, -0.55, -0.41, n=5),
                            within=(-0.6, -0.4))
    undecided = Claim.from_ci("c2", "width", "one seed only", 0.9, CI(0.8, float("nan"), float("nan"), n=1),
                              greater_than=0.5)
    assert decided.verdict == "reproduced" and decided.n_seeds == 5 and decided.details["predicate"]
    assert undecided.verdict == "inconclusive"
    assert set(decided.to_dict()) == set(CLAIM_KEYS) and "details" in decided.to_dict(include_details=True)
    path = write_claims_json([decided, undecided], tmp_path / "claims.json")
    data = json.loads(path.read_text())
    assert [set(item) for item in data] == [set(CLAIM_KEYS)] * 2
    assert data[1]["ci"] == [None, None] and data[1]["paper"] == 0.9
    again = read_claims_json(path)
    assert again[0].ci == pytest.approx([-0.55, -0.41]) and math.isnan(again[1].ci[0])
    with pytest.raises(ConfigError, match="verdict"):
        Claim("c3", "width", "s", "p", 1.0, [0.0, 2.0], 3, "confirmed")
    with pytest.raises(ConfigError, match="twice"):
        write_claims_json([decided, decided], tmp_path / "dup.json")


# --- rendering from a partially filled store ----------------------------------------------------

TRACEBACK = """Traceback (most recent call last):
  File "/src/overparam/run.py", line 42, in run_one
    outcome = study.run_one(spec, device)
  File "/src/overparam/train/loop.py", line 88, in fit
    loss.backward()
RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB
"""


def _partial_store(directory):
    """widths x seeds: 9 done, 1 failed (traceback), 2 pending."""
    rng = np.random.default_rng(7)
    widths, seeds = [16, 64, 256], [0, 1, 2, 3]
    runs = [(f"w{w}-s{s}", {"params": {"width": w}, "seed": s}, s) for w in widths for s in seeds]
    store = ResultsStore(directory)
    store.add_pending("width", runs)
    for key, config, seed in runs:
        width = config["params"]["width"]
        if width == 256 and seed >= 1:
            continue  # still pending, except the failed one below
        store.mark_running("width", key, device="cpu")
        error = 0.8 * width ** -0.5 * math.exp(0.05 * rng.normal())
        store.finish("width", key, status="done", metrics={"test_error": error},
                     curves={"train_loss": [(0, 2.3), (100, 0.1 * error)]}, wall_time_s=1.0)
    store.mark_running("width", "w256-s1", device="cuda:0")
    store.finish("width", "w256-s1", status="failed", metrics={}, error=TRACEBACK)
    return store


def _summarize(store):
    """What a study's summarize does: claims and figures from stored runs alone."""
    done = store.runs("width", status="done")
    widths = np.array([run["config"]["params"]["width"] for run in done], dtype=float)
    errors = np.array([run["metrics"]["test_error"] for run in done])
    seeds = np.array([run["seed"] for run in done])
    trend = spearman_ci(widths, errors)
    claim = Claim.from_ci("width-monotone", "width", "Test error decreases as width grows",
                          "monotone decrease (Fig. 2)", trend, less_than=0.0, n_seeds=len(set(seeds)))
    levels = sorted(set(widths))
    cis = [bootstrap_ci(errors[widths == w]) for w in levels]
    fig, ax = new_figure()
    loglog_with_reference(ax, levels, [c.estimate for c in cis], [c.low for c in cis], [c.high for c in cis],
                          slope=-0.5, label="test error", n=[c.n for c in cis])
    ax.set(xlabel="width", ylabel="test error", title="Test error vs width")
    fig2, ax2 = new_figure()
    errorbar_plot(ax2, levels, [c.estimate for c in cis], [c.low for c in cis], [c.high for c in cis],
                  label="test error", n=[c.n for c in cis])
    ax2.set(xlabel="width", ylabel="test error")
    text = status_line(store, "width") + "\n\nOne run per (width, seed); figures show the mean over seeds."
    return Section("Width sweep", text, figures=[("test_error_vs_width", fig), ("test_error_linear", fig2)],
                   claims=[claim]), claim


class _Attributes(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [(tag, name, value or "") for name, value in attrs if name in ("src", "href", "action")]


def test_status_line_counts_and_failure_reasons(tmp_path):
    with _partial_store(tmp_path) as store:
        line = status_line(store, "width")
        assert "12 runs" in line and "9 done" in line and "1 failed" in line and "2 pending" in line
        assert "0 diverged" in line
        assert "RuntimeError: CUDA out of memory" in line and "w256-s1" in line and "Traceback" not in line
        assert status_line(store, "nothing").startswith("No runs")
    assert error_reason("ValueError: width must be > 0\nmore detail") == "ValueError: width must be > 0"
    assert error_reason(None) == "no error recorded"


def test_render_report_from_a_partially_filled_store(tmp_path):
    with _partial_store(tmp_path / "out") as store:
        section, claim = _summarize(store)
    paths = render_report(tmp_path / "report", "overparam report: width", [section])

    markdown = paths.markdown.read_text()
    row = next(line for line in markdown.splitlines() if line.startswith("| width-monotone |"))
    assert "monotone decrease (Fig. 2)" in row
    assert "- `width-monotone` (" in markdown and "Test error decreases as width grows" in markdown  # the section's list
    assert f"| {claim.n_seeds} |" in row and claim.verdict.replace("_", " ") in row
    assert f"{claim.measured:.4g}" in row
    assert "1 failed" in markdown and "RuntimeError: CUDA out of memory" in markdown
    assert "![test_error_vs_width](figures/test_error_vs_width.png)" in markdown

    page = paths.html.read_text()
    parser = _Attributes()
    parser.feed(page)
    assert "data:image/png;base64," in page and page.count("<img") == 2
    assert parser.links and all(value.startswith("data:image/png;base64,") for _, _, value in parser.links)
    assert "://" not in page and "script" not in parser.tags and "link" not in parser.tags
    assert f"verdict-{claim.verdict}" in page and "RuntimeError: CUDA out of memory" in page

    assert sorted(p.name for p in paths.figures) == ["test_error_linear.png", "test_error_vs_width.png"]
    for path in paths.figures:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        pixels = imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.var() > 0

    data = json.loads(paths.claims.read_text())
    assert isinstance(data, list) and len(data) == 1 and set(data[0]) == set(CLAIM_KEYS)
    assert data[0]["id"] == "width-monotone" and data[0]["verdict"] in ("reproduced", "not_reproduced", "inconclusive")
    assert data[0]["n_seeds"] == 4 and len(data[0]["ci"]) == 2


def test_render_report_rejects_duplicate_figure_names_and_non_figures(tmp_path):
    fig_a, _ = new_figure()
    fig_b, _ = new_figure()
    with pytest.raises(ConfigError, match="twice"):
        render_report(tmp_path, "t", [Section("a", figures=[("f", fig_a)]), Section("b", figures=[("f.png", fig_b)])])
    with pytest.raises(ConfigError, match="not a matplotlib Figure"):
        render_report(tmp_path, "t", [Section("a", figures=[("f", object())])])
    empty = render_report(tmp_path / "empty", "nothing yet", [Section("a", "no runs done")])
    assert "No claims" in empty.markdown.read_text() and json.loads(empty.claims.read_text()) == []


def test_loglog_reference_line_passes_through_the_first_point_with_the_given_slope():
    _fig, ax = new_figure()
    x = np.array([32.0, 8.0, 128.0])  # the "first point" is the first given, not the smallest x
    y = np.array([0.5, 1.0, 0.2])
    loglog_with_reference(ax, x, y, y * 0.9, y * 1.1, slope=-0.5, n=3)
    (reference,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    rx, ry = (np.asarray(a, dtype=float) for a in reference.get_data())
    assert np.interp(np.log(32.0), np.log(rx), np.log(ry)) == pytest.approx(np.log(0.5))
    assert np.polyfit(np.log(rx), np.log(ry), 1)[0] == pytest.approx(-0.5)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "n=3" in ax.get_legend().get_texts()[0].get_text()


# --- verdicts on direction and magnitude ---------------------------------------------------------

from overparam.report.verdicts import (  # noqa: E402
    CORRELATION,
    DIFFERENCE_PP,
    EXPONENT,
    RATIO,
    Direction,
    Published,
    Tolerance,
    above,
    below,
    between,
    judge,
)

RATIO_CLAIM = Published("11.8x", "paper", above(1.0), 11.8, "x", RATIO)


@pytest.mark.parametrize("ci, n, verdict, direction, magnitude", [
    ((10.0, 7.0, 15.0), 5, "reproduced", "holds", "holds"),
    ((193.0, 176.0, 226.0), 5, "direction_only", "holds", "fails"),  # the batch_size quick run's 193x
    ((10.0, 3.0, 15.0), 5, "inconclusive", "holds", "undecided"),
    ((0.8, 0.6, 0.9), 5, "not_reproduced", "fails", "fails"),
    ((1.2, 0.9, 1.5), 5, "not_reproduced", "undecided", "fails"),  # no direction, and 11.8x excluded
    ((3.0, 0.5, 8.0), 5, "inconclusive", "undecided", "undecided"),
    ((10.0, 7.0, 15.0), 4, "inconclusive", "holds", "holds"),  # n < 5: no verdict
    ((math.nan, math.nan, math.nan), 5, "inconclusive", "undecided", "undecided"),
])
def test_judge_combines_direction_and_magnitude(ci, n, verdict, direction, magnitude):
    result = judge(ci, RATIO_CLAIM, n)
    assert (result.verdict, result.direction, result.magnitude) == (verdict, direction, magnitude)
    assert "within a factor 2 of 11.8x = [5.9, 23.6]" in result.rule
    assert (result.reason == "n < 5") == (n < 5)


def test_tolerance_bands_by_kind():
    assert RATIO.band(11.8) == (5.9, 23.6)
    assert DIFFERENCE_PP.band(2.8) == pytest.approx((1.4, 4.2)) and DIFFERENCE_PP.band(1.61) == pytest.approx((0.61, 2.61))
    assert EXPONENT.band(-0.5) == pytest.approx((-0.6, -0.4))
    assert CORRELATION.band(-0.89) == pytest.approx((-1.0, -0.69)) and CORRELATION.band(0.1) == pytest.approx((0.0, 0.3))
    assert Tolerance.range(1.8, 2.2).band(2.0) == (1.8, 2.2)
    with pytest.raises(ConfigError, match="tolerance"):
        Published("x", "s", above(0.0), 1.0)  # a number needs a tolerance
    with pytest.raises(ConfigError, match="Direction"):
        Direction()
    assert between(-1.0, 1.0).describe() == "in [-1, 1]"


def test_qualitative_claims_and_the_binomial_rule():
    qualitative = Published("a gain", "paper", above(0.0))
    assert judge((0.3, 0.1, 0.5), qualitative, 5).verdict == "reproduced"
    assert judge((0.3, 0.1, 0.5), qualitative, 5).magnitude == "n/a"
    assert judge((-0.3, -0.5, -0.1), qualitative, 5).verdict == "not_reproduced"
    # a gain whose interval excludes 0 but lies within 2 binomial SE of it is not a gain
    near = judge((1.5, 0.5, 2.5), qualitative, 5, binomial_se=1.0)
    assert near.verdict == "inconclusive" and near.reason == "within 2 binomial SE of the test set"
    assert judge((3.5, 2.5, 4.5), qualitative, 5, binomial_se=1.0).verdict == "reproduced"
    bound = Published("within 1.15 pp", "paper", below(1.15))
    assert judge((0.8, -1.5, 2.0), bound, 5).verdict == "inconclusive"
    assert judge((-0.5, -1.5, 0.5), bound, 5).verdict == "reproduced"


def test_judged_claim_carries_the_paper_value_into_claims_json(tmp_path):
    claim = Claim.judged("b.ratio", "b", "ratio of λ_max", RATIO_CLAIM, CI(193.0, 176.0, 226.0, n=5, method="log-t"))
    assert claim.verdict == "direction_only" and claim.paper_value == 11.8 and claim.band == [5.9, 23.6]
    assert claim.ratio_to_paper == pytest.approx(193.0 / 11.8) and claim.ci_method == "log-t"
    path = write_claims_json([claim], tmp_path / "claims.json")
    [data] = json.loads(path.read_text())
    assert list(data) == list(CLAIM_KEYS)
    assert data["tolerance"] == "within a factor 2" and data["direction"] == "holds" and data["magnitude"] == "fails"
    [back] = read_claims_json(path)
    assert back.to_dict() == claim.to_dict()
