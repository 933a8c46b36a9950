"""Hessian eigenvalues, trace and density against dense float64 Hessians and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call

from overparam.errors import ConfigError
from overparam.measures.curvature import HessianOperator, hessian_eigenvalues, hessian_spectrum, hessian_trace

F64 = torch.float64


class Quadratic(nn.Module):
    """Outputs its parameter vector; with the loss below, L(θ) = ½ (θ − c)^T A (θ − c)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.randn(dim, dtype=F64))

    def forward(self, x):
        return self.theta.expand(len(x), -1)


def quadratic_problem(eigenvalues, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dim = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    a = q @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ q.T
    c = torch.randn(dim, generator=gen, dtype=F64)

    def loss_fn(out, y):
        d = out[0] - c
        return 0.5 * d @ a @ d

    x = torch.zeros(4, 1, dtype=F64)
    return Quadratic(dim), loss_fn, (x, torch.zeros(4)), a


def small_net_problem(n=40, seed=0, dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)
    x = torch.randn(n, 5, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=gen)
    return model, nn.functional.cross_entropy, x, y


def dense_hessian(model, loss_fn, x, y):
    """Independent oracle: torch.func.hessian of the full-data mean loss as a function of the
    flat parameter vector, in one batch."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(flat):
        params = {n: t.reshape(s) for n, t, s in zip(names, torch.split(flat, sizes), shapes)}
        return loss_fn(functional_call(model, params, (x,)), y)

    return torch.func.hessian(loss_of)(flat0)


def test_quadratic_top_eigenvalues_are_exact():
    spectrum = [10.0, 7.0, 3.0, 1.0, 0.5, -2.0, 0.1, 0.0]
    model, loss_fn, data, a = quadratic_problem(spectrum)
    result = hessian_eigenvalues(model, loss_fn, data, k=3, tol=1e-10)
    torch.testing.assert_close(result.values, torch.tensor([10.0, 7.0, 3.0], dtype=F64), rtol=1e-9, atol=0)
    assert result.converged
    for i in range(3):  # eigenvectors satisfy A v = λ v
        v = result.vectors[:, i]
        torch.testing.assert_close(a @ v, result.values[i] * v, rtol=0, atol=1e-8)


def test_small_network_top_k_matches_dense_hessian_with_uneven_batches():
    model, loss_fn, x, y = small_net_problem()
    exact = torch.linalg.eigvalsh(dense_hessian(model, loss_fn, x, y)).flip(0)[:4]
    batches = [(x[:30], y[:30]), (x[30:], y[30:])]  # 30 and 10 examples: must be weighted 3:1
    result = hessian_eigenvalues(model, loss_fn, batches, k=4, tol=1e-8)
    assert result.converged
    torch.testing.assert_close(result.values, exact, rtol=1e-6, atol=0)
    assert result.num_hvps == result.iterations  # residuals come from stored products
    dense = dense_hessian(model, loss_fn, x, y)
    for i in range(4):  # the reported residuals are the true ones
        v, lam = result.vectors[:, i], result.values[i]
        true = ((dense @ v - lam * v).norm() / lam.abs()).item()
        assert result.residuals[i].item() == pytest.approx(true, rel=1e-4, abs=1e-12)


def test_both_stopping_criteria_meet_the_requested_accuracy():
    model, loss_fn, x, y = small_net_problem(n=60, seed=2)
    exact = torch.linalg.eigvalsh(dense_hessian(model, loss_fn, x, y)).max().item()
    gap = hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-3, criterion="gap")
    residual = hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-3, criterion="residual")
    for result in (gap, residual):
        assert result.converged and abs(result.values[0].item() - exact) <= 1e-3 * exact
    # the residual criterion certifies |θ − λ| <= r: its reported residual covers the error
    assert abs(residual.values[0].item() - exact) <= residual.residuals[0].item() * exact * (1 + 1e-9)
    assert gap.num_hvps <= residual.num_hvps


def test_forward_over_reverse_equals_the_graph_hvp():
    model, loss_fn, x, y = small_net_problem()
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=F64)
    batches = [(x[:25], y[:25]), (x[25:], y[25:])]
    graph = HessianOperator(model, loss_fn, batches, method="graph").matvec(v)
    fwd = HessianOperator(model, loss_fn, batches, method="forward_over_reverse").matvec(v)
    torch.testing.assert_close(graph, fwd, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(graph, dense_hessian(model, loss_fn, x, y) @ v, rtol=1e-10, atol=1e-12)


def test_warm_start_from_the_top_eigenvector_converges_at_once():
    model, loss_fn, x, y = small_net_problem()
    cold = hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-6)
    warm = hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-6, v0=cold.vectors[:, 0])
    assert warm.converged and warm.num_hvps <= 3 < cold.num_hvps
    assert warm.values[0].item() == pytest.approx(cold.values[0].item(), rel=1e-6)


def test_runs_longer_than_one_buffer_chunk_of_32_steps():
    # regression: the basis buffer grew only at the top of a step, so step 32 wrote past its end
    spectrum = list(np.linspace(0.0, 1.0, 100))
    model, loss_fn, data, a = quadratic_problem(spectrum)
    result = hessian_eigenvalues(model, loss_fn, data, k=1, tol=1e-13, max_hvps=70, criterion="residual")
    assert result.iterations > 32
    assert result.values[0].item() == pytest.approx(1.0, rel=1e-4)


def test_budget_exhaustion_is_reported_not_hidden():
    model, loss_fn, x, y = small_net_problem()
    result = hessian_eigenvalues(model, loss_fn, (x, y), k=2, tol=1e-12, max_hvps=3)
    assert not result.converged and result.iterations == 3


def test_float32_model_agrees_with_float64_dense():
    model, loss_fn, x, y = small_net_problem(dtype=torch.float32)
    exact = torch.linalg.eigvalsh(dense_hessian(model.double(), loss_fn, x.double(), y)).max().item()
    model.float()
    result = hessian_eigenvalues(model, loss_fn, (x, y), tol=1e-4)
    assert result.values[0].item() == pytest.approx(exact, rel=1e-3)


def test_measures_have_no_side_effects():
    model, loss_fn, x, y = small_net_problem()
    model.train()
    sentinel = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, s in zip(model.parameters(), sentinel):
        p.grad = s.clone()
    before = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    hessian_eigenvalues(model, loss_fn, (x, y), k=2)
    hessian_trace(model, loss_fn, (x, y), num_hvps=9)
    hessian_spectrum(model, loss_fn, (x, y), num_steps=5)
    assert torch.equal(torch.rand(1), expected_next)  # global RNG untouched
    assert model.training
    for p, b, s in zip(model.parameters(), before, sentinel):
        assert torch.equal(p.detach(), b) and torch.equal(p.grad, s)


def test_trace_estimates_agree_with_the_dense_trace_within_their_standard_error():
    model, loss_fn, x, y = small_net_problem()
    exact = torch.trace(dense_hessian(model, loss_fn, x, y)).item()
    for method in ("hutchinson", "hutch++"):
        result = hessian_trace(model, loss_fn, (x, y), num_hvps=90, method=method, seed=1)
        assert abs(result.value - exact) < 4 * result.stderr + 1e-9, (method, result, exact)
        assert result.num_hvps == 90


def test_hutch_plus_plus_is_exact_for_a_low_rank_hessian():
    model, loss_fn, data, a = quadratic_problem([5.0, 3.0, 1.0] + [0.0] * 9)
    result = hessian_trace(model, loss_fn, data, num_hvps=12, method="hutch++")
    assert result.value == pytest.approx(9.0, rel=1e-10)  # rank 3 <= 12/3 probes: Q spans range(A)


def test_slq_with_full_lanczos_recovers_the_spectrum_and_its_moments():
    spectrum = [4.0, 2.5, 1.0, 0.5, -1.0, 0.2]
    model, loss_fn, data, a = quadratic_problem(spectrum)
    full = hessian_spectrum(model, loss_fn, data, num_steps=6, num_vectors=1, seed=3)
    np.testing.assert_allclose(np.sort(full.nodes[0]), np.sort(spectrum), rtol=1e-9, atol=1e-9)
    assert full.weights.sum() == pytest.approx(1.0)
    # Gaussian quadrature with m = 3 nodes is exact for v^T A^p v, p <= 5; averaged over many
    # random unit vectors it estimates tr(A^p)/P
    partial = hessian_spectrum(model, loss_fn, data, num_steps=3, num_vectors=400, seed=4)
    for p in (1, 2, 3):
        per_vector = (partial.weights * partial.nodes**p).sum(1)
        exact = np.mean(np.array(spectrum) ** p)
        assert abs(per_vector.mean() - exact) < 4 * per_vector.std() / math.sqrt(400)
    grid = np.linspace(-3, 6, 2001)
    assert np.trapezoid(full.density(grid, sigma=0.1), grid) == pytest.approx(1.0, abs=1e-3)


def test_bad_arguments_are_named():
    model, loss_fn, x, y = small_net_problem()
    with pytest.raises(ConfigError, match="k must be an integer >= 1, got 0"):
        hessian_eigenvalues(model, loss_fn, (x, y), k=0)
    with pytest.raises(ConfigError, match="tol must be a float"):
        hessian_eigenvalues(model, loss_fn, (x, y), tol=2.0)
    with pytest.raises(ConfigError, match="unknown trace method 'exact'"):
        hessian_trace(model, loss_fn, (x, y), method="exact")
    with pytest.raises(ConfigError, match="40 inputs but 39 targets"):
        hessian_eigenvalues(model, loss_fn, (x, y[:39]))
    with pytest.raises(ConfigError, match="unknown criterion 'power'"):
        hessian_eigenvalues(model, loss_fn, (x, y), criterion="power")
    with pytest.raises(ConfigError, match="v0 must be"):
        hessian_eigenvalues(model, loss_fn, (x, y), v0=torch.zeros(3))
