"""Pruning: which weights are prunable, exact per-layer counts of layer-wise magnitude pruning
(checked against a sort done here), random controls, rewinding, and pruned weights staying
exactly zero through training with every optimizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from overparam.data.base import Dataset
from overparam.errors import ConfigError
from overparam.models import MLP, TwoLayer
from overparam.prune import (
    apply_masks,
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
from overparam.train import Callback, TrainConfig, fit


def mlp(seed: int = 0) -> MLP:
    torch.manual_seed(seed)
    # hidden.0.weight (8, 5) = 40 weights, hidden.1.weight (8, 8) = 64, readout.weight (3, 8) = 24
    return MLP(in_features=5, width=8, depth=2, out_features=3, b_std=0.5)


def classification_data(n: int = 96, d: int = 5, k: int = 3, seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n + 32, d, generator=gen)
    y = (x @ torch.randn(d, k, generator=gen)).argmax(dim=1)
    return Dataset("toy", x[:n], y[:n], x[n:], y[n:], k)


def test_prunable_parameters_are_weight_matrices_and_kernels_only():
    model = mlp()
    assert list(prunable_parameters(model)) == ["hidden.0.weight", "hidden.1.weight", "readout.weight"]
    assert output_layer(model) == "readout.weight"
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 10))
    assert list(prunable_parameters(conv)) == ["0.weight", "4.weight"]  # no biases, no BatchNorm
    assert output_layer(conv) == "4.weight"
    assert output_layer(TwoLayer(in_features=5, width=8, out_features=3)) == "a"
    masks = dense_masks(model)
    assert all(m.dtype == torch.bool and bool(m.all()) for m in masks.values())
    assert remaining_fraction(masks) == 1.0


def test_magnitude_prune_removes_exactly_the_expected_count_per_layer_over_two_rounds():
    model = mlp()
    first = magnitude_prune(model, fraction=0.2, output_fraction=0.1)
    # hidden: 40 - round(8.0) = 32, 64 - round(12.8) = 51; output: 24 - round(2.4) = 22
    assert count_remaining(first) == {"hidden.0.weight": 32, "hidden.1.weight": 51, "readout.weight": 22}
    second = magnitude_prune(model, first, fraction=0.2, output_fraction=0.1)
    # from the remaining: 32 - round(6.4) = 26, 51 - round(10.2) = 41, 22 - round(2.2) = 20
    assert count_remaining(second) == {"hidden.0.weight": 26, "hidden.1.weight": 41, "readout.weight": 20}
    assert remaining_fraction(second) == pytest.approx((26 + 41 + 20) / (40 + 64 + 24))
    assert remaining_by_layer(second) == pytest.approx({"hidden.0.weight": 26 / 40, "hidden.1.weight": 41 / 64,
                                                        "readout.weight": 20 / 24})
    for name in second:  # pruned stays pruned
        assert not bool((second[name] & ~first[name]).any())


def test_magnitude_prune_removes_the_smallest_magnitudes_among_the_unpruned():
    model = mlp(seed=3)
    previous = magnitude_prune(model, fraction=0.5, output_fraction=0.5)
    with torch.no_grad():  # move the weights so round two ranks differently from round one
        for p in prunable_parameters(model).values():
            p.add_(torch.randn_like(p))
    new = magnitude_prune(model, previous, fraction=0.3, output_fraction=0.25)
    for name, p in prunable_parameters(model).items():
        w = p.detach().numpy().reshape(-1)
        alive = np.flatnonzero(previous[name].numpy().reshape(-1))
        fraction = 0.25 if name == "readout.weight" else 0.3
        k = int(np.floor(fraction * len(alive) + 0.5))
        expected_pruned = set(alive[np.argsort(np.abs(w[alive]), kind="stable")[:k]].tolist())
        pruned_now = set(np.flatnonzero(previous[name].numpy().reshape(-1) & ~new[name].numpy().reshape(-1)).tolist())
        assert pruned_now == expected_pruned, name
    assert not any(bool(m.all()) for m in new.values())


def test_magnitude_prune_leaves_the_model_and_masks_unchanged_and_rejects_bad_fractions():
    model = mlp()
    before = snapshot(model)
    masks = dense_masks(model)
    magnitude_prune(model, masks)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(bool(m.all()) for m in masks.values())
    with pytest.raises(ConfigError, match="prune fraction must be a number in \\[0, 1\\), got 1.5"):
        magnitude_prune(model, fraction=1.5)
    with pytest.raises(ConfigError, match="masks do not match"):
        magnitude_prune(model, {"hidden.0.weight": masks["hidden.0.weight"]})


def test_apply_masks_zeroes_pruned_weights_and_leaves_biases_untouched():
    model = mlp()
    masks = magnitude_prune(model, fraction=0.5, output_fraction=0.5)
    biases = {n: p.detach().clone() for n, p in model.named_parameters() if p.dim() == 1}
    weights = {n: p.detach().clone() for n, p in prunable_parameters(model).items()}
    apply_masks(model, masks)
    for name, p in model.named_parameters():
        if name in biases:
            assert torch.equal(p, biases[name]) and bool((p != 0).any())
        else:
            assert bool((p[~masks[name]] == 0).all())
            assert torch.equal(p[masks[name]], weights[name][masks[name]])


def test_random_prune_keeps_the_per_layer_counts_and_depends_on_the_seed():
    model = mlp()
    masks = magnitude_prune(model, fraction=0.6)
    a, b, c = random_prune(masks, seed=1), random_prune(masks, seed=1), random_prune(masks, seed=2)
    assert count_remaining(a) == count_remaining(masks) == count_remaining(c)
    assert all(torch.equal(a[n], b[n]) for n in a)  # deterministic
    assert any(not torch.equal(a[n], c[n]) for n in a)  # another seed, another draw
    assert any(not torch.equal(a[n], masks[n]) for n in a)  # not the magnitude mask
    assert all(a[n].shape == masks[n].shape and a[n].dtype == torch.bool for n in a)


def test_rewind_restores_the_initialization_under_the_mask():
    model = mlp()
    init = snapshot(model)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0).add_(1.0)  # "training"
    masks = magnitude_prune(model)
    rewind(model, init, masks)
    for name, p in model.named_parameters():
        if name in masks:
            assert torch.equal(p[masks[name]], init[name][masks[name]])
            assert bool((p[~masks[name]] == 0).all())
        else:
            assert torch.equal(p, init[name])  # biases back to their initial values too


@pytest.mark.parametrize("train", [
    {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3, "nesterov": True},
    {"optimizer": "adam", "lr": 1e-2, "weight_decay": 1e-3},
    {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.1},
    {"optimizer": "sam", "lr": 0.1, "momentum": 0.9},
], ids=lambda t: t["optimizer"])
def test_pruned_weights_stay_exactly_zero_through_training(train):
    model, data = mlp(), classification_data()
    init = snapshot(model)
    masks = magnitude_prune(model, magnitude_prune(model, fraction=0.5), fraction=0.5)
    rewind(model, init, masks)
    seen = []

    def check(state):  # after every step's evaluation and update: nothing pruned has moved
        params = prunable_parameters(state.model)
        seen.append(all(bool((params[n][~m] == 0.0).all()) for n, m in masks.items()))

    config = TrainConfig(batch_size=16, epochs=4, eval_every=1, **train)
    result = fit(model, data, config, seed=0, callbacks=[mask_callback(masks), Callback(check, every=1)])
    assert result.status == "done" and len(seen) == result.steps + 1 and all(seen)
    for name, p in prunable_parameters(model).items():
        assert bool((p[~masks[name]] == 0.0).all()), name
        assert not torch.equal(p[masks[name]], init[name][masks[name]]), name  # the survivors trained
    state = model.state_dict()
    assert not torch.equal(state["readout.bias"], init["readout.bias"])  # biases train, unmasked


def test_without_the_callback_pruned_weights_move():
    """The control for the test above: momentum SGD does revive pruned weights."""
    model, data = mlp(), classification_data()
    masks = magnitude_prune(model, fraction=0.5)
    apply_masks(model, masks)
    fit(model, data, TrainConfig(batch_size=16, epochs=2, lr=0.1), seed=0)
    assert any(bool((p[~masks[n]] != 0).any()) for n, p in prunable_parameters(model).items())
