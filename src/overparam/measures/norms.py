"""Norm-based measures of a network: matrix norms of its weights, distance from initialization,
path norm, effective rank, and the output margin on data.

Weight matrices are the model's parameters with >= 2 dims (frozen ones included: they are part
of the function), each viewed as a matrix W of shape (out, −1): a Linear weight as it is, a
conv kernel (out_channels, in_channels, *kernel) as (out_channels, in_channels · prod(kernel)).
Biases and other 1-D parameters (BatchNorm scales) are not weight matrices. Layers are named by
``model.named_parameters()``.

The matrix norms are of the *stored* parameters. For :class:`overparam.models.mlp.Dense` in the
'ntk' parameterization the layer computes with (w_std/sqrt(fan_in)) · W, so its stored weight's
norms are sqrt(fan_in)/w_std times those of the effective matrix; :func:`path_norm`, which is a
property of the function, uses the effective weights.

For a conv kernel the spectral (and nuclear) norm here is that of the reshaped
(out, in · k_h · k_w) matrix, the common convention (e.g. Jiang et al. 2020's code), not the
operator norm of the convolution on a given input size (Sedghi, Gupta & Long 2019), which can
be larger by up to a factor sqrt(k_h · k_w).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from overparam.errors import ConfigError
from overparam.measures.common import Batch, Cost, as_batches, num_examples, preserved, timed

EFFECTIVE_RANK_METHODS = ("entropy", "threshold", "energy")


@dataclass
class NormResult:
    """One value per layer (by parameter name, in model order) and their combination ``total``
    (what the combination is depends on the function: see its docstring)."""

    per_layer: dict[str, float]
    total: float
    cost: Cost = field(default_factory=Cost)


def weight_matrices(model: nn.Module) -> dict[str, Tensor]:
    """The model's weight matrices, detached, each reshaped to (out, −1), by parameter name."""
    out = {name: p.detach().reshape(p.shape[0], -1) for name, p in model.named_parameters() if p.dim() >= 2}
    if not out:
        raise ConfigError(f"model {type(model).__name__} has no weight matrices (parameters with >= 2 dims)")
    return out


def _per_layer(model: nn.Module, norm) -> tuple[dict[str, float], Cost]:
    cost = Cost()
    with timed(cost):
        values = {name: float(norm(w)) for name, w in weight_matrices(model).items()}
    return values, cost


def frobenius_norms(model: nn.Module) -> NormResult:
    """||W_l||_F = sqrt(Σ_ij W_ij²) per weight matrix; ``total`` = sqrt(Σ_l ||W_l||_F²), the ℓ2
    norm of all weight matrices together (biases excluded). Cost: one pass over the weights."""
    values, cost = _per_layer(model, lambda w: torch.linalg.matrix_norm(w, ord="fro"))
    return NormResult(values, math.sqrt(sum(v * v for v in values.values())), cost)


def sum_of_squared_frobenius(model: nn.Module) -> float:
    """Σ_l ||W_l||_F² over the weight matrices (Jiang et al. 2020's param-norm without biases)."""
    return sum(v * v for v in frobenius_norms(model).per_layer.values())


def spectral_norms(model: nn.Module) -> NormResult:
    """Largest singular value ||W_l||_2 per weight matrix, exact (``torch.linalg.matrix_norm``
    with ord=2, an SVD); for conv kernels that of the reshaped (out, −1) matrix (see the module
    docstring). ``total`` = Π_l ||W_l||_2. Cost: one SVD per layer, O(out · in · min(out, in))."""
    values, cost = _per_layer(model, lambda w: torch.linalg.matrix_norm(w, ord=2))
    return NormResult(values, math.prod(values.values()), cost)


def product_of_spectral_norms(model: nn.Module, log: bool = False) -> float:
    """Π_l ||W_l||_2 over the weight matrices, or Σ_l log ||W_l||_2 with ``log`` (no overflow
    for deep networks; −inf if some layer is zero)."""
    values = spectral_norms(model).per_layer.values()
    if log:
        return sum(math.log(v) if v > 0 else -math.inf for v in values)
    return math.prod(values)


