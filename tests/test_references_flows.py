"""references.flows against closed forms on a quadratic loss L = ½θᵀAθ: gradient flow e^{−At}θ_0,
modified flow e^{−(A + (h/2)A²)t}θ_0, GD step (I − hA)θ_0, and the one-step error laws
(h²/2)|A²θ_0| and (h³/3)|A³θ_0| (slopes 2 and 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from overparam.errors import ConfigError
from overparam.references.flows import (
    flow_displacement,
    gradient_flow,
    loglog_slope,
    loss_fields,
    modified_flow,
    network_loss,
    one_step_errors,
)

F64 = torch.float64


def quadratic(p=6, seed=0):
    """A symmetric positive definite A with eigenvalues in [0.2, 3], and θ_0."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=gen, dtype=F64))
    eigenvalues = torch.linspace(0.2, 3.0, p, dtype=F64)
    a = q @ torch.diag(eigenvalues) @ q.T
    theta0 = torch.randn(p, generator=gen, dtype=F64)
    return a, theta0


def test_gradient_flow_matches_the_matrix_exponential():
    a, theta0 = quadratic()
    for t in (0.05, 0.7):
        got = gradient_flow(lambda th: a @ th, theta0, t, substeps=256)  # RK4 error ~ t (λ t/K)⁴ λ/120
        torch.testing.assert_close(got, torch.linalg.matrix_exp(-a * t) @ theta0, rtol=1e-9, atol=1e-10)


def test_modified_flow_matches_the_matrix_exponential_of_a_plus_half_h_a_squared():
    a, theta0 = quadratic(seed=1)
    h = 0.3
    for t in (h, 1.5):
        got = modified_flow(lambda th: a @ th, lambda th, v: a @ v, theta0, h, time=t, substeps=512)
        expected = torch.linalg.matrix_exp(-(a + (h / 2) * a @ a) * t) @ theta0
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)


def test_one_step_errors_follow_the_closed_forms_and_have_slopes_two_and_three():
    a, theta0 = quadratic(seed=2)
    hs = np.geomspace(1e-3, 3e-2, 5)
    result = one_step_errors(lambda th: a @ th, lambda th, v: a @ v, theta0, hs, substeps=8)
    eye = torch.eye(len(a), dtype=F64)
    for h, plain, modified, step in zip(hs, result.plain, result.modified, result.step):
        gd = (eye - h * a) @ theta0
        exact_plain = torch.linalg.vector_norm(gd - torch.linalg.matrix_exp(-a * h) @ theta0)
        exact_modified = torch.linalg.vector_norm(gd - torch.linalg.matrix_exp(-(a + h / 2 * a @ a) * h) @ theta0)
        assert plain == pytest.approx(float(exact_plain), rel=1e-7)
        assert modified == pytest.approx(float(exact_modified), rel=1e-6)
        assert step == pytest.approx(h * float(torch.linalg.vector_norm(a @ theta0)), rel=1e-12)
    # leading terms of the expansions: (h²/2)|A²θ_0| and (h³/3)|A³θ_0|
    a2, a3 = float(torch.linalg.vector_norm(a @ a @ theta0)), float(torch.linalg.vector_norm(a @ a @ a @ theta0))
    assert result.plain[0] / hs[0] ** 2 == pytest.approx(a2 / 2, rel=1e-2)
    assert result.modified[0] / hs[0] ** 3 == pytest.approx(a3 / 3, rel=1e-2)
    assert result.plain_slope == pytest.approx(2.0, abs=0.03)
    assert result.modified_slope == pytest.approx(3.0, abs=0.03)
    assert np.all(result.integration < 1e-3 * result.modified)


def test_rk4_is_fourth_order():
    """The integrator's error falls 16x per halving of the substep on a nonlinear flow:
    θ' = −θ³ (L = θ⁴/4) has θ(t) = θ_0 / sqrt(1 + 2θ_0² t)."""
    theta0 = torch.tensor([1.3, -0.7], dtype=F64)
    exact = theta0 / torch.sqrt(1 + 2 * theta0**2 * 0.5)
    errors = [float(torch.linalg.vector_norm(gradient_flow(lambda th: th**3, theta0, 0.5, k) - exact))
              for k in (32, 64, 128)]
    assert errors[0] / errors[1] == pytest.approx(16, rel=0.15)
    assert errors[1] / errors[2] == pytest.approx(16, rel=0.15)


def test_loss_fields_and_network_loss_give_the_analytic_gradient_and_hvp():
    """A linear model with MSE: L(w) = mean((Xw − y)²), ∇L = (2/n)Xᵀ(Xw − y), H = (2/n)XᵀX."""
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(20, 4, generator=gen, dtype=F64), torch.randn(20, generator=gen, dtype=F64)
    model = nn.Linear(4, 1, bias=False).double()
    loss, theta0 = network_loss(model, lambda out, t: ((out.reshape(-1) - t) ** 2).mean(), x, y)
    gradient, hvp = loss_fields(loss)
    w = model.weight.detach().reshape(-1)
    torch.testing.assert_close(theta0, w)
    torch.testing.assert_close(gradient(theta0), 2 / 20 * x.T @ (x @ w - y))
    v = torch.randn(4, generator=gen, dtype=F64)
    torch.testing.assert_close(hvp(theta0, v), 2 / 20 * x.T @ x @ v)


def test_network_one_step_slopes_on_a_smooth_mlp():
    """A tanh MLP: the errors' slopes are near 2 and 3 at small h, the integration error negligible."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(32, 5, generator=gen, dtype=F64), torch.randint(0, 3, (32,), generator=gen)
    loss, theta0 = network_loss(model, nn.functional.cross_entropy, x, y)
    gradient, hvp = loss_fields(loss)
    result = one_step_errors(gradient, hvp, theta0, [0.01, 0.02, 0.04], substeps=4)
    assert result.plain_slope == pytest.approx(2.0, abs=0.1)
    assert result.modified_slope == pytest.approx(3.0, abs=0.15)
    assert np.all(result.integration < 1e-2 * result.modified)


def test_loglog_slope_and_bad_arguments():
    assert loglog_slope([1, 2, 4], [3, 12, 48]) == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="hs must be at least two"):
        one_step_errors(lambda th: th, lambda th, v: v, torch.ones(2, dtype=F64), [0.1])
    with pytest.raises(ConfigError, match="hs must be at least two"):
        one_step_errors(lambda th: th, lambda th, v: v, torch.ones(2, dtype=F64), [0.1, -0.2])
    with pytest.raises(ConfigError, match="substeps"):
        flow_displacement(lambda th: th, torch.ones(2, dtype=F64), 0.1, 0)
