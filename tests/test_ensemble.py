"""Batched training (fit_ensemble) against its independent answer: separate ``fit`` runs with
the same seeds and initial weights, member by member (weights, curves, metrics, status).

float64 runs agree to 1e-10 (the batched matrix products only sum in another order). The
float32 check uses a smooth activation: with ReLU, a pre-activation within float32 rounding
of zero can switch a unit on in one run and off in the other, after which the two SGD
trajectories drift apart chaotically (not a difference in the algorithm; in float64 such
near-ties do not happen).
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

from overparam import data
from overparam.errors import ConfigError
from overparam.models import MLP
from overparam.seeding import derive_seed
from overparam.train import TrainConfig, fit
from overparam.train.ensemble import fit_ensemble

SEEDS = [0, 1, 2, 3]
BACKENDS = ["bmm", "vmap"]


@pytest.fixture(scope="module")
def mnist64():
    return data.load("mnist1d", n_train=256, n_test=200, dtype=torch.float64, quiet=True)


@pytest.fixture(scope="module")
def mnist32():
    return data.load("mnist1d", n_train=256, n_test=200, dtype=torch.float32, quiet=True)


def mlps(seeds, dtype=torch.float64, in_features=40, outputs=10, width=32, depth=2, **options):
    """One MLP per seed, initialised as ``run.build_model`` does (the seed's "init" stream)."""
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "init"))
            models.append(MLP(in_features, width, depth, outputs, **options).to(dtype))
    return models


def separate_runs(models, dataset, config, seeds, lrs=None):
    """The independent answer: copies of ``models`` trained one at a time by ``fit``."""
    copies = [copy.deepcopy(m) for m in models]
    lrs = lrs or [None] * len(models)
    results = [fit(m, dataset, config if lr is None else replace(config, lr=lr), seed=s)
               for m, s, lr in zip(copies, seeds, lrs)]
    return copies, results


def assert_same_runs(models, results, ref_models, ref_results, rtol=1e-10, atol=1e-12, acc_atol=0.0):
    assert len(results) == len(ref_results)
    for i, (model, result, ref_model, ref) in enumerate(zip(models, results, ref_models, ref_results)):
        where = f"member {i}"
        for (name, p), (_, q) in zip(model.named_parameters(), ref_model.named_parameters()):
            torch.testing.assert_close(p.detach(), q.detach(), rtol=rtol, atol=atol, msg=f"{where} {name}")
        assert (result.status, result.steps, result.epochs) == (ref.status, ref.steps, ref.epochs), where
        assert (result.lr, result.batch_size, result.config) == (ref.lr, ref.batch_size, ref.config), where
        assert result.divergence == ref.divergence, where
        assert result.early_stopping_step == ref.early_stopping_step, where
        assert result.curves.keys() == ref.curves.keys(), where
        for name, curve in ref.curves.items():
            got = result.curves[name]
            assert [s for s, _ in got] == [s for s, _ in curve], f"{where} {name} steps"
            tol = {"rel": 0, "abs": acc_atol} if name.endswith("acc") else {"rel": rtol, "abs": atol}
            assert [v for _, v in got] == pytest.approx([v for _, v in curve], **tol), f"{where} {name}"
        assert result.metrics.keys() == ref.metrics.keys(), where
        for key, value in ref.metrics.items():
            tol = {"rel": 0, "abs": acc_atol} if key.endswith("acc") else {"rel": rtol, "abs": atol}
            assert result.metrics[key] == pytest.approx(value, **tol), f"{where} {key}"


