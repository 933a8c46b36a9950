"""Norm measures against hand computations: known singular values, explicit path enumeration,
hand-made margins and parameter differences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from overparam.errors import ConfigError
from overparam.measures.norms import (
    all_norms,
    distance_from_init,
    effective_rank,
    effective_ranks,
    frobenius_norms,
    nuclear_norms,
    output_margin,
    path_norm,
    product_of_spectral_norms,
    spectral_norms,
    sum_of_squared_frobenius,
    weight_matrices,
)
from overparam.models import CNN5, MLP, DeepLinear, TwoLayer

F64 = torch.float64


def orthogonal(n, seed):
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=F64))
    return q


def two_matrix_model(dtype=F64):
    """Linear(3 -> 3) with W = diag(3, -2, 1) and Linear(3 -> 4) with W = U diag(5, 2, 0.5) V^T."""
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 4)).to(dtype)
    u, v = orthogonal(4, 0)[:, :3], orthogonal(3, 1)
    with torch.no_grad():
        model[0].weight.copy_(torch.diag(torch.tensor([3.0, -2.0, 1.0])))
        model[2].weight.copy_(u @ torch.diag(torch.tensor([5.0, 2.0, 0.5], dtype=F64)) @ v.T)
    return model


@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_matrix_norms_of_known_matrices(dtype):
    model = two_matrix_model(dtype)
    tol = dict(rel=1e-12) if dtype == F64 else dict(rel=1e-5)
    fro, spec, nuc = frobenius_norms(model), spectral_norms(model), nuclear_norms(model)
    assert list(fro.per_layer) == ["0.weight", "2.weight"]  # biases are not weight matrices
    assert fro.per_layer["0.weight"] == pytest.approx(math.sqrt(14), **tol)
    assert fro.per_layer["2.weight"] == pytest.approx(math.sqrt(25 + 4 + 0.25), **tol)
    assert fro.total == pytest.approx(math.sqrt(14 + 29.25), **tol)
    assert sum_of_squared_frobenius(model) == pytest.approx(43.25, **tol)
    assert spec.per_layer == pytest.approx({"0.weight": 3.0, "2.weight": 5.0}, **tol)
    assert spec.total == pytest.approx(15.0, **tol) and product_of_spectral_norms(model) == pytest.approx(15.0, **tol)
    assert product_of_spectral_norms(model, log=True) == pytest.approx(math.log(15.0), **tol)
    assert nuc.per_layer == pytest.approx({"0.weight": 6.0, "2.weight": 7.5}, **tol)
    assert nuc.total == pytest.approx(13.5, **tol)


def test_conv_kernels_are_reshaped_to_out_by_rest():
    conv = nn.Conv2d(2, 3, kernel_size=2).double()
    kernel = conv.weight.detach().numpy()
    matrix = kernel.reshape(3, 8)
    singular = np.linalg.svd(matrix, compute_uv=False)
    assert weight_matrices(conv)["weight"].shape == (3, 8)
    assert spectral_norms(conv).per_layer["weight"] == pytest.approx(singular[0], rel=1e-12)
    assert nuclear_norms(conv).per_layer["weight"] == pytest.approx(singular.sum(), rel=1e-12)
    assert frobenius_norms(conv).per_layer["weight"] == pytest.approx(np.sqrt((kernel**2).sum()), rel=1e-12)


def test_distance_from_init_by_hand_in_every_input_form():
    model = nn.Linear(2, 2).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model.bias.copy_(torch.tensor([1.0, -1.0]))
    init = nn.Linear(2, 2).double()
    with torch.no_grad():
        init.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 4.0]]))
        init.bias.copy_(torch.tensor([0.0, 1.0]))
    # weight difference [[0, 2], [3, 0]] -> sqrt(13); bias difference [1, -2] -> sqrt(5)
    for form in (init, init.state_dict(), [init.weight.detach(), init.bias.detach()]):
        result = distance_from_init(model, form)
        assert result.per_layer == pytest.approx({"weight": math.sqrt(13), "bias": math.sqrt(5)}, rel=1e-15)
        assert result.total == pytest.approx(math.sqrt(18), rel=1e-15)
    with pytest.raises(ConfigError, match="init_params has 1 tensors but the model has 2 parameters"):
        distance_from_init(model, [init.weight])
    with pytest.raises(ConfigError, match=r"init_params\['weight'\] has shape \(3, 2\)"):
        distance_from_init(model, {"weight": torch.zeros(3, 2), "bias": torch.zeros(2)})
    with pytest.raises(ConfigError, match="no entry for parameter 'bias'"):
        distance_from_init(model, {"weight": torch.zeros(2, 2)})


def brute_force_path_norm(layers):
    """Independent enumeration: every path is a sequence of units, one per layer from its
    origin; the origin is an input unit or a bias (a constant unit feeding one layer)."""
    sizes = [layers[0][0].shape[1]] + [w.shape[0] for w, _ in layers]
    total = 0.0
    # paths from an input unit through one unit of every layer
    for path in itertools.product(*[range(n) for n in sizes]):
        product = 1.0
        for l, (w, _) in enumerate(layers):
            product *= w[path[l + 1], path[l]] ** 2
        total += product
    # biases of layer l (feeding unit j of layer l's output), then on through layers l+1, ...
    for l, (_, b) in enumerate(layers):
        if b is None:
            continue
        for path in itertools.product(*[range(n) for n in sizes[l + 1:]]):
            product = b[path[0]] ** 2
            for k, (w, _) in enumerate(layers[l + 1:]):
                product *= w[path[k + 1], path[k]] ** 2
            total += product
    return total


def test_path_norm_of_a_two_layer_relu_net_matches_explicit_enumeration():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    layers = [(model[1].weight.detach().numpy(), model[1].bias.detach().numpy()),
              (model[3].weight.detach().numpy(), model[3].bias.detach().numpy())]
    exact = brute_force_path_norm(layers)
    result = path_norm(model)
    assert result.squared == pytest.approx(exact, rel=1e-12)
    assert result.value == pytest.approx(math.sqrt(exact), rel=1e-12)
    no_bias = path_norm(model, include_bias=False)
    assert no_bias.squared == pytest.approx(brute_force_path_norm([(w, None) for w, _ in layers]), rel=1e-12)
    # hand check of the simplest case: one path per input, no biases
    single = nn.Sequential(nn.Linear(2, 1, bias=False), nn.ReLU(), nn.Linear(1, 1, bias=False)).double()
    with torch.no_grad():
        single[0].weight.copy_(torch.tensor([[2.0, -3.0]]))
        single[2].weight.fill_(0.5)
    assert path_norm(single).squared == pytest.approx((4 + 9) * 0.25, rel=1e-15)


def test_path_norm_is_invariant_to_relu_rescaling():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    before = path_norm(model).squared
    scale = torch.tensor([0.1, 2.0, 5.0, 1.0, 0.3], dtype=F64)
    with torch.no_grad():  # the same function: unit j's input scaled by c_j, its output by 1/c_j
        model[0].weight.mul_(scale[:, None])
        model[0].bias.mul_(scale)
        model[2].weight.div_(scale[None, :])
    assert path_norm(model).squared == pytest.approx(before, rel=1e-12)


def test_path_norm_uses_the_ntk_scale_factors_and_alpha():
    torch.manual_seed(2)
    model = MLP(3, width=4, depth=1, out_features=2, parameterization="ntk", w_std=1.5, b_std=0.2, alpha=3.0).double()
    h, r = model.hidden[0], model.readout
    layers = [(h.weight.detach().numpy() * 1.5 / math.sqrt(3), h.bias.detach().numpy() * 0.2),
              (r.weight.detach().numpy() * 1.5 / math.sqrt(4) * 3.0, r.bias.detach().numpy() * 0.2 * 3.0)]
    assert path_norm(model).squared == pytest.approx(brute_force_path_norm(layers), rel=1e-12)
    # the same function in the standard parameterization has the same path norm
    std = MLP(3, width=4, depth=1, out_features=2, parameterization="standard", w_std=1.5, b_std=0.2,
              alpha=3.0).double()
    with torch.no_grad():
        std.hidden[0].weight.copy_(torch.from_numpy(layers[0][0]))
        std.hidden[0].bias.copy_(torch.from_numpy(layers[0][1]))
        std.readout.weight.copy_(torch.from_numpy(layers[1][0] / 3.0))
        std.readout.bias.copy_(torch.from_numpy(layers[1][1] / 3.0))
    x = torch.randn(5, 3, dtype=F64)
    torch.testing.assert_close(std(x), model(x))
    assert path_norm(std).squared == pytest.approx(path_norm(model).squared, rel=1e-12)


def test_path_norm_of_two_layer_and_deep_linear_models():
    torch.manual_seed(3)
    two = TwoLayer(3, width=4, out_features=2, scaling="mean_field", alpha=2.0).double()
    layers = [(two.w.detach().numpy() / math.sqrt(3), None), (two.a.detach().numpy() * 2.0 / 4, None)]
    assert path_norm(two).squared == pytest.approx(brute_force_path_norm(layers), rel=1e-12)
    deep = DeepLinear(2, 2, width=3, depth=3, init="gaussian", scale=0.7).double()
    layers = [(w.detach().numpy(), None) for w in deep.weights]
    assert path_norm(deep).squared == pytest.approx(brute_force_path_norm(layers), rel=1e-12)


def test_path_norm_refuses_models_where_it_is_not_defined():
    with pytest.raises(ConfigError, match="path norm is not defined here for CNN5; accepted: nn.Linear"):
        path_norm(CNN5(3, 10, k=2))
    with pytest.raises(ConfigError, match="MLP has activation Tanh; accepted: relu, linear"):
        path_norm(MLP(3, width=4, depth=1, out_features=2, activation="tanh"))
    with pytest.raises(ConfigError, match="not defined here for Sigmoid"):
        path_norm(nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1)))


def matrix_with_singular_values(values, rows, cols, seed=0):
    u, v = orthogonal(rows, seed)[:, :len(values)], orthogonal(cols, seed + 1)[:, :len(values)]
    return u @ torch.diag(torch.tensor(values, dtype=F64)) @ v.T


def test_effective_rank_of_known_spectra():
    for k in (1, 3, 7):
        m = matrix_with_singular_values([2.5] * k, 9, 8)
        assert effective_rank(m) == pytest.approx(k, rel=1e-12)
    s = [10.0, 5.0, 1.0, 0.01]
    m = matrix_with_singular_values(s, 6, 5, seed=3)
    p = np.array(s) / sum(s)
    assert effective_rank(m) == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-10)
    assert effective_rank(m, "threshold", threshold=0.05) == 3  # σ > 0.5: 10, 5, 1
    assert effective_rank(m, "threshold", threshold=0.0001) == 4
    # energies 100, 25, 1, 1e-4 of 126.0001
    assert effective_rank(m, "energy", delta=0.3) == 1  # 100 >= 0.7 · 126
    assert effective_rank(m, "energy", delta=0.01) == 2  # 125 >= 0.99 · 126.0001
    assert effective_rank(m, "energy", delta=0.0) == 4
    assert effective_rank(matrix_with_singular_values([1.0] * 4, 4, 4), "energy", delta=0.5) == 2  # exactly half
    assert effective_rank(torch.zeros(3, 3)) == 0.0
    with pytest.raises(ConfigError, match="unknown effective rank method 'stable'"):
        effective_rank(m, "stable")
    ranks = effective_ranks(two_matrix_model())
    p = np.array([3.0, 2.0, 1.0]) / 6
    assert ranks["0.weight"] == pytest.approx(math.exp(-(p * np.log(p)).sum()), rel=1e-12)


class Logits(nn.Module):
    """Returns its input as the logits; a Dropout shows whether eval mode is used."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.9)
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.drop(x)


