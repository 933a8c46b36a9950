"""references.linear against independent answers: hand-solvable cases, numpy's pinv, the KKT
conditions of the constrained problems, the primal and dual ridge formulas, the first-order
expansion of the ridge path, and a Monte Carlo estimate of the expected risk."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from overparam.errors import ConfigError
from overparam.references.linear import isotropic_min_norm_risk, min_norm_interpolant, nearest_interpolant, ridge

F64 = torch.float64


def _problem(n: int, p: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, p, generator=gen, dtype=F64), torch.randn(n, generator=gen, dtype=F64)


def _null_basis(X: torch.Tensor) -> np.ndarray:
    """Orthonormal basis of null(X) from numpy's full SVD, (p, p − rank)."""
    _, s, vh = np.linalg.svd(X.numpy())
    rank = int((s > 1e-10 * s[0]).sum())
    return vh[rank:].T


def test_min_norm_interpolant_by_hand():
    # one equation w1 + w2 = 2: the shortest solution is (1, 1)
    assert torch.allclose(min_norm_interpolant(torch.tensor([[1.0, 1.0]]), torch.tensor([2.0])),
                          torch.tensor([1.0, 1.0], dtype=F64))
    # w1 = 1, 2 w2 = 4, w3 free: the shortest sets w3 = 0
    X = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    assert torch.allclose(min_norm_interpolant(X, torch.tensor([1.0, 4.0])), torch.tensor([1.0, 2.0, 0.0], dtype=F64))


def test_min_norm_interpolant_interpolates_and_lies_in_the_row_space():
    X, y = _problem(6, 15)
    w = min_norm_interpolant(X, y)
    assert w.dtype == F64 and w.shape == (15,)
    assert torch.allclose(X @ w, y, atol=1e-12)
    null = _null_basis(X)
    assert null.shape == (15, 9)
    assert np.abs(null.T @ w.numpy()).max() < 1e-12  # orthogonal to null(X)
    # the closed form X^T (X X^T)^{-1} y and numpy's pseudo-inverse
    assert torch.allclose(w, X.T @ torch.linalg.solve(X @ X.T, y), atol=1e-12)
    assert np.allclose(w.numpy(), np.linalg.pinv(X.numpy()) @ y.numpy(), atol=1e-12)
    # every other interpolant w + N z is longer: ||w + N z||² = ||w||² + ||z||²
    z = np.random.default_rng(0).standard_normal((9, 20))
    others = w.numpy()[:, None] + null @ z
    assert np.allclose((others ** 2).sum(0), float(w @ w) + (z ** 2).sum(0))
    # several right-hand sides at once
    Y = torch.stack([y, 2 * y], dim=1)
    assert torch.allclose(min_norm_interpolant(X, Y), torch.stack([w, 2 * w], dim=1), atol=1e-12)


def test_min_norm_interpolant_rank_deficient_and_underparameterized():
    X, y = _problem(3, 8)
    deficient = torch.cat([X, X[:1] + X[1:2]])  # 4 rows of rank 3
    consistent = torch.cat([y, y[:1] + y[1:2]])
    w = min_norm_interpolant(deficient, consistent)
    assert torch.allclose(deficient @ w, consistent, atol=1e-12)
    assert np.allclose(w.numpy(), np.linalg.pinv(deficient.numpy()) @ consistent.numpy(), atol=1e-12)
    # an inconsistent right-hand side: the minimum-norm least-squares solution, as pinv gives it
    inconsistent = torch.cat([y, torch.tensor([5.0], dtype=F64)])
    assert np.allclose(min_norm_interpolant(deficient, inconsistent).numpy(),
                       np.linalg.pinv(deficient.numpy()) @ inconsistent.numpy(), atol=1e-12)
    # p < n: ordinary least squares from the normal equations
    X, y = _problem(12, 4)
    assert torch.allclose(min_norm_interpolant(X, y), torch.linalg.solve(X.T @ X, X.T @ y), atol=1e-12)


def test_nearest_interpolant_by_hand_and_by_kkt():
    # the line w1 + w2 = 0: the point nearest (1, 0) is (1/2, −1/2)
    w = nearest_interpolant(torch.tensor([[1.0, 1.0]]), torch.tensor([0.0]), torch.tensor([1.0, 0.0]))
    assert torch.allclose(w, torch.tensor([0.5, -0.5], dtype=F64))
    # KKT of min ||w − w0||² s.t. X w = y: [[I, X^T], [X, 0]] [w; μ] = [w0; y], solved densely
    X, y = _problem(5, 11, seed=1)
    w0 = torch.randn(11, generator=torch.Generator().manual_seed(2), dtype=F64)
    kkt = torch.cat([torch.cat([torch.eye(11, dtype=F64), X.T], 1), torch.cat([X, torch.zeros(5, 5, dtype=F64)], 1)])
    expected = torch.linalg.solve(kkt, torch.cat([w0, y]))[:11]
    w = nearest_interpolant(X, y, w0)
    assert torch.allclose(w, expected, atol=1e-12)
    assert torch.allclose(X @ w, y, atol=1e-12)
    # from w0 = 0 it is the minimum-norm interpolant
    assert torch.allclose(nearest_interpolant(X, y, torch.zeros(11)), min_norm_interpolant(X, y), atol=1e-14)