def nuclear_norms(model: nn.Module) -> NormResult:
    """Nuclear norm ||W_l||_* = Σ_i σ_i(W_l) per weight matrix (reshaped (out, −1) for convs);
    ``total`` = Σ_l ||W_l||_*. Cost: one SVD per layer."""
    values, cost = _per_layer(model, lambda w: torch.linalg.matrix_norm(w, ord="nuc"))
    return NormResult(values, sum(values.values()), cost)


def init_parameters(model: nn.Module, init: nn.Module | Mapping[str, Tensor] | Sequence[Tensor] | None,
                    trainable_only: bool = True) -> list[Tensor]:
    """Reference parameters θ₀ aligned with the model's parameters (its trainable ones with
    ``trainable_only``), detached, on each parameter's device and dtype.

    ``init`` is a module of the same architecture, a mapping from parameter names to tensors
    (a ``state_dict`` works), a sequence of tensors in ``model.parameters()`` order, or None
    for θ₀ = 0. Raises :class:`ConfigError` on a missing name, a wrong count or a shape mismatch.
    """
    named = list(model.named_parameters())
    if init is None:
        refs = {name: torch.zeros_like(p.detach()) for name, p in named}
    else:
        if isinstance(init, nn.Module):
            source = {name: p.detach() for name, p in init.named_parameters()}
        elif isinstance(init, Mapping):
            source = dict(init)
        elif isinstance(init, Sequence) and all(isinstance(t, Tensor) for t in init):
            if len(init) != len(named):
                raise ConfigError(f"init_params has {len(init)} tensors but the model has {len(named)} parameters; "
                                  f"accepted: a sequence in model.parameters() order, a name->tensor mapping or a "
                                  f"module")
            source = {name: t for (name, _), t in zip(named, init)}
        else:
            raise ConfigError(f"init_params must be a module, a name->tensor mapping or a sequence of tensors, "
                              f"got {type(init).__name__}")
        refs = {}
        for name, p in named:
            if name not in source:
                raise ConfigError(f"init_params has no entry for parameter {name!r}")
            t = source[name]
            if not isinstance(t, Tensor) or t.shape != p.shape:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ConfigError(f"init_params[{name!r}] has shape {shape}, the parameter has {tuple(p.shape)}")
            refs[name] = t.detach().to(device=p.device, dtype=p.dtype)
    return [refs[name] for name, p in named if p.requires_grad or not trainable_only]


def distance_from_init(model: nn.Module,
                       init_params: nn.Module | Mapping[str, Tensor] | Sequence[Tensor]) -> NormResult:
    """||θ_l − θ₀_l||_2 (Frobenius) for every parameter tensor (weights, biases and
    normalization parameters, frozen ones included) by name; ``total`` = ||θ − θ₀||_2 over all
    of them. ``init_params``: see :func:`init_parameters`. Cost: one pass over the parameters."""
    if init_params is None:
        raise ConfigError("distance_from_init needs init_params (a module, a name->tensor mapping or a sequence)")
    cost = Cost()
    with timed(cost):
        refs = init_parameters(model, init_params, trainable_only=False)
        values = {name: float((p.detach() - r).norm()) for (name, p), r in zip(model.named_parameters(), refs)}
    return NormResult(values, math.sqrt(sum(v * v for v in values.values())), cost)


# ---------------------------------------------------------------------------------------------
# path norm


@dataclass
class PathNormResult:
    """ℓ2 path norm ``value`` = sqrt(``squared``), ``squared`` = Σ over paths of Π w² (Jiang
    et al. 2020's path-norm measure is ``squared``)."""

    value: float
    squared: float
    num_layers: int
    cost: Cost = field(default_factory=Cost)


