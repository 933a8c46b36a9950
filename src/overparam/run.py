"""One run, end to end: data.load -> models.build -> train.fit -> a RunRecord."""

from __future__ import annotations

import json

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from overparam import data as data_module
from overparam import models
from overparam.config import RunConfig
from overparam.device import resolve_device
from overparam.provenance import provenance
from overparam.seeding import derive_seed
from overparam.train import Callback, TrainResult, ensemble_unsupported, fit, fit_ensemble


@dataclass
class RunRecord:
    """Everything a run produced, JSON-serializable apart from ``model``."""

    run_key: str
    config: dict[str, Any]
    status: str
    metrics: dict[str, Any]
    curves: dict[str, list[tuple[int, float]]]
    wall_time_s: float
    provenance: dict[str, Any]
    model: torch.nn.Module | None = field(default=None, repr=False)
    dataset: data_module.Dataset | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("model", "dataset")}


def build_model(config: RunConfig, dataset: data_module.Dataset, device: torch.device) -> torch.nn.Module:
    """Build the configured model for ``dataset`` with weights drawn from the run's init seed.

    The global RNG is forked, seeded, and restored, so every model type initialises
    deterministically per seed without side effects on the caller.
    """
    outputs = dataset.num_classes if dataset.num_classes is not None else _regression_outputs(dataset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(config.seed, "init"))
        model = models.build(config.model.name, dataset.input_shape, outputs, **config.model.options)
    return model.to(device=device, dtype=dataset.x_train.dtype if dataset.x_train.is_floating_point() else None)


def validate(configs: Sequence[RunConfig]) -> None:
    """Check that every config's model can be built for its data, without training: each
    distinct dataset is loaded once (on the CPU) and each model is built on the meta device
    (no memory, no compute). Raises the ConfigError/ModelError a run would hit."""
    shapes: dict[str, tuple[tuple[int, ...], int]] = {}
    for config in configs:
        key = repr(config.data) + str(config.seed if config.data.seed is None else config.data.seed)
        if key not in shapes:
            dataset = load_data(config, torch.device("cpu"), quiet=True)
            outputs = dataset.num_classes if dataset.num_classes is not None else _regression_outputs(dataset)
            shapes[key] = (dataset.input_shape, outputs)
        input_shape, outputs = shapes[key]
        with torch.device("meta"):
            models.build(config.model.name, input_shape, outputs, **config.model.options)


def _regression_outputs(dataset: data_module.Dataset) -> int:
    return 1 if dataset.y_train.dim() == 1 else int(dataset.y_train.shape[1])


def load_data(config: RunConfig, device: torch.device, dtype: torch.dtype = torch.float32,
              quiet: bool = False) -> data_module.Dataset:
    d = config.data
    seed = config.seed if d.seed is None else d.seed
    return data_module.load(d.name, n_train=d.n_train, n_test=d.n_test, label_noise=d.label_noise, seed=seed,
                            standardize=d.standardize, flatten=d.flatten, device=device, dtype=dtype, quiet=quiet,
                            **d.options)


def run_one(config: RunConfig, *, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
            callbacks: Sequence[Callback] = (), progress: Callable | None = None, quiet: bool = False) -> RunRecord:
    target = resolve_device(device)
    dataset = load_data(config, target, dtype, quiet=quiet)
    model = build_model(config, dataset, target)
    result: TrainResult = fit(model, dataset, config.train, seed=config.seed, callbacks=callbacks, progress=progress)
    return _record(config, dataset, model, result, target)


def _record(config: RunConfig, dataset: data_module.Dataset, model: torch.nn.Module, result: TrainResult,
            target: torch.device, **extra_provenance: Any) -> RunRecord:
    metrics = dict(result.metrics)
    metrics.update(
        steps=result.steps, epochs=result.epochs, lr=result.lr, batch_size=result.batch_size,
        early_stopping_step=result.early_stopping_step, early_stopping_test_acc=result.early_stopping_test_acc,
        num_parameters=models.count_parameters(model), n_train=dataset.n_train, n_test=dataset.n_test,
        num_noisy_labels=len(dataset.noisy_indices), divergence=result.divergence,
    )
    if result.target_reached is not None:  # trained to a target: whether and when it was reached
        metrics.update(reached_target=result.target_reached, target_step=result.target_step)
    return RunRecord(config.run_key(), config.to_dict(), result.status, metrics, result.curves, result.wall_time_s,
                     {**provenance(target), "data": dataset.info, **extra_provenance}, model, dataset)


def batch_signature(config: RunConfig) -> str:
    """Runs with equal signatures differ at most in seed and learning rate: candidates to be
    trained together by :func:`run_batch`."""
    plain = config.to_dict()
    plain.pop("seed")
    plain["train"].pop("lr")
    return json.dumps(plain, sort_keys=True)


def _same_data(a: data_module.Dataset, b: data_module.Dataset) -> bool:
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in ("x_train", "y_train", "x_test", "y_test"))


def run_batch(configs: Sequence[RunConfig], *, device: str | torch.device | None = None,
              dtype: torch.dtype = torch.float32, quiet: bool = False) -> list[RunRecord]:
    """``[run_one(c) for c in configs]``, with the runs that share a batch signature (equal
    but for seed and LR) and identical data trained together by :func:`fit_ensemble` (one
    vectorized model; each member follows its separate run's trajectory up to float rounding).
    Runs whose data differ (a per-seed subset, label noise or synthetic draw; fix it across
    seeds with ``data.seed``), or whose model/optimizer fit_ensemble does not support, train
    one at a time. Records come back in the order of ``configs``; a batched run's
    ``wall_time_s`` is its equal share of the batch's time (``provenance.batch_wall_time_s``:
    the batch's clock until that member finished)."""
    target = resolve_device(device)
    records: list[RunRecord | None] = [None] * len(configs)
    groups: dict[str, list[int]] = {}
    for i, config in enumerate(configs):
        groups.setdefault(batch_signature(config), []).append(i)
    for indices in groups.values():
        datasets = {i: load_data(configs[i], target, dtype, quiet=quiet) for i in indices}
        while indices:  # split the candidates into runs on identical data
            same = [i for i in indices if i == indices[0] or _same_data(datasets[indices[0]], datasets[i])]
            indices = [i for i in indices if i not in same]
            dataset = datasets[same[0]]
            built = [build_model(configs[i], dataset, target) for i in same]
            train_config = configs[same[0]].train
            if len(same) > 1 and ensemble_unsupported(built, train_config) is None:
                results = fit_ensemble(built, dataset, train_config, [configs[i].seed for i in same],
                                       lrs=[configs[i].train.lr for i in same])
                # Each run's wall time is its equal share of the batch's, so that times summed over
                # runs (store, reports) add up to the compute spent; the batch's clock until the
                # member finished is kept in the provenance.
                share = max(result.wall_time_s for result in results) / len(same)
                for i, model, result in zip(same, built, results):
                    records[i] = _record(configs[i], datasets[i], model, result, target, batched_with=len(same),
                                         batch_wall_time_s=result.wall_time_s)
                    records[i].wall_time_s = share
            else:
                for i, model in zip(same, built):
                    result = fit(model, datasets[i], configs[i].train, seed=configs[i].seed)
                    records[i] = _record(configs[i], datasets[i], model, result, target)
    return records  # type: ignore[return-value]
