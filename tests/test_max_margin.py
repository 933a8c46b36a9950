"""The max_margin study: its GD loop against the theory's closed-form asymptote on a tiny dataset,
the late-phase rate estimates on curves with known rates, the tiny preset end to end, and config
validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from overparam.analysis import mean_ci, paired_ratio
from overparam.errors import ConfigError
from overparam.references.svm import hard_margin_svm
from overparam.studies import get_study
from overparam.studies.max_margin import (PAPER_CLAIMS, STUDY, angles, asymptotic_offset, claims, late_statistics,
                                          logistic_gd, record_steps, smoothness)
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore

IDS = ["max_margin.final_angle", "max_margin.svm_not_planted", "max_margin.angle_inverse_log",
       "max_margin.angle_rate_matches_theory", "max_margin.margin_approaches_svm", "max_margin.loss_rate",
       "max_margin.angle_slower_than_loss", "max_margin.norm_log_rate"]


def test_gd_step_is_the_logistic_gradient():
    """One step from w_0 = 0: ∇L(0) = −(1/n) Σ z_i σ(0) = −mean(z)/2, so w_1 = η mean(z)/2; and a
    second step against a finite-difference gradient of L."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(7, 3))
    w = logistic_gd(z, 0.3, 2, [1, 2])
    np.testing.assert_allclose(w[0], 0.3 * z.mean(axis=0) / 2, rtol=1e-14)

    def loss(v):
        return np.mean(np.log1p(np.exp(-z @ v)))

    eps = 1e-6
    gradient = np.array([(loss(w[0] + eps * e) - loss(w[0] - eps * e)) / (2 * eps) for e in np.eye(3)])
    np.testing.assert_allclose(w[1], w[0] - 0.3 * gradient, rtol=1e-8)


def test_gd_follows_the_theory_asymptote_when_non_support_vectors_are_far():
    """Two support vectors spanning R², the other points with margin ≥ 3 under ŵ (their pull fades
    like t^(−2)): w_t − ŵ log t → w̃ with z_iᵀw̃ = log(η/(n α_i)) (the asymptote the study
    compares against), and the angle to ŵ falls like 1/log t."""
    x = np.array([[1.0, 0.2], [0.3, 1.0], [4.0, 3.0], [3.0, 5.0], [-3.5, -4.0]])
    y = np.array([1.0, 1.0, 1.0, 1.0, -1.0])
    z = y[:, None] * x
    svm = hard_margin_svm(x, y)
    assert sorted(svm.support.tolist()) == [0, 1] and (z @ svm.w)[2:].min() > 3
    lr = 1.0 / smoothness(x)
    steps = [1000, 100_000]
    w = logistic_gd(z, lr, steps[-1], steps)
    offset = asymptotic_offset(z, svm.alpha, svm.support, lr)
    error = [np.linalg.norm(w[k] - svm.w * math.log(t) - offset) / np.linalg.norm(offset) for k, t in enumerate(steps)]
    assert error[1] < 0.01 and error[1] < error[0] / 10, error
    predicted = angles((np.log(steps)[:, None] * svm.w + offset), svm.direction)
    measured = angles(w, svm.direction)
    assert measured[1] == pytest.approx(predicted[1], rel=0.02)
    assert measured[1] < measured[0] / 2


def test_angles_are_accurate_at_small_and_large_angles():
    u = np.array([1.0, 0.0, 0.0])
    w = np.array([[1.0, 1e-9, 0.0], [0.0, 2.0, 0.0], [-1.0, 1.0, 0.0], [3.0, 0.0, 4.0]])
    np.testing.assert_allclose(angles(w, u), [1e-9, math.pi / 2, 3 * math.pi / 4, math.atan2(4, 3)], rtol=1e-12)


def test_asymptote_is_undefined_when_the_support_vectors_do_not_span():
    z = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [2.0, 2.0, 0.0]])
    assert asymptotic_offset(z, np.array([1.0, 1.0, 0.0]), np.array([0, 1]), 0.5) is None


def _curves_with(angle, loss, norm, margin_ratio):
    return {"angle": angle, "loss": loss, "norm": norm, "margin_ratio": margin_ratio, "angle_planted": 3 * angle}


