"""Kernel measures against exact or independent answers (float64).

- empirical_ntk: an explicit Jacobian built by one ``autograd.grad`` per (example, output),
  J J^T; both strategies, both calling conventions, traced outputs, chunking.
- analytic_ntk: the depth-1 closed form written out by hand; a special case with a known
  value; Monte Carlo over random wide networks (empirical NTK and output covariance).
- kernel_distance: identities and a 3x3 example done by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from overparam.errors import ConfigError
from overparam.measures.ntk import analytic_ntk, empirical_ntk, kernel_distance
from overparam.models import CNN1D, MLP

TOL = {"rtol": 1e-10, "atol": 1e-10}


def explicit_jacobian(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n k, P) Jacobian of the outputs w.r.t. the trainable parameters, row (i, a), by looping
    torch.autograd.grad over every output of every example."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = model(x).reshape(len(x), -1)
    rows = []
    for i in range(out.shape[0]):
        for a in range(out.shape[1]):
            grads = torch.autograd.grad(out[i, a], params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                                   for g, p in zip(grads, params)]))
    return torch.stack(rows)


def oracle(model, x1, x2=None, trace_outputs=False):
    """J(x1) J(x2)^T reshaped like empirical_ntk's output."""
    model.eval()
    x2 = x1 if x2 is None else x2
    j1, j2 = explicit_jacobian(model, x1), explicit_jacobian(model, x2)
    n1, n2 = len(x1), len(x2)
    k = j1.shape[0] // n1
    full = (j1 @ j2.T).view(n1, k, n2, k).permute(0, 2, 1, 3)
    if trace_outputs:
        return full.diagonal(dim1=2, dim2=3).sum(-1)
    return full[:, :, 0, 0] if k == 1 else full


class SharedLayer(nn.Module):
    """The same Linear applied twice: structure-friendly parameters but not one call per layer."""

    def __init__(self):
        super().__init__()
        self.inner = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "mlp_ntk":
        model = MLP(4, 6, 2, 3, parameterization="ntk", w_std=1.3, b_std=0.4, alpha=1.7)
    elif name == "mlp_standard":
        model = MLP(4, 5, 2, 3, parameterization="standard", w_std=1.2, b_std=0.5, activation="tanh")
        with torch.no_grad():  # standard biases start at 0 x b_std; make them nonzero
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))
    elif name == "linear_seq":
        model = nn.Sequential(nn.Linear(4, 5), nn.GELU(), nn.Linear(5, 5), nn.Softmax(dim=1), nn.Linear(5, 2))
    elif name == "mlp_scalar":
        model = MLP(4, 7, 1, 1, parameterization="ntk", b_std=0.2)
    elif name == "cnn1d":
        model = CNN1D(length=12, num_classes=3, channels=3)
    elif name == "shared":
        model = SharedLayer()
    else:
        raise KeyError(name)
    return model.double()


def inputs(n: int, d: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


DENSE_MODELS = ["mlp_ntk", "mlp_standard", "linear_seq", "mlp_scalar"]


@pytest.mark.parametrize("name", DENSE_MODELS + ["cnn1d", "shared"])
@pytest.mark.parametrize("method", ["auto", "structured", "jacobian"])
@pytest.mark.parametrize("given", [False, True])
@pytest.mark.parametrize("trace", [False, True])
def test_empirical_ntk_matches_explicit_jacobian(name, method, given, trace):
    model = make(name)
    d = 12 if name == "cnn1d" else 4
    x1 = inputs(5, d, seed=1)
    x2 = inputs(4, d, seed=2) if given else None
    if method == "structured" and name in ("cnn1d", "shared"):
        with pytest.raises(ConfigError, match="structured"):
            empirical_ntk(model, x1, x2, method=method, trace_outputs=trace)
        return
    got = empirical_ntk(model, x1, x2, method=method, trace_outputs=trace)
    want = oracle(model, x1, x2, trace_outputs=trace)
    assert got.shape == want.shape
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, **TOL)


def test_output_shapes():
    x1, x2 = inputs(5), inputs(3, seed=2)
    assert empirical_ntk(make("mlp_ntk"), x1, x2).shape == (5, 3, 3, 3)
    assert empirical_ntk(make("mlp_ntk"), x1, x2, trace_outputs=True).shape == (5, 3)
    assert empirical_ntk(make("mlp_scalar"), x1, x2).shape == (5, 3)
    assert empirical_ntk(make("mlp_scalar"), x1, x2, trace_outputs=True).shape == (5, 3)