CONFIGS = {
    "sgd-momentum": TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=2),
    # Nesterov, weight decay, cosine with warm-up, linear LR scaling, a partial last batch,
    # evaluation every 5 steps, MSE on one-hot targets
    "sgd-nesterov-cosine-mse": TrainConfig(optimizer="sgd", lr=0.1, momentum=0.8, nesterov=True,
                                           weight_decay=1e-3, batch_size=48, base_batch_size=32,
                                           lr_scaling="linear", schedule="cosine", warmup_steps=3, epochs=2.5,
                                           eval_every=5, loss="mse"),
    # plain SGD, one data order for all (data_seed), drop_last, step schedule
    "sgd-data-seed": TrainConfig(optimizer="sgd", lr=0.1, momentum=0.0, batch_size=40, drop_last=True,
                                 schedule="step", epochs=3, data_seed=7),
    # exact full-batch GD with momentum, accumulated over chunks of 100 of the 256 examples
    "gd": TrainConfig(optimizer="gd", lr=0.2, momentum=0.9, gd_chunk_size=100, steps=15, eval_every=4,
                      schedule="step", weight_decay=1e-4),
    # Adam with L2 weight decay and a cosine schedule; AdamW with decoupled decay and other betas
    "adam": TrainConfig(optimizer="adam", lr=0.01, batch_size=32, epochs=2, weight_decay=1e-3, schedule="cosine"),
    "adamw": TrainConfig(optimizer="adamw", lr=0.005, betas=(0.8, 0.99), batch_size=64, epochs=2, weight_decay=0.1),
    # training to a target: members reach train accuracy 0.5 at different evaluations (or not at all)
    "target": TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=6, eval_every=3,
                          target_acc=0.5, target_every=2),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_float64_matches_separate_fit_runs(mnist64, name, backend):
    config = CONFIGS[name]
    models = mlps(SEEDS)
    ref_models, ref_results = separate_runs(models, mnist64, config, SEEDS)
    results = fit_ensemble(models, mnist64, config, SEEDS, backend=backend)
    assert all(r.status == "done" for r in results)
    assert_same_runs(models, results, ref_models, ref_results)


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_member_learning_rates(mnist64, backend):
    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=2, schedule="cosine",
                         weight_decay=1e-4)
    lrs = [0.01, 0.05, 0.1, 0.3]
    models = mlps(SEEDS)
    ref_models, ref_results = separate_runs(models, mnist64, config, SEEDS, lrs)
    results = fit_ensemble(models, mnist64, config, SEEDS, lrs=lrs, backend=backend)
    assert [r.lr for r in results] == lrs
    assert [r.config["lr"] for r in results] == lrs
    assert_same_runs(models, results, ref_models, ref_results)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eval_every", [None, 1], ids=["batch-loss", "evaluated-loss"])
def test_a_diverging_member_is_frozen_and_the_others_match(mnist64, backend, eval_every):
    """Member 1 gets a huge LR: it diverges (caught by its batch loss, or, when evaluating
    every step, by the evaluated training loss right after the bad update), keeps the weights
    fit leaves it with, and the others go on exactly as in their own runs."""
    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=2, eval_every=eval_every)
    lrs = [0.05, 1e4, 0.05, 0.1]
    models = mlps(SEEDS)
    ref_models, ref_results = separate_runs(models, mnist64, config, SEEDS, lrs)
    assert [r.status for r in ref_results] == ["done", "diverged", "done", "done"]  # the premise
    results = fit_ensemble(models, mnist64, config, SEEDS, lrs=lrs, backend=backend)
    assert [r.status for r in results] == ["done", "diverged", "done", "done"]
    expected = "evaluated training loss" if eval_every == 1 else "training loss"
    assert results[1].divergence.startswith(expected)
    assert results[1].steps < results[0].steps == config.total_steps(mnist64.n_train)
    assert_same_runs(models, results, ref_models, ref_results)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_agrees_to_a_loose_tolerance(mnist32, backend):
    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=3)
    models = mlps(SEEDS, dtype=torch.float32, activation="tanh")
    ref_models, ref_results = separate_runs(models, mnist32, config, SEEDS)
    results = fit_ensemble(models, mnist32, config, SEEDS, backend=backend)
    assert_same_runs(models, results, ref_models, ref_results, rtol=1e-4, atol=1e-6,
                     acc_atol=2.5 / mnist32.n_test)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [
    {"parameterization": "ntk", "b_std": 0.5, "alpha": 2.0, "activation": "gelu"},
    {"activation": "erf", "depth": 1, "width": 16},
    {"activation": "linear", "depth": 0},
], ids=["ntk-gelu-alpha", "erf-depth1", "linear-depth0"])
def test_mlp_variants_match(mnist64, backend, options):
    config = TrainConfig(optimizer="sgd", lr=0.2, momentum=0.9, batch_size=64, epochs=2)
    models = mlps(SEEDS, **options)
    ref_models, ref_results = separate_runs(models, mnist64, config, SEEDS)
    results = fit_ensemble(models, mnist64, config, SEEDS, backend=backend)
    assert_same_runs(models, results, ref_models, ref_results)


