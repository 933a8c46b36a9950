"""Pruning masks, layer-wise iterative magnitude pruning, random controls and rewinding.

A mask set (:data:`Masks`) maps the name of each *prunable* parameter (as
``model.named_parameters()`` names it) to a bool tensor of the parameter's shape: True where the
weight survives, False where it is pruned. Prunable parameters are the weight matrices and
convolution kernels, i.e. trainable parameters with ``dim() >= 2``; biases and BatchNorm
scales/shifts (``dim() == 1``) are never pruned and never appear in a mask set.

The lottery-ticket procedure of Frankle & Carbin (2019), one round::

    init = snapshot(model)                      # theta_0, before any training
    masks = dense_masks(model)                  # every weight remains
    fit(model, ..., callbacks=[mask_callback(masks)])
    masks = magnitude_prune(model, masks)       # drop 20% of each hidden layer's remaining weights
    rewind(model, init, masks)                  # surviving weights back to theta_0, pruned ones 0
    fit(model, ..., callbacks=[mask_callback(masks)])   # pruned weights stay exactly 0.0

Costs: every function is one pass over the prunable weights (a sort per layer for
:func:`magnitude_prune`, a permutation per layer for :func:`random_prune`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from overparam.errors import ConfigError, check_fraction
from overparam.train.loop import Callback, TrainState

Masks = dict[str, Tensor]


# --- which weights are prunable ------------------------------------------------------------------


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The trainable parameters with ``dim() >= 2`` (weight matrices, conv kernels), by name,
    in ``named_parameters`` order. Biases and normalization parameters are excluded."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad and p.dim() >= 2}


def output_layer(model: nn.Module) -> str:
    """The name of the output layer's weight: ``readout.weight`` for overparam's MLP (its
    readout :class:`~overparam.models.Dense`), else the last prunable parameter in
    ``named_parameters`` order (the classifier of every model in :mod:`overparam.models`)."""
    names = list(prunable_parameters(model))
    if not names:
        raise ConfigError(f"model {type(model).__name__} has no prunable parameter (a trainable weight with dim >= 2)")
    if "readout.weight" in names:
        return "readout.weight"
    return names[-1]


def dense_masks(model: nn.Module) -> Masks:
    """All-True masks over the prunable parameters (nothing pruned yet)."""
    return {name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable_parameters(model).items()}


def check_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> Masks:
    """``masks`` as bool tensors on the parameters' devices, after checking that they cover
    exactly the prunable parameters with matching shapes (a ConfigError names the mismatch)."""
    params = prunable_parameters(model)
    missing, unknown = sorted(set(params) - set(masks)), sorted(set(masks) - set(params))
    if missing or unknown:
        raise ConfigError(f"masks do not match the model's prunable parameters: missing {missing}, "
                          f"unknown {unknown}; prunable: {list(params)}")
    out = {}
    for name, p in params.items():
        mask = masks[name]
        if tuple(mask.shape) != tuple(p.shape):
            raise ConfigError(f"mask {name!r} has shape {tuple(mask.shape)}, the parameter {tuple(p.shape)}")
        out[name] = mask.to(device=p.device, dtype=torch.bool)
    return out


# --- counting ------------------------------------------------------------------------------------


def count_remaining(masks: Mapping[str, Tensor]) -> dict[str, int]:
    """Number of surviving (unpruned) weights per layer."""
    return {name: int(mask.bool().sum()) for name, mask in masks.items()}


def remaining_by_layer(masks: Mapping[str, Tensor]) -> dict[str, float]:
    """Per layer: surviving weights / weights in the layer."""
    return {name: int(mask.bool().sum()) / mask.numel() for name, mask in masks.items()}


def remaining_fraction(masks: Mapping[str, Tensor]) -> float:
    """Surviving prunable weights / all prunable weights, over every layer together (biases
    and other unprunable parameters are in neither count)."""
    total = sum(mask.numel() for mask in masks.values())
    if total == 0:
        raise ConfigError("remaining_fraction needs at least one non-empty mask")
    return sum(int(mask.bool().sum()) for mask in masks.values()) / total


# --- applying masks ------------------------------------------------------------------------------


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> None:
    """Set every pruned weight of ``model`` to exactly 0.0, in place (surviving weights and
    unprunable parameters are left as they are)."""
    params = prunable_parameters(model)
    for name, mask in check_masks(model, masks).items():
        params[name].masked_fill_(~mask, 0.0)


def mask_callback(masks: Mapping[str, Tensor]) -> Callback:
    """A :func:`~overparam.train.fit` callback that keeps the pruned weights at exactly 0.0
    throughout training, whatever the optimizer (momentum, Nesterov, Adam, weight decay).

    It runs once, at step 0 (before the first update): it zeroes the pruned weights and
    registers two hooks on the run's optimizer:

    - a step *pre*-hook zeroing the pruned weights' gradients, so the optimizer's state
      (momentum buffers, Adam moments) never accumulates anything for them;
    - a step *post*-hook re-applying the masks right after every ``optimizer.step()``.

    Why hooks rather than a callback ``every=1``: ``fit`` runs each step's evaluation after
    ``optimizer.step()`` but *before* that step's callbacks, so a per-step callback would let
    the evaluations (hence the recorded accuracies) see pruned weights moved by the update.
    The hooks fire inside ``optimizer.step()`` itself, so no code ever sees an unmasked
    network. They live on the optimizer ``fit`` creates, and go away with it.

    Apply the masks before calling ``fit`` too (:func:`rewind` does), so that the step-0
    evaluation, which runs before the callbacks, already sees the pruned network.
    """
    frozen = {name: mask.detach().bool().clone() for name, mask in masks.items()}

    def install(state: TrainState) -> None:
        params = prunable_parameters(state.model)
        pairs = [(params[name], mask) for name, mask in check_masks(state.model, frozen).items()]
        apply_masks(state.model, frozen)

        @torch.no_grad()
        def zero_pruned_gradients(optimizer, args, kwargs) -> None:
            for p, mask in pairs:
                if p.grad is not None:
                    p.grad.masked_fill_(~mask, 0.0)

        @torch.no_grad()
        def zero_pruned_weights(optimizer, args, kwargs) -> None:
            for p, mask in pairs:
                p.masked_fill_(~mask, 0.0)

        state.optimizer.register_step_pre_hook(zero_pruned_gradients)
        state.optimizer.register_step_post_hook(zero_pruned_weights)

    return Callback(install, steps=(0,), at_end=False)


# --- pruning -------------------------------------------------------------------------------------


def _number_to_prune(fraction: float, remaining: int) -> int:
    """round(fraction * remaining), halves rounded up."""
    return min(remaining, math.floor(fraction * remaining + 0.5))


@torch.no_grad()
def magnitude_prune(model: nn.Module, masks: Mapping[str, Tensor] | None = None, fraction: float = 0.2,
                    output_fraction: float = 0.1) -> Masks:
    """One round of layer-wise iterative magnitude pruning (Frankle & Carbin 2019).

    In each prunable layer, of the weights still unpruned under ``masks`` (all, when None),
    the ``round(f * remaining)`` of smallest magnitude |w| are pruned, with f = ``fraction``
    for every layer but the output layer (:func:`output_layer`) and f = ``output_fraction``
    for it. Ties in |w| go by position (the earlier flat index is pruned first). Returns new
    masks; the model and ``masks`` are unchanged. Already-pruned weights stay pruned.

    For the NTK parameterization the stored weight is the effective weight divided by a
    per-layer constant, so the layer-wise ranking is the same.
    """
    fraction = check_fraction("prune fraction", fraction)
    output_fraction = check_fraction("output-layer prune fraction", output_fraction)
    params = prunable_parameters(model)
    masks = dense_masks(model) if masks is None else check_masks(model, masks)
    last = output_layer(model)
    out = {}
    for name, mask in masks.items():
        flat_mask = mask.reshape(-1)
        remaining = int(flat_mask.sum())
        k = _number_to_prune(output_fraction if name == last else fraction, remaining)
        new = flat_mask.clone()
        if k > 0:
            scores = params[name].detach().abs().reshape(-1).masked_fill(~flat_mask, math.inf)
            order = torch.argsort(scores, stable=True)
            new[order[:k]] = False
        out[name] = new.reshape(mask.shape)
    return out


def random_prune(masks: Mapping[str, Tensor], seed: int) -> Masks:
    """Random masks with exactly as many surviving weights in each layer as ``masks`` has,
    their positions drawn uniformly (a random permutation per layer, from ``seed``; layers
    in the order of ``masks``). The random-pruning control of Frankle & Carbin (2019)."""
    generator = torch.Generator().manual_seed(int(seed))
    out = {}
    for name, mask in masks.items():
        keep = int(mask.bool().sum())
        flat = torch.zeros(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=generator)[:keep]] = True
        out[name] = flat.reshape(mask.shape).to(mask.device)
    return out


# --- rewinding -----------------------------------------------------------------------------------


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    """A detached copy of the model's full state (parameters and buffers), e.g. its
    initialization theta_0, for :func:`rewind`."""
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@torch.no_grad()
def rewind(model: nn.Module, state: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None) -> None:
    """Reset every parameter and buffer of ``model`` to ``state`` (a :func:`snapshot`, e.g. of
    the initialization) in place, then zero the pruned weights: surviving weights take their
    original initial values, as in Frankle & Carbin's winning tickets."""
    model.load_state_dict(state)
    if masks is not None:
        apply_masks(model, masks)
