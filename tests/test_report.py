"""The report layer: interval methods against known truths, the predicate test and the verdict
rules, claims.json, and a report rendered from a partially filled store (claims table, failure
summary, self-contained HTML, valid non-blank PNGs). Coverage by simulation is in
test_coverage.py."""

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
    clustered_spearman_ci,
    decide,
    errorbar_plot,
    loglog_with_reference,
    new_figure,
    paired_ratio_ci,
    read_claims_json,
    render_report,
    seed_slope_ci,
    status_line,
    t_ci,
    trend_ci,
    write_claims_json,
)
from overparam.report.render import error_reason
from overparam.sweep.store import ResultsStore

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# --- intervals ----------------------------------------------------------------------------------


def test_t_ci_is_the_textbook_interval_and_drops_nan():
    x = np.array([1.0, 2.0, 4.0, 7.0, np.nan])
    ci = t_ci(x)
    half = scipy.stats.t.ppf(0.975, 3) * np.std(x[:4], ddof=1) / 2
    assert ci.estimate == pytest.approx(3.5) and (ci.low, ci.high) == pytest.approx((3.5 - half, 3.5 + half))
    assert ci.n == 4 and ci.method == "t"
    one, empty = t_ci([3.25]), t_ci([])
    assert one.estimate == 3.25 and math.isnan(one.low) and math.isnan(one.high) and one.n == 1
    assert empty.n == 0 and math.isnan(empty.estimate)
    with pytest.raises(ConfigError, match="confidence"):
        t_ci(x, confidence=95)


def test_ci_is_a_three_tuple_that_pickles():
    ci = CI(1.0, 0.5, 1.5, n=4, method="t", n_points=7)
    assert list(ci) == [1.0, 0.5, 1.5] and ci.bounds == [0.5, 1.5] and ci.decided
    again = pickle.loads(pickle.dumps(ci))
    assert again == ci and again.n == 4 and again.method == "t" and again.n_points == 7


def test_paired_ratio_is_log_t_of_per_seed_ratios_and_fieller_across_zero():
    rng = np.random.default_rng(2)
    denominators = rng.uniform(1.0, 10.0, size=12)  # varies a lot between seeds
    numerators = 2.0 * denominators * np.exp(0.01 * rng.normal(size=12))  # but the ratio per seed is ~2
    ratio = paired_ratio_ci(numerators, denominators)
    assert ratio.method == "log-t" and ratio.n == 12
    assert ratio.estimate == pytest.approx(math.exp(np.mean(np.log(numerators / denominators))))
    assert ratio.low <= 2.0 <= ratio.high and ratio.high - ratio.low < 0.05  # the pairing removes the spread
    crossing = paired_ratio_ci([1.0, -0.5, 0.8, 0.3], [2.0, 2.1, 1.9, 2.0])
    assert crossing.method == "Fieller" and crossing.estimate == pytest.approx(0.4 / 2.0)
    assert crossing.low < 0 < crossing.high
    unbounded = paired_ratio_ci([1.0, 2.0, 1.5], [0.1, -0.1, 0.05])  # a denominator not distinguishable from 0
    assert unbounded.low == -math.inf and unbounded.high == math.inf
    with pytest.raises(ConfigError, match="as many"):
        paired_ratio_ci([1.0, 2.0, 3.0], [1.0, 2.0])


def test_seed_slope_recovers_a_power_law_and_equals_the_pooled_fit():
    rng = np.random.default_rng(4)
    widths = np.array([16.0, 32, 64, 128, 256, 512, 1024])
    y = 3.0 * widths ** -0.5 * np.exp(0.05 * rng.normal(size=(6, widths.size)))
    ci = seed_slope_ci(widths, y)
    pooled = np.polyfit(np.tile(np.log(widths), 6), np.log(y).reshape(-1), 1)[0]
    assert ci.estimate == pytest.approx(pooled, abs=1e-10)  # every seed at every width
    assert ci.low <= -0.5 <= ci.high and ci.high - ci.low < 0.1 and ci.n == 6
    with pytest.raises(ConfigError, match="positive"):
        seed_slope_ci([1.0, 2.0, 4.0], np.array([[1.0, 0.0, 0.5]]))
    flat = seed_slope_ci([8.0, 8.0, 8.0], np.array([[1.0, 2.0, 3.0]]))
    assert flat.n == 0 and decide(flat, less_than=0) == "undecided"


def test_clustered_spearman_pools_runs_and_counts_seeds():
    rng = np.random.default_rng(3)
    x = rng.normal(size=25)
    y = x + rng.normal(size=25)
    seeds = np.repeat(np.arange(5), 5)
    ci = clustered_spearman_ci(x, y, seeds)
    assert ci.estimate == pytest.approx(scipy.stats.spearmanr(x, y).statistic, abs=1e-12)
    assert ci.low < ci.estimate < ci.high and ci.n == 5 and ci.n_points == 25
    monotone = clustered_spearman_ci(np.arange(15.0), np.exp(np.arange(15.0) / 3), np.repeat(np.arange(5), 3))
    assert monotone.estimate == pytest.approx(1.0) and monotone.low > 0.99
    two_seeds = clustered_spearman_ci([1.0, 2.0, 3.0, 4.0], [3.0, 4.0, 6.0, 5.0], [0, 0, 1, 1])
    assert two_seeds.n == 2 and math.isnan(two_seeds.low) and math.isnan(two_seeds.high)
    with pytest.raises(ConfigError, match="one length"):
        clustered_spearman_ci([1.0, 2.0, 3.0], [1.0, 2.0], [0, 1])


