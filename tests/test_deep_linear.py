"""The deep_linear study: the training loop against closed forms (depth 1 converges to the
interpolant nearest its init), the balanced init's shared end-to-end matrix, verdicts on rows with
known answers, config validation, and the tiny preset end to end (store -> summarize -> report)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from overparam.errors import ConfigError
from overparam.studies import get_study
from overparam.studies.base import RunSpec
from overparam.studies.deep_linear import (
    STUDY,
    build_factorization,
    curve_steps,
    make_problem,
    run_one,
    train,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from overparam.sweep.execute import run_sweep

    out = tmp_path_factory.mktemp("deep_linear")
    summary = run_sweep(STUDY, STUDY.resolve("tiny"), out, progress=False)
    assert summary.failures == []
    return out


def test_registered_under_its_name():
    assert get_study("deep_linear") is STUDY


@pytest.mark.parametrize("kind", ["completion", "sensing"])
def test_depth_one_converges_to_the_interpolant_nearest_its_init(kind):
    # GD on a least-squares loss from W_0 stays in W_0 + range(A*) and converges to the unique
    # interpolant there: W_0 + A*(A A*)^{-1}(y − A(W_0)) (completion: W_0 with the observed entries replaced).
    problem = make_problem(kind, 6, 2, 20, seed=1, device=CPU)
    model = build_factorization(6, 6, 1, "gaussian", 0.1, seed=0, device=CPU)
    w0 = model.end_to_end().detach().clone()
    lr = 0.3 if kind == "completion" else 0.05
    out = train(problem, model, lr=lr, steps=3000, record=[0, 3000], rank_threshold=0.01)
    assert out["status"] == "done"
    w = model.end_to_end().detach()
    if kind == "completion":
        expected = torch.where(problem.mask, problem.truth, w0)
    else:
        a = problem.measurements.reshape(len(problem.targets), -1)
        correction = torch.linalg.lstsq(a, problem.targets - a @ w0.reshape(-1)).solution  # min-norm: a is wide
        expected = w0 + correction.reshape(6, 6)
    torch.testing.assert_close(w, expected, rtol=0, atol=1e-8)
    losses = dict(out["curves"]["train_loss"])
    assert losses[3000] < 1e-16 < losses[0]


def test_loss_is_the_scaled_squared_error_of_the_observations():
    problem = make_problem("completion", 5, 1, 10, seed=0, device=CPU)
    model = build_factorization(5, 5, 2, "gaussian", 0.3, seed=0, device=CPU)
    w = model.end_to_end().detach()
    out = train(problem, model, lr=0.0, steps=1, record=[0], rank_threshold=0.01)
    squared = float((problem.truth[problem.mask] - w[problem.mask]).pow(2).sum())
    assert out["curves"]["train_loss"][0][1] == pytest.approx(25 / (2 * 10) * squared, rel=1e-12)


def test_balanced_init_gives_the_same_end_to_end_matrix_at_every_depth():
    products = [build_factorization(8, 8, depth, "balanced", 1e-3, seed=4, device=CPU).end_to_end().detach()
                for depth in (1, 2, 3, 5)]
    for product in products[1:]:
        torch.testing.assert_close(product, products[0], rtol=1e-10, atol=1e-16)
    other_seed = build_factorization(8, 8, 2, "balanced", 1e-3, seed=5, device=CPU).end_to_end().detach()
    assert not torch.allclose(other_seed, products[0])


def test_curve_steps_are_log_spaced_from_zero_to_the_end():
    steps = curve_steps(4000, 40)
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == 4000
    assert all(a < b for a, b in itertools.pairwise(steps))


def test_a_diverging_run_is_reported_not_raised():
    params = STUDY.grid(STUDY.resolve("tiny", overrides=["lr=100", "steps=50"]))
    spec = next(s for s in params if s.params["depth"] == 2)
    outcome = run_one(RunSpec(spec.key, spec.params, spec.seed), "cpu")
    assert outcome.status == "diverged"
    assert "effective_rank" not in outcome.metrics and outcome.metrics["reference_converged"]


def _rows(rank_by_depth, error_by_depth, ratio2=1.0, seeds=3):
    """Store-like rows with the given per-depth effective rank and error (small seed jitter)."""
    rows = []
    for seed in range(seeds):
        for depth, rank in rank_by_depth.items():
            jitter = 0.01 * seed
            metrics = {"effective_rank": rank + jitter, "numerical_rank": round(rank),
                       "reconstruction_error": error_by_depth[depth] * (1 + jitter),
                       "nuclear_ratio": ratio2 + jitter if depth == 2 else 1.5, "distance_to_min_nuclear": 0.1,
                       "relative_residual": 1e-3, "truth_effective_rank": 4.9, "truth_numerical_rank": 5,
                       "reference_effective_rank": 4.9, "reference_numerical_rank": 5, "reference_error": 1e-7,
                       "reference_gap": 1e-7, "reference_converged": True, "singular_values": [3.0, 2.0, 1.0],
                       "truth_singular_values": [3.0, 2.0, 0.0], "reference_singular_values": [3.0, 2.0, 1e-8]}
            curves = {"effective_rank": [(0, 40.0), (1, 30.0), (10, rank)],
                      "train_loss": [(0, 10.0), (1, 5.0), (10, 1e-3)]}
            params = {"problem": "completion", "d": 50, "rank": 5, "n_observed": 2000, "width": 50,
                      "init": "balanced", "init_scale": 1e-4, "lr": 0.02, "steps": 10, "curve_points": 3,
                      "rank_threshold": 0.01, "reference_tol": 1e-6, "reference_max_iter": 100, "depth": depth}
            rows.append({"status": "done", "seed": seed, "metrics": metrics, "curves": curves,
                         "config": {"params": params}})
    return rows


def test_verdicts_follow_the_measurements():
    config = STUDY.resolve("quick")
    falling = STUDY.summarize(_rows({1: 25.0, 2: 5.3, 3: 5.1, 5: 5.0}, {1: 1.0, 2: 0.01, 3: 0.005, 5: 0.002}), config)
    verdicts = {c.id: c.verdict for c in falling[0].claims}
    assert verdicts == {"deep_linear.low_rank_at_max_depth": "reproduced",
                        "deep_linear.depth_lowers_effective_rank": "reproduced",
                        "deep_linear.depth_lowers_effective_rank_beyond_2": "reproduced",
                        "deep_linear.effective_rank_ratio": "reproduced",
                        "deep_linear.depth2_min_nuclear_norm": "reproduced",
                        "deep_linear.depth_lowers_reconstruction_error": "reproduced"}
    # rank and error growing with depth, a high-rank deepest solution, a depth-2 nuclear norm far above the minimum
    rising = STUDY.summarize(_rows({1: 5.0, 2: 10.0, 3: 15.0, 5: 20.0}, {1: 0.1, 2: 0.2, 3: 0.3, 5: 0.4}, ratio2=1.3),
                             config)
    verdicts = {c.id: c.verdict for c in rising[0].claims}
    assert set(verdicts.values()) == {"not_reproduced"}
    claims = {c.id: c for c in rising[0].claims}
    assert claims["deep_linear.effective_rank_ratio"].measured == pytest.approx(5.01 / 20.01, rel=1e-3)
    assert "No two depths" in STUDY.summarize([], config)[0].text


def test_tiny_preset_end_to_end(tiny_store):
    from overparam.sweep.report import build_report
    from overparam.sweep.store import ResultsStore

    with ResultsStore(tiny_store) as store:
        rows = store.runs("deep_linear", curves=True)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"done"}
    for row in rows:
        m, curves = row["metrics"], row["curves"]
        assert m["reference_converged"] and m["reference_gap"] <= 1e-6
        assert 1 <= m["effective_rank"] <= 10 and len(m["singular_values"]) == 10
        assert m["nuclear_ratio"] > 1 - 0.1  # no fit has a much smaller nuclear norm than the minimum
        assert set(curves) == {"effective_rank", "numerical_rank", "train_loss"} and "effective_rank_curve" not in m
        steps = [[s for s, _ in points] for points in curves.values()]
        assert steps[0] == steps[1] == steps[2] == curve_steps(600, 10)
    # depth 1 leaves the unobserved entries at their near-zero init
    assert all(math.isclose(r["metrics"]["reconstruction_error"], 1.0, abs_tol=1e-2) for r in rows
               if r["config"]["params"]["depth"] == 1)
    paths = build_report(tiny_store)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == ["deep_linear.low_rank_at_max_depth", "deep_linear.depth_lowers_effective_rank",
                                         "deep_linear.effective_rank_ratio", "deep_linear.depth2_min_nuclear_norm",
                                         "deep_linear.depth_lowers_reconstruction_error"]
    assert [p.name for p in paths.figures] == ["deep_linear_rank_over_training.png", "deep_linear_vs_depth.png",
                                               "deep_linear_spectra.png"]
    assert "min-nuclear-norm" in paths.markdown.read_text()


@pytest.mark.parametrize("override, match", [
    ("problem=tomography", "tomography"),
    ("rank=11", "rank=11 exceeds d=10"),
    ("n_observed=101", "n_observed=101"),
    ("depths=[2]", "at least two different depths"),
    ("depths=[1, 2, 2]", "no repeats"),
    ("depths=[0, 2]", "each of depths"),
    ("width=4", "width >= d"),
    ("init=xavier", "xavier"),
    ("init_scale=0", "init_scale"),
    ("lr=-1", "lr"),
    ("rank_threshold=1", "rank_threshold"),
    ("low_rank_fraction=1.5", "low_rank_fraction"),
    ("reference_tol=0", "reference_tol"),
    ("seeds=0", "seeds"),
    ("steps=0", "steps"),
])
def test_bad_configs_fail_before_anything_runs(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=[override])


def test_presets_resolve_and_expand():
    for preset, runs in (("tiny", 6), ("quick", 25), ("paper", 25)):
        config = STUDY.resolve(preset)
        assert len(STUDY.grid(config)) == runs
    paper = STUDY.resolve("paper")
    assert (paper.d, paper.rank, tuple(paper.depths), paper.seeds) == (100, 5, (1, 2, 3, 4, 5), 5)
