"""The training loop: learning, determinism, exact full-batch GD, divergence, schedules, SAM."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from overparam import data
from overparam.config import RunConfig
from overparam.data.base import Dataset
from overparam.errors import ConfigError
from overparam.run import run_one
from overparam.train import Callback, TrainConfig, evaluate, fit, load_checkpoint, lr_factor, save_checkpoint
from overparam.train.loop import loss_function


def regression_data(n=64, d=5, seed=0, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=dtype)
    w = torch.randn(d, generator=gen, dtype=dtype)
    y = x @ w
    return Dataset("toy", x, y, x[:16].clone(), y[:16].clone(), None)


def test_mnist1d_mlp_learns_well_above_chance():
    config = RunConfig.from_dict({
        "data": {"name": "mnist1d"},
        "model": {"name": "mlp", "width": 256, "depth": 2},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 100, "epochs": 15},
    })
    record = run_one(config, device="cpu", quiet=True)
    assert record.status == "done"
    assert record.metrics["test_acc"] > 0.45  # chance is 0.10; an MLP reaches ~0.6 in the MNIST-1D paper
    assert record.metrics["train_acc"] > record.metrics["test_acc"]
    assert record.metrics["steps"] == 15 * 40


def test_training_is_bit_identical_for_the_same_seed_and_differs_across_seeds():
    base = {"data": {"name": "mnist1d", "n_train": 400}, "model": {"name": "mlp", "width": 32, "depth": 1},
            "train": {"lr": 0.1, "batch_size": 32, "epochs": 2}}
    a = run_one(RunConfig.from_dict({**base, "seed": 3}), device="cpu", quiet=True)
    b = run_one(RunConfig.from_dict({**base, "seed": 3}), device="cpu", quiet=True)
    c = run_one(RunConfig.from_dict({**base, "seed": 4}), device="cpu", quiet=True)
    for (name, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        assert torch.equal(p, q), name
    assert a.curves["batch_loss"] == b.curves["batch_loss"]
    assert a.curves["batch_loss"] != c.curves["batch_loss"]


def test_data_order_seed_is_independent_of_init_seed():
    ds = regression_data()
    torch.manual_seed(0)
    model = nn.Linear(5, 1).double()
    init = [p.detach().clone() for p in model.parameters()]
    config = TrainConfig(optimizer="sgd", lr=0.05, loss="mse", batch_size=8, epochs=1, data_seed=7)
    r1 = fit(model, ds, config, seed=1)
    with torch.no_grad():
        for p, q in zip(model.parameters(), init):
            p.copy_(q)
    r2 = fit(model, ds, config, seed=2)  # different run seed, same data_seed -> same batches
    assert r1.curves["batch_loss"] == r2.curves["batch_loss"]


def test_full_batch_gd_step_equals_the_closed_form_least_squares_gradient():
    """One GD step on MSE for a linear model: w1 = w0 - lr * (2/n) X^T (X w0 - y), computed by
    hand; the loop accumulates over chunks of 7 examples (n=64 is not a multiple)."""
    ds = regression_data()
    model = nn.Linear(5, 1, bias=False).double()
    w0 = model.weight.detach().clone().reshape(-1)
    config = TrainConfig(optimizer="gd", lr=0.1, momentum=0.0, loss="mse", steps=1, gd_chunk_size=7)
    fit(model, ds, config)
    x, y = ds.x_train, ds.y_train
    expected = w0 - 0.1 * (2.0 / len(x)) * x.T @ (x @ w0 - y)
    torch.testing.assert_close(model.weight.detach().reshape(-1), expected, rtol=1e-12, atol=1e-12)


def test_gd_converges_to_least_squares_solution():
    ds = regression_data(n=64, d=5)
    model = nn.Linear(5, 1, bias=False).double()
    fit(model, ds, TrainConfig(optimizer="gd", lr=0.2, momentum=0.0, loss="mse", steps=400))
    solution = torch.linalg.lstsq(ds.x_train, ds.y_train.unsqueeze(1)).solution.reshape(-1)
    torch.testing.assert_close(model.weight.detach().reshape(-1), solution, rtol=1e-8, atol=1e-8)


def test_divergence_ends_the_run_cleanly_and_keeps_the_record():
    ds = regression_data()
    model = nn.Linear(5, 1).double()
    result = fit(model, ds, TrainConfig(optimizer="gd", lr=50.0, loss="mse", steps=500))
    assert result.status == "diverged"
    assert result.steps < 500 and result.divergence is not None
    assert len(result.curves["batch_loss"]) >= result.steps  # the curve up to the blow-up is kept
    assert "train_loss" in result.curves


def test_divergence_through_the_run_api_is_a_status_not_an_exception():
    config = RunConfig.from_dict({"data": {"name": "mnist1d", "n_train": 200},
                                  "model": {"name": "mlp", "width": 64, "depth": 2},
                                  "train": {"lr": 1e4, "batch_size": 50, "epochs": 5}})
    record = run_one(config, device="cpu", quiet=True)
    assert record.status == "diverged"
    assert record.metrics["divergence"]


def test_lr_schedules_and_warmup():
    assert lr_factor(0, 100, "constant") == 1.0
    assert [lr_factor(s, 100, "step", milestones=(0.5, 0.75), gamma=0.1) for s in (49, 50, 74, 75)] == \
        pytest.approx([1.0, 0.1, 0.1, 0.01])
    assert lr_factor(0, 100, "cosine") == pytest.approx(1.0)
    assert lr_factor(50, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert [lr_factor(s, 100, "constant", warmup_steps=4) for s in range(5)] == pytest.approx([0.25, 0.5, 0.75, 1, 1])


def test_lr_scaling_rules():
    ds = regression_data(n=64)
    for rule, expected in (("none", 0.1), ("linear", 0.1 * 32 / 8), ("sqrt", 0.1 * math.sqrt(32 / 8))):
        config = TrainConfig(lr=0.1, batch_size=32, base_batch_size=8, lr_scaling=rule, loss="mse", steps=1)
        result = fit(nn.Linear(5, 1).double(), ds, config)
        assert result.lr == pytest.approx(expected)


def test_sam_step_uses_the_gradient_at_the_ascent_point():
    """For f(w) = 0.5 w^T A w (MSE of a linear model on fixed data) the SAM step is
    w1 = w0 - lr * grad(w0 + rho g0/|g0|), checked against the formula."""
    ds = regression_data(n=32)
    model = nn.Linear(5, 1, bias=False).double()
    w0 = model.weight.detach().clone().reshape(-1)
    x, y = ds.x_train, ds.y_train

    def grad(w):
        return (2.0 / len(x)) * x.T @ (x @ w - y)

    config = TrainConfig(optimizer="sam", lr=0.05, sam_rho=0.1, loss="mse", batch_size=32, steps=1)
    fit(model, ds, config)
    g0 = grad(w0)
    expected = w0 - 0.05 * grad(w0 + 0.1 * g0 / g0.norm())
    torch.testing.assert_close(model.weight.detach().reshape(-1), expected, rtol=1e-10, atol=1e-10)


def test_callbacks_run_at_the_chosen_steps_and_can_record():
    ds = regression_data()
    seen = []

    def measure(state):
        seen.append(state.step)
        state.record("weight_norm", sum(p.norm() ** 2 for p in state.model.parameters()).sqrt().item())

    result = fit(nn.Linear(5, 1).double(), ds, TrainConfig(loss="mse", batch_size=16, steps=10),
                 callbacks=[Callback(measure, steps=(0, 3), every=5)])
    assert seen == [0, 3, 5, 10]
    assert [s for s, _ in result.curves["weight_norm"]] == [0, 3, 5, 10]


def test_training_to_a_target_stops_at_the_first_check_below_it():
    """The run stops at the first check (every target_every steps, and at the evaluations) whose
    whole-training-set loss is <= the target; the same run without a target passes through the
    same state at that step, so the stopped model equals it there; at_end callbacks run then."""
    ds = regression_data()
    torch.manual_seed(0)
    init = nn.Linear(5, 1).double()
    free = fit(copy.deepcopy(init), ds, TrainConfig(loss="mse", lr=0.05, batch_size=16, steps=200, eval_every=5),
               seed=3)
    first = next(s for s, v in free.curves["train_loss"] if v <= 0.05)
    ended = []
    result = fit(copy.deepcopy(init), ds, TrainConfig(loss="mse", lr=0.05, batch_size=16, steps=200, eval_every=10,
                                        target_loss=0.05, target_every=5), seed=3,
                 callbacks=[Callback(lambda state: ended.append(state.step), at_end=True)])
    assert result.target_reached is True and result.target_step == result.steps == first
    assert result.metrics["train_loss"] <= 0.05 < [v for s, v in free.curves["train_loss"] if s == first - 5][0]
    assert ended == [first]
    # a cap below the crossing: a miss, recorded as such
    missed = fit(copy.deepcopy(init), ds, TrainConfig(loss="mse", lr=0.05, batch_size=16, steps=first - 5,
                                                            eval_every=1000, target_loss=0.05, target_every=5),
                 seed=3)
    assert (missed.status, missed.target_reached, missed.target_step, missed.steps) == ("done", False, None, first - 5)
    # no target: None
    assert free.target_reached is None and free.target_step is None


def test_a_run_already_at_its_target_takes_no_step_and_accuracy_targets_work():
    ds = data.load("mnist1d", n_train=200, n_test=100, seed=0, quiet=True)
    config = RunConfig.from_dict({"data": {"name": "mnist1d", "n_train": 200, "n_test": 100},
                                  "model": {"name": "mlp", "width": 64, "depth": 1},
                                  "train": {"lr": 0.1, "batch_size": 20, "epochs": 50, "target_acc": 0.9,
                                            "target_every": 10}})
    record = run_one(config, device="cpu", quiet=True)
    assert record.metrics["reached_target"] is True and record.metrics["train_acc"] >= 0.9
    assert record.metrics["target_step"] == record.metrics["steps"] < 500
    assert ds.n_train == 200
    zero = fit(nn.Linear(5, 1).double(), regression_data(), TrainConfig(loss="mse", steps=10, target_loss=1e6))
    assert (zero.steps, zero.target_step, zero.target_reached) == (0, 0, True)


def test_early_stopping_step_is_the_minimum_test_loss_evaluation():
    ds = data.load("mnist1d", n_train=200, label_noise=0.5, seed=0)
    config = RunConfig.from_dict({"data": {"name": "mnist1d", "n_train": 200, "label_noise": 0.5},
                                  "model": {"name": "mlp", "width": 256, "depth": 2},
                                  "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 50, "epochs": 40}})
    record = run_one(config, device="cpu", quiet=True)
    test_loss = record.curves["test_loss"]
    best_step = min(test_loss, key=lambda sv: sv[1])[0]
    assert record.metrics["early_stopping_step"] == best_step
    assert ds.noisy_indices.numel() == 100


def test_evaluate_matches_a_single_pass_and_restores_mode():
    model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)).double()
    model.train()
    x = torch.randn(50, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (50,))
    loss_fn = loss_function("cross_entropy", 3)
    chunked = evaluate(model, x, y, loss_fn, batch_size=7)
    assert model.training
    model.eval()
    with torch.no_grad():
        out = model(x)
    assert chunked["loss"] == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-12)
    assert chunked["acc"] == pytest.approx((out.argmax(1) == y).double().mean().item())


def test_mse_on_classification_uses_one_hot_targets():
    out = torch.tensor([[0.5, 0.2], [0.1, 0.9]])
    y = torch.tensor([0, 1])
    expected = ((0.5 - 1) ** 2 + 0.2**2 + 0.1**2 + (0.9 - 1) ** 2) / 4
    assert loss_function("mse", 2)(out, y).item() == pytest.approx(expected)


@pytest.mark.parametrize("bad, match", [
    ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
    ({"lr": -1.0}, "lr must be a positive"),
    ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
    ({"epochs": 3, "steps": 100}, "set one of epochs and steps, not both"),
    ({"schedule": "exp"}, "unknown lr schedule 'exp'"),
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"lr_scaling": "cubic"}, "unknown lr scaling rule 'cubic'"),
    ({"target_loss": 0.0}, "target_loss must be a finite number > 0"),
    ({"target_loss": "0.01"}, "target_loss must be a finite number > 0 .* got '0.01'"),
    ({"target_acc": 1.5}, r"target_acc must be a fraction in \(0, 1\]"),
    ({"target_every": 10}, "target_every=10 needs target_loss or target_acc"),
])
def test_bad_train_config_is_a_clear_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)


def test_checkpoint_round_trip_without_pickle(tmp_path):
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 4)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "ck", model, meta={"step": 7}, optimizer=optimizer)
    clone = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    clone_opt = torch.optim.SGD(clone.parameters(), lr=0.1, momentum=0.9)
    meta = load_checkpoint(tmp_path / "ck", clone, clone_opt)
    assert meta == {"step": 7}
    for p, q in zip(model.parameters(), clone.parameters()):
        assert torch.equal(p, q)
    assert torch.equal(clone_opt.state_dict()["state"][0]["momentum_buffer"],
                       optimizer.state_dict()["state"][0]["momentum_buffer"])


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_checkpoint_refuses_a_pickled_optimizer_file(tmp_path):
    import pickle

    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "ck", model, optimizer=optimizer)

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, ("echo pwned",))

    with open(tmp_path / "ck" / "optimizer.pt", "wb") as handle:
        pickle.dump(Exploit(), handle)
    from overparam.errors import DataError

    with pytest.raises(DataError, match="cannot read optimizer state"):
        load_checkpoint(tmp_path / "ck", model, optimizer)
