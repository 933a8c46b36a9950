"""Pieces every training study shares: grid points as RunConfigs, batched training followed by
per-run measures, the flatness measures, and the report's number and table formatting.

A training study's run parameters are ``{"run": RunConfig.to_dict(), ...study settings}``;
:func:`train_and_measure` trains the runs (seeds of one grid point together, through
:func:`overparam.run.run_batch`) and hands each trained model to the study's ``measure``
function, which returns extra metrics and curves.

    def measure(spec, record):            # record.model / record.dataset: the trained run
        return {"lambda_max": ...}, {}

    STUDY = Study(..., run_one=single(measure), run_batch=batched(measure), batch_key=batch_key)
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from overparam.config import RunConfig
from overparam.errors import ConfigError
from overparam.studies.base import RunOutcome, RunSpec, run_key

PAPER = "arXiv 2604.07603"  # "Implicit Regularization and Generalization in Overparameterized Neural Networks"

Measure = Callable[[RunSpec, Any], tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]]


# --- grid ----------------------------------------------------------------------------------------


def run_config(data: Mapping[str, Any], model: Mapping[str, Any], train: Mapping[str, Any], seed: int,
               **overrides: Any) -> RunConfig:
    """A RunConfig from study-config dicts plus dotted overrides (``**{"model.width": 64}``)."""
    config = RunConfig.from_dict({"data": dict(data), "model": dict(model), "train": dict(train), "seed": seed})
    return config.with_overrides(overrides) if overrides else config


def spec(study: str, config: RunConfig, **settings: Any) -> RunSpec:
    """A grid point: the run's config plus study settings (JSON values) that ``measure`` reads."""
    params = {"run": config.to_dict(), **settings}
    return RunSpec(run_key(study, params, config.seed), params, config.seed, config)


def check_workload(data: Any, model: Any, loss: str) -> None:
    """Raise ConfigError unless ``data`` and ``model`` are mappings that, with ``loss``, make a
    valid RunConfig (for studies that declare their own data and model sections)."""
    for name, value in (("data", data), ("model", model)):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping of {name} settings, got {value!r}")
    RunConfig.from_dict({"data": data, "model": model, "train": {"loss": loss}})


def validate_specs(specs: Sequence[RunSpec]) -> None:
    """Build every distinct (data, model) of the grid on the meta device: a bad width or
    dataset fails before any run starts."""
    from overparam.run import validate

    seen, configs = set(), []
    for s in specs:
        key = (json.dumps(s.params["run"]["data"], sort_keys=True), json.dumps(s.params["run"]["model"], sort_keys=True))
        if key not in seen:
            seen.add(key)
            configs.append(s.config)
    validate(configs)


# --- execution -----------------------------------------------------------------------------------


def batch_key(spec: RunSpec, ignore: Sequence[str] = ()) -> str:
    """Runs equal but for seed and LR (and with equal study settings, apart from those named in
    ``ignore``) may train together."""
    from overparam.run import batch_signature

    settings = {k: v for k, v in spec.params.items() if k != "run" and k not in ignore}
    return batch_signature(spec.config) + json.dumps(settings, sort_keys=True, default=str)


def train_and_measure(specs: Sequence[RunSpec], device: str | None, measure: Measure | None) -> list[RunOutcome]:
    """Train ``specs`` (batched where possible) and run ``measure(spec, record)`` on each
    trained run that did not diverge; its metrics and curves are merged into the outcome."""
    from overparam.run import run_batch

    records = run_batch([s.config for s in specs], device=device, quiet=True)
    outcomes = []
    for s, record in zip(specs, records):
        metrics, curves = dict(record.metrics), dict(record.curves)
        if measure is not None and record.status == "done":
            extra_metrics, extra_curves = measure(s, record)
            metrics.update(extra_metrics)
            curves.update(extra_curves)
        outcomes.append(RunOutcome(record.status, metrics, curves, record.wall_time_s, record.provenance))
        record.model = record.dataset = None  # free memory as we go
    return outcomes


def single(measure: Measure | None) -> Callable[[RunSpec, str | None], RunOutcome]:
    return lambda spec, device: train_and_measure([spec], device, measure)[0]


def batched(measure: Measure | None) -> Callable[[list[RunSpec], str | None], list[RunOutcome]]:
    return lambda specs, device: train_and_measure(specs, device, measure)


def initial_model(record: Any) -> torch.nn.Module:
    """The run's model at initialization (rebuilt from its init seed; build is deterministic)."""
    from overparam.run import build_model

    config = RunConfig.from_dict(record.config)
    return build_model(config, record.dataset, record.dataset.x_train.device)