def test_late_statistics_recover_known_rates():
    steps = np.asarray(record_steps(100_000, 100)[1:], dtype=float)  # from t = 2: log t > 0
    log_t = np.log(steps)
    c, t0 = 0.3, 2.0
    angle = c / (log_t + t0)  # the 1/log t law with a time shift
    curves = _curves_with(angle, 5.0 / steps, 2.0 * log_t + 1.0, 1 - 0.5 / log_t)
    stats = late_statistics(steps, curves, 2.0, 2.0)  # ‖ŵ‖ = 2
    assert stats["inverse_angle_curvature"] == pytest.approx(1.0, abs=1e-9)
    assert stats["fit_c"] == pytest.approx(c, rel=1e-9) and stats["fit_t0"] == pytest.approx(t0, rel=1e-9)
    assert stats["loss_exponent_t"] == pytest.approx(-1.0, abs=1e-9)
    assert stats["norm_rate"] == pytest.approx(1.0, abs=1e-9)  # slope 2 = ‖ŵ‖
    assert stats["margin_gap_exponent_logt"] == pytest.approx(-1.0, abs=1e-9)
    assert stats["planted_over_svm_angle"] == pytest.approx(3.0)
    # local exponent of c/(log t + t0) on log log t: −log t/(log t + t0), between its end values
    late = log_t[steps >= 1000]
    assert -late[-1] / (late[-1] + t0) < stats["angle_exponent_logt"] < -late[0] / (late[0] + t0)
    assert math.isnan(stats["theory_ratio"]) and math.isnan(stats["theory_rate_ratio"])
    # with an asymptote curve equal to the measured one, the theory ratios are 1
    stats = late_statistics(steps, {**curves, "angle_theory": angle}, 2.0, 2.0)
    assert stats["theory_ratio"] == pytest.approx(1.0) and stats["theory_rate_ratio"] == pytest.approx(1.0)
    # a power law t^(−0.1) bends 1/angle upward: late/early slope ratio 10^0.1 = 1.26 over two decades
    power = late_statistics(steps, _curves_with(steps ** -0.1, 5.0 / steps, log_t, 1 - 0.5 / log_t), 2.0, 2.0)
    assert power["inverse_angle_curvature"] == pytest.approx(10 ** 0.1, rel=0.03)
    assert power["angle_exponent_t"] == pytest.approx(-0.1, abs=1e-9)


