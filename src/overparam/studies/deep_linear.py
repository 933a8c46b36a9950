"""``deep_linear``: depth and the low-rank bias of matrix factorization (Arora, Cohen, Hu & Luo 2019).

Problem: a d×d ground truth M* of rank r (``data.synthetic.matrix_completion`` or
``matrix_sensing``: M* = sqrt(d) U Vᵀ/‖U Vᵀ‖_F, so ‖M*‖_F = sqrt(d)), observed through n entries
(completion: a uniformly random set Ω) or n Gaussian measurements ⟨A_k, M*⟩ (sensing). Seed s
draws the problem (data seed s) and the initialization (stream ``derive_seed(s, "init")``); every
depth of one seed sees the same problem.

Model: W = W_L ⋯ W_1 (:class:`overparam.models.DeepLinear`, d×width, width×width, ..., width×d;
width defaults to d), L in ``depths``. The default 'balanced' init draws A with N(0, init_scale²)
entries and splits it as W_j = S^{1/L} (padded SVD factors), so the initial end-to-end matrix is
the same A at every depth of a seed: depth is the only thing that changes.

Training: full-batch gradient descent (a short explicit loop in float64, ``steps`` steps of size
``lr``, the same for every depth) on

    completion:  ℓ(W) = (d² / 2n) Σ_{(i,j) ∈ Ω} (W_ij − M*_ij)²
    sensing:     ℓ(W) = (1 / 2n) Σ_k (⟨A_k, W⟩ − y_k)²,

both unbiased estimates of ½‖W − M*‖_F² over the draw of the observations, so one ``lr`` has the
same meaning for both. L = 1 is plain GD on W: from a small init it converges to the interpolant
nearest the init, which leaves the unobserved entries at their (≈ 0) initial values — not low
rank. L >= 2 is the factorized model whose implicit bias is the subject.

Per run: the end-to-end matrix's effective rank over training (entropy effective rank of Roy &
Vetterli 2007, exp(−Σ p_i log p_i) with p_i = σ_i / Σ_j σ_j, via
:func:`overparam.measures.effective_rank`, at ``curve_points`` log-spaced steps) and its numerical
rank #{i : σ_i > rank_threshold · σ_1}; at the end: both ranks, the training loss and the relative
residual ‖A(W) − y‖/‖y‖, the reconstruction error (completion: ‖P_Ω⊥(W − M*)‖_F / ‖P_Ω⊥(M*)‖_F on
the unobserved entries; sensing: ‖W − M*‖_F/‖M*‖_F), the nuclear norm ‖W‖_* against that of the
minimum-nuclear-norm matrix consistent with the same observations
(:mod:`overparam.references.nuclear`, ADMM to a relative duality gap ``reference_tol``), the
distance ‖W − W_nuc‖_F/‖W_nuc‖_F, and the singular values of W, W_nuc and M*.

Claims (ids ``deep_linear.*``; statements in :func:`claims`, published sides in :data:`PAPER_CLAIMS`):
low rank at the largest depth, depth lowering the effective rank and the reconstruction error, and the
depth-2 nuclear norm at the minimum (Gunasekar et al. 2017's conjecture).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from overparam.analysis import Missing, Run, SeedTable, mean_ci, quiet
from overparam.errors import ConfigError, check_number, check_numbers, check_positive_int, choice_error
from overparam.report import CI, Claim, Section
from overparam.report.verdicts import RATIO, Published, below, between
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study, run_key

NAME = "deep_linear"
PROBLEMS = ("completion", "sensing")
INITS = ("balanced", "orthogonal", "gaussian")


@dataclass(frozen=True)
class DeepLinearConfig:
    problem: str = "completion"  # completion | sensing
    d: int = 50  # the ground truth is d×d
    rank: int = 5
    n_observed: int = 2000  # observed entries (completion) or Gaussian measurements (sensing)
    depths: tuple[int, ...] = (1, 2, 3, 4, 5)
    width: int | None = None  # hidden width of the factors; None: d
    init: str = "balanced"  # balanced | orthogonal | gaussian (models.linear)
    init_scale: float = 1e-4
    lr: float = 0.02
    steps: int = 4000
    curve_points: int = 40  # log-spaced steps at which the ranks and the loss are recorded
    rank_threshold: float = 0.01  # numerical rank: #σ_i > rank_threshold · σ_1
    low_rank_fraction: float = 0.25  # "low rank": effective rank < low_rank_fraction · d
    nuclear_tolerance: float = 0.02  # "close to the minimum": ratio within 1 ± nuclear_tolerance
    reference_tol: float = 1e-6  # relative duality gap of the min-nuclear-norm solve
    reference_max_iter: int = 20000
    seeds: int = 5

    def __post_init__(self) -> None:
        if self.problem not in PROBLEMS:
            raise choice_error("problem", self.problem, PROBLEMS)
        check_positive_int("d", self.d, minimum=2)
        for name in ("rank", "n_observed", "steps", "reference_max_iter", "seeds"):
            check_positive_int(name, getattr(self, name))
        if self.rank > self.d:
            raise ConfigError(f"rank={self.rank} exceeds d={self.d}; accepted: 1 <= rank <= d")
        if self.n_observed > self.d * self.d:
            raise ConfigError(f"n_observed={self.n_observed} exceeds the {self.d ** 2} entries of a {self.d}x{self.d} "
                              f"matrix (and independent measurements); accepted: 1 <= n_observed <= {self.d ** 2}")
        depths = check_numbers("depths", self.depths, at_least=2, integer=True, minimum=1)
        if self.width is not None:
            check_positive_int("width", self.width)
        if self.init not in INITS:
            raise choice_error("init", self.init, INITS)
        if self.init == "balanced" and self.width is not None and self.width < self.d and max(depths) > 1:
            raise ConfigError(f"the balanced init needs width >= d = {self.d} (it factors a d×d matrix), got "
                              f"width={self.width}; accepted: width >= {self.d} or width: null (= d)")
        for name in ("init_scale", "lr"):
            check_number(name, getattr(self, name), minimum=0, open_low=True)
        check_positive_int("curve_points", self.curve_points, minimum=2)
        check_number("low_rank_fraction", self.low_rank_fraction, minimum=0, maximum=1, open_low=True)
        for name in ("rank_threshold", "nuclear_tolerance", "reference_tol"):
            check_number(name, getattr(self, name), minimum=0, maximum=1, open_low=True, open_high=True)


def grid(config: DeepLinearConfig) -> list[RunSpec]:
    """seed × depth. The run parameters are everything a run reads (not the claims' thresholds)."""
    shared = {"problem": config.problem, "d": config.d, "rank": config.rank, "n_observed": config.n_observed,
              "width": config.width or config.d, "init": config.init, "init_scale": float(config.init_scale),
              "lr": float(config.lr), "steps": config.steps, "curve_points": config.curve_points,
              "rank_threshold": float(config.rank_threshold), "reference_tol": float(config.reference_tol),
              "reference_max_iter": config.reference_max_iter}
    # seed-major: consecutive runs share a problem (and its cached W_nuc)
    return [RunSpec(run_key(NAME, params, seed), params, seed) for seed in range(config.seeds)
            for params in ({**shared, "depth": depth} for depth in sorted(config.depths))]


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Problem:
    """One observed low-rank problem on ``device`` (float64).

    ``truth`` M* (d, d); completion: ``mask`` (d, d) bool and ``rows``/``cols`` (n,) of Ω;
    sensing: ``measurements`` (n, d, d); ``targets`` (n,) the observations y.
    """

    kind: str
    truth: Tensor
    targets: Tensor
    mask: Tensor | None = None
    rows: Tensor | None = None
    cols: Tensor | None = None
    measurements: Tensor | None = None

    def observe(self, w: Tensor) -> Tensor:
        """A(W): the (n,) observations of a d×d matrix."""
        if self.kind == "completion":
            return w[self.rows, self.cols]
        return torch.einsum("kij,ij->k", self.measurements, w)

    def loss_weight(self) -> float:
        """c in ℓ(W) = c Σ (A(W) − y)² (module docstring): d²/2n or 1/2n."""
        return (self.truth.numel() if self.kind == "completion" else 1.0) / (2.0 * len(self.targets))

    def reconstruction_error(self, w: Tensor) -> float:
        """Completion: relative Frobenius error on the unobserved entries; sensing (or nothing
        unobserved): on the whole matrix."""
        if self.kind == "completion" and not bool(self.mask.all()):
            hidden = ~self.mask
            return float(torch.linalg.vector_norm((w - self.truth)[hidden])
                         / torch.linalg.vector_norm(self.truth[hidden]))
        return float(torch.linalg.matrix_norm(w - self.truth) / torch.linalg.matrix_norm(self.truth))


def make_problem(problem: str, d: int, rank: int, n_observed: int, seed: int, device: torch.device) -> Problem:
    from overparam.data.synthetic import matrix_completion, matrix_sensing

    if problem == "completion":
        split = matrix_completion(d=d, rank=rank, n_train=n_observed, seed=seed)
        x = split.x_train.to(device)
        return Problem("completion", split.extras["M_star"].to(device), split.y_train.to(device),
                       mask=split.extras["mask"].to(device), rows=x[:, 0], cols=x[:, 1])
    split = matrix_sensing(d=d, rank=rank, n_train=n_observed, n_test=1, seed=seed)
    return Problem("sensing", split.extras["M_star"].to(device), split.y_train.to(device),
                   measurements=split.x_train.to(device))


@functools.lru_cache(maxsize=2)
def problem_and_reference(kind: str, d: int, rank: int, n_observed: int, seed: int, tol: float, max_iter: int,
                          device: torch.device) -> tuple[Problem, Any, float]:
    """(problem, the minimum-nuclear-norm matrix consistent with its observations, seconds the solve
    took). Cached: every depth of a seed shares them, and the grid runs a seed's depths one after
    another. Callers must not modify the tensors."""
    from overparam.references.nuclear import min_nuclear_norm_completion, min_nuclear_norm_sensing

    problem = make_problem(kind, d, rank, n_observed, seed, device)
    start = time.perf_counter()
    reference = (min_nuclear_norm_completion(problem.mask, problem.truth, tol=tol, max_iter=max_iter)
                 if kind == "completion" else
                 min_nuclear_norm_sensing(problem.measurements, problem.targets, tol=tol, max_iter=max_iter))
    return problem, reference, time.perf_counter() - start


def curve_steps(steps: int, points: int) -> list[int]:
    """0 and ``points`` log-spaced steps in [1, steps] (duplicates merged), always ending at ``steps``."""
    spaced = np.unique(np.round(np.geomspace(1, steps, points)).astype(int))
    return [0] + [int(s) for s in spaced if s >= 1]


def build_factorization(d: int, width: int, depth: int, init: str, scale: float, seed: int,
                        device: torch.device) -> torch.nn.Module:
    """``DeepLinear(d, d, width, depth)`` in float64, drawn from the stream derive_seed(seed, 'init')
    (the global RNG is left untouched)."""
    from overparam.models import DeepLinear
    from overparam.seeding import generator

    with torch.random.fork_rng(devices=[]):  # the constructor's own draw uses the global RNG
        model = DeepLinear(d, d, width, depth, init=init, scale=scale).to(device=device, dtype=torch.float64)
    model.reset_parameters(generator(seed, "init", device=device))
    return model


def train(problem: Problem, model: torch.nn.Module, lr: float, steps: int, record: list[int], rank_threshold: float
          ) -> dict[str, Any]:
    """Full-batch GD on ℓ(W_L ⋯ W_1) for ``steps`` steps; at each step in ``record`` the
    end-to-end matrix's effective and numerical rank and the loss. Cost per step: one forward
    product of L d×d matrices and its backward (O(L d³)); per recorded step one SVD.

    Returns {'status': 'done' | 'diverged', 'steps': steps taken, 'curves': {name: [(step,
    value)]}}; diverged when the loss becomes non-finite."""
    params = list(model.parameters())
    weight = problem.loss_weight()
    recorded = set(record)
    curves: dict[str, list[tuple[int, float]]] = {"effective_rank": [], "numerical_rank": [], "train_loss": []}
    for step in range(steps + 1):
        w = model.end_to_end()
        loss = weight * (problem.observe(w) - problem.targets).pow(2).sum()
        if not bool(torch.isfinite(loss)):
            return {"status": "diverged", "steps": step, "curves": curves}
        if step in recorded:
            for name, value in zip(curves, (*_ranks(w.detach(), rank_threshold), float(loss.detach()))):
                curves[name].append((step, value))
        if step == steps:
            break
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    return {"status": "done", "steps": steps, "curves": curves}


def _ranks(matrix: Tensor, threshold: float) -> tuple[float, float]:
    """(entropy effective rank, numerical rank #σ_i > threshold · σ_1) of a matrix."""
    from overparam.measures import effective_rank

    return effective_rank(matrix), effective_rank(matrix, "threshold", threshold=threshold)


def _solution_metrics(problem: Problem, reference: Any, w: Tensor, threshold: float) -> dict[str, Any]:
    """The measures of a trained end-to-end matrix ``w`` (module docstring)."""
    residual = problem.observe(w) - problem.targets
    singular_values = torch.linalg.svdvals(w)
    nuclear = float(singular_values.sum())
    effective, numerical = _ranks(w, threshold)
    return {
        "effective_rank": effective, "numerical_rank": numerical,
        "train_loss": problem.loss_weight() * float(residual.pow(2).sum()),
        "relative_residual": float(torch.linalg.vector_norm(residual) / torch.linalg.vector_norm(problem.targets)),
        "reconstruction_error": problem.reconstruction_error(w),
        "matrix_error": float(torch.linalg.matrix_norm(w - problem.truth) / torch.linalg.matrix_norm(problem.truth)),
        "nuclear_norm": nuclear, "nuclear_ratio": nuclear / reference.nuclear_norm,
        "distance_to_min_nuclear": float(torch.linalg.matrix_norm(w - reference.matrix)
                                         / torch.linalg.matrix_norm(reference.matrix)),
        "singular_values": singular_values.tolist(),
    }


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    """Problem -> minimum-nuclear-norm reference -> GD on the depth-L factorization -> measures."""
    from overparam.device import resolve_device
    from overparam.provenance import provenance

    p = spec.params
    target = resolve_device(device)
    start = time.perf_counter()
    hits = problem_and_reference.cache_info().hits
    problem, reference, reference_time = problem_and_reference(
        p["problem"], p["d"], p["rank"], p["n_observed"], spec.seed, p["reference_tol"], p["reference_max_iter"],
        target)
    reused = problem_and_reference.cache_info().hits > hits
    model = build_factorization(p["d"], p["width"], p["depth"], p["init"], p["init_scale"], spec.seed, target)
    trained = train(problem, model, p["lr"], p["steps"], curve_steps(p["steps"], p["curve_points"]),
                    p["rank_threshold"])
    truth_rank, truth_numerical = _ranks(problem.truth, p["rank_threshold"])
    ref_rank, ref_numerical = _ranks(reference.matrix, p["rank_threshold"])
    metrics: dict[str, Any] = {
        "depth": p["depth"], "ambient_rank": p["d"], "steps_taken": trained["steps"],
        "truth_effective_rank": truth_rank, "truth_numerical_rank": truth_numerical,
        "truth_nuclear_norm": float(torch.linalg.matrix_norm(problem.truth, ord="nuc")),
        "truth_singular_values": torch.linalg.svdvals(problem.truth).tolist(),
        "min_nuclear_norm": reference.nuclear_norm, "reference_gap": reference.gap,
        "reference_converged": bool(reference.converged), "reference_iterations": reference.iterations,
        "reference_effective_rank": ref_rank, "reference_numerical_rank": ref_numerical,
        "reference_error": problem.reconstruction_error(reference.matrix),
        "reference_singular_values": reference.singular_values.tolist(), "reference_time_s": reference_time,
        "reference_reused": reused,
    }
    if trained["status"] == "done":
        with torch.no_grad():
            metrics.update(_solution_metrics(problem, reference, model.end_to_end(), p["rank_threshold"]))
    return RunOutcome(trained["status"], metrics, trained["curves"], time.perf_counter() - start, provenance(target))


# --- analysis ------------------------------------------------------------------------------------

TITLE = "deep_linear: depth and the low-rank bias of deep matrix factorization"
TABLE = (  # metric, header
    ("effective_rank", "effective rank"), ("numerical_rank", "numerical rank"),
    ("reconstruction_error", "reconstruction error"), ("nuclear_ratio", "‖W‖_* / ‖W_nuc‖_*"),
    ("distance_to_min_nuclear", "‖W − W_nuc‖_F/‖W_nuc‖_F"), ("relative_residual", "train residual ‖A(W)−y‖/‖y‖"))
# measures of M* and W_nuc: they depend on the seed only (every depth of a seed shares them)
REFERENCES = ("truth_effective_rank", "truth_numerical_rank", "reference_effective_rank", "reference_numerical_rank",
              "reference_error", "reference_gap")


# The sources' claims, fixed before any run. The two bounds that the config sets
# (low_rank_fraction · d, 1 ± nuclear_tolerance) are written here for the default config and
# replaced by the config's values in claims().
PAPER_CLAIMS = {
    "low_rank_at_max_depth": Published("8.2 on average at L = 5 (ambient dimension 50)",
                                       f"{common.PAPER}, mathematical analysis", below(12.5), 8.2, "", RATIO),
    "depth_lowers_effective_rank": Published("depth strengthens the low-rank bias", "Arora et al. 2019", below(0.0)),
    "depth2_min_nuclear_norm": Published("ratio → 1 as the init → 0", "Gunasekar et al. 2017 (conjecture)",
                                         between(0.98, 1.02)),
    "depth_lowers_reconstruction_error": Published("deeper factorizations recover the low-rank matrix more accurately",
                                                   "Arora et al. 2019", below(0.0)),
}


@dataclass
class DeepLinearAnalysis:
    """The depth sweep: S seeds, A depths (``table.axis``, increasing)."""

    table: SeedTable  # finished runs, seed x depth L
    settings: Mapping[str, Any]  # the settings every run shares (problem, d, rank, init, lr, steps, ...)
    cis: dict[str, list[CI]]  # per TABLE metric: the mean over seeds at each depth (A,)
    references: dict[str, CI]  # per REFERENCES metric: the mean over seeds of M*'s / W_nuc's value
    low_rank: CI  # effective rank at the largest depth, mean over seeds
    nuclear2: CI | None  # ‖W_2W_1‖_* / ‖W_nuc‖_* at depth 2, mean over seeds; None without depth 2
    rank_ratio: CI  # effective rank at the smallest depth / at the largest, geometric mean of per-seed ratios
    steps: dict[str, CI]  # 'effective_rank', 'reconstruction_error': the change from the smallest to the largest depth
    # (paired), with .against: the largest rise between neighbouring depths (stats.trend_ci)
    converged: int  # runs whose min-nuclear-norm solve met its duality-gap tolerance


def analyze(runs: list[Run], config: DeepLinearConfig) -> DeepLinearAnalysis | Missing:
    table = SeedTable(runs, lambda r: r.settings["depth"])
    if len(table) < 2:
        return Missing(TITLE, "No two depths have finished runs yet.")
    depths = table.axis
    with quiet():
        references = {m: mean_ci(np.nanmean(table[m], axis=1)) for m in REFERENCES}  # one value per seed
    return DeepLinearAnalysis(
        table, runs[0].settings, {m: table.cis(m) for m, _ in TABLE}, references,
        table.ci("effective_rank", depths[-1]), table.ci("nuclear_ratio", 2) if 2 in depths else None,
        table.ratio("effective_rank", depths[0], depths[-1]),
        {m: table.trend(m) for m in ("effective_rank", "reconstruction_error")},
        sum(bool(r.metrics.get("reference_converged")) for r in runs))


def claims(a: DeepLinearAnalysis, config: DeepLinearConfig) -> list[Claim]:
    depths, p = a.table.axis, a.settings
    listed, low, tol = ", ".join(map(str, depths)), config.low_rank_fraction * p["d"], config.nuclear_tolerance
    out = [Claim.judged(
        f"{NAME}.low_rank_at_max_depth", NAME,
        f"At depth L = {depths[-1]} gradient descent from a small init finds a low-rank solution: the mean effective "
        f"rank (Roy–Vetterli entropy rank of W_L⋯W_1) over seeds is below {config.low_rank_fraction:g} × the "
        f"ambient dimension {p['d']} = {low:g}; the ground truth has rank {p['rank']} (effective rank "
        f"{common.fmt(a.references['truth_effective_rank'][0], 3)}).",
        replace(PAPER_CLAIMS["low_rank_at_max_depth"], direction=below(low)), a.low_rank),
        Claim.judged(
            f"{NAME}.depth_lowers_effective_rank", NAME,
            f"Depth strengthens the low-rank bias: the final effective rank falls from depth {depths[0]} to "
            f"{depths[-1]} ({listed}; same problem and init per seed; the change, paired by seed, < 0) without rising "
            f"between neighbouring depths.", PAPER_CLAIMS["depth_lowers_effective_rank"], a.steps["effective_rank"])]
    if a.nuclear2 is not None:
        out.append(Claim.judged(
            f"{NAME}.depth2_min_nuclear_norm", NAME,
            f"The depth-2 factorization trained from a small init converges to (near) the minimum-nuclear-norm "
            f"solution of the same observations: ‖W_2W_1‖_* / min{{‖W‖_* : A(W) = y}}, mean over seeds, within "
            f"[{1 - tol:g}, {1 + tol:g}].",
            replace(PAPER_CLAIMS["depth2_min_nuclear_norm"], direction=between(1 - tol, 1 + tol)),
            a.nuclear2))
    out.append(Claim.judged(
        f"{NAME}.depth_lowers_reconstruction_error", NAME,
        f"The reconstruction error of the unobserved part falls from depth {depths[0]} to {depths[-1]} ({listed}; "
        f"the change, paired by seed, < 0) without rising between neighbouring depths.",
        PAPER_CLAIMS["depth_lowers_reconstruction_error"], a.steps["reconstruction_error"]))
    return out


# --- report --------------------------------------------------------------------------------------


def render(a: DeepLinearAnalysis, claims: list[Claim], config: DeepLinearConfig) -> list[Section]:
    ci, seeds = common.ci_text, len(a.table.seeds)
    rows = [[L, n] + [ci(a.cis[m][j]) for m, _ in TABLE]
            for j, (L, n) in enumerate(zip(a.table.axis, a.table.n_runs()))]
    refs = {m: ci(v) for m, v in a.references.items()}
    rows += [["min-nuclear-norm W_nuc", seeds, refs["reference_effective_rank"], refs["reference_numerical_rank"],
              refs["reference_error"], "1", "0", "0"],
             ["ground truth M*", seeds, refs["truth_effective_rank"], refs["truth_numerical_rank"], "0", "", "", ""]]
    text = "\n\n".join([_setup(a), common.table(["depth", "n"] + [h for _, h in TABLE], rows), _reading(a)])
    figures = [("deep_linear_rank_over_training", _curves_figure(a)),
               ("deep_linear_vs_depth", _depth_figure(a, config)),
               ("deep_linear_spectra", _spectra_figure(a))]
    return [Section(TITLE, text, figures, claims)]


def _setup(a: DeepLinearAnalysis) -> str:
    p = a.settings
    completion = p["problem"] == "completion"
    observed = (f"{p['n_observed']} of its {p['d'] ** 2} entries observed (uniformly random)" if completion
                else f"{p['n_observed']} Gaussian linear measurements ⟨A_k, M*⟩")
    return (f"Matrix {p['problem']}: a {p['d']}×{p['d']} ground truth M* of rank {p['rank']} (‖M*‖_F = sqrt(d)), "
            f"{observed}; seed s draws the problem and the init, shared by every depth. Model W = W_L⋯W_1 "
            f"(hidden width {p['width']}, {p['init']} init of scale {p['init_scale']:g}: the same initial end-to-end "
            f"matrix at every depth for the balanced init), {p['steps']} steps of full-batch gradient descent at lr "
            f"{p['lr']:g} on the squared error of the observations (scaled to estimate ½‖W − M*‖_F²). Effective rank: "
            f"Roy & Vetterli's entropy rank exp(H(σ/Σσ)); numerical rank: #σ_i > {p['rank_threshold']:g}·σ_1. "
            f"Reconstruction error: relative Frobenius error "
            f"{'on the unobserved entries' if completion else 'of the whole matrix'}. W_nuc: the minimum-nuclear-norm "
            f"matrix consistent with the same observations (ADMM, relative duality gap <= {p['reference_tol']:g}; "
            f"certified in {a.converged} of {sum(a.table.n_runs())} runs). Per depth: mean over seeds with a 95% "
            f"t-interval.")


def _reading(a: DeepLinearAnalysis) -> str:
    p, shallow, deep = a.settings, a.table.axis[0], a.table.axis[-1]
    text = (f"Effective rank at L = {shallow} / at L = {deep}: {common.ci_text(a.rank_ratio, 3)} (geometric mean of "
            "the per-seed ratios, log-t interval); the ground truth's and W_nuc's rows of the table are the yardsticks "
            "for the deep ranks.")
    if shallow == 1:
        left = ("which leaves the unobserved entries at their initial, near-zero values" if p["problem"] == "completion"
                else "the minimum-Frobenius-norm fit when the init is near zero")
        text += (f" Depth 1 is plain gradient descent on W: it converges to the interpolant nearest its init, {left} "
                 "— not a low-rank matrix; the step from L = 1 to L = 2 is the contrast between no factorization and "
                 "a factorization, and the later steps are depth beyond 2.")
    ref_error = a.references["reference_error"][0]
    text += " W_nuc's reconstruction error (table) shows that " + (
        "with this many observations the convex relaxation already recovers M*, so the regime where depth beats the "
        "nuclear norm (fewer observations, Arora et al.'s Fig. 2) is not probed here."
        if math.isfinite(ref_error) and ref_error < 1e-3 else
        "the convex relaxation does not recover M* from these observations, the regime where Arora et al. find "
        "deeper factorizations closer to M* than the nuclear norm.")
    return text + (f" Confounds: the learned matrices keep a tail of small singular values of the size of the init "
                   f"(scale {p['init_scale']:g}) in the directions the observations do not constrain, which lifts the "
                   f"entropy effective rank above the truth's and sets the floor of the reconstruction error; and "
                   f"training stops after a fixed {p['steps']} steps (final train residual in the table), not at "
                   f"exact interpolation.")


def _band(ax, xs, values: np.ndarray, label: str, color) -> None:
    """The mean over seeds of ``values`` (seeds, len(xs)) with a 95% t-interval band per point;
    seeds without a finite value are left out."""
    values = values[np.isfinite(values).any(axis=1)]
    if not len(values):
        return
    intervals = [mean_ci(values[:, k]) for k in range(values.shape[1])]
    ax.plot(xs, [c[0] for c in intervals], color=color, label=f"{label} (n={len(values)}, 95% CI)", linewidth=1.6)
    low, high = ([c[i] if math.isfinite(c[i]) else c[0] for c in intervals] for i in (1, 2))
    ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)