def loss_fn(record: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from overparam.train import loss_function

    return loss_function(RunConfig.from_dict(record.config).train.loss, record.dataset.num_classes)


def probe(x: torch.Tensor, y: torch.Tensor, n: int | None, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed random subset of ``n`` examples (all when n is None or >= len): the data a
    measure is computed on, the same for every run that shares the data and ``seed``."""
    if n is None or n >= len(x):
        return x, y
    gen = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(x), generator=gen)[:n].sort().values.to(x.device)
    return x[index], y[index]


# --- training to a common target ----------------------------------------------------------------


TARGET_CONVENTION = ("cross-entropy 0.01, the stopping rule of Jiang et al. 2020 (\"Fantastic generalization "
                     "measures and where to find them\")")


def target_text(train: Mapping[str, Any]) -> str:
    """How the runs of a study were trained, in words: to a target within a cap, or for a budget."""
    cap = f"{train['steps']} steps" if train.get("steps") is not None else f"{train.get('epochs', 10)} epochs"
    goals = []
    if train.get("target_loss") is not None:
        goals.append(f"training loss <= {train['target_loss']:g}")
    if train.get("target_acc") is not None:
        goals.append(f"training accuracy >= {train['target_acc']:g}")
    if not goals:
        return f"for a fixed budget of {cap}"
    every = f", checked every {train['target_every']} steps" if train.get("target_every") else ""
    return f"to a common target ({' or '.join(goals)} over the whole training set{every}) within a cap of {cap}"


def misses_text(missed: Sequence[Any], label: Callable[[Any], str]) -> str:
    """A report paragraph listing the runs that missed their training target (left out of the
    claims), or '' when none did."""
    if not missed:
        return ""
    items = sorted(f"{label(r)} seed {r.seed} (train loss {fmt(r.metric('train_loss'), 3)} after "
                   f"{int(r.metric('steps'))} steps)" for r in missed)
    return (f"**{len(missed)} run(s) missed the training target within the cap and are left out of the claims "
            f"and tables:** " + "; ".join(items) + ".")


# --- report helpers ------------------------------------------------------------------------------


def label_noise_fractions(value: Any) -> tuple:
    """``label_noise`` (one fraction or a list) as a tuple of distinct fractions in [0, 1)."""
    noise = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    if not noise or len(set(noise)) != len(noise):
        raise ConfigError(f"label_noise must be a non-empty list of fractions without repeats, got {value!r}")
    for p in noise:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
            raise ConfigError(f"each label_noise value must be a fraction in [0, 1), got {p!r}")
    return noise


def fmt(value: float, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude >= 1e5 or magnitude < 10 ** -(digits - 1)):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if magnitude >= 1 else f"{value:.{digits}f}"


def ci_text(ci: Sequence[float], digits: int = 4) -> str:
    """'estimate [low, high]'."""
    estimate, low, high = ci
    return f"{fmt(estimate, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# --- flatness of a trained run (batch_size and optimizer studies) --------------------------------


FLATNESS_DEFAULTS = {"examples": 1000, "sigmas": [0.01, 0.02, 0.05, 0.1, 0.2], "draws": 5,
                     "keskar_epsilon": 1e-3, "trace_hvps": 30}


def check_flatness_settings(flatness: Mapping[str, Any]) -> dict[str, Any]:
    """The flatness settings with defaults filled in; a ConfigError names an unknown key."""
    from overparam.errors import ConfigError

    unknown = sorted(set(flatness) - set(FLATNESS_DEFAULTS))
    if unknown:
        raise ConfigError(f"flatness has no setting(s) {unknown}; accepted: {sorted(FLATNESS_DEFAULTS)}")
    return {**FLATNESS_DEFAULTS, **flatness}


def flatness_metrics(record: Any, settings: Mapping[str, Any],
                     seed: int = 0) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    """Curvature and sharpness of a trained run on a fixed subset of its training data:
    λ_max of the Hessian (Lanczos), tr(H) (Hutch++), Keskar's ε-sharpness (full space,
    L-BFGS-B, 10 iterations) and the expected loss increase under layer-relative Gaussian
    weight perturbations of size σ (one curve point per σ; the curve is stored with step =
    index of σ). Cost: ~10 + trace_hvps HVPs, ~11 forward+backward and
    1 + draws·len(sigmas) forward passes over ``examples`` examples."""
    from overparam.measures import hessian_eigenvalues, hessian_trace, keskar_sharpness, perturbation_sensitivity

    settings = check_flatness_settings(settings)
    model, dataset, loss = record.model, record.dataset, loss_fn(record)
    data = probe(dataset.x_train, dataset.y_train, settings["examples"], seed)
    eig = hessian_eigenvalues(model, loss, data, k=1, seed=seed)
    trace = hessian_trace(model, loss, data, num_hvps=settings["trace_hvps"], seed=seed)
    keskar = keskar_sharpness(model, loss, data, epsilon=settings["keskar_epsilon"], seed=seed)
    sensitivity = perturbation_sensitivity(model, loss, data, settings["sigmas"], num_draws=settings["draws"],
                                           seed=seed)
    increases = [float(v) for v in sensitivity.mean_increase]
    metrics = {"lambda_max": float(eig.values[0]), "hessian_trace": trace.value, "keskar_sharpness": keskar.value,
               "perturbation_sigmas": list(settings["sigmas"]), "measure_examples": len(data[0])}
    return metrics, {"perturbation_increase": list(enumerate(increases))}  # step = index of σ
