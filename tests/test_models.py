"""Models against independent answers: the Neural Tangents formulas, infinite-width variance
recursions, hand-derived parameter counts, SVD identities of the balanced init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from overparam import models
from overparam.errors import ModelError
from overparam.models import CNN1D, CNN5, MLP, Dense, DeepLinear, PreActResNet18, TwoLayer

F64 = torch.float64


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- Dense and MLP: parameterizations ------------------------------------------------------------


def test_ntk_dense_forward_is_the_neural_tangents_formula():
    layer = Dense(7, 5, "ntk", w_std=1.7, b_std=0.3).double()
    x = torch.randn(4, 7, dtype=F64, generator=seeded(0))
    expected = 1.7 / math.sqrt(7) * x @ layer.weight.T + 0.3 * layer.bias
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-14)
    standard = Dense(7, 5, "standard", w_std=1.7, b_std=0.3).double()
    torch.testing.assert_close(standard(x), x @ standard.weight.T + standard.bias, rtol=0, atol=1e-14)


def test_parameter_distributions_of_the_two_parameterizations():
    ntk = Dense(400, 1000, "ntk", w_std=3.0, b_std=0.0)
    assert ntk.weight.std().item() == pytest.approx(1.0, rel=0.01)  # N(0, 1) whatever w_std is
    assert ntk.bias.std().item() == pytest.approx(1.0, rel=0.1)  # drawn, then multiplied by b_std = 0
    standard = Dense(400, 1000, "standard", w_std=3.0, b_std=0.0)
    assert standard.weight.std().item() == pytest.approx(3.0 / math.sqrt(400), rel=0.01)
    assert torch.count_nonzero(standard.bias) == 0


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
@pytest.mark.parametrize("w_std, b_std", [(1.0, 0.0), (1.5, 0.5)])
def test_first_layer_variance_is_w2_x2_over_fan_in_plus_b2(parameterization, w_std, b_std):
    """For a fixed x the n units of one layer are n iid samples of N(0, q1)."""
    d, n = 20, 100_000
    x = torch.randn(1, d, dtype=F64, generator=seeded(1))
    layer = Dense(d, n, parameterization, w_std, b_std).double()
    layer.reset_parameters(seeded(2))
    with torch.no_grad():
        z = layer(x)
    q1 = w_std**2 * (x**2).sum().item() / d + b_std**2
    estimate = (z**2).mean().item()  # unbiased for q1 (mean zero); sd q1 sqrt(2/n)
    assert abs(estimate - q1) < 5 * q1 * math.sqrt(2 / n)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
@pytest.mark.parametrize("w_std, b_std", [(1.0, 0.0), (1.5, 0.5)])
def test_second_relu_preactivation_variance_is_the_arc_cosine_value(parameterization, w_std, b_std):
    """Over random inits, Var z2 = w^2 E[relu(z1)^2] + b^2 = w^2 q1 / 2 + b^2 exactly at any width
    (E[relu(z)^2] = q/2 for z ~ N(0, q)). Estimated from R inits; the tolerance is 4 standard
    errors of the mean over inits."""
    d, m, k, inits = 20, 256, 256, 300
    x = torch.randn(1, d, dtype=F64, generator=seeded(3))
    net = MLP(d, m, 1, k, parameterization, w_std, b_std).double()
    gen = seeded(4)
    per_init = []
    with torch.no_grad():
        for _ in range(inits):
            net.reset_parameters(gen)
            per_init.append((net(x) ** 2).mean().item())
    per_init = np.array(per_init)
    estimate, se = per_init.mean(), per_init.std(ddof=1) / math.sqrt(inits)
    q1 = w_std**2 * (x**2).sum().item() / d + b_std**2
    q2 = w_std**2 * q1 / 2 + b_std**2
    assert se < 0.02 * q2  # the check has power: q1/pi instead of q1/2 would be ~30% off
    assert abs(estimate - q2) < 4 * se


def test_ntk_gradients_carry_the_scale_factor():
    """Same function in both parameterizations; dL/dW_ntk = (w_std/sqrt(fan_in)) dL/dW_std and
    dL/db_ntk = b_std dL/db_std."""
    ntk = Dense(6, 3, "ntk", w_std=2.0, b_std=0.5).double()
    std = Dense(6, 3, "standard", w_std=2.0, b_std=0.5).double()
    with torch.no_grad():
        std.weight.copy_(2.0 / math.sqrt(6) * ntk.weight)
        std.bias.copy_(0.5 * ntk.bias)
    x = torch.randn(10, 6, dtype=F64, generator=seeded(5))
    torch.testing.assert_close(ntk(x), std(x))
    (ntk(x) ** 2).sum().backward()
    (std(x) ** 2).sum().backward()
    torch.testing.assert_close(ntk.weight.grad, 2.0 / math.sqrt(6) * std.weight.grad)
    torch.testing.assert_close(ntk.bias.grad, 0.5 * std.bias.grad)


REFERENCE_ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "erf": special.erf,
    "gelu": lambda z: z * stats.norm.cdf(z),
    "linear": lambda z: z,
}


@pytest.mark.parametrize("activation", sorted(REFERENCE_ACTIVATIONS))
def test_mlp_forward_by_hand(activation):
    net = MLP(12, 9, 1, 4, "ntk", w_std=1.3, b_std=0.2, activation=activation, alpha=2.5).double()
    x = torch.randn(5, 3, 4, dtype=F64, generator=seeded(6))  # flattened to (5, 12)
    (w1, b1), (w2, b2) = [(layer.weight.detach().numpy(), layer.bias.detach().numpy())
                          for layer in (*net.hidden, net.readout)]
    h = REFERENCE_ACTIVATIONS[activation](1.3 / math.sqrt(12) * x.reshape(5, 12).numpy() @ w1.T + 0.2 * b1)
    expected = 2.5 * (1.3 / math.sqrt(9) * h @ w2.T + 0.2 * b2)
    np.testing.assert_allclose(net(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)


def test_mlp_alpha_scales_the_output():
    model, scaled = MLP(40, 64, 3, 10), MLP(40, 64, 3, 10, alpha=5.0)
    scaled.load_state_dict(model.state_dict())
    x = torch.randn(3, 40, generator=seeded(7))
    torch.testing.assert_close(scaled(x), 5.0 * model(x))


@pytest.mark.parametrize("scaling", ["ntk", "mean_field", "standard"])
def test_two_layer_is_its_docstring_formula(scaling):
    d, m = 5, 100
    net = TwoLayer(d, m, 2, activation="tanh", scaling=scaling, alpha=3.0).double()
    x = torch.randn(4, d, dtype=F64, generator=seeded(8))
    w, a = net.w.detach(), net.a.detach()
    if scaling == "standard":
        expected = 3.0 * torch.tanh(x @ w.T) @ a.T
    else:
        output_scale = 1 / math.sqrt(m) if scaling == "ntk" else 1 / m
        expected = 3.0 * output_scale * torch.tanh(x @ w.T / math.sqrt(d)) @ a.T
    torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)


def test_two_layer_ntk_and_standard_are_the_same_function_from_one_seed():
    ntk, standard = TwoLayer(5, 50, 1, scaling="ntk").double(), TwoLayer(5, 50, 1, scaling="standard").double()
    ntk.reset_parameters(seeded(9))
    standard.reset_parameters(seeded(9))
    x = torch.randn(4, 5, dtype=F64, generator=seeded(10))
    torch.testing.assert_close(ntk(x), standard(x))
    assert standard.w.std().item() == pytest.approx(1 / math.sqrt(5), rel=0.2)


# --- Parameter counts (each derived by hand) -----------------------------------------------------


@pytest.mark.parametrize("d, w, depth, k", [(40, 64, 3, 10), (784, 100, 1, 10), (40, 64, 0, 10), (3, 7, 5, 1)])
def test_mlp_parameter_count(d, w, depth, k):
    by_hand = d * k + k if depth == 0 else (d * w + w) + (depth - 1) * (w * w + w) + (w * k + k)
    assert models.count_parameters(MLP(d, w, depth, k)) == by_hand


def test_two_layer_and_deep_linear_parameter_counts():
    assert models.count_parameters(TwoLayer(40, 100, 10)) == 40 * 100 + 100 * 10  # no biases
    assert models.count_parameters(DeepLinear(20, 10, width=30, depth=4)) == 20 * 30 + 2 * 30 * 30 + 30 * 10
    assert models.count_parameters(DeepLinear(20, 10, width=30, depth=1)) == 20 * 10


def cnn5_count(k: int, channels: int, classes: int) -> int:
    """Four conv3x3 (with bias) + BatchNorm (2 per channel) layers C -> k -> 2k -> 4k -> 8k, then
    Linear(8k, classes): sum of 9 c_in c_out + c_out + 2 c_out = 378 k^2 + (9 C + 45) k + ..."""
    return 378 * k * k + (9 * channels + 45) * k + (8 * k + 1) * classes


def test_cnn5_has_the_published_parameter_count():
    # Nakkiran et al. 2019: the k=64 5-layer CNN on CIFAR-10 has 1,558,026 parameters
    assert models.count_parameters(CNN5(3, 10, k=64)) == cnn5_count(64, 3, 10) == 1_558_026
    for k, channels in [(1, 1), (4, 1), (7, 3)]:
        assert models.count_parameters(CNN5(channels, 10, k=k)) == cnn5_count(k, channels, 10)


def test_preact_resnet18_parameter_count_by_hand():
    """Per block: BN(in) 2 in + conv3x3 9 in out + BN(out) 2 out + conv3x3 9 out^2, plus a 1x1
    shortcut in*out where the width changes; a bias-free 3x3 stem and Linear(8k, n). Summed:
    2724 k^2 + (9 C + 106) k + (8 k + 1) n."""

    def block(cin, cout):
        return 2 * cin + 9 * cin * cout + 2 * cout + 9 * cout * cout + (cin * cout if cin != cout else 0)

    def by_blocks(k, channels, classes):
        total, cin = 9 * channels * k, k
        for width in (k, 2 * k, 4 * k, 8 * k):
            total += block(cin, width) + block(width, width)
            cin = width
        return total + 8 * k * classes + classes

    def closed_form(k, channels, classes):
        return 2724 * k * k + (9 * channels + 106) * k + (8 * k + 1) * classes

    assert by_blocks(64, 3, 10) == closed_form(64, 3, 10) == 11_171_146  # kuangliu's PreActResNet18
    for k, channels in [(64, 3), (5, 1), (1, 3)]:
        assert by_blocks(k, channels, 10) == closed_form(k, channels, 10)
        assert models.count_parameters(PreActResNet18(channels, 10, k=k)) == closed_form(k, channels, 10)


def test_cnn1d_matches_the_mnist1d_convbase():
    # conv 1->25 k5: 125 + 25; two convs 25->25 k3: 1875 + 25 each; lengths 40 -> 19 -> 10 -> 5;
    # Linear(25 * 5, 10): 1250 + 10. The paper's ConvBase has linear_in = 125.
    assert models.count_parameters(CNN1D()) == 150 + 2 * 1900 + 1260 == 5210
    assert models.count_parameters(CNN1D(length=60, channels=8)) == (40 + 8) + 2 * (192 + 8) + (8 * 8 * 10 + 10)


# --- Shapes, the registry, determinism -----------------------------------------------------------

SMALL = {"mlp": {"width": 16, "depth": 2}, "two_layer": {"width": 16}, "cnn5": {"k": 2}, "resnet18": {"width": 2},
         "cnn1d": {"channels": 4}, "deep_linear": {"width": 16, "depth": 3}}
MNIST, CIFAR, MNIST1D = (1, 28, 28), (3, 32, 32), (40,)
APPLICABLE = [(name, shape) for name in ("mlp", "two_layer", "deep_linear") for shape in (MNIST, CIFAR, MNIST1D)]
APPLICABLE += [(name, shape) for name in ("cnn5", "resnet18") for shape in (MNIST, CIFAR)]
APPLICABLE += [("cnn1d", MNIST1D), ("cnn1d", (1, 40))]


@pytest.mark.parametrize("name, shape", APPLICABLE)
def test_build_gives_outputs_of_the_right_shape(name, shape):
    model = models.build(name, shape, 10, **SMALL[name])
    model.eval()
    assert model(torch.randn(3, *shape)).shape == (3, 10)
    assert sum(models.parameter_table(model).values()) == models.count_parameters(model)


def test_cnn1d_takes_both_input_layouts_and_the_registry_maps_shapes():
    model = CNN1D(40, 10, 25)
    x = torch.randn(3, 40, generator=seeded(11))
    torch.testing.assert_close(model(x), model(x[:, None, :]))
    assert models.build("mlp", CIFAR, 7, width=5, depth=1).hidden[0].in_features == 3072
    assert models.build("cnn5", CIFAR, 10, width=2).net[0].in_channels == 3
    assert models.build("cnn1d", (1, 60), 10, width=3).length == 60
    assert models.count_parameters(models.build("cnn5", MNIST, 10, width=3)) == cnn5_count(3, 1, 10)
    assert set(models.MODEL_NAMES) == {"mlp", "two_layer", "cnn5", "resnet18", "cnn1d", "deep_linear"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_reset_parameters_with_a_seeded_generator_is_bit_identical(name):
    shape = MNIST1D if name == "cnn1d" else MNIST
    torch.manual_seed(0)
    a = models.build(name, shape, 10, **SMALL[name])
    torch.manual_seed(1)
    b = models.build(name, shape, 10, **SMALL[name])
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    a.reset_parameters(seeded(9))
    b.reset_parameters(seeded(9))
    for (key, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), key
    b.reset_parameters(seeded(10))
    assert any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


# --- Deep linear initialisations -----------------------------------------------------------------


@pytest.mark.parametrize("d_in, d_out, width, depth", [(6, 4, 8, 3), (4, 6, 5, 2), (5, 5, 5, 4), (3, 2, 7, 1)])
def test_balanced_init_is_balanced_and_multiplies_to_a(d_in, d_out, width, depth):
    model = DeepLinear(d_in, d_out, width=width, depth=depth, init="balanced", scale=0.5).double()
    model.reset_parameters(seeded(3))
    a = 0.5 * torch.randn(d_out, d_in, generator=seeded(3), dtype=F64)  # the same draw, independently
    torch.testing.assert_close(model.end_to_end(), a, rtol=0, atol=1e-14)
    w = list(model.weights)
    assert [tuple(m.shape) for m in w] == (
        [(d_out, d_in)] if depth == 1 else [(width, d_in)] + [(width, width)] * (depth - 2) + [(d_out, width)])
    for lower, upper in zip(w[:-1], w[1:]):
        torch.testing.assert_close(upper.T @ upper, lower @ lower.T, rtol=0, atol=1e-14)
    x = torch.randn(3, d_in, dtype=F64, generator=seeded(12))
    torch.testing.assert_close(model(x), x @ a.T)


def test_orthogonal_and_gaussian_inits():
    model = DeepLinear(5, 3, width=7, depth=3, init="orthogonal", scale=0.1).double()
    first, middle, last = model.weights
    torch.testing.assert_close(first.T @ first, 0.01 * torch.eye(5, dtype=F64))  # (7, 5): orthonormal columns
    torch.testing.assert_close(middle @ middle.T, 0.01 * torch.eye(7, dtype=F64))
    torch.testing.assert_close(last @ last.T, 0.01 * torch.eye(3, dtype=F64))  # (3, 7): orthonormal rows
    big = DeepLinear(300, 300, width=300, depth=1, init="gaussian", scale=0.2)
    assert big.weights[0].std().item() == pytest.approx(0.2, rel=0.02)


# --- Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("call, fragment", [
    (lambda: models.build("transformer", MNIST1D, 10), "unknown model 'transformer'; accepted: 'mlp'"),
    (lambda: models.build("mlp", MNIST1D, 10, width=0, depth=1), "width must be an integer >= 1, got 0"),
    (lambda: models.build("mlp", MNIST1D, 10, width=8, depth=-1), "depth must be an integer >= 0, got -1"),
    (lambda: models.build("deep_linear", MNIST1D, 10, width=8, depth=0), "depth must be an integer >= 1, got 0"),
    (lambda: models.build("mlp", MNIST1D, 10, width=8, depth=1, activation="swish"),
     "unknown activation 'swish'; accepted: 'relu'"),
    (lambda: models.build("mlp", MNIST1D, 10, width=8, depth=1, parameterization="mup"),
     "unknown parameterization 'mup'; accepted: 'standard', 'ntk'"),
    (lambda: models.build("mlp", MNIST1D, 10, width=8, depth=1, w_std=-1.0), "w_std must be .* > 0, got -1.0"),
    (lambda: models.build("two_layer", MNIST1D, 10, width=8, scaling="muP"), "unknown scaling 'muP'"),
    (lambda: models.build("deep_linear", MNIST1D, 10, width=8, depth=2, init="he"), "unknown init 'he'"),
    (lambda: models.build("mlp", MNIST1D, 10, width=8, depth=1, widht=3),
     r"does not take option\(s\) \['widht'\]; accepted: \['width'"),
    (lambda: models.build("mlp", MNIST1D, 10, depth=1), r"needs option\(s\) \['width'\]"),
    (lambda: models.build("cnn5", MNIST1D, 10), r"cannot take input shape \(40,\); accepted: \(channels"),
    (lambda: models.build("cnn5", (3, 4, 4), 10), r"input shape \(3, 4, 4\).*>= 8"),
    (lambda: models.build("resnet18", MNIST1D, 10), r"input shape \(40,\)"),
    (lambda: models.build("cnn1d", CIFAR, 10), r"input shape \(3, 32, 32\); accepted: \(length,\)"),
    (lambda: models.build("cnn5", CIFAR, 10, width=0), "k must be an integer >= 1, got 0"),
    (lambda: models.build("cnn5", CIFAR, 10, width=4, k=8), "got width=4, k=8"),
    (lambda: models.build("mlp", (0, 5), 10, width=8, depth=1), r"input_shape .* got \(0, 5\)"),
    (lambda: models.build("mlp", MNIST1D, 0, width=8, depth=1), "num_outputs must be an integer >= 1, got 0"),
    (lambda: models.build("deep_linear", MNIST1D, 10, width=4, depth=2), "= 10, got width=4"),
])
def test_bad_model_configs_are_model_errors_naming_the_value(call, fragment):
    with pytest.raises(ModelError, match=fragment):
        call()