def _colors(a: DeepLinearAnalysis) -> np.ndarray:
    from matplotlib import colormaps

    return colormaps["viridis"](np.linspace(0, 0.9, len(a.table.axis)))  # one colour per depth


TRUTH_LINE = {"color": "black", "linestyle": "--", "linewidth": 1.1}  # M* in the figures
NUC_LINE = {"color": "tab:red", "linestyle": ":", "linewidth": 1.3}  # W_nuc in the figures


def _curves_figure(a: DeepLinearAnalysis):
    from overparam.report.figures import new_figure

    fig, axes = new_figure(1, 2, width=13, height=4.6)
    steps, ranks = a.table.curve("effective_rank")  # (S, A, steps)
    _, losses = a.table.curve("train_loss")
    for j, (L, color) in enumerate(zip(a.table.axis, _colors(a))):
        _band(axes[0], steps, ranks[:, j], f"L = {L}", color)
        _band(axes[1], steps, losses[:, j], f"L = {L}", color)
    truth, reference = a.references["truth_effective_rank"][0], a.references["reference_effective_rank"][0]
    axes[0].axhline(truth, **TRUTH_LINE, label=f"ground truth M* ({truth:.3g})")
    axes[0].axhline(reference, **NUC_LINE, label=f"min-nuclear-norm solution ({reference:.3g})")
    axes[0].set(ylabel="effective rank of W_L⋯W_1 (entropy)", title="effective rank during training", ylim=(0, None))
    axes[1].set(yscale="log", ylabel="training loss (estimate of ½‖W − M*‖_F²)", title="training loss")
    # depth 1 interpolates to rounding (~1e-28); below 1e-12 of the initial loss nothing is left to see
    initial = losses[..., 0] if len(steps) else np.full(1, np.nan)
    axes[1].set_ylim(bottom=1e-12 * (float(np.nanmax(initial)) if np.isfinite(initial).any() else 1.0))
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set(xlim=(0, None), xlabel="gradient-descent step (symlog: linear below 1)")
        ax.legend(fontsize=8, frameon=False, loc="upper right")
    return fig


