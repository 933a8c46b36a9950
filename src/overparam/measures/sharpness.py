"""Flatness of the training loss around the trained parameters θ.

Three measures, each a plain function of ``(model, [loss_fn,] data, ...)`` over *all* of
``data`` (batch means weighted by their sample counts), with ``θ`` the flat vector of the
model's trainable parameters in ``model.parameters()`` order (dimension n):

- :func:`keskar_sharpness`: the ε-sharpness of Keskar et al. 2017 ("On large-batch training for
  deep learning: generalization gap and sharp minima"), a worst case over a box, maximized by
  L-BFGS-B.
- :func:`perturbation_sensitivity`: the expected loss increase E[L(θ + δ) − L(θ)] under random
  Gaussian perturbations scaled per layer, per filter (Li et al. 2018) or absolutely.
- :func:`pac_bayes_flatness`: the PAC-Bayesian flatness of Jiang et al. 2020 ("Fantastic
  generalization measures and where to find them"): the largest noise level σ' the training
  accuracy tolerates, found by bisection, and the bound terms built from it.

Every perturbation is written into the parameters in place under ``torch.no_grad`` as
``p.copy_(saved + δ)`` and undone by copying the saved originals back (never by subtracting
δ), so the parameters are bit-identical afterwards; :func:`~overparam.measures.common.preserved`
restores the mode, ``.grad``, ``requires_grad`` and the global RNG states. All randomness comes
from a ``torch.Generator`` on the parameters' device seeded with ``seed``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from overparam.errors import ConfigError, check_positive_int
from overparam.measures.common import (
    Batch,
    Cost,
    LossFn,
    as_batches,
    flatten,
    mean_loss_and_grad,
    num_examples,
    preserved,
    timed,
    trainable_parameters,
    unflatten,
)
from overparam.measures.norms import init_parameters

KESKAR_INITS = ("corner", "random", "zero")
RELATIVE_MODES = ("layer", "filter", "none")


# ---------------------------------------------------------------------------------------------
# shared helpers


def _check_positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (value >= 0 if allow_zero else value > 0)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def _params_or_raise(model: nn.Module) -> list[nn.Parameter]:
    params = trainable_parameters(model)
    if not params:
        raise ConfigError("the model has no trainable parameters (requires_grad=True) to perturb")
    return params


@contextlib.contextmanager
def _perturbable(params: Sequence[nn.Parameter]) -> Iterator[list[Tensor]]:
    """Save copies of ``params``; yield them; afterwards copy them back (bit-exact restore)."""
    saved = [p.detach().clone() for p in params]
    try:
        yield saved
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


@torch.no_grad()
def _set(params: Sequence[nn.Parameter], saved: Sequence[Tensor], deltas: Sequence[Tensor] | None) -> None:
    """θ ← θ_saved + δ in place (θ_saved itself when ``deltas`` is None)."""
    for p, s, d in zip(params, saved, deltas if deltas is not None else [None] * len(saved)):
        p.copy_(s if d is None else s + d)


def _mean_loss(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], cost: Cost) -> float:
    """Mean loss over all examples (batch means weighted by size), without gradients."""
    n = num_examples(batches)
    total = None
    with torch.no_grad():
        for x, y in batches:
            term = loss_fn(model(x), y).detach().double() * (len(x) / n)
            total = term if total is None else total + term
            cost.forward += len(x)
    return float(total)


def _loss_and_grad(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], params: Sequence[nn.Parameter],
                   cost: Cost) -> tuple[float, Tensor]:
    """Mean loss over all examples and its flat gradient w.r.t. ``params``."""
    loss, grads = mean_loss_and_grad(model, loss_fn, batches, params, cost)
    return float(loss.double()), flatten(grads)


def _correct(outputs: Tensor, y: Tensor) -> Tensor:
    """Boolean (batch,) of correct predictions. Outputs (batch, classes >= 2): argmax == y with
    integer labels y (batch,). Outputs (batch,) or (batch, 1): the sign decides, f > 0 predicting
    the positive class; y > 0 marks the positive class (labels {0, 1} or {−1, +1})."""
    if outputs.dim() == 2 and outputs.shape[1] >= 2:
        if y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ConfigError(f"accuracy needs integer class labels of shape (batch,) for outputs of shape "
                              f"{tuple(outputs.shape)}, got labels of dtype {y.dtype} and shape {tuple(y.shape)}")
        return outputs.argmax(dim=1) == y.to(outputs.device)
    if outputs.dim() == 1 or (outputs.dim() == 2 and outputs.shape[1] == 1):
        return (outputs.reshape(-1) > 0) == (y.reshape(-1).to(outputs.device) > 0)
    raise ConfigError(f"accuracy needs outputs of shape (batch, classes) or (batch,), got {tuple(outputs.shape)}")


def _accuracy(model: nn.Module, batches: Sequence[Batch], cost: Cost) -> float:
    n = num_examples(batches)
    correct = 0
    with torch.no_grad():
        for x, y in batches:
            correct += int(_correct(model(x), y).sum())
            cost.forward += len(x)
    return correct / n


def _generator(seed: int, device: torch.device) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device=device).manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Keskar et al. 2017: ε-sharpness


@dataclass
class KeskarResult:
    """ε-sharpness φ(ε, A) in percent, with what it was computed from.

    ``loss`` is f(θ); ``max_loss`` the largest finite loss of every point evaluated (θ, the
    candidates and L-BFGS-B's points; >= ``loss``), so ``value`` >= 100·(v − f(θ))/(1 + f(θ))
    for every candidate value v. ``corner_value`` is f at the first-order corner
    z = sign(∇_z f(0)); ``vertex_value`` the largest finite f over the ``num_vertices`` random
    vertices (nan when there were none). ``start`` is where L-BFGS-B started: 'theta' (z = 0), 'corner',
    'vertex' (the best random vertex) or 'random' (a uniform point of the box); ``found_by``
    is the point that gave ``max_loss``: 'theta', 'corner', 'vertex' or 'lbfgsb' (L-BFGS-B beat
    every candidate). ``iterations``/``evaluations`` are L-BFGS-B's iteration and
    function-evaluation counts (each evaluation one forward and backward pass over all data,
    except those at θ or the corner, served from the candidates and counted in
    ``cost.extra['reused_evaluations']``); ``converged`` is scipy's success flag (False when
    ``max_iter`` stopped it, the paper's setting) and ``message`` its reason;
    ``perturbation_norm`` is ||A y*|| for the maximizer y*.
    """

    value: float
    loss: float
    max_loss: float
    epsilon: float
    subspace_dim: int | None
    iterations: int
    evaluations: int
    converged: bool
    message: str
    perturbation_norm: float
    corner_value: float = math.nan
    vertex_value: float = math.nan
    start: str = "theta"
    found_by: str = "theta"
    cost: Cost = field(default_factory=Cost)


def keskar_sharpness(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch], epsilon: float = 1e-3,
                     subspace_dim: int | None = None, seed: int = 0, max_iter: int = 10, *, init: str = "corner",
                     num_vertices: int = 8, basis: Tensor | None = None, batch_size: int | None = None,
                     mode: str | None = "eval") -> KeskarResult:
    """ε-sharpness of Keskar et al. 2017 (their Metric 2.1), in percent:

        φ(ε, A) = 100 · (max_{y ∈ C_ε} f(θ + A y) − f(θ)) / (1 + f(θ)),
        C_ε = {y ∈ R^p : |y_i| ≤ ε (|(A⁺θ)_i| + 1)},

    f the mean loss over all of ``data`` and θ ∈ R^n the trainable parameters.

    - ``subspace_dim=None``: full space, A = I_n, p = n, so the box is
      |y_i| ≤ ε(|θ_i| + 1) around every parameter.
    - ``subspace_dim=p``: a random p-dimensional subspace, A ∈ R^{n×p} with iid N(0, 1) entries
      (drawn from ``seed``), A⁺θ = argmin_z ||A z − θ|| (least squares in float64; needs p ≤ n
      and A of full column rank).
    - ``basis``: an explicit A (n, p) instead, e.g. the same subspace for every checkpoint of a
      run (``subspace_dim``, if also given, must equal p).

    Everything runs in the scaled variable z = y / r ∈ [−1, 1]^p (r the box half-widths), so
    every coordinate's bound has the same size; g(z) = f(θ + A (r ⊙ z)), ∇_z g = r ⊙ A^T ∇f.

    1. Candidates, evaluated first: θ itself (z = 0, with its gradient); the first-order corner
       z_c = sign(∇_z g(0)) (+1 where that gradient is exactly 0), the vertex maximizing the
       linearization of g, with its gradient; and ``num_vertices`` random vertices, each an
       iid uniform ±1 vector (from ``seed``), forward only.
    2. L-BFGS-B: ``scipy.optimize.minimize(method='L-BFGS-B')`` on −(g − f(θ))/s over the box
       [−1, 1]^p, in float64 numpy, with the exact gradient from autograd over all data. s is
       the largest |∂g/∂z_i| at θ and at the corner (1 if all are 0), so the first step
       (L-BFGS-B starts from B = I) moves the steepest coordinate across the whole box instead of
       by ~ε·|∇f|, which float32 losses cannot resolve. It stops after ``max_iter`` iterations
       (the paper: 10) or at a point where the projected gradient is exactly zero (``ftol`` and
       ``gtol`` are 0). ``init='corner'`` (default) starts it from the best candidate of step 1;
       'zero' from θ (it cannot move at an exact critical point); 'random' from z uniform in
       the box (from ``seed``).

    Guarantee: ``max_loss`` is the largest finite loss of every point evaluated, candidates
    included, whatever the init, so the returned φ ≥ φ at θ (0), at the first-order corner and
    at every random vertex tried. L-BFGS-B finds a local maximum; the result is a lower bound
    on the true box maximum, exact when f is convex in the parameters (its maximum is then a
    vertex) and L-BFGS-B or a candidate reaches the best vertex. The paper's choices:
    ε ∈ {1e-3, 5e-4}.

    Cost, in passes over all data: forward 2 + ``num_vertices`` + E − R, backward 2 + E − R,
    E = ``evaluations`` (L-BFGS-B's), R = ``cost.extra['reused_evaluations']`` (those of its
    points that are exactly θ or the corner, e.g. its start, whose loss and gradient are
    reused). The candidates add 1 + ``num_vertices`` forward and 1 backward pass to the 1 + E
    of L-BFGS-B alone. Memory ~ 10 (L-BFGS-B history) x p float64 on the host, plus a few
    p-vectors (the candidates), plus A (n x p in the model dtype, and a float64 copy while
    solving for A⁺θ) for a subspace.
    """
    epsilon = _check_positive("epsilon", epsilon)
    check_positive_int("max_iter", max_iter)
    check_positive_int("num_vertices", num_vertices, minimum=0)
    if subspace_dim is not None:
        check_positive_int("subspace_dim", subspace_dim)
    if basis is not None:
        if not (isinstance(basis, Tensor) and basis.dim() == 2 and basis.is_floating_point()):
            raise ConfigError(f"basis must be a 2-D float tensor (num_params, p), got "
                              f"{tuple(basis.shape) if isinstance(basis, Tensor) else type(basis).__name__}")
        if subspace_dim is not None and subspace_dim != basis.shape[1]:
            raise ConfigError(f"subspace_dim={subspace_dim} does not match basis with {basis.shape[1]} columns")
        subspace_dim = basis.shape[1]
    if init not in KESKAR_INITS:
        raise ConfigError(f"unknown init {init!r}; accepted: {KESKAR_INITS}")
    from scipy.optimize import Bounds, minimize

    batches = as_batches(data, batch_size)
    cost = Cost()
    with preserved(model, mode), timed(cost):
        params = _params_or_raise(model)
        with _perturbable(params) as saved:
            theta = flatten(saved)
            n, dtype, device = theta.numel(), theta.dtype, theta.device
            gen = _generator(seed, device)
            if subspace_dim is None:
                a = None
                radius = epsilon * (theta.double().abs() + 1)
            else:
                if subspace_dim > n:
                    raise ConfigError(f"subspace_dim={subspace_dim} exceeds the number of parameters {n}")
                if basis is None:
                    a = torch.randn(n, subspace_dim, generator=gen, dtype=dtype, device=device)
                elif basis.shape[0] != n:
                    raise ConfigError(f"basis has {basis.shape[0]} rows but the model has {n} trainable parameters")
                else:
                    a = basis.detach().to(device=device, dtype=dtype)
                coords = torch.linalg.lstsq(a.double(), theta.double().unsqueeze(1)).solution.squeeze(1)
                radius = epsilon * (coords.abs() + 1)
            radius_np = radius.cpu().numpy()
            dim = radius_np.size

            def move_to(z: np.ndarray | None) -> None:
                """Parameters ← θ + A (r ⊙ z) (θ itself, bit-exact, for None)."""
                if z is None:
                    _set(params, saved, None)
                    return
                y = torch.from_numpy(z * radius_np).to(device=device, dtype=dtype)
                _set(params, saved, unflatten(y if a is None else a @ y, saved))

            def value_and_grad(z: np.ndarray | None) -> tuple[float, np.ndarray]:
                move_to(z)
                value, g = _loss_and_grad(model, loss_fn, batches, params, cost)
                if a is not None:
                    g = a.T @ g
                return value, g.double().cpu().numpy() * radius_np

            def forward_only(z: np.ndarray) -> float:
                move_to(z)
                return _mean_loss(model, loss_fn, batches, cost)

            # 1. candidates
            z0_random = None
            if init == "random":  # drawn first: the same start as before candidates existed
                z0_random = (torch.rand(dim, generator=gen, device=device, dtype=torch.float64) * 2 - 1).cpu().numpy()
            origin = np.zeros(dim)
            f0, grad0 = value_and_grad(None)
            best = {"loss": f0, "z": origin, "by": "theta"}

            def record(value: float, z: np.ndarray, by: str) -> None:
                if math.isfinite(value) and value > best["loss"]:
                    best["loss"], best["z"], best["by"] = value, z.copy(), by

            corner = np.where(grad0 < 0, -1.0, 1.0)
            corner_value, corner_grad = value_and_grad(corner)
            record(corner_value, corner, "corner")
            cache = {origin.tobytes(): (f0, grad0), corner.tobytes(): (corner_value, corner_grad)}
            vertex_values = []
            for _ in range(num_vertices):
                vertex = (torch.randint(0, 2, (dim,), generator=gen, device=device, dtype=torch.float64) * 2 - 1)
                vertex = vertex.cpu().numpy()
                vertex_values.append(forward_only(vertex))
                record(vertex_values[-1], vertex, "vertex")
            finite = [v for v in vertex_values if math.isfinite(v)]
            vertex_value = max(finite) if finite else math.nan

            # 2. L-BFGS-B from the chosen start
            if init == "random":
                z0, start = z0_random, "random"
            elif init == "zero":
                z0, start = origin, "theta"
            else:
                z0, start = best["z"], best["by"]
            slopes = np.abs(np.concatenate([grad0, corner_grad]))
            slopes = slopes[np.isfinite(slopes)]
            steepest = float(slopes.max()) if slopes.size else 0.0
            scale = 1.0 / steepest if steepest > 0 else 1.0
            reused = 0

            def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
                nonlocal reused
                hit = cache.get(np.ascontiguousarray(z, dtype=np.float64).tobytes())
                if hit is None:
                    value, gz = value_and_grad(z)
                else:
                    (value, gz), reused = hit, reused + 1
                if not math.isfinite(value):  # steer the line search away from a blow-up
                    return math.inf, np.zeros(dim)
                record(value, z, "lbfgsb")
                return -(value - f0) * scale, -gz * scale

            result = minimize(objective, z0, jac=True, method="L-BFGS-B", bounds=Bounds(-np.ones(dim), np.ones(dim)),
                              options={"maxiter": max_iter, "ftol": 0.0, "gtol": 0.0})
            y_best = torch.from_numpy(best["z"] * radius_np)
            step_norm = float(y_best.norm()) if a is None else float((a @ y_best.to(device=device, dtype=dtype)).norm())
    cost.extra["evaluations"] = float(result.nfev)
    cost.extra["reused_evaluations"] = float(reused)
    cost.extra["candidates"] = float(1 + num_vertices)
    value = 100.0 * (best["loss"] - f0) / (1.0 + f0)
    return KeskarResult(value=value, loss=f0, max_loss=best["loss"], epsilon=epsilon, subspace_dim=subspace_dim,
                        iterations=int(result.nit), evaluations=int(result.nfev), converged=bool(result.success),
                        message=str(result.message), perturbation_norm=step_norm, corner_value=corner_value,
                        vertex_value=vertex_value, start=start, found_by=best["by"], cost=cost)


# ---------------------------------------------------------------------------------------------
# expected loss increase under random perturbations


@dataclass
class SensitivityResult:
    """Per σ in ``sigmas``: ``mean_increase`` = mean over draws of L(θ + σu) − L(θ), its
    ``stderr`` (sample std over draws / sqrt(num_draws); nan for one draw); ``loss`` = L(θ)."""

    sigmas: list[float]
    mean_increase: list[float]
    stderr: list[float]
    num_draws: int
    relative: str
    loss: float
    cost: Cost = field(default_factory=Cost)


def _direction(saved: Sequence[Tensor], relative: str, gen: torch.Generator) -> list[Tensor]:
    """One random direction u (a list shaped like the parameters); the perturbation is σ u."""
    out = []
    for s in saved:
        z = torch.randn(s.shape, generator=gen, dtype=s.dtype, device=s.device)
        if relative == "layer":
            z = z * (s.norm() / math.sqrt(s.numel()))
        elif relative == "filter":
            if s.dim() < 2:
                z = torch.zeros_like(s)
            else:
                rows = z.reshape(s.shape[0], -1)
                target = s.reshape(s.shape[0], -1).norm(dim=1, keepdim=True)
                z = (rows * (target / rows.norm(dim=1, keepdim=True))).reshape(s.shape)
        out.append(z)
    return out


def perturbation_sensitivity(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch],
                             sigmas: float | Sequence[float], num_draws: int = 10, relative: str = "layer",
                             seed: int = 0, *, batch_size: int | None = None,
                             mode: str | None = "eval") -> SensitivityResult:
    """Expected loss increase E_δ[L(θ + δ) − L(θ)] under Gaussian perturbations δ = σ u.

    ``relative`` sets the shape of u, per parameter tensor θ_l with n_l entries:

    - 'layer': u_l ~ N(0, ||θ_l||² / n_l · I), so E||δ_l||² = σ²||θ_l||² (every tensor, biases
      and normalization parameters included, is a "layer").
    - 'filter' (Li et al. 2018, "Visualizing the loss landscape of neural nets"): for each
      tensor with >= 2 dims viewed as (out, −1), every row ("filter": a conv output channel's
      kernel, a linear unit's incoming weights) of a standard normal draw is rescaled to the
      norm of the same row of θ, so ||δ_row|| = σ||θ_row|| exactly; tensors with < 2 dims
      (biases, BatchNorm) are not perturbed, their 'biasbn' convention.
    - 'none': u ~ N(0, I), absolute size σ; for a quadratic L with Hessian H,
      E[L(θ + δ) − L(θ)] = ½ σ² tr(H).

    The same ``num_draws`` directions u (from ``seed``) are used for every σ (common random
    numbers: the curve over σ is smooth in σ and differences between sigmas are less noisy).
    L(θ) is exact, so the standard error is that of the mean over draws.

    Returns a :class:`SensitivityResult` with one entry per σ. Cost: (1 + num_draws·len(sigmas))
    forward passes over all data, no backward.
    """
    single = isinstance(sigmas, numbers.Real) and not isinstance(sigmas, bool)
    sigma_list = [sigmas] if single else list(sigmas)
    if not sigma_list:
        raise ConfigError("sigmas must be a number or a non-empty sequence of numbers >= 0, got an empty sequence")
    sigma_list = [_check_positive("each sigma", s, allow_zero=True) for s in sigma_list]
    check_positive_int("num_draws", num_draws)
    if relative not in RELATIVE_MODES:
        raise ConfigError(f"unknown relative mode {relative!r}; accepted: {RELATIVE_MODES}")
    batches = as_batches(data, batch_size)
    cost = Cost()
    increases = np.zeros((num_draws, len(sigma_list)))
    with preserved(model, mode), timed(cost):
        params = _params_or_raise(model)
        with _perturbable(params) as saved:
            base = _mean_loss(model, loss_fn, batches, cost)
            gen = _generator(seed, saved[0].device)
            for k in range(num_draws):
                u = _direction(saved, relative, gen)
                for j, sigma in enumerate(sigma_list):
                    _set(params, saved, [sigma * t for t in u])
                    increases[k, j] = _mean_loss(model, loss_fn, batches, cost) - base
    mean = increases.mean(axis=0)
    stderr = increases.std(axis=0, ddof=1) / math.sqrt(num_draws) if num_draws > 1 else np.full(len(sigma_list), np.nan)
    return SensitivityResult(sigmas=sigma_list, mean_increase=[float(v) for v in mean],
                             stderr=[float(v) for v in stderr], num_draws=num_draws, relative=relative, loss=base,
                             cost=cost)


# ---------------------------------------------------------------------------------------------
# Jiang et al. 2020: PAC-Bayesian flatness


@dataclass
class PacBayesResult:
    """The noise level σ' the training accuracy tolerates, and the bound terms built from it.

    ``sigma`` is σ' (the midpoint of the final bisection bracket ``bracket`` = (lo, hi): lo
    met the accuracy criterion, hi did not); ``bracketed`` is False when no failing σ was found
    within the allowed expansions (then σ' = lo is only a lower bound). ``curve`` lists
    (σ, mean accuracy, standard error over draws) for every σ evaluated, sorted by σ, σ = 0
    (the unperturbed ``accuracy``) first. ``flatness`` = 1/σ'²; ``bound`` = ``complexity`` +
    log(m/δ) + 10 (Jiang et al.'s form); ``kl`` the exact KL(Q‖P) of the perturbation
    distribution Q to the prior P described in :func:`pac_bayes_flatness`.
    """

    sigma: float
    bracket: tuple[float, float]
    bracketed: bool
    accuracy: float
    target_drop: float
    magnitude_aware: bool
    curve: list[tuple[float, float, float]]
    flatness: float
    complexity: float
    bound: float
    kl: float
    num_params: int
    num_examples: int
    num_draws: int
    cost: Cost = field(default_factory=Cost)


def pac_bayes_flatness(model: nn.Module, data: Batch | Iterable[Batch], target_drop: float = 0.1,
                       magnitude_aware: bool = False, *, init_params=None, num_draws: int = 10,
                       bracket: tuple[float, float] = (0.0, 1.0), rtol: float = 0.01, max_steps: int = 40,
                       max_expansions: int = 10, magnitude_eps: float = 1e-3, delta: float = 0.05, seed: int = 0,
                       batch_size: int | None = None, mode: str | None = "eval") -> PacBayesResult:
    """PAC-Bayesian flatness of Jiang et al. 2020 ("Fantastic generalization measures", their
    Appendix C.3, measures pacbayes.{init,orig,flatness} and pacbayes.mag.{init,orig,flatness}).

    Noise: θ + u with, per coordinate i of the trainable parameters θ ∈ R^ω (all of them:
    weights, biases, normalization parameters),
        plain:            u_i ~ N(0, σ²)
        magnitude_aware:  u_i ~ N(0, σ² θ_i² + ε²),  ε = ``magnitude_eps`` (1e-3, the paper's).

    σ' is the largest σ with acc(θ) − E_u[acc(θ + u)] ≤ ``target_drop``, acc the training
    accuracy over all of ``data`` (argmax for (batch, classes) outputs, the sign for a single
    output). Jiang et al. ask for E[training error] ≤ 0.1 on networks trained to ~100% accuracy,
    which is this criterion with target_drop = 0.1. E_u is a Monte Carlo mean over
    ``num_draws`` draws (the same standard-normal draws, from ``seed``, rescaled for every σ:
    common random numbers make the estimated curve a fixed function of σ to bisect).

    Search: start from ``bracket`` = (lo, hi), lo meeting the criterion (σ = 0 does trivially);
    while hi still meets it, lo ← hi, hi ← 2 hi (at most ``max_expansions`` times in all; while
    a lo > 0 fails, hi ← lo, lo ← lo/2). If hi still meets it after that, or acc(θ) <=
    target_drop (no noise can fail the criterion), ``bracketed`` is False and σ' = hi.
    Otherwise bisect at (lo + hi)/2 until hi − lo ≤ rtol·hi or ``max_steps`` steps, and
    report σ' = (lo + hi)/2: within rtol/2 (relative) of the crossing
    of the *estimated* curve, whose own error is set by the Monte Carlo standard errors in
    ``curve`` (with slope dacc/dσ, σ error ≈ stderr / |slope|).

    Bound terms (m = number of examples, δ = ``delta``, θ₀ = ``init_params``, default θ₀ = 0,
    which gives the paper's "orig" measures; pass the initial parameters for "init"):
        plain:      complexity = ||θ − θ₀||² / (4σ'²);  kl = ||θ − θ₀||² / (2σ'²)
                    (Q = N(θ, σ'² I), P = N(θ₀, σ'² I)), so complexity = kl / 2
        magnitude:  complexity = ¼ Σ_i log( (ε² + (σ'² + 1)||θ − θ₀||²/ω)
                                              / (ε² + σ'²(θ_i − θ₀_i)²) )
                    (Jiang et al.'s formula, as public re-implementations of their measures
                    compute it); kl = ½ Σ_i log(τ² / s_i²) with
                    s_i² = σ'²θ_i² + ε² (the noise actually used) and the best isotropic prior
                    P = N(θ₀, τ² I), τ² = (Σ_i s_i² + ||θ − θ₀||²)/ω. For θ₀ = 0 the two agree:
                    complexity = kl / 2 exactly; for θ₀ ≠ 0 that formula puts θ − θ₀ where
                    the noise has θ, so they differ.
        bound = complexity + log(m/δ) + 10,   flatness = 1/σ'².
    (Public re-implementations of Jiang et al.'s measures, e.g. the robust-generalization-measures
    code, add log(m/σ') instead; we use log(m/δ), the term of the PAC-Bayes bound the measures
    come from. Either additive term is small next to the complexity and changes no ranking
    between models with similar σ'.)

    Cost: one pass for acc(θ), then num_draws forward passes over all data per σ evaluated
    (len(curve) − 1 of them); no backward passes.
    """
    target_drop = _check_positive("target_drop", target_drop)
    if not target_drop < 1:
        raise ConfigError(f"target_drop must be in (0, 1), got {target_drop!r}")
    check_positive_int("num_draws", num_draws)
    check_positive_int("max_steps", max_steps)
    check_positive_int("max_expansions", max_expansions, minimum=0)
    rtol = _check_positive("rtol", rtol)
    magnitude_eps = _check_positive("magnitude_eps", magnitude_eps, allow_zero=not magnitude_aware)
    delta = _check_positive("delta", delta)
    if not delta < 1:
        raise ConfigError(f"delta must be in (0, 1), got {delta!r}")
    if not (isinstance(bracket, (tuple, list)) and len(bracket) == 2):
        raise ConfigError(f"bracket must be a pair (lo, hi) with 0 <= lo < hi, got {bracket!r}")
    lo, hi = (_check_positive("bracket[0]", bracket[0], allow_zero=True), _check_positive("bracket[1]", bracket[1]))
    if not lo < hi:
        raise ConfigError(f"bracket must be a pair (lo, hi) with 0 <= lo < hi, got {bracket!r}")
    batches = as_batches(data, batch_size)
    m = num_examples(batches)
    cost = Cost()
    with preserved(model, mode), timed(cost):
        params = _params_or_raise(model)
        init = init_parameters(model, init_params)
        with _perturbable(params) as saved:
            acc0 = _accuracy(model, batches, cost)
            curve: dict[float, tuple[float, float]] = {0.0: (acc0, 0.0)}
            device = saved[0].device

            def evaluate(sigma: float) -> bool:
                """Estimate E[acc(θ + u)] at σ; True when the drop is within the target."""
                if sigma not in curve:
                    gen = _generator(seed, device)  # the same draws for every σ
                    accs = []
                    for _ in range(num_draws):
                        noise = []
                        for s in saved:
                            z = torch.randn(s.shape, generator=gen, dtype=s.dtype, device=s.device)
                            scale = torch.sqrt(sigma**2 * s * s + magnitude_eps**2) if magnitude_aware else sigma
                            noise.append(z * scale)
                        _set(params, saved, noise)
                        accs.append(_accuracy(model, batches, cost))
                    _set(params, saved, None)
                    mean = float(np.mean(accs))
                    stderr = float(np.std(accs, ddof=1) / math.sqrt(num_draws)) if num_draws > 1 else math.nan
                    curve[sigma] = (mean, stderr)
                return acc0 - curve[sigma][0] <= target_drop

            bracketed = acc0 > target_drop  # else no σ can fail the criterion: σ' = ∞
            expansions = 0
            while bracketed and lo > 0 and not evaluate(lo):
                if expansions == max_expansions:
                    raise ConfigError(f"no sigma >= {lo!r} keeps the accuracy drop within target_drop={target_drop}; "
                                      f"give a smaller bracket[0] (accepted: any 0 <= lo < hi)")
                lo, hi = lo / 2, lo
                expansions += 1
            while bracketed and evaluate(hi):
                if expansions == max_expansions:
                    bracketed = False
                    break
                lo, hi = hi, 2 * hi
                expansions += 1
            if bracketed:
                for _ in range(max_steps):
                    if hi - lo <= rtol * hi:
                        break
                    mid = (lo + hi) / 2
                    if evaluate(mid):
                        lo = mid
                    else:
                        hi = mid
                sigma = (lo + hi) / 2
            else:
                lo = hi
                sigma = hi

        theta = flatten(saved).double()
        theta0 = flatten(init).double().to(theta.device)
        diff_sq = (theta - theta0).pow(2)
        omega = theta.numel()
        if magnitude_aware:
            eps2 = magnitude_eps**2
            numerator = eps2 + (sigma**2 + 1) * diff_sq.sum() / omega
            complexity = float(0.25 * torch.log(numerator / (eps2 + sigma**2 * diff_sq)).sum())
            s2 = sigma**2 * theta.pow(2) + eps2
            tau2 = (s2.sum() + diff_sq.sum()) / omega
            kl = float(0.5 * torch.log(tau2 / s2).sum())
        else:
            complexity = float(diff_sq.sum() / (4 * sigma**2))
            kl = 2 * complexity
    bound = complexity + math.log(m / delta) + 10
    points = sorted((s, a, e) for s, (a, e) in curve.items())
    cost.extra["sigmas_evaluated"] = float(len(points) - 1)
    return PacBayesResult(sigma=sigma, bracket=(lo, hi), bracketed=bracketed, accuracy=acc0, target_drop=target_drop,
                          magnitude_aware=magnitude_aware, curve=points, flatness=1.0 / sigma**2,
                          complexity=complexity, bound=bound, kl=kl, num_params=omega, num_examples=m,
                          num_draws=num_draws, cost=cost)


# ---------------------------------------------------------------------------------------------
# Keskar et al. 2017, Figure 3: the loss along the line between two solutions


@dataclass
class LineResult:
    """Mean loss and accuracy over ``data`` at θ(α) = (1 − α) θ_a + α θ_b for each α."""

    alphas: list[float]
    losses: list[float]
    accuracies: list[float]
    cost: Cost = field(default_factory=Cost)


def loss_along_line(model_a: nn.Module, model_b: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch],
                    alphas: Sequence[float], *, batch_size: int | None = None,
                    mode: str | None = "eval") -> LineResult:
    """The 1-D parametric plot of Keskar et al. 2017 (their Figure 3): for each α,
    L(θ(α)) and accuracy with θ(α) = (1 − α) θ_a + α θ_b (α = 0 is ``model_a``, α = 1 is
    ``model_b``; α outside [0, 1] extrapolates beyond them).

    The two models must have the same parameter names and shapes (buffers, e.g. BatchNorm
    statistics, are taken from ``model_a``). Evaluated on a copy of ``model_a``: neither model
    is changed. Cost: len(alphas) forward passes over the data, no backward.
    """
    alpha_list = [float(a) for a in alphas]
    if not alpha_list or not all(math.isfinite(a) for a in alpha_list):
        raise ConfigError(f"alphas must be a non-empty sequence of finite numbers, got {alphas!r}")
    params_a, params_b = dict(model_a.named_parameters()), dict(model_b.named_parameters())
    if params_a.keys() != params_b.keys() or any(params_a[k].shape != params_b[k].shape for k in params_a):
        raise ConfigError("loss_along_line needs two models with the same parameter names and shapes")
    batches = as_batches(data, batch_size)
    cost = Cost()
    probe = copy.deepcopy(model_a)
    probe_params = dict(probe.named_parameters())
    losses, accuracies = [], []
    classification = not batches[0][1].dtype.is_floating_point  # integer labels
    with preserved(probe, mode), timed(cost), torch.no_grad():
        for alpha in alpha_list:
            for name, p in probe_params.items():
                p.copy_(torch.lerp(params_a[name].detach(), params_b[name].detach().to(p), alpha))
            losses.append(_mean_loss(probe, loss_fn, batches, cost))
            accuracies.append(_accuracy(probe, batches, cost) if classification else math.nan)
    return LineResult(alpha_list, losses, accuracies, cost)

