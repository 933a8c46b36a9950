"""Pruning: masks over the prunable weights, layer-wise iterative magnitude pruning (IMP),
random-mask controls, rewinding to the initialization, and a training callback that keeps
pruned weights at exactly zero. See :mod:`overparam.prune.masks`."""

from overparam.prune.masks import (
    Masks,
    apply_masks,
    check_masks,
    count_remaining,
    dense_masks,
    magnitude_prune,
    mask_callback,
    output_layer,
    prunable_parameters,
    random_prune,
    remaining_by_layer,
    remaining_fraction,
    rewind,
    snapshot,
)

__all__ = [
    "Masks", "apply_masks", "check_masks", "count_remaining", "dense_masks", "magnitude_prune", "mask_callback",
    "output_layer", "prunable_parameters", "random_prune", "remaining_by_layer", "remaining_fraction", "rewind",
    "snapshot",
]
