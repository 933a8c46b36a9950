"""Explicit gradient regularization in the train loop (TrainConfig.grad_penalty = λ): each step
descends L_B + λ|∇L_B|², whose gradient is ∇L_B + 2λ H_B ∇L_B; checked against a closed form
(least squares) and a dense float64 Hessian (a tanh MLP with cross-entropy)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from overparam.config import RunConfig
from overparam.data.base import Dataset
from overparam.errors import ConfigError
from overparam.run import run_batch, run_one
from overparam.train import TrainConfig, ensemble_unsupported, fit

F64 = torch.float64


def regression_data(n=40, d=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=F64)
    y = x @ torch.randn(d, generator=gen, dtype=F64) + 0.3 * torch.randn(n, generator=gen, dtype=F64)
    return Dataset("toy", x, y, x[:8].clone(), y[:8].clone(), None)


@pytest.mark.parametrize("optimizer, chunk", [("gd", 7), ("gd", 4096), ("sgd", 4096)])
def test_one_penalized_step_on_least_squares_matches_the_closed_form(optimizer, chunk):
    """L(w) = (1/n)|Xw − y|²: ∇L = (2/n)Xᵀ(Xw − y), H = (2/n)XᵀX, so one step is
    w − lr (∇L + 2λ H∇L). 'gd' over chunks of 7 (n = 40: the exact chunked path), in one chunk,
    and 'sgd' with the whole set as its minibatch (the mean loss does not depend on the order)."""
    ds = regression_data()
    torch.manual_seed(0)
    model = nn.Linear(5, 1, bias=False).double()
    w0 = model.weight.detach().clone().reshape(-1)
    lr, penalty = 0.1, 0.7
    config = TrainConfig(optimizer=optimizer, lr=lr, momentum=0.0, loss="mse", steps=1, batch_size=40,
                         gd_chunk_size=chunk, grad_penalty=penalty)
    fit(model, ds, config)
    x, y, n = ds.x_train, ds.y_train, len(ds.x_train)
    g = 2 / n * x.T @ (x @ w0 - y)
    h = 2 / n * x.T @ x
    expected = w0 - lr * (g + 2 * penalty * h @ g)
    torch.testing.assert_close(model.weight.detach().reshape(-1), expected, rtol=1e-12, atol=1e-12)


def test_penalized_gradient_of_a_tanh_mlp_matches_a_dense_hessian():
    """One full-batch GD step (chunked: 30 examples in chunks of 8) on cross-entropy equals
    θ − lr (g + 2λ H g) with H the dense Hessian of the flat parameter vector."""
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(30, 4, generator=gen, dtype=F64), torch.randint(0, 3, (30,), generator=gen)
    ds = Dataset("toy", x, y, x[:5].clone(), y[:5].clone(), 3)
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    shapes = [p.shape for p in model.parameters()]
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta):
        pieces, offset = [], 0
        for shape in shapes:
            size = shape.numel()
            pieces.append(theta[offset:offset + size].view(shape))
            offset += size
        w1, b1, w2, b2 = pieces
        return nn.functional.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)

    g = torch.autograd.functional.jacobian(loss, theta0)
    h = torch.autograd.functional.hessian(loss, theta0)
    lr, penalty = 0.05, 0.3
    fit(model, ds, TrainConfig(optimizer="gd", lr=lr, momentum=0.0, steps=1, gd_chunk_size=8, grad_penalty=penalty))
    theta1 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(theta1, theta0 - lr * (g + 2 * penalty * h @ g), rtol=1e-10, atol=1e-12)


def test_zero_penalty_changes_neither_training_nor_run_keys():
    ds = regression_data()
    runs = []
    for config in (TrainConfig(optimizer="sgd", lr=0.05, loss="mse", batch_size=8, epochs=2),
                   TrainConfig(optimizer="sgd", lr=0.05, loss="mse", batch_size=8, epochs=2, grad_penalty=0.0)):
        torch.manual_seed(0)
        model = nn.Linear(5, 1).double()
        runs.append((fit(model, ds, config).curves["batch_loss"], model.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])
    base = RunConfig.from_dict({"train": {"lr": 0.1}})
    assert base.run_key() == RunConfig.from_dict({"train": {"lr": 0.1, "grad_penalty": 0.0}}).run_key()
    assert base.run_key() != RunConfig.from_dict({"train": {"lr": 0.1, "grad_penalty": 0.01}}).run_key()


def test_penalized_runs_train_one_at_a_time_not_in_the_ensemble():
    """fit_ensemble has no double backprop: it reports the penalty as unsupported, and run_batch
    trains such runs one at a time (each equal to its run_one), on a trajectory the penalty
    changes."""
    base = {"data": {"name": "mnist1d", "n_train": 200, "n_test": 50, "seed": 0},
            "model": {"name": "mlp", "width": 16, "depth": 1},
            "train": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "batch_size": 50, "epochs": 2,
                      "grad_penalty": 0.05}}
    configs = [RunConfig.from_dict({**base, "seed": s}) for s in (0, 1)]
    assert "grad_penalty" in ensemble_unsupported([nn.Linear(2, 1)], configs[0].train)
    records = run_batch(configs, device="cpu", quiet=True)
    assert all("batched_with" not in r.provenance for r in records)
    single = run_one(configs[1], device="cpu", quiet=True)
    assert records[1].curves["batch_loss"] == single.curves["batch_loss"]
    plain = run_one(RunConfig.from_dict({**base, "seed": 1, "train": {**base["train"], "grad_penalty": 0.0}}),
                    device="cpu", quiet=True)
    assert plain.curves["batch_loss"] != single.curves["batch_loss"]


@pytest.mark.parametrize("bad, match", [
    ({"grad_penalty": -0.1}, "grad_penalty must be a finite number >= 0"),
    ({"grad_penalty": float("nan")}, "grad_penalty must be a finite number >= 0"),
    ({"grad_penalty": "big"}, "grad_penalty must be a finite number >= 0"),
    ({"grad_penalty": 0.1, "optimizer": "sam"}, "not implemented for optimizer 'sam'"),
])
def test_bad_penalty_is_a_clear_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**bad)
