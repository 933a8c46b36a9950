"""One run, end to end: data.load -> models.build -> train.fit -> a RunRecord."""

from __future__ import annotations

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
from overparam.train import Callback, TrainResult, fit


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

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "model"}


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
        key = repr(config.data) + str(config.seed)
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
    return data_module.load(d.name, n_train=d.n_train, n_test=d.n_test, label_noise=d.label_noise, seed=config.seed,
                            standardize=d.standardize, flatten=d.flatten, device=device, dtype=dtype, quiet=quiet,
                            **d.options)


def run_one(config: RunConfig, *, device: str | torch.device | None = None, dtype: torch.dtype = torch.float32,
            callbacks: Sequence[Callback] = (), progress: Callable | None = None, quiet: bool = False) -> RunRecord:
    target = resolve_device(device)
    dataset = load_data(config, target, dtype, quiet=quiet)
    model = build_model(config, dataset, target)
    result: TrainResult = fit(model, dataset, config.train, seed=config.seed, callbacks=callbacks, progress=progress)
    metrics = dict(result.metrics)
    metrics.update(
        steps=result.steps, epochs=result.epochs, lr=result.lr, batch_size=result.batch_size,
        early_stopping_step=result.early_stopping_step, early_stopping_test_acc=result.early_stopping_test_acc,
        num_parameters=models.count_parameters(model), n_train=dataset.n_train, n_test=dataset.n_test,
        num_noisy_labels=len(dataset.noisy_indices), divergence=result.divergence,
    )
    return RunRecord(config.run_key(), config.to_dict(), result.status, metrics, result.curves, result.wall_time_s,
                     {**provenance(target), "data": dataset.info}, model)
