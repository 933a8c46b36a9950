"""The rff_double_descent study: its exact references (minimum-norm least squares against closed
forms and numpy's pinv, the median bandwidth, the random-features kernel), the located peaks on
hand-made curves, the tiny preset end to end, and config validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from overparam.data.transforms import random_fourier_features
from overparam.errors import ConfigError
from overparam.references.rff import median_bandwidth, min_norm_lstsq
from overparam.report.verdicts import VERDICTS
from overparam.studies import get_study
from overparam.studies.rff_double_descent import STUDY, locate
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore

F64 = torch.float64
IDS = ["rff_double_descent.error_peak_at_threshold", "rff_double_descent.squared_loss_peak_at_threshold",
       "rff_double_descent.norm_peak_at_threshold", "rff_double_descent.error_falls_beyond_peak",
       "rff_double_descent.overparameterized_beats_classical"]


# --- references ----------------------------------------------------------------------------------


def test_underdetermined_solution_is_the_minimum_norm_interpolant():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 15, generator=gen, dtype=F64)
    b = torch.randn(6, 3, generator=gen, dtype=F64)
    x = min_norm_lstsq(a, b).solution
    closed_form = a.T @ torch.linalg.solve(a @ a.T, b)  # Aᵀ(AAᵀ)⁻¹B for full row rank
    torch.testing.assert_close(x, closed_form, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(a @ x, b, rtol=1e-10, atol=1e-12)
    # any other interpolant x + v (A v = 0) is longer: x lies in the row space of A
    null = torch.linalg.svd(a).Vh[6:].T  # (15, 9), A null = 0
    v = null @ torch.randn(9, 3, generator=gen, dtype=F64)
    torch.testing.assert_close(a @ (x + v), b, rtol=1e-9, atol=1e-10)
    assert torch.linalg.matrix_norm(x + v) > torch.linalg.matrix_norm(x)
    assert float((null.T @ x).abs().max()) < 1e-12


def test_overdetermined_solution_solves_the_normal_equations():
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(20, 4, generator=gen, dtype=F64)
    b = torch.randn(20, generator=gen, dtype=F64)
    fit = min_norm_lstsq(a, b)
    torch.testing.assert_close(fit.solution, torch.linalg.solve(a.T @ a, a.T @ b), rtol=1e-10, atol=1e-12)
    assert fit.rank == 4 and fit.solution.shape == (4,)


@pytest.mark.parametrize("m, p", [(8, 12), (12, 8), (9, 9)])
def test_rank_deficient_and_ill_conditioned_match_the_constructed_pseudo_inverse(m, p):
    """A = U diag(s) Vᵀ with known singular values: two exactly 0 and one (1e-20 s_max) below the
    cutoff; A⁺B = V diag(1/s kept) UᵀB, and numpy's pinv (a separate SVD) agrees."""
    gen = torch.Generator().manual_seed(m * 100 + p)
    k = min(m, p)
    u = torch.linalg.qr(torch.randn(m, k, generator=gen, dtype=F64)).Q
    v = torch.linalg.qr(torch.randn(p, k, generator=gen, dtype=F64)).Q
    s = torch.logspace(0, -6, k, dtype=F64)
    s[-3], s[-2], s[-1] = 1e-20, 0.0, 0.0
    a = u @ torch.diag(s) @ v.T
    b = torch.randn(m, 2, generator=gen, dtype=F64)
    kept = s > 1e-12
    expected = v[:, kept] @ ((u[:, kept].T @ b) / s[kept, None])
    fit = min_norm_lstsq(a, b)
    assert fit.rank == k - 3
    torch.testing.assert_close(fit.solution, expected, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(fit.singular_values, s, rtol=1e-6, atol=1e-13)
    pinv = np.linalg.pinv(a.numpy(), rcond=1e-12) @ b.numpy()
    np.testing.assert_allclose(fit.solution.numpy(), pinv, rtol=1e-7, atol=1e-9)
    # with no cutoff the tiny singular value is inverted and the norm explodes: the cutoff matters
    assert torch.linalg.matrix_norm(min_norm_lstsq(a, b, rtol=1e-30).solution) > 1e10


def test_bad_solver_inputs_raise():
    with pytest.raises(ConfigError, match="a must be a non-empty floating"):
        min_norm_lstsq(torch.ones(3, 2, dtype=torch.int64), torch.ones(3))
    with pytest.raises(ConfigError, match="b must be a \\(3,\\) or \\(3, k\\)"):
        min_norm_lstsq(torch.ones(3, 2, dtype=F64), torch.ones(4))
    with pytest.raises(ConfigError, match="rtol must be a number in \\[0, 1\\)"):
        min_norm_lstsq(torch.ones(3, 2, dtype=F64), torch.ones(3, dtype=F64), rtol=2.0)


def test_median_bandwidth_on_a_hand_checkable_case():
    # points 0, 1, 3 on a line: distances 1, 3, 2 -> median 2; in 2-D (0,0), (3,4), (6,8): 5, 10, 5 -> 5
    assert median_bandwidth(torch.tensor([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)
    assert median_bandwidth(torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])) == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="median pairwise distance of x is 0"):
        median_bandwidth(torch.zeros(5, 2))


