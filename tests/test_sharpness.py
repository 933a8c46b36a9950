"""Keskar sharpness, perturbation sensitivity and PAC-Bayes flatness against exact answers:
box vertices of convex quadratics, closed-form Gaussian expectations, and the analytic
accuracy of a linear classifier under isotropic noise."""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from overparam.errors import ConfigError
from overparam.measures.sharpness import keskar_sharpness, pac_bayes_flatness, perturbation_sensitivity

F64 = torch.float64


class Quadratic(nn.Module):
    """Outputs its parameter (flattened, shape ``shape``); with ``quadratic_loss`` the mean loss
    is f(θ) = ½ (θ − c)^T H (θ − c) exactly, whatever the batching."""

    def __init__(self, theta, shape=None) -> None:
        super().__init__()
        theta = torch.as_tensor(theta, dtype=F64)
        self.theta = nn.Parameter(theta.reshape(shape) if shape is not None else theta.clone())

    def forward(self, x):
        return self.theta.reshape(1, -1).expand(len(x), -1)


def quadratic_loss(h, c):
    h, c = torch.as_tensor(h, dtype=F64), torch.as_tensor(c, dtype=F64)

    def loss_fn(out, y):
        d = out[0] - c
        return 0.5 * d @ h @ d

    return loss_fn


def dummy_data(n=6):
    return torch.zeros(n, 1, dtype=F64), torch.zeros(n)


def random_spd(dim, eigenvalues, seed):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    return (q * torch.tensor(eigenvalues, dtype=F64)) @ q.T


def box_vertex_maximum(f, center, radius):
    """Max of f over the vertices of the box center ± radius, and the number of vertices that
    are local maxima (KKT: every coordinate's gradient points out of the box)."""
    best, kkt = -math.inf, 0
    for signs in itertools.product((-1.0, 1.0), repeat=len(radius)):
        s = np.array(signs)
        value, grad = f(center + s * radius)
        best = max(best, value)
        kkt += bool(np.all(grad * s > 0))
    return best, kkt


# --------------------------------------------------------------------------------------------- Keskar


def test_keskar_full_space_matches_the_best_box_vertex_of_a_convex_quadratic():
    h = random_spd(4, [3.0, 2.0, 1.0, 0.5], seed=1).numpy()
    theta = np.array([0.8, -0.5, 0.3, 1.2])
    c = np.array([0.2, 0.1, -0.4, 0.9])
    eps = 0.1
    radius = eps * (np.abs(theta) + 1)

    def f(t):
        d = t - c
        return 0.5 * d @ h @ d, h @ d

    f0 = f(theta)[0]
    fmax, kkt = box_vertex_maximum(f, theta, radius)
    assert kkt == 1  # the maximum is the only local maximum in the box: L-BFGS-B must find it
    exact = 100 * (fmax - f0) / (1 + f0)
    model = Quadratic(theta)
    for init in ("corner", "random", "zero"):
        result = keskar_sharpness(model, quadratic_loss(h, c), dummy_data(), epsilon=eps, max_iter=50, init=init)
        assert result.value == pytest.approx(exact, rel=1e-6), init
        assert result.loss == pytest.approx(f0, rel=1e-12)
        assert result.max_loss == pytest.approx(fmax, rel=1e-9)
        # θ and the corner with gradients, 8 random vertices forward only, then L-BFGS-B's
        # evaluations less those at θ or the corner (reused)
        fresh = result.evaluations - result.cost.extra["reused_evaluations"]
        assert result.cost.forward == 6 * (2 + 8 + fresh) and result.cost.backward == 6 * (2 + fresh)