@pytest.mark.parametrize("name", DENSE_MODELS)
@pytest.mark.parametrize("trace", [False, True])
def test_structured_equals_jacobian_float32(name, trace):
    model = make(name).float()
    x1, x2 = inputs(9).float(), inputs(6, seed=3).float()
    for b in (None, x2):
        s = empirical_ntk(model, x1, b, method="structured", trace_outputs=trace)
        j = empirical_ntk(model, x1, b, method="jacobian", trace_outputs=trace)
        torch.testing.assert_close(s, j, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["structured", "jacobian"])
@pytest.mark.parametrize("trace", [False, True])
def test_chunking_does_not_change_the_result(method, trace):
    model = make("mlp_ntk")
    x1, x2 = inputs(70), inputs(11, seed=2)
    for b in (None, x2):
        big = empirical_ntk(model, x1, b, method=method, trace_outputs=trace, chunk_size=1000)
        small = empirical_ntk(model, x1, b, method=method, trace_outputs=trace, chunk_size=3)
        torch.testing.assert_close(small, big, **TOL)
    # one big chunk of 70 splits its diagonal block into sub-blocks: check it against the oracle
    torch.testing.assert_close(empirical_ntk(model, x1, method=method, trace_outputs=trace),
                               oracle(model, x1, trace_outputs=trace), **TOL)


@pytest.mark.parametrize("method", ["structured", "jacobian"])
def test_frozen_parameters_are_left_out(method):
    model = make("mlp_ntk")
    model.hidden[0].weight.requires_grad_(False)
    model.readout.bias.requires_grad_(False)
    x1 = inputs(5)
    torch.testing.assert_close(empirical_ntk(model, x1, method=method), oracle(model, x1), **TOL)
    assert not model.hidden[0].weight.requires_grad and model.hidden[1].weight.requires_grad


def test_no_side_effects():
    model = make("mlp_ntk").train()
    for p in model.parameters():
        p.grad = torch.full_like(p, 3.0)
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    for method in ("structured", "jacobian"):
        empirical_ntk(model, inputs(5), method=method)
    assert model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 3.0)) for p in model.parameters())
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
    assert torch.equal(torch.get_rng_state(), rng)


def test_bad_arguments():
    model, x = make("mlp_ntk"), inputs(3)
    with pytest.raises(ConfigError, match="'fast'"):
        empirical_ntk(model, x, method="fast")
    with pytest.raises(ConfigError, match="chunk_size"):
        empirical_ntk(model, x, chunk_size=0)
    with pytest.raises(ConfigError, match=r"\(5,\)"):
        empirical_ntk(model, x, torch.zeros(2, 5, dtype=torch.float64))
    with pytest.raises(ConfigError, match="x1"):
        empirical_ntk(model, torch.zeros(0, 4))
    frozen = make("mlp_ntk").requires_grad_(False)
    with pytest.raises(ConfigError, match="trainable"):
        empirical_ntk(frozen, x)


# ---------------------------------------------------------------------------------------------
# analytic NTK