_PASS_THROUGH = (nn.ReLU, nn.Identity, nn.Flatten, nn.Dropout)
_PATH_NORM_ACCEPTED = ("nn.Linear", "overparam Dense", "MLP", "TwoLayer", "DeepLinear",
                       "nn.Sequential of these with nn.ReLU / nn.Identity / nn.Flatten / nn.Dropout")


def _check_activation(model: nn.Module) -> None:
    if not isinstance(model.activation, (nn.ReLU, nn.Identity)):
        raise ConfigError(f"path norm is defined here for ReLU (or linear) networks; {type(model).__name__} has "
                          f"activation {type(model.activation).__name__}; accepted: relu, linear")


def _affine_layers(module: nn.Module) -> list[tuple[Tensor, Tensor | None]]:
    """The network as a chain of effective affine maps h -> W h + b (ReLUs in between, which
    act as the identity on the non-negative vectors the path norm pushes through)."""
    from overparam.models.linear import DeepLinear
    from overparam.models.mlp import MLP, Dense, TwoLayer

    if isinstance(module, Dense):
        if module.parameterization == "ntk":
            return [(module.weight.detach() * (module.w_std / math.sqrt(module.in_features)),
                     module.bias.detach() * module.b_std)]
        return [(module.weight.detach(), module.bias.detach())]
    if isinstance(module, nn.Linear):
        return [(module.weight.detach(), None if module.bias is None else module.bias.detach())]
    if isinstance(module, MLP):
        _check_activation(module)
        layers = [pair for layer in [*module.hidden, module.readout] for pair in _affine_layers(layer)]
        w, b = layers[-1]
        layers[-1] = (w * module.alpha, b * module.alpha)
        return layers
    if isinstance(module, TwoLayer):
        _check_activation(module)
        return [(module.w.detach() * module.input_scale, None),
                (module.a.detach() * (module.alpha * module.output_scale), None)]
    if isinstance(module, DeepLinear):
        return [(w.detach(), None) for w in module.weights]
    if isinstance(module, nn.Sequential):
        layers = []
        for child in module:
            if not isinstance(child, _PASS_THROUGH):
                layers += _affine_layers(child)
        return layers
    raise ConfigError(f"path norm is not defined here for {type(module).__name__}; accepted: "
                      + ", ".join(_PATH_NORM_ACCEPTED))


def path_norm(model: nn.Module, include_bias: bool = True) -> PathNormResult:
    """ℓ2 path norm of a ReLU network (Neyshabur, Tomioka & Srebro 2015):

        ||θ||_path = sqrt( Σ_{paths p from an input or a bias to an output} Π_{edges e ∈ p} w_e² ),

    with a bias b_j treated as an edge from a constant-1 unit into unit j (only with
    ``include_bias``). Computed exactly as sqrt(Σ_k f_{θ²}(1)_k): push the all-ones input
    through the chain of affine maps with every effective weight and bias squared. Every
    entry stays >= 0, where ReLU is the identity, so each output unit receives exactly the sum
    over paths ending at it.

    Effective weights are what the forward pass multiplies by: for an 'ntk' Dense,
    (w_std/sqrt(fan_in)) · W and b_std · b; an MLP's ``alpha`` multiplies its readout weight
    and bias; TwoLayer's input and output scales multiply w and a. Accepted models:
    nn.Linear, Dense, MLP and TwoLayer with 'relu' or 'linear' activation, DeepLinear, and
    nn.Sequential stacks of these with ReLU/Identity/Flatten/Dropout (dropout: eval mode);
    anything else (convolutions, BatchNorm, other activations) raises :class:`ConfigError`.

    Computed in float64. Cost: one matrix-vector product per layer.
    """
    cost = Cost()
    with timed(cost):
        layers = _affine_layers(model)
        if not layers:
            raise ConfigError(f"model {type(model).__name__} has no linear layers for a path norm")
        h = torch.ones(layers[0][0].shape[1], dtype=torch.float64, device=layers[0][0].device)
        for i, (w, b) in enumerate(layers):
            if w.shape[1] != h.numel():
                raise ConfigError(f"layer {i} of the path-norm chain takes {w.shape[1]} inputs but receives "
                                  f"{h.numel()}: only plain stacks of linear layers are accepted")
            h = w.double().pow(2) @ h
            if include_bias and b is not None:
                h = h + b.double().pow(2)
        squared = float(h.sum())
    return PathNormResult(value=math.sqrt(squared), squared=squared, num_layers=len(layers), cost=cost)