def test_random_features_approximate_the_gaussian_kernel_at_the_median_bandwidth():
    """φ(x)ᵀφ(x') = (1/N) Σ_j [cos(w_jᵀ(x − x')) + cos(w_jᵀ(x + x') + 2 b_j)]: a mean of N iid
    terms with mean k(x, x'); the first cosine has variance <= 1, the second (b uniform) mean 0,
    variance 1/2 and no correlation with the first, so a term's variance is <= 1.5 and the
    entry's standard deviation <= sqrt(1.5/N). With N = 20000, all 64 entries must lie within
    6 sd (0.052) of the kernel (a false alarm has probability < 64 · 2e-9 by Gaussian tails)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(8, 5, generator=gen, dtype=F64)
    sigma = median_bandwidth(x)
    n_features = 20000
    phi = random_fourier_features(x, n_features, sigma, seed=7)
    kernel = torch.exp(-torch.cdist(x, x) ** 2 / (2 * sigma**2))
    error = (phi @ phi.T - kernel).abs().max()
    assert float(error) < 6 * math.sqrt(1.5 / n_features)
    # and the error shrinks with N like 1/sqrt(N) on average over draws (not a fixed bias)
    small = np.mean([float((random_fourier_features(x, 200, sigma, seed=s) @ random_fourier_features(
        x, 200, sigma, seed=s).T - kernel).pow(2).mean()) for s in range(20)])
    large = np.mean([float((random_fourier_features(x, 2000, sigma, seed=s) @ random_fourier_features(
        x, 2000, sigma, seed=s).T - kernel).pow(2).mean()) for s in range(20)])
    assert 5 < small / large < 20  # mean squared error ∝ 1/N: 10x


# --- locating the peaks --------------------------------------------------------------------------


def test_locate_on_hand_made_curves():
    counts = np.array([10, 20, 50, 100, 150, 400])
    mean = {"test_error": np.array([0.9, 0.4, 0.5, 0.8, 0.6, 0.3]),  # underfit start, sweet spot at 20
            "test_sq_loss": np.array([5.0, 1.0, 2.0, 3.0, 9.0, 1.0]),  # sq-loss peak at 150
            "coef_norm": np.array([1.0, 2.0, 5.0, 50.0, 10.0, 4.0])}
    found = locate(mean, counts, n=100)
    assert int(found["sweet"]) == 1 and int(found["error_peak"]) == 3  # the 0.9 at N=10 is not the peak
    assert int(found["sq_peak"]) == 4 and int(found["norm_peak"]) == 3
    # batched over resamples: (R, W) curves locate row by row
    batched = {k: np.stack([v, v[::-1]]) for k, v in mean.items()}
    assert locate(batched, counts, n=100)["error_peak"].tolist() == [3, 5]


def _rows(error: list[float], norm: list[float], seeds: int = 5, n: int = 100, n_test: int = 1000) -> list[dict]:
    """Store-like rows at N/n = RATIOS: the given mean test-error and norm curves (squared loss =
    error · 10) plus ±0.01 seed offsets that average to zero."""
    from overparam.config import RunConfig

    config = STUDY.resolve("tiny", overrides=[f"data.n_train={n}", f"feature_ratios={RATIOS}"])
    data = RunConfig.from_dict({"data": config.data}).to_dict()["data"]
    rows = []
    for seed in range(seeds):
        offset = 0.01 * (seed - (seeds - 1) / 2) / ((seeds - 1) / 2)
        for ratio, e, a in zip(RATIOS, error, norm):
            metrics = {"test_error": e + offset, "test_sq_loss": 10 * (e + offset), "coef_norm": a * (1 + offset),
                       "train_error": 0.0, "train_sq_loss": 0.0, "sigma_min_ratio": 1e-3, "n_test": n_test,
                       "bandwidth": 1.0}
            rows.append({"status": "done", "seed": seed, "run_key": f"{ratio}-{seed}", "metrics": metrics,
                         "config": {"params": {"data": data, "num_features": round(ratio * n), "bandwidth": "median"}}})
    return rows, config


RATIOS = [0.2, 0.5, 1.0, 2.0, 10.0]


def test_verdicts_follow_the_rules_on_hand_made_curves():
    # a peak at N = n, a second descent well below the sweet spot (0.2 − 0.4 = −0.2 ≫ 2 binomial SE ≈ 0.04)
    rows, config = _rows([0.5, 0.4, 0.8, 0.5, 0.2], [1.0, 5.0, 100.0, 10.0, 5.0])
    [section] = STUDY.summarize(rows, config)
    claims = {c.id.split(".")[1]: c for c in section.claims}
    assert all(c.n_seeds == 5 and c.paper_value is None and c.band is None for c in section.claims)
    assert [claims[k].verdict for k in ("error_peak_at_threshold", "squared_loss_peak_at_threshold",
                                        "norm_peak_at_threshold")] == ["reproduced"] * 3
    assert claims["error_peak_at_threshold"].measured == 1.0 and claims["error_peak_at_threshold"].ci == [1.0, 1.0]
    fall, gain = claims["error_falls_beyond_peak"], claims["overparameterized_beats_classical"]
    assert fall.measured == pytest.approx(0.2 - 0.8) and gain.measured == pytest.approx(0.2 - 0.4)
    assert fall.verdict == gain.verdict == "reproduced" and fall.ci_method == "t" and fall.test_examples == 1000
    assert gain.binomial_se == pytest.approx(math.sqrt((0.2 * 0.8 + 0.4 * 0.6) / 1000))
    assert "100% of seed resamples pick the same grid point" in section.text
    # the peak at N = 2n lies outside [n/1.5, 1.5 n]; the largest model worse than the sweet spot;
    # a gain of −0.01 is within 2 binomial SE (≈ 0.04) of 0, so its direction is never "holds"
    rows, config = _rows([0.5, 0.3, 0.6, 0.9, 0.4], [1.0, 5.0, 10.0, 100.0, 5.0])
    claims = {c.id.split(".")[1]: c for c in STUDY.summarize(rows, config)[0].claims}
    assert claims["error_peak_at_threshold"].verdict == "not_reproduced"
    assert claims["norm_peak_at_threshold"].measured == 2.0 and claims["norm_peak_at_threshold"].direction == "fails"
    assert claims["overparameterized_beats_classical"].verdict == "not_reproduced"
    rows, config = _rows([0.5, 0.3, 0.8, 0.5, 0.29], [1.0, 5.0, 100.0, 10.0, 5.0])
    gain = STUDY.summarize(rows, config)[0].claims[4]
    assert gain.measured == pytest.approx(-0.01) and gain.ci[1] < 0  # the whole interval below 0, yet:
    assert gain.direction == "undecided" and gain.verdict == "inconclusive" and "binomial" in gain.reason


# --- the study end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("rff_double_descent")
    summary = run_sweep(STUDY, STUDY.resolve("tiny"), out, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 5 * 3
    return out


@pytest.fixture(scope="module")
def tiny_rows(tiny_store):
    with ResultsStore(tiny_store) as store:
        return store.runs("rff_double_descent")


def test_registered_under_its_name():
    assert get_study("rff_double_descent") is STUDY


def test_runs_store_errors_losses_and_norms(tiny_rows):
    n = STUDY.resolve("tiny").data["n_train"]
    for row in tiny_rows:
        m = row["metrics"]
        assert m["n_train"] == n and m["num_features"] == round(m["ratio"] * n)
        assert 0 <= m["test_error"] <= 1 and m["test_sq_loss"] > 0 and m["coef_norm"] > 0
        assert m["bandwidth"] > 0 and 0 < m["sigma_min_ratio"] <= 1
        if m["num_features"] >= n:  # interpolation: zero training loss
            assert m["train_error"] == 0 and m["train_sq_loss"] < 1e-12
        else:
            assert m["train_sq_loss"] > 1e-3 and m["rank"] == m["num_features"]
    # all runs share the data (one bandwidth); seeds draw different features
    assert len({r["metrics"]["bandwidth"] for r in tiny_rows}) == 1
    assert len({r["metrics"]["feature_seed"] for r in tiny_rows}) == 3


def test_summarize_gives_claims_table_and_figure(tiny_rows):
    sections = STUDY.summarize(tiny_rows, STUDY.resolve("tiny"))
    assert len(sections) == 1
    section = sections[0]
    assert [c.id for c in section.claims] == IDS
    # three seeds: every verdict is inconclusive by rule, whatever the interval says
    assert all(c.n_seeds == 3 and c.verdict == "inconclusive" and c.reason == "n < 5" for c in section.claims)
    assert all(c.direction in ("holds", "fails", "undecided") and c.magnitude == "n/a" for c in section.claims)
    assert [name for name, _ in section.figures] == ["rff_double_descent_curves"]
    assert "| N | N/n | seeds |" in section.text and "error peak" in section.text
    # the norm of the exact solution at N = n dwarfs its neighbours on this data: the norm peak is located there
    assert section.claims[2].measured == pytest.approx(1.0)
    # only one side of N = n finished: a plain message, no claims
    n = STUDY.resolve("tiny").data["n_train"]
    below = [r for r in tiny_rows if r["metrics"]["num_features"] < n]
    assert STUDY.summarize(below, STUDY.resolve("tiny"))[0].claims == []


def test_report_has_the_claims_and_figure(tiny_store):
    paths = build_report(tiny_store)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == IDS and all(c["verdict"] in VERDICTS for c in claims)
    assert all(c["source"] == "Belkin et al. 2019" and c["paper_value"] is None for c in claims)
    assert {p.name for p in paths.figures} == {"rff_double_descent_curves.png"}


@pytest.mark.parametrize("override, match", [
    ("feature_ratios=[0.5, 2.0, 3.0]", "at least two feature counts below n and two above"),
    ("feature_ratios=[0.2, 0.5, 1.5, 1.501]", "repeated feature counts"),
    ("feature_ratios=[0.2, 0.5, 1.5, 1.5]", r"feature_ratios \(N/n\) must be a list of at least 1 different"),
    ("feature_ratios=[0.2, -0.5, 1.5, 2]", r"each of feature_ratios \(N/n\) must be a finite number > 0, got -0.5"),
    ("bandwidth=wide", r"bandwidth \(or 'median'\) must be a finite number > 0, got 'wide'"),
    ("bandwidth=0", r"bandwidth \(or 'median'\) must be a finite number > 0, got 0"),
    ("peak_factor=1", "peak_factor must be a finite number > 1, got 1"),
    ("seeds=0", "seeds must be an integer >= 1"),
    ("data.seed=null", "data.n_train and data.seed must be set"),
    ("data.n_trains=5", r"does not take option\(s\) \[.n_trains.\]"),
])
def test_bad_configs_fail_before_anything_runs(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=[override])


def test_presets_are_valid():
    for preset in ("tiny", "quick", "mnist", "paper"):
        config = STUDY.resolve(preset)
        specs = STUDY.grid(config)
        assert len(specs) == len(config.feature_ratios) * config.seeds
    quick, paper = STUDY.resolve("quick"), STUDY.resolve("paper")
    assert quick.data["name"] == "mnist1d" and quick.data["n_train"] == 1000 and quick.seeds >= 5
    assert paper.data["name"] == "mnist" and paper.data["n_train"] == 10_000