def test_keskar_at_the_minimum_finds_the_steepest_vertex_whatever_the_init():
    # θ = c is a critical point: from y = 0 L-BFGS-B cannot move; from a random start it can,
    # and the first-order corner (all +1 where the gradient is exactly 0) is a vertex already.
    # With H diagonal and θ = c every vertex has the same value ½ Σ_i h_i r_i², so whichever
    # vertex is reached is the maximum
    h = np.diag([4.0, 0.1, 0.1])
    theta = np.zeros(3)
    eps = 1e-3
    radius = eps * (np.abs(theta) + 1)

    def f(t):
        return 0.5 * t @ h @ t, h @ t

    fmax, _ = box_vertex_maximum(f, theta, radius)
    model = Quadratic(theta)
    result = keskar_sharpness(model, quadratic_loss(h, theta), dummy_data(), epsilon=eps, max_iter=50)
    assert result.value == pytest.approx(100 * fmax, rel=1e-6)  # f(θ) = 0
    assert result.corner_value == pytest.approx(fmax, rel=1e-12) and result.start == "corner"
    rand = keskar_sharpness(model, quadratic_loss(h, theta), dummy_data(), epsilon=eps, max_iter=50, init="random")
    assert rand.value == pytest.approx(100 * fmax, rel=1e-6) and rand.start == "random"
    stuck = keskar_sharpness(model, quadratic_loss(h, theta), dummy_data(), epsilon=eps, init="zero")
    assert stuck.start == "theta" and stuck.iterations == 0  # L-BFGS-B did not move from θ ...
    assert stuck.value == pytest.approx(100 * fmax, rel=1e-12) and stuck.found_by == "corner"  # ... the corner did


def test_keskar_in_an_explicit_subspace_matches_the_vertex_enumeration():
    h = random_spd(5, [2.0, 1.5, 1.0, 0.7, 0.3], seed=3).numpy()
    gen = np.random.default_rng(0)
    theta = gen.normal(size=5)
    c = theta + gen.normal(size=5)
    a = gen.normal(size=(5, 3))
    eps = 0.2
    coords = np.linalg.pinv(a) @ theta
    radius = eps * (np.abs(coords) + 1)

    def g(y):  # f(θ + A y) and its y-gradient
        d = theta + a @ y - c
        return 0.5 * d @ h @ d, a.T @ (h @ d)

    gmax, kkt = box_vertex_maximum(g, np.zeros(3), radius)
    assert kkt == 1
    f0 = g(np.zeros(3))[0]
    result = keskar_sharpness(Quadratic(theta), quadratic_loss(h, c), dummy_data(), epsilon=eps,
                              basis=torch.from_numpy(a), max_iter=50)
    assert result.subspace_dim == 3
    assert result.value == pytest.approx(100 * (gmax - f0) / (1 + f0), rel=1e-6)


def test_keskar_on_a_network_with_uneven_batches_and_a_random_subspace():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    sub = keskar_sharpness(model, nn.functional.cross_entropy, (x, y), subspace_dim=5, seed=1)
    assert sub.subspace_dim == 5 and sub.value >= 0 and sub.iterations <= 10
    full = keskar_sharpness(model, nn.functional.cross_entropy, [(x[:20], y[:20]), (x[20:], y[20:])])
    assert full.value > 0
    exact_loss = nn.functional.cross_entropy(model(x), y).item()
    assert full.loss == pytest.approx(exact_loss, rel=1e-6)  # batches weighted 2:1


