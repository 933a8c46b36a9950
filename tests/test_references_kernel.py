"""Kernel regression with a given kernel (overparam.references.kernel) against independent answers:
a hand-checked 1×1 case, least squares / ridge regression in the primal for the linear kernel, and
explicit gradient descent on the parameters of a linear model with an explicit feature map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from overparam.errors import ConfigError
from overparam.references.kernel import dual_coefficients, kernel_predict, kernel_regression

F64 = torch.float64


def test_one_by_one_case_by_hand():
    # K = [[2]], c = 0.25, two steps: r <- (1 - 0.5) r twice, so f = 0.75 r and β = f / 2 = 0.375 r
    solution = dual_coefficients(torch.tensor([[2.0]]), torch.tensor([4.0]), step_size=0.25, steps=2)
    assert solution.coefficients.item() == pytest.approx(1.5) and solution.fitted.item() == pytest.approx(3.0)
    # a step past 1/λ (c λ = 1.5): r <- -0.5 r per step, three steps leave -0.125 r, so f = 1.125 r
    solution = dual_coefficients(torch.tensor([[2.0]]), torch.tensor([4.0]), step_size=0.75, steps=3)
    assert solution.fitted.item() == pytest.approx(4.5)
    # converged: f interpolates, β = r / λ
    assert dual_coefficients(torch.tensor([[2.0]]), torch.tensor([4.0])).coefficients.item() == pytest.approx(2.0)


@pytest.mark.parametrize("n, d", [(5, 8), (10, 4)])  # underdetermined (interpolation) and rank-deficient K
def test_linear_kernel_gives_the_min_norm_least_squares_predictor(n, d):
    rng = np.random.default_rng(0)
    x, x_test, y = rng.normal(size=(n, d)), rng.normal(size=(7, d)), rng.normal(size=(n, 2))
    w, *_ = np.linalg.lstsq(x, y, rcond=None)  # min-norm least squares
    kernel = torch.tensor(x @ x.T)
    predicted = kernel_regression(kernel, torch.tensor(x_test @ x.T), torch.tensor(y))
    np.testing.assert_allclose(predicted.numpy(), x_test @ w, rtol=1e-9, atol=1e-9)


def test_ridge_equals_primal_ridge_regression():
    rng = np.random.default_rng(1)
    x, x_test, y = rng.normal(size=(12, 5)), rng.normal(size=(4, 5)), rng.normal(size=12)
    rho = 0.7
    w = np.linalg.solve(x.T @ x + rho * np.eye(5), x.T @ y)
    predicted = kernel_regression(torch.tensor(x @ x.T), torch.tensor(x_test @ x.T), torch.tensor(y), ridge=rho)
    np.testing.assert_allclose(predicted.numpy(), x_test @ w, rtol=1e-10)


def _feature_model(seed: int, n: int = 6, m: int = 4, k: int = 3, p: int = 40):
    """f(x_i) = f0_i + Φ_i θ with Φ_i (k, p): explicit per-output features (outputs coupled)."""
    gen = torch.Generator().manual_seed(seed)
    phi, phi_test = torch.randn(n, k, p, generator=gen, dtype=F64), torch.randn(m, k, p, generator=gen, dtype=F64)
    f0, f0_test = torch.randn(n, k, generator=gen, dtype=F64), torch.randn(m, k, generator=gen, dtype=F64)
    y = torch.randn(n, k, generator=gen, dtype=F64)
    kernel = torch.einsum("iap,jbp->ijab", phi, phi)  # (n, n, k, k)
    kernel_test = torch.einsum("iap,jbp->ijab", phi_test, phi)
    return phi, phi_test, f0, f0_test, y, kernel, kernel_test


def _explicit_gd(phi, f0, y, lr: float, steps: int) -> torch.Tensor:
    """θ after ``steps`` steps of GD on torch's mean MSE of f0 + Φ θ, from θ = 0 (autograd)."""
    theta = torch.zeros(phi.shape[-1], dtype=F64, requires_grad=True)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(f0 + phi @ theta, y)
        (grad,) = torch.autograd.grad(loss, theta)
        with torch.no_grad():
            theta -= lr * grad
    return theta.detach()