def hand_depth1(x1: np.ndarray, x2: np.ndarray, w: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """One hidden ReLU layer, f(x) = (w/sqrt(m)) v·relu((w/sqrt(d)) W x + b β) + b β', written out:
    with k = w² x·x'/d + b², q = w² |x|²/d + b², q' likewise and cos t = k / sqrt(q q'),

        NNGP(x, x') = w² sqrt(q q') (sin t + (π − t) cos t) / (2π) + b²
        NTK(x, x')  = NNGP(x, x') + w² k (π − t) / (2π)

    (readout weights and bias, then the first layer's weights and biases through relu')."""
    d = x1.shape[1]
    nngp = np.empty((len(x1), len(x2)))
    ntk = np.empty_like(nngp)
    for i, u in enumerate(x1):
        for j, v in enumerate(x2):
            k = w * w * float(u @ v) / d + b * b
            q, qq = w * w * float(u @ u) / d + b * b, w * w * float(v @ v) / d + b * b
            t = math.acos(max(-1.0, min(1.0, k / math.sqrt(q * qq))))
            nngp[i, j] = w * w * math.sqrt(q * qq) * (math.sin(t) + (math.pi - t) * math.cos(t)) / (2 * math.pi) + b * b
            ntk[i, j] = nngp[i, j] + w * w * k * (math.pi - t) / (2 * math.pi)
    return nngp, ntk


@pytest.mark.parametrize("w,b", [(1.0, 0.0), (1.5, 0.3), (0.7, 1.1)])
def test_analytic_depth1_matches_hand_formula(w, b):
    x1, x2 = inputs(6, 3, seed=4), inputs(5, 3, seed=5)
    x1[1] = -x1[0]  # angle π
    x1[2] = 2 * x1[0]  # angle 0
    for other in (None, x2):
        r = analytic_ntk(x1, other, depth=1, w_std=w, b_std=b)
        nngp, ntk = hand_depth1(x1.numpy(), (x1 if other is None else other).numpy(), w, b)
        assert r.ntk.dtype == torch.float64 and r.ntk.shape == nngp.shape
        np.testing.assert_allclose(r.nngp.numpy(), nngp, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(r.ntk.numpy(), ntk, rtol=1e-7, atol=1e-12)


def test_analytic_depth0_is_linear_and_deep_diagonal_is_known():
    x = inputs(4, 3)
    r = analytic_ntk(x, depth=0, w_std=1.3, b_std=0.2)
    lin = 1.69 * x @ x.T / 3 + 0.04
    torch.testing.assert_close(r.ntk, lin, **TOL)
    torch.testing.assert_close(r.nngp, lin, **TOL)
    # w² = 2, b = 0: K(x, x) = 2|x|²/d at every layer and Θ(x, x) = (depth + 1) K(x, x)
    for depth in (1, 3, 5):
        r = analytic_ntk(x, depth=depth, w_std=math.sqrt(2))
        q = 2 * (x * x).sum(1) / 3
        torch.testing.assert_close(r.nngp.diagonal(), q, **TOL)
        torch.testing.assert_close(r.ntk.diagonal(), (depth + 1) * q, **TOL)
    # symmetric call equals the two-argument call; flattening of (n, *shape)
    r1, r2 = analytic_ntk(x, depth=2, b_std=0.5), analytic_ntk(x, x, depth=2, b_std=0.5)
    torch.testing.assert_close(r1.ntk, r2.ntk, rtol=1e-7, atol=1e-9)
    r3 = analytic_ntk(torch.randn(3, 2, 2), depth=1)
    assert r3.ntk.shape == (3, 3)


def test_analytic_bad_arguments():
    x = inputs(3)
    with pytest.raises(ConfigError, match="depth"):
        analytic_ntk(x, depth=-1)
    with pytest.raises(ConfigError, match="w_std"):
        analytic_ntk(x, w_std=0.0)
    with pytest.raises(ConfigError, match="b_std"):
        analytic_ntk(x, b_std=-1.0)
    with pytest.raises(ConfigError, match="features"):
        analytic_ntk(x, inputs(2, 5))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.linalg.matrix_norm(a - b) / torch.linalg.matrix_norm(b)).item()


@pytest.mark.parametrize("depth,w,b,seeds", [
    (1, 1.3, 0.2, {256: 200, 1024: 200, 4096: 200}),
    (2, 1.4, 0.3, {256: 200, 1024: 200, 4096: 16}),  # a 4096² layer costs ~0.3 s per draw
])
def test_wide_networks_approach_analytic_ntk(depth, w, b, seeds):
    """Empirical NTKs of random NTK-parameterized MLPs approach the analytic NTK.

    The relative Frobenius error of one draw, averaged over draws, shrinks like 1/sqrt(width)
    (its spread over draws is ~35% of its mean, hence many cheap draws at small widths); and
    the average of the draws' kernels at width 1024 (200 draws, E Θ_width = Θ + O(1/width))
    is within 1.5% of the analytic kernel, which a wrong recursion would not be."""
    x = inputs(6, 5, seed=7)
    target = analytic_ntk(x, depth=depth, w_std=w, b_std=b).ntk
    errors, mean_kernels = [], {}
    for width, draws in seeds.items():
        torch.manual_seed(0)
        model = MLP(5, width, depth, 1, parameterization="ntk", w_std=w, b_std=b).double()
        errs, total = [], torch.zeros_like(target)
        for seed in range(draws):
            model.reset_parameters(torch.Generator().manual_seed(seed))
            kernel = empirical_ntk(model, x)
            errs.append(relative_error(kernel, target))
            total += kernel
        errors.append(float(np.mean(errs)))
        mean_kernels[width] = total / draws
    slope = np.polyfit(np.log(list(seeds)), np.log(errors), 1)[0]
    assert errors[-1] < 0.05, errors
    assert -0.8 < slope < -0.3, (slope, errors)
    assert relative_error(mean_kernels[1024], target) < 0.015


def test_output_covariance_over_inits_approaches_nngp():
    depth, w, b, width, k, draws = 2, 1.2, 0.4, 256, 16, 800
    x = inputs(5, 5, seed=8)
    target = analytic_ntk(x, depth=depth, w_std=w, b_std=b).nngp
    torch.manual_seed(0)
    model = MLP(5, width, depth, k, parameterization="ntk", w_std=w, b_std=b).double()
    gen = torch.Generator().manual_seed(0)
    second = torch.zeros(5, 5, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(draws):
            model.reset_parameters(gen)
            f = model(x)  # (5, k); the k outputs are k draws given the hidden layers
            second += f @ f.T
    cov = second / (draws * k)  # outputs have mean 0, so E[f f'] is the covariance
    assert relative_error(cov, target) < 0.05


# ---------------------------------------------------------------------------------------------
# kernel distance


def test_kernel_distance_identities():
    a = torch.randn(6, 6, dtype=torch.float64)
    K = a @ a.T
    same = kernel_distance(K, K.clone())
    assert same["relative_frobenius"] == 0.0
    assert abs(same["one_minus_cka"]) < 1e-12
    for c in (3.0, 0.5):
        scaled = kernel_distance(K, c * K)
        assert scaled["relative_frobenius"] == pytest.approx(abs(c - 1), rel=1e-12)
        assert abs(scaled["one_minus_cka"]) < 1e-12


def test_kernel_distance_hand_example():
    K0 = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]])
    K1 = torch.eye(3)
    # ||K0||_F = 4, ||K1 - K0||_F = sqrt(7); H K1 H = H with ||H||² = 2, and H K0 H =
    # [[10, -2, -8], [-2, 4, -2], [-8, -2, 10]] / 9 with ||.||² = 40/9 and <H K0 H, H> = 8/3,
    # so CKA = (8/3) / (sqrt(40)/3 sqrt(2)) = 2/sqrt(5).
    r = kernel_distance(K0, K1)
    assert r["relative_frobenius"] == pytest.approx(math.sqrt(7) / 4, rel=1e-12)
    assert r["one_minus_cka"] == pytest.approx(1 - 2 / math.sqrt(5), rel=1e-12)


