"""The hard-margin SVM reference against closed forms, the KKT conditions and an independent
primal solve; non-separable data fail with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from overparam.data.synthetic import separable
from overparam.errors import ConfigError
from overparam.references.svm import hard_margin_svm, is_separable


def test_two_points_with_both_constraints_active():
    # z_1 = (2, 0), z_2 = (0, 1): the constraints read w_1 >= 1/2 and w_2 >= 1, so w* = (1/2, 1)
    x = np.array([[2.0, 0.0], [0.0, -1.0]])
    y = np.array([1.0, -1.0])
    svm = hard_margin_svm(x, y)
    np.testing.assert_allclose(svm.w, [0.5, 1.0], atol=1e-12)
    # stationarity w = α_1 z_1 + α_2 z_2 gives α = (1/4, 1)
    np.testing.assert_allclose(svm.alpha, [0.25, 1.0], atol=1e-12)
    assert svm.margin == pytest.approx(1 / np.sqrt(1.25))
    assert list(svm.support) == [0, 1]


def test_two_points_with_one_inactive_constraint():
    # z_1 = (1, 0), z_2 = (2, 1): w = z_1/|z_1|² = (1, 0) already gives z_2·w = 2 > 1, so α_2 = 0
    svm = hard_margin_svm(np.array([[1.0, 0.0], [-2.0, -1.0]]), np.array([1, -1]))
    np.testing.assert_allclose(svm.w, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(svm.alpha, [1.0, 0.0], atol=1e-12)
    assert list(svm.support) == [0]


def test_mirror_symmetric_data_give_the_symmetry_axis():
    # The set {z_i} is symmetric under w_2 -> -w_2, the problem strictly convex, so w*_2 = 0 and
    # the tightest constraint w_1 >= 1 makes w* = (1, 0), margin 1.
    x = np.array([[1.0, 2.0], [1.0, -2.0], [3.0, 0.0], [-1.0, 2.0], [-1.0, -2.0]])
    y = np.array([1, 1, 1, -1, -1])
    svm = hard_margin_svm(torch.tensor(x), torch.tensor(y))
    np.testing.assert_allclose(svm.w, [1.0, 0.0], atol=1e-12)
    assert svm.margin == pytest.approx(1.0)
    np.testing.assert_allclose(svm.direction, [1.0, 0.0], atol=1e-12)
    assert 2 not in svm.support  # (3, 0) has margin 3


@pytest.mark.parametrize("n, d, seed", [(30, 3, 0), (200, 10, 1), (500, 40, 2)])
def test_kkt_conditions_on_random_separable_data(n, d, seed):
    split = separable(n_train=n, n_test=1, dim=d, margin=0.05, seed=seed)
    x, y = split.x_train.numpy(), 2.0 * split.y_train.numpy() - 1.0
    svm = hard_margin_svm(x, y)
    z = y[:, None] * x
    margins = z @ svm.w
    assert margins.min() >= 1 - 1e-9  # primal feasibility
    assert svm.alpha.min() >= 0  # dual feasibility
    np.testing.assert_allclose(svm.w, z.T @ svm.alpha, rtol=1e-10, atol=1e-12)  # stationarity
    np.testing.assert_allclose(margins[svm.support], 1.0, atol=1e-9)  # support vectors sit on the margin
    assert np.all(svm.alpha[margins > 1 + 1e-6] == 0)  # complementary slackness
    assert 1 <= len(svm.support) <= d  # generic data: at most d support vectors through the origin
    # no unit vector has a larger margin than 1/‖w*‖: the planted one, nor random perturbations of w*
    planted = split.extras["w_star"].numpy()
    assert (z @ planted).min() <= svm.margin + 1e-12
    rng = np.random.default_rng(seed)
    for _ in range(20):
        v = svm.direction + 0.05 * rng.normal(size=d)
        assert (z @ v).min() / np.linalg.norm(v) <= svm.margin + 1e-12


def test_matches_an_independent_primal_solve():
    """SLSQP on the primal min ½‖w‖² s.t. Z w >= 1 (a different algorithm on a different form)."""
    split = separable(n_train=60, n_test=1, dim=4, margin=0.2, seed=3)
    x, y = split.x_train.numpy(), 2.0 * split.y_train.numpy() - 1.0
    z = y[:, None] * x
    start = 2 * split.extras["w_star"].numpy() / 0.2  # feasible: margins >= 2
    primal = scipy.optimize.minimize(lambda w: 0.5 * w @ w, start, jac=lambda w: w, method="SLSQP",
                                     constraints=[{"type": "ineq", "fun": lambda w: z @ w - 1, "jac": lambda w: z}],
                                     options={"ftol": 1e-14, "maxiter": 500})
    assert primal.success
    np.testing.assert_allclose(hard_margin_svm(x, y).w, primal.x, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("x, y", [
    ([[1.0], [2.0]], [1, -1]),  # separable with a bias (threshold 1.5), not through the origin
    ([[1.0, 1.0], [1.0, 1.0]], [1, -1]),  # one point with both labels
    ([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], [1, 1, -1, -1]),  # XOR-like
])
def test_non_separable_data_raise(x, y):
    assert not is_separable(np.array(x), np.array(y))
    with pytest.raises(ConfigError, match="not linearly separable through the origin"):
        hard_margin_svm(np.array(x), np.array(y))


@pytest.mark.parametrize("x, y, match", [
    (np.ones((3, 2)), np.array([1, 0, 1]), "labels must be -1 or \\+1, got 0"),
    (np.ones((3, 2)), np.array([1, -1]), "y must have shape \\(3,\\)"),
    (np.ones(3), np.array([1, -1, 1]), "x must be a non-empty \\(n, d\\) array"),
    (np.array([[np.nan, 1.0]]), np.array([1]), "x must be finite"),
])
def test_bad_inputs_raise(x, y, match):
    with pytest.raises(ConfigError, match=match):
        hard_margin_svm(x, y)