# ---------------------------------------------------------------------------------------------
# effective rank


def effective_rank(matrix: Tensor, method: str = "entropy", threshold: float = 0.01, delta: float = 0.01) -> float:
    """Effective rank of ``matrix`` (2-D; more dims are reshaped to (shape[0], −1)) from its
    singular values σ_1 >= ... >= σ_r (computed in float64):

    - 'entropy' (Roy & Vetterli 2007): exp(H(p)), p_i = σ_i / Σ_j σ_j, H(p) = −Σ p_i log p_i
      (0 log 0 = 0). k equal non-zero singular values give exactly k; a real number in [1, r].
    - 'threshold': #{i : σ_i > threshold · σ_1}, the number of singular values above a fraction
      ``threshold`` of the largest.
    - 'energy': the smallest k with Σ_{i≤k} σ_i² >= (1 − delta) Σ_i σ_i², the number of
      directions capturing a fraction 1 − ``delta`` of the squared Frobenius norm (compared with
      a relative slack of 1e-12 for rounding).

    A zero matrix has effective rank 0 under every method.
    """
    if method not in EFFECTIVE_RANK_METHODS:
        raise ConfigError(f"unknown effective rank method {method!r}; accepted: {EFFECTIVE_RANK_METHODS}")
    if not isinstance(matrix, Tensor) or matrix.dim() < 2:
        raise ConfigError(f"effective_rank needs a tensor with >= 2 dims, got "
                          f"{tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__}")
    if not (isinstance(threshold, (int, float)) and 0 <= threshold < 1):
        raise ConfigError(f"threshold must be a number in [0, 1), got {threshold!r}")
    if not (isinstance(delta, (int, float)) and 0 <= delta < 1):
        raise ConfigError(f"delta must be a number in [0, 1), got {delta!r}")
    s = torch.linalg.svdvals(matrix.detach().reshape(matrix.shape[0], -1).double())
    total = float(s.sum())
    if total == 0:
        return 0.0
    if method == "entropy":
        p = s / s.sum()
        p = p[p > 0]
        return float(torch.exp(-(p * p.log()).sum()))
    if method == "threshold":
        return float((s > threshold * s[0]).sum())
    energy = s.pow(2)
    cumulative = energy.cumsum(0)
    needed = (1 - delta) * float(energy.sum()) * (1 - 1e-12)
    return float(int((cumulative < needed).sum()) + 1)


def effective_ranks(model: nn.Module, method: str = "entropy", threshold: float = 0.01,
                    delta: float = 0.01) -> dict[str, float]:
    """:func:`effective_rank` of every weight matrix, by parameter name."""
    return {name: effective_rank(w, method, threshold, delta) for name, w in weight_matrices(model).items()}


# ---------------------------------------------------------------------------------------------
# output margin


@dataclass
class MarginResult:
    """Classification margins over all examples: the ``q``-th ``percentile``, ``mean``, ``min``
    and the fraction of examples with margin <= 0 (misclassified or tied)."""

    percentile: float
    q: float
    mean: float
    min: float
    fraction_nonpositive: float
    num_examples: int
    cost: Cost = field(default_factory=Cost)