def test_margin_on_hand_made_outputs_in_eval_mode():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 1.0, 0.5], [0.0, 4.0, -1.0], [5.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1, 2, 0, 0])
    margins = np.array([1.0, 2.0, -0.5, -4.0, 3.0])
    model = Logits().train()
    batches = [(logits[:2], labels[:2]), (logits[2:], labels[2:])]
    result = output_margin(model, batches)
    assert model.training  # restored
    assert result.percentile == pytest.approx(np.percentile(margins, 10), rel=1e-12)
    assert result.mean == pytest.approx(margins.mean(), rel=1e-12)
    assert result.min == -4.0 and result.fraction_nonpositive == pytest.approx(0.4)
    assert result.num_examples == 5 and result.cost.forward == 5
    assert output_margin(model, (logits, labels), q=50).percentile == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="q must be a percentile in \\[0, 100\\], got 120"):
        output_margin(model, (logits, labels), q=120)
    with pytest.raises(ConfigError, match="integer class labels"):
        output_margin(model, (logits, labels.float()))


def test_all_norms_is_a_flat_dict_of_the_individual_measures():
    torch.manual_seed(4)
    model = MLP(5, width=6, depth=2, out_features=3)
    init = [p.detach().clone() + 0.1 for p in model.parameters()]
    out = all_norms(model, init)
    assert all(isinstance(v, float) for v in out.values())
    assert out["frobenius"] == pytest.approx(frobenius_norms(model).total)
    assert out["spectral_product"] == pytest.approx(spectral_norms(model).total)
    assert out["log_spectral_product"] == pytest.approx(math.log(out["spectral_product"]), rel=1e-6)
    assert out["path_norm"] == pytest.approx(path_norm(model).value)
    n_params = sum(p.numel() for p in model.parameters())
    assert out["dist_init"] == pytest.approx(0.1 * math.sqrt(n_params), rel=1e-5)
    assert out["num_weight_matrices"] == 3.0
    assert {"spectral/hidden.0.weight", "effective_rank/readout.weight", "dist_init/readout.bias"} <= set(out)
    cnn = all_norms(CNN5(3, 10, k=2))
    assert "path_norm" not in cnn and cnn["num_weight_matrices"] == 5.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_norms_match_the_cpu_ones():
    model = two_matrix_model(torch.float32)
    cpu = all_norms(model)
    gpu = all_norms(model.cuda())
    assert gpu.keys() == cpu.keys()
    for key in cpu:
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-5), key
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]], device="cuda")
    result = output_margin(Logits().cuda(), (logits, torch.tensor([0, 2], device="cuda")))
    assert result.mean == pytest.approx((1.0 - 2.0) / 2)
