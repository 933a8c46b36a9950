"""Models against closed forms: NTK parameterization, init variances, parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

from overparam import models
from overparam.errors import ModelError
from overparam.models import CNN1D, CNN5, MLP, Dense, DeepLinear, PreActResNet18, TwoLayer


def test_ntk_dense_forward_is_the_neural_tangents_formula():
    layer = Dense(7, 5, "ntk", w_std=1.7, b_std=0.3).double()
    x = torch.randn(4, 7, dtype=torch.float64)
    expected = 1.7 / math.sqrt(7) * x @ layer.weight.T + 0.3 * layer.bias
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-14)
    # ntk parameters are N(0, 1) whatever w_std is
    wide = Dense(500, 2000, "ntk", w_std=3.0)
    assert wide.weight.std().item() == pytest.approx(1.0, rel=0.01)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
@pytest.mark.parametrize("w_std, b_std", [(1.0, 0.0), (1.5, 1.0)])
def test_preactivation_variances_match_the_infinite_width_recursion(parameterization, w_std, b_std):
    """Layer 1: Var z1 = w^2 |x|^2 / d + b^2. Layer 2 (ReLU): Var z2 = w^2 q1 / 2 + b^2,
    since E[relu(z)^2] = q/2 for z ~ N(0, q). Estimated over 4000 units of a wide layer."""
    torch.manual_seed(0)
    d, m = 30, 4000
    x = torch.randn(1, d, dtype=torch.float64)
    first = Dense(d, m, parameterization, w_std, b_std).double()
    second = Dense(m, m, parameterization, w_std, b_std).double()
    with torch.no_grad():
        z1 = first(x)
        z2 = second(torch.relu(z1))
    q1 = w_std**2 * (x**2).sum().item() / d + b_std**2
    q2 = w_std**2 * q1 / 2 + b_std**2
    # relative sd of a variance estimate from m samples is sqrt(2/m) ~ 2.2%; allow ~4.5 sd
    assert z1.var().item() == pytest.approx(q1, rel=0.1)
    assert z2.var().item() == pytest.approx(q2, rel=0.1)


def test_ntk_gradients_carry_the_scale_factor():
    """Same function in both parameterizations; dL/dW_ntk = (w_std/sqrt(fan_in)) dL/dW_std and
    dL/db_ntk = b_std dL/db_std."""
    ntk = Dense(6, 3, "ntk", w_std=2.0, b_std=0.5).double()
    std = Dense(6, 3, "standard", w_std=2.0, b_std=0.5).double()
    with torch.no_grad():
        std.weight.copy_(2.0 / math.sqrt(6) * ntk.weight)
        std.bias.copy_(0.5 * ntk.bias)
    x = torch.randn(10, 6, dtype=torch.float64)
    torch.testing.assert_close(ntk(x), std(x))
    (ntk(x) ** 2).sum().backward()
    (std(x) ** 2).sum().backward()
    torch.testing.assert_close(ntk.weight.grad, 2.0 / math.sqrt(6) * std.weight.grad)
    torch.testing.assert_close(ntk.bias.grad, 0.5 * std.bias.grad)


def test_mlp_parameter_count_closed_form_and_alpha():
    d, w, depth, k = 40, 64, 3, 10
    model = MLP(d, w, depth, k)
    assert models.count_parameters(model) == (d * w + w) + (depth - 1) * (w * w + w) + (w * k + k)
    assert models.count_parameters(MLP(d, w, 0, k)) == d * k + k
    scaled = MLP(d, w, depth, k, alpha=5.0)
    scaled.load_state_dict(model.state_dict())
    x = torch.randn(3, d)
    torch.testing.assert_close(scaled(x), 5.0 * model(x))
    assert model(torch.randn(3, 1, 8, 5)).shape == (3, 10)  # inputs are flattened


def test_cnn5_has_the_published_parameter_count():
    # Nakkiran et al. 2019: the k=64 5-layer CNN on CIFAR-10 has 1,558,026 parameters
    assert models.count_parameters(CNN5(3, 10, k=64)) == 1_558_026
    assert CNN5(3, 10, k=4)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert CNN5(1, 10, k=4)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_preact_resnet18_parameter_count_by_hand():
    def block(cin, cout, shortcut):
        return 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout + (cin * cout if shortcut else 0)

    def expected(k, channels=3, classes=10):
        total, cin = 9 * channels * k, k
        for stage, width in enumerate([k, 2 * k, 4 * k, 8 * k]):
            total += block(cin, width, shortcut=stage > 0) + block(width, width, False)
            cin = width
        return total + 8 * k * classes + classes

    assert expected(64) == 11_171_146  # the reference PreActResNet18's count
    for k in (64, 5):
        assert models.count_parameters(PreActResNet18(3, 10, k=k)) == expected(k)
    assert PreActResNet18(1, 10, k=4)(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_cnn1d_matches_the_mnist1d_convbase():
    c = 25
    by_hand = (1 * 5 * c + c) + 2 * (c * 3 * c + c) + (c * 5 * 10 + 10)
    model = CNN1D(40, 10, c)
    assert models.count_parameters(model) == by_hand == 5210
    assert model(torch.randn(3, 40)).shape == model(torch.randn(3, 1, 40)).shape == (3, 10)


def test_two_layer_scalings():
    torch.manual_seed(0)
    net = TwoLayer(5, 100, 1, scaling="mean_field").double()
    x = torch.randn(4, 5, dtype=torch.float64)
    manual = net.second.weight @ torch.relu(net.first.weight @ x.T / math.sqrt(5)) / 100
    torch.testing.assert_close(net(x), manual.T)
    assert models.count_parameters(net) == 5 * 100 + 100


def test_deep_linear_balanced_init_is_balanced_and_multiplies_to_a():
    gen = torch.Generator().manual_seed(3)
    model = DeepLinear(6, 4, width=8, depth=3, init="balanced", scale=0.5).double()
    model.reset_parameters(torch.Generator().manual_seed(3))
    a = 0.5 * torch.randn(4, 6, generator=gen, dtype=torch.float64)  # the same draw, independently
    torch.testing.assert_close(model.end_to_end(), a)
    w = list(model.weights)
    for lower, upper in zip(w[:-1], w[1:]):
        torch.testing.assert_close(upper.T @ upper, lower @ lower.T, atol=1e-12, rtol=0)
    x = torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(model(x), x @ a.T)


def test_deep_linear_orthogonal_and_gaussian_inits():
    model = DeepLinear(5, 5, width=7, depth=3, init="orthogonal", scale=0.1).double()
    first, middle, last = model.weights
    torch.testing.assert_close(first.T @ first, 0.01 * torch.eye(5, dtype=torch.float64))  # (7, 5): orthonormal columns
    torch.testing.assert_close(middle @ middle.T, 0.01 * torch.eye(7, dtype=torch.float64))
    torch.testing.assert_close(last @ last.T, 0.01 * torch.eye(5, dtype=torch.float64))  # (5, 7): orthonormal rows
    big = DeepLinear(300, 300, width=300, depth=1, init="gaussian", scale=0.2)
    assert big.weights[0].std().item() == pytest.approx(0.2, rel=0.02)


def test_reset_parameters_with_a_generator_is_bit_identical():
    a, b = MLP(10, 32, 2, 3), MLP(10, 32, 2, 3)
    a.reset_parameters(torch.Generator().manual_seed(9))
    b.reset_parameters(torch.Generator().manual_seed(9))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name, shape", [("mlp", (40,)), ("two_layer", (1, 28, 28)), ("cnn5", (3, 32, 32)),
                                         ("resnet18", (1, 28, 28)), ("cnn1d", (40,)), ("deep_linear", (40,))])
def test_build_every_model_from_its_registry_name(name, shape):
    options = {"mlp": {"width": 16, "depth": 2}, "two_layer": {"width": 16}, "cnn5": {"k": 2},
               "resnet18": {"k": 2}, "cnn1d": {"channels": 4}, "deep_linear": {"width": 16, "depth": 2}}[name]
    model = models.build(name, shape, 10, **options)
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    assert sum(models.parameter_table(model).values()) == models.count_parameters(model)


@pytest.mark.parametrize("call, fragment", [
    (lambda: models.build("transformer", (40,), 10), "unknown model 'transformer'"),
    (lambda: models.build("mlp", (40,), 10, width=0, depth=1), "width must be an integer >= 1, got 0"),
    (lambda: models.build("mlp", (40,), 10, width=8, depth=-1), "depth must be an integer >= 0, got -1"),
    (lambda: models.build("mlp", (40,), 10, width=8, depth=1, activation="swish"), "unknown activation 'swish'"),
    (lambda: models.build("mlp", (40,), 10, width=8, depth=1, parameterization="mup"), "'mup'"),
    (lambda: models.build("mlp", (40,), 10, width=8, depth=1, widht=3), r"does not take option\(s\) \['widht'\]"),
    (lambda: models.build("mlp", (40,), 10, depth=1), "width"),
    (lambda: models.build("cnn5", (40,), 10), r"input shape \(40,\)"),
    (lambda: models.build("cnn1d", (3, 32, 32), 10), r"input shape \(3, 32, 32\)"),
    (lambda: models.build("deep_linear", (40,), 10, width=4, depth=2), "width=4"),
])
def test_bad_model_configs_are_clear_errors(call, fragment):
    with pytest.raises(ModelError, match=fragment):
        call()
