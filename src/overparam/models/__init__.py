"""Models, built by name: ``build(name, input_shape, num_outputs, **options)``.

``input_shape`` is a dataset's example shape without the batch dimension, e.g. (40,),
(1, 28, 28) or (3, 32, 32); ``build`` derives the constructor's input and output arguments from
it and passes ``options`` on.

| name | class | input shapes | options |
|---|---|---|---|
| mlp | MLP | any (flattened) | width, depth, parameterization, w_std, b_std, activation, alpha |
| two_layer | TwoLayer | any (flattened) | width, activation, scaling, alpha |
| cnn5 | CNN5 | (C, H, W), H, W >= 8 | k (alias width) |
| resnet18 | PreActResNet18 | (C, H, W) | k (alias width) |
| cnn1d | CNN1D | (L,) or (1, L) | channels (alias width) |
| deep_linear | DeepLinear | any (flattened) | width, depth, init, scale |

``width`` is accepted by every model (the CLI's ``--width``); for the CNNs it is the channel
scale k or the channel count. Options without a default in the constructor are required:
``width`` for mlp, two_layer and deep_linear, and ``depth`` for mlp and deep_linear.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from overparam.errors import ModelError, choice_error
from overparam.models.cnn import CNN1D, CNN5
from overparam.models.common import ACTIVATIONS, check_size
from overparam.models.linear import DeepLinear
from overparam.models.mlp import MLP, Dense, TwoLayer
from overparam.models.resnet import PreActResNet18


def _features(name: str, shape: tuple[int, ...]) -> int:
    return math.prod(shape)


def _image_channels(min_side: int) -> Callable[[str, tuple[int, ...]], int]:
    def read(name: str, shape: tuple[int, ...]) -> int:
        if len(shape) != 3 or min(shape[1:]) < min_side:
            bound = f" with height, width >= {min_side}" if min_side > 1 else ""
            raise ModelError(f"model {name!r} cannot take input shape {shape}; accepted: (channels, height, width)"
                             + bound)
        return shape[0]

    return read


def _signal_length(name: str, shape: tuple[int, ...]) -> int:
    if len(shape) == 1 or (len(shape) == 2 and shape[0] == 1):
        return shape[-1]
    raise ModelError(f"model {name!r} cannot take input shape {shape}; accepted: (length,) or (1, length)")


@dataclass(frozen=True)
class _Entry:
    """How ``build`` calls one constructor: ``read_input(name, input_shape)`` gives the
    argument ``input_arg``, ``num_outputs`` goes to ``output_arg``, and ``aliases`` renames
    options to constructor arguments."""

    cls: type[nn.Module]
    input_arg: str
    read_input: Callable[[str, tuple[int, ...]], int]
    output_arg: str
    aliases: dict[str, str] = field(default_factory=dict)

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The constructor's arguments that ``build`` does not derive."""
        derived = {self.input_arg, self.output_arg}
        return {k: p for k, p in inspect.signature(self.cls).parameters.items() if k not in derived}


_REGISTRY: dict[str, _Entry] = {
    "mlp": _Entry(MLP, "in_features", _features, "out_features"),
    "two_layer": _Entry(TwoLayer, "in_features", _features, "out_features"),
    "cnn5": _Entry(CNN5, "in_channels", _image_channels(8), "num_classes", {"width": "k"}),
    "resnet18": _Entry(PreActResNet18, "in_channels", _image_channels(1), "num_classes", {"width": "k"}),
    "cnn1d": _Entry(CNN1D, "length", _signal_length, "num_classes", {"width": "channels"}),
    "deep_linear": _Entry(DeepLinear, "in_features", _features, "out_features"),
}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def model_options(name: str) -> list[str]:
    """The options :func:`build` accepts for model ``name``."""
    entry = _entry(name)
    return [*entry.parameters(), *entry.aliases]


def build(name: str, input_shape: tuple[int, ...], num_outputs: int, **options) -> nn.Module:
    """Model ``name`` for examples of ``input_shape`` (no batch dim) and ``num_outputs`` outputs.

    Raises :class:`ModelError` for an unknown name or option, a missing required option, an
    input shape the model cannot take, or a bad size (e.g. width=0, depth=-1).
    """
    entry = _entry(name)
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ModelError(f"input_shape must be a non-empty tuple of positive ints, got {input_shape!r}")
    check_size("num_outputs", num_outputs)
    accepted = model_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ModelError(f"model {name!r} does not take option(s) {unknown}; accepted: {accepted}")
    kwargs = dict(options)
    for alias, target in entry.aliases.items():
        if alias in kwargs:
            if target in kwargs:
                raise ModelError(f"model {name!r}: give {alias!r} or {target!r} (the same option), not both; "
                                 f"got {alias}={kwargs[alias]!r}, {target}={kwargs[target]!r}")
            kwargs[target] = kwargs.pop(alias)
    missing = [k for k, p in entry.parameters().items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ModelError(f"model {name!r} needs option(s) {missing}; accepted: {accepted}")
    kwargs[entry.input_arg] = entry.read_input(name, shape)
    kwargs[entry.output_arg] = num_outputs
    return entry.cls(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_table(model: nn.Module) -> dict[str, int]:
    """Number of scalars in each trainable parameter, by name (sums to :func:`count_parameters`)."""
    return {name: p.numel() for name, p in model.named_parameters() if p.requires_grad}


def _entry(name: str) -> _Entry:
    if name not in _REGISTRY:
        raise choice_error("model", name, MODEL_NAMES, cls=ModelError)
    return _REGISTRY[name]


__all__ = [
    "ACTIVATIONS", "CNN1D", "CNN5", "Dense", "DeepLinear", "MLP", "MODEL_NAMES", "PreActResNet18", "TwoLayer",
    "build", "count_parameters", "model_options", "parameter_table",
]
