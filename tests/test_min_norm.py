"""The min_norm study: its methods on small problems with known limits, the summary helpers on
hand-made data, config validation, and the tiny preset end to end (store -> summarize -> report)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from overparam.analysis import Run, SeedTable
from overparam.errors import ConfigError
from overparam.references.linear import min_norm_interpolant, nearest_interpolant
from overparam.studies import get_study
from overparam.studies.min_norm import (
    METHODS,
    PAPER_CLAIMS,
    STUDY,
    MinNormAnalysis,
    _convergence_analysis,
    _double_descent_analysis,
    claims,
    coordinate_update,
    gd_update,
    hold_last,
    iterate,
    null_part,
)

F64 = torch.float64


def _problem(n=8, p=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, generator=gen, dtype=F64), torch.randn(n, generator=gen, dtype=F64)


def test_gd_from_zero_reaches_min_norm_and_from_w0_its_nearest_interpolant():
    X, y = _problem()
    step = 1.0 / float(torch.linalg.eigvalsh(X @ X.T / len(X))[-1])
    w_mn = min_norm_interpolant(X, y)
    w, steps, curves = iterate(gd_update(X, y, step), torch.zeros(24, dtype=F64), X, y, 1e-12, 10_000, {"d": w_mn})
    assert 0 < steps < 10_000 and float((w - w_mn).norm() / w_mn.norm()) < 1e-10
    assert curves["d"][0] == (0, 1.0) and curves["d"][-1][0] == steps
    assert float(null_part(X, w).norm()) < 1e-12
    w0 = torch.randn(24, generator=torch.Generator().manual_seed(1), dtype=F64)
    w, _, _ = iterate(gd_update(X, y, step), w0, X, y, 1e-12, 10_000, {})
    assert torch.allclose(w, nearest_interpolant(X, y, w0), atol=1e-10)
    assert float((w - w_mn).norm()) == pytest.approx(float(null_part(X, w0).norm()), rel=1e-8)


def test_coordinate_sweep_is_cyclic_exact_coordinate_descent():
    X, y = _problem(5, 9, seed=2)
    w = torch.randn(9, generator=torch.Generator().manual_seed(3), dtype=F64)
    explicit = w.clone()
    for j in range(9):  # minimize ||X w − y||² over w_j, the others fixed, in order
        residual = y - X @ explicit
        explicit[j] += X[:, j] @ residual / (X[:, j] @ X[:, j])
    assert torch.allclose(coordinate_update(X, y)(w), explicit, atol=1e-12)
    # from zero it interpolates, but not at the minimum-norm solution
    w, _, _ = iterate(coordinate_update(X, y), torch.zeros(9, dtype=F64), X, y, 1e-12, 10_000, {})
    assert torch.allclose(X @ w, y, atol=1e-10)
    assert float(null_part(X, w).norm()) > 1e-3


def test_a_stopped_trial_is_held_at_its_last_value():
    runs = [Run("a", 0, "done", {}, None, {}, {"gd": [(0, 1.0), (1, 0.5), (2, 0.25)]}),
            Run("b", 1, "done", {}, None, {}, {"gd": [(0, 1.0), (1, 0.1)]})]
    steps, curves = SeedTable(runs).curve("gd")
    assert steps.tolist() == [0, 1, 2]
    assert hold_last(curves[:, 0]).tolist() == [[1.0, 0.5, 0.25], [1.0, 0.1, 0.1]]
    held = hold_last(np.array([np.nan, 2.0, np.nan, 3.0]))
    assert np.isnan(held[0]) and held[1:].tolist() == [2.0, 2.0, 3.0]  # nothing before the first value


LAMBDAS = [1.0, 0.1, 0.01, 1e-3, 1e-4, 1e-5]


def _convergence_runs(trials, exponent, distance=1e-10):
    """Hand-made convergence trials: every method at ``distance`` from w_mn, and a ridge path
    c_i · λ^exponent with a different c_i per trial."""
    runs = []
    for seed in range(trials):
        metrics = {f"{m}_{k}": v for m in METHODS for k, v in (("distance", distance), ("null", 0.0),
                                                               ("residual", 1e-11), ("steps", 10), ("converged", True))}
        metrics.update(gd_init_nearest_distance=distance, gd_init_predicted=1.0, lambda_max=2.0, lambda_min=1.0,
                       ridge_distance=[(1.0 + 0.1 * seed) * lam ** exponent for lam in LAMBDAS])
        runs.append(Run(f"c{seed}", seed, "done", {"part": "convergence", "ridge_lambdas": LAMBDAS}, None, metrics,
                        {"gd_zero": [(0, 1.0), (1, distance)]}))
    return runs


def _judged(runs, config=STUDY.resolve("tiny")):
    return {c.id.split(".", 1)[1]: c for c in claims(MinNormAnalysis(_convergence_analysis(runs), None), config)}


def test_ridge_rate_carries_the_theory_value_and_is_judged_on_it():
    rate = _judged(_convergence_runs(6, 1.0))["ridge_rate"]
    assert rate.paper_value == 1.0 and rate.band == [pytest.approx(0.9), pytest.approx(1.1)]
    assert rate.ci_method == "t over per-seed slopes" and rate.n_seeds == 6
    assert rate.measured == pytest.approx(1.0) and rate.ratio_to_paper == pytest.approx(1.0)
    assert (rate.direction, rate.magnitude, rate.verdict) == ("holds", "holds", "reproduced")
    steep = _judged(_convergence_runs(6, 2.0))["ridge_rate"]  # twice the theory's exponent
    assert steep.measured == pytest.approx(2.0)
    assert (steep.direction, steep.magnitude, steep.verdict) == ("fails", "fails", "not_reproduced")
    few = _judged(_convergence_runs(4, 1.0))["ridge_rate"]
    assert (few.direction, few.verdict, few.reason) == ("holds", "inconclusive", "n < 5")


def test_bounds_are_judged_on_direction_only():
    judged = _judged(_convergence_runs(6, 1.0))
    reach = judged["gd_zero_reaches_min_norm"]
    assert reach.paper_value is None and reach.band is None
    assert reach.source == "arXiv 2604.07603, mathematical analysis"
    assert (reach.direction, reach.magnitude, reach.verdict) == ("holds", "n/a", "reproduced")
    assert (judged["adam_not_min_norm"].direction, judged["adam_not_min_norm"].verdict) == ("fails", "not_reproduced")
    far = _judged(_convergence_runs(6, 1.0, distance=0.5))
    assert far["gd_zero_reaches_min_norm"].verdict == "not_reproduced"
    assert far["coordinate_not_min_norm"].verdict == "reproduced"
    assert set(PAPER_CLAIMS) == set(judged) | {"double_descent_peak"}


def test_peak_ratio_is_the_geometric_mean_of_per_trial_ratios():
    risk = [[1.0, 10.0, 2.0], [1.0, 30.0, 2.0], [3.0, 20.0, 2.0], [1.0, 16.0, 4.0], [2.0, 8.0, 1.0]]
    runs = [Run(f"d{i}", i, "done", {"part": "double_descent", "n": 10, "features": [5, 10, 20]}, None,
                {"dd_risk": r, "dd_theory": [1.0, math.inf, 1.0], "dd_noise": 0.25, "dd_null_risk": 1.25}, {})
            for i, r in enumerate(risk)]
    d = _double_descent_analysis(runs)
    per_trial = [10 / 2, 30 / 2, 20 / 3, 16 / 4, 8 / 2]
    assert d.peak == 1 and d.ratio.method == "log-t" and d.ratio.n == 5
    assert d.ratio[0] == pytest.approx(math.exp(np.mean(np.log(per_trial))))
    assert 1 < d.ratio[1] < d.ratio[0] < d.ratio[2]
    assert np.isnan(d.theory[1]) and d.theory[0] == 1.0
    (peak,) = claims(MinNormAnalysis(None, d), STUDY.resolve("tiny"))
    assert (peak.id, peak.paper_value, peak.direction, peak.verdict) == ("min_norm.double_descent_peak", None, "holds",
                                                                          "reproduced")


@pytest.mark.parametrize("override, match", [
    ({"p": 20}, r"p \(the theorem's over-parameterized regime: p > n\) must be an integer >= 21"),
    ({"step_fraction": 1.0}, "step_fraction"),
    ({"noise_std": -0.1}, "noise_std"),
    ({"residual_tol": 0}, "residual_tol"),
    ({"adam_lr": 0}, "adam_lr"),
    ({"ridge_lambdas": [1.0, 0.1, 0.1, 0.01]}, "ridge_lambdas"),
    ({"ridge_lambdas": [1.0, 0.1, 0.01, -1.0]}, "ridge_lambdas"),
    ({"dd_ratios": [0.5, 0.8, 0.9]}, "dd_ratios"),
    ({"dd_ratios": [0.5, 0.51, 2.0]}, "dd_ratios"),
    ({"seeds": 0}, "seeds"),
    ({"trials": 5}, "no config key"),
])
def test_bad_configs(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=override)


def test_presets_resolve_and_quick_is_the_issue_scale():
    for preset in STUDY.presets:
        config = STUDY.resolve(preset)
        assert len(STUDY.grid(config)) == config.seeds + config.dd_seeds
    quick = STUDY.resolve("quick")
    assert (quick.p, quick.n, quick.seeds) == (1000, 100, 100)


def test_tiny_end_to_end(tmp_path):
    from overparam.sweep.execute import run_sweep
    from overparam.sweep.report import build_report
    from overparam.sweep.store import ResultsStore

    assert get_study("min_norm") is STUDY
    config = STUDY.resolve("tiny")
    summary = run_sweep(STUDY, config, tmp_path, progress=False)
    assert summary.failures == [] and summary.counts["done"] == config.seeds + config.dd_seeds
    with ResultsStore(tmp_path) as store:
        rows = store.runs("min_norm", curves=True)
    convergence = [r for r in rows if r["config"]["params"]["part"] == "convergence"]
    assert len(convergence) == config.seeds
    for row in convergence:
        m = row["metrics"]
        assert all(m[f"{method}_converged"] for method in ("gd_zero", "gd_init", "adam", "coordinate"))
        assert m["gd_zero_distance"] < 1e-8 and m["gd_init_nearest_distance"] < 1e-8
        assert m["gd_init_distance"] == pytest.approx(m["gd_init_predicted"], rel=1e-6)
        assert len(m["ridge_distance"]) == len(config.ridge_lambdas)
        assert set(row["curves"]) == {"gd_zero", "gd_init", "gd_init_nearest", "adam", "coordinate"}
        assert not any(k.startswith("trace_") for k in m)  # the curves are stored once, as curves
    double_descent = [r for r in rows if r["config"]["params"]["part"] == "double_descent"]
    m = double_descent[0]["metrics"]
    assert m["dd_features"] == [5, 10, 20, 40, 60]
    assert m["dd_train_residual"][-1] < 1e-10 < m["dd_train_residual"][0]  # interpolates only for p >= n

    assert STUDY.summarize(rows, STUDY.resolve("quick"))[0].text == "No finished runs yet."  # other config's runs
    paths = build_report(tmp_path)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == [f"min_norm.{k}" for k in (
        "gd_zero_reaches_min_norm", "nonzero_init_not_min_norm", "nonzero_init_nearest_interpolant",
        "adam_not_min_norm", "coordinate_not_min_norm", "ridge_limit", "ridge_rate", "double_descent_peak")]
    by_id = {c["id"]: c for c in claims}
    for claim in claims:  # the tiny preset has 4 trials: no verdict, but the direction is decided
        assert (claim["verdict"], claim["reason"]) == ("inconclusive", "n < 5")
        assert claim["direction"] == "holds", claim["id"]
    assert by_id["min_norm.ridge_rate"]["paper_value"] == 1.0 and by_id["min_norm.ridge_rate"]["band"] == [0.9, 1.1]
    assert by_id["min_norm.ridge_rate"]["magnitude"] == "holds"
    assert sorted(p.name for p in paths.figures) == ["min_norm_convergence.png", "min_norm_double_descent.png",
                                                     "min_norm_ridge_path.png"]
