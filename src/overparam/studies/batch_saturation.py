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

from overparam.errors import ConfigError, check_positive_int, choice_error
from overparam.references.batch import fit_saturation, ma_critical_batch
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _complete(workload: str, settings: Any) -> dict[str, Any]:
    """The workload's settings with defaults filled in, validated (ConfigError naming the bad one)."""
    if not isinstance(settings, dict):
        raise ConfigError(f"{workload} must be a mapping of workload settings, got {settings!r}")
    defaults = WORKLOAD_DEFAULTS[workload]
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ConfigError(f"{workload} has no setting(s) {unknown}; accepted: {sorted(defaults)}")
    w = {**copy.deepcopy(defaults), **copy.deepcopy(settings)}
    where = f"{workload}."
    sizes = w["batch_sizes"]
    if not isinstance(sizes, (list, tuple)) or len(sizes) < 3:
        raise ConfigError(f"{where}batch_sizes needs at least three batch sizes (a fit of two parameters), got {sizes!r}")
    for b in sizes:
        check_positive_int(f"each of {where}batch_sizes", b)
    if len(set(sizes)) != len(sizes):
        raise ConfigError(f"{where}batch_sizes has repeated values: {list(sizes)}")
    w["batch_sizes"] = sorted(sizes)
    if not (_is_number(w["target_loss"]) and w["target_loss"] > 0):
        raise ConfigError(f"{where}target_loss must be a positive number, got {w['target_loss']!r}")
    if w["loss"] not in LOSSES:
        raise choice_error(f"{where}loss", w["loss"], LOSSES)
    if w["lr_rule"] not in LR_RULES:
        raise choice_error(f"{where}lr_rule", w["lr_rule"], LR_RULES)
    grid = w["lr_grid"]
    if not isinstance(grid, (list, tuple)) or not grid or not all(_is_number(v) and v > 0 for v in grid):
        raise ConfigError(f"{where}lr_grid must be a non-empty list of positive numbers, got {grid!r}")
    if len(set(grid)) != len(grid):
        raise ConfigError(f"{where}lr_grid has repeated values: {list(grid)}")
    w["lr_grid"] = sorted(float(v) for v in grid)
    if not (_is_number(w["budget_epochs"]) and w["budget_epochs"] >= 0):
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
    if w["lr_rule"] == "ma":
        model = w["model"]
        if model.get("name") != "deep_linear" or model.get("depth") != 1 or w["loss"] != "mse":
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
        if not (_is_number(self.regime_factor) and self.regime_factor > 1):
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


# --- summary -------------------------------------------------------------------------------------


@dataclass
class Curve:
    """One workload's steps-to-target: ``steps[i, j]`` for seed ``seeds[i]`` at batch size
    ``batch_sizes[j]``, the minimum over the LR grid (NaN: no LR reached the target, or no run
    stored yet); ``best_lr``/``best_factor`` the LR (and grid entry) that got there first."""

    workload: str
    batch_sizes: np.ndarray
    seeds: list[int]
    steps: np.ndarray
    best_lr: np.ndarray
    best_factor: np.ndarray
    lrs: dict[int, list[float]]  # B -> the LR grid there
    budgets: dict[int, tuple[int, int]]  # B -> (budget steps, eval_every)

    @property
    def used(self) -> np.ndarray:
        """Batch sizes where every seed reached the target: the points of every fit."""
        return np.all(np.isfinite(self.steps), axis=0)