def _depth_figure(a: DeepLinearAnalysis, config: DeepLinearConfig):
    from overparam.report.figures import PlainLogFormatter, errorbar_cis, new_figure

    fig, axes = new_figure(1, 3, width=16, height=4.4)
    for ax, metric, label, color, marker in (
            (axes[0], "effective_rank", "effective rank (entropy)", "tab:blue", "o"),
            (axes[0], "numerical_rank", f"numerical rank (σ > {config.rank_threshold:g}σ_1)", "tab:orange", "s"),
            (axes[1], "reconstruction_error", "deep factorization", "tab:blue", "o"),
            (axes[2], "nuclear_ratio", "‖W‖_* / ‖W_nuc‖_*", "tab:blue", "o")):
        errorbar_cis(ax, a.table.axis, a.cis[metric], label, a.table.n_runs(), color=color, marker=marker, legend=False)
    axes[0].axhline(a.references["truth_effective_rank"][0], **TRUTH_LINE, label="M* effective rank")
    ref_error = a.references["reference_error"][0]
    if math.isfinite(ref_error) and ref_error > 0:
        axes[1].axhline(ref_error, **NUC_LINE, label=f"min-nuclear-norm solution ({ref_error:.2g})")
    axes[2].axhline(1.0, **NUC_LINE, label="minimum nuclear norm")
    for L, m in zip(a.table.axis, (c[0] for c in a.cis["nuclear_ratio"])):  # within a few 1e-3 of 1: print them
        if math.isfinite(m):
            axes[2].annotate(f"{m:.4f}", (L, m), textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
    axes[0].set(yscale="log", ylabel="rank of the learned matrix", title="final rank vs depth")
    axes[1].set(yscale="log", ylabel="relative reconstruction error", title="reconstruction error vs depth")
    axes[2].set(ylabel="nuclear norm / minimum", title="nuclear norm relative to the minimum")
    for ax in axes:
        ax.set(xticks=a.table.axis, xlabel="depth L (number of factors)")
        ax.legend(fontsize=8, frameon=False)
    axes[0].yaxis.set_major_formatter(PlainLogFormatter())
    axes[0].yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    return fig


def _spectra_figure(a: DeepLinearAnalysis):
    from overparam.report.figures import new_figure

    fig, ax = new_figure(width=7.5, height=4.8)
    spectra = a.table["singular_values"]  # (S, A, d)
    if spectra.ndim == 3:
        for j, (L, color) in enumerate(zip(a.table.axis, _colors(a))):
            _band(ax, np.arange(1, spectra.shape[2] + 1), spectra[:, j], f"L = {L}", color)
    for metric, label, color, style, marker in (
            ("reference_singular_values", "min-nuclear-norm solution (tail: solver tolerance)", "tab:red", ":", "."),
            ("truth_singular_values", "ground truth M*", "black", "--", "x")):
        values = a.table[metric]
        if values.ndim != 3:
            continue
        with quiet():
            per_seed = np.nanmean(values, axis=1)  # (S, d): the same at every depth of a seed
        per_seed = per_seed[np.isfinite(per_seed).any(axis=1)]
        mean = np.mean(per_seed, axis=0)
        keep = mean > 1e-12 * float(mean[0])  # a low-rank matrix's exact zeros vanish off a log axis
        ax.plot(np.flatnonzero(keep) + 1, mean[keep], color=color, linestyle=style, marker=marker, linewidth=1.3,
                zorder=4, label=f"{label} (mean over {len(per_seed)} seeds)")
    ax.set(yscale="log", xlabel="index i (singular values in decreasing order)", ylabel="singular value σ_i",
           title="spectra of the learned end-to-end matrices")
    ax.legend(fontsize=8, frameon=False)
    return fig


STUDY = Study(
    name=NAME,
    description="deep matrix factorization (completion/sensing, L = 1..5, small init): effective rank over training, "
                "nuclear norm vs the minimum-nuclear-norm solution, reconstruction error",
    config_type=DeepLinearConfig,
    grid=grid,
    run_one=run_one,
    analyze=analyze,
    claims=claims,
    render=render,
    presets={
        "tiny": {"d": 10, "rank": 2, "n_observed": 60, "depths": [1, 2, 3], "init_scale": 1e-3, "lr": 0.05,
                 "steps": 600, "curve_points": 10, "seeds": 2},
        # 800 of 2500 entries: few enough that the minimum-nuclear-norm solution no longer recovers
        # the matrix, so depth is compared with the convex relaxation where they differ (with 2000
        # observed, every depth >= 2 and the relaxation recover it exactly and the claims are trivial).
        "quick": {"d": 50, "rank": 5, "n_observed": 800, "depths": [1, 2, 3, 4, 5], "init_scale": 1e-4,
                  "lr": 0.01, "steps": 8000, "seeds": 5},
        "paper": {"d": 100, "rank": 5, "n_observed": 3000, "depths": [1, 2, 3, 4, 5], "init_scale": 1e-4,
                  "lr": 0.01, "steps": 20000, "curve_points": 60, "seeds": 5},
    },
)
