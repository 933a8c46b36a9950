"""The kernel_regime study: tiny preset end to end, its pieces against independent answers (the
explicit empirical NTK, the α-invariance of the linearized model, a very lazy network that must
match its kernel regression), and config validation."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from overparam.errors import ConfigError
from overparam.measures import empirical_ntk
from overparam.models import build
from overparam.references.kernel import kernel_predict
from overparam.studies import common, get_study
from overparam.studies.kernel_regime import STUDY, Centered, _run_config, ntk_apply, run_one
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore

SWEEP_IDS = ["distance_falls", "distance_small", "movement_slope", "drift_slope", "feature_learning_ahead"]
IDS = [f"kernel_regime.{sweep}_{name}" for sweep in ("width", "alpha") for name in SWEEP_IDS]
FIGURES = ["kernel_regime_movement_drift", "kernel_regime_distance", "kernel_regime_accuracy"]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernel_regime")
    summary = run_sweep(STUDY, STUDY.resolve("tiny"), out, progress=False)
    # (8, α=1), (64, α=1) and (64, α=0.5), (64, α=8): the crossing (64, 1) runs once; 3 seeds
    assert summary.failures == [] and summary.counts["done"] == 4 * 3
    return out


@pytest.fixture(scope="module")
def tiny_rows(tiny_store):
    with ResultsStore(tiny_store) as store:
        return store.runs("kernel_regime")


def test_registered_under_its_name():
    assert get_study("kernel_regime") is STUDY


def test_runs_store_the_measures(tiny_rows):
    for row in tiny_rows:
        m = row["metrics"]
        train = row["config"]["params"]["run"]["train"]
        assert train["optimizer"] == "gd" and train["loss"] == "mse" and train["momentum"] == 0.0
        assert train["lr"] == pytest.approx(2.0 / m["alpha"] ** 2) and m["steps"] == 20
        assert 0 < m["movement"] < 1 and 0 < m["lin_movement"] < 1 and 0 < m["ntk_drift"] < 1
        assert 0 < m["lin_distance"] < 0.5 and 0.5 < m["argmax_agreement"] <= 1
        assert m["kernel_rows"] == 40 * 10 and m["step_size"] == pytest.approx(2 * train["lr"] / 400)
        for name in ("net_test_acc", "kernel_test_acc", "net_train_acc", "kernel_train_acc",
                     "infinite_kernel_test_acc"):
            assert 0 <= m[name] <= 1
        assert m["net_test_acc"] == pytest.approx(m["test_acc"])  # our float64 outputs vs fit's evaluation
        assert row["wall_time_s"] >= m["train_time_s"] + m["measure_time_s"] - 1e-6


def test_alpha_scaling_leaves_the_linearized_model_unchanged(tiny_rows):
    """NTK α² Θ_h and lr η/α²: the kernel prediction is the same at every α, and the linearized
    model's displacement J_fᵀβ scales exactly as 1/α; the network's movement close to it."""
    sweep = {(r["metrics"]["alpha"], r["seed"]): r["metrics"] for r in tiny_rows if r["metrics"]["width"] == 64}
    for seed in range(3):
        one = sweep[(1.0, seed)]
        for alpha in (0.5, 8.0):
            m = sweep[(alpha, seed)]
            assert m["kernel_test_acc"] == one["kernel_test_acc"] and m["kernel_train_acc"] == one["kernel_train_acc"]
            assert m["lin_movement"] * alpha == pytest.approx(one["lin_movement"], rel=1e-8)
        assert sweep[(8.0, seed)]["movement"] * 8 == pytest.approx(one["movement"], rel=0.05)


def test_ntk_apply_equals_the_explicit_kernel_product():
    torch.manual_seed(0)
    model = build("mlp", (6,), 3, width=17, depth=2, parameterization="ntk", w_std=1.3, b_std=0.2, alpha=2.5).double()
    x, x_test, beta = torch.randn(5, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64), torch.randn(
        5, 3, dtype=torch.float64)
    out, delta = ntk_apply(model, x, beta, x_test)
    explicit = kernel_predict(empirical_ntk(model, x_test, x, method="jacobian"), beta)
    torch.testing.assert_close(out, explicit, rtol=1e-10, atol=1e-10)
    assert set(delta) == {name for name, _ in model.named_parameters()}


def test_centered_model_starts_at_zero_with_the_same_gradients():
    torch.manual_seed(0)
    model = build("mlp", (6,), 3, width=9, depth=1, parameterization="ntk", alpha=4.0).double()
    x = torch.randn(5, 6, dtype=torch.float64)
    net = Centered(model)
    assert torch.equal(net(x), torch.zeros(5, 3, dtype=torch.float64))
    assert [name for name, p in net.named_parameters() if p.requires_grad] == [
        f"model.{name}" for name, _ in model.named_parameters()]
    torch.testing.assert_close(empirical_ntk(net, x, method="structured"), empirical_ntk(model, x, method="structured"))


def test_a_very_lazy_network_is_its_kernel_regression():
    """At α = 1000 with a smooth activation the trained network (fit's GD, autograd) and the exact
    linearized solution must agree to O(1/α): checks the step size, step count and f_0 = 0."""
    config = STUDY.resolve("tiny", overrides={"activation": "tanh", "steps": 10})
    m = run_one(common.spec("kernel_regime", _run_config(config, 32, 1000.0, 0)), "cpu").metrics
    assert m["lin_distance"] < 1e-3 and m["argmax_agreement"] == 1.0
    assert m["net_test_acc"] == m["kernel_test_acc"] and "infinite_kernel_test_acc" not in m  # ReLU only


def test_summary_claims_and_figures(tiny_rows):
    config = STUDY.resolve("tiny")
    section = STUDY.summarize(tiny_rows, config)[0]
    assert [c.id for c in section.claims] == IDS
    assert all(c.n_seeds == 3 and (c.verdict, c.reason) == ("inconclusive", "n < 5") for c in section.claims)
    assert [name for name, _ in section.figures] == FIGURES
    by_id = {c.id: c for c in section.claims}
    assert by_id["kernel_regime.alpha_movement_slope"].measured == pytest.approx(-1.0, abs=0.05)  # movement ∝ 1/α
    assert "widths 8 to 64" in by_id["kernel_regime.width_distance_falls"].statement
    assert "| 64 | 3 |" in section.text and "**alpha sweep** (width = 64)" in section.text
    # one width and one α only: neither sweep has two values
    one = [r for r in tiny_rows if r["metrics"]["width"] == 8]
    assert STUDY.summarize(one, config)[0].claims == []


def _hand_made(tiny_rows, rich_acc):
    """The tiny grid's rows over 5 seeds with set measures: movement ∝ w^(−1/2)/α, drift ∝
    (w α)^(−1/2), distance 4/(w α) (0.0625 at the largest width, falling), test accuracy
    ``rich_acc`` at the narrowest width and smallest α, 0.25 elsewhere."""
    rows = []
    for seed in range(5):
        for row in (r for r in tiny_rows if r["seed"] == seed % 3):
            row = copy.deepcopy(row)
            m, jitter = row["metrics"], 1 + 0.01 * seed
            width, alpha = m["width"], m["alpha"]
            m.update(movement=jitter * width ** -0.5 / alpha, ntk_drift=jitter * (width * alpha) ** -0.5,
                     lin_distance=jitter * 4 / (width * alpha),
                     net_test_acc=rich_acc if width == 8 or alpha == 0.5 else 0.25)
            rows.append({**row, "seed": seed})
    return rows


def test_verdicts_on_hand_made_rows(tiny_rows):
    """Every measure at its theory value reproduces; a rich−lazy gap of 65 pp (10x the paper's
    6.5 pp) holds in direction only; a 5 pp gap is within 2 binomial SE of a 60-example test set."""
    config = STUDY.resolve("tiny")
    claims = {c.id: c for c in STUDY.summarize(_hand_made(tiny_rows, 0.9), config)[0].claims}
    assert list(claims) == IDS and all(c.n_seeds == 5 for c in claims.values())
    for sweep in ("width", "alpha"):
        for name in ("distance_falls", "distance_small", "movement_slope", "drift_slope"):
            assert claims[f"kernel_regime.{sweep}_{name}"].verdict == "reproduced", (sweep, name)
        gap = claims[f"kernel_regime.{sweep}_feature_learning_ahead"]
        assert gap.measured == pytest.approx(65.0) and gap.paper_value == 6.5 and gap.band == [3.25, 9.75]
        assert (gap.direction, gap.magnitude, gap.verdict) == ("holds", "fails", "direction_only")
        assert gap.test_examples == 60 and gap.binomial_se == pytest.approx(
            100 * math.sqrt((0.9 * 0.1 + 0.25 * 0.75) / 60)) and "CIFAR-10" in gap.statement
    assert claims["kernel_regime.width_movement_slope"].measured == pytest.approx(-0.5)
    assert claims["kernel_regime.alpha_movement_slope"].band == pytest.approx([-1.1, -0.9])
    near = {c.id: c for c in STUDY.summarize(_hand_made(tiny_rows, 0.3), config)[0].claims}
    gap = near["kernel_regime.width_feature_learning_ahead"]
    assert gap.measured == pytest.approx(5.0) and gap.ci[0] > 0  # the seed interval alone would say it holds
    assert (gap.direction, gap.verdict) == ("undecided", "inconclusive")
    assert gap.reason == "within 2 binomial SE of the test set"


def test_report_has_the_claims_and_figures(tiny_store):
    paths = build_report(tiny_store)
    assert [c["id"] for c in json.loads(paths.claims.read_text())] == IDS
    assert {p.name for p in paths.figures} == {f"{name}.png" for name in FIGURES}


@pytest.mark.parametrize("override, match", [
    ("widths=[32]", r"widths must be a list of at least 2 different number\(s\), got \(32,\)"),
    ("widths=[32, 32, 64]", r"widths must be a list of at least 2 different number\(s\), got \(32, 32, 64\)"),
    ("widths=[32, 0]", "each of widths must be a finite number >= 1, got 0"),
    ("widths=[32, 64.5]", "each of widths must be an integer, got 64.5"),
    ("alphas=[1, -2]", "each of alphas must be a finite number > 0, got -2"),
    ("alphas=[1]", "alphas must be a list of at least 2 different"),
    ("width_sweep_alpha=0", "width_sweep_alpha must be a finite number > 0"),
    ("alpha_sweep_width=0", "alpha_sweep_width must be an integer >= 1"),
    ("lr=-1", "lr must be a finite number > 0"),
    ("activation=swish", "unknown activation 'swish'"),
    ("b_std=-0.1", "b_std must be a finite number >= 0"),
    ("steps=0", "steps must be an integer >= 1"),
    ("depth=0", "depth must be an integer >= 1"),
    ("seeds=0", "seeds must be an integer >= 1"),
    ("data.seed=null", "data.seed must be set to an integer"),
    ("data.n_train=null", "data.n_train must be set to an integer"),
    ("data.label_noise=2", "label_noise"),
    ("train={steps: 5}", r"has no config key\(s\) \['train'\]"),
])
def test_bad_configs_fail_before_anything_runs(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=[override])


@pytest.mark.parametrize("override, match", [
    ("data={name: teacher_student, n_train: 20, n_test: 10, seed: 0}", "needs a classification dataset"),
    ("data={name: mnist1d, n_train: 2500, seed: 0}", "at most 20000 rows"),
])
def test_bad_data_fails_in_the_grid(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.grid(STUDY.resolve("tiny", overrides=[override]))


def test_presets_are_valid():
    for preset in ("tiny", "quick", "paper"):
        config = STUDY.resolve(preset)
        assert config.seeds >= (3 if preset == "tiny" else 5) and config.data["seed"] == 0
    assert STUDY.resolve().seeds == 5
    quick = STUDY.resolve("quick")
    assert quick.data["name"] == "mnist1d" and len(STUDY.grid(quick)) == (5 + 6) * 5  # α = 1 at width 256 shared
    paper = STUDY.resolve("paper")
    assert min(paper.widths) == 10 and max(paper.widths) == 10000 and paper.data["name"] == "mnist"
    assert paper.data["n_train"] * 10 <= 20000 and not math.isclose(min(paper.alphas), max(paper.alphas))