def output_margin(model: nn.Module, data: Batch | Iterable[Batch], q: float = 10.0, *,
                  batch_size: int | None = None, mode: str | None = "eval") -> MarginResult:
    """Output margins γ_i = f(x_i)[y_i] − max_{j ≠ y_i} f(x_i)[j] over every example of ``data``
    (outputs (batch, classes >= 2), integer labels (batch,)), in ``mode`` ('eval' by default,
    restored afterwards).

    ``percentile`` is the q-th percentile of {γ_i} with linear interpolation between order
    statistics (``torch.quantile``, numpy's default); Jiang et al. 2020 use the 10th percentile
    as the margin of their margin-normalized measures (their code takes the (m//10)-th smallest
    value, which can differ by one order statistic). Cost: one forward pass over all data.
    """
    if not (isinstance(q, (int, float)) and not isinstance(q, bool) and 0 <= q <= 100):
        raise ConfigError(f"q must be a percentile in [0, 100], got {q!r}")
    batches = as_batches(data, batch_size)
    cost = Cost()
    margins = []
    with preserved(model, mode), timed(cost), torch.no_grad():
        for x, y in batches:
            out = model(x)
            if out.dim() != 2 or out.shape[1] < 2:
                raise ConfigError(f"output_margin needs outputs of shape (batch, classes >= 2), got {tuple(out.shape)}")
            if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
                raise ConfigError(f"output_margin needs integer class labels of shape (batch,), got dtype {y.dtype} "
                                  f"and shape {tuple(y.shape)}")
            y = y.to(out.device)
            correct = out.gather(1, y.unsqueeze(1)).squeeze(1)
            others = out.scatter(1, y.unsqueeze(1), float("-inf"))
            margins.append((correct - others.max(dim=1).values).double())
            cost.forward += len(x)
    gamma = torch.cat(margins).cpu()  # torch.quantile takes at most 2^24 elements on any device; CPU is fine
    return MarginResult(percentile=float(torch.quantile(gamma, q / 100.0)), q=float(q), mean=float(gamma.mean()),
                        min=float(gamma.min()), fraction_nonpositive=float((gamma <= 0).double().mean()),
                        num_examples=num_examples(batches), cost=cost)


# ---------------------------------------------------------------------------------------------
# everything at once


def all_norms(model: nn.Module, init_params: nn.Module | Mapping[str, Tensor] | Sequence[Tensor] | None = None
              ) -> dict[str, float]:
    """A flat dict of scalars for storage. Keys:

    - 'frobenius', 'sum_squared_frobenius', 'spectral_product', 'log_spectral_product',
      'nuclear' (the totals of the functions above), 'param_l2' (ℓ2 of all parameters,
      biases included), 'num_weight_matrices';
    - 'path_norm' where :func:`path_norm` is defined for the model (absent otherwise);
    - with ``init_params``: 'dist_init' (||θ − θ₀||_2) and 'dist_init/<name>' per parameter;
    - per weight matrix: 'frobenius/<name>', 'spectral/<name>', 'nuclear/<name>',
      'effective_rank/<name>' (entropy form).
    """
    out: dict[str, float] = {}
    fro, spec, nuc = frobenius_norms(model), spectral_norms(model), nuclear_norms(model)
    out["frobenius"] = fro.total
    out["sum_squared_frobenius"] = fro.total ** 2
    out["spectral_product"] = spec.total
    out["log_spectral_product"] = sum(math.log(v) if v > 0 else -math.inf for v in spec.per_layer.values())
    out["nuclear"] = nuc.total
    out["param_l2"] = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))
    out["num_weight_matrices"] = float(len(fro.per_layer))
    try:
        out["path_norm"] = path_norm(model).value
    except ConfigError:
        pass
    if init_params is not None:
        dist = distance_from_init(model, init_params)
        out["dist_init"] = dist.total
        out.update({f"dist_init/{k}": v for k, v in dist.per_layer.items()})
    for key, result in (("frobenius", fro), ("spectral", spec), ("nuclear", nuc)):
        out.update({f"{key}/{k}": v for k, v in result.per_layer.items()})
    out.update({f"effective_rank/{k}": v for k, v in effective_ranks(model).items()})
    return out
