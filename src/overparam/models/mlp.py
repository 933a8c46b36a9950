"""Fully connected networks in standard or NTK parameterization.

``Dense`` follows Neural Tangents' ``stax.Dense(out, W_std, b_std, parameterization=...)``:

- ``'ntk'``: W (out, fan_in) and b (out,) are drawn N(0, 1) and the layer computes
  ``w_std / sqrt(fan_in) * x @ W.T + b_std * b``.
- ``'standard'``: W ~ N(0, w_std^2 / fan_in), b ~ N(0, b_std^2), and the layer computes
  ``x @ W.T + b``.

Both give the same function distribution at initialization; they differ in how gradients
scale with width (in NTK parameterization the gradient w.r.t. W carries the factor
w_std / sqrt(fan_in), so each weight moves O(1/sqrt(width)) and training becomes lazy as the
width grows). As in Neural Tangents, biases exist even when ``b_std = 0``: in standard
parameterization they start at zero; in NTK parameterization they are N(0, 1) times 0, so
they neither contribute at init nor receive gradient.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from overparam.errors import ModelError, check_positive_int, choice_error

PARAMETERIZATIONS = ("standard", "ntk")
ACTIVATIONS = ("relu", "tanh", "erf", "gelu", "linear")


def activation_fn(name: str):
    functions = {"relu": torch.relu, "tanh": torch.tanh, "erf": torch.erf,
                 "gelu": nn.functional.gelu, "linear": lambda x: x}
    if name not in functions:
        raise choice_error("activation", name, ACTIVATIONS, ModelError)
    return functions[name]


def _check_std(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or not math.isfinite(value):
        raise ModelError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


class Dense(nn.Module):
    """y = w_std/sqrt(fan_in) x W^T + b_std b (ntk) or y = x W^T + b (standard).

    Shapes: x (n, fan_in) -> (n, fan_out); weight (fan_out, fan_in); bias (fan_out,).
    """

    def __init__(self, fan_in: int, fan_out: int, parameterization: str = "standard", w_std: float = 1.0,
                 b_std: float = 0.0) -> None:
        super().__init__()
        check_positive_int("fan_in", fan_in, cls=ModelError)
        check_positive_int("fan_out", fan_out, cls=ModelError)
        if parameterization not in PARAMETERIZATIONS:
            raise choice_error("parameterization", parameterization, PARAMETERIZATIONS, ModelError)
        self.fan_in, self.fan_out = fan_in, fan_out
        self.parameterization = parameterization
        self.w_std, self.b_std = _check_std("w_std", w_std), _check_std("b_std", b_std)
        self.weight = nn.Parameter(torch.empty(fan_out, fan_in))
        self.bias = nn.Parameter(torch.empty(fan_out))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        self.weight.normal_(0.0, 1.0, generator=generator)
        self.bias.normal_(0.0, 1.0, generator=generator)
        if self.parameterization == "standard":
            self.weight.mul_(self.w_std / math.sqrt(self.fan_in))
            self.bias.mul_(self.b_std)

    def forward(self, x: Tensor) -> Tensor:
        if self.parameterization == "ntk":
            return (self.w_std / math.sqrt(self.fan_in)) * (x @ self.weight.T) + self.b_std * self.bias
        return x @ self.weight.T + self.bias

    def extra_repr(self) -> str:
        return (f"{self.fan_in}, {self.fan_out}, parameterization={self.parameterization!r}, "
                f"w_std={self.w_std}, b_std={self.b_std}")


class MLP(nn.Module):
    """``depth`` hidden Dense layers of ``width`` units with an activation, then a Dense
    readout, all in one parameterization; the output is multiplied by ``alpha``.

    f(x) = alpha * Dense_L(phi(... phi(Dense_1(flatten(x))))). ``depth=0`` is a linear model.
    ``alpha`` is the init-scale multiplier of lazy training (Chizat et al. 2019): a large
    alpha makes training lazy; divide the loss by alpha^2 to keep the same time scale.
    Input (n, *shape) with prod(shape) = in_features -> output (n, out_features).
    """

    def __init__(self, in_features: int, width: int, depth: int, out_features: int,
                 parameterization: str = "standard", w_std: float = 1.0, b_std: float = 0.0,
                 activation: str = "relu", alpha: float = 1.0) -> None:
        super().__init__()
        check_positive_int("in_features", in_features, cls=ModelError)
        check_positive_int("width", width, cls=ModelError)
        check_positive_int("depth", depth, minimum=0, cls=ModelError)
        check_positive_int("out_features", out_features, cls=ModelError)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ModelError(f"alpha must be a number > 0, got {alpha!r}")
        self.activation_name = activation
        self.act = activation_fn(activation)
        self.alpha = float(alpha)
        sizes = [in_features] + [width] * depth + [out_features]
        self.layers = nn.ModuleList(Dense(a, b, parameterization, w_std, b_std) for a, b in zip(sizes[:-1], sizes[1:]))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        for layer in self.layers:
            layer.reset_parameters(generator)

    def forward(self, x: Tensor) -> Tensor:
        x = x.reshape(len(x), -1)
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.alpha * self.layers[-1](x)


class TwoLayer(nn.Module):
    """A two-layer network f(x) = alpha * s(m) * sum_j a_j phi(w_j . x / sqrt(d)).

    ``scaling`` sets s(m) for width m: 'ntk' 1/sqrt(m) (lazy as m grows), 'mean_field' 1/m
    (features keep moving, Mei et al. 2018, Chizat & Bach 2018), 'standard' 1 with a_j
    initialised N(0, 1/m) instead. w_j ~ N(0, I_d), a_j ~ N(0, 1) (ntk, mean_field). No biases.
    Shapes: x (n, d) -> (n, out_features); first.weight (m, d), second.weight (out, m).
    """

    SCALINGS = ("ntk", "mean_field", "standard")

    def __init__(self, in_features: int, width: int, out_features: int, activation: str = "relu",
                 scaling: str = "ntk", alpha: float = 1.0) -> None:
        super().__init__()
        check_positive_int("in_features", in_features, cls=ModelError)
        check_positive_int("width", width, cls=ModelError)
        check_positive_int("out_features", out_features, cls=ModelError)
        if scaling not in self.SCALINGS:
            raise choice_error("scaling", scaling, self.SCALINGS, ModelError)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ModelError(f"alpha must be a number > 0, got {alpha!r}")
        self.act = activation_fn(activation)
        self.scaling, self.alpha, self.width, self.in_features = scaling, float(alpha), width, in_features
        self.first = nn.Linear(in_features, width, bias=False)
        self.second = nn.Linear(width, out_features, bias=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        self.first.weight.normal_(0.0, 1.0, generator=generator)
        self.second.weight.normal_(0.0, 1.0, generator=generator)
        if self.scaling == "standard":
            self.second.weight.mul_(1.0 / math.sqrt(self.width))

    @property
    def output_scale(self) -> float:
        return {"ntk": 1.0 / math.sqrt(self.width), "mean_field": 1.0 / self.width, "standard": 1.0}[self.scaling]

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.act(self.first(x.reshape(len(x), -1)) / math.sqrt(self.in_features))
        return self.alpha * self.output_scale * self.second(hidden)
