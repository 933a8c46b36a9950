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

Claims (ids ``deep_linear.*``): at the largest depth the effective rank is low (mean over seeds
< low_rank_fraction · d; paper: 8.2 against ambient 50 at L = 5); depth lowers the effective rank
(per-seed Spearman ρ between L and final effective rank, mean over seeds < 0, over all depths and
over L >= 2 alone; and the ratio effective rank(L_min)/effective rank(L_max) > 1, paired by seed);
the depth-2 solution's nuclear norm is that of the minimum-nuclear-norm solution
(‖W_{L=2}‖_*/‖W_nuc‖_* within 1 ± nuclear_tolerance, Gunasekar et al. 2017's conjecture); and
the reconstruction error falls with depth (per-seed Spearman ρ(L, error) < 0).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from overparam.errors import ConfigError, check_positive_int, choice_error
from overparam.studies import common
from overparam.studies.base import RunOutcome, RunSpec, Study, run_key

NAME = "deep_linear"
PROBLEMS = ("completion", "sensing")
INITS = ("balanced", "orthogonal", "gaussian")
PAPER_RANK = "8.2 on average at L = 5 (ambient dimension 50)"
CURVE_RESAMPLES = 2000  # bootstrap resamples for the per-step / per-index CI bands of the figures


def _positive_number(name: str, value: Any, upper: float = math.inf, closed_upper: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if ok and (value > upper or (value == upper and not closed_upper)):
        ok = False
    if not ok:
        bound = "" if upper == math.inf else f" and {'<=' if closed_upper else '<'} {upper:g}"
        raise ConfigError(f"{name} must be a finite number > 0{bound}, got {value!r}")
    return float(value)


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
        check_positive_int("rank", self.rank)
        if self.rank > self.d:
            raise ConfigError(f"rank={self.rank} exceeds d={self.d}; accepted: 1 <= rank <= d")
        check_positive_int("n_observed", self.n_observed)
        if self.n_observed > self.d * self.d:
            raise ConfigError(f"n_observed={self.n_observed} exceeds the {self.d * self.d} entries of a {self.d}x{self.d} "
                              f"matrix (and the number of independent measurements); accepted: 1 <= n_observed <= "
                              f"{self.d * self.d}")
        depths = self.depths if isinstance(self.depths, (list, tuple)) else (self.depths,)
        for depth in depths:
            check_positive_int("each of depths", depth)
        if len(set(depths)) < 2 or len(set(depths)) != len(depths):
            raise ConfigError(f"depths needs at least two different depths and no repeats, got {self.depths!r}")
        if self.width is not None:
            check_positive_int("width", self.width)
        if self.init not in INITS:
            raise choice_error("init", self.init, INITS)
        if self.init == "balanced" and self.width is not None and self.width < self.d and max(depths) > 1:
            raise ConfigError(f"the balanced init needs width >= d = {self.d} (it factors a d×d matrix), got "
                              f"width={self.width}; accepted: width >= {self.d} or width: null (= d)")
        _positive_number("init_scale", self.init_scale)
        _positive_number("lr", self.lr)
        check_positive_int("steps", self.steps)
        check_positive_int("curve_points", self.curve_points, minimum=2)
        _positive_number("rank_threshold", self.rank_threshold, upper=1.0)
        _positive_number("low_rank_fraction", self.low_rank_fraction, upper=1.0, closed_upper=True)
        _positive_number("nuclear_tolerance", self.nuclear_tolerance, upper=1.0)
        _positive_number("reference_tol", self.reference_tol, upper=1.0)
        check_positive_int("reference_max_iter", self.reference_max_iter)
        check_positive_int("seeds", self.seeds)


def grid(config: DeepLinearConfig) -> list[RunSpec]:
    """seed × depth. The run parameters are everything a run reads (not the claims' thresholds)."""
    shared = {"problem": config.problem, "d": config.d, "rank": config.rank, "n_observed": config.n_observed,
              "width": config.width or config.d, "init": config.init, "init_scale": float(config.init_scale),
              "lr": float(config.lr), "steps": config.steps, "curve_points": config.curve_points,
              "rank_threshold": float(config.rank_threshold), "reference_tol": float(config.reference_tol),
              "reference_max_iter": config.reference_max_iter}
    specs = []
    for seed in range(config.seeds):  # seed-major: consecutive runs share a problem (and its cached W_nuc)
        for depth in sorted(config.depths):
            params = {**shared, "depth": depth}
            specs.append(RunSpec(run_key(NAME, params, seed), params, seed))
    return specs


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
        n = len(self.targets)
        return (self.truth.numel() if self.kind == "completion" else 1.0) / (2.0 * n)

    def reconstruction_error(self, w: Tensor) -> float:
        """Completion: relative Frobenius error on the unobserved entries; sensing (or nothing
        unobserved): on the whole matrix."""
        if self.kind == "completion" and not bool(self.mask.all()):
            hidden = ~self.mask
            return float(torch.linalg.vector_norm((w - self.truth)[hidden]) / torch.linalg.vector_norm(self.truth[hidden]))
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


def reference_solution(problem: Problem, tol: float, max_iter: int):
    """The minimum-nuclear-norm matrix consistent with the problem's observations."""
    from overparam.references.nuclear import (
        min_nuclear_norm_completion,
        min_nuclear_norm_sensing,
    )

    if problem.kind == "completion":
        return min_nuclear_norm_completion(problem.mask, problem.truth, tol=tol, max_iter=max_iter)
    return min_nuclear_norm_sensing(problem.measurements, problem.targets, tol=tol, max_iter=max_iter)


@functools.lru_cache(maxsize=2)
def problem_and_reference(kind: str, d: int, rank: int, n_observed: int, seed: int, tol: float, max_iter: int,
                          device: torch.device) -> tuple[Problem, Any, float]:
    """(problem, its minimum-nuclear-norm solution, seconds the solve took). Cached: every depth of a
    seed shares them, and the grid runs a seed's depths one after another. Callers must not modify
    the tensors."""
    problem = make_problem(kind, d, rank, n_observed, seed, device)
    start = time.perf_counter()
    reference = reference_solution(problem, tol, max_iter)
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
    from overparam.measures import effective_rank

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
            matrix = w.detach()
            curves["effective_rank"].append((step, effective_rank(matrix)))
            curves["numerical_rank"].append((step, effective_rank(matrix, "threshold", threshold=rank_threshold)))
            curves["train_loss"].append((step, float(loss.detach())))
        if step == steps:
            break
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    return {"status": "done", "steps": steps, "curves": curves}


def run_one(spec: RunSpec, device: str | None) -> RunOutcome:
    """Problem -> minimum-nuclear-norm reference -> GD on the depth-L factorization -> measures."""
    from overparam.device import resolve_device
    from overparam.measures import effective_rank
    from overparam.provenance import provenance

    p = spec.params
    target = resolve_device(device)
    start = time.perf_counter()
    hits = problem_and_reference.cache_info().hits
    problem, reference, reference_time = problem_and_reference(
        p["problem"], p["d"], p["rank"], p["n_observed"], spec.seed, p["reference_tol"], p["reference_max_iter"], target)
    reused = problem_and_reference.cache_info().hits > hits
    model = build_factorization(p["d"], p["width"], p["depth"], p["init"], p["init_scale"], spec.seed, target)
    steps = curve_steps(p["steps"], p["curve_points"])
    trained = train(problem, model, p["lr"], p["steps"], steps, p["rank_threshold"])
    curves = trained["curves"]

    def ranks(matrix: Tensor) -> tuple[float, float]:
        return effective_rank(matrix), effective_rank(matrix, "threshold", threshold=p["rank_threshold"])

    truth_rank, truth_numerical = ranks(problem.truth)
    ref_rank, ref_numerical = ranks(reference.matrix)
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
        "curve_steps": [s for s, _ in curves["effective_rank"]],
        "effective_rank_curve": [v for _, v in curves["effective_rank"]],
        "numerical_rank_curve": [v for _, v in curves["numerical_rank"]],
        "train_loss_curve": [v for _, v in curves["train_loss"]],
    }
    if trained["status"] == "done":
        with torch.no_grad():
            w = model.end_to_end()
            residual = problem.observe(w) - problem.targets
            singular_values = torch.linalg.svdvals(w)
            nuclear = float(singular_values.sum())
            effective, numerical = ranks(w)
            metrics.update({
                "effective_rank": effective, "numerical_rank": numerical,
                "train_loss": problem.loss_weight() * float(residual.pow(2).sum()),
                "relative_residual": float(torch.linalg.vector_norm(residual) / torch.linalg.vector_norm(problem.targets)),
                "reconstruction_error": problem.reconstruction_error(w),
                "matrix_error": float(torch.linalg.matrix_norm(w - problem.truth) / torch.linalg.matrix_norm(problem.truth)),
                "nuclear_norm": nuclear, "nuclear_ratio": nuclear / reference.nuclear_norm,
                "distance_to_min_nuclear": float(torch.linalg.matrix_norm(w - reference.matrix)
                                                 / torch.linalg.matrix_norm(reference.matrix)),
                "singular_values": singular_values.tolist(),
            })
    wall = time.perf_counter() - start
    return RunOutcome(trained["status"], metrics, curves, wall, provenance(target))


# --- summary -------------------------------------------------------------------------------------


def _by_depth(rows: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    return common.group(rows, lambda r: int(common.run_params(r)["depth"]))


def _per_seed_spearman(rows: list[dict[str, Any]], metric: str, min_depth: int = 1):
    """Spearman ρ between depth and ``metric`` within each seed (depths >= ``min_depth``; seeds
    with fewer than three such depths are skipped), and a bootstrap CI of its mean over seeds."""
    import scipy.stats

    from overparam.report import bootstrap_ci

    by_seed = common.group([r for r in rows if common.run_params(r)["depth"] >= min_depth and
                            metric in r["metrics"]], lambda r: r["seed"])
    rhos = []
    for seed_rows in by_seed.values():
        depths = [common.run_params(r)["depth"] for r in seed_rows]
        values = [r["metrics"][metric] for r in seed_rows]
        if len(set(depths)) >= 3 and len(set(values)) > 1:
            rhos.append(float(scipy.stats.spearmanr(depths, values).statistic))
    return bootstrap_ci(rhos), rhos


def _paired(rows_a: list, rows_b: list, metric: str) -> tuple[list[float], list[float]]:
    a = {r["seed"]: r["metrics"][metric] for r in rows_a if metric in r["metrics"]}
    b = {r["seed"]: r["metrics"][metric] for r in rows_b if metric in r["metrics"]}
    seeds = sorted(set(a) & set(b))
    return [a[s] for s in seeds], [b[s] for s in seeds]


TABLE = (  # metric, header
    ("effective_rank", "effective rank"),
    ("numerical_rank", "numerical rank"),
    ("reconstruction_error", "reconstruction error"),
    ("nuclear_ratio", "‖W‖_* / ‖W_nuc‖_*"),
    ("distance_to_min_nuclear", "‖W − W_nuc‖_F/‖W_nuc‖_F"),
    ("relative_residual", "train residual ‖A(W)−y‖/‖y‖"),
)


def summarize(rows: list[dict[str, Any]], config: DeepLinearConfig) -> list:
    from overparam.report import Claim, Section, bootstrap_ci, ratio_ci

    title = "deep_linear: depth and the low-rank bias of deep matrix factorization"
    done = common.done_rows(rows)
    by_depth = _by_depth(done)
    if len(by_depth) < 2:
        return [Section(title, "No two depths have finished runs yet.")]
    depths = list(by_depth)
    cis = {L: {m: bootstrap_ci(common.values(rs, m)) for m, _ in TABLE} for L, rs in by_depth.items()}
    one_per_seed = list({r["seed"]: r for r in done}.values())  # the problem and W_nuc depend on the seed only
    references = {m: bootstrap_ci(common.values(one_per_seed, m)) for m in
                  ("truth_effective_rank", "truth_numerical_rank", "reference_effective_rank",
                   "reference_numerical_rank", "reference_error", "reference_gap")}
    first = done[0]
    p = common.run_params(first)
    ambient = int(p["d"])
    deepest, shallowest = depths[-1], depths[0]
    seeds = config.seeds

    claims = []
    low = config.low_rank_fraction * ambient
    claims.append(Claim.from_ci(
        f"{NAME}.low_rank_at_max_depth", NAME,
        f"At depth L = {deepest} gradient descent from a small init finds a low-rank solution: the mean effective "
        f"rank (Roy–Vetterli entropy rank of W_L⋯W_1) over seeds is below {config.low_rank_fraction:g} × the "
        f"ambient dimension {ambient} = {low:g} (the ground truth has rank {p['rank']}).",
        PAPER_RANK, cis[deepest]["effective_rank"], less_than=low,
        details={"truth_effective_rank": references["truth_effective_rank"][0]}))
    rank_rho, rank_rhos = _per_seed_spearman(done, "effective_rank")
    claims.append(Claim.from_ci(
        f"{NAME}.depth_lowers_effective_rank", NAME,
        f"Depth strengthens the low-rank bias: the Spearman ρ between depth ({', '.join(map(str, depths))}) and the "
        f"final effective rank, computed within each seed (same problem and init), has a mean over seeds < 0.",
        "depth strengthens the low-rank bias (Arora et al. 2019)", rank_rho, less_than=0.0,
        details={"per_seed_rho": rank_rhos}))
    factorized = [L for L in depths if L >= 2]
    if len(factorized) >= 3:
        deep_rho, deep_rhos = _per_seed_spearman(done, "effective_rank", min_depth=2)
        claims.append(Claim.from_ci(
            f"{NAME}.depth_lowers_effective_rank_beyond_2", NAME,
            f"Depth beyond 2 strengthens the low-rank bias further (not explained by the nuclear norm): the per-seed "
            f"Spearman ρ between depth ({', '.join(map(str, factorized))}) and final effective rank, mean over "
            f"seeds < 0.", "deeper factorizations give lower effective rank than depth 2 (Arora et al. 2019)",
            deep_rho, less_than=0.0, details={"per_seed_rho": deep_rhos}))
    shallow_rank, deep_rank = _paired(by_depth[shallowest], by_depth[deepest], "effective_rank")
    claims.append(Claim.from_ci(
        f"{NAME}.effective_rank_ratio", NAME,
        f"Effective rank at depth {shallowest} / effective rank at depth {deepest}, paired by seed, > 1.",
        "depth strengthens the low-rank bias (Arora et al. 2019)", ratio_ci(shallow_rank, deep_rank),
        greater_than=1.0))
    if 2 in by_depth:
        tol = config.nuclear_tolerance
        claims.append(Claim.from_ci(
            f"{NAME}.depth2_min_nuclear_norm", NAME,
            f"The depth-2 factorization trained from a small init converges to (near) the minimum-nuclear-norm "
            f"solution of the same observations: ‖W_2W_1‖_* / min{{‖W‖_* : A(W) = y}}, mean over seeds, within "
            f"[{1 - tol:g}, {1 + tol:g}].", "ratio → 1 as the init → 0 (Gunasekar et al. 2017 conjecture)",
            cis[2]["nuclear_ratio"], within=(1 - tol, 1 + tol)))
    error_rho, error_rhos = _per_seed_spearman(done, "reconstruction_error")
    claims.append(Claim.from_ci(
        f"{NAME}.depth_lowers_reconstruction_error", NAME,
        "The reconstruction error of the unobserved part falls with depth: per-seed Spearman ρ between depth and "
        "reconstruction error, mean over seeds < 0.",
        "deeper factorizations recover the low-rank matrix more accurately (Arora et al. 2019)", error_rho,
        less_than=0.0, details={"per_seed_rho": error_rhos}))

    table = common.table(
        ["depth", "n"] + [h for _, h in TABLE],
        [[L, len(rs)] + [common.ci_text(cis[L][m]) for m, _ in TABLE] for L, rs in by_depth.items()]
        + [["min-nuclear-norm W_nuc", len(one_per_seed),
            common.ci_text(references["reference_effective_rank"]),
            common.ci_text(references["reference_numerical_rank"]),
            common.ci_text(references["reference_error"]), "1", "0", "0"],
           ["ground truth M*", len(one_per_seed),
            common.ci_text(references["truth_effective_rank"]),
            common.ci_text(references["truth_numerical_rank"]), "0", "", "", ""]])
    text = "\n\n".join([_setup(config, p, done), table, _reading(config, by_depth, cis, references, claims, p)])
    figures = [("deep_linear_rank_over_training", _curves_figure(by_depth, references, seeds)),
               ("deep_linear_vs_depth", _depth_figure(by_depth, cis, references, config)),
               ("deep_linear_spectra", _spectra_figure(by_depth, one_per_seed))]
    return [Section(title, text, figures, claims)]


def _setup(config: DeepLinearConfig, p: dict[str, Any], done: list) -> str:
    observed = (f"{p['n_observed']} of its {p['d'] ** 2} entries observed (uniformly random)"
                if p["problem"] == "completion" else f"{p['n_observed']} Gaussian linear measurements ⟨A_k, M*⟩")
    error = ("relative Frobenius error on the unobserved entries" if p["problem"] == "completion" else
             "relative Frobenius error of the whole matrix")
    converged = sum(bool(r["metrics"].get("reference_converged")) for r in done)
    return (f"Matrix {p['problem']}: a {p['d']}×{p['d']} ground truth M* of rank {p['rank']} (‖M*‖_F = sqrt(d)), "
            f"{observed}; seed s draws the problem and the init, shared by every depth. Model W = W_L⋯W_1 "
            f"(hidden width {p['width']}, {p['init']} init of scale {p['init_scale']:g}: the same initial end-to-end "
            f"matrix at every depth for the balanced init), {p['steps']} steps of full-batch gradient descent at lr "
            f"{p['lr']:g} on the squared error of the observations (scaled to estimate ½‖W − M*‖_F²). Effective rank: "
            f"Roy & Vetterli's entropy rank exp(H(σ/Σσ)); numerical rank: #σ_i > {p['rank_threshold']:g}·σ_1. "
            f"Reconstruction error: {error}. W_nuc: the minimum-nuclear-norm matrix consistent with the same "
            f"observations (ADMM, relative duality gap <= {p['reference_tol']:g}; certified in {converged} of "
            f"{len(done)} runs). Per depth: mean over seeds with a 95% bootstrap CI.")


def _reading(config: DeepLinearConfig, by_depth: dict, cis: dict, references: dict, claims: list,
             p: dict[str, Any]) -> str:
    depths = list(by_depth)
    shallow, deep = depths[0], depths[-1]
    verdicts = {c.id.split(".", 1)[1]: c for c in claims}

    def at(L: int, m: str) -> str:
        return common.fmt(cis[L][m][0], 3)

    rho = verdicts["depth_lowers_effective_rank"]
    text = (f"At depth {shallow} the learned matrix has effective rank {at(shallow, 'effective_rank')} (numerical rank "
            f"{at(shallow, 'numerical_rank')}); at depth {deep} {at(deep, 'effective_rank')} (numerical rank "
            f"{at(deep, 'numerical_rank')}), against {common.fmt(references['truth_effective_rank'][0], 3)} for the "
            f"rank-{p['rank']} ground truth and {common.fmt(references['reference_effective_rank'][0], 3)} for the "
            f"minimum-nuclear-norm solution (the paper reports 8.2 at L = 5 against ambient 50). The within-seed rank "
            f"correlation of depth and effective rank is {common.fmt(rho.measured, 3)} "
            f"[{common.fmt(rho.ci[0], 3)}, {common.fmt(rho.ci[1], 3)}] ({rho.verdict}).")
    if shallow == 1:
        left = ("which leaves the unobserved entries at their initial, near-zero values" if p["problem"] == "completion"
                else "the minimum-Frobenius-norm fit when the init is near zero")
        text += (f" Depth 1 is plain gradient descent on W: it converges to the interpolant nearest its init, {left} "
                 f"— not a low-rank matrix (reconstruction error {at(1, 'reconstruction_error')}); the step from L = 1 "
                 "to L = 2 is the contrast between no factorization and a factorization.")
    if "depth_lowers_effective_rank_beyond_2" in verdicts:
        beyond = verdicts["depth_lowers_effective_rank_beyond_2"]
        first = min(L for L in depths if L >= 2)
        text += (f" Among the factorized models alone the effective rank goes from {at(first, 'effective_rank')} "
                 f"(L = {first}) "
                 f"to {at(deep, 'effective_rank')} (L = {deep}), with a within-seed rank correlation of "
                 f"{common.fmt(beyond.measured, 3)} [{common.fmt(beyond.ci[0], 3)}, {common.fmt(beyond.ci[1], 3)}] "
                 f"({beyond.verdict}); a rank correlation registers the order, not the size, of these differences, "
                 f"which are to be read against the distance to the truth's effective rank.")
    if 2 in by_depth:
        text += (f" The depth-2 solution's nuclear norm is {common.ci_text(cis[2]['nuclear_ratio'], 4)} times the "
                 f"minimum (tolerance ±{config.nuclear_tolerance:g}).")
    text += (f" The reconstruction error is {at(shallow, 'reconstruction_error')} at L = {shallow} and "
             f"{at(deep, 'reconstruction_error')} at L = {deep}; the minimum-nuclear-norm solution's is "
             f"{common.fmt(references['reference_error'][0], 3)}")
    ref_error = references["reference_error"][0]
    text += (": with this many observations the convex relaxation already recovers M*, so the regime where depth "
             "beats the nuclear norm (fewer observations, Arora et al.'s Fig. 2) is not probed here."
             if math.isfinite(ref_error) and ref_error < 1e-3 else
             ": the convex relaxation does not recover M* from these observations, the regime where Arora et al. "
             "find deeper factorizations closer to M* than the nuclear norm.")
    text += (f" Confounds: the learned matrices keep a tail of small singular values of the size of the init "
             f"(scale {p['init_scale']:g}) in the directions the observations do not constrain, which lifts the "
             f"entropy effective rank above the truth's and sets the floor of the reconstruction error; and training "
             f"stops after a fixed {p['steps']} steps (final train residual in the table), not at exact interpolation.")
    return text


def _band(ax, xs, samples: list[list[float]], label: str, color, n: int) -> None:
    """Mean of ``samples`` (one list per seed, aligned on ``xs``) with a 95% bootstrap band."""
    from overparam.report import bootstrap_ci

    columns = list(zip(*samples))
    intervals = [bootstrap_ci(list(c), num_resamples=CURVE_RESAMPLES) for c in columns]
    mean = [c[0] for c in intervals]
    ax.plot(xs, mean, color=color, label=f"{label} (n={n}, 95% CI)", linewidth=1.6)
    low = [c[1] if math.isfinite(c[1]) else c[0] for c in intervals]
    high = [c[2] if math.isfinite(c[2]) else c[0] for c in intervals]
    ax.fill_between(xs, low, high, color=color, alpha=0.2, linewidth=0)


def _colors(depths: list[int]) -> dict[int, Any]:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return {L: cmap(0.9 * i / max(1, len(depths) - 1)) for i, L in enumerate(depths)}


def _curves_figure(by_depth: dict, references: dict, seeds: int):
    from overparam.report import new_figure

    fig, axes = new_figure(1, 2, width=13, height=4.6)
    colors = _colors(list(by_depth))
    for L, rows in by_depth.items():
        usable = [r["metrics"] for r in rows if r["metrics"].get("curve_steps")]
        if not usable:
            continue
        steps = usable[0]["curve_steps"]
        usable = [m for m in usable if m["curve_steps"] == steps]
        _band(axes[0], steps, [m["effective_rank_curve"] for m in usable], f"L = {L}", colors[L], len(usable))
        _band(axes[1], steps, [m["train_loss_curve"] for m in usable], f"L = {L}", colors[L], len(usable))
    truth, reference = references["truth_effective_rank"][0], references["reference_effective_rank"][0]
    axes[0].axhline(truth, color="black", linestyle="--", linewidth=1.1, label=f"ground truth M* ({truth:.3g})")
    axes[0].axhline(reference, color="tab:red", linestyle=":", linewidth=1.3,
                    label=f"min-nuclear-norm solution ({reference:.3g})")
    axes[0].set_ylabel("effective rank of W_L⋯W_1 (entropy)")
    axes[0].set_title("effective rank during training")
    axes[0].set_ylim(bottom=0)
    axes[1].set_yscale("log")
    # depth 1 interpolates to rounding (~1e-28); below 1e-12 of the initial loss nothing is left to see
    initial = max((r["metrics"]["train_loss_curve"][0] for rs in by_depth.values() for r in rs
                   if r["metrics"].get("train_loss_curve")), default=1.0)
    axes[1].set_ylim(bottom=1e-12 * initial)
    axes[1].set_ylabel("training loss (estimate of ½‖W − M*‖_F²)")
    axes[1].set_title("training loss")
    for ax in axes:
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlim(left=0)
        ax.set_xlabel("gradient-descent step (symlog: linear below 1)")
        ax.legend(fontsize=8, frameon=False, loc="upper right")
    return fig


def _depth_figure(by_depth: dict, cis: dict, references: dict, config: DeepLinearConfig):
    from overparam.report import errorbar_plot, new_figure
    from overparam.report.figures import PlainLogFormatter

    fig, axes = new_figure(1, 3, width=16, height=4.4)
    depths = list(by_depth)
    ns = [len(rs) for rs in by_depth.values()]

    def plot(ax, metric: str, label: str, color: str, marker: str = "o") -> None:
        c = [cis[L][metric] for L in depths]
        errorbar_plot(ax, depths, [v[0] for v in c], [v[1] for v in c], [v[2] for v in c], label, ns, color=color,
                      marker=marker, legend=False)

    plot(axes[0], "effective_rank", "effective rank (entropy)", "tab:blue")
    plot(axes[0], "numerical_rank", f"numerical rank (σ > {config.rank_threshold:g}σ_1)", "tab:orange", "s")
    axes[0].axhline(references["truth_effective_rank"][0], color="black", linestyle="--", linewidth=1.1,
                    label="M* effective rank")
    axes[0].set_yscale("log")
    axes[0].yaxis.set_major_formatter(PlainLogFormatter())
    axes[0].yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    axes[0].set_ylabel("rank of the learned matrix")
    axes[0].set_title("final rank vs depth")
    plot(axes[1], "reconstruction_error", "deep factorization", "tab:blue")
    ref_error = references["reference_error"][0]
    if math.isfinite(ref_error) and ref_error > 0:
        axes[1].axhline(ref_error, color="tab:red", linestyle=":", linewidth=1.3,
                        label=f"min-nuclear-norm solution ({ref_error:.2g})")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("relative reconstruction error")
    axes[1].set_title("reconstruction error vs depth")
    plot(axes[2], "nuclear_ratio", "‖W‖_* / ‖W_nuc‖_*", "tab:blue")
    axes[2].axhline(1.0, color="tab:red", linestyle=":", linewidth=1.3, label="minimum nuclear norm")
    for L in depths:  # the deep ratios sit within a few 1e-3 of 1: print them
        value = cis[L]["nuclear_ratio"][0]
        if math.isfinite(value):
            axes[2].annotate(f"{value:.4f}", (L, value), textcoords="offset points", xytext=(0, 8), ha="center",
                             fontsize=8)
    axes[2].set_ylabel("nuclear norm / minimum")
    axes[2].set_title("nuclear norm relative to the minimum")
    for ax in axes:
        ax.set_xticks(depths)
        ax.set_xlabel("depth L (number of factors)")
        ax.legend(fontsize=8, frameon=False)
    return fig


def _spectra_figure(by_depth: dict, one_per_seed: list):
    from overparam.report import new_figure

    fig, ax = new_figure(width=7.5, height=4.8)
    colors = _colors(list(by_depth))
    for L, rows in by_depth.items():
        spectra = [r["metrics"]["singular_values"] for r in rows if r["metrics"].get("singular_values")]
        if spectra:
            _band(ax, list(range(1, len(spectra[0]) + 1)), spectra, f"L = {L}", colors[L], len(spectra))
    for metric, label, color, style, marker in (
            ("reference_singular_values", "min-nuclear-norm solution (tail: solver tolerance)", "tab:red", ":", "."),
            ("truth_singular_values", "ground truth M*", "black", "--", "x")):
        spectra = [r["metrics"][metric] for r in one_per_seed if r["metrics"].get(metric)]
        if spectra:
            mean = np.mean(np.asarray(spectra, dtype=float), axis=0)
            floor = 1e-12 * float(mean[0])  # exact zeros of a low-rank matrix would vanish off a log axis
            index = np.arange(1, len(mean) + 1)
            keep = mean > floor
            ax.plot(index[keep], mean[keep], color=color, linestyle=style, marker=marker, linewidth=1.3, zorder=4,
                    label=f"{label} (mean over {len(spectra)} seeds)")
    ax.set_yscale("log")
    ax.set_xlabel("index i (singular values in decreasing order)")
    ax.set_ylabel("singular value σ_i")
    ax.set_title("spectra of the learned end-to-end matrices")
    ax.legend(fontsize=8, frameon=False)
    return fig


STUDY = Study(
    name=NAME,
    description="deep matrix factorization (completion/sensing, L = 1..5, small init): effective rank over training, "
                "nuclear norm vs the minimum-nuclear-norm solution, reconstruction error",
    config_type=DeepLinearConfig,
    grid=grid,
    run_one=run_one,
    legacy_summarize=summarize,
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
