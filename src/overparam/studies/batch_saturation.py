"""``batch_saturation``: steps to a target training loss vs batch size, each batch size at its own
best learning rate: perfect (linear) scaling below a critical batch size, saturation above it.

After McCandlish, Kaplan, Amodei et al. (2018, "An Empirical Model of Large-Batch Training") and
Ma, Bassily & Belkin (2018, "The Power of Interpolation"). For each workload, batch size B and
seed, SGD (momentum 0, constant LR) trains at every LR of a small grid; the train loss on the
whole training set is evaluated every ``eval_every(B)`` steps, and a run's steps-to-target is the
first evaluated step whose loss is <= ``target_loss`` (an upper bound, resolution eval_every(B)).
The (B, seed) steps-to-target is the minimum over the LR grid (the run that got there first; the
smaller LR on a tie); runs that diverge or never reach the target within their budget do not
count, and a B at which some seed never reached it is left out of the fits (and listed).

Workloads (each a dict of settings, see ``WORKLOAD_DEFAULTS``):

- ``linear``: noiseless realizable least squares (``linear_regression``, x ~ N(0, I_p), n > p,
  y = <x, w*>), the model f(x) = wᵀx (``deep_linear`` of depth 1, near-zero init) and torch's
  ``mse_loss``: the interpolation regime, where SGD converges linearly (Ma et al.'s setting).
  Its LR grid (``lr_rule: ma``) is multiples of Ma et al.'s optimal step η*(B) = B/(β + (B−1)λ_1)
  (β = max|x_i|², λ_1 the top eigenvalue of XᵀX/n), halved for the mean-of-squares loss; the
  factor 1 is η* itself.
- ``mlp``: a small ReLU MLP on MNIST-1D with cross-entropy, one fixed LR grid for every B
  (``lr_rule: fixed``).

Budget per run: ``budget_steps + ceil(budget_epochs · n_train / B)`` steps (the shape of S(B)
itself, with slack); evaluations every step (``evals: null``) or ``evals`` times per budget.

Estimates of the critical batch size, per workload:

- the fit S(B) = S_min (1 + B_noise/B) to the mean over seeds of the steps-to-target
  (:func:`overparam.references.batch.fit_saturation`: least squares on relative residuals);
  B_crit = E_min/S_min = B_noise. CIs resample seeds (the whole curve of a seed together).
- the simple gradient noise scale B_simple = tr(Σ)/|G|² (:func:`overparam.measures.
  gradient_noise_scale`, per-example gradients over the whole training set), measured along one
  extra run per seed (kind ``noise``: B = ``noise_batch_size``, the geometric mean of that B's LR
  grid) at step 0, at the first evaluation with loss <= sqrt(L_0 · target) (halfway to the target
  on a log scale) and at the target.
- linear only: Ma et al.'s m* = β/λ_1 of the training design (:func:`overparam.references.batch.
  ma_critical_batch`); their bound predicts B_noise = m* − 1.

Claims per workload (ids ``batch_saturation.<workload>.<claim>``): the log-log slope of steps vs
B over B <= B_noise/``regime_factor`` is ≈ −1 (in [−1.25, −0.75]); over B >= regime_factor·
B_noise it is > −0.5 (saturation); the fitted B_noise agrees with B_simple (halfway) within an
order of magnitude (ratio in [0.1, 10], McCandlish et al.'s statement); linear: B_noise is of
the order of Ma et al.'s m* (ratio within half a decade, [0.316, 3.16]). The B ranges come from
the full-sample fit of B_noise and are held fixed while seeds are resampled.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overparam.analysis import Missing, Run, SeedTable, finite, group, mean_ci, quiet
from overparam.errors import ConfigError, check_positive_int, choice_error
from overparam.references.batch import SaturationFit, fit_saturation, ma_critical_batch
from overparam.report import CI, Claim, Section, bootstrap_ci, loglog_slope_ci
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "batch_saturation"
WORKLOADS = ("linear", "mlp")
LR_RULES = ("fixed", "ma")
LOSSES = ("mse", "cross_entropy")
SMALL_SLOPE_BAND = (-1.25, -0.75)  # "perfect scaling", S ∝ 1/B
LARGE_SLOPE_ABOVE = -0.5  # "saturation", S ≈ S_min
NOISE_SCALE_TOLERANCE = 10.0  # McCandlish et al.: B_crit and B_simple agree within an order of magnitude
MA_TOLERANCE = 10 ** 0.5  # "the same order" as m*: within half a decade either way
NOISE_LEVELS = ("start", "half", "target")
# A fitted B_noise of ∞ (S_min = 0: steps still ∝ 1/B at the largest batch) or 0 (steps flat from
# the smallest batch) only says that B_noise lies beyond the batch sizes tried; CIs over seeds
# clip it to [min B / B_NOISE_RANGE, max B · B_NOISE_RANGE] so those bounds stay numbers.
B_NOISE_RANGE = 1e6

WORKLOAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {
        "data": {"name": "linear_regression", "n_train": 4096, "n_test": 256, "p": 64, "noise_std": 0.0, "seed": 0},
        "model": {"name": "deep_linear", "width": 1, "depth": 1, "init": "gaussian", "scale": 1e-3},
        "loss": "mse",
        "batch_sizes": [4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048],
        "target_loss": 1e-6,
        "lr_rule": "ma",  # LR = factor · η*(B) (Ma et al.) for each factor of lr_grid
        "lr_grid": [1.0, 1.41, 2.0, 2.83],
        "budget_epochs": 0.6,
        "budget_steps": 40,
        "evals": None,  # evaluate the training loss after every step
        "noise_batch_size": 16,
    },
    "mlp": {
        "data": {"name": "mnist1d", "n_test": 200, "seed": 0},
        "model": {"name": "mlp", "width": 128, "depth": 1},
        "loss": "cross_entropy",
        "batch_sizes": [8, 16, 32, 64, 128, 256, 512, 1024, 2048],
        "target_loss": 1.0,
        "lr_rule": "fixed",  # the LRs of lr_grid at every batch size
        "lr_grid": [0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0],
        "budget_epochs": 5.0,
        "budget_steps": 120,
        "evals": 60,
        "noise_batch_size": 64,
    },
}


def _complete(workload: str, settings: Any) -> dict[str, Any]:
    """The workload's settings with defaults filled in, validated (ConfigError naming the bad one)."""
    if not isinstance(settings, dict):
        raise ConfigError(f"{workload} must be a mapping of workload settings, got {settings!r}")
    defaults = WORKLOAD_DEFAULTS[workload]
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ConfigError(f"{workload} has no setting(s) {unknown}; accepted: {sorted(defaults)}")
    w = {**copy.deepcopy(defaults), **copy.deepcopy(settings)}
    where, sizes = f"{workload}.", w["batch_sizes"]
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 3:
        raise ConfigError(f"{where}batch_sizes needs at least three batch sizes (a fit of two parameters), got {sizes!r}")
    for b in sizes:
        check_positive_int(f"each of {where}batch_sizes", b)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"{where}batch_sizes has repeated values: {list(sizes)}")
    w["batch_sizes"] = sorted(sizes)
    if not (finite(w["target_loss"]) and w["target_loss"] > 0):
        raise ConfigError(f"{where}target_loss must be a positive number, got {w['target_loss']!r}")
    for key, choices in (("loss", LOSSES), ("lr_rule", LR_RULES)):
        if w[key] not in choices:
            raise choice_error(f"{where}{key}", w[key], choices)
    grid = w["lr_grid"]
    if not isinstance(grid, (list, tuple)) or not grid or not all(finite(v) and v > 0 for v in grid):
        raise ConfigError(f"{where}lr_grid must be a non-empty list of positive numbers, got {grid!r}")
    if len(set(grid)) != len(grid):
        raise ConfigError(f"{where}lr_grid has repeated values: {list(grid)}")
    w["lr_grid"] = sorted(float(v) for v in grid)
    if not (finite(w["budget_epochs"]) and w["budget_epochs"] >= 0):
        raise ConfigError(f"{where}budget_epochs must be a number >= 0, got {w['budget_epochs']!r}")
    check_positive_int(f"{where}budget_steps", w["budget_steps"], minimum=0)
    if w["budget_epochs"] == 0 and w["budget_steps"] == 0:
        raise ConfigError(f"{where}budget_epochs and {where}budget_steps are both 0: no run would take a step")
    if w["evals"] is not None:
        check_positive_int(f"{where}evals", w["evals"])
    check_positive_int(f"{where}noise_batch_size", w["noise_batch_size"])
    for part in ("data", "model"):
        if not isinstance(w[part], dict):
            raise ConfigError(f"{where}{part} must be a mapping, got {w[part]!r}")
    if not isinstance(w["data"].get("seed"), int) or isinstance(w["data"].get("seed"), bool):
        raise ConfigError(f"{where}data.seed must be set to an integer (one dataset shared by every seed and batch "
                          f"size), got {w['data'].get('seed')!r}")
    model = w["model"]
    if w["lr_rule"] == "ma" and (model.get("name") != "deep_linear" or model.get("depth") != 1 or w["loss"] != "mse"):
        raise ConfigError(f"{where}lr_rule 'ma' (Ma et al.'s η*(B) for least squares) needs the linear model "
                          f"f(x) = wᵀx (model deep_linear with depth 1) and loss 'mse'; got model {model!r}, "
                          f"loss {w['loss']!r}")
    common.run_config(w["data"], w["model"], {"loss": w["loss"], "momentum": 0.0}, 0)  # names and options
    return w


