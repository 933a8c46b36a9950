"""``kernel_regime``: lazy vs rich training — how close a trained network is to kernel regression
with its own initial NTK, as width and the init scale α grow.

After Jacot et al. (2018), Lee et al. (2019, "Wide neural networks of any depth evolve as linear
models") and Chizat, Oyallon & Bach (2019, "On lazy training"). One MLP of ``depth`` hidden
layers (``activation``, ReLU by default) in the NTK parameterization
(:class:`overparam.models.mlp.MLP`, Neural Tangents' convention, ``w_std``, ``b_std``), trained by
full-batch gradient descent on the MSE to one-hot targets (torch's ``mse_loss``, a mean over the
n·k entries) for a fixed number of steps, in float64 (in float32 the rounding of the tiny
large-α updates flips ReLU activation patterns, which shows up as spurious kernel drift), in two
sweeps that share one run where they cross: widths w (quick 16..2048) at α = ``width_sweep_alpha``,
and init scales α (quick 0.1..100) at width ``alpha_sweep_width``.

The α formulation (Chizat et al.'s centered model, with their loss scaling): the network is

    f(x; θ) = α (h(x; θ) − h(x; θ_0)),

h the MLP (its ``alpha`` option multiplies the output by α; the centering subtracts a frozen copy
of the model at initialization, :class:`Centered`), so f_0 = 0 for every α and width, and it is
trained with learning rate η/α², i.e. GD on L(α h)/α² at rate η. The NTK of f is α² Θ_h, so the
function-space step at initialization, (η/α²)·α² Θ_h, is the same for every α: the linearized
model, hence the kernel-regression prediction, does not depend on α, while the parameters move
O(1/α) to produce it. Large α is lazy (the network stays at its linearization), small α rich.
Every width trains with the same η (the NTK parameterization's kernel is O(1) in width).

The reference (:mod:`overparam.references.kernel`): the linearized network trained by the same
GD for the same T steps from the same f_0 = 0 predicts

    f_T^lin(x) = Θ_0(x, X) K^{-1} (I − (I − c K)^T) Y,     K = Θ_0(X, X) (n k × n k), c = 2 lr/(n k),

with Θ_0 the full empirical NTK at initialization (all k × k output pairs, float64), solved
exactly by one eigendecomposition of K. Θ_0(x, X) β is applied without forming the test kernel:
Δθ = J(X)ᵀ β by one vector-Jacobian product and J(x) Δθ by one Jacobian-vector product
(:func:`ntk_apply`), Δθ being the linearized model's own parameter displacement.

Per run: relative movement ‖θ_T − θ_0‖/‖θ_0‖ (and the linearized model's ‖Δθ‖/‖θ_0‖); kernel
drift ‖Θ_T − Θ_0‖_F/‖Θ_0‖_F of the full NTK on the training set (the kernel that drives the
dynamics; ``ntk_drift_traced`` for its trace over outputs); the distance of the trained network
from its linearization on the test set, ‖f_T − f_T^lin‖_F/‖f_T^lin‖_F, and the fraction of test
examples whose argmax agrees; test and train accuracy of the network, of f_T^lin, and (ReLU
only) of the same GD on the infinite-width NTK (analytic, α² Θ_∞ ⊗ I_k) for reference.

Theory: movement falls as w^(−1/2) in width (first and last layer; depth 1) and exactly as 1/α
in α. The distance to the linearization and the kernel drift are bounded by O(1/sqrt(w)) in width
(Lee et al.) and are O(1/α) in α for a smooth activation (Chizat et al., Thm 2.3). ReLU is not
smooth: a pre-activation that moves by δ ∝ 1/α changes sign with probability ∝ δ, and each such
flip leaves a linearization error O(δ) (ReLU is convex, the readout weights have random signs),
so the root-mean-square error and the kernel change are dominated by these rare flips and scale
as sqrt(δ)·δ·α ∝ α^(−1/2) (checked: tanh gives slopes −1, ReLU −1/2).

Claims (:data:`PAPER_CLAIMS`, stated in :func:`_claims`), per sweep: the distance falls and is
small at the largest value; the slopes of movement and drift; feature learning ahead (rich − lazy).

Cost per run: T GD steps; two full training-set NTKs, O(n² k² Σ_l u_l) each in float64; one
eigendecomposition of the (n k × n k) kernel, ≈ 9 (n k)³ flops (the dominant term: n k = 2000
takes ~1–2 s on one core); one vjp and one jvp. Memory O((n k)²) float64.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from overparam.analysis import Missing, Run, SeedTable, binomial_se, quiet
from overparam.errors import ConfigError, check_number, check_numbers, check_positive_int, choice_error
from overparam.models import ACTIVATIONS
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import DIFFERENCE_PP, EXPONENT, Published, above, below, between
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study

NAME = "kernel_regime"
DISTANCE_SMALL = 0.1  # "close to kernel regression": relative L2 distance of test outputs below this
MAX_KERNEL_ROWS = 20000  # n_train · classes: the kernel (and its eigenvectors) take 8 N² bytes each
# log-log slopes of the theory (module docstring); RELU_ALPHA: of distance and drift in α for ReLU
THEORY = {"width": -0.5, "alpha": -1.0}
RELU_ALPHA = -0.5


@dataclass(frozen=True)
class KernelRegimeConfig:
    data: dict[str, Any] = field(default_factory=lambda: {"name": "mnist1d", "n_train": 200, "n_test": 500, "seed": 0})
    widths: tuple[int, ...] = (16, 64, 256, 1024, 2048)
    alphas: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    width_sweep_alpha: float = 1.0  # α of every run of the width sweep
    alpha_sweep_width: int = 256  # width of every run of the α sweep
    depth: int = 1  # hidden layers
    activation: str = "relu"
    w_std: float = math.sqrt(2.0)
    b_std: float = 0.1
    lr: float = 2.0  # η: the learning rate at α = 1; a run at α trains with η / α²
    steps: int = 500  # full-batch GD steps
    eval_every: int = 50
    seeds: int = 5

    def __post_init__(self) -> None:
        from overparam.config import RunConfig

        for name in ("seeds", "depth", "steps", "eval_every", "alpha_sweep_width"):
            check_positive_int(name, getattr(self, name))
        if self.activation not in ACTIVATIONS:
            raise choice_error("activation", self.activation, ACTIVATIONS)
        check_numbers("widths", self.widths, at_least=2, integer=True, minimum=1)
        check_numbers("alphas", self.alphas, at_least=2, minimum=0, open_low=True)
        for name in ("width_sweep_alpha", "lr", "w_std"):
            check_number(name, getattr(self, name), minimum=0, open_low=True)
        check_number("b_std", self.b_std, minimum=0)
        data = self.data if isinstance(self.data, dict) else {}
        for key, why in (("seed", " (e.g. 0) so that every seed trains on the same data"),
                         ("n_train", ": the kernel regression solves an (n_train · classes)² system")):
            if not isinstance(data.get(key), int) or isinstance(data.get(key), bool):
                raise ConfigError(f"data.{key} must be set to an integer{why}; got data={self.data!r}")
        RunConfig.from_dict({"data": self.data})  # unknown keys, bad values


def _run_config(config: KernelRegimeConfig, width: int, alpha: float, seed: int):
    model = {"name": "mlp", "width": width, "depth": config.depth, "parameterization": "ntk",
             "activation": config.activation, "w_std": config.w_std, "b_std": config.b_std, "alpha": alpha}
    train = {"optimizer": "gd", "momentum": 0.0, "loss": "mse", "lr": config.lr / alpha ** 2, "steps": config.steps,
             "eval_every": config.eval_every}
    return common.run_config(config.data, model, train, seed)


def _points(config: KernelRegimeConfig) -> list[tuple[int, float]]:
    """(width, α) of both sweeps, the crossing point once."""
    points = [(w, float(config.width_sweep_alpha)) for w in config.widths]
    return points + [p for p in ((config.alpha_sweep_width, float(a)) for a in config.alphas) if p not in points]


def grid(config: KernelRegimeConfig) -> list[RunSpec]:
    """(width, α) points of the two sweeps × seeds; the data must be a classification set of
    manageable kernel size, and every distinct model is built on the meta device first."""
    from overparam.run import load_data

    specs = [common.spec(NAME, _run_config(config, w, a, seed), base_lr=config.lr)
             for w, a in _points(config) for seed in range(config.seeds)]
    dataset = load_data(_run_config(config, *_points(config)[0], 0), torch.device("cpu"), quiet=True)
    if dataset.num_classes is None:
        raise ConfigError(f"the kernel_regime study needs a classification dataset (argmax agreement, accuracy); "
                          f"{config.data.get('name')!r} is a regression set")
    if (rows := dataset.n_train * dataset.num_classes) > MAX_KERNEL_ROWS:
        raise ConfigError(f"data.n_train = {dataset.n_train} with {dataset.num_classes} classes gives an NTK of "
                          f"{rows}² entries; at most {MAX_KERNEL_ROWS} rows (n_train · classes) are accepted")
    common.validate_specs(specs)
    return specs


# --- the model, the linearized predictor, one run -----------------------------------------------


class Centered(nn.Module):
    """f(x) = g(x; θ) − g(x; θ_0): ``model`` minus a frozen copy of itself at construction
    (Chizat et al.'s centering), so f_0 = 0 while the NTK of f is that of g. Input and output
    as ``model``'s; the copy has no trainable parameters and costs one forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.initial = copy.deepcopy(model).requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            offset = self.initial(x)
        return self.model(x) - offset


def ntk_apply(model: nn.Module, x_train: Tensor, coefficients: Tensor, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """Θ(x, X) β = J(x) J(X)ᵀ β at ``model``'s current parameters, without forming the kernel.

    ``coefficients`` β: (n, k) (rows of X, model outputs). Returns (Θ(x, X) β (m, k), Δθ = J(X)ᵀ β
    by parameter name): one vector-Jacobian product over X and one Jacobian-vector product over
    x, in the model's dtype. Cost ≈ one forward and one backward pass over X plus a forward-mode
    pass over x."""
    from torch.func import functional_call, jvp, vjp

    params = {name: p.detach() for name, p in model.named_parameters()}
    _, pullback = vjp(lambda p: functional_call(model, p, (x_train,)), params)
    (delta,) = pullback(coefficients.to(x_train.dtype))
    _, out = jvp(lambda p: functional_call(model, p, (x,)), (params,), (delta,))
    return out, delta


def _relative(a: Tensor, b: Tensor) -> float:
    """‖a − b‖_F / ‖b‖_F."""
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def _accuracy(outputs: Tensor, labels: Tensor) -> float:
    """The fraction of rows whose argmax is ``labels``."""
    return float((outputs.argmax(1) == labels).to(torch.float64).mean())


def _measure(net: Centered, dataset: Any, lr: float, steps: int) -> dict[str, Any]:
    """The run's measures (module docstring), all in float64."""
    from overparam.measures import analytic_ntk, empirical_ntk, kernel_distance, relative_movement
    from overparam.references.kernel import dual_coefficients, kernel_predict

    init = copy.deepcopy(net.initial).double().requires_grad_(True)  # θ_0, trainable for the NTK
    final = copy.deepcopy(net.model).double()
    x, x_test = dataset.x_train.double(), dataset.x_test.double()
    n, k = len(x), dataset.num_classes
    targets = nn.functional.one_hot(dataset.y_train, k).double()
    movement = relative_movement(init, final)
    k0 = empirical_ntk(init, x, method="structured")  # (n, n, k, k)
    kt = empirical_ntk(final, x, method="structured")
    drift = kernel_distance(k0, kt)
    drift_traced = kernel_distance(torch.einsum("ijaa->ij", k0), torch.einsum("ijaa->ij", kt))

    step_size = 2 * lr / (n * k)  # c for torch's mean mse over n·k entries
    linear = dual_coefficients(k0, targets, step_size=step_size, steps=steps)  # f_0 = 0: residual = targets
    lin_test, delta = ntk_apply(init, x, linear.coefficients, x_test)
    lin_train = linear.fitted
    with torch.no_grad():
        net_test, net_train = final(x_test) - init(x_test), final(x) - init(x)
    theta0 = math.sqrt(sum(float((p.detach() ** 2).sum()) for p in init.parameters()))
    lin_movement = math.sqrt(sum(float((d ** 2).sum()) for d in delta.values())) / theta0

    y, y_test = dataset.y_train, dataset.y_test
    metrics = {
        "movement": movement["global"], "lin_movement": lin_movement,
        "ntk_drift": drift["relative_frobenius"], "ntk_drift_cka": drift["one_minus_cka"],
        "ntk_drift_traced": drift_traced["relative_frobenius"],
        "lin_distance": _relative(net_test, lin_test), "lin_distance_train": _relative(net_train, lin_train),
        "argmax_agreement": _accuracy(net_test, lin_test.argmax(1)),
        "net_test_acc": _accuracy(net_test, y_test), "net_train_acc": _accuracy(net_train, y),
        "kernel_test_acc": _accuracy(lin_test, y_test), "kernel_train_acc": _accuracy(lin_train, y),
        "kernel_train_loss": float(((lin_train - targets) ** 2).mean()),
        "ntk_scale": float(torch.einsum("iiaa->", k0)) / (n * k),  # mean diagonal entry of Θ_0
        "kernel_rows": n * k, "step_size": step_size,
    }
    metrics.update({f"movement_{name}": value for name, value in movement["per_layer"].items()
                    if math.isfinite(value)})
    if isinstance(init.activation, nn.ReLU):  # the same GD on the infinite-width kernel α² Θ_∞ ⊗ I_k
        options = {"depth": len(init.hidden), "w_std": init.readout.w_std, "b_std": init.readout.b_std}
        scale = float(init.alpha) ** 2  # f's NTK is α² Θ_h
        limit = dual_coefficients(scale * analytic_ntk(x, **options).ntk, targets, step_size=step_size, steps=steps)
        limit_test = kernel_predict(scale * analytic_ntk(x_test, x, **options).ntk, limit.coefficients)
        metrics["infinite_kernel_test_acc"] = _accuracy(limit_test, y_test)
    return metrics


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    """Train the centered network by full-batch GD, then measure it against its linearization."""
    from overparam import models
    from overparam.device import resolve_device
    from overparam.provenance import provenance
    from overparam.run import build_model, load_data
    from overparam.train import fit

    started = time.perf_counter()
    config = spec.config
    target = resolve_device(device)
    dataset = load_data(config, target, torch.float64, quiet=True)  # the model is built in the data's dtype
    net = Centered(build_model(config, dataset, target))
    result = fit(net, dataset, config.train, seed=config.seed)
    metrics: dict[str, Any] = dict(result.metrics)
    metrics.update(steps=result.steps, lr=result.lr, alpha=config.model.options["alpha"],
                   width=config.model.options["width"], num_parameters=models.count_parameters(net),
                   n_train=dataset.n_train, n_test=dataset.n_test, divergence=result.divergence,
                   train_time_s=result.wall_time_s)
    if result.status == "done":
        measured = time.perf_counter()
        metrics.update(_measure(net, dataset, result.lr, result.steps))
        metrics["measure_time_s"] = time.perf_counter() - measured
    return RunOutcome(result.status, metrics, result.curves, time.perf_counter() - started,
                      {**provenance(target), "data": dataset.info})


# --- analysis ------------------------------------------------------------------------------------

TITLE = "kernel_regime: lazy vs rich training, distance to kernel regression with the initial NTK"
QUANTITIES = (  # metric, table header
    ("movement", "movement ‖θ_T−θ_0‖/‖θ_0‖"), ("ntk_drift", "NTK drift ‖Θ_T−Θ_0‖/‖Θ_0‖"),
    ("lin_distance", "‖f_T − f_lin‖/‖f_lin‖ (test)"), ("argmax_agreement", "argmax agreement"),
    ("net_test_acc", "net test acc"), ("kernel_test_acc", "kernel test acc"),
    ("net_train_acc", "net train acc"), ("kernel_train_acc", "kernel train acc"))
SLOPES = ("movement", "ntk_drift", "lin_distance")


LEE, CHIZAT = "Lee et al. 2019", "Chizat et al. 2019"
_TENDS, _STAYS = "the network tends to its linearization; distance ", "the NTK stays at its initial value; drift "
_RICH = "+5 to +8 percentage points on CIFAR-10 (rich vs lazy, Chizat et al. 2019)"
# The sources' claims, fixed before any run, per sweep. Drift: the bound O(·^(−1/2)) (module
# docstring) is judged as a slope below −0.4 (−1/2 with the exponent tolerance 0.1).
PAPER_CLAIMS = {
    "width_distance_falls": Published(_TENDS + "O(width^(−1/2)) (a bound)", LEE, below(0.0)),
    "alpha_distance_falls": Published(_TENDS + "O(1/α) (smooth models; ReLU: α^(−1/2))", CHIZAT, below(0.0)),
    "width_distance_small": Published("wide networks are their linearization", LEE, below(DISTANCE_SMALL)),
    "alpha_distance_small": Published("large-α networks are their linearization", CHIZAT, below(DISTANCE_SMALL)),
    "width_movement_slope": Published("movement ∝ width^(−1/2)", LEE, between(-0.6, -0.4), -0.5, "", EXPONENT),
    "alpha_movement_slope": Published("movement ∝ 1/α", CHIZAT, between(-1.1, -0.9), -1.0, "", EXPONENT),
    "width_drift_slope": Published(_STAYS + "O(width^(−1/2)) (a bound)", LEE, below(-0.4)),
    "alpha_drift_slope": Published(_STAYS + "O(1/α) (smooth models; ReLU: α^(−1/2))", CHIZAT, below(-0.4)),
    "width_feature_learning_ahead": Published(_RICH, CHIZAT, above(0.0), 6.5, " pp", DIFFERENCE_PP),
    "alpha_feature_learning_ahead": Published(_RICH, CHIZAT, above(0.0), 6.5, " pp", DIFFERENCE_PP),
}


@dataclass
class Sweep:
    """One sweep, S seeds × A values of the swept setting: ``key`` is 'width' or 'alpha'."""

    key: str
    fixed: float  # the other setting (α of the width sweep, width of the α sweep)
    table: SeedTable  # seed x swept value (increasing)
    cis: dict[str, list[CI]]  # per QUANTITIES metric: the mean over seeds at each value (A,)
    slopes: dict[str, CI]  # per SLOPES metric: log-log slope vs the swept value, per-seed fits, t over seeds
    step: CI  # lin_distance at the largest value − at the smallest (paired); .against: largest rise between neighbours
    distance: CI  # lin_distance at the largest value, mean over seeds
    gap: CI  # net test accuracy at the smallest value − at the largest, percentage points, paired by seed
    gap_se: float  # the binomial standard error of that difference on the test set, pp
    test_examples: int  # the test set's size

    @property
    def symbol(self) -> str:
        return "width" if self.key == "width" else "α"


@dataclass
class KernelRegimeAnalysis:
    """Both sweeps, and what every run shares."""

    sweeps: list[Sweep]  # the width sweep, then the α sweep (those with runs at two or more values)
    n_train: int  # training examples
    n_test: int  # test examples
    kernel_rows: int  # n_train · classes: the side of the full NTK matrix
    infinite: float  # test accuracy of the same GD on the infinite-width NTK, mean over seeds (NaN: not ReLU)


def _positive(metric: str):
    """The metric where it is > 0, else NaN (a log-log slope needs positive values)."""
    return lambda run: run.metric(metric) if run.metric(metric) > 0 else math.nan


def _sweep(key: str, fixed: float, runs: list[Run]) -> Sweep | None:
    table = SeedTable(runs, lambda run: run.config.model.options[key])
    if len(table) < 2:
        return None
    small, large = table.axis[0], table.axis[-1]
    accuracy, n_test = table.mean("net_test_acc"), int(np.nanmax(table["n_test"]))
    return Sweep(key, fixed, table, {m: table.cis(m) for m, _ in QUANTITIES},
                 {m: table.slope(_positive(m)) for m in SLOPES}, table.trend("lin_distance"),
                 table.ci("lin_distance", large), table.difference("net_test_acc", small, large, scale=100),
                 binomial_se(accuracy[0], accuracy[-1], n_test), n_test)


def analyze(runs: list[Run], config: KernelRegimeConfig) -> KernelRegimeAnalysis | Missing:
    runs = [r for r in runs if "lin_distance" in r.metrics]
    width_runs = [r for r in runs if math.isclose(r.config.model.options["alpha"], config.width_sweep_alpha)]
    alpha_runs = [r for r in runs if r.config.model.options["width"] == config.alpha_sweep_width]
    sweeps = [s for s in (_sweep("width", config.width_sweep_alpha, width_runs),
                          _sweep("alpha", config.alpha_sweep_width, alpha_runs)) if s is not None]
    if not sweeps:
        return Missing(TITLE, "Neither sweep has finished runs at two or more values yet.")
    infinite = {r.seed: r.metric("infinite_kernel_test_acc") for r in runs}  # depends on the data only: one per seed
    first = runs[0].metrics
    with quiet():
        return KernelRegimeAnalysis(sweeps, first["n_train"], first["n_test"], first["kernel_rows"],
                                    float(np.nanmean(list(infinite.values()))))


def claims(a: KernelRegimeAnalysis, config: KernelRegimeConfig) -> list[Claim]:
    return [c for s in a.sweeps for c in _claims(s, config)]


def _smooth_theory(s: Sweep, config: KernelRegimeConfig) -> float:
    """The theory slope of distance and drift: −1/2 in width; in α −1, or −1/2 for ReLU."""
    return RELU_ALPHA if s.key == "alpha" and config.activation == "relu" else THEORY[s.key]


def _where(s: Sweep, config: KernelRegimeConfig) -> str:
    net = (f"NTK-parameterized {config.activation} MLP, {config.depth} hidden layer{'s' if config.depth > 1 else ''}, "
           f"full-batch GD, {config.steps} steps")
    span = f"{s.table.axis[0]:g} to {s.table.axis[-1]:g}"
    if s.key == "width":
        return f"({net}, α = {common.fmt(s.fixed, 3)}, widths {span})"
    return f"({net}, centered model α(h(θ) − h(θ_0)) at lr η/α², width {s.fixed:g}, α from {span})"


def _claims(s: Sweep, config: KernelRegimeConfig) -> list[Claim]:
    where, key = _where(s, config), s.key
    rich, lazy = ("narrowest", "widest") if key == "width" else ("smallest-α", "largest-α")
    values = ", ".join(f"{v:g}" for v in s.table.axis)

    def judged(name: str, statement: str, ci: CI, **extra: Any) -> Claim:
        return Claim.judged(f"{NAME}.{key}_{name}", NAME, statement, PAPER_CLAIMS[f"{key}_{name}"], ci, **extra)

    return [
        judged("distance_falls", f"The trained network approaches kernel regression with its initial NTK as "
               f"{s.symbol} grows {where}: the relative test-output distance ‖f_T − f_lin‖/‖f_lin‖ falls from the "
               f"smallest to the largest {s.symbol} ({values}; the change, paired by seed, < 0) without rising "
               f"between neighbouring values.",
               s.step),
        judged("distance_small", f"At the largest {s.symbol} ({s.table.axis[-1]:g}) the network's test outputs are "
               f"within relative L2 distance {DISTANCE_SMALL:g} of kernel regression with its initial NTK {where}: "
               f"mean over seeds.", s.distance),
        judged("movement_slope", f"Relative parameter movement ‖θ_T − θ_0‖/‖θ_0‖ falls as {s.symbol}^"
               f"({THEORY[key]:g}) {where}: log-log slope vs {s.symbol} (per-seed fits, t over seeds).",
               s.slopes["movement"]),
        judged("drift_slope", f"The NTK moves less during training as {s.symbol} grows, at least as fast as the "
               f"bound {s.symbol}^(−1/2) {where}: log-log slope of the full-kernel drift ‖Θ_T − Θ_0‖_F/‖Θ_0‖_F "
               f"(training set) vs {s.symbol} (per-seed fits, t over seeds) < −0.4 (theory "
               f"{_smooth_theory(s, config):g}).", s.slopes["ntk_drift"]),
        judged("feature_learning_ahead", f"Feature learning is ahead: test accuracy of the {rich} (rich) network "
               f"minus that of the {lazy} (lazy) one, in percentage points, paired by seed, > 0 {where}. The "
               f"source's number is on CIFAR-10; ours on {config.data.get('name')}.", s.gap,
               test_examples=s.test_examples, binomial_se=s.gap_se),
    ]


def _table(s: Sweep) -> str:
    return common.table([s.symbol, "n"] + [h for _, h in QUANTITIES],
                        [[f"{v:g}", n] + [common.ci_text(s.cis[m][j], 3) for m, _ in QUANTITIES]
                         for j, (v, n) in enumerate(zip(s.table.axis, s.table.n_runs()))])


def _reading(s: Sweep, config: KernelRegimeConfig) -> str:
    def end(m: str) -> str:
        """The log-log slope between the two largest values, from the means."""
        (x1, x2), (y1, y2) = s.table.axis[-2:], (c[0] for c in s.cis[m][-2:])
        return f"{math.log(y2 / y1) / math.log(x2 / x1):.2f}" if y1 > 0 and y2 > 0 else "n/a"

    fit = common.ci_text(s.slopes["lin_distance"], 3)
    text = (f"**{s.key} sweep.** The distance to kernel regression has log-log slope {fit} (per-seed fits, t over "
            f"seeds; theory {_smooth_theory(s, config):g}). The fits span the rich-to-lazy transition; between "
            f"the two largest values ({s.table.axis[-2]:g} and {s.table.axis[-1]:g}) the slopes are {end('movement')} "
            f"(movement), {end('ntk_drift')} (drift) and {end('lin_distance')} (distance).")
    if s.key == "width":
        text += (" The width comparison confounds feature learning with capacity: the narrow network is both less "
                 "lazy and a much smaller model (its initial NTK has rank at most its number of parameters).")
    else:
        text += (" The kernel-regression prediction is the same at every α (NTK × α², learning rate × 1/α²), so its "
                 "accuracy differs only by seed; at small α the nonlinear dynamics can also fit slower or differently "
                 "within the fixed step budget (compare the train accuracies).")
    if s.key == "alpha" and config.activation == "relu":
        text += (" For ReLU the distance and drift are expected to fall as α^(−1/2), not 1/α: they come from the "
                 "rare activation-sign flips, whose number is ∝ the movement (module docstring).")
    return text


def _intro(a: KernelRegimeAnalysis, config: KernelRegimeConfig) -> str:
    text = (f"An MLP ({config.activation}, {config.depth} hidden layer{'s' if config.depth > 1 else ''}) in the NTK "
            f"parameterization (w_std = {common.fmt(config.w_std, 4)}, b_std = {common.fmt(config.b_std, 3)}), "
            f"centered as f = α(h(θ) − h(θ_0)) so that f_0 = 0, trained in float64 by full-batch GD on the MSE to "
            f"one-hot targets for {config.steps} steps at lr η/α² with η = {common.fmt(config.lr, 3)}, on "
            f"{config.data.get('name')} ({a.n_train} training and {a.n_test} test examples, one dataset for all "
            "seeds). f_lin is the linearized network trained by the same GD for the same steps, solved exactly: "
            f"Θ_0(x, X) K⁻¹(I − (I − cK)^T) Y with K the full {a.kernel_rows} × {a.kernel_rows} initial NTK (all "
            "output pairs, float64 eigendecomposition) and c = 2·lr/(n·k). Per value: mean over seeds with a 95% "
            "t-interval.")
    if math.isfinite(a.infinite):
        text += f" The same GD on the infinite-width NTK (analytic) reaches test accuracy {common.fmt(a.infinite, 3)}."
    return text


def render(a: KernelRegimeAnalysis, claims: list[Claim], config: KernelRegimeConfig) -> list[Section]:
    parts = [_intro(a, config)]
    for s in a.sweeps:
        parts += [f"**{s.key} sweep** ({'α' if s.key == 'width' else 'width'} = {common.fmt(s.fixed, 4)})", _table(s)]
    parts += [_reading(s, config) for s in a.sweeps]
    figures = [(f"{NAME}_movement_drift", _movement_figure(a.sweeps, config)),
               (f"{NAME}_distance", _distance_figure(a.sweeps, config)),
               (f"{NAME}_accuracy", _accuracy_figure(a.sweeps, a.infinite))]
    return [Section(TITLE, "\n\n".join(parts), figures, claims)]


# --- figures -------------------------------------------------------------------------------------


def _xlabel(s: Sweep) -> str:
    if s.key == "width":
        return f"width (hidden units; α = {common.fmt(s.fixed, 3)})"
    return f"init scale α (width {s.fixed:g}; lr η/α²)"


def _loglog(ax, s: Sweep, metric: str, second: float | None, label: str, color: str, ylabel: str,
            title: str) -> None:
    """The metric vs the sweep value on log-log axes with CIs and n, a dashed line of the theory
    slope and, if ``second`` differs from it, a dotted one of ``second``, both through the first
    point; ``title`` is followed by the fitted slope."""
    from overparam.report.figures import loglog_with_reference

    xs, c = s.table.axis, s.cis[metric]
    loglog_with_reference(ax, xs, *zip(*c), slope=THEORY[s.key], label=label, n=s.table.n_runs(), color=color)
    if second is not None and second != THEORY[s.key] and c[0][0] > 0:
        grid = np.geomspace(min(xs), max(xs), 50)
        ax.plot(grid, c[0][0] * (grid / xs[0]) ** second, linestyle=":", color="0.3", linewidth=1.2,
                label=f"reference slope {second:g} (ReLU sign flips)", zorder=1)
        ax.legend(fontsize=8, frameon=False)
    ax.set_xlabel(_xlabel(s))
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}; fitted slope {common.ci_text(s.slopes[metric], 2)}", fontsize=9)


def _movement_figure(sweeps: list[Sweep], config: KernelRegimeConfig):
    from overparam.report.figures import new_figure

    fig, axes = new_figure(2, len(sweeps), width=5.8 * len(sweeps), height=8.6, squeeze=False)
    for column, s in enumerate(sweeps):
        _loglog(axes[0, column], s, "movement", None, "measured", "black",
                r"relative movement $\|\theta_T-\theta_0\|/\|\theta_0\|$", f"movement vs {s.symbol}")
        _loglog(axes[1, column], s, "ntk_drift", _smooth_theory(s, config), "measured", "black",
                r"NTK drift $\|\Theta_T-\Theta_0\|_F/\|\Theta_0\|_F$ (train set)", f"NTK drift vs {s.symbol}")
    fig.suptitle("parameter movement and NTK drift (dashed: theory slope)", fontsize=11)
    return fig


def _distance_figure(sweeps: list[Sweep], config: KernelRegimeConfig):
    from overparam.report.figures import errorbar_cis, new_figure

    fig, axes = new_figure(2, len(sweeps), width=5.8 * len(sweeps), height=8.6, squeeze=False)
    for column, s in enumerate(sweeps):
        ax = axes[0, column]
        ax.axhline(DISTANCE_SMALL, color="tab:red", linestyle="-.", linewidth=1.0,
                   label=f"claim threshold {DISTANCE_SMALL:g}")
        _loglog(ax, s, "lin_distance", _smooth_theory(s, config), "measured (test set)", "tab:blue",
                r"$\|f_T-f_{lin}\|\,/\,\|f_{lin}\|$ (test outputs)", "distance to kernel regression with Θ_0")
        ax = axes[1, column]
        errorbar_cis(ax, s.table.axis, s.cis["argmax_agreement"], "network vs f_lin, test set", s.table.n_runs(),
                     color="tab:blue")
        _log_x(ax, s, "argmax agreement (fraction of test examples)")
        ax.set_ylim(None, 1.005)
        ax.set_title(f"same predicted class as kernel regression vs {s.symbol}", fontsize=9)
    fig.suptitle("how close the trained network is to its linearization (dashed: theory slope)", fontsize=11)
    return fig


def _log_x(ax, s: Sweep, ylabel: str) -> None:
    xs = s.table.axis
    ax.set_ylabel(ylabel)
    ax.set_xscale("log")
    ax.set_xticks(xs, [f"{v:g}" for v in xs])
    ax.minorticks_off()
    ax.set_xlabel(_xlabel(s))


def _accuracy_figure(sweeps: list[Sweep], infinite: float):
    """Test (top, with the infinite-width NTK's) and train accuracy of the network and of f_lin, per sweep."""
    from overparam.report.figures import errorbar_cis, new_figure

    fig, axes = new_figure(2, len(sweeps), width=5.8 * len(sweeps), height=8.2, squeeze=False)
    for column, s in enumerate(sweeps):
        for row, split in enumerate(("test", "train")):
            ax = axes[row, column]
            for who, label, colour, marker in (("net", "network", "tab:blue", "o"),
                                               ("kernel", "kernel regression with Θ_0", "tab:orange", "s")):
                errorbar_cis(ax, s.table.axis, s.cis[f"{who}_{split}_acc"], label, s.table.n_runs(), color=colour,
                             marker=marker, legend=False)
            if split == "test" and math.isfinite(infinite):
                ax.axhline(infinite, color="0.4", linestyle="--", linewidth=1.2,
                           label="infinite-width NTK, same GD")
            _log_x(ax, s, f"{split} accuracy")
            ax.legend(fontsize=8, frameon=False)
        axes[0, column].set_title("test accuracy; rich − lazy {:+.1f} pp [{:+.1f}, {:+.1f}]".format(*s.gap), fontsize=9)
        axes[1, column].set_title("train accuracy (same runs)", fontsize=9)
        axes[1, column].set_ylim(min(axes[1, column].get_ylim()[0], 0.9), 1.005)  # no zoom into rounding-level gaps
    fig.suptitle("network vs kernel regression with its initial NTK", fontsize=11)
    return fig


STUDY = Study(
    name=NAME,
    description="lazy vs rich training: movement, NTK drift and distance to kernel regression with the initial NTK "
                "vs width and init scale α (Chizat et al.)",
    config_type=KernelRegimeConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"data": {"name": "mnist1d", "n_train": 40, "n_test": 60, "seed": 0},
                 "widths": [8, 64], "alphas": [0.5, 8.0], "alpha_sweep_width": 64, "steps": 20, "eval_every": 10,
                 "seeds": 3},
        "quick": {"data": {"name": "mnist1d", "n_train": 200, "n_test": 500, "seed": 0},
                  "widths": [16, 64, 256, 1024, 2048], "alphas": [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
                  "alpha_sweep_width": 256, "steps": 500, "seeds": 5},
        "paper": {"data": {"name": "mnist", "n_train": 1000, "n_test": 2000, "seed": 0, "standardize": True},
                  "widths": [10, 30, 100, 300, 1000, 3000, 10000], "alphas": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0],
                  "alpha_sweep_width": 1000, "steps": 2000, "eval_every": 200, "seeds": 5},
    },
)
