"""The lr_eos study: tiny preset end to end, the sharpness tracker against closed-form and dense
float64 Hessians, the late-phase statistics on hand-made trajectories, and config errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from overparam.data.base import Dataset
from overparam.errors import ConfigError
from overparam.models import build
from overparam.studies import get_study
from overparam.studies.lr_eos import STUDY, SharpnessTracker, edge_statistics
from overparam.sweep.execute import run_sweep
from overparam.sweep.report import build_report
from overparam.sweep.store import ResultsStore
from overparam.train import Callback, TrainConfig, fit, loss_function

IDS = ["lr_eos.sharpness_vs_test_error", "lr_eos.sharpness_falls_with_lr", "lr_eos.eos_ratio",
       "lr_eos.eos_loss_decreases"]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("lr_eos")
    summary = run_sweep(STUDY, STUDY.resolve("tiny"), out, progress=False)
    assert summary.failures == [] and summary.counts["done"] == 3 * 2 + 2 * 1  # (a) lrs x seeds + (b) lrs x seeds
    return out


def test_tiny_study_end_to_end(tiny_store):
    assert get_study("lr_eos") is STUDY
    with ResultsStore(tiny_store) as store:
        rows = store.runs("lr_eos")
        curves = {r["run_key"]: store.curves("lr_eos", r["run_key"]) for r in rows}
    sweep = [r for r in rows if r["config"]["params"]["kind"] == "lr"]
    eos = [r for r in rows if r["config"]["params"]["kind"] == "eos"]
    assert sorted({r["metrics"]["lr"] for r in sweep}) == [0.01, 0.1, 0.5] and len(eos) == 2
    for r in sweep:
        m = r["metrics"]
        assert m["lambda_max"] > 0 and m["lr_times_lambda_max"] == pytest.approx(m["lr"] * m["lambda_max"])
        assert m["test_error"] == pytest.approx(1 - m["test_acc"]) and m["measure_examples"] == 100
        assert r["provenance"]["batched_with"] == 6  # every LR and seed share the data: one batched model
    for r in eos:
        m, c = r["metrics"], curves[r["run_key"]]
        assert r["config"]["params"]["run"]["train"]["optimizer"] == "gd" and m["steps"] == 150
        assert [s for s, _ in c["sharpness"]] == list(range(0, 151, 10)) and all(v > 0 for _, v in c["sharpness"])
        assert [s for s, _ in c["batch_loss"]] == list(range(1, 151)) and m["tracking_measurements"] == 16
        assert (m["sharpness_initial"], m["sharpness_final"]) == (c["sharpness"][0][1], c["sharpness"][-1][1])
        assert not {"sharpness", "sharpness_steps", "loss_by_step"} & set(m)  # the trajectories are curves only
        assert "batched_with" not in r["provenance"]  # a callback run trains alone
    paths = build_report(tiny_store)
    claims = json.loads(paths.claims.read_text())
    assert [c["id"] for c in claims] == IDS
    assert all(c["verdict"] in ("reproduced", "not_reproduced", "inconclusive") for c in claims)
    assert sorted(p.name for p in paths.figures) == ["lr_eos_lr_sweep.png", "lr_eos_sharpness.png"]


def _dataset(n: int, d: int, k: int, seed: int) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=gen)
    return Dataset("toy", x, y, x[:4], y[:4], k)


def test_tracker_matches_the_closed_form_sharpness_of_a_linear_model():
    """A linear model f(x) = W x + b under the mean MSE over n·k entries has the constant Hessian
    (2/(n k)) I_k ⊗ X̃ᵀX̃ with X̃ = [X, 1], so λ_max = (2/(n k)) λ_max(X̃ᵀX̃) at every step."""
    n, d, k = 30, 6, 3
    data = _dataset(n, d, k, seed=0)
    model = build("mlp", (d,), k, width=4, depth=0).double()
    tracker = SharpnessTracker(tol=1e-6, max_hvps=20)
    fit(model, data, TrainConfig(optimizer="gd", loss="mse", lr=0.1, momentum=0.0, steps=6, eval_every=6),
        callbacks=[Callback(tracker, every=2)])
    xt = np.hstack([data.x_train.numpy(), np.ones((n, 1))])
    expected = 2 / (n * k) * np.linalg.eigvalsh(xt.T @ xt)[-1]
    assert [s for s, _ in tracker.points] == [0, 2, 4, 6]
    for _, value in tracker.points:
        assert value == pytest.approx(expected, rel=1e-6)


def test_warm_started_tracking_matches_a_dense_float64_hessian():
    """Along GD on a small tanh network, each tracked λ_max equals the top eigenvalue of the dense
    Hessian of the full-batch loss (torch.func.hessian of the flattened parameters, eigvalsh)."""
    n, d, k = 24, 5, 3
    data = _dataset(n, d, k, seed=1)
    model = build("mlp", (d,), k, width=6, depth=2, activation="tanh").double()
    loss = loss_function("mse", k)
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    dense = []

    def dense_top(state):
        flat = torch.cat([p.detach().reshape(-1) for p in state.model.parameters()])

        def loss_of(vector):
            pieces, start = {}, 0
            for name, shape in zip(names, shapes):
                size = math.prod(shape)
                pieces[name] = vector[start:start + size].reshape(shape)
                start += size
            return loss(functional_call(state.model, pieces, (data.x_train,)), data.y_train)

        dense.append(float(torch.linalg.eigvalsh(torch.func.hessian(loss_of)(flat))[-1]))

    tracker = SharpnessTracker(tol=1e-8, max_hvps=32)
    fit(model, data, TrainConfig(optimizer="gd", loss="mse", lr=0.5, momentum=0.0, steps=20, eval_every=20),
        callbacks=[Callback(tracker, every=5), Callback(dense_top, every=5)])
    assert len(tracker.points) == len(dense) == 5
    for (_, tracked), exact in zip(tracker.points, dense):
        assert tracked == pytest.approx(exact, rel=1e-6)


def test_edge_statistics_on_hand_made_trajectories():
    lr, total = 0.5, 60
    steps = [0, 10, 20, 30, 40, 50]
    ratios = [1.0, 1.5, 1.85, 2.1, 1.95, 2.05]  # crosses 1.8 from below at step 20
    losses = [1.0 - 0.01 * t for t in range(total)]
    losses[25] = losses[24] + 0.001  # the only two rises in the late phase t >= 20
    losses[40] = losses[39] + 0.002
    stats = edge_statistics(steps, [r / lr for r in ratios], losses, lr, total)
    assert stats.reached and stats.onset_step == 20 and stats.late_measurements == 4
    assert stats.initial_ratio == pytest.approx(1.0)
    assert stats.late_ratio == pytest.approx((1.85 + 2.1 + 1.95 + 2.05) / 4)
    assert stats.hover_fraction == pytest.approx(3 / 4)  # 2.1, 1.95, 2.05 > 1.9
    late = losses[20:]  # 40 steps: tenths of 4
    assert stats.loss_ratio == pytest.approx(np.mean(late[-4:]) / np.mean(late[:4]))
    assert stats.loss_increase_fraction == pytest.approx(2 / 39)

    # the crossing leaves less than a fifth of the run: reported, not reached
    late_crossing = edge_statistics(steps, [r / lr for r in [1.0, 1.2, 1.4, 1.6, 1.7, 1.9]], losses, lr, total)
    assert not late_crossing.reached and late_crossing.onset_step == 50 and math.isnan(late_crossing.late_ratio)
    # never within 10% of 2/η
    never = edge_statistics(steps, [r / lr for r in [1.0, 1.2, 1.4, 1.5, 1.6, 1.7]], losses, lr, total)
    assert not never.reached and never.onset_step is None and math.isnan(never.loss_ratio)
    # starting above the edge (a catapult) is not the onset; the return from below is
    catapult = edge_statistics(steps, [r / lr for r in [2.6, 1.2, 1.9, 2.0, 2.0, 2.0]], losses, lr, total)
    assert catapult.initial_ratio == pytest.approx(2.6) and catapult.onset_step == 20
    assert catapult.late_ratio == pytest.approx((1.9 + 2.0 * 3) / 4)


def test_presets_resolve_and_quick_grid_validates():
    for preset in ("tiny", "quick", "paper"):
        STUDY.resolve(preset)
    specs = STUDY.grid(STUDY.resolve("quick"))
    kinds = [s.params["kind"] for s in specs]
    assert kinds.count("lr") == 7 * 3 and kinds.count("eos") == 4 * 2
    assert len({s.key for s in specs}) == len(specs)
    assert STUDY.batch_key(specs[0]) is not None and STUDY.batch_key(specs[-1]) is None
    assert len({STUDY.batch_key(s) for s in specs if s.params["kind"] == "lr"}) == 1


@pytest.mark.parametrize("override, match", [
    ("parts=[lr, sgd]", "unknown part 'sgd'"),
    ("lrs=[0.1]", "lrs needs at least 2"),
    ("eos_lrs=[-0.5]", "each of eos_lrs must be a positive"),
    ("train.lr=0.1", "not train.lr"),
    ("train.optimizer=adam", "train.optimizer must be 'sgd'"),
    ("eos_train.momentum=0.9", "eos_train.momentum must be 0.0"),
    ("eos_train.optimizer=sgd", "eos_train.optimizer must be 'gd'"),
    ("eos_train.loss=cross_entropy", "eos_train.loss must be 'mse'"),
    ("eos_train.schedule=cosine", "eos_train.schedule must be 'constant'"),
    ("track_every=1000", "eos_train.steps must be set and >= track_every"),
    ("eos_onset=1.5", r"eos_onset must be a number in \(0, 1\]"),
    ("eos_ratio_tolerance=0", "eos_ratio_tolerance must be a number in"),
])
def test_bad_configs(override, match):
    with pytest.raises(ConfigError, match=match):
        STUDY.resolve("tiny", overrides=[override])