@dataclass(frozen=True)
class BatchSaturationConfig:
    workloads: tuple[str, ...] = WORKLOADS
    linear: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(WORKLOAD_DEFAULTS["linear"]))
    mlp: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(WORKLOAD_DEFAULTS["mlp"]))
    seeds: int = 3
    regime_factor: float = 3.0  # small-B range: B <= B_noise/f; large-B range: B >= f·B_noise

    def __post_init__(self) -> None:
        check_positive_int("seeds", self.seeds, minimum=2)
        if not self.workloads or any(w not in WORKLOADS for w in self.workloads):
            bad = [w for w in self.workloads if w not in WORKLOADS] or "none"
            raise ConfigError(f"workloads must be a non-empty list of {list(WORKLOADS)}, got {list(self.workloads)} "
                              f"(bad: {bad})")
        if len(set(self.workloads)) != len(self.workloads):
            raise ConfigError(f"workloads has repeated entries: {list(self.workloads)}")
        if not (finite(self.regime_factor) and self.regime_factor > 1):
            raise ConfigError(f"regime_factor must be a number > 1, got {self.regime_factor!r}")
        for workload in WORKLOADS:
            object.__setattr__(self, workload, _complete(workload, getattr(self, workload)))


# --- grid ----------------------------------------------------------------------------------------


def budget(w: dict[str, Any], batch_size: int, n_train: int) -> int:
    """Steps a run at ``batch_size`` may take: budget_steps + ceil(budget_epochs · n / B)."""
    return w["budget_steps"] + math.ceil(w["budget_epochs"] * n_train / batch_size)


