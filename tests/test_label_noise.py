"""The label_noise study: the noise mask, the split gradients against independent computations
(per-example gradients, the closed form of a linear softmax model), the per-run summaries on
hand-made series, config validation, and the tiny preset end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from overparam import data as data_module
from overparam.errors import ConfigError
from overparam.measures import per_example_gradients
from overparam.studies import get_study
from overparam.studies.label_noise import (
    STUDY,
    Tracker,
    curve_band,
    early_stopping,
    first_step_reaching,
    gradient_weighting,
    noise_mask,
    per_example_loss,
    phase_means,
    run_metrics,
    split_gradients,
)
from overparam.train import Callback, loss_function


def _noisy_dataset(noise=0.3):
    return data_module.load("mnist1d", n_train=200, n_test=50, label_noise=noise, seed=7)


def test_noise_mask_is_exactly_the_flipped_labels():
    dataset = _noisy_dataset(0.3)
    mask = noise_mask(dataset)
    assert torch.equal(mask, dataset.y_train != dataset.clean_y_train)
    assert int(mask.sum()) == round(0.3 * 200)
    assert not noise_mask(_noisy_dataset(0.0)).any()
    dataset.noisy_indices = dataset.noisy_indices[1:]  # one flipped label left out of the indices
    with pytest.raises(ConfigError, match="noisy_indices"):
        noise_mask(dataset)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_per_example_losses_average_to_the_training_loss(loss):
    gen = torch.Generator().manual_seed(0)
    outputs, y = torch.randn(13, 4, generator=gen, dtype=torch.float64), torch.randint(0, 4, (13,), generator=gen)
    losses = per_example_loss(loss, outputs, y, 4)
    assert losses.shape == (13,)
    assert float(losses.mean()) == pytest.approx(float(loss_function(loss, 4)(outputs, y)), rel=1e-12)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("chunk", [4, 4096])
def test_split_gradients_equal_sums_of_per_example_gradients(loss, chunk):
    model = _mlp()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(11, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (11,), generator=gen)
    noisy = torch.tensor([1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=torch.bool)
    eye = torch.eye(3, dtype=torch.float64)  # one_hot cannot be vmapped; an indexing of I_3 can
    loss_fn = (loss_function(loss, 3) if loss == "cross_entropy" else
               lambda out, target: (out - eye[target]).pow(2).mean())
    g = per_example_gradients(model, loss_fn, x, y).grads  # (n, P), vmapped: an independent computation
    g_n, g_c = g[noisy].sum(0), g[~noisy].sum(0)
    result = split_gradients(model, x, y, noisy, loss, 3, chunk=chunk)
    assert result["nn"] == pytest.approx(float(g_n @ g_n), rel=1e-10)
    assert result["cc"] == pytest.approx(float(g_c @ g_c), rel=1e-10)
    assert result["nc"] == pytest.approx(float(g_n @ g_c), rel=1e-10, abs=1e-14)
    assert all(p.grad is None for p in model.parameters())  # .grad untouched


def test_split_gradients_of_a_linear_softmax_model_match_the_closed_form():
    # f(x) = W x, cross-entropy: ∇_W ℓ_i = (softmax(W x_i) - e_{y_i}) x_i^T
    rng = np.random.default_rng(3)
    w, x = rng.normal(size=(4, 6)), rng.normal(size=(9, 6))
    y = rng.integers(0, 4, size=9)
    noisy = np.arange(9) % 3 == 0
    logits = x @ w.T
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    residual = probs - np.eye(4)[y]
    g_n = (residual[noisy].T @ x[noisy]).ravel()
    g_c = (residual[~noisy].T @ x[~noisy]).ravel()
    model = nn.Linear(6, 4, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w))
    result = split_gradients(model, torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(noisy),
                             "cross_entropy", 4)
    assert result["nn"] == pytest.approx(g_n @ g_n, rel=1e-12)
    assert result["cc"] == pytest.approx(g_c @ g_c, rel=1e-12)
    assert result["nc"] == pytest.approx(g_n @ g_c, rel=1e-12)


def test_gradient_weighting_on_hand_checked_vectors():
    # G_N = (1, 0), G_C = (-0.5, 1): G = (0.5, 1), <G_N, G> = 0.5, ||G||² = 1.25
    out = gradient_weighting(1.0, 1.25, -0.5, n_noisy=2, n_clean=5)
    assert out["noisy_grad_share"] == pytest.approx(0.4)
    assert out["noisy_grad_norm_ratio"] == pytest.approx(1 / math.sqrt(1.25))
    assert out["noisy_grad_per_example"] == pytest.approx(0.5)
    assert out["clean_grad_per_example"] == pytest.approx(math.sqrt(1.25) / 5)
    assert out["grad_cosine"] == pytest.approx(-0.5 / math.sqrt(1.25))
    # the clean share is the complement: G_C = (1, 0), G_N = (-0.5, 1)
    assert gradient_weighting(1.25, 1.0, -0.5, 5, 2)["noisy_grad_share"] == pytest.approx(0.6)
    assert math.isnan(gradient_weighting(0.0, 0.0, 0.0, 1, 1)["noisy_grad_share"])


def test_per_run_summaries_of_hand_made_series():
    steps = [0, 10, 20, 30, 40]
    assert first_step_reaching(steps, [0.1, 0.5, 0.95, 0.9, 1.0], 0.9) == 20
    assert first_step_reaching(steps, [0.1, 0.5, 0.6, 0.7, 0.8], 0.9) is None
    stop = early_stopping(steps, [0.1, 0.6, 0.6, 0.5, 0.4], [0.1, 0.55, 0.6, 0.5, 0.45])
    assert stop == {"early_stopping_step": 10, "early_stopping_acc": 0.55, "final_heldout_acc": 0.45,
                    "early_stopping_gain": pytest.approx(0.10)}
    assert phase_means(steps, [9.0, 1.0, 3.0, 5.0, float("nan")], boundary=20) == (2.0, 5.0)
    assert all(math.isnan(v) for v in phase_means([0, 10], [1.0, float("nan")], boundary=10))
    series = {"step": steps, "clean_train_acc": [0.1, 0.9, 1.0, 1.0, 1.0],
              "noisy_train_acc": [0.1, 0.2, 0.5, 0.9, 1.0], "val_acc": [0.1, 0.6, 0.5, 0.5, 0.5],
              "heldout_acc": [0.1, 0.6, 0.5, 0.4, 0.4], "noisy_grad_share": [0.3, 0.1, 0.5, 0.7, 0.9],
              "noisy_loss_share": [0.4, 0.5, 0.6, 0.7, 0.8]}
    m = run_metrics(series, 0.9)
    assert (m["clean_fit_step"], m["noisy_fit_step"], m["early_stopping_step"]) == (10, 30, 10)
    assert m["early_stopping_gain"] == pytest.approx(0.2)
    assert m["noisy_grad_share_early"] == pytest.approx(0.1)  # the records at 0 < step <= 10
    assert m["noisy_grad_share_late"] == pytest.approx(0.7)
    assert m["noisy_grad_share_growth"] == pytest.approx(0.6)


def test_curve_band_is_the_mean_with_a_t_interval_per_column():
    values = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    mean, low, high = curve_band(values)
    half = 4.302653 / math.sqrt(3)  # t_{0.975, 2} · s / √n with s = 1
    assert mean.tolist() == [1.0, 1.0]
    assert low[0] == pytest.approx(1 - half) and high[0] == pytest.approx(1 + half) and low[1] == high[1] == 1.0
    assert np.isnan(curve_band(values[:1])[1]).all()


def test_tracker_does_not_change_training():
    from overparam.config import RunConfig
    from overparam.run import run_one

    config = RunConfig.from_dict({"data": {"name": "mnist1d", "n_train": 100, "n_test": 40, "label_noise": 0.4,
                                           "seed": 0},
                                  "model": {"name": "mlp", "width": 16, "depth": 1},
                                  "train": {"optimizer": "sgd", "lr": 0.2, "momentum": 0.0, "batch_size": 25,
                                            "steps": 8}})
    tracker = Tracker("cross_entropy", 0.5, 50, 0, 4096)
    tracked = run_one(config, callbacks=[Callback(tracker, every=2)], quiet=True)
    plain = run_one(config, quiet=True)
    for a, b in zip(tracked.model.parameters(), plain.model.parameters()):
        assert torch.equal(a, b)
    assert tracker.series["step"] == [0, 2, 4, 6, 8]
    # the tracker's clean/noisy accuracies recombine into the loop's own train accuracy
    f = len(tracked.dataset.noisy_indices) / tracked.dataset.n_train
    combined = (1 - f) * tracker.series["clean_train_acc"][-1] + f * tracker.series["noisy_train_acc"][-1]
    assert combined == pytest.approx(tracked.metrics["train_acc"])
    assert tracker.series["test_acc"][-1] == pytest.approx(tracked.metrics["test_acc"])


def _row(seed, noise, metrics):
    return {"status": "done", "seed": seed, "metrics": {"n_test": 1000, **metrics},
            "config": {"params": {"run": {}, "label_noise": noise, "validation_fraction": 0.5}}}


def _synthetic_rows(seeds=5):
    rows = []
    for seed in range(seeds):
        base = {"last_step": 100, "early_stopping_step": 40, "final_heldout_acc": 0.5,
                "final_clean_train_acc": 1.0, "clean_fit_step": 40 + seed}
        rows.append(_row(seed, 0.0, {**base, "early_stopping_acc": 0.5 + 0.001 * seed,
                                     "early_stopping_gain": 0.001 * seed}))
        rows.append(_row(seed, 0.4, {
            **base, "noisy_fit_step": None if seed == 0 else 80 + seed, "final_noisy_train_acc": 0.9,
            "early_stopping_acc": 0.6 + 0.01 * seed, "early_stopping_gain": 0.1 + 0.01 * seed,
            "noisy_grad_share_early": 0.2 + 0.01 * seed, "noisy_grad_share_late": 0.6,
            "noisy_grad_share_growth": 0.4 - 0.01 * seed, "noisy_loss_share_early": 0.5,
            "grad_noisy_fraction": 0.4}))
    return rows


def test_claims_from_synthetic_rows():
    config = STUDY.resolve("tiny")
    rows = _synthetic_rows()
    (section,) = STUDY.summarize(rows, config)
    claims = {c.id: c for c in section.claims}
    assert list(claims) == ["label_noise.noisy_fitted_late", "label_noise.early_stopping_helps",
                            "label_noise.early_stopping_gain_grows", "label_noise.noisy_weight_small_early",
                            "label_noise.noisy_weight_grows"]
    assert all(c.verdict == "reproduced" and c.n_seeds == 5 and c.paper_value is None for c in claims.values())
    # seed 0 never fitted its noisy labels: counted with its last step (100); the geometric mean of the ratios
    late = claims["label_noise.noisy_fitted_late"]
    assert late.measured == pytest.approx(np.exp(np.mean(np.log([100 / 40, 81 / 41, 82 / 42, 83 / 43, 84 / 44]))))
    assert late.ci_method == "log-t" and late.details["noisy_never_fitted"] == 1 and late.source == "Arpit et al. 2017"
    assert claims["label_noise.noisy_weight_small_early"].measured == pytest.approx(0.22 - 0.4)
    # accuracy effects on the 500 held-out examples (1000 test examples, half for validation)
    helps, grows = claims["label_noise.early_stopping_helps"], claims["label_noise.early_stopping_gain_grows"]
    se_noisy, se_clean = math.sqrt((0.62 * 0.38 + 0.25) / 500), math.sqrt((0.502 * 0.498 + 0.25) / 500)
    assert helps.test_examples == grows.test_examples == 500
    assert helps.binomial_se == pytest.approx(se_noisy) and grows.binomial_se == pytest.approx(math.hypot(se_noisy,
                                                                                                         se_clean))
    assert "1 never: last step" in section.text
    # a clean set never fitted leaves the ratio unknown: that seed drops out
    for r in rows:
        if r["seed"] < 4:
            r["metrics"]["clean_fit_step"] = None
    (section,) = STUDY.summarize(rows, config)
    ratio = next(c for c in section.claims if c.id == "label_noise.noisy_fitted_late")
    assert ratio.n_seeds == 1 and ratio.verdict == "inconclusive"


def test_a_gain_within_two_binomial_errors_is_not_decided():
    """A gain of 0.02-0.024 in every seed has a t-interval far above 0, but 500 held-out examples
    at accuracy ~0.5 have a binomial SE of ~0.032 on the difference: the direction is undecided."""
    rows = _synthetic_rows()
    for r in rows:
        if r["config"]["params"]["label_noise"] > 0:
            seed = r["seed"]
            r["metrics"].update(early_stopping_acc=0.52 + 0.001 * seed, early_stopping_gain=0.02 + 0.001 * seed)
    (section,) = STUDY.summarize(rows, STUDY.resolve("tiny"))
    helps = next(c for c in section.claims if c.id == "label_noise.early_stopping_helps")
    assert helps.ci[0] > 0.015 and 2 * helps.binomial_se > helps.measured
    assert (helps.direction, helps.verdict, helps.reason) == ("undecided", "inconclusive",
                                                              "within 2 binomial SE of the test set")


@pytest.mark.parametrize("override, match", [
    ({"label_noise": [0.0]}, "at least one fraction > 0"),
    ({"label_noise": [0.2, 0.2]}, "without repeats"),
    ({"label_noise": [0.2, 1.0]}, r"\[0, 1\)"),
    ({"data": {"name": "mnist1d", "label_noise": 0.2}}, "not data.label_noise"),
    ({"fit_threshold": 0.0}, "fit_threshold"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"record_every": 0}, "record_every"),
    ({"grad_examples": 1}, "grad_examples"),
    ({"train": {"optimizer": "rmsprop"}}, "rmsprop"),
    ({"noise": [0.2]}, "no config key"),
])
def test_bad_configs(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=override)


def test_presets_resolve():
    for preset in ("tiny", "quick", "paper"):
        STUDY.resolve(preset)


def test_tiny_study_end_to_end(tmp_path):
    from overparam.sweep.execute import run_sweep
    from overparam.sweep.report import build_report
    from overparam.sweep.store import ResultsStore

    study = get_study("label_noise")
    summary = run_sweep(study, study.resolve("tiny"), tmp_path, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 4
    with ResultsStore(tmp_path) as store:
        rows = store.runs("label_noise", curves=True)
    noisy = [r for r in rows if r["config"]["params"]["label_noise"] == 0.4]
    assert len(noisy) == 2 and all(r["metrics"]["num_noisy_labels"] == 80 for r in noisy)
    for r in noisy:
        curves = r["curves"]
        for name in ("tracked_noisy_train_acc", "tracked_clean_train_acc"):
            assert [s for s, _ in curves[name]] == [0, 4, 8, 12]
            assert all(0 <= v <= 1 for _, v in curves[name])
        assert 0.2 < r["metrics"]["grad_noisy_fraction"] < 0.6
        assert "series" not in r["metrics"]  # the tracked measures are stored as curves only
    paths = build_report(tmp_path)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == ["label_noise.noisy_fitted_late", "label_noise.early_stopping_helps",
                                         "label_noise.early_stopping_gain_grows",
                                         "label_noise.noisy_weight_small_early", "label_noise.noisy_weight_grows"]
    assert all(c["verdict"] == "inconclusive" and c["reason"] == "n < 5" for c in claims)  # 2 seeds
    assert claims[1]["test_examples"] == 50 and claims[1]["binomial_se"] > 0  # 100 test examples, half held out
    assert [p.name for p in paths.figures] == ["label_noise_fitting.png", "label_noise_weighting.png"]
