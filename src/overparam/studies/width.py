"""``width``: lazy training vs width: parameter movement, NTK drift, distance to the infinite-width NTK.

The paper's experiment 2 (arXiv 2604.07603; after Jacot et al. 2018, Lee et al. 2019, Chizat,
Oyallon & Bach 2019): one ReLU MLP of ``depth`` hidden layers trained at widths w (quick:
32..4096) in the standard and the NTK parameterization (Neural Tangents' convention, see
:mod:`overparam.models.mlp`), with the same data, schedule and learning rate for every width of
a parameterization (one LR per parameterization: the NTK parameterization's gradients are
smaller by w_std/sqrt(fan-in), so it needs an O(1) LR where the standard one takes ~0.05).
All seeds share one dataset (``data.seed``), so only the init and the data order vary.

Per run (``_measure``):

- movement: ||θ_T − θ_0|| / ||θ_0||, globally and per parameter tensor, θ_0 rebuilt from the
  run's init seed (:func:`overparam.measures.relative_movement`);
- the empirical NTK Θ(x, x') on a fixed probe set (``probe_examples`` examples of the
  ``probe_split`` split, the same for every run), at init and after training, by the
  'structured' method in float64: the full (n, n, k, k) kernel over the k outputs. The kernel
  reported is its trace over outputs, Σ_a Θ_aa (n, n), the kernel usually quoted for a
  k-output model; ``*_full`` metrics use the full kernel instead;
- kernel drift: ||Θ_T − Θ_0||_F / ||Θ_0||_F, and 1 − CKA(Θ_0, Θ_T);
- distance of Θ_0 from the infinite-width limit, ||Θ_0/c − Θ_∞||_F / ||Θ_∞||_F (and 1 − CKA):
  NTK parameterization: c = 1 and Θ_∞ = k · Θ_analytic, Θ_analytic the scalar-output NTK of
  :func:`overparam.measures.analytic_ntk` (a k-output network's kernel tends to
  Θ_analytic ⊗ I_k, whose trace over outputs is k Θ_analytic);
  standard parameterization: its NTK grows ∝ width (a layer of fan-in n contributes n/w_std²
  times its NTK-parameterization term), so c = width and Θ_∞ = k · S with S the limit of
  Θ_SP / width, the sum of the terms of the layers whose fan-in is the width
  (:func:`standard_limit_kernel`); the first layer's and the biases' terms are O(1/width) there;
- test accuracy from the run's own evaluation.

Theory (gradient flow / small-LR SGD in the NTK parameterization, fixed training time):
Θ_0 fluctuates around Θ_∞ by O(1/sqrt(w)); the kernel's drift is bounded by O(1/sqrt(w)) (Jacot
et al.; Lee et al.), and perturbation theory gives the sharper rate 1/w (Dyer & Gur-Ari 2019),
so a drift exponent anywhere from −1/2 down to −1 is the kernel regime; the weights of
the first and last layer move O(1/sqrt(w)) relative to their size, while a w × w hidden matrix
moves O(1/w) (its O(1) change against its O(w) Frobenius norm). So for ``depth = 1`` (the
presets) the global movement follows 1/sqrt(w); for depth >= 2 the hidden matrices dominate
||θ|| and the global exponent tends to −1 (the per-layer table shows each layer's exponent).
The standard parameterization at a fixed LR is not in the kernel regime: its NTK, hence its
effective step size, grows with width.

Claims (:data:`PAPER_CLAIMS`, stated in :func:`_arm_claims`; the standard parameterization's as
``width.standard.*``): the movement ratio and slope, the drift falls, Θ_0 approaches its limit.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from overparam.analysis import Missing, Run, SeedTable, group
from overparam.errors import ConfigError, as_tuple, check_number, check_numbers, check_positive_int, choice_error
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import EXPONENT, RATIO, Published, above, below, between
from overparam.studies import common
from overparam.studies.base import RunSpec, Study

NAME = "width"
PARAMETERIZATIONS = ("standard", "ntk")
PROBE_SPLITS = ("train", "test")
OPTIMIZERS = ("sgd", "gd")


@dataclass(frozen=True)
class WidthConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "n_train": 1000, "seed": 0})
    # optimizer, momentum, batch size, budget: the same for every width; the LR comes from ``lr``
    train: dict[str, Any] = field(default_factory=lambda: {"optimizer": "sgd", "momentum": 0.0, "batch_size": 25,
                                                           "epochs": 10, "eval_every": 100})
    lr: dict[str, Any] = field(default_factory=lambda: {"standard": 0.05, "ntk": 1.0})
    widths: tuple[int, ...] = (32, 64, 128, 256, 512, 1024, 2048, 4096)
    depth: int = 1  # hidden layers
    parameterizations: tuple[str, ...] = PARAMETERIZATIONS
    w_std: float = math.sqrt(2.0)
    b_std: float = 0.1
    probe_examples: int = 128  # examples the NTKs are computed on (the same for every run)
    probe_split: str = "test"
    seeds: int = 5

    def __post_init__(self) -> None:
        from overparam.config import RunConfig

        check_positive_int("seeds", self.seeds)
        check_positive_int("depth", self.depth)
        check_positive_int("probe_examples", self.probe_examples, minimum=2)
        check_numbers("widths", self.widths, at_least=2, integer=True, minimum=1)
        params = as_tuple(self.parameterizations)
        if not params or len(set(params)) != len(params):
            raise ConfigError(f"parameterizations must be a non-empty list without repeats, got "
                              f"{self.parameterizations!r}; accepted values: {list(PARAMETERIZATIONS)}")
        if unknown := [p for p in params if p not in PARAMETERIZATIONS]:
            raise choice_error("parameterization", unknown[0], PARAMETERIZATIONS)
        _check_lr(self.lr, params)
        check_number("w_std", self.w_std, minimum=0, open_low=True)
        check_number("b_std", self.b_std, minimum=0)
        if self.probe_split not in PROBE_SPLITS:
            raise choice_error("probe_split", self.probe_split, PROBE_SPLITS)
        if not isinstance(self.train, dict) or "lr" in self.train:
            raise ConfigError("set the learning rates with the study's 'lr' mapping (one per parameterization), "
                              f"not train.lr; got train={self.train!r}")
        if self.train.get("optimizer", "sgd") not in OPTIMIZERS:
            raise ConfigError(f"the width study trains with plain (S)GD, the setting of the lazy-training theory: "
                              f"optimizer must be one of {list(OPTIMIZERS)}, got {self.train.get('optimizer')!r}")
        seed = self.data.get("seed") if isinstance(self.data, dict) else None
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError("data.seed must be set to an integer (e.g. 0) so that every seed trains on the same "
                              f"data and the NTK probe set is the same for every run; got data={self.data!r}")
        # the data and train sections as a run would read them (unknown keys, bad values)
        RunConfig.from_dict({"data": self.data, "train": {**self.train, "lr": 1.0}})


def _check_lr(lr: Any, parameterizations: tuple[str, ...]) -> None:
    """``lr`` maps each of the parameterizations to a positive finite learning rate."""
    if not isinstance(lr, dict):
        raise ConfigError(f"lr must map each parameterization to its learning rate, e.g. "
                          f"{{standard: 0.05, ntk: 1.0}}; got {lr!r}")
    if unknown := sorted(set(lr) - set(PARAMETERIZATIONS)):
        raise ConfigError(f"lr has unknown parameterization(s) {unknown}; accepted: {list(PARAMETERIZATIONS)}")
    for p in parameterizations:
        check_number(f"lr[{p!r}] (the LR of every width in the {p} parameterization)", lr.get(p), minimum=0,
                     open_low=True)


def _run_config(config: WidthConfig, parameterization: str, width: int, seed: int):
    model = {"name": "mlp", "width": width, "depth": config.depth, "parameterization": parameterization,
             "w_std": config.w_std, "b_std": config.b_std}
    train = {**config.train, "lr": config.lr[parameterization]}
    return common.run_config(config.data, model, train, seed)


def grid(config: WidthConfig) -> list[RunSpec]:
    """parameterization x width x seed; every distinct model is built on the meta device first."""
    settings = {"probe_examples": config.probe_examples, "probe_split": config.probe_split, "probe_seed": 0}
    specs = [common.spec(NAME, _run_config(config, p, w, seed), **settings)
             for p in config.parameterizations for w in config.widths for seed in range(config.seeds)]
    common.validate_specs(specs)
    return specs


# --- the infinite-width limits; one run ----------------------------------------------------------


def standard_limit_kernel(x: Tensor, depth: int, w_std: float, b_std: float) -> Tensor:
    """lim_{width→∞} Θ_SP(x, x') / width for the ReLU ``MLP(..., parameterization='standard')``
    with one output: (n, n) float64.

    In the standard parameterization a layer of fan-in n contributes (x·x')(g·g') where the
    NTK parameterization's same layer contributes (w_std²/n)(x·x')(g·g') (the same function and
    cotangents g at init), so the layers of fan-in = width (hidden layers 2..depth and the
    readout) carry the O(width) part. With the recursion of :func:`analytic_ntk` (K the NNGP,
    E_l = E[relu(u) relu(v)], K̇_l = E[relu'(u) relu'(v)] at layer l):

        S_0 = 0,   S_l = w_std² K̇_l S_{l−1} + E_l  (l = 1..depth),   limit = S_depth.

    (depth = 1: S = E_1 = (K² − b_std²)/w_std², the readout's features h·h'/width.)
    """
    a = x.detach().to(torch.float64).reshape(len(x), -1)
    d = a.shape[1]
    w2, b2 = float(w_std) ** 2, float(b_std) ** 2
    k = w2 * (a @ a.T) / d + b2
    q = torch.diagonal(k).clone()
    s = torch.zeros_like(k)
    for _ in range(depth):
        norm = torch.sqrt(q[:, None] * q[None, :])
        cos = torch.where(norm > 0, k / torch.where(norm > 0, norm, 1.0), torch.zeros_like(k)).clamp(-1.0, 1.0)
        cos.fill_diagonal_(1.0)
        angle = torch.arccos(cos)
        expectation = norm / (2 * math.pi) * (torch.sin(angle) + (math.pi - angle) * cos)
        derivative = (math.pi - angle) / (2 * math.pi)
        s = w2 * derivative * s + expectation
        k = w2 * expectation + b2
        q = w2 * q / 2 + b2
    return s


def limit_kernel(x: Tensor, parameterization: str, depth: int, w_std: float, b_std: float) -> Tensor:
    """The scalar-output infinite-width kernel that Θ_0 / normalization(width) tends to: the
    analytic NTK (NTK parameterization, normalization 1) or :func:`standard_limit_kernel`
    (standard, normalization = width). (n, n) float64."""
    from overparam.measures import analytic_ntk

    if parameterization == "ntk":
        return analytic_ntk(x, depth=depth, w_std=w_std, b_std=b_std).ntk
    return standard_limit_kernel(x, depth, w_std, b_std)


def normalization(parameterization: str, width: int) -> float:
    """What the empirical NTK is divided by before it is compared with :func:`limit_kernel`."""
    return float(width) if parameterization == "standard" else 1.0


def _measure(spec: RunSpec, record: Any) -> tuple[dict[str, Any], dict[str, list[tuple[int, float]]]]:
    """Movement, NTK drift and the init NTK's distance from its infinite-width limit (module
    docstring). Cost: two structured NTKs of the probe set, O(n² k² Σ_l u_l) each in float64,
    plus a copy of the model in float64."""
    from overparam.config import RunConfig
    from overparam.measures import empirical_ntk, kernel_distance, relative_movement

    settings = spec.params
    options = RunConfig.from_dict(record.config).model.options
    parameterization, width, depth = options["parameterization"], options["width"], options["depth"]
    dataset = record.dataset
    init = common.initial_model(record)
    movement = relative_movement(init, record.model)

    split = settings["probe_split"]
    x_all, y_all = (dataset.x_test, dataset.y_test) if split == "test" else (dataset.x_train, dataset.y_train)
    x = common.probe(x_all, y_all, settings["probe_examples"], settings["probe_seed"])[0].to(torch.float64)
    k0 = empirical_ntk(init.to(torch.float64), x, method="structured")
    kt = empirical_ntk(copy.deepcopy(record.model).to(torch.float64), x, method="structured")
    outputs = 1 if k0.dim() == 2 else k0.shape[2]
    t0, tt = (k if k.dim() == 2 else torch.einsum("ijaa->ij", k) for k in (k0, kt))  # traced over outputs
    drift, drift_full = kernel_distance(t0, tt), kernel_distance(k0, kt)

    scale = normalization(parameterization, width)
    limit = limit_kernel(x, parameterization, depth, options["w_std"], options["b_std"]).to(k0.device)
    limit_full = limit if k0.dim() == 2 else limit[:, :, None, None] * torch.eye(outputs).to(limit)
    init_distance, final_distance = (kernel_distance(outputs * limit, t / scale) for t in (t0, tt))
    return {
        "movement": movement["global"],
        **{f"movement_{name}": v if math.isfinite(v) else None for name, v in movement["per_layer"].items()},
        "ntk_drift": drift["relative_frobenius"], "ntk_drift_cka": drift["one_minus_cka"],
        "ntk_drift_full": drift_full["relative_frobenius"],
        "ntk_init_distance": init_distance["relative_frobenius"],
        "ntk_init_distance_cka": init_distance["one_minus_cka"],
        "ntk_init_distance_full": kernel_distance(limit_full, k0 / scale)["relative_frobenius"],
        "ntk_final_distance": final_distance["relative_frobenius"],
        # mean diagonal entry of Θ_0 per output, unnormalized: grows ∝ width in the standard parameterization
        "ntk_scale": float(torch.diagonal(t0).mean()) / outputs,
        "ntk_normalization": scale, "probe_examples": len(x), "ntk_outputs": outputs, "input_dim": int(x[0].numel()),
    }, {}


# --- analysis ------------------------------------------------------------------------------------

QUANTITIES = (  # metric, table header
    ("movement", "movement ‖θ_T−θ_0‖/‖θ_0‖"), ("ntk_drift", "NTK drift ‖Θ_T−Θ_0‖/‖Θ_0‖"),
    ("ntk_drift_cka", "NTK drift 1−CKA"), ("ntk_init_distance", "‖Θ_0/c − Θ_∞‖/‖Θ_∞‖"),
    ("test_acc", "test acc"), ("train_acc", "train acc"))
SLOPED = ("movement", "ntk_drift", "ntk_drift_cka", "ntk_init_distance")  # metrics with a log-log slope vs width
LABELS = {"ntk": "NTK parameterization", "standard": "standard parameterization"}
TITLE = "width: lazy training and the NTK vs width"


@dataclass
class Arm:
    """One parameterization. Widths are hidden units per layer (``table.axis``, ascending);
    movement, drift and distances are dimensionless relative norms; per-width lists follow the axis."""

    parameterization: str
    table: SeedTable  # seed x width
    lr: float  # the learning rate of every width
    layers: list[str]  # parameter tensors; metric "movement_<name>" is the relative movement of each
    cis: dict[str, list[CI]]  # per QUANTITIES metric and movement_<layer>: mean over seeds at each width
    slopes: dict[str, CI]  # per SLOPED metric and movement_<layer>: log-log slope vs width, fitted per seed
    ratio: CI  # movement(narrowest width) / movement(widest), geometric mean of the per-seed ratios
    drift_step: CI  # NTK drift at the widest minus the narrowest width (paired), with .against: its largest rise


@dataclass
class WidthAnalysis:
    arms: list[Arm]  # the parameterizations with runs at >= 2 widths: NTK first, then standard
    n_train: Any  # training examples (every run has the same data)
    ntk_outputs: Any  # model outputs k the NTK is traced over
    probe_examples: Any  # examples the NTKs are computed on
    input_dim: Any  # input dimension d


def _width(run: Run) -> int:
    return run.config.model.options["width"]


def _positive(metric: str):
    """The metric of a run where it is > 0, else NaN (left out of the log-log fits: 1 − CKA of two
    nearly equal kernels can round to 0 or below)."""
    return lambda run: run.metric(metric) if run.metric(metric) > 0 else math.nan


def _arm(parameterization: str, runs: list[Run]) -> Arm:
    table = SeedTable(runs, _width)
    layers = list(dict.fromkeys(k[len("movement_"):] for r in runs for k in r.metrics if k.startswith("movement_")))
    per_layer = [f"movement_{name}" for name in layers]
    return Arm(parameterization, table, runs[0].config.train.lr, layers,
               {m: table.cis(m) for m in [m for m, _ in QUANTITIES] + per_layer},
               {m: table.slope(_positive(m)) for m in list(SLOPED) + per_layer},
               table.ratio("movement", table.axis[0], table.axis[-1]), table.trend("ntk_drift"))


def analyze(runs: list[Run], config: WidthConfig) -> WidthAnalysis | Missing:
    by_p = {p: rs for p, rs in group(runs, lambda r: r.config.model.options["parameterization"]).items()
            if len({_width(r) for r in rs}) >= 2}
    if not by_p:
        return Missing(TITLE, "No parameterization has finished runs at two or more widths yet.")
    arms = [_arm(p, by_p[p]) for p in ("ntk", "standard") if p in by_p]
    first = by_p[arms[0].parameterization][0].metrics
    return WidthAnalysis(arms, *(first.get(k, "?") for k in ("n_train", "ntk_outputs", "probe_examples", "input_dim")))


# The paper's and the theory's claims, fixed before any run (the same for both parameterizations).
PAPER_CLAIMS = {
    "movement_ratio": Published("11.3x (width 32 → 4096 = sqrt(128): the 1/sqrt(width) law)", common.PAPER,
                                above(1.0), 11.3, "x", RATIO),
    "movement_slope": Published("-0.5 (movement ∝ width^(-1/2))", common.PAPER, between(-0.6, -0.4), -0.5, "",
                                EXPONENT),
    "kernel_drift_falls": Published("the NTK stays at its initial value as width grows (lazy training; theory: drift "
                                    "O(width^(-1/2)) as a bound, ∝ 1/width in perturbation theory)",
                                    "Jacot et al. 2018; Lee et al. 2019", below(0.0)),
    "ntk_approaches_analytic": Published("Θ_0 → the deterministic infinite-width NTK (theory: distance ∝ "
                                         "width^(-1/2))", "Jacot et al. 2018 (Θ_0 fluctuates around Θ_∞ by "
                                         "O(width^(-1/2)))", below(0.0), -0.5, "", EXPONENT),
}


def claims(analysis: WidthAnalysis, config: WidthConfig) -> list[Claim]:
    return [c for a in analysis.arms for c in _arm_claims(a, config)]


def _prefix(parameterization: str) -> str:
    return "width." if parameterization == "ntk" else f"width.{parameterization}."


def _arm_claims(a: Arm, config: WidthConfig) -> list[Claim]:
    p, small, large = a.parameterization, a.table.axis[0], a.table.axis[-1]
    where = (f"in the {LABELS[p]} (ReLU MLP, {config.depth} hidden layer{'s' if config.depth > 1 else ''}, "
             f"SGD at lr {a.lr:g} for every width), widths {small} to {large} ({len(a.table)} widths)")
    sqrt_law = math.sqrt(large / small)
    fitted = "fitted per seed by least squares, mean over seeds"
    limit = "c = 1, Θ_∞ = the analytic NTK" if p == "ntk" else "c = width, Θ_∞ = the limit of Θ_SP/width"
    statements = {
        "movement_ratio": f"Relative parameter movement ‖θ_T − θ_0‖/‖θ_0‖ falls with width {where}: movement(width "
                          f"{small}) / movement(width {large}), the geometric mean over seeds of the per-seed ratio "
                          f"(a 1/sqrt(width) law gives sqrt({large}/{small}) = {sqrt_law:.3g}x).",
        "movement_slope": f"Relative parameter movement follows the 1/sqrt(width) law {where}: the log-log slope of "
                          f"movement vs width ({fitted}).",
        "kernel_drift_falls": f"The empirical NTK moves less during training the wider the network {where}: the "
                              f"kernel drift ‖Θ_T − Θ_0‖_F/‖Θ_0‖_F (on {config.probe_examples} {config.probe_split} "
                              f"examples) falls from width {small} to {large} (the change, paired by seed, < 0) "
                              f"without rising between neighbouring widths (simultaneous intervals per step).",
        "ntk_approaches_analytic": f"The empirical NTK at initialization approaches the infinite-width kernel {where}: "
                                   f"the log-log slope of ‖Θ_0/c − Θ_∞‖_F/‖Θ_∞‖_F vs width ({fitted}; {limit}) is < 0.",
    }
    cis = {"movement_ratio": a.ratio, "movement_slope": a.slopes["movement"], "kernel_drift_falls": a.drift_step,
           "ntk_approaches_analytic": a.slopes["ntk_init_distance"]}
    details = {"movement_ratio": {"sqrt_law_ratio": sqrt_law},
               "kernel_drift_falls": {"loglog_slope": list(a.slopes["ntk_drift"])}}  # kept as information
    return [Claim.judged(_prefix(p) + name, NAME, text, PAPER_CLAIMS[name], cis[name], details=details.get(name))
            for name, text in statements.items()]


# --- report --------------------------------------------------------------------------------------


def render(a: WidthAnalysis, claims: list[Claim], config: WidthConfig) -> list[Section]:
    parts = [_intro(a, config)]
    for arm in a.arms:
        parts += [f"**{LABELS[arm.parameterization]}**", _table(arm),
                  f"Movement of each parameter tensor ({LABELS[arm.parameterization]}; mean over seeds):",
                  _layer_table(arm)]
    parts += [_reading(arm, a, config) for arm in a.arms]
    figures = [
        ("width_movement", _panels(a.arms, "movement", r"relative movement $\|\theta_T-\theta_0\|\,/\,\|\theta_0\|$",
                                   "parameter movement vs width (dashed: slope −1/2)", layers=True)),
        ("width_kernel_drift", _panels(a.arms, "ntk_drift", r"$\|\Theta_T-\Theta_0\|_F\,/\,\|\Theta_0\|_F$",
                                       "NTK drift during training vs width (dashed: slope −1/2, dotted: −1)", -1.0)),
        ("width_ntk_vs_analytic", _panels(a.arms, "ntk_init_distance",
                                          r"$\|\Theta_0/c-\Theta_\infty\|_F\,/\,\|\Theta_\infty\|_F$",
                                          "distance of the initial NTK from its infinite-width limit (c = 1 in the "
                                          "NTK, c = width in the standard parameterization; dashed: slope −1/2)")),
        ("width_test_accuracy", _accuracy_figure(a.arms)),
    ]
    return [Section(TITLE, "\n\n".join(parts), figures, claims)]


def _intro(a: WidthAnalysis, config: WidthConfig) -> str:
    steps = config.train.get("steps")
    budget = f"{steps} steps" if steps is not None else f"{config.train.get('epochs', 10)} epochs"
    return (f"A ReLU MLP with {config.depth} hidden layer{'s' if config.depth > 1 else ''} (w_std = "
            f"{common.fmt(config.w_std, 4)}, b_std = {common.fmt(config.b_std, 3)}) trained with "
            f"{config.train.get('optimizer', 'sgd')} (momentum {config.train.get('momentum', 0.9)}, batch "
            f"{config.train.get('batch_size', 128)}, {budget}) on {config.data.get('name')} ({a.n_train} training "
            "examples, one dataset for all seeds), the same schedule and LR for every width of a parameterization: "
            + ", ".join(f"lr {arm.lr:g} ({LABELS[arm.parameterization]})" for arm in a.arms)
            + ". Per width: mean over seeds with a 95% t-interval. The NTK Θ is the empirical NTK summed over "
            f"the {a.ntk_outputs} outputs (Σ_a Θ_aa), computed in float64 on {a.probe_examples} fixed "
            f"{config.probe_split} examples. Θ_∞ is the infinite-width limit: the analytic NTK times the number of "
            "outputs in the NTK parameterization, and in the standard parameterization (whose NTK grows ∝ width) "
            "the limit of Θ/width, with c = width.")


def _table(a: Arm) -> str:
    return common.table(["width", "n"] + [h for _, h in QUANTITIES],
                        [[w, n] + [common.ci_text(a.cis[m][j], 3) for m, _ in QUANTITIES]
                         for j, (w, n) in enumerate(zip(a.table.axis, a.table.n_runs()))])


def _layer_table(a: Arm) -> str:
    header = ["parameter"] + [f"w={w}" for w in a.table.axis] + ["log-log slope [95% t over per-seed slopes]"]
    body = [[f"`{name}`"] + [common.fmt(ci[0], 3) for ci in a.cis[f"movement_{name}"]]
            + [common.ci_text(a.slopes[f"movement_{name}"], 3)] for name in a.layers]
    return common.table(header, body)


def _reading(a: Arm, analysis: WidthAnalysis, config: WidthConfig) -> str:
    drift = a.table.mean("ntk_drift")
    lowest = a.table.axis[int(np.nanargmin(drift))] if np.isfinite(drift).any() else "n/a"
    text = (f"**{LABELS[a.parameterization]}** (lr {a.lr:g}). The NTK drift is least at width {lowest}; its "
            f"log-log slope is {common.ci_text(a.slopes['ntk_drift'], 3)} (that of 1 − CKA "
            f"{common.ci_text(a.slopes['ntk_drift_cka'], 3)}): the kernel regime bounds the drift by width^(−1/2), "
            "perturbation theory gives width^(−1).")
    if a.parameterization == "standard":
        scale = a.table.mean("ntk_scale")  # the init NTK's mean diagonal entry per output, unnormalized
        text += (f" In this parameterization the NTK itself grows with width (mean diagonal entry per output "
                 f"{common.fmt(scale[0], 3)} at width {a.table.axis[0]}, {common.fmt(scale[-1], 3)} at width "
                 f"{a.table.axis[-1]}), so at one fixed LR the effective step grows with width, which pushes the wide "
                 "networks out of the kernel regime (the readout's movement and the NTK drift in the tables show how "
                 "far). The distance to the limit is measured after dividing Θ_0 by the width; the first layer's "
                 f"term, whose fan-in is the input dimension d = {analysis.input_dim}, is a fraction O(d/width) of it, "
                 "so where the width is not large against d the distance falls faster than width^(−1/2).")
    if config.depth >= 2:
        text += (" With two or more hidden layers the width × width matrices move ∝ 1/width in the NTK "
                 "parameterization (their change is O(1) against an O(width) norm), so the global exponent tends "
                 "to −1; the first and last layers follow −1/2 (per-parameter table).")
    return text


def _panels(arms: list[Arm], metric: str, ylabel: str, title: str, second_slope: float | None = None,
            layers: bool = False):
    """One log-log panel per parameterization: the metric vs width with 95% CIs and n, the dashed
    −1/2 reference line through the narrowest width, and with ``layers`` each weight matrix's movement."""
    from overparam.report.figures import errorbar_cis, loglog_with_reference, new_figure

    fig, axes = new_figure(1, len(arms), width=5.6 * len(arms), height=4.4, squeeze=False)
    for ax, a in zip(axes[0], arms):
        widths, c, ns = a.table.axis, a.cis[metric], a.table.n_runs()
        loglog_with_reference(ax, widths, *zip(*c), slope=-0.5, label="all parameters" if layers else "measured",
                              n=ns, color="black")
        if second_slope is not None and c[0][0] > 0:
            grid = np.geomspace(min(widths), max(widths), 50)
            ax.plot(grid, c[0][0] * (grid / widths[0]) ** second_slope, linestyle=":", color="0.3", linewidth=1.2,
                    label=f"reference slope {second_slope:g}", zorder=1)
            ax.legend(fontsize=9, frameon=False)
        weights = [name for name in a.layers if name.endswith("weight")] if layers else []
        for name, colour in zip(weights, ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")):
            errorbar_cis(ax, widths, a.cis[f"movement_{name}"], name, ns, color=colour, marker="s", linestyle="--",
                         legend=False)
        if weights:
            ax.legend(fontsize=8, frameon=False)
        ax.set_xlabel("width (hidden units per layer)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{LABELS[a.parameterization]}, lr {a.lr:g}; fitted slope {common.ci_text(a.slopes[metric], 2)}",
                     fontsize=9)
    fig.suptitle(title, fontsize=11)
    return fig


def _accuracy_figure(arms: list[Arm]):
    from overparam.report.figures import errorbar_cis, log2_axis, new_figure

    fig, ax = new_figure()
    for a, colour in zip(arms, ("tab:blue", "tab:red")):
        errorbar_cis(ax, a.table.axis, a.cis["test_acc"], f"{LABELS[a.parameterization]}, lr {a.lr:g}",
                     a.table.n_runs(), color=colour)
    log2_axis(ax, sorted({w for a in arms for w in a.table.axis}))
    ax.set_xlabel("width (hidden units per layer)")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy vs width")
    return fig


STUDY = Study(
    name=NAME,
    description="lazy training vs width: parameter movement, NTK drift and distance to the infinite-width NTK "
                "(standard and NTK parameterization)",
    config_type=WidthConfig,
    grid=grid,
    run_one=common.single(_measure),
    run_batch=common.batched(_measure),
    batch_key=common.batch_key,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 100, "seed": 0},
                 "train": {"optimizer": "sgd", "momentum": 0.0, "batch_size": 50, "epochs": 1},
                 "widths": [16, 64, 256], "probe_examples": 16, "seeds": 3},
        "quick": {"data": {"name": "mnist1d", "n_train": 1000, "seed": 0},
                  "train": {"optimizer": "sgd", "momentum": 0.0, "batch_size": 25, "epochs": 10, "eval_every": 100},
                  "lr": {"standard": 0.05, "ntk": 1.0},
                  "widths": [32, 64, 128, 256, 512, 1024, 2048, 4096], "probe_examples": 128, "seeds": 5},
        "mnist": {"data": {"name": "mnist", "n_train": 10000, "n_test": 2000, "seed": 0, "standardize": True},
                  "train": {"optimizer": "sgd", "momentum": 0.0, "batch_size": 100, "epochs": 5},
                  "lr": {"standard": 0.05, "ntk": 1.0},
                  "widths": [32, 64, 128, 256, 512, 1024, 2048, 4096], "probe_examples": 128, "seeds": 5},
        "paper": {"data": {"name": "mnist", "seed": 0, "standardize": True},
                  "train": {"optimizer": "sgd", "momentum": 0.0, "batch_size": 128, "epochs": 20},
                  "lr": {"standard": 0.05, "ntk": 1.0},
                  "widths": [32, 64, 128, 256, 512, 1024, 2048, 4096], "probe_examples": 256, "seeds": 5},
    },
)