def test_trend_fails_a_curve_that_turns_and_keeps_one_that_levels_off():
    rng = np.random.default_rng(5)
    u_shape = np.array([0.44, 0.2, 0.1, 0.067, 0.1, 0.18]) + rng.normal(0.0, 0.005, (5, 6))
    plateau = np.array([30.0, 5.0, 4.9, 4.9, 4.9]) + rng.normal(0.0, 0.05, (5, 5))
    turning, levelling = trend_ci(u_shape), trend_ci(plateau)
    assert turning.high < 0 and turning.against.low > 0  # lower at the end, but it rises at the last steps
    assert levelling.high < 0 and levelling.against.low < 0 < levelling.against.high
    rising = trend_ci(-plateau, rising=True)
    assert rising.low > 0 and rising.against.low < 0


# --- the predicate test -------------------------------------------------------------------------


@pytest.mark.parametrize("ci, claim, expected", [
    ((0.1, 0.5), {"greater_than": 0}, "holds"),
    ((-0.5, -0.1), {"greater_than": 0}, "fails"),
    ((-0.1, 0.1), {"greater_than": 0}, "undecided"),
    ((0.0, 0.5), {"greater_than": 0}, "undecided"),  # 0 itself is not > 0
    ((-1.0, 0.0), {"greater_than": 0}, "fails"),
    ((-3.0, -2.0), {"less_than": -1}, "holds"),
    ((0.0, 1.0), {"less_than": -1}, "fails"),
    ((-2.0, 0.0), {"less_than": -1}, "undecided"),
    ((-0.55, -0.45), {"within": (-0.6, -0.4)}, "holds"),
    ((-0.6, -0.4), {"within": (-0.6, -0.4)}, "holds"),  # closed ends
    ((-0.3, -0.1), {"within": (-0.6, -0.4)}, "fails"),
    ((-0.9, -0.7), {"within": (-0.6, -0.4)}, "fails"),
    ((-0.5, -0.3), {"within": (-0.6, -0.4)}, "undecided"),
    ((-1.0, 1.0), {"within": (-0.6, -0.4)}, "undecided"),
    ((0.2, 0.3), {"greater_than": 0, "less_than": 1}, "holds"),
    ((0.5, 1.5), {"greater_than": 0, "less_than": 1}, "undecided"),
    ((4.0, 4.5), {"greater_than": 5, "less_than": 3}, "fails"),  # no value satisfies the predicate
    ((float("nan"), float("nan")), {"greater_than": 0}, "undecided"),
    ((0.1, float("nan")), {"greater_than": 0}, "undecided"),
    ((None, None), {"within": (0, 1)}, "undecided"),
    ((0.3, 0.1, 0.5), {"greater_than": 0}, "holds"),  # (estimate, low, high)
    (CI(-0.2, -0.4, -0.1, n=5), {"less_than": 0}, "holds"),
])
def test_decide_branches(ci, claim, expected):
    assert decide(ci, **claim) == expected


def test_decide_rejects_no_predicate_and_inverted_intervals():
    with pytest.raises(ConfigError, match="greater_than"):
        decide((0.0, 1.0))
    with pytest.raises(ConfigError, match="exceeds"):
        decide((1.0, 0.0), greater_than=0)
    with pytest.raises(ConfigError, match="within"):
        decide((0.0, 1.0), within=(1.0, 0.0))


# --- claims -------------------------------------------------------------------------------------


def test_claim_json_round_trip_with_nan_as_null(tmp_path):
    from overparam.report.verdicts import EXPONENT, Published, above, between

    slope = Published("slope -0.5", "theory", between(-0.6, -0.4), -0.5, "", EXPONENT)
    decided = Claim.judged("c1", "width", "error falls with width", slope, CI(-0.48, -0.55, -0.41, n=5))
    undecided = Claim.judged("c2", "width", "one seed only", Published("0.9", "paper", above(0.5)),
                             CI(0.8, float("nan"), float("nan"), n=1))
    assert decided.verdict == "reproduced" and decided.n_seeds == 5 and decided.rule
    assert undecided.verdict == "inconclusive" and undecided.reason == "n < 5"
    assert list(decided.to_dict()) == list(CLAIM_KEYS) and "details" in decided.to_dict(include_details=True)
    path = write_claims_json([decided, undecided], tmp_path / "claims.json")
    data = json.loads(path.read_text())
    assert [list(item) for item in data] == [list(CLAIM_KEYS)] * 2
    assert data[1]["ci"] == [None, None] and data[1]["paper"] == "0.9" and data[1]["paper_value"] is None
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
    """What a study's report does: claims and figures from stored runs alone."""
    from overparam.report.verdicts import Published, below

    done = store.runs("width", status="done")
    widths = np.array([run["config"]["params"]["width"] for run in done], dtype=float)
    errors = np.array([run["metrics"]["test_error"] for run in done])
    seeds = np.array([run["seed"] for run in done])
    trend = clustered_spearman_ci(widths, errors, seeds)
    claim = Claim.judged("width-monotone", "width", "Test error decreases as width grows",
                         Published("monotone decrease (Fig. 2)", "paper", below(0.0)), trend)
    levels = sorted(set(widths))
    cis = [t_ci(errors[widths == w]) for w in levels]
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