@pytest.mark.parametrize("backend", BACKENDS)
def test_regression_with_mse(backend):
    dataset = data.load("teacher_student", n_train=96, n_test=64, dtype=torch.float64, seed=0)
    config = TrainConfig(optimizer="sgd", lr=0.02, momentum=0.9, batch_size=16, epochs=2, loss="mse")
    models = mlps(SEEDS, in_features=dataset.input_shape[0], outputs=1, width=24)
    ref_models, ref_results = separate_runs(models, dataset, config, SEEDS)
    results = fit_ensemble(models, dataset, config, SEEDS, backend=backend)
    assert "train_acc" not in results[0].metrics
    assert_same_runs(models, results, ref_models, ref_results)


def test_any_parameter_only_model_through_vmap_with_a_frozen_parameter(mnist64):
    """A plain nn.Sequential (the vmap kernel) whose first bias is frozen: fit leaves it
    out of the optimizer, and so does fit_ensemble."""
    models = []
    for seed in SEEDS:
        torch.manual_seed(derive_seed(seed, "init"))
        model = nn.Sequential(nn.Linear(40, 24), nn.Tanh(), nn.Linear(24, 10)).double()
        model[0].bias.requires_grad_(False)
        models.append(model)
    frozen = [m[0].bias.detach().clone() for m in models]
    config = TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, batch_size=32, epochs=2)
    ref_models, ref_results = separate_runs(models, mnist64, config, SEEDS)
    results = fit_ensemble(models, mnist64, config, SEEDS)  # backend 'auto' -> vmap
    assert_same_runs(models, results, ref_models, ref_results)
    for model, bias in zip(models, frozen):
        assert torch.equal(model[0].bias, bias)


def test_single_member_and_weights_written_back(mnist64):
    config = TrainConfig(optimizer="sgd", lr=0.05, batch_size=32, steps=5)
    (model,) = mlps([5])
    before = [p.detach().clone() for p in model.parameters()]
    ref_models, ref_results = separate_runs([model], mnist64, config, [5])
    results = fit_ensemble([model], mnist64, config, [5])
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before))
    assert_same_runs([model], results, ref_models, ref_results)
    assert model.training


# ------------------------------------------------------------------------------- bad input


def test_different_architectures_are_a_config_error(mnist64):
    config = TrainConfig(steps=1)
    models = mlps([0, 1]) + mlps([2], width=16)
    with pytest.raises(ConfigError, match=r"one architecture: models\[2\] \(MLP\) differs from models\[0\] \(MLP\) "
                                          r"at module 'hidden.0': out_features=16 \(models\[0\]: 32\)"):
        fit_ensemble(models, mnist64, config, [0, 1, 2])
    models = mlps([0]) + mlps([1], activation="tanh")  # same shapes, another function
    with pytest.raises(ConfigError, match=r"models\[1\] .* module 'activation': type='Tanh' \(models\[0\]: 'ReLU'\)"):
        fit_ensemble(models, mnist64, config, [0, 1])
    with pytest.raises(ConfigError, match="one architecture"):
        fit_ensemble(mlps([0]) + [nn.Linear(40, 10).double()], mnist64, config, [0, 1])


