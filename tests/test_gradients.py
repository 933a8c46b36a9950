"""Gradient statistics against independent answers: autograd loops, closed forms on linear
regression (numpy, no autograd), exact enumeration and Monte Carlo over random partitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from overparam.errors import ConfigError
from overparam.measures.gradients import (
    gradient_noise_scale,
    gradient_noise_scale_two_batch,
    implicit_gradient_regularizer,
    per_example_gradients,
    sgd_modified_loss_terms,
)

F64 = torch.float64
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def half_mse(out, y):
    """½ (f(x) − y)², averaged over the batch."""
    return 0.5 * ((out.squeeze(-1) - y) ** 2).mean()


def linear_problem(n=30, d=5, seed=0, bias=False, device="cpu", dtype=F64):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=F64)
    y = torch.randn(n, generator=gen, dtype=F64)
    w = torch.randn(d, generator=gen, dtype=F64)
    model = nn.Linear(d, 1, bias=bias).to(F64)
    with torch.no_grad():
        model.weight.copy_(w[None])
        if bias:
            model.bias.fill_(0.3)
    return model.to(device, dtype), x.to(device, dtype), y.to(device, dtype)


def closed_form_grads(model, x, y):
    """g_i = r_i x_i (and r_i for a bias), r_i = w·x_i + b − y_i, in numpy."""
    w = model.weight.detach().cpu().double().numpy()[0]
    b = model.bias.detach().cpu().double().item() if model.bias is not None else 0.0
    xn, yn = x.cpu().double().numpy(), y.cpu().double().numpy()
    r = xn @ w + b - yn
    g = r[:, None] * xn
    if model.bias is not None:
        g = np.concatenate([g, r[:, None]], axis=1)
    return g


def small_net(dtype=F64, seed=0, n=11):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Dropout(0.3), nn.Linear(6, 3))
    model = model.to(dtype)
    with torch.no_grad():  # non-trivial running statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 4, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=gen)
    return model, nn.functional.cross_entropy, x, y


def flat_grad(model, loss):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def loop_grads(model, loss_fn, x, y):
    was = model.training
    model.eval()
    rows = [flat_grad(model, loss_fn(model(x[i:i + 1]), y[i:i + 1])) for i in range(len(x))]
    model.train(was)
    return torch.stack(rows)


# per-example gradients --------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 4, 100])
def test_per_example_matches_autograd_loop_with_batchnorm(chunk_size):
    model, loss_fn, x, y = small_net()
    result = per_example_gradients(model, loss_fn, x, y, chunk_size=chunk_size)
    expected = loop_grads(model, loss_fn, x, y)
    assert result.grads.shape == (len(x), sum(p.numel() for p in model.parameters()))
    torch.testing.assert_close(result.grads, expected, rtol=0, atol=1e-12)
    model.eval()
    losses = torch.stack([loss_fn(model(x[i:i + 1]), y[i:i + 1]) for i in range(len(x))]).detach()
    torch.testing.assert_close(result.losses, losses, rtol=0, atol=1e-12)
    assert result.cost.forward == len(x) and result.cost.backward == len(x)


@pytest.mark.parametrize("device", DEVICES)
def test_per_example_float32_and_frozen_parameters(device):
    model, loss_fn, x, y = small_net(dtype=torch.float32)
    model = model.to(device)
    model[0].bias.requires_grad_(False)  # frozen parameters are excluded from the P columns
    x, y = x.to(device), y.to(device)
    result = per_example_gradients(model, loss_fn, x, y, chunk_size=3)
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    expected = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
        loss_fn(model(x[i:i + 1]), y[i:i + 1]), params)]) for i in range(len(x))])
    assert result.grads.dtype == torch.float32 and result.grads.device.type == device
    torch.testing.assert_close(result.grads, expected, rtol=1e-5, atol=1e-6)


def test_per_example_mean_is_full_gradient_on_linear_regression():
    model, x, y = linear_problem(bias=True)
    result = per_example_gradients(model, half_mse, x, y, chunk_size=7)
    np.testing.assert_allclose(result.grads.numpy(), closed_form_grads(model, x, y), rtol=0, atol=1e-12)


# gradient noise scale ---------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_noise_scale_closed_form_on_linear_regression(device):
    model, x, y = linear_problem(n=30, d=5, device=device)
    g = closed_form_grads(model, x, y)
    G = g.mean(axis=0)
    sigma = (g - G).T @ (g - G) / (len(g) - 1)
    expected = np.trace(sigma) / (G @ G)
    data = [(x[:13], y[:13]), (x[13:23], y[13:23]), (x[23:], y[23:])]  # uneven batches
    result = gradient_noise_scale(model, half_mse, data, chunk_size=4)
    assert result.num_examples == 30
    assert result.b_simple == pytest.approx(expected, rel=1e-10)
    assert result.trace_sigma == pytest.approx(np.trace(sigma), rel=1e-10)
    assert result.grad_norm_sq == pytest.approx(G @ G, rel=1e-10)
    assert result.cost.forward == 30


def test_noise_scale_population_closed_form():
    """x ~ N(0, I_d), y = w*·x: G = δ = w − w*, tr Σ = E[(δ·x)²|x|²] − |δ|² = (d+1)|δ|²."""
    d, n = 4, 100_000
    gen = torch.Generator().manual_seed(3)
    w_star = torch.randn(d, generator=gen, dtype=F64)
    w = torch.randn(d, generator=gen, dtype=F64)
    x = torch.randn(n, d, generator=gen, dtype=F64)
    y = x @ w_star
    model = nn.Linear(d, 1, bias=False).to(F64)
    with torch.no_grad():
        model.weight.copy_(w[None])
    result = gradient_noise_scale(model, half_mse, (x, y), chunk_size=4096)

    delta = (w - w_star).numpy()
    pop_norm = delta @ delta
    pop_trace = (d + 1) * pop_norm
    # sampling errors from the per-example closed-form gradients
    g = closed_form_grads(model, x, y)
    G = g.mean(axis=0)
    dev = ((g - G) ** 2).sum(axis=1)
    se_trace = dev.std(ddof=1) / math.sqrt(n)
    sigma = np.cov(g.T)
    se_norm = math.sqrt(4 * delta @ sigma @ delta / n)  # |Ĝ|² − |δ|² ≈ 2 δ·(Ĝ − δ)
    assert abs(result.trace_sigma - pop_trace) < 4 * se_trace
    assert abs(result.grad_norm_sq - pop_norm) < 4 * se_norm + pop_trace / n  # (+ the plug-in bias)
    rel_se = math.hypot(se_trace / pop_trace, se_norm / pop_norm)
    assert result.b_simple == pytest.approx(d + 1, rel=4 * rel_se)
    assert 4 * rel_se < 0.1  # the check is not vacuous


def test_two_batch_estimator_converges_to_exact_noise_scale():
    model, x, y = linear_problem(n=64, d=5, seed=1)
    exact = gradient_noise_scale(model, half_mse, (x, y))
    est = gradient_noise_scale_two_batch(model, half_mse, (x, y), small_batch=4, big_batch=32, num_pairs=3000,
                                         seed=0)
    assert est.num_pairs == 3000 and est.small_norms_sq.shape == (3000,)
    assert est.cost.forward == 3000 * 32
    assert abs(est.trace_sigma - exact.trace_sigma) < 4 * est.trace_sigma_stderr
    assert abs(est.grad_norm_sq - exact.grad_norm_sq) < 4 * est.grad_norm_sq_stderr
    assert abs(est.b_simple - exact.b_simple) < 4 * est.b_simple_stderr
    assert est.b_simple_stderr < 0.1 * exact.b_simple  # the check is not vacuous


def test_two_batch_finite_population_correction_and_full_big_batch():
    """With B_big = N the big batch is the full gradient: corrected |G|² is exact per pair."""
    model, x, y = linear_problem(n=20, d=3, seed=2)
    exact = gradient_noise_scale(model, half_mse, (x, y))
    est = gradient_noise_scale_two_batch(model, half_mse, (x, y), small_batch=5, big_batch=20, num_pairs=3)
    assert est.grad_norm_sq == pytest.approx(exact.grad_norm_sq, rel=1e-10)
    assert est.grad_norm_sq_stderr < 1e-12
    raw = gradient_noise_scale_two_batch(model, half_mse, (x, y), small_batch=5, big_batch=20, num_pairs=3,
                                         finite_population=False)
    assert raw.trace_sigma == pytest.approx(est.trace_sigma, rel=1e-12)
    assert raw.grad_norm_sq == pytest.approx(est.grad_norm_sq - est.trace_sigma / 20, rel=1e-10)


def test_two_batch_draws_depend_on_seed_only():
    model, x, y = linear_problem(n=40, d=3)
    a = gradient_noise_scale_two_batch(model, half_mse, (x, y), 2, 8, num_pairs=5, seed=7)
    torch.manual_seed(123)  # the global RNG plays no part
    b = gradient_noise_scale_two_batch(model, half_mse, (x, y), 2, 8, num_pairs=5, seed=7)
    c = gradient_noise_scale_two_batch(model, half_mse, (x, y), 2, 8, num_pairs=5, seed=8)
    assert torch.equal(a.small_norms_sq, b.small_norms_sq) and a.b_simple == b.b_simple
    assert not torch.equal(a.small_norms_sq, c.small_norms_sq)


# implicit gradient regularizer ------------------------------------------------------------


def test_implicit_gradient_regularizer_closed_form():
    model, x, y = linear_problem(n=30, d=5, bias=True)
    grad = closed_form_grads(model, x, y).mean(axis=0)
    data = [(x[:7], y[:7]), (x[7:], y[7:])]
    result = implicit_gradient_regularizer(model, half_mse, data)
    assert result.num_params == 6
    assert result.r_ig == pytest.approx(np.mean(grad ** 2), rel=1e-12)
    assert result.grad_norm_sq == pytest.approx(grad @ grad, rel=1e-12)
    residual = x.numpy() @ model.weight.detach().numpy()[0] + 0.3 - y.numpy()
    assert result.loss == pytest.approx(0.5 * np.mean(residual ** 2), rel=1e-12)
    assert result.modified_loss(0.1) == pytest.approx(result.loss + 0.1 / 4 * (grad @ grad), rel=1e-12)
    # batch_size only changes the chunking
    chunked = implicit_gradient_regularizer(model, half_mse, (x, y), batch_size=4)
    assert chunked.r_ig == pytest.approx(result.r_ig, rel=1e-12)


# SGD modified loss ------------------------------------------------------------------------


@pytest.mark.parametrize("n,batch_size", [(50, 8), (48, 8)])
def test_sgd_terms_match_explicit_partition(n, batch_size):
    model, loss_fn, x, y = small_net(n=n)
    data = [(x[:20], y[:20]), (x[20:], y[20:])]
    result = sgd_modified_loss_terms(model, loss_fn, data, batch_size=batch_size, seed=5, chunk_size=7)

    model.eval()
    full = flat_grad(model, loss_fn(model(x), y))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5))
    m = n // batch_size
    norms, devs = [], []
    for k in range(m):
        idx = perm[k * batch_size:(k + 1) * batch_size]
        gk = flat_grad(model, loss_fn(model(x[idx]), y[idx]))
        norms.append(float(gk @ gk))
        devs.append(float((gk - full) @ (gk - full)))
    assert result.num_batches == m and result.num_dropped == n - m * batch_size
    assert result.grad_norm_sq == pytest.approx(float(full @ full), rel=1e-12)
    assert result.loss == pytest.approx(float(loss_fn(model(x), y).detach()), rel=1e-12)
    np.testing.assert_allclose(result.minibatch_grad_norms_sq.numpy(), norms, rtol=1e-12)
    np.testing.assert_allclose(result.minibatch_deviations_sq.numpy(), devs, rtol=1e-10)
    assert result.mean_minibatch_grad_norm_sq == pytest.approx(np.mean(norms), rel=1e-12)
    assert result.variance_term == pytest.approx(np.mean(devs), rel=1e-10)
    if n % batch_size == 0:  # (1/m)Σ|∇L_k|² = |∇L|² + (1/m)Σ|∇L_k − ∇L|² for a full partition
        assert result.mean_minibatch_grad_norm_sq == pytest.approx(result.grad_norm_sq + result.variance_term,
                                                                   rel=1e-10)
    assert result.modified_loss(0.2) == pytest.approx(result.loss + 0.05 * np.mean(norms), rel=1e-12)


def test_sgd_expected_variance_exact_by_enumeration():
    """Tiny N: average |∇L_S − ∇L|² over every B-subset S equals the closed form."""
    model, x, y = linear_problem(n=7, d=3, bias=True)
    g = closed_form_grads(model, x, y)
    G = g.mean(axis=0)
    exact = np.mean([np.sum((g[list(s)].mean(axis=0) - G) ** 2) for s in itertools.combinations(range(7), 3)])
    result = sgd_modified_loss_terms(model, half_mse, (x, y), batch_size=3)
    assert result.expected_variance_term == pytest.approx(exact, rel=1e-12)
    assert result.per_example_variance == pytest.approx(np.mean(np.sum((g - G) ** 2, axis=1)), rel=1e-12)


def test_sgd_expected_variance_matches_monte_carlo_over_partitions():
    n, batch_size, reps = 40, 6, 4000
    model, x, y = linear_problem(n=n, d=4, seed=4)
    result = sgd_modified_loss_terms(model, half_mse, (x, y), batch_size=batch_size, seed=0)
    g = closed_form_grads(model, x, y)
    G = g.mean(axis=0)
    rng = np.random.default_rng(0)
    m = n // batch_size
    samples = []
    for _ in range(reps):
        batches = rng.permutation(n)[: m * batch_size].reshape(m, batch_size)
        samples.append(np.mean(np.sum((g[batches].mean(axis=1) - G) ** 2, axis=1)))
    samples = np.array(samples)
    se = samples.std(ddof=1) / math.sqrt(reps)
    assert abs(samples.mean() - result.expected_variance_term) < 4 * se
    assert 4 * se < 0.05 * result.expected_variance_term  # not vacuous
    # and the measure's own sampled term is one such draw: same order of magnitude
    assert 0.2 < result.variance_term / result.expected_variance_term < 5


def test_sgd_full_batch_has_no_variance():
    model, x, y = linear_problem(n=12, d=3)
    result = sgd_modified_loss_terms(model, half_mse, (x, y), batch_size=12)
    assert result.expected_variance_term == 0.0
    assert result.variance_term < 1e-25
    assert result.mean_minibatch_grad_norm_sq == pytest.approx(result.grad_norm_sq, rel=1e-12)


# no side effects, errors ------------------------------------------------------------------


MEASURES = {
    "per_example": lambda m, l, x, y: per_example_gradients(m, l, x, y, chunk_size=4),
    "r_ig": lambda m, l, x, y: implicit_gradient_regularizer(m, l, (x, y)),
    "sgd": lambda m, l, x, y: sgd_modified_loss_terms(m, l, (x, y), batch_size=3, seed=1),
    "gns": lambda m, l, x, y: gradient_noise_scale(m, l, (x, y), chunk_size=4),
    "gns_two_batch": lambda m, l, x, y: gradient_noise_scale_two_batch(m, l, (x, y), 2, 6, num_pairs=3),
}


@pytest.mark.parametrize("name", list(MEASURES))
@pytest.mark.parametrize("training", [True, False])
def test_no_side_effects(name, training):
    model, loss_fn, x, y = small_net()
    model.train(training)
    for p in model.parameters():
        p.grad = torch.full_like(p, 7.0)
    sentinels = [p.grad for p in model.parameters()]
    params = [p.detach().clone() for p in model.parameters()]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    rng = torch.get_rng_state()

    result = MEASURES[name](model, loss_fn, x, y)

    assert model.training is training
    assert all(m.training is training for m in model.modules())
    for p, s, v in zip(model.parameters(), sentinels, params):
        assert p.grad is s and bool((p.grad == 7.0).all())
        assert torch.equal(p.detach(), v) and p.requires_grad
    for k, v in model.named_buffers():
        assert torch.equal(v, buffers[k]), k
    assert torch.equal(torch.get_rng_state(), rng)
    assert result.cost.forward > 0 and result.cost.backward > 0 and result.cost.seconds > 0


def test_bad_arguments_raise_config_error():
    model, x, y = linear_problem(n=10, d=3)
    with pytest.raises(ConfigError, match="chunk_size"):
        per_example_gradients(model, half_mse, x, y, chunk_size=0)
    with pytest.raises(ConfigError, match="batch_size"):
        sgd_modified_loss_terms(model, half_mse, (x, y), batch_size=11)
    with pytest.raises(ConfigError, match="batch_size"):
        sgd_modified_loss_terms(model, half_mse, (x, y), batch_size=0)
    with pytest.raises(ConfigError, match="seed"):
        sgd_modified_loss_terms(model, half_mse, (x, y), batch_size=2, seed=1.5)
    with pytest.raises(ConfigError, match="small_batch"):
        gradient_noise_scale_two_batch(model, half_mse, (x, y), small_batch=4, big_batch=4)
    with pytest.raises(ConfigError, match="big_batch"):
        gradient_noise_scale_two_batch(model, half_mse, (x, y), small_batch=2, big_batch=11)
    with pytest.raises(ConfigError, match="num_pairs"):
        gradient_noise_scale_two_batch(model, half_mse, (x, y), 2, 4, num_pairs=0)
    with pytest.raises(ConfigError, match="at least 2 examples"):
        gradient_noise_scale(model, half_mse, (x[:1], y[:1]))
    frozen = nn.Linear(3, 1).to(F64).requires_grad_(False)
    with pytest.raises(ConfigError, match="no trainable parameters"):
        implicit_gradient_regularizer(frozen, half_mse, (x, y))
    assert not frozen.weight.requires_grad