def eval_every(w: dict[str, Any], steps: int) -> int:
    """Steps between training-loss evaluations for a run of ``steps``: the resolution of its
    steps-to-target."""
    return 1 if w["evals"] is None else max(1, steps // w["evals"])


def _dataset(w: dict[str, Any]):
    """The workload's training data, in float64 on the CPU (every run shares it: data.seed)."""
    import torch

    from overparam.run import load_data

    config = common.run_config(w["data"], w["model"], {"loss": w["loss"]}, 0)
    return load_data(config, torch.device("cpu"), torch.float64, quiet=True)


def _ma_constants(workload: str, dataset) -> dict[str, float]:
    if dataset.num_classes is not None or dataset.y_train.dim() != 1:
        raise ConfigError(f"{workload}.lr_rule 'ma' needs scalar regression targets (e.g. data linear_regression), "
                          f"got dataset {dataset.name!r}")
    ma = ma_critical_batch(dataset.x_train.flatten(1))
    return {"beta": ma.beta, "lambda_1": ma.lambda_1, "m_star": ma.m_star}


def learning_rates(w: dict[str, Any], batch_size: int, ma: dict[str, float] | None) -> list[float]:
    """The LR grid at ``batch_size``: lr_grid itself ('fixed'), or its factors times Ma et al.'s
    η*(B) = B/(β + (B−1)λ_1), halved because torch's mse_loss is twice their ½-mean-square ('ma')."""
    if w["lr_rule"] == "fixed":
        return list(w["lr_grid"])
    eta = batch_size / (ma["beta"] + (batch_size - 1) * ma["lambda_1"]) / 2
    return [factor * eta for factor in w["lr_grid"]]


def _run(w: dict[str, Any], batch_size: int, lr: float, n_train: int, seed: int):
    steps = budget(w, batch_size, n_train)
    train = {"optimizer": "sgd", "momentum": 0.0, "loss": w["loss"], "batch_size": batch_size, "lr": lr,
             "steps": steps, "eval_every": eval_every(w, steps)}
    return common.run_config(w["data"], w["model"], train, seed)


def grid(config: BatchSaturationConfig) -> list[RunSpec]:
    specs = []
    for workload in config.workloads:
        w = getattr(config, workload)
        dataset = _dataset(w)
        n = dataset.n_train
        too_large = [b for b in w["batch_sizes"] + [w["noise_batch_size"]] if b > n]
        if too_large:
            raise ConfigError(f"{workload}: batch size(s) {too_large} exceed the {n} training examples; accepted: "
                              f"1 <= B <= {n}")
        ma = _ma_constants(workload, dataset) if w["lr_rule"] == "ma" else None
        settings = {"workload": workload, "target_loss": w["target_loss"], "ma": ma}
        for b in w["batch_sizes"]:
            for factor, lr in zip(w["lr_grid"], learning_rates(w, b, ma)):
                specs += [common.spec(NAME, _run(w, b, lr, n, seed), kind="train", lr_factor=factor, **settings)
                          for seed in range(config.seeds)]
        noise_lr = math.exp(np.mean(np.log(learning_rates(w, w["noise_batch_size"], ma))))
        specs += [common.spec(NAME, _run(w, w["noise_batch_size"], noise_lr, n, seed), kind="noise", **settings)
                  for seed in range(config.seeds)]
    common.validate_specs(specs)
    return specs


# --- runs ----------------------------------------------------------------------------------------


def steps_to_target(curve: list[tuple[int, float]], target: float) -> int | None:
    """The first evaluated step whose training loss is <= target (None if none is)."""
    return next((int(step) for step, loss in curve if loss <= target), None)


def _measure(spec: RunSpec, record: Any) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    curve = record.curves.get("train_loss", [])
    steps = steps_to_target(curve, spec.params["target_loss"])
    return {"steps_to_target": steps, "reached": steps is not None,
            "eval_every": spec.params["run"]["train"]["eval_every"]}, {}


def _noise_run(spec: RunSpec, device: str | None) -> RunOutcome:
    """Train at the noise batch size and measure B_simple = tr(Σ)/|G|² on the whole training set
    at step 0, at the first evaluation with loss <= sqrt(L_0 · target) and at the target."""
    from overparam.config import RunConfig
    from overparam.measures import gradient_noise_scale
    from overparam.run import run_one as train_run
    from overparam.train import Callback, loss_function

    config = RunConfig.from_dict(spec.params["run"])
    target = spec.params["target_loss"]
    thresholds: dict[str, float] = {}
    measured: dict[str, dict[str, float]] = {}

    def on_eval(state) -> None:
        loss = state.metrics["train_loss"]
        if not thresholds:  # step 0
            thresholds.update(start=math.inf, half=math.sqrt(loss * target), target=target)
        crossed = [name for name, level in thresholds.items() if name not in measured and loss <= level]
        if not crossed:
            return
        loss_fn = loss_function(config.train.loss, state.data.num_classes)
        scale = gradient_noise_scale(state.model, loss_fn, (state.data.x_train, state.data.y_train))
        for name in crossed:
            measured[name] = {"step": state.step, "loss": loss, "b_simple": scale.b_simple,
                              "trace_sigma": scale.trace_sigma, "grad_norm_sq": scale.grad_norm_sq}

    record = train_run(config, device=device, callbacks=[Callback(on_eval, every=config.train.eval_every)],
                       quiet=True)
    metrics = dict(record.metrics)
    metrics["half_level"] = thresholds.get("half")  # the loss sqrt(L_0 · target)
    for name, values in measured.items():
        metrics.update({f"{key}_{name}": value for key, value in values.items()})
    curves = dict(record.curves)
    curves["b_simple"] = sorted((v["step"], v["b_simple"]) for v in measured.values())
    return RunOutcome(record.status, metrics, curves, record.wall_time_s, record.provenance)


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    if spec.params["kind"] == "noise":
        return _noise_run(spec, device)
    return common.train_and_measure([spec], device, _measure)[0]


def run_batch(specs: list[RunSpec], device: str | None) -> list[RunOutcome]:
    return common.train_and_measure(specs, device, _measure)


def batch_key(spec: RunSpec) -> str | None:
    """Train runs of one workload and batch size train together, every seed and LR of the grid."""
    if spec.params["kind"] != "train":
        return None
    return common.batch_key(spec, ignore=("lr_factor",))


# --- analysis ------------------------------------------------------------------------------------


@dataclass
class WorkloadAnalysis:
    """One workload's numbers. Axes: the seeds S and the batch sizes B (ascending) with a finished
    training run."""

    workload: str
    settings: dict[str, Any]  # the workload's settings, defaults filled in
    table: SeedTable  # seed x B: the run of the LR grid that reached the target first (the smaller LR on a tie)
    steps: np.ndarray  # (S, B) its steps to the target loss; NaN: no LR reached the target
    best_lr: np.ndarray  # (S, B) its LR; NaN where no LR reached the target
    best_factor: np.ndarray  # (S, B) its entry of lr_grid (× η*(B) for lr_rule 'ma'); NaN likewise
    ma: dict[str, float] | None  # Ma et al.'s constants of the design (beta, lambda_1, m_star); None: no 'ma' rule
    fit: SaturationFit | None  # S(B) = S_min(1 + B_noise/B) fitted to the mean steps at the used B; None: < 2 used
    b_noise: CI  # the fitted B_noise = B_crit (examples), seeds resampled
    s_min: CI  # the fitted S_min (steps), seeds resampled
    small: np.ndarray  # (B,) bool: used and B <= B_noise/regime_factor (the full-sample fit's B_noise)
    large: np.ndarray  # (B,) bool: used and B >= regime_factor·B_noise
    small_slope: CI  # log-log slope of steps vs B over `small`, seeds resampled as groups
    large_slope: CI  # the same over `large`
    noise: dict[str, np.ndarray]  # "{b_simple,step,loss}_{level}" -> (S,) per seed; NaN: not measured
    noise_cis: dict[str, CI]  # level -> mean B_simple over seeds (examples)
    ratio_b_simple: CI  # B_noise / mean B_simple halfway, seeds resampled together
    ratio_ma: CI | None  # B_noise / m* (None without Ma et al.'s constants)
    unfinished: tuple[int, int]  # (training runs of the config's grid without a finished run, runs in that grid)

    @property
    def batch_sizes(self) -> np.ndarray:
        return np.asarray(self.table.axis, dtype=float)

    @property
    def used(self) -> np.ndarray:
        """(B,) bool: batch sizes where every seed reached the target: the points of every fit."""
        return np.all(np.isfinite(self.steps), axis=0)


@dataclass
class BatchSaturationAnalysis:
    workloads: list[WorkloadAnalysis]  # in config.workloads order, those with finished training runs


def _first_to_target(runs: list[Run]) -> Run:
    """The run that reached the target in the fewest steps, the smaller LR on a tie (the smallest
    LR if none reached it)."""
    return min(runs, key=lambda r: (np.nan_to_num(r.metric("steps_to_target"), nan=math.inf), r.config.train.lr))


def _resampled_fit(sizes: np.ndarray, steps: np.ndarray, what: str, divide_by: np.ndarray | None = None) -> CI:
    """A fit quantity ('b_noise' or 's_min') of the mean steps (S, B) over seeds, with a BCa
    interval resampling seeds (whole curves); optionally divided by the mean over the same
    resampled seeds of ``divide_by`` (S,) (seeds where it is NaN, e.g. a missing noise run, are
    left out). Only batch sizes every seed reached enter."""
    used = np.all(np.isfinite(steps), axis=0)
    keep = np.ones(len(steps), bool) if divide_by is None else np.isfinite(divide_by)
    if used.sum() < 2 or not keep.any():
        return CI(math.nan, math.nan, math.nan, n=int(keep.sum()))
    xs, kept = sizes[used], steps[keep][:, used]
    denominators = None if divide_by is None else divide_by[keep]

    def statistic(sample, axis=-1):
        index = np.moveaxis(np.asarray(sample), axis, -1).astype(np.intp)
        value = np.asarray(getattr(fit_saturation(xs, kept[index].mean(axis=-2)), what), dtype=float)
        if what == "b_noise":  # ∞ (no saturation seen) or 0 (no scaling seen) as finite bounds: see B_NOISE_RANGE
            value = np.clip(value, xs.min() / B_NOISE_RANGE, xs.max() * B_NOISE_RANGE)
        return value if denominators is None else value / denominators[index].mean(axis=-1)

    return bootstrap_ci(np.arange(int(keep.sum()), dtype=float), statistic)


def _slope(sizes: np.ndarray, steps: np.ndarray, seeds: list[int], mask: np.ndarray) -> CI:
    """Log-log slope of steps (S, B) vs B over the batch sizes in ``mask``, seeds resampled as groups."""
    if mask.sum() < 2:
        return CI(math.nan, math.nan, math.nan, n=len(seeds))
    return loglog_slope_ci(np.tile(sizes[mask], len(seeds)), steps[:, mask].reshape(-1),
                           groups=np.repeat(seeds, int(mask.sum())))


def _noise_scales(noise: list[Run], seeds: list[int]) -> dict[str, np.ndarray]:
    """B_simple (and step, loss) at each level, per seed of ``seeds`` (NaN where not measured)."""
    measured = SeedTable(noise).by_seed if noise else (lambda metric: {})
    return {f"{key}_{level}": np.asarray([measured(f"{key}_{level}").get(s, math.nan) for s in seeds], dtype=float)
            for level in NOISE_LEVELS for key in ("b_simple", "step", "loss")}


def _analyze_workload(workload: str, train: list[Run], noise: list[Run],
                      config: BatchSaturationConfig) -> WorkloadAnalysis:
    w, f, ma = getattr(config, workload), config.regime_factor, train[0].settings.get("ma")
    by_point = group(train, lambda r: (r.config.train.batch_size, r.seed))
    table = SeedTable([_first_to_target(runs) for runs in by_point.values()], lambda r: r.config.train.batch_size)
    steps = table["steps_to_target"]
    reached, sizes, seeds = np.isfinite(steps), np.asarray(table.axis, dtype=float), table.seeds
    used = reached.all(axis=0)
    fit = fit_saturation(sizes[used], steps[:, used].mean(axis=0)) if used.sum() >= 2 else None
    b_noise = fit.b_noise if fit is not None else math.nan
    small, large = used & (sizes <= b_noise / f), used & (sizes >= b_noise * f)
    values, fitted = _noise_scales(noise, seeds), _resampled_fit(sizes, steps, "b_noise")
    m = ma["m_star"] if ma is not None else math.nan
    grid_points = {(b, g, s) for b in w["batch_sizes"] for g in w["lr_grid"] for s in range(config.seeds)}
    finished = {(r.config.train.batch_size, r.settings["lr_factor"], r.seed) for r in train}
    return WorkloadAnalysis(
        workload=workload, settings=w, table=table, steps=steps,
        best_lr=np.where(reached, table[lambda r: r.config.train.lr], np.nan),
        best_factor=np.where(reached, table[lambda r: r.settings["lr_factor"]], np.nan),
        ma=ma, fit=fit, b_noise=fitted, s_min=_resampled_fit(sizes, steps, "s_min"), small=small, large=large,
        small_slope=_slope(sizes, steps, seeds, small), large_slope=_slope(sizes, steps, seeds, large),
        noise=values, noise_cis={level: mean_ci(values[f"b_simple_{level}"]) for level in NOISE_LEVELS},
        ratio_b_simple=_resampled_fit(sizes, steps, "b_noise", divide_by=values["b_simple_half"]),
        ratio_ma=None if ma is None else CI(fitted[0] / m, fitted[1] / m, fitted[2] / m, n=fitted.n,
                                            method=fitted.method),
        unfinished=(len(grid_points - finished), len(grid_points)))


def analyze(runs: list[Run], config: BatchSaturationConfig) -> BatchSaturationAnalysis | Missing:
    out = []
    for workload in config.workloads:
        train = [r for r in runs if r.settings["workload"] == workload and r.settings["kind"] == "train"]
        noise = [r for r in runs if r.settings["workload"] == workload and r.settings["kind"] == "noise"]
        if train:
            out.append(_analyze_workload(workload, train, noise, config))
    return BatchSaturationAnalysis(out) if out else Missing(TITLE, "No finished runs yet.")


# --- claims --------------------------------------------------------------------------------------


LABELS = {"linear": "least squares (linear model, noiseless teacher)", "mlp": "MLP on MNIST-1D"}


def _workload_claims(a: WorkloadAnalysis, config: BatchSaturationConfig) -> list[Claim]:
    w, prefix, f = a.settings, f"{NAME}.{a.workload}.", config.regime_factor
    where = (f"{LABELS[a.workload]}, SGD (momentum 0) to train loss <= {w['target_loss']:g}, each B at its best LR "
             f"of a {len(w['lr_grid'])}-point grid")
    ranges = {"small": [int(b) for b in a.batch_sizes[a.small]], "large": [int(b) for b in a.batch_sizes[a.large]]}
    claims = [
        Claim.from_ci(
            prefix + "perfect_scaling", NAME,
            f"Perfect scaling below the critical batch size ({where}): the log-log slope of steps-to-target vs B over "
            f"B <= B_noise/{f:g} (B in {ranges['small']}) lies in [{SMALL_SLOPE_BAND[0]}, {SMALL_SLOPE_BAND[1]}].",
            "S ∝ 1/B below the critical batch size: slope −1 (Ma et al. 2018 'linear scaling'; McCandlish et al. "
            "2018 'perfect scaling')", a.small_slope, within=SMALL_SLOPE_BAND,
            details={"batch_sizes": ranges["small"]}),
        Claim.from_ci(
            prefix + "saturation", NAME,
            f"Saturation above the critical batch size ({where}): the log-log slope of steps-to-target vs B over "
            f"B >= {f:g}·B_noise (B in {ranges['large']}) is > {LARGE_SLOPE_ABOVE}.",
            "S → S_min above the critical batch size: slope → 0 (Ma et al. 2018 'saturation'; McCandlish et al. 2018)",
            a.large_slope, greater_than=LARGE_SLOPE_ABOVE, details={"batch_sizes": ranges["large"]}),
        Claim.from_ci(
            prefix + "b_noise_vs_b_simple", NAME,
            f"The fitted B_noise of S = S_min(1 + B_noise/B) ({where}) agrees with the simple gradient noise scale "
            f"B_simple = tr(Σ)/|G|² measured halfway to the target within an order of magnitude: ratio "
            f"B_noise/B_simple in [{1 / NOISE_SCALE_TOLERANCE:g}, {NOISE_SCALE_TOLERANCE:g}].",
            "B_crit ≈ B_noise ≈ B_simple within an order of magnitude (McCandlish et al. 2018)",
            a.ratio_b_simple, within=(1 / NOISE_SCALE_TOLERANCE, NOISE_SCALE_TOLERANCE)),
    ]
    if a.ratio_ma is not None:
        claims.append(Claim.from_ci(
            prefix + "b_noise_vs_ma", NAME,
            f"The fitted B_noise ({where}) is of the order of Ma et al.'s critical mini-batch size m* = β/λ_1 = "
            f"{a.ma['m_star']:.4g} (β = max|x_i|², λ_1 = top eigenvalue of XᵀX/n): ratio B_noise/m* within half "
            f"a decade, [{1 / MA_TOLERANCE:.3g}, {MA_TOLERANCE:.3g}].",
            "critical mini-batch size m* = β/λ_1 (Ma, Bassily & Belkin 2018; their bound gives B_noise = m* − 1)",
            a.ratio_ma, within=(1 / MA_TOLERANCE, MA_TOLERANCE), details={"m_star": a.ma["m_star"]}))
    return claims


def claims(analysis: BatchSaturationAnalysis, config: BatchSaturationConfig) -> list[Claim]:
    return [c for a in analysis.workloads for c in _workload_claims(a, config)]


# --- report --------------------------------------------------------------------------------------


TITLE = "batch_saturation: steps to a target loss vs batch size (critical batch size)"
INTRO = ("Per workload and batch size B: SGD with momentum 0 and a constant LR at every LR of the grid, for every "
         "seed; steps to target = the first evaluated step with training loss (whole training set) <= target, "
         "minimized over the LR grid; mean over the seeds that reached it, with a 95% bootstrap CI. Fits and "
         "slopes use the batch sizes where every seed reached the target; their CIs resample seeds.")


def render(analysis: BatchSaturationAnalysis, claims: list[Claim], config: BatchSaturationConfig) -> list[Section]:
    parts = [INTRO]
    for a in analysis.workloads:
        w = a.settings
        rule = ("multiples " + ", ".join(f"{v:g}" for v in w["lr_grid"]) + " of Ma et al.'s η*(B) (halved for "
                "the mean-of-squares loss)" if w["lr_rule"] == "ma" else
                "the same grid " + ", ".join(f"{v:g}" for v in w["lr_grid"]) + " at every B")
        parts += [f"**{LABELS[a.workload]}** — data {w['data']}, model {w['model']}, loss {w['loss']}, target train "
                  f"loss {w['target_loss']:g}; LRs: {rule}.", _table(a),
                  f"Simple gradient noise scale along the run at B = {w['noise_batch_size']} (per-example gradients "
                  f"over the whole training set):", _noise_table(a), _reading(a, config)]
    figures = [(f"{NAME}_steps", _steps_figure(analysis.workloads)),
               (f"{NAME}_learning_rates", _lr_figure(analysis.workloads))]
    return [Section(TITLE, "\n\n".join(parts), figures, claims)]


def _table(a: WorkloadAnalysis) -> str:
    with quiet():  # a batch size's budget and evaluation interval (the same for every seed)
        budgets, every = (np.nanmax(a.table[lambda r, k=k: getattr(r.config.train, k)], axis=0).astype(int)
                          for k in ("steps", "eval_every"))
    body = []
    for j, b in enumerate(a.batch_sizes.astype(int)):
        column = a.steps[:, j]
        reached = int(np.isfinite(column).sum())
        grid_lrs, factors = learning_rates(a.settings, int(b), a.ma), a.best_factor[:, j]
        best = "n/a" if not np.isfinite(factors).any() else ", ".join(
            common.fmt(v, 3) for v in sorted(set(a.best_lr[np.isfinite(factors), j].tolist())))
        fitted = common.fmt(float(a.fit.steps(np.array([b]))[0]), 3) if a.fit is not None else "n/a"
        region = "small" if a.small[j] else ("large" if a.large[j] else "")
        body.append([b, f"{budgets[j]} / {every[j]}", f"{common.fmt(grid_lrs[0], 3)} – {common.fmt(grid_lrs[-1], 3)}",
                     f"{reached}/{len(column)}", common.ci_text(mean_ci(column), 3) if reached else "not reached",
                     best, fitted, region])
    return common.table(["B", "budget / eval every", "LR grid", "reached", "steps to target", "best LR(s)",
                         "fitted S(B)", "slope range"], body)


def _noise_table(a: WorkloadAnalysis) -> str:
    names = {"start": "step 0", "half": "halfway (loss <= sqrt(L_0·target))", "target": "at the target"}
    body = []
    for level in NOISE_LEVELS:
        steps, losses = a.noise[f"step_{level}"], a.noise[f"loss_{level}"]
        measured = int(np.isfinite(steps).sum())
        body.append([names[level], f"{measured}/{len(steps)}",
                     common.fmt(float(np.nanmean(steps)), 4) if measured else "n/a",
                     common.fmt(float(np.nanmean(losses)), 3) if measured else "n/a",
                     common.ci_text(a.noise_cis[level], 3) if measured else "n/a"])
    return common.table(["where", "measured", "step (mean)", "train loss (mean)", "B_simple [95% CI]"], body)


def _reading(a: WorkloadAnalysis, config: BatchSaturationConfig) -> str:
    unreached = [int(b) for b, ok in zip(a.batch_sizes, a.used) if not ok]
    if a.fit is None:
        return (f"Fewer than two batch sizes had every seed reach the target loss {a.settings['target_loss']:g}, so "
                f"no curve was fitted (not reached at B = {unreached}).")
    text = _fit_text(a, config) + _ma_and_grid_text(a)
    if unreached:
        text += f" Left out of the fits (some seed never reached the target within the budget): B = {unreached}."
    return text


def _fit_text(a: WorkloadAnalysis, config: BatchSaturationConfig) -> str:
    """The fit, the slopes, B_simple and the caveats of the fit's form."""
    fit, text = a.fit, ""
    if not 0 < fit.b_noise < math.inf:
        where = "above the largest" if fit.b_noise == math.inf else "below the smallest"
        text = (f"The fit finds B_noise {where} batch size tried (the steps "
                + ("still fall as 1/B at the largest B" if fit.b_noise == math.inf else "do not fall with B")
                + f"); its CIs carry it as {common.fmt(B_NOISE_RANGE, 2)} times beyond that end. ")
    text += (
        f"The fit S(B) = S_min(1 + B_noise/B) to the mean steps over {len(a.table.seeds)} seeds at "
        f"{int(a.used.sum())} batch sizes gives S_min = {common.ci_text(a.s_min, 3)} steps and B_noise = B_crit = "
        f"{common.ci_text(a.b_noise, 3)} (root-mean-square relative residual {common.fmt(fit.residual, 2)}). Below "
        f"B_noise/{config.regime_factor:g} the steps fall with slope {common.ci_text(a.small_slope, 3)} (perfect "
        f"scaling is −1); above {config.regime_factor:g}·B_noise the slope is {common.ci_text(a.large_slope, 3)} (saturation is 0). The "
        f"simple noise scale B_simple, measured along a run at B = {a.settings['noise_batch_size']}, was "
        f"{common.ci_text(a.noise_cis['start'], 3)} at step 0, {common.ci_text(a.noise_cis['half'], 3)} halfway and "
        f"{common.ci_text(a.noise_cis['target'], 3)} at the target; B_noise/B_simple(halfway) = "
        f"{common.ci_text(a.ratio_b_simple, 3)}.")
    data = a.settings["data"]
    with quiet():
        start, target = np.nanmean(a.noise["b_simple_start"]), np.nanmean(a.noise["b_simple_target"])
    if math.isfinite(start) and math.isfinite(target) and max(start, target) > 1.5 * min(start, target):
        text += (f" B_simple changed by a factor {common.fmt(target / start, 3)} between step 0 and the target (the "
                 f"noise scale grows as the loss falls, as McCandlish et al. observe), so the comparison depends on "
                 f"where it is measured: B_noise/B_simple is {common.fmt(fit.b_noise / start, 3)} against step 0 and "
                 f"{common.fmt(fit.b_noise / target, 3)} against the target (point estimates).")
    if data["name"] == "linear_regression" and "p" in data:
        text += (f" For x ~ N(0, I_p) the population B_simple of least squares is p + 1 = {data['p'] + 1} "
                 f"whatever the error e = w − w* (per-example gradient x xᵀe, up to the loss's factor 2: "
                 f"E|g|² = (p + 2)|e|², |G|² = |e|²), which is why it hardly moves along training here.")
    if fit.s_min < 20:
        text += (f" Note that S_min is only {common.fmt(fit.s_min, 3)} steps: each large-batch step removes much of the "
                 f"remaining loss, while McCandlish et al.'s form is derived for many steps of small relative "
                 f"progress (steps ∝ 1/progress per step); with a per-step contraction ρ of the loss the count is "
                 f"log(L_0/target)/log(1/ρ), which bends the curve away from that form near saturation.")
    return text


def _ma_and_grid_text(a: WorkloadAnalysis) -> str:
    """Ma et al.'s constants (linear) and where the best LRs sit in the grid."""
    ma, text = a.ma, ""
    if a.ratio_ma is not None:
        text = (f" Ma et al.'s constants of this design: β = {common.fmt(ma['beta'], 4)}, λ_1 = "
                f"{common.fmt(ma['lambda_1'], 4)}, m* = β/λ_1 = {common.fmt(ma['m_star'], 4)}; B_noise/m* = "
                f"{common.ci_text(a.ratio_ma, 3)}. Their η*(B) comes from an upper bound on the per-step "
                f"contraction and is conservative: the best grid factor (× η*) was "
                + ", ".join(f"{common.fmt(v, 3)} at {int((a.best_factor == v).sum())}"
                            for v in a.settings["lr_grid"] if (a.best_factor == v).any())
                + " (B, seed) pairs. Their analysis samples batches with replacement; the training loop draws "
                  "them without replacement within an epoch (less noise at large B, exact full-batch steps at "
                  "B = n).")
    grid_lrs, edge = a.settings["lr_grid"], np.isfinite(a.best_factor)
    lowest = np.isclose(a.best_factor, grid_lrs[0]) & edge
    highest = np.isclose(a.best_factor, grid_lrs[-1]) & edge
    return text + (
        f" The best LR was the grid's smallest at {int(lowest.sum())} and its largest at {int(highest.sum())} of "
        f"{int(edge.sum())} (B, seed) pairs that reached the target"
        + ("; where it sits at an edge, a wider grid could lower that B's steps." if (lowest | highest).any()
           else ", so the grid brackets every optimum.")
        + f" {a.unfinished[0]} of {a.unfinished[1]} runs of the grid have no finished result (diverged, or not run "
          f"yet; they count as not reaching the target). Steps are read from evaluations every eval_every(B) steps "
          f"(table), so each is an upper bound by less than that resolution.")


def _steps_figure(analyses: list[WorkloadAnalysis]):
    from overparam.report.figures import new_figure

    fig, axes = new_figure(1, len(analyses), width=6.8 * len(analyses), height=5.0, squeeze=False)
    for ax, a in zip(axes[0], analyses):
        _steps_panel(ax, a)
    fig.suptitle("steps to a target training loss vs batch size, each B at its best LR: perfect scaling, then saturation",
                 fontsize=11)
    return fig


def _steps_panel(ax, a: WorkloadAnalysis) -> None:
    """Steps to target vs B: each seed, the mean with its CI, the fit and the critical batch sizes."""
    from overparam.report.figures import errorbar_plot, log2_axis

    fit, used, sizes = a.fit, a.used, a.batch_sizes
    for i, row in enumerate(a.steps):
        ax.plot(sizes, row, linestyle="none", marker=".", color="0.6", markersize=5, zorder=2,
                label="each seed" if i == 0 else None)
    if used.any():
        cis = [mean_ci(a.steps[:, j]) for j in np.flatnonzero(used)]
        errorbar_plot(ax, sizes[used], [c[0] for c in cis], [c[1] for c in cis], [c[2] for c in cis],
                      "mean steps to target (best LR)", len(a.table.seeds), color="black", legend=False)
    if fit is not None:
        grid_b = np.geomspace(sizes.min(), sizes.max(), 200)
        ax.plot(grid_b, fit.steps(grid_b), color="tab:blue", linewidth=1.8, zorder=1,
                label=f"fit S_min(1 + B_noise/B), S_min = {common.fmt(fit.s_min, 3)}")
        if math.isfinite(fit.b_noise):
            small = grid_b[grid_b <= fit.b_noise]
            ax.plot(small, fit.e_min / small, linestyle=":", color="tab:blue", linewidth=1.3,
                    label="perfect scaling E_min/B (slope −1)")
        ax.axhline(fit.s_min, linestyle=":", color="tab:blue", linewidth=1.0)
    _critical_marks(ax, a)
    ax.set_yscale("log")
    finite_steps = a.steps[np.isfinite(a.steps)]
    if finite_steps.size:
        low = min(finite_steps.min(), fit.s_min) if fit is not None and fit.s_min > 0 else finite_steps.min()
        ax.set_ylim(0.6 * low, 1.8 * finite_steps.max())
    missing = sizes[~used]
    if missing.size:
        ax.plot(missing, [ax.get_ylim()[1] / 1.15] * missing.size, linestyle="none", marker="x", color="tab:red",
                label="not reached by every seed")
    log2_axis(ax, sizes)
    ax.set_xlim(sizes.min() / 1.4, sizes.max() * 1.4)
    ax.set_xlabel("batch size B")
    ax.set_ylabel(f"steps to train loss <= {a.settings['target_loss']:g}")
    ax.set_title(f"{LABELS[a.workload]}", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper right", framealpha=0.85, edgecolor="none")


def _critical_marks(ax, a: WorkloadAnalysis) -> None:
    """Vertical lines (and CI bands) at the fitted B_noise, B_simple halfway and Ma et al.'s m*."""
    marks = [("B_noise (fit)", a.b_noise, "tab:blue"), ("B_simple halfway", a.noise_cis["half"], "tab:green")]
    if a.ma is not None:
        marks.append(("Ma et al. m* = β/λ_1", (a.ma["m_star"], math.nan, math.nan), "tab:red"))
    for label, ci, colour in marks:
        if math.isfinite(ci[0]):
            ax.axvline(ci[0], color=colour, linestyle="--", linewidth=1.3,
                       label=f"{label} = {common.fmt(ci[0], 3)}" + (" (band: 95% CI)" if math.isfinite(ci[1]) else ""))
        if math.isfinite(ci[1]) and math.isfinite(ci[2]):
            ax.axvspan(max(ci[1], a.batch_sizes.min() / 2), ci[2], color=colour, alpha=0.12, linewidth=0)


def _lr_figure(analyses: list[WorkloadAnalysis]):
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from overparam.report.figures import log2_axis, new_figure

    fig, axes = new_figure(1, len(analyses), width=6.4 * len(analyses), height=4.4, squeeze=False)
    for ax, a in zip(axes[0], analyses):
        sizes = [int(b) for b in a.batch_sizes]
        lrs = {b: learning_rates(a.settings, b, a.ma) for b in sizes}
        ax.plot([b for b in sizes for _ in lrs[b]], [lr for b in sizes for lr in lrs[b]], linestyle="none",
                marker="_", markersize=12, color="0.55", label="LR grid")
        offsets = np.linspace(-0.08, 0.08, len(a.table.seeds))  # seeds side by side (log2 units)
        for i in range(len(a.table.seeds)):
            ax.plot(a.batch_sizes * 2 ** offsets[i], a.best_lr[i], linestyle="none", marker="o", markersize=4,
                    color="tab:purple", label=f"best LR, each of {len(a.table.seeds)} seeds" if i == 0 else None)
        if a.ma is not None:
            grid_b = np.geomspace(min(sizes), max(sizes), 200)
            ax.plot(grid_b, grid_b / (a.ma["beta"] + (grid_b - 1) * a.ma["lambda_1"]) / 2, color="tab:red",
                    linewidth=1.2, label="Ma et al. η*(B), halved for the mean-of-squares loss")
        ax.set_yscale("log")
        if a.settings["lr_rule"] == "fixed":
            ax.set_yticks(a.settings["lr_grid"])
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        log2_axis(ax, sizes)
        ax.set_xlabel("batch size B")
        ax.set_ylabel("learning rate")
        ax.set_title(f"{LABELS[a.workload]}: the LR that reached the target first", fontsize=10)
        ax.legend(fontsize=8, framealpha=0.9, edgecolor="none")
    return fig


_TINY_LINEAR = {"data": {"name": "linear_regression", "n_train": 256, "n_test": 16, "p": 8, "seed": 0},
                "batch_sizes": [2, 4, 8, 16, 32, 64, 128, 256], "target_loss": 1e-3, "lr_grid": [1.0, 1.41],
                "budget_epochs": 0.5, "budget_steps": 20, "noise_batch_size": 4}
_TINY_MLP = {"data": {"name": "mnist1d", "n_train": 200, "n_test": 20, "seed": 0},
             "model": {"name": "mlp", "width": 16, "depth": 1},
             "batch_sizes": [8, 32, 128], "target_loss": 2.1, "lr_grid": [0.5, 2.0], "budget_epochs": 2.0,
             "budget_steps": 20, "evals": 10, "noise_batch_size": 32}

STUDY = Study(
    name=NAME,
    description="steps to a target loss vs batch size at the best LR per B: perfect scaling, saturation, and the "
                "critical batch from the fit, the gradient noise scale and Ma et al.'s m*",
    config_type=BatchSaturationConfig,
    grid=grid,
    run_one=run_one,
    run_batch=run_batch,
    batch_key=batch_key,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"linear": _TINY_LINEAR, "mlp": _TINY_MLP, "seeds": 3},
        "quick": {"linear": WORKLOAD_DEFAULTS["linear"], "mlp": WORKLOAD_DEFAULTS["mlp"], "seeds": 3},
        "paper": {"linear": {"data": {"name": "linear_regression", "n_train": 16384, "n_test": 1000, "p": 256,
                                      "seed": 0},
                             "batch_sizes": [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
                             "target_loss": 1e-8, "budget_epochs": 1.0, "budget_steps": 100, "noise_batch_size": 16},
                  "mlp": {"data": {"name": "mnist", "seed": 0, "standardize": True},
                          "model": {"name": "mlp", "width": 512, "depth": 2},
                          "batch_sizes": [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384],
                          "target_loss": 0.1, "lr_grid": [0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0],
                          "budget_epochs": 20.0, "budget_steps": 1000, "evals": 200, "noise_batch_size": 128},
                  "seeds": 5},
    },
)