def test_unsupported_optimizer_is_a_config_error_naming_it(mnist64):
    with pytest.raises(ConfigError, match="only optimizers .*'adamw'.*, got optimizer='sam'"):
        fit_ensemble(mlps([0, 1]), mnist64, TrainConfig(optimizer="sam", steps=1), [0, 1])


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_member_stops_at_its_own_target_and_matches_fit(mnist64, backend):
    """Members reach the train-loss target at different steps (per-member LRs): each stops
    there, as its own fit run does, and the others go on; one member misses it within the cap."""
    config = TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=32, epochs=8, eval_every=8,
                         target_loss=1.4, target_every=2)
    lrs = [0.1, 0.05, 0.002, 0.03]
    models = mlps(SEEDS)
    ref_models, ref_results = separate_runs(models, mnist64, config, SEEDS, lrs)
    steps = [r.target_step for r in ref_results]
    assert ref_results[2].target_reached is False and steps[2] is None  # the premise: one miss ...
    assert len({s for s in steps if s is not None}) >= 2  # ... and different stopping steps
    results = fit_ensemble(models, mnist64, config, SEEDS, lrs=lrs, backend=backend)
    assert [r.target_step for r in results] == steps
    assert [r.target_reached for r in results] == [True, True, False, True]
    for r in results:
        if r.target_reached:
            assert r.steps == r.target_step and r.metrics["train_loss"] <= 1.4
    assert_same_runs(models, results, ref_models, ref_results)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masked_members_match_fit_with_the_mask_callback(mnist64, backend, optimizer):
    """Per-member pruning masks (and one unpruned member) keep the pruned weights at 0 exactly
    as prune.mask_callback does in fit."""
    from overparam.prune import apply_masks, mask_callback

    config = TrainConfig(optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.05, momentum=0.9,
                         batch_size=32, epochs=2, weight_decay=1e-3)
    models = mlps(SEEDS)
    masks = []
    for i, model in enumerate(models):
        if i == 2:
            masks.append(None)
            continue
        gen = torch.Generator().manual_seed(i)
        masks.append({name: torch.rand(p.shape, generator=gen) > 0.5 for name, p in model.named_parameters()
                      if p.dim() >= 2})
        apply_masks(model, masks[-1])
    copies = [copy.deepcopy(m) for m in models]
    refs = [fit(m, mnist64, config, seed=s, callbacks=[] if mask is None else [mask_callback(mask)])
            for m, s, mask in zip(copies, SEEDS, masks)]
    results = fit_ensemble(models, mnist64, config, SEEDS, masks=masks, backend=backend)
    assert_same_runs(models, results, copies, refs)
    for model, mask in zip(models, masks):
        for name, p in model.named_parameters():
            if mask is not None and name in mask:
                assert bool((p.detach()[~mask[name]] == 0).all()), name


def test_bad_masks_are_config_errors(mnist64):
    config = TrainConfig(steps=1)
    with pytest.raises(ConfigError, match="one mask \\(or None\\) per model: got 1 masks for 2 models"):
        fit_ensemble(mlps([0, 1]), mnist64, config, [0, 1], masks=[None])
    with pytest.raises(ConfigError, match="masks\\[1\\] names no trainable parameter: \\['nope'\\]"):
        fit_ensemble(mlps([0, 1]), mnist64, config, [0, 1], masks=[None, {"nope": torch.ones(1, dtype=bool)}])


def test_batchnorm_and_dropout_are_config_errors(mnist64):
    def bn():
        return nn.Sequential(nn.Linear(40, 8), nn.BatchNorm1d(8), nn.Linear(8, 10)).double()

    with pytest.raises(ConfigError, match=r"buffers \(BatchNorm.*'1'.*running_mean"):
        fit_ensemble([bn(), bn()], mnist64, TrainConfig(steps=1), [0, 1])

    def dropout():
        return nn.Sequential(nn.Linear(40, 8), nn.Dropout(0.5), nn.Linear(8, 10)).double()

    with pytest.raises(ConfigError, match="dropout"):
        fit_ensemble([dropout(), dropout()], mnist64, TrainConfig(steps=1), [0, 1])


def test_bad_seeds_lrs_and_backend_are_config_errors(mnist64):
    config = TrainConfig(steps=1)
    with pytest.raises(ConfigError, match="one seed per model: got 1 seeds for 2 models"):
        fit_ensemble(mlps([0, 1]), mnist64, config, [0])
    with pytest.raises(ConfigError, match="one lr per model: got 3 lrs for 2 models"):
        fit_ensemble(mlps([0, 1]), mnist64, config, [0, 1], lrs=[0.1, 0.1, 0.1])
    with pytest.raises(ConfigError, match="lrs must be positive finite numbers, got -0.1"):
        fit_ensemble(mlps([0, 1]), mnist64, config, [0, 1], lrs=[0.1, -0.1])
    with pytest.raises(ConfigError, match="at least one model"):
        fit_ensemble([], mnist64, config, [])
    with pytest.raises(ConfigError, match="unknown fit_ensemble backend 'jit'"):
        fit_ensemble(mlps([0, 1]), mnist64, config, [0, 1], backend="jit")
    sequential = [nn.Sequential(nn.Linear(40, 10)).double() for _ in range(2)]
    with pytest.raises(ConfigError, match="backend 'bmm' supports overparam.models.MLP.*Sequential"):
        fit_ensemble(sequential, mnist64, config, [0, 1], backend="bmm")
