"""Critical-batch references against answers known independently: the saturation fit on exact and
noisy curves and against scipy's NNLS, Ma et al.'s β, λ_1, m* and η*(m) on designs with closed
forms, and the gradient noise scale on least squares against explicit per-example gradients."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import torch

from overparam.errors import ConfigError
from overparam.measures import gradient_noise_scale
from overparam.references.batch import fit_saturation, ma_critical_batch, ma_step_size

SIZES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], dtype=float)


def test_fit_recovers_an_exact_curve_and_is_vectorized():
    fit = fit_saturation(SIZES, 7.5 * (1 + 120 / SIZES))
    assert fit.s_min == pytest.approx(7.5, rel=1e-12)
    assert fit.b_noise == pytest.approx(120, rel=1e-12)
    assert fit.b_crit == fit.b_noise and fit.e_min == pytest.approx(900, rel=1e-12)
    assert fit.residual < 1e-12
    # a stack of curves (as bootstrap resamples are) is fitted curve by curve
    params = [(3.0, 10.0), (50.0, 2000.0), (1.0, 0.5)]
    stacked = fit_saturation(SIZES, np.stack([s * (1 + b / SIZES) for s, b in params]))
    np.testing.assert_allclose(stacked.s_min, [s for s, _ in params], rtol=1e-10)
    np.testing.assert_allclose(stacked.b_noise, [b for _, b in params], rtol=1e-10)


def test_fit_on_noisy_curves_is_within_tolerance():
    rng = np.random.default_rng(0)
    truth = 40.0 * (1 + 64 / SIZES)
    estimates = [fit_saturation(SIZES, truth * np.exp(0.05 * rng.standard_normal(SIZES.size))) for _ in range(50)]
    b_noise = np.array([f.b_noise for f in estimates])
    s_min = np.array([f.s_min for f in estimates])
    assert abs(np.median(b_noise) / 64 - 1) < 0.05 and np.all(np.abs(b_noise / 64 - 1) < 0.3)
    assert abs(np.median(s_min) / 40 - 1) < 0.03


@pytest.mark.parametrize("steps", [
    40.0 * (1 + 64 / SIZES) * np.exp(0.1 * np.sin(np.arange(SIZES.size))),  # interior optimum
    5000.0 / SIZES ** 1.5,  # falls faster than 1/B: the constraint S_min >= 0 binds, B_noise = inf
    10.0 + np.arange(SIZES.size, dtype=float),  # rises with B: B_noise >= 0 binds, B_noise = 0
])
def test_fit_is_the_nonnegative_weighted_least_squares_solution(steps):
    # scipy's NNLS on the same objective: rows (1/S_i, 1/(B_i S_i)), target 1
    design = np.stack([1 / steps, 1 / (SIZES * steps)], axis=1)
    (a, c), _ = scipy.optimize.nnls(design, np.ones(SIZES.size))
    fit = fit_saturation(SIZES, steps)
    assert fit.s_min == pytest.approx(a, rel=1e-8, abs=1e-12)
    assert fit.e_min == pytest.approx(c, rel=1e-8, abs=1e-9)
    if a == 0:
        assert math.isinf(fit.b_noise)
    elif c == 0:
        assert fit.b_noise == 0
    else:
        assert fit.b_noise == pytest.approx(c / a, rel=1e-8)


@pytest.mark.parametrize("sizes, steps, match", [
    ([4, 4, 4], [1.0, 2.0, 3.0], "two distinct"),
    ([1, 2, 4], [3.0, 0.0, 1.0], "positive"),
    ([1, 2], [[1.0, 2.0, 3.0]], "shape"),
])
def test_fit_rejects_bad_input(sizes, steps, match):
    with pytest.raises(ConfigError, match=match):
        fit_saturation(sizes, steps)


def _hadamard(n: int) -> torch.Tensor:
    h = torch.ones(1, 1, dtype=torch.float64)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h


def test_ma_constants_on_designs_with_closed_forms():
    # Hadamard rows: every |x_i|² = n and XᵀX = n I, so H = I: β = n, λ_1 = 1, m* = n
    ma = ma_critical_batch(_hadamard(8))
    assert (ma.beta, ma.lambda_1, ma.m_star) == (pytest.approx(8.0), pytest.approx(1.0), pytest.approx(8.0))
    # a scaled orthogonal design: rows c·q_i of an orthogonal Q (n = p): β = c², H = (c²/n) I, m* = n
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    ma = ma_critical_batch(3.0 * q)
    assert ma.beta == pytest.approx(9.0) and ma.lambda_1 == pytest.approx(1.5) and ma.m_star == pytest.approx(6.0)
    # by hand: x_1 = (3, 0), x_2 = (0, 1): β = 9, H = diag(9, 1)/2, λ_1 = 4.5, m* = 2
    ma = ma_critical_batch(torch.tensor([[3.0, 0.0], [0.0, 1.0]]))
    assert (ma.beta, ma.lambda_1, ma.m_star) == (pytest.approx(9.0), pytest.approx(4.5), pytest.approx(2.0))


def test_ma_step_size_limits_and_the_kaczmarz_step():
    beta, lam = 8.0, 1.0
    assert ma_step_size(1, beta, lam) == pytest.approx(1 / beta)
    assert ma_step_size(10**9, beta, lam) == pytest.approx(1 / lam, rel=1e-6)  # m → ∞: a full-gradient step
    # with |x_i|² = β for all i, the batch-1 step η*(1) = 1/β solves example i exactly (Kaczmarz):
    # w ← w − η (wᵀx_i − y_i) x_i makes wᵀx_i = y_i (gradient of the ½ square loss)
    x = _hadamard(8)
    w, target = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    x_i, y_i = x[3], (x @ target)[3]
    w_new = w - ma_step_size(1, beta, lam) * (w @ x_i - y_i) * x_i
    assert float(w_new @ x_i) == pytest.approx(float(y_i), abs=1e-12)
    with pytest.raises(ConfigError, match="integer >= 1"):
        ma_step_size(0, beta, lam)
    with pytest.raises(ConfigError, match="beta >= lambda_1"):
        ma_step_size(4, 1.0, 2.0)


def test_ma_step_size_minimizes_their_contraction_bound_which_bounds_the_exact_one():
    """E|w' − w*|² for one step of batch m drawn with replacement, computed exactly by enumerating
    every m-tuple of examples, is at most g(η, m)|w − w*|² (Ma et al.'s bound), and η*(m) is the
    minimizer of g over η."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, dtype=torch.float64, generator=gen) * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    n = len(x)
    ma = ma_critical_batch(x)
    eig = torch.linalg.eigvalsh(x.T @ x / n)
    lam_min = float(eig[0])
    for m in (1, 2, 3):
        def bound(eta):
            return 1 - eta * lam_min * (2 - eta * (ma.beta + (m - 1) * ma.lambda_1) / m)

        etas = np.linspace(1e-4, 2 / ma.lambda_1, 20001)
        assert ma.step_size(m) == pytest.approx(etas[np.argmin([bound(e) for e in etas])], abs=2e-4)
        for eta in (0.5 * ma.step_size(m), ma.step_size(m), 1.5 * ma.step_size(m)):
            # exact E[(I − η H_m)ᵀ(I − η H_m)] over the n^m equally likely batches
            second = torch.zeros(3, 3, dtype=torch.float64)
            for batch in itertools.product(range(n), repeat=m):
                h_m = x[list(batch)].T @ x[list(batch)] / m
                step = torch.eye(3, dtype=torch.float64) - eta * h_m
                second += step.T @ step / n**m
            assert float(torch.linalg.eigvalsh(second)[-1]) <= bound(eta) + 1e-12


def _least_squares_model(w: torch.Tensor) -> torch.nn.Module:
    model = torch.nn.Linear(len(w), 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w[None])
    return model


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(out.reshape(y.shape), y)


def test_gradient_noise_scale_matches_explicit_per_example_gradients_on_least_squares():
    gen = torch.Generator().manual_seed(2)
    n, p = 40, 5
    x = torch.randn(n, p, dtype=torch.float64, generator=gen)
    y = x @ torch.randn(p, dtype=torch.float64, generator=gen) + 0.3 * torch.randn(n, dtype=torch.float64, generator=gen)
    w = torch.randn(p, dtype=torch.float64, generator=gen)
    # ℓ_i = (wᵀx_i − y_i)², so g_i = 2 (wᵀx_i − y_i) x_i
    g = 2 * (x @ w - y)[:, None] * x
    mean = g.mean(0)
    trace = float(((g - mean) ** 2).sum() / (n - 1))
    result = gradient_noise_scale(_least_squares_model(w), _mse, (x, y), chunk_size=7)
    assert result.trace_sigma == pytest.approx(trace, rel=1e-12)
    assert result.grad_norm_sq == pytest.approx(float(mean @ mean), rel=1e-12)
    assert result.b_simple == pytest.approx(trace / float(mean @ mean), rel=1e-12)
    # at the least-squares optimum G = 0 (normal equations) and tr(Σ) = 4 Σ r_i² |x_i|² / (n − 1)
    w_opt = torch.linalg.lstsq(x, y).solution
    r = x @ w_opt - y
    at_optimum = gradient_noise_scale(_least_squares_model(w_opt), _mse, (x, y))
    assert at_optimum.grad_norm_sq < 1e-20
    assert at_optimum.trace_sigma == pytest.approx(float(4 * (r**2 * (x**2).sum(1)).sum() / (n - 1)), rel=1e-10)
