"""How far training moved the parameters, relative to their size at initialisation.

For parameters θ_0 (init) and θ_T (after training), each a set of named tensors,

    global          = ||θ_T − θ_0||_2 / ||θ_0||_2          (all tensors together, flattened)
    per_layer[name] = ||θ_T[name] − θ_0[name]||_F / ||θ_0[name]||_F   (one entry per tensor)

Wide networks in the NTK regime move O(1/sqrt(width)) relative to init (lazy training, Lee et
al. 2019; Chizat, Oyallon & Bach 2019); mean-field or small-init networks move O(1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from overparam.errors import ConfigError


def relative_movement(params_init: Mapping[str, Tensor] | nn.Module,
                      params_final: Mapping[str, Tensor] | nn.Module) -> dict:
    """Relative parameter movement ||θ_T − θ_0|| / ||θ_0||, globally and per tensor.

    Args:
        params_init, params_final: each either a model (its ``named_parameters()``, trainable
            or not, buffers excluded) or a mapping name -> tensor such as a ``state_dict()``
            (then every floating-point tensor in it counts, buffers included: pass
            ``dict(model.named_parameters())`` to leave BatchNorm statistics out; integer
            tensors such as ``num_batches_tracked`` are skipped). Both must have the same
            names with the same shapes.

    Returns:
        ``{'global': float, 'per_layer': {name: float}}``, computed in float64, per_layer in
        the order of ``params_init``. A tensor whose initial norm is zero (e.g. a bias that
        starts at zero) gets the IEEE quotient: ``inf`` if it moved, ``nan`` if it did not
        (0/0); likewise 'global' if all of θ_0 is zero.

    Raises:
        ConfigError: names present in only one of the two, different shapes, a value that is
        not a tensor, or no floating-point tensors at all.

    Cost: one pass over the parameters.
    """
    init = _named("params_init", params_init)
    final = _named("params_final", params_final)
    only_init, only_final = sorted(set(init) - set(final)), sorted(set(final) - set(init))
    if only_init or only_final:
        raise ConfigError(f"params_init and params_final must have the same names; only in params_init: "
                          f"{only_init}, only in params_final: {only_final}")
    per_layer: dict[str, float] = {}
    moved_sq, init_sq = 0.0, 0.0
    for name, a in init.items():
        b = final[name]
        if a.shape != b.shape:
            raise ConfigError(f"parameter {name!r} has shape {tuple(a.shape)} in params_init but "
                              f"{tuple(b.shape)} in params_final")
        a64 = a.detach().to(torch.float64)
        b64 = b.detach().to(device=a64.device, dtype=torch.float64)
        d = torch.linalg.vector_norm(b64 - a64).item() ** 2
        n = torch.linalg.vector_norm(a64).item() ** 2
        moved_sq += d
        init_sq += n
        per_layer[name] = _ratio(math.sqrt(d), math.sqrt(n))
    return {"global": _ratio(math.sqrt(moved_sq), math.sqrt(init_sq)), "per_layer": per_layer}


def _ratio(moved: float, size: float) -> float:
    if size > 0:
        return moved / size
    return math.inf if moved > 0 else math.nan


def _named(what: str, params: object) -> dict[str, Tensor]:
    if isinstance(params, nn.Module):
        items = list(params.named_parameters())
    elif isinstance(params, Mapping):
        items = list(params.items())
    else:
        raise ConfigError(f"{what} must be a model or a mapping name -> tensor (e.g. a state_dict), "
                          f"got {type(params).__name__}")
    named: dict[str, Tensor] = {}
    for name, value in items:
        if not isinstance(value, Tensor):
            raise ConfigError(f"{what}[{name!r}] must be a tensor, got {type(value).__name__}")
        if value.is_floating_point():
            named[str(name)] = value
    if not named:
        raise ConfigError(f"{what} has no floating-point tensors")
    return named


__all__ = ["relative_movement"]
