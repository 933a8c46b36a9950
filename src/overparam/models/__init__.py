"""Models, built by name from a small config: ``build(name, input_shape, num_outputs, **options)``.

| name | class | input shapes | options |
|---|---|---|---|
| mlp | MLP | any (flattened) | width, depth, parameterization, w_std, b_std, activation, alpha |
| two_layer | TwoLayer | any (flattened) | width, activation, scaling, alpha |
| cnn5 | CNN5 | (C, H, W), H, W >= 8 | k |
| resnet18 | PreActResNet18 | (C, H, W), H, W >= 8 | k |
| cnn1d | CNN1D | (L,) or (1, L) | channels |
| deep_linear | DeepLinear | any (flattened) | width, depth, init, scale |
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from torch import nn

from overparam.errors import ModelError, check_positive_int, choice_error
from overparam.models.cnn import CNN1D, CNN5
from overparam.models.linear import DeepLinear
from overparam.models.mlp import MLP, Dense, TwoLayer
from overparam.models.resnet import PreActResNet18


def _flat(shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _image(name: str, shape: tuple[int, ...]) -> int:
    if len(shape) != 3 or min(shape[1:]) < 8:
        raise ModelError(f"model {name!r} needs image inputs (C, H, W) with H, W >= 8, got input shape {shape}")
    return shape[0]


def _signal(shape: tuple[int, ...]) -> int:
    if len(shape) == 1 or (len(shape) == 2 and shape[0] == 1):
        return shape[-1]
    raise ModelError(f"model 'cnn1d' needs 1-D inputs (L,) or (1, L), got input shape {shape}")


# name -> (constructor, function of (input_shape, num_outputs) giving the shape arguments)
_REGISTRY: dict[str, tuple[Callable[..., nn.Module], Callable[[tuple, int], dict]]] = {
    "mlp": (MLP, lambda s, k: {"in_features": _flat(s), "out_features": k}),
    "two_layer": (TwoLayer, lambda s, k: {"in_features": _flat(s), "out_features": k}),
    "cnn5": (CNN5, lambda s, k: {"in_channels": _image("cnn5", s), "num_classes": k}),
    "resnet18": (PreActResNet18, lambda s, k: {"in_channels": _image("resnet18", s), "num_classes": k}),
    "cnn1d": (CNN1D, lambda s, k: {"length": _signal(s), "num_classes": k}),
    "deep_linear": (DeepLinear, lambda s, k: {"in_features": _flat(s), "out_features": k}),
}
MODEL_NAMES = tuple(_REGISTRY)


def model_options(name: str) -> list[str]:
    """The options ``build`` accepts for ``name`` (constructor arguments it does not derive)."""
    if name not in _REGISTRY:
        raise choice_error("model", name, MODEL_NAMES, ModelError)
    cls, shape_args = _REGISTRY[name]
    derived = set(shape_args((1, 28, 28) if name in ("cnn5", "resnet18") else (40,), 2))
    return [p for p in inspect.signature(cls).parameters if p not in derived]


def build(name: str, input_shape: tuple[int, ...], num_outputs: int, **options) -> nn.Module:
    """Build model ``name`` for inputs of ``input_shape`` (no batch dim) and ``num_outputs``
    outputs. Unknown names or options, impossible shapes and bad sizes raise ``ModelError``."""
    if name not in _REGISTRY:
        raise choice_error("model", name, MODEL_NAMES, ModelError)
    input_shape = tuple(int(d) for d in input_shape)
    if not input_shape or min(input_shape) < 1:
        raise ModelError(f"input_shape must be a non-empty tuple of positive sizes, got {input_shape}")
    check_positive_int("num_outputs", num_outputs, cls=ModelError)
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ModelError(f"model {name!r} does not take option(s) {unknown}; accepted: {accepted}")
    cls, shape_args = _REGISTRY[name]
    try:
        return cls(**shape_args(input_shape, num_outputs), **options)
    except TypeError as error:  # a required option is missing
        raise ModelError(f"model {name!r}: {error}; accepted options: {accepted}") from error


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_table(model: nn.Module) -> dict[str, int]:
    """Trainable parameter count per named parameter tensor."""
    return {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}


__all__ = [
    "CNN1D", "CNN5", "Dense", "DeepLinear", "MLP", "MODEL_NAMES", "PreActResNet18", "TwoLayer", "build",
    "count_parameters", "model_options", "parameter_table",
]
