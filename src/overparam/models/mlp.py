"""Fully connected networks in the standard and NTK parameterizations, and the two-layer net
in its three scalings (NTK, mean field, standard).

The two parameterizations follow Neural Tangents' ``stax.Dense(out, W_std, b_std,
parameterization=...)`` exactly. For a layer with fan-in n and input x of shape (batch, n):

- ``'ntk'``:      W, b ~ N(0, 1) entrywise, and  y = (w_std / sqrt(n)) x W^T + b_std b
- ``'standard'``: W ~ N(0, w_std^2 / n), b ~ N(0, b_std^2), and  y = x W^T + b

Both give every output unit the same distribution at initialisation, N(0, w_std^2 |x|^2 / n +
b_std^2) for a fixed x, but gradients differ: the NTK-parameterization gradient with respect to
W is w_std / sqrt(n) times the standard one at the same function, which is what makes the
infinite-width limit a kernel method with an O(1) learning rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from overparam.models.common import check_choice, check_scale, check_size, make_activation

PARAMETERIZATIONS = ("standard", "ntk")
TWO_LAYER_SCALINGS = ("ntk", "mean_field", "standard")


class Dense(nn.Module):
    """A fully connected layer, (batch, in_features) -> (batch, out_features), in Neural
    Tangents' ``'standard'`` or ``'ntk'`` parameterization (see the module docstring).

    Attributes: ``weight`` (out_features, in_features), ``bias`` (out_features,),
    ``parameterization``, ``w_std``, ``b_std``.

    The bias exists even when ``b_std = 0``, as in Neural Tangents: in ``'standard'`` it starts
    at zero (and is trained); in ``'ntk'`` it is drawn N(0, 1) but multiplied by ``b_std = 0``,
    so it never affects the output and gets zero gradient.

    Initialisation draws standard normals for ``weight`` then ``bias`` and, in ``'standard'``,
    multiplies them by w_std / sqrt(in_features) and b_std. So with the same generator the two
    parameterizations compute the same function at initialisation.
    """

    def __init__(self, in_features: int, out_features: int, parameterization: str = "standard",
                 w_std: float = 1.0, b_std: float = 0.0) -> None:
        super().__init__()
        self.in_features = check_size("in_features", in_features)
        self.out_features = check_size("out_features", out_features)
        self.parameterization = check_choice("parameterization", parameterization, PARAMETERIZATIONS)
        self.w_std = check_scale("w_std", w_std)
        self.b_std = check_scale("b_std", b_std, allow_zero=True)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw the weights from ``generator`` (the global RNG when None), which must live on
        the parameters' device."""
        self.weight.normal_(generator=generator)
        self.bias.normal_(generator=generator)
        if self.parameterization == "standard":
            self.weight.mul_(self.w_std / math.sqrt(self.in_features))
            self.bias.mul_(self.b_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.parameterization == "ntk":
            return F.linear(x, self.weight * (self.w_std / math.sqrt(self.in_features)), self.bias * self.b_std)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"parameterization={self.parameterization!r}, w_std={self.w_std}, b_std={self.b_std}")


class MLP(nn.Module):
    """A fully connected network of ``depth`` hidden layers of ``width`` units.

    f(x) = alpha * D_out(σ(D_depth(... σ(D_1(flatten(x))) ...))), every D a :class:`Dense` with
    the given ``parameterization``, ``w_std`` and ``b_std`` (the readout too, as in Neural
    Tangents' ``stax.serial(Dense, act, ..., Dense)``). ``depth = 0`` is a linear model.

    Input: (batch, *shape) with prod(shape) = in_features, flattened from dim 1.
    Output: (batch, out_features).

    ``alpha`` multiplies the output: the init-scale knob of Chizat, Oyallon & Bach (2019) "On
    lazy training". A large alpha trains lazily (close to the linearised model) and a small one
    richly. A study varying alpha should divide the loss by alpha**2 so that the time scale of
    training stays comparable across alphas (their L(α f) / α²).

    Activations: 'relu', 'tanh', 'erf', 'gelu' (exact), 'linear' (identity).
    """

    def __init__(self, in_features: int, width: int, depth: int, out_features: int,
                 parameterization: str = "standard", w_std: float = 1.0, b_std: float = 0.0,
                 activation: str = "relu", alpha: float = 1.0) -> None:
        super().__init__()
        check_size("width", width)
        check_size("depth", depth, minimum=0)
        self.alpha = check_scale("alpha", alpha)
        self.activation = make_activation(activation)
        sizes = [in_features] + [width] * depth
        self.hidden = nn.ModuleList(Dense(n_in, n_out, parameterization, w_std, b_std)
                                    for n_in, n_out in zip(sizes[:-1], sizes[1:]))
        self.readout = Dense(sizes[-1], out_features, parameterization, w_std, b_std)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every layer, input to output, from ``generator`` (the global RNG when None)."""
        for layer in [*self.hidden, self.readout]:
            layer.reset_parameters(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.flatten(1)
        for layer in self.hidden:
            h = self.activation(layer(h))
        return self.alpha * self.readout(h)


class TwoLayer(nn.Module):
    """A two-layer network without biases, in one of three scalings.

    With d = in_features, m = width, w_j the rows of ``w`` (m, d) and a_j the columns of ``a``
    (out_features, m):

    - ``'ntk'``:        f(x) = alpha / sqrt(m) * sum_j a_j σ(w_j·x / sqrt(d)),  a, w ~ N(0, 1)
    - ``'mean_field'``: f(x) = alpha / m       * sum_j a_j σ(w_j·x / sqrt(d)),  a, w ~ N(0, 1)
    - ``'standard'``:   f(x) = alpha           * sum_j a_j σ(w_j·x),  w ~ N(0, 1/d), a ~ N(0, 1/m)

    'ntk' and 'standard' compute the same function from the same generator (they differ in
    gradient scale); mean field is 'ntk' times 1/sqrt(m), so its output vanishes at init as m
    grows and its features move O(1) during training (Mei, Montanari & Nguyen 2018; Chizat &
    Bach 2018). ``alpha`` is the lazy/rich multiplier of :class:`MLP`.

    Input: (batch, *shape) with prod(shape) = d, flattened from dim 1. Output: (batch, out_features).
    """

    def __init__(self, in_features: int, width: int, out_features: int, activation: str = "relu",
                 scaling: str = "ntk", alpha: float = 1.0) -> None:
        super().__init__()
        self.in_features = check_size("in_features", in_features)
        self.width = check_size("width", width)
        check_size("out_features", out_features)
        self.scaling = check_choice("scaling", scaling, TWO_LAYER_SCALINGS)
        self.alpha = check_scale("alpha", alpha)
        self.activation = make_activation(activation)
        standard = scaling == "standard"
        self.input_scale = 1.0 if standard else 1 / math.sqrt(in_features)
        self.output_scale = {"ntk": 1 / math.sqrt(width), "mean_field": 1 / width, "standard": 1.0}[scaling]
        self.w = nn.Parameter(torch.empty(width, in_features))
        self.a = nn.Parameter(torch.empty(out_features, width))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw ``w`` then ``a`` from ``generator`` (the global RNG when None)."""
        self.w.normal_(generator=generator)
        self.a.normal_(generator=generator)
        if self.scaling == "standard":
            self.w.mul_(1 / math.sqrt(self.in_features))
            self.a.mul_(1 / math.sqrt(self.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.activation(F.linear(x.flatten(1), self.w) * self.input_scale)
        return (self.alpha * self.output_scale) * F.linear(h, self.a)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, width={self.width}, scaling={self.scaling!r}, alpha={self.alpha}"
