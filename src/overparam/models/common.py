"""Pieces shared by the model families: argument checks, activations, seeded default init."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from overparam.errors import ModelError, check_positive_int, choice_error


class Erf(nn.Module):
    """The error function, elementwise (Neural Tangents' ``stax.Erf()``; its kernel is closed-form)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.erf(x)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "erf": Erf,
    "gelu": nn.GELU,  # exact: x * Phi(x)
    "linear": nn.Identity,
}


def make_activation(name: object) -> nn.Module:
    """The activation module called ``name`` (one of :data:`ACTIVATIONS`)."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]()


def check_choice(what: str, value: object, accepted: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``accepted``, else raise :class:`ModelError` naming it."""
    accepted = tuple(accepted)
    if not isinstance(value, str) or value not in accepted:
        raise choice_error(what, value, accepted, cls=ModelError)
    return value


def check_size(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise :class:`ModelError` naming it."""
    return check_positive_int(name, value, minimum=minimum, cls=ModelError)


def check_scale(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is finite and > 0 (>= 0 with ``allow_zero``), else raise."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (value >= 0 if allow_zero else value > 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ModelError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


@torch.no_grad()
def reset_torch_default(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Re-draw every Linear/Conv/BatchNorm in ``model`` exactly as PyTorch's own
    ``reset_parameters`` does, but from ``generator`` (the global RNG when None).

    Weights ~ U(-b, b) with b = 1/sqrt(fan_in) (``kaiming_uniform_`` with a = sqrt(5)), biases
    ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)); BatchNorm gets weight 1, bias 0 and fresh running
    statistics. ``generator`` must live on the parameters' device.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
            if module.bias is not None:
                bound = 1 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.bias, -bound, bound, generator=generator)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_parameters()