# --- the study end to end ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("max_margin")
    summary = run_sweep(STUDY, STUDY.resolve("tiny"), out, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 3
    return out


@pytest.fixture(scope="module")
def tiny_rows(tiny_store):
    with ResultsStore(tiny_store) as store:
        return store.runs("max_margin", curves=True)


def test_registered_under_its_name():
    assert get_study("max_margin") is STUDY


def test_runs_store_curves_and_the_svm(tiny_rows):
    config = STUDY.resolve("tiny")
    for row in tiny_rows:
        m, curves = row["metrics"], {name: np.array(points, dtype=float) for name, points in row["curves"].items()}
        for points in curves.values():
            assert points[:, 0].tolist() == record_steps(config.steps, config.record_points)
        assert m["svm_kkt_residual"] < 1e-9 and 1 <= m["support_vectors"] <= config.dim
        angle, ratio, loss = curves["angle"][:, 1], curves["margin_ratio"][:, 1], curves["loss"][:, 1]
        assert np.all(ratio <= 1 + 1e-12)  # no direction has a larger margin than the SVM's
        assert np.all(np.diff(loss) < 0)  # GD with η < 2/β decreases the loss monotonically
        assert angle[-1] < angle[0] and 0 < m["final_angle"] < 0.2
        assert m["lr"] == pytest.approx(config.lr_scale / m["smoothness"])
        assert m["asymptote_defined"] == ("angle_theory" in curves)
        assert not any(k.endswith("_curve") for k in m)  # the curves are stored once, as curves


def test_summarize_gives_claims_tables_and_figures(tiny_rows):
    sections = STUDY.summarize(tiny_rows, STUDY.resolve("tiny"))
    assert len(sections) == 1
    section = sections[0]
    assert [c.id for c in section.claims] == IDS
    for claim in section.claims:  # three seeds: no verdict, whatever the interval says
        assert (claim.verdict, claim.reason, claim.source) == ("inconclusive", "n < 5", "Soudry et al. 2018")
    assert section.claims[0].n_seeds == 3 and section.claims[0].direction == "holds"  # angle < 0.1 rad
    assert [name for name, _ in section.figures] == ["max_margin_angle", "max_margin_margin_and_loss",
                                                     "max_margin_norm"]
    assert "| seed | SVs | δ_min |" in section.text
    # runs of another configuration are not mixed in; one seed alone gives no claims
    assert STUDY.summarize(tiny_rows, STUDY.resolve("tiny", overrides=["steps=3000"]))[0].claims == []
    assert STUDY.summarize(tiny_rows[:1], STUDY.resolve("tiny"))[0].claims == []


def test_report_has_the_claims_and_figures(tiny_store):
    paths = build_report(tiny_store)
    assert [c["id"] for c in json.loads(paths.claims.read_text())] == IDS
    assert {p.name for p in paths.figures} == {"max_margin_angle.png", "max_margin_margin_and_loss.png",
                                               "max_margin_norm.png"}


@pytest.mark.parametrize("override, match", [
    ("lr_scale=2", r"lr_scale \(GD on the logistic loss needs η < 2/β\) must be a finite number in \(0, 2\)"),
    ("lr_scale=0", r"lr_scale .* must be a finite number in \(0, 2\)"),
    ("margin=5", r"margin \(the separable source's range\) must be a finite number in \[0, 4\]"),
    ("n_train=1", "n_train must be an integer >= 2"),
    ("steps=5", "steps must be an integer >= 10"),
    ("angle_threshold=2", r"angle_threshold \(radians\) must be a finite number in \(0, 1.5708\]"),
    ("margin_threshold=1", r"margin_threshold .* must be a finite number in \(0, 1\)"),
    ("late_decades=5", r"late_decades \(decades of the 2000 steps\) must be a finite number in \(0, 3.30103\]"),
    ("record_points=10", "at least 3 each are needed"),
    ("seeds=0", "seeds must be an integer >= 1"),
    ("stepz=10", r"no config key\(s\) \['stepz'\]"),
])
def test_bad_configs_fail_before_anything_runs(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=[override])


def test_presets_are_valid():
    for preset in ("tiny", "quick", "paper"):
        config = STUDY.resolve(preset)
        assert len(STUDY.grid(config)) == config.seeds
    quick = STUDY.resolve("quick")
    assert quick.seeds >= 5 and quick.steps >= 100_000


# --- claims on hand-made per-seed values ---------------------------------------------------------


class _Analysis:
    """The per-seed statistics the claims read, as the analysis makes them (mean_ci / paired_ratio)."""

    def __init__(self, seeds, shift=0.0):
        spread = np.linspace(-0.02, 0.02, seeds)
        values = {"final_angle": 0.03 + spread, "inverse_angle_curvature": 1.0 + spread,
                  "theory_rate_ratio": 1.0 + spread, "final_margin_ratio": 0.95 + spread,
                  "loss_exponent_t": -1.0 + shift + spread, "angle_over_loss_exponent": 0.1 + spread,
                  "norm_rate": 0.85 + spread}
        self.cis = {name: mean_ci(v) for name, v in values.items()}
        self.cis["planted_over_svm_angle"] = paired_ratio(3 * (0.03 + spread), 0.03 + spread)


def test_claims_carry_the_theory_values_and_follow_the_rules():
    config = STUDY.resolve("quick")
    judged = {c.id.split(".", 1)[1]: c for c in claims(_Analysis(6), config)}
    assert list(judged) == [i.split(".", 1)[1] for i in IDS] == list(PAPER_CLAIMS)
    loss = judged["loss_rate"]
    assert loss.paper_value == -1.0 and loss.band == [pytest.approx(-1.1), pytest.approx(-0.9)]
    assert loss.ratio_to_paper == pytest.approx(1.0) and loss.ci_method == "t"
    assert (loss.direction, loss.magnitude, loss.verdict) == ("holds", "holds", "reproduced")
    assert judged["angle_rate_matches_theory"].band == [0.8, 1.25]  # the study's own band
    norm = judged["norm_log_rate"]  # 0.85 ± 0.02: below the band [0.9, 1.1]
    assert (norm.paper_value, norm.direction, norm.magnitude, norm.verdict) == (1.0, "fails", "fails",
                                                                               "not_reproduced")
    ratio = judged["svm_not_planted"]
    assert ratio.ci_method == "log-t" and ratio.measured == pytest.approx(3.0) and ratio.paper_value is None
    assert (ratio.direction, ratio.magnitude, ratio.verdict) == ("holds", "n/a", "reproduced")
    assert judged["final_angle"].verdict == judged["angle_slower_than_loss"].verdict == "reproduced"
    # a loss slope of −2 (twice the theory's exponent) is outside the band on both tests
    steep = {c.id: c for c in claims(_Analysis(6, shift=-1.0), config)}["max_margin.loss_rate"]
    assert (steep.direction, steep.magnitude, steep.verdict) == ("fails", "fails", "not_reproduced")
    few = {c.id: c for c in claims(_Analysis(4), config)}["max_margin.loss_rate"]
    assert (few.direction, few.verdict, few.reason) == ("holds", "inconclusive", "n < 5")