def _curve(workload: str, rows: list[dict[str, Any]]) -> Curve:
    by_point = common.group(rows, lambda r: (common.option(r, "train.batch_size"), r["seed"]))
    sizes = sorted({b for b, _ in by_point})
    seeds = sorted({s for _, s in by_point})
    steps = np.full((len(seeds), len(sizes)), np.nan)
    best_lr, best_factor = np.full_like(steps, np.nan), np.full_like(steps, np.nan)
    lrs: dict[int, set[float]] = {}
    budgets = {}
    for (b, seed), point in by_point.items():
        i, j = seeds.index(seed), sizes.index(b)
        train = common.run_params(point[0])["run"]["train"]
        budgets[b] = (train["steps"], train["eval_every"])
        lrs.setdefault(b, set()).update(common.run_params(r)["run"]["train"]["lr"] for r in point)
        reached = sorted((r["metrics"]["steps_to_target"], common.run_params(r)["run"]["train"]["lr"],
                          common.run_params(r)["lr_factor"]) for r in point
                         if r["status"] == "done" and r["metrics"].get("reached"))
        if reached:
            steps[i, j], best_lr[i, j], best_factor[i, j] = reached[0]
    return Curve(workload, np.asarray(sizes, dtype=float), seeds, steps, best_lr, best_factor,
                 {b: sorted(v) for b, v in lrs.items()}, budgets)


def _nan_ci(n: int = 0):
    from overparam.report import CI

    return CI(math.nan, math.nan, math.nan, n=n)


def _resampled_fit(curve: Curve, what: str, divide_by: np.ndarray | None = None):
    """Bootstrap CI over seeds of a fit quantity ('b_noise' or 's_min') of the mean curve,
    optionally divided by the mean over the same resampled seeds of ``divide_by`` (one value per
    seed; seeds where it is NaN, e.g. a missing noise run, are left out)."""
    from overparam.report import bootstrap_ci

    used = curve.used
    keep = np.ones(len(curve.seeds), bool) if divide_by is None else np.isfinite(divide_by)
    if used.sum() < 2 or not keep.any():
        return _nan_ci(int(keep.sum()))
    xs, steps = curve.batch_sizes[used], curve.steps[keep][:, used]
    denominators = None if divide_by is None else divide_by[keep]

    def statistic(sample, axis=-1):
        index = np.moveaxis(np.asarray(sample), axis, -1).astype(np.intp)
        value = np.asarray(getattr(fit_saturation(xs, steps[index].mean(axis=-2)), what), dtype=float)
        if what == "b_noise":  # ∞ (no saturation seen) or 0 (no scaling seen) as finite bounds: see B_NOISE_RANGE
            value = np.clip(value, xs.min() / B_NOISE_RANGE, xs.max() * B_NOISE_RANGE)
        return value if denominators is None else value / denominators[index].mean(axis=-1)

    return bootstrap_ci(np.arange(int(keep.sum()), dtype=float), statistic)


def _slope(curve: Curve, mask: np.ndarray):
    """Log-log slope of steps vs B over the batch sizes in ``mask``, seeds resampled as groups."""
    from overparam.report import loglog_slope_ci

    if mask.sum() < 2:
        return _nan_ci(len(curve.seeds))
    xs = np.tile(curve.batch_sizes[mask], len(curve.seeds))
    ys = curve.steps[:, mask].reshape(-1)
    groups = np.repeat(curve.seeds, int(mask.sum()))
    return loglog_slope_ci(xs, ys, groups=groups)