def test_ridge_against_primal_and_dual_forms_and_by_hand():
    X, y = _problem(7, 13, seed=3)
    for lam in (0.3, 2.0):
        primal = torch.linalg.solve(X.T @ X + lam * torch.eye(13, dtype=F64), X.T @ y)
        dual = X.T @ torch.linalg.solve(X @ X.T + lam * torch.eye(7, dtype=F64), y)
        assert torch.allclose(ridge(X, y, lam), primal, atol=1e-12)
        assert torch.allclose(ridge(X, y, lam), dual, atol=1e-12)
    path = ridge(X, y, [0.3, 2.0])
    assert path.shape == (2, 13) and torch.allclose(path[1], ridge(X, y, 2.0), atol=1e-14)
    # X = diag(1, 2), y = (1, 1): w_λ = (1 / (1 + λ), 2 / (4 + λ))
    w = ridge(torch.diag(torch.tensor([1.0, 2.0])), torch.tensor([1.0, 1.0]), 0.5)
    assert torch.allclose(w, torch.tensor([1 / 1.5, 2 / 4.5], dtype=F64))


def test_ridge_tends_to_min_norm_at_rate_lambda():
    X, y = _problem(6, 20, seed=4)
    w_mn = min_norm_interpolant(X, y)
    gram = X @ X.T
    # first-order term: w_λ − w_mn = −λ X^T (X X^T)^{-2} y + O(λ²)
    derivative = X.T @ torch.linalg.solve(gram, torch.linalg.solve(gram, y))
    for lam in (1e-4, 1e-6):
        assert torch.allclose((ridge(X, y, lam) - w_mn) / lam, -derivative, rtol=1e-3, atol=1e-9)
    distances = [float((ridge(X, y, lam) - w_mn).norm()) for lam in (1e-3, 1e-5, 1e-7)]
    assert distances[0] / distances[1] == pytest.approx(100, rel=1e-2)
    assert distances[1] / distances[2] == pytest.approx(100, rel=1e-3)


@pytest.mark.parametrize("lam", [0.0, -1.0, math.nan, [1.0, 0.0], [[1.0]]])
def test_ridge_rejects_bad_lambda(lam):
    X, y = _problem(3, 5)
    with pytest.raises(ConfigError, match="λ > 0"):
        ridge(X, y, lam)


def test_bad_shapes_are_config_errors():
    X, y = _problem(3, 5)
    with pytest.raises(ConfigError, match="shape"):
        min_norm_interpolant(X, y[:2])
    with pytest.raises(ConfigError, match="w0"):
        nearest_interpolant(X, y, torch.zeros(4))
    with pytest.raises(ConfigError, match="noise_var"):
        isotropic_min_norm_risk(10, 20, 1.0, -1.0)


@pytest.mark.parametrize("p", [4, 30])
def test_isotropic_risk_matches_monte_carlo(p):
    n, signal, noise_var, draws = 10, 1.0, 0.5, 3000
    gen = torch.Generator().manual_seed(p)
    w = torch.randn(p, generator=gen, dtype=F64)
    w *= math.sqrt(signal) / w.norm()
    X = torch.randn(draws, n, p, generator=gen, dtype=F64)
    y = X @ w + math.sqrt(noise_var) * torch.randn(draws, n, generator=gen, dtype=F64)
    estimates = torch.linalg.pinv(X) @ y[..., None]  # independent of lstsq: batched SVD pseudo-inverse
    errors = (estimates[..., 0] - w).pow(2).sum(-1)
    mean, standard_error = float(errors.mean()), float(errors.std() / math.sqrt(draws))
    expected = isotropic_min_norm_risk(n, p, signal, noise_var)
    assert abs(mean - expected) < 4 * standard_error
    # p = 4: noise_var · 4/5; p = 30: (1 − 1/3) + noise_var · 10/19
    assert expected == pytest.approx(0.4 if p == 4 else 2 / 3 + 0.5 * 10 / 19)


def test_isotropic_risk_is_infinite_at_the_interpolation_threshold():
    assert all(math.isinf(isotropic_min_norm_risk(10, p, 1.0, 0.1)) for p in (9, 10, 11))
    assert isotropic_min_norm_risk(10, 8, 1.0, 0.0) == 0.0  # no noise, p < n: exact recovery