class PartlyUsed(nn.Module):
    """Output depends on ``used`` only; ``ignored`` never enters the computation."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Parameter(torch.tensor([1.0, -2.0], dtype=F64))
        self.ignored = nn.Parameter(torch.tensor([0.5, 3.0, -1.0], dtype=F64))

    def forward(self, x):
        return x @ self.used


def test_sharpness_is_zero_when_only_parameters_the_loss_ignores_are_perturbed():
    model = PartlyUsed()
    model.used.requires_grad_(False)  # perturb only `ignored`
    x = torch.randn(8, 2, dtype=F64)
    data = (x, torch.randn(8, dtype=F64))
    loss_fn = nn.functional.mse_loss
    assert keskar_sharpness(model, loss_fn, data, epsilon=0.5).value == 0.0
    sens = perturbation_sensitivity(model, loss_fn, data, [0.1, 1.0], num_draws=5, relative="none")
    assert sens.mean_increase == [0.0, 0.0] and sens.stderr == [0.0, 0.0]
    assert not model.used.requires_grad and model.ignored.requires_grad  # flags restored


def test_sharpness_of_a_constant_loss_is_zero():
    model = Quadratic([1.0, 2.0])

    def constant(out, y):
        return 0.0 * out.sum() + 3.0

    assert keskar_sharpness(model, constant, dummy_data()).value == 0.0
    assert perturbation_sensitivity(model, constant, dummy_data(), 1.0, num_draws=3).mean_increase == [0.0]


# --------------------------------------------------------------------------------------------- Keskar: candidates


def box_radius(model, eps):
    """The full-space half-widths r = ε(|θ| + 1) in float64, θ flat in parameters() order."""
    return eps * (torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double().abs() + 1)


def loss_at_vertex(model, loss_fn, data, radius, signs):
    """f(θ + r ⊙ s) and its z-gradient r ⊙ ∇f, on a deep copy (the model is left alone)."""
    probe = copy.deepcopy(model)
    params = list(probe.parameters())
    with torch.no_grad():
        offset = 0
        for p in params:
            k = p.numel()
            p.add_((radius[offset:offset + k] * signs[offset:offset + k]).to(p.dtype).reshape(p.shape))
            offset += k
    x, y = data
    loss = loss_fn(probe(x), y)
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).double()
    return float(loss.detach().double()), grad * radius


def enumerate_vertices(model, loss_fn, data, eps):
    """Max of f over all 2^p box vertices and the number of them that are local maxima (KKT)."""
    radius = box_radius(model, eps)
    best, kkt = -math.inf, 0
    for signs in itertools.product((-1.0, 1.0), repeat=radius.numel()):
        s = torch.tensor(signs, dtype=F64)
        value, grad = loss_at_vertex(model, loss_fn, data, radius, s)
        best = max(best, value)
        kkt += bool(torch.all(grad * s > 0))
    return best, kkt


def phi(value, f0):
    return 100 * (value - f0) / (1 + f0)


def linear_problem(loss_name, seed=0, dtype=F64):
    """nn.Linear(3, 2) (8 parameters): the loss is convex in the parameters for MSE and for
    cross-entropy on the logits, so its box maximum is a vertex."""
    torch.manual_seed(seed)
    model = nn.Linear(3, 2).to(dtype)
    x = torch.randn(20, 3, dtype=dtype)
    if loss_name == "mse":
        return model, nn.functional.mse_loss, (x, torch.randn(20, 2, dtype=dtype))
    return model, nn.functional.cross_entropy, (x, torch.randint(0, 2, (20,)))


@pytest.mark.parametrize("loss_name, eps", [("mse", 0.05), ("cross_entropy", 0.2)])
def test_keskar_equals_the_vertex_enumeration_of_a_convex_linear_model(loss_name, eps):
    model, loss_fn, data = linear_problem(loss_name)
    fmax, kkt = enumerate_vertices(model, loss_fn, data, eps)
    assert kkt == 1  # a single local maximum in the box: it is the global one, a maximizer must find it
    f0 = float(loss_fn(model(data[0]), data[1]).detach())
    for init in ("corner", "random", "zero"):
        result = keskar_sharpness(model, loss_fn, data, epsilon=eps, init=init)
        assert result.max_loss == pytest.approx(fmax, rel=1e-12), init
        assert result.value == pytest.approx(phi(fmax, f0), rel=1e-9), init


def test_keskar_on_a_tiny_nonconvex_mlp_beats_every_candidate_it_tried():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(2, 2), nn.Tanh(), nn.Linear(2, 1)).double()  # 9 parameters
    x = torch.randn(30, 2, dtype=F64)
    data = (x, torch.sin(3 * x[:, :1]) + 0.1 * torch.randn(30, 1, dtype=F64))
    loss_fn, eps, seed = nn.functional.mse_loss, 0.1, 5
    f0 = float(loss_fn(model(x), data[1]).detach())
    radius = box_radius(model, eps)
    _, grad0 = loss_at_vertex(model, loss_fn, data, radius, torch.zeros_like(radius))
    corner = torch.where(grad0 < 0, -1.0, 1.0).double()
    corner_value, _ = loss_at_vertex(model, loss_fn, data, radius, corner)
    # the random vertices: iid ±1 from the seed's generator, as the docstring says
    gen = torch.Generator().manual_seed(seed)
    vertices = [torch.randint(0, 2, (radius.numel(),), generator=gen, dtype=F64) * 2 - 1 for _ in range(8)]
    vertex_value = max(loss_at_vertex(model, loss_fn, data, radius, v)[0] for v in vertices)

    result = keskar_sharpness(model, loss_fn, data, epsilon=eps, seed=seed)
    assert result.corner_value == pytest.approx(corner_value, rel=1e-12)
    assert result.vertex_value == pytest.approx(vertex_value, rel=1e-12)
    assert result.max_loss >= max(corner_value, vertex_value, f0)
    assert result.value >= phi(max(corner_value, vertex_value), f0) >= 0
    assert result.value >= 0 and result.start in ("corner", "vertex")


def test_keskar_on_a_briefly_trained_mlp_is_at_least_its_first_order_corner():
    """The reported failure: large-batch training, ε = 1e-3, float32. A random start and 10
    L-BFGS-B iterations returned ~0 % while the corner y = r ⊙ sign(∇f) is several % higher."""
    from overparam import data as datasets
    from overparam.models import MLP

    ds = datasets.load("mnist1d", n_train=512, n_test=10, seed=0)
    x, y = ds.x_train, ds.y_train
    torch.manual_seed(0)
    model = MLP(40, 64, 2, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(30):  # full batch
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    loss_fn, eps = nn.functional.cross_entropy, 1e-3
    f0 = float(loss_fn(model(x), y).detach())
    radius = box_radius(model, eps)
    _, grad0 = loss_at_vertex(model, loss_fn, (x, y), radius, torch.zeros_like(radius))
    corner_value, _ = loss_at_vertex(model, loss_fn, (x, y), radius, torch.where(grad0 < 0, -1.0, 1.0).double())
    corner_phi = phi(corner_value, f0)
    assert corner_phi > 0.5  # the first-order gain is large here

    result = keskar_sharpness(model, loss_fn, (x, y), epsilon=eps)
    assert result.loss == pytest.approx(f0, rel=1e-6)
    assert result.corner_value == pytest.approx(corner_value, rel=1e-6)
    assert result.value >= corner_phi * (1 - 1e-5) and result.value > 0
    assert result.start == "corner" and result.found_by in ("corner", "lbfgsb")
    # whatever the init, the candidates' maximum stays in the result
    for init in ("random", "zero"):
        other = keskar_sharpness(model, loss_fn, (x, y), epsilon=eps, init=init)
        assert other.value >= corner_phi * (1 - 1e-5), init


def test_keskar_float32_and_float64_agree():
    # the convex linear model of the enumeration test (one local maximum): both precisions
    # must reach the same vertex; float32 losses carry ~1e-7 relative rounding, so φ (a
    # difference of losses ~0.3 apart) agrees to ~1e-6 relative; we allow 1e-4
    model64, loss_fn, (x, y) = linear_problem("cross_entropy")
    model32 = copy.deepcopy(model64).float()
    r64 = keskar_sharpness(model64, loss_fn, (x, y), epsilon=0.2)
    r32 = keskar_sharpness(model32, loss_fn, (x.float(), y), epsilon=0.2)
    assert r32.value == pytest.approx(r64.value, rel=1e-4)
    assert r32.corner_value == pytest.approx(r64.corner_value, rel=1e-6)


def test_keskar_leaves_the_parameters_bit_identical():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    with torch.no_grad():  # values whose bits a subtract-to-undo restore would change
        model[0].weight[0, 0] = -0.0
        model[0].bias[1] = 1e-310  # subnormal
        model[2].weight[1, 2] = 0.1 + 0.2
    before = [p.detach().clone().view(torch.int64) for p in model.parameters()]
    x, y = torch.randn(10, 3, dtype=F64), torch.randint(0, 2, (10,))
    for init in ("corner", "random", "zero"):
        keskar_sharpness(model, nn.functional.cross_entropy, (x, y), epsilon=0.05, init=init, num_vertices=3)
        keskar_sharpness(model, nn.functional.cross_entropy, (x, y), subspace_dim=3, init=init)
        for p, b in zip(model.parameters(), before):
            assert torch.equal(p.detach().view(torch.int64), b), init


def test_keskar_without_random_vertices_and_a_bad_count():
    model, loss_fn, data = linear_problem("mse")
    result = keskar_sharpness(model, loss_fn, data, num_vertices=0)
    assert math.isnan(result.vertex_value) and result.cost.extra["candidates"] == 1
    assert result.value >= phi(result.corner_value, result.loss)
    with pytest.raises(ConfigError, match="num_vertices must be an integer >= 0, got -1"):
        keskar_sharpness(model, loss_fn, data, num_vertices=-1)


# --------------------------------------------------------------------------------------------- sensitivity


def test_absolute_perturbations_match_half_sigma_squared_trace():
    h = random_spd(4, [3.0, 1.0, 0.5, 0.2], seed=5)
    theta, c = torch.tensor([0.3, -0.2, 0.5, 0.1]), torch.tensor([0.0, 0.1, 0.4, -0.3])
    sigmas = [0.05, 0.2]
    result = perturbation_sensitivity(Quadratic(theta), quadratic_loss(h, c), dummy_data(2), sigmas, num_draws=3000,
                                      relative="none", seed=2)
    for sigma, mean, se in zip(sigmas, result.mean_increase, result.stderr):
        exact = 0.5 * sigma**2 * torch.trace(h).item()
        assert abs(mean - exact) < 4 * se, (sigma, mean, exact, se)
    assert result.cost.forward == 2 * (1 + 3000 * 2)


def test_layer_relative_perturbations_scale_with_the_layer_norm():
    h = random_spd(3, [2.0, 1.0, 0.5], seed=6)
    theta = torch.tensor([1.0, -2.0, 0.5])
    result = perturbation_sensitivity(Quadratic(theta), quadratic_loss(h, theta), dummy_data(2), 0.1, num_draws=3000)
    # δ ~ N(0, σ² ||θ||²/n I): E[½ δ^T H δ] = ½ σ² ||θ||²/n tr(H)
    exact = 0.5 * 0.01 * theta.norm().item() ** 2 / 3 * torch.trace(h).item()
    assert abs(result.mean_increase[0] - exact) < 4 * result.stderr[0]


def test_filter_normalized_perturbations_have_each_row_norm_fixed():
    rows, k = 3, 4
    theta = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5], [3.0, -1.0, 0.0, 2.0]])
    h = random_spd(rows * k, np.linspace(0.2, 3.0, rows * k).tolist(), seed=7)
    model = Quadratic(theta, shape=(rows, k))
    sigma = 0.1
    result = perturbation_sensitivity(model, quadratic_loss(h, theta.reshape(-1)), dummy_data(2), sigma,
                                      num_draws=3000, relative="filter", seed=3)
    # δ_r = σ ||θ_r|| u_r, u_r uniform on the sphere: E[δ_r δ_r^T] = σ² ||θ_r||² / k I
    exact = sum(0.5 * sigma**2 * theta[r].norm().item() ** 2 / k * torch.trace(h[r * k:(r + 1) * k, r * k:(r + 1) * k])
                .item() for r in range(rows))
    assert abs(result.mean_increase[0] - exact) < 4 * result.stderr[0]


def test_filter_mode_leaves_biases_alone_and_draws_rows_of_exact_norm():
    layer = nn.Linear(5, 3).double()
    captured = []

    def loss_fn(out, y):  # record the perturbation of weight and bias seen in each call
        captured.append((layer.weight.detach().clone(), layer.bias.detach().clone()))
        return out.sum() * 0

    w0, b0 = layer.weight.detach().clone(), layer.bias.detach().clone()
    perturbation_sensitivity(layer, loss_fn, (torch.zeros(2, 5, dtype=F64), torch.zeros(2)), 0.3, num_draws=4,
                             relative="filter")
    for w, b in captured[1:]:
        assert torch.equal(b, b0)
        torch.testing.assert_close((w - w0).norm(dim=1), 0.3 * w0.norm(dim=1), rtol=1e-12, atol=0)


def test_measures_have_no_side_effects():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))
    x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
    model.train()
    sentinel = [torch.full_like(p, 7.0) for p in model.parameters()]
    for p, s in zip(model.parameters(), sentinel):
        p.grad = s.clone()
    before = [p.detach().clone() for p in model.parameters()]
    buffers = [b.clone() for b in model.buffers()]
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    keskar_sharpness(model, nn.functional.cross_entropy, (x, y), epsilon=5e-4)
    keskar_sharpness(model, nn.functional.cross_entropy, (x, y), subspace_dim=4)
    perturbation_sensitivity(model, nn.functional.cross_entropy, (x, y), [0.01, 0.1], num_draws=3)
    perturbation_sensitivity(model, nn.functional.cross_entropy, (x, y), 0.1, num_draws=2, relative="filter")
    pac_bayes_flatness(model, (x, y), num_draws=2, rtol=0.2)
    pac_bayes_flatness(model, (x, y), magnitude_aware=True, num_draws=2, rtol=0.2)
    assert torch.equal(torch.rand(1), expected_next)
    assert model.training
    for p, b, s in zip(model.parameters(), before, sentinel):
        assert torch.equal(p.detach(), b) and torch.equal(p.grad, s)  # bit-identical
    for b, b0 in zip(model.buffers(), buffers):
        assert torch.equal(b, b0)  # eval mode: BatchNorm statistics untouched


def test_float32_models_work_and_are_restored_exactly():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    x, y = torch.randn(16, 3), torch.randint(0, 2, (16,))
    before = [p.detach().clone() for p in model.parameters()]
    k = keskar_sharpness(model, nn.functional.cross_entropy, (x, y))
    s = perturbation_sensitivity(model, nn.functional.cross_entropy, (x, y), [0.0, 0.5], num_draws=4)
    assert k.value >= 0 and s.mean_increase[0] == 0.0
    for p, b in zip(model.parameters(), before):
        assert p.dtype == torch.float32 and torch.equal(p.detach(), b)


def test_bad_arguments_are_named():
    model, data = Quadratic([1.0, 2.0]), dummy_data()
    loss = quadratic_loss(torch.eye(2), torch.zeros(2))
    with pytest.raises(ConfigError, match="epsilon must be a finite number > 0, got -1"):
        keskar_sharpness(model, loss, data, epsilon=-1)
    with pytest.raises(ConfigError, match="subspace_dim=3 exceeds the number of parameters 2"):
        keskar_sharpness(model, loss, data, subspace_dim=3)
    with pytest.raises(ConfigError, match="unknown init 'ones'"):
        keskar_sharpness(model, loss, data, init="ones")
    with pytest.raises(ConfigError, match="unknown relative mode 'unit'"):
        perturbation_sensitivity(model, loss, data, 0.1, relative="unit")
    with pytest.raises(ConfigError, match="each sigma must be a finite number >= 0, got -0.1"):
        perturbation_sensitivity(model, loss, data, [0.1, -0.1])
    with pytest.raises(ConfigError, match="target_drop must be in"):
        pac_bayes_flatness(model, data, target_drop=1.5)
    with pytest.raises(ConfigError, match="bracket must be a pair"):
        pac_bayes_flatness(model, data, bracket=(1.0, 0.5))


# --------------------------------------------------------------------------------------------- PAC-Bayes


def independent_examples_problem(d=1000, a=0.01, two_class=False):
    """A bias-free linear classifier on the d standard basis vectors, all labelled 1. Under
    θ + u the examples' outcomes are independent: example i is correct iff a + u_i > 0
    (one output), or iff a + u_{1,i} − u_{0,i} > 0 (two outputs, w_0 = 0, w_1 = a·1)."""
    if two_class:
        model = nn.Linear(d, 2, bias=False).double()
        with torch.no_grad():
            model.weight.zero_()
            model.weight[1].fill_(a)
    else:
        model = nn.Linear(d, 1, bias=False).double()
        with torch.no_grad():
            model.weight.fill_(a)
    return model, (torch.eye(d, dtype=F64), torch.ones(d, dtype=torch.long))


def test_pac_bayes_sigma_matches_the_analytic_crossing():
    a, z = 0.01, norm.ppf(0.9)  # P(correct) = Φ(a/σ) = 0.9 at σ* = a/z
    model, data = independent_examples_problem(a=a)
    result = pac_bayes_flatness(model, data, target_drop=0.1, num_draws=40, rtol=0.005, seed=4)
    assert result.accuracy == 1.0 and result.bracketed
    assert result.sigma == pytest.approx(a / z, rel=0.03)
    lo, hi = result.bracket
    assert hi - lo <= 0.005 * hi and lo <= result.sigma <= hi
    # every point of the accuracy curve is an unbiased estimate of Φ(a/σ)
    assert result.curve[0] == (0.0, 1.0, 0.0)
    for sigma, acc, _ in result.curve[1:]:
        p = norm.cdf(a / sigma)
        assert abs(acc - p) < 5 * math.sqrt(p * (1 - p) / (1000 * 40)) + 1e-12, (sigma, acc, p)
    # bound terms by hand (θ₀ = 0): ||θ||² / (4σ'²) + log(m/δ) + 10
    w2 = 1000 * a**2
    assert result.complexity == pytest.approx(w2 / (4 * result.sigma**2), rel=1e-12)
    assert result.bound == pytest.approx(w2 / (4 * result.sigma**2) + math.log(1000 / 0.05) + 10, rel=1e-12)
    assert result.flatness == pytest.approx(1 / result.sigma**2, rel=1e-12)
    assert result.kl == pytest.approx(w2 / (2 * result.sigma**2), rel=1e-12)
    assert result.cost.forward == 1000 * (1 + 40 * (len(result.curve) - 1))


def test_pac_bayes_uses_argmax_for_several_classes():
    a = 0.01  # the logit difference has noise variance 2σ²: Φ(a / (σ√2)) = 0.9
    model, data = independent_examples_problem(a=a, two_class=True)
    result = pac_bayes_flatness(model, data, num_draws=40, rtol=0.005, seed=5)
    assert result.sigma == pytest.approx(a / (math.sqrt(2) * norm.ppf(0.9)), rel=0.03)


def test_magnitude_aware_sigma_and_bound_match_closed_forms():
    a, eps, z = 0.01, 1e-3, norm.ppf(0.9)
    model, data = independent_examples_problem(a=a)
    # u_i ~ N(0, σ'² a² + ε²): Φ(a / sqrt(σ'² a² + ε²)) = 0.9
    exact = math.sqrt((a / z) ** 2 - eps**2) / a
    result = pac_bayes_flatness(model, data, magnitude_aware=True, num_draws=40, rtol=0.005, seed=6)
    assert result.sigma == pytest.approx(exact, rel=0.03)
    s = result.sigma
    omega, w = 1000, np.full(1000, a)
    by_hand = 0.25 * np.sum(np.log((eps**2 + (s**2 + 1) * np.sum(w**2) / omega) / (eps**2 + s**2 * w**2)))
    assert result.complexity == pytest.approx(by_hand, rel=1e-10)
    assert result.kl == pytest.approx(2 * by_hand, rel=1e-10)  # θ₀ = 0: the printed formula is KL/2
    assert result.bound == pytest.approx(by_hand + math.log(1000 / 0.05) + 10, rel=1e-10)


def test_pac_bayes_distance_from_init_and_bracket_expansion():
    a = 0.5  # σ* = a/z ≈ 0.39; start with a bracket that is too small so it must expand
    model, data = independent_examples_problem(d=400, a=a)
    init = [torch.full((1, 400), 0.2, dtype=F64)]
    result = pac_bayes_flatness(model, data, init_params=init, bracket=(0.0, 0.05), num_draws=20, rtol=0.01)
    assert result.bracketed and result.sigma == pytest.approx(a / norm.ppf(0.9), rel=0.05)
    assert result.complexity == pytest.approx(400 * 0.3**2 / (4 * result.sigma**2), rel=1e-12)
    capped = pac_bayes_flatness(model, data, bracket=(0.0, 0.01), max_expansions=2, num_draws=5)
    assert not capped.bracketed and capped.sigma == 0.04  # 0.01 -> 0.02 -> 0.04, all still within the target


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_the_closed_forms():
    h = random_spd(4, [3.0, 2.0, 1.0, 0.5], seed=1)
    theta, c = torch.tensor([0.8, -0.5, 0.3, 1.2]), torch.tensor([0.2, 0.1, -0.4, 0.9])
    cpu = keskar_sharpness(Quadratic(theta), quadratic_loss(h, c), dummy_data(), epsilon=0.1, max_iter=50)
    gpu_h, gpu_c = h.cuda(), c.cuda()

    def gpu_loss(out, y):
        d = out[0] - gpu_c
        return 0.5 * d @ gpu_h @ d

    x, y = dummy_data()
    model = Quadratic(theta).cuda()
    gpu = keskar_sharpness(model, gpu_loss, (x.cuda(), y.cuda()), epsilon=0.1, max_iter=50)
    assert gpu.value == pytest.approx(cpu.value, rel=1e-6)
    sens = perturbation_sensitivity(model, gpu_loss, (x.cuda(), y.cuda()), 0.1, num_draws=2000, relative="none")
    assert abs(sens.mean_increase[0] - 0.005 * torch.trace(h).item()) < 4 * sens.stderr[0]
    clf, (xs, ys) = independent_examples_problem(a=0.01)
    result = pac_bayes_flatness(clf.float().cuda(), (xs.float().cuda(), ys.cuda()), num_draws=40, rtol=0.005)
    assert result.sigma == pytest.approx(0.01 / norm.ppf(0.9), rel=0.03)
    assert torch.equal(model.theta.detach().cpu(), theta.double())


def test_loss_along_line_matches_the_closed_form_of_a_linear_model():
    """Outputs are affine in the parameters, so f_{θ(α)} = (1 − α) f_a + α f_b exactly: the
    MSE along the line is computed from the two endpoint models' outputs alone."""
    from overparam.measures import loss_along_line

    torch.manual_seed(0)
    a, b = torch.nn.Linear(5, 3).double(), torch.nn.Linear(5, 3).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randn(40, 3, dtype=torch.float64)
    alphas = [-1.0, -0.25, 0.0, 0.5, 1.0, 1.7]
    result = loss_along_line(a, b, torch.nn.functional.mse_loss, [(x[:15], y[:15]), (x[15:], y[15:])], alphas)
    with torch.no_grad():
        out_a, out_b = a(x), b(x)
    expected = [float(((1 - t) * out_a + t * out_b - y).pow(2).mean()) for t in alphas]
    assert result.losses == pytest.approx(expected, rel=1e-12)
    assert all(math.isnan(acc) for acc in result.accuracies)  # regression: no accuracy
    assert result.cost.forward == 40 * len(alphas)
    before = [p.clone() for p in a.parameters()]
    loss_along_line(a, b, torch.nn.functional.mse_loss, (x, y), [0.3])
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), before))  # endpoints untouched


def test_loss_along_line_accuracy_at_the_endpoints_and_bad_input():
    from overparam.errors import ConfigError
    from overparam.measures import loss_along_line

    torch.manual_seed(1)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    x, y = torch.randn(30, 4), torch.randint(0, 3, (30,))
    result = loss_along_line(a, b, torch.nn.functional.cross_entropy, (x, y), [0.0, 1.0])
    with torch.no_grad():
        assert result.accuracies == [int((m(x).argmax(1) == y).sum()) / 30 for m in (a, b)]
        assert result.losses[1] == pytest.approx(float(torch.nn.functional.cross_entropy(b(x), y)), rel=1e-6)
    with pytest.raises(ConfigError, match="same parameter names"):
        loss_along_line(a, torch.nn.Linear(4, 2), torch.nn.functional.cross_entropy, (x, y), [0.5])
    with pytest.raises(ConfigError, match="alphas"):
        loss_along_line(a, b, torch.nn.functional.cross_entropy, (x, y), [])