def _noise_scales(curve: Curve, rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """B_simple (and step, loss) at each level, per seed of ``curve`` (NaN where not measured)."""
    by_seed = {r["seed"]: r["metrics"] for r in rows}
    out = {}
    for level in NOISE_LEVELS:
        for key in ("b_simple", "step", "loss"):
            out[f"{key}_{level}"] = np.asarray([by_seed.get(s, {}).get(f"{key}_{level}", math.nan) for s in curve.seeds],
                                               dtype=float)
    return out


def _analysis(workload: str, train_rows: list, noise_rows: list, config: BatchSaturationConfig) -> dict[str, Any]:
    from overparam.report import CI, bootstrap_ci

    curve = _curve(workload, train_rows)
    used = curve.used
    runs = {"runs": len(train_rows), "diverged": sum(r["status"] == "diverged" for r in train_rows)}
    a: dict[str, Any] = {"workload": workload, "curve": curve, "settings": getattr(config, workload),
                         "ma": common.run_params(train_rows[0]).get("ma"), "fit": None, **runs}
    if used.sum() >= 2:
        a["fit"] = fit_saturation(curve.batch_sizes[used], curve.steps[:, used].mean(axis=0))
    a["b_noise"] = _resampled_fit(curve, "b_noise")
    a["s_min"] = _resampled_fit(curve, "s_min")
    b_noise = a["fit"].b_noise if a["fit"] is not None else math.nan
    f = config.regime_factor
    a["small"] = used & (curve.batch_sizes <= b_noise / f)
    a["large"] = used & (curve.batch_sizes >= b_noise * f)
    a["small_slope"], a["large_slope"] = _slope(curve, a["small"]), _slope(curve, a["large"])
    noise = _noise_scales(curve, noise_rows)
    a["noise"] = noise
    a["noise_cis"] = {level: bootstrap_ci(noise[f"b_simple_{level}"]) for level in NOISE_LEVELS}
    a["ratio_b_simple"] = _resampled_fit(curve, "b_noise", divide_by=noise["b_simple_half"])
    if a["ma"] is not None:
        m = a["ma"]["m_star"]
        ci = a["b_noise"]
        a["ratio_ma"] = CI(ci[0] / m, ci[1] / m, ci[2] / m, n=ci.n, method=ci.method)
    return a


LABELS = {"linear": "least squares (linear model, noiseless teacher)", "mlp": "MLP on MNIST-1D"}


def _claims(a: dict[str, Any], config: BatchSaturationConfig) -> list:
    from overparam.report import Claim

    workload, w = a["workload"], a["settings"]
    prefix = f"{NAME}.{workload}."
    f = config.regime_factor
    where = (f"{LABELS[workload]}, SGD (momentum 0) to train loss <= {w['target_loss']:g}, each B at its best LR "
             f"of a {len(w['lr_grid'])}-point grid")
    ranges = {name: [int(b) for b in a["curve"].batch_sizes[a[name]]] for name in ("small", "large")}
    claims = [
        Claim.from_ci(
            prefix + "perfect_scaling", NAME,
            f"Perfect scaling below the critical batch size ({where}): the log-log slope of steps-to-target vs B over "
            f"B <= B_noise/{f:g} (B in {ranges['small']}) lies in [{SMALL_SLOPE_BAND[0]}, {SMALL_SLOPE_BAND[1]}].",
            "S ∝ 1/B below the critical batch size: slope −1 (Ma et al. 2018 'linear scaling'; McCandlish et al. "
            "2018 'perfect scaling')", a["small_slope"], within=SMALL_SLOPE_BAND,
            details={"batch_sizes": ranges["small"]}),
        Claim.from_ci(
            prefix + "saturation", NAME,
            f"Saturation above the critical batch size ({where}): the log-log slope of steps-to-target vs B over "
            f"B >= {f:g}·B_noise (B in {ranges['large']}) is > {LARGE_SLOPE_ABOVE}.",
            "S → S_min above the critical batch size: slope → 0 (Ma et al. 2018 'saturation'; McCandlish et al. 2018)",
            a["large_slope"], greater_than=LARGE_SLOPE_ABOVE, details={"batch_sizes": ranges["large"]}),
        Claim.from_ci(
            prefix + "b_noise_vs_b_simple", NAME,
            f"The fitted B_noise of S = S_min(1 + B_noise/B) ({where}) agrees with the simple gradient noise scale "
            f"B_simple = tr(Σ)/|G|² measured halfway to the target within an order of magnitude: ratio "
            f"B_noise/B_simple in [{1 / NOISE_SCALE_TOLERANCE:g}, {NOISE_SCALE_TOLERANCE:g}].",
            "B_crit ≈ B_noise ≈ B_simple within an order of magnitude (McCandlish et al. 2018)",
            a["ratio_b_simple"], within=(1 / NOISE_SCALE_TOLERANCE, NOISE_SCALE_TOLERANCE)),
    ]
    if "ratio_ma" in a:
        claims.append(Claim.from_ci(
            prefix + "b_noise_vs_ma", NAME,
            f"The fitted B_noise ({where}) is of the order of Ma et al.'s critical mini-batch size m* = β/λ_1 = "
            f"{a['ma']['m_star']:.4g} (β = max|x_i|², λ_1 = top eigenvalue of XᵀX/n): ratio B_noise/m* within half "
            f"a decade, [{1 / MA_TOLERANCE:.3g}, {MA_TOLERANCE:.3g}].",
            "critical mini-batch size m* = β/λ_1 (Ma, Bassily & Belkin 2018; their bound gives B_noise = m* − 1)",
            a["ratio_ma"], within=(1 / MA_TOLERANCE, MA_TOLERANCE), details={"m_star": a["ma"]["m_star"]}))
    return claims


def _table(a: dict[str, Any]) -> str:
    from overparam.report import bootstrap_ci

    curve, fit = a["curve"], a["fit"]
    n = len(curve.seeds)
    body = []
    for j, b in enumerate(curve.batch_sizes.astype(int)):
        column = curve.steps[:, j]
        reached = int(np.isfinite(column).sum())
        ci = bootstrap_ci(column[np.isfinite(column)])
        budget_steps, every = curve.budgets[b]
        grid = curve.lrs[b]
        factors = curve.best_factor[:, j]
        best = "n/a" if not np.isfinite(factors).any() else ", ".join(
            common.fmt(v, 3) for v in sorted(set(curve.best_lr[np.isfinite(factors), j].tolist())))
        fitted = common.fmt(float(fit.steps(np.array([b]))[0]), 3) if fit is not None else "n/a"
        region = "small" if a["small"][j] else ("large" if a["large"][j] else "")
        body.append([b, f"{budget_steps} / {every}", f"{common.fmt(grid[0], 3)} – {common.fmt(grid[-1], 3)}",
                     f"{reached}/{n}", common.ci_text(ci, 3) if reached else "not reached", best, fitted, region])
    return common.table(["B", "budget / eval every", "LR grid", "reached", "steps to target", "best LR(s)",
                         "fitted S(B)", "slope range"], body)


def _noise_table(a: dict[str, Any]) -> str:
    noise, cis = a["noise"], a["noise_cis"]
    names = {"start": "step 0", "half": "halfway (loss <= sqrt(L_0·target))", "target": "at the target"}
    body = []
    for level in NOISE_LEVELS:
        steps, losses = noise[f"step_{level}"], noise[f"loss_{level}"]
        measured = int(np.isfinite(steps).sum())
        body.append([names[level], f"{measured}/{len(steps)}",
                     common.fmt(float(np.nanmean(steps)), 4) if measured else "n/a",
                     common.fmt(float(np.nanmean(losses)), 3) if measured else "n/a",
                     common.ci_text(cis[level], 3) if measured else "n/a"])
    return common.table(["where", "measured", "step (mean)", "train loss (mean)", "B_simple [95% CI]"], body)


def _reading(a: dict[str, Any], config: BatchSaturationConfig) -> str:
    curve, fit, w = a["curve"], a["fit"], a["settings"]
    unreached = [int(b) for b, ok in zip(curve.batch_sizes, curve.used) if not ok]
    if fit is None:
        return (f"Fewer than two batch sizes had every seed reach the target loss {w['target_loss']:g}, so no curve "
                f"was fitted (not reached at B = {unreached}).")
    edge = np.isfinite(curve.best_factor)
    lowest = np.isclose(curve.best_factor, w["lr_grid"][0]) & edge
    highest = np.isclose(curve.best_factor, w["lr_grid"][-1]) & edge
    text = ""
    if not 0 < fit.b_noise < math.inf:
        where = "above the largest" if fit.b_noise == math.inf else "below the smallest"
        text = (f"The fit finds B_noise {where} batch size tried (the steps "
                + ("still fall as 1/B at the largest B" if fit.b_noise == math.inf else "do not fall with B")
                + f"); its CIs carry it as {common.fmt(B_NOISE_RANGE, 2)} times beyond that end. ")
    text += (f"The fit S(B) = S_min(1 + B_noise/B) to the mean steps over {len(curve.seeds)} seeds at "
            f"{int(curve.used.sum())} batch sizes gives S_min = {common.ci_text(a['s_min'], 3)} steps and B_noise = "
            f"B_crit = {common.ci_text(a['b_noise'], 3)} (root-mean-square relative residual "
            f"{common.fmt(fit.residual, 2)}). Below B_noise/{config.regime_factor:g} the steps fall with slope "
            f"{common.ci_text(a['small_slope'], 3)} (perfect scaling is −1); above {config.regime_factor:g}·B_noise the "
            f"slope is {common.ci_text(a['large_slope'], 3)} (saturation is 0). The simple noise scale B_simple, "
            f"measured along a run at B = {w['noise_batch_size']}, was {common.ci_text(a['noise_cis']['start'], 3)} at "
            f"step 0, {common.ci_text(a['noise_cis']['half'], 3)} halfway and "
            f"{common.ci_text(a['noise_cis']['target'], 3)} at the target; B_noise/B_simple(halfway) = "
            f"{common.ci_text(a['ratio_b_simple'], 3)}.")
    noise = a["noise"]
    start, target = np.nanmean(noise["b_simple_start"]), np.nanmean(noise["b_simple_target"])
    if math.isfinite(start) and math.isfinite(target) and max(start, target) > 1.5 * min(start, target):
        text += (f" B_simple changed by a factor {common.fmt(target / start, 3)} between step 0 and the target (the "
                 f"noise scale grows as the loss falls, as McCandlish et al. observe), so the comparison depends on "
                 f"where it is measured: B_noise/B_simple is {common.fmt(fit.b_noise / start, 3)} against step 0 and "
                 f"{common.fmt(fit.b_noise / target, 3)} against the target (point estimates).")
    if w["data"]["name"] == "linear_regression" and "p" in w["data"]:
        text += (f" For x ~ N(0, I_p) the population B_simple of least squares is p + 1 = {w['data']['p'] + 1} "
                 f"whatever the error e = w − w* (per-example gradient x xᵀe, up to the loss's factor 2: "
                 f"E|g|² = (p + 2)|e|², |G|² = |e|²), "
                 f"which is why it hardly moves along training here.")
    if fit.s_min < 20:
        text += (f" Note that S_min is only {common.fmt(fit.s_min, 3)} steps: each large-batch step removes much of the "
                 f"remaining loss, while McCandlish et al.'s form is derived for many steps of small relative "
                 f"progress (steps ∝ 1/progress per step); with a per-step contraction ρ of the loss the count is "
                 f"log(L_0/target)/log(1/ρ), which bends the curve away from that form near saturation.")
    if "ratio_ma" in a:
        ma = a["ma"]
        text += (f" Ma et al.'s constants of this design: β = {common.fmt(ma['beta'], 4)}, λ_1 = "
                 f"{common.fmt(ma['lambda_1'], 4)}, m* = β/λ_1 = {common.fmt(ma['m_star'], 4)}; B_noise/m* = "
                 f"{common.ci_text(a['ratio_ma'], 3)}. Their η*(B) comes from an upper bound on the per-step "
                 f"contraction and is conservative: the best grid factor (× η*) was "
                 + ", ".join(f"{common.fmt(v, 3)} at {int((curve.best_factor == v).sum())}"
                             for v in w["lr_grid"] if (curve.best_factor == v).any())
                 + " (B, seed) pairs. Their analysis samples batches with replacement; the training loop draws "
                   "them without replacement within an epoch (less noise at large B, exact full-batch steps at "
                   "B = n).")
    text += (f" The best LR was the grid's smallest at {int(lowest.sum())} and its largest at {int(highest.sum())} of "
             f"{int(edge.sum())} (B, seed) pairs that reached the target"
             + ("; where it sits at an edge, a wider grid could lower that B's steps." if (lowest | highest).any()
                else ", so the grid brackets every optimum.")
             + f" {a['diverged']} of {a['runs']} runs diverged (they count as not reaching the target). Steps are "
               f"read from evaluations every eval_every(B) steps (table), so each is an upper bound by less than "
               f"that resolution.")
    if unreached:
        text += f" Left out of the fits (some seed never reached the target within the budget): B = {unreached}."
    return text


def summarize(rows: list[dict[str, Any]], config: BatchSaturationConfig) -> list:
    from overparam.report import Section

    title = "batch_saturation: steps to a target loss vs batch size (critical batch size)"
    finished = [r for r in rows if r["status"] in ("done", "diverged")]
    sections = []
    for workload in config.workloads:
        mine = [r for r in finished if common.run_params(r)["workload"] == workload]
        train = [r for r in mine if common.run_params(r)["kind"] == "train"]
        noise = [r for r in mine if common.run_params(r)["kind"] == "noise" and r["status"] == "done"]
        if not train:
            continue
        sections.append(_analysis(workload, train, noise, config))
    if not sections:
        return [Section(title, "No finished runs yet.")]
    claims = [c for a in sections for c in _claims(a, config)]
    parts = ["Per workload and batch size B: SGD with momentum 0 and a constant LR at every LR of the grid, for every "
             "seed; steps to target = the first evaluated step with training loss (whole training set) <= target, "
             "minimized over the LR grid; mean over the seeds that reached it, with a 95% bootstrap CI. Fits and "
             "slopes use the batch sizes where every seed reached the target; their CIs resample seeds."]
    for a in sections:
        w = a["settings"]
        rule = ("multiples " + ", ".join(f"{v:g}" for v in w["lr_grid"]) + " of Ma et al.'s η*(B) (halved for "
                "the mean-of-squares loss)" if w["lr_rule"] == "ma" else
                "the same grid " + ", ".join(f"{v:g}" for v in w["lr_grid"]) + " at every B")
        parts += [f"**{LABELS[a['workload']]}** — data {w['data']}, model {w['model']}, loss {w['loss']}, target train "
                  f"loss {w['target_loss']:g}; LRs: {rule}.", _table(a),
                  f"Simple gradient noise scale along the run at B = {w['noise_batch_size']} (per-example gradients "
                  f"over the whole training set):", _noise_table(a), _reading(a, config)]
    return [Section(title, "\n\n".join(parts),
                    [(f"{NAME}_steps", _steps_figure(sections)), (f"{NAME}_learning_rates", _lr_figure(sections))],
                    claims)]


def _log2_axis(ax, sizes) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log", base=2)
    ax.set_xticks([int(b) for b in sizes])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _steps_figure(analyses: list[dict[str, Any]]):
    from overparam.report import bootstrap_ci, errorbar_plot, new_figure

    fig, axes = new_figure(1, len(analyses), width=6.8 * len(analyses), height=5.0, squeeze=False)
    for ax, a in zip(axes[0], analyses):
        curve, fit, w = a["curve"], a["fit"], a["settings"]
        used, sizes = curve.used, curve.batch_sizes
        for i, row in enumerate(curve.steps):
            ax.plot(sizes, row, linestyle="none", marker=".", color="0.6", markersize=5, zorder=2,
                    label="each seed" if i == 0 else None)
        if used.any():
            cis = [bootstrap_ci(curve.steps[:, j]) for j in np.flatnonzero(used)]
            errorbar_plot(ax, sizes[used], [c[0] for c in cis], [c[1] for c in cis], [c[2] for c in cis],
                          "mean steps to target (best LR)", len(curve.seeds), color="black", legend=False)
        if fit is not None:
            grid = np.geomspace(sizes.min(), sizes.max(), 200)
            ax.plot(grid, fit.steps(grid), color="tab:blue", linewidth=1.8, zorder=1,
                    label=f"fit S_min(1 + B_noise/B), S_min = {common.fmt(fit.s_min, 3)}")
            if math.isfinite(fit.b_noise):
                small = grid[grid <= fit.b_noise]
                ax.plot(small, fit.e_min / small, linestyle=":", color="tab:blue", linewidth=1.3,
                        label="perfect scaling E_min/B (slope −1)")
            ax.axhline(fit.s_min, linestyle=":", color="tab:blue", linewidth=1.0)
        marks = [("B_noise (fit)", a["b_noise"], "tab:blue"), ("B_simple halfway", a["noise_cis"]["half"], "tab:green")]
        if a["ma"] is not None:
            marks.append(("Ma et al. m* = β/λ_1", (a["ma"]["m_star"], math.nan, math.nan), "tab:red"))
        for label, ci, colour in marks:
            if math.isfinite(ci[0]):
                ax.axvline(ci[0], color=colour, linestyle="--", linewidth=1.3,
                           label=f"{label} = {common.fmt(ci[0], 3)}" + (" (band: 95% CI)" if math.isfinite(ci[1]) else ""))
            if math.isfinite(ci[1]) and math.isfinite(ci[2]):
                ax.axvspan(max(ci[1], sizes.min() / 2), ci[2], color=colour, alpha=0.12, linewidth=0)
        ax.set_yscale("log")
        finite = curve.steps[np.isfinite(curve.steps)]
        if finite.size:
            low = min(finite.min(), fit.s_min) if fit is not None and fit.s_min > 0 else finite.min()
            ax.set_ylim(0.6 * low, 1.8 * finite.max())
        missing = sizes[~used]
        if missing.size:
            ax.plot(missing, [ax.get_ylim()[1] / 1.15] * missing.size, linestyle="none", marker="x", color="tab:red",
                    label="not reached by every seed")
        _log2_axis(ax, sizes)
        ax.set_xlim(sizes.min() / 1.4, sizes.max() * 1.4)
        ax.set_xlabel("batch size B")
        ax.set_ylabel(f"steps to train loss <= {w['target_loss']:g}")
        ax.set_title(f"{LABELS[a['workload']]}", fontsize=10)
        ax.legend(fontsize=7.5, loc="upper right", framealpha=0.85, edgecolor="none")
    fig.suptitle("steps to a target training loss vs batch size, each B at its best LR: perfect scaling, then saturation",
                 fontsize=11)
    return fig


def _lr_figure(analyses: list[dict[str, Any]]):
    from matplotlib.ticker import FuncFormatter, NullFormatter

    from overparam.report import new_figure

    fig, axes = new_figure(1, len(analyses), width=6.4 * len(analyses), height=4.4, squeeze=False)
    for ax, a in zip(axes[0], analyses):
        curve = a["curve"]
        sizes = [int(b) for b in curve.batch_sizes]
        grid_x = [b for b in sizes for _ in curve.lrs[b]]
        ax.plot(grid_x, [lr for b in sizes for lr in curve.lrs[b]], linestyle="none", marker="_", markersize=12,
                color="0.55", label="LR grid")
        offsets = np.linspace(-0.08, 0.08, len(curve.seeds))  # seeds side by side (log2 units)
        for i, seed in enumerate(curve.seeds):
            ax.plot(curve.batch_sizes * 2 ** offsets[i], curve.best_lr[i], linestyle="none", marker="o", markersize=4,
                    color="tab:purple", label=f"best LR, each of {len(curve.seeds)} seeds" if i == 0 else None)
        if a["ma"] is not None:
            ma = a["ma"]
            grid = np.geomspace(min(sizes), max(sizes), 200)
            ax.plot(grid, grid / (ma["beta"] + (grid - 1) * ma["lambda_1"]) / 2, color="tab:red", linewidth=1.2,
                    label="Ma et al. η*(B), halved for the mean-of-squares loss")
        ax.set_yscale("log")
        if a["settings"]["lr_rule"] == "fixed":
            ax.set_yticks(a["settings"]["lr_grid"])
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        _log2_axis(ax, sizes)
        ax.set_xlabel("batch size B")
        ax.set_ylabel("learning rate")
        ax.set_title(f"{LABELS[a['workload']]}: the LR that reached the target first", fontsize=10)
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
    legacy_summarize=summarize,
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