def test_kernel_distance_four_dimensional_kernels():
    n, k = 4, 3
    K0, K1 = torch.randn(n, n, k, k, dtype=torch.float64), torch.randn(n, n, k, k, dtype=torch.float64)

    def as_matrix(K):  # row (i, a), column (j, b), by explicit loops
        M = torch.empty(n * k, n * k, dtype=torch.float64)
        for i in range(n):
            for j in range(n):
                for a in range(k):
                    for b in range(k):
                        M[i * k + a, j * k + b] = K[i, j, a, b]
        return M

    got, want = kernel_distance(K0, K1), kernel_distance(as_matrix(K0), as_matrix(K1))
    assert got["relative_frobenius"] == pytest.approx(want["relative_frobenius"], rel=1e-12)
    assert got["one_minus_cka"] == pytest.approx(want["one_minus_cka"], rel=1e-12)
    # the NTK of a k-output MLP: with K ⊗ I both measures equal those of K
    A, B = torch.randn(n, n, dtype=torch.float64), torch.randn(n, n, dtype=torch.float64)
    eye = torch.eye(k, dtype=torch.float64)
    r4 = kernel_distance(A[:, :, None, None] * eye, B[:, :, None, None] * eye)
    assert r4["relative_frobenius"] == pytest.approx(kernel_distance(A, B)["relative_frobenius"], rel=1e-12)


def test_kernel_distance_bad_shapes():
    with pytest.raises(ConfigError, match=r"\(3, 3\) and \(4, 4\)"):
        kernel_distance(torch.eye(3), torch.eye(4))
    with pytest.raises(ConfigError, match=r"\(3, 4\)"):
        kernel_distance(torch.zeros(3, 4), torch.zeros(3, 4))
    with pytest.raises(ConfigError, match="list"):
        kernel_distance([[1.0]], torch.eye(1))