@pytest.mark.parametrize("lr_fraction", [0.3, 0.9])  # c λ_max = 0.6 and 1.8: both branches of the filter
def test_finite_time_formula_equals_explicit_gd_on_the_linear_model(lr_fraction):
    phi, phi_test, f0, f0_test, y, kernel, kernel_test = _feature_model(0)
    n, k = y.shape
    top = torch.linalg.eigvalsh(kernel.permute(0, 2, 1, 3).reshape(n * k, n * k))[-1].item()
    lr = lr_fraction * (n * k) / top  # c = 2 lr / (n k) = 2 lr_fraction / λ_max
    theta = _explicit_gd(phi, f0, y, lr, steps=60)
    formula = kernel_regression(kernel, kernel_test, y, f0_train=f0, f0_test=f0_test, step_size=2 * lr / (n * k),
                                steps=60)
    torch.testing.assert_close(formula, f0_test + phi_test @ theta, rtol=1e-9, atol=1e-9)
    fitted = dual_coefficients(kernel, y - f0, step_size=2 * lr / (n * k), steps=60).fitted
    torch.testing.assert_close(f0 + fitted, f0 + phi @ theta, rtol=1e-9, atol=1e-9)


def test_gradient_descent_converges_to_the_ridgeless_solution():
    phi, phi_test, f0, f0_test, y, kernel, kernel_test = _feature_model(1)  # p = 40 > n k = 18: interpolation
    n, k = y.shape
    top = torch.linalg.eigvalsh(kernel.permute(0, 2, 1, 3).reshape(n * k, n * k))[-1].item()
    lr = 0.5 * (n * k) / top
    theta = _explicit_gd(phi, f0, y, lr, steps=4000)
    converged = kernel_regression(kernel, kernel_test, y, f0_train=f0, f0_test=f0_test)
    torch.testing.assert_close(converged, f0_test + phi_test @ theta, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(f0 + phi @ theta, y, rtol=1e-7, atol=1e-7)  # it interpolates
    # the finite-time formula tends to the same limit
    late = kernel_regression(kernel, kernel_test, y, f0_train=f0, f0_test=f0_test, step_size=2 * lr / (n * k),
                             steps=10 ** 7)
    torch.testing.assert_close(late, converged, rtol=1e-7, atol=1e-7)


def test_a_scalar_kernel_is_the_same_kernel_for_every_output():
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 9, generator=gen, dtype=F64), torch.randn(3, 9, generator=gen, dtype=F64)
    kernel, kernel_test, y = a @ a.T, b @ a.T, torch.randn(5, 2, generator=gen, dtype=F64)
    eye = torch.eye(2, dtype=F64)
    full = kernel_regression(kernel[:, :, None, None] * eye, kernel_test[:, :, None, None] * eye, y,
                             step_size=0.01, steps=30)
    torch.testing.assert_close(kernel_regression(kernel, kernel_test, y, step_size=0.01, steps=30), full)
    for column in range(2):  # and each output column alone
        torch.testing.assert_close(kernel_regression(kernel, kernel_test, y[:, column], step_size=0.01, steps=30),
                                   full[:, column])


@pytest.mark.parametrize("call, match", [
    (lambda: dual_coefficients(torch.eye(3), torch.ones(3), steps=5), "both step_size and steps"),
    (lambda: dual_coefficients(torch.eye(3), torch.ones(3), step_size=0.1, steps=5, ridge=1.0), "converged solution only"),
    (lambda: dual_coefficients(torch.eye(3), torch.ones(3), ridge=-1.0), "ridge must be a finite number >= 0"),
    (lambda: dual_coefficients(torch.eye(3), torch.ones(3), step_size=0.0, steps=5), "step_size must be a positive"),
    (lambda: dual_coefficients(torch.eye(3), torch.ones(3), step_size=0.1, steps=0), "steps must be an integer >= 1"),
    (lambda: dual_coefficients(torch.ones(3), torch.ones(3)), r"shape \(n1, n2\) or \(n1, n2, k, k\)"),
    (lambda: dual_coefficients(torch.ones(3, 2), torch.ones(3)), "square"),
    (lambda: dual_coefficients(torch.eye(3), torch.ones(4)), r"shape \(3,\) or \(3, k\)"),
    (lambda: dual_coefficients(torch.ones(3, 3, 2, 2), torch.ones(3)), r"needs residual/targets of shape \(3, 2\)"),
    (lambda: kernel_predict(torch.ones(4, 5), torch.ones(3)), "must have 3 columns"),
    (lambda: kernel_regression(torch.eye(3), torch.ones(2, 3), [1.0, 2.0, 3.0]), "targets must be a tensor"),
    (lambda: kernel_regression(torch.eye(3), torch.ones(2, 3), torch.ones(3), f0_train=torch.ones(3, 1)),
     r"f0_train must have the targets' shape \(3,\)"),
    (lambda: kernel_predict(torch.ones(4, 3), torch.ones(3), torch.ones(5)), r"f0_test must have shape \(4,\)"),
])
def test_bad_inputs_are_config_errors(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
