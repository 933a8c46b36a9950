"""The minimum-nuclear-norm solver against independent answers: a fully observed matrix, 2×2
cases solved by hand (and by a scalar minimizer of the closed-form nuclear norm), exact recovery
in the Candès–Recht regime, and the KKT conditions checked from scratch on random
under-determined problems (completion and sensing)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize
import torch

from overparam.data.synthetic import matrix_completion, matrix_sensing
from overparam.errors import ConfigError
from overparam.references.nuclear import (
    min_nuclear_norm_completion,
    min_nuclear_norm_sensing,
)

F64 = torch.float64


def _nuclear(matrix) -> float:
    return float(np.linalg.svd(np.asarray(matrix, dtype=float), compute_uv=False).sum())


def test_fully_observed_returns_the_matrix():
    m = torch.randn(7, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    sol = min_nuclear_norm_completion(torch.ones(7, 5, dtype=torch.bool), m, tol=1e-9)
    assert sol.converged and sol.gap <= 1e-9
    torch.testing.assert_close(sol.matrix, m, rtol=0, atol=1e-12)
    assert sol.nuclear_norm == pytest.approx(_nuclear(m), rel=1e-12)
    assert sol.dual_bound == pytest.approx(_nuclear(m), rel=1e-8)


def test_two_by_two_with_one_missing_entry():
    # ‖[[a, x], [c, e]]‖_* = sqrt(‖·‖_F² + 2|det|), minimized over x by a scalar search (independent of
    # the solver); by hand the minimizer is the rank-one completion x = a·e/c.
    a, c, e = 1.0, 2.0, 3.0
    found = scipy.optimize.minimize_scalar(lambda x: _nuclear([[a, x], [c, e]]), bounds=(-10, 10), method="bounded",
                                           options={"xatol": 1e-10})
    assert found.x == pytest.approx(a * e / c, abs=1e-6)
    mask = torch.tensor([[True, False], [True, True]])
    sol = min_nuclear_norm_completion(mask, torch.tensor([[a, 0.0], [c, e]], dtype=F64), tol=1e-10)
    assert sol.converged
    assert float(sol.matrix[0, 1]) == pytest.approx(a * e / c, abs=1e-6)
    assert sol.nuclear_norm == pytest.approx(math.sqrt(16.25), rel=1e-9)
    assert sol.nuclear_norm == pytest.approx(found.fun, rel=1e-9)


@pytest.mark.parametrize("a, b", [(1.0, 2.0), (1.0, -2.0)])
def test_known_diagonal_free_off_diagonal(a, b):
    # ‖W‖_* >= |tr(W Q)| for every orthogonal Q; Q = diag(1, ±1) gives |a| + |b|, which W = diag(a, b) attains.
    mask = torch.eye(2, dtype=torch.bool)
    sol = min_nuclear_norm_completion(mask, torch.tensor([[a, 5.0], [7.0, b]], dtype=F64), tol=1e-10)
    assert sol.converged
    assert sol.nuclear_norm == pytest.approx(abs(a) + abs(b), rel=1e-9)
    assert float(sol.matrix[0, 0]) == a and float(sol.matrix[1, 1]) == b  # the observations are kept exactly


def test_exact_recovery_of_a_random_low_rank_matrix():
    # 30×30 rank 2 (116 degrees of freedom), half of the entries observed: well inside the regime
    # where nuclear-norm minimization recovers an incoherent low-rank matrix exactly (Candès & Recht 2009).
    split = matrix_completion(d=30, rank=2, n_train=450, seed=3)
    truth, mask = split.extras["M_star"], split.extras["mask"]
    sol = min_nuclear_norm_completion(mask, truth, tol=1e-10)
    assert sol.converged
    assert float(torch.linalg.matrix_norm(sol.matrix - truth) / torch.linalg.matrix_norm(truth)) < 1e-6
    assert sol.nuclear_norm == pytest.approx(_nuclear(truth), rel=1e-8)


def test_exact_recovery_from_gaussian_measurements():
    split = matrix_sensing(d=10, rank=2, n_train=90, n_test=1, seed=1)  # 36 degrees of freedom
    truth = split.extras["M_star"]
    sol = min_nuclear_norm_sensing(split.x_train, split.y_train, tol=1e-10)
    assert sol.converged
    assert float(torch.linalg.matrix_norm(sol.matrix - truth) / torch.linalg.matrix_norm(truth)) < 1e-6


def _check_kkt(solution, in_range) -> None:
    """W = U Σ Vᵀ is optimal iff a Y in range(A*) has P_T(Y) = U Vᵀ and ‖P_T⊥(Y)‖_2 <= 1; verified
    from W's own SVD and the solver's certificate Y."""
    w, y = solution.matrix.numpy(), solution.certificate.numpy()
    u, s, vt = np.linalg.svd(w)
    r = int((s > 1e-6 * s[0]).sum())
    u, v = u[:, :r], vt[:r].T
    pu, pv = np.eye(len(u)) - u @ u.T, np.eye(len(v)) - v @ v.T
    outside = pu @ y @ pv
    tangent = y - outside
    assert 0 < r < min(w.shape)  # a genuinely low-rank, non-trivial optimum
    assert np.linalg.norm(tangent - u @ v.T) < 1e-4 * math.sqrt(r)
    assert np.linalg.norm(outside, 2) <= 1 + 1e-6
    assert in_range(y)
    # strong duality: ⟨Y, W⟩ (= ⟨y, b⟩) equals ‖W‖_*
    assert float((y * w).sum()) == pytest.approx(float(s.sum()), rel=1e-6)


def test_kkt_certificate_of_an_under_determined_completion():
    gen = torch.Generator().manual_seed(5)
    truth = torch.randn(12, 3, generator=gen, dtype=F64) @ torch.randn(3, 9, generator=gen, dtype=F64)
    mask = torch.rand(12, 9, generator=gen) < 0.5
    sol = min_nuclear_norm_completion(mask, truth, tol=1e-10)
    assert sol.converged
    assert torch.equal(sol.matrix[mask], truth[mask])

    def supported_on_mask(y):
        return np.abs(y[~mask.numpy()]).max() == 0.0

    _check_kkt(sol, supported_on_mask)
    # optimality seen directly: moving the free entries never lowers the nuclear norm
    w = sol.matrix.numpy()
    rng = np.random.default_rng(0)
    for _ in range(20):
        direction = rng.standard_normal(w.shape) * ~mask.numpy()
        for t in (1e-3, 1e-1):
            assert _nuclear(w + t * direction) >= sol.nuclear_norm - 1e-8


def test_kkt_certificate_of_an_under_determined_sensing_problem():
    split = matrix_sensing(d=8, rank=3, n_train=30, n_test=1, seed=2)
    a, b = split.x_train, split.y_train
    sol = min_nuclear_norm_sensing(a, b, tol=1e-10)
    assert sol.converged
    torch.testing.assert_close(torch.einsum("kij,ij->k", a, sol.matrix), b, rtol=0, atol=1e-9)
    basis = a.reshape(len(a), -1).numpy().T  # (64, 30)

    def in_span(y):
        coefficients, *_ = np.linalg.lstsq(basis, y.reshape(-1), rcond=None)
        return np.linalg.norm(basis @ coefficients - y.reshape(-1)) < 1e-8 * max(1.0, np.linalg.norm(y))

    _check_kkt(sol, in_span)


def test_zero_observations_give_zero():
    sol = min_nuclear_norm_completion(torch.tensor([[True, False], [False, False]]), torch.zeros(2, 2, dtype=F64))
    assert sol.converged and sol.nuclear_norm == 0.0 and float(sol.matrix.abs().max()) == 0.0


def test_an_unconverged_solve_says_so():
    split = matrix_completion(d=20, rank=2, n_train=150, seed=0)
    sol = min_nuclear_norm_completion(split.extras["mask"], split.extras["M_star"], tol=1e-12, max_iter=3,
                                      check_every=1)
    assert not sol.converged and sol.iterations == 3 and sol.gap > 1e-12
    assert sol.dual_bound <= sol.nuclear_norm  # the bounds stay valid


@pytest.mark.parametrize("call, match", [
    (lambda: min_nuclear_norm_completion(torch.ones(2, 2), torch.ones(2, 2)), "bool"),
    (lambda: min_nuclear_norm_completion(torch.zeros(2, 2, dtype=torch.bool), torch.ones(2, 2)), "no entry"),
    (lambda: min_nuclear_norm_completion(torch.ones(2, 2, dtype=torch.bool), torch.ones(3, 2)), "shape"),
    (lambda: min_nuclear_norm_completion(torch.ones(2, 2, dtype=torch.bool), torch.ones(2, 2), tol=0), "tol"),
    (lambda: min_nuclear_norm_sensing(torch.ones(2, 2, 2), torch.ones(2)), "linearly dependent"),
    (lambda: min_nuclear_norm_sensing(torch.randn(5, 2, 2), torch.ones(5)), "m <= d1"),
    (lambda: min_nuclear_norm_sensing(torch.randn(3, 2, 2), torch.ones(2)), "one per measurement"),
])
def test_bad_input(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
