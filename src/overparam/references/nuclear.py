"""The minimum-nuclear-norm matrix consistent with linear observations.

Problem (P), for a linear map A: R^{d1×d2} -> R^m and observations b ∈ R^m::

    minimize ‖W‖_*   subject to   A(W) = b,          ‖W‖_* = Σ_i σ_i(W)

with two observation models:

- completion (:func:`min_nuclear_norm_completion`): A(W) = (W_ij)_{(i,j) ∈ Ω}, i.e. W agrees
  with M on the observed set Ω (a boolean mask);
- sensing (:func:`min_nuclear_norm_sensing`): A(W)_k = ⟨A_k, W⟩ = Σ_ij (A_k)_ij W_ij for m
  measurement matrices A_k that are linearly independent (so A is onto and (P) is feasible).

Its dual is (D): maximize ⟨y, b⟩ subject to ‖A*(y)‖_2 ≤ 1 (spectral norm). For any feasible Z
and any Y = A*(y) with ‖Y‖_2 ≤ 1, weak duality gives ⟨Y, Z⟩ = ⟨y, b⟩ ≤ OPT ≤ ‖Z‖_*. Optimality
(KKT): W = U Σ Vᵀ (compact SVD) is optimal iff some Y ∈ range(A*) (for completion: supported on
Ω) satisfies P_T(Y) = U Vᵀ and ‖P_T⊥(Y)‖_2 ≤ 1, where P_T⊥(Y) = (I − UUᵀ) Y (I − VVᵀ) and
P_T = I − P_T⊥; equivalently Y ∈ ∂‖W‖_*.

Solver: ADMM (Boyd et al. 2011, §5) on  min ‖W‖_* + 1_C(Z)  s.t.  W = Z, with C = {Z : A(Z) = b},
in scaled form with penalty ρ and scaled dual U::

    W ← SVT_{1/ρ}(Z − U)          (singular value thresholding: σ_i ← max(σ_i − 1/ρ, 0))
    Z ← Π_C(W + U)               (Euclidean projection onto the affine set C)
    U ← U + W − Z

Π_C is exact: completion resets the observed entries to M's; sensing uses a QR factorization of
the (d1·d2, m) matrix of the vectorized A_k's, Aᵀ = Q R, and Π_C(x) = x − Q(Qᵀx − R^{-T} b).
Every Z is therefore feasible (to rounding), and ρ follows residual balancing (Boyd et al.
§3.4.1: ρ doubles or halves, and U is rescaled, when the primal residual ‖W − Z‖_F and the dual
residual ρ‖Z − Z_prev‖_F differ by more than a factor 10).

Stopping rule (a certificate, checked every ``check_every`` iterations): the SVT step gives an
exact subgradient G = ρ(Z − U − W) ∈ ∂‖W‖_* (‖G‖_2 ≤ 1); its projection onto range(A*)
(completion: G restricted to Ω), scaled down to spectral norm ≤ 1, is a dual-feasible Y. The
solver stops when the relative duality gap (‖Z‖_* − ⟨Y, Z⟩) / ‖Z‖_* ≤ ``tol``: the returned Z is
then feasible and its nuclear norm within a factor (1 + tol) of the optimum.

Cost per iteration: one SVD of a d1×d2 matrix (O(d1 d2 min(d1, d2))) plus the projection (O(d1 d2)
for completion, O(m d1 d2) for sensing); each check adds two SVDs (‖Z‖_* and ‖Y‖_2). Sensing also
pays one QR of the (d1 d2, m) measurement matrix up front, O(m² d1 d2). Everything in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from overparam.errors import ConfigError, check_positive_int

F64 = torch.float64
BALANCE_FACTOR = 10.0  # residual balancing: adapt ρ when the residuals differ by more than this


@dataclass
class NuclearNormSolution:
    """The solver's answer (all tensors float64 on the input's device).

    ``matrix``: the feasible iterate Z (d1, d2); ``nuclear_norm`` = ‖Z‖_* (an upper bound on
    the optimum); ``dual_bound`` = ⟨Y, Z⟩ (a lower bound on it); ``certificate``: the dual
    matrix Y (d1, d2), in range(A*) with ‖Y‖_2 ≤ 1; ``gap`` the relative duality gap
    (nuclear_norm − dual_bound) / nuclear_norm; ``consensus`` = ‖W − Z‖_F / ‖Z‖_F between the
    last SVT iterate W (exactly low rank) and Z; ``singular_values`` of Z, descending.
    """

    matrix: Tensor
    nuclear_norm: float
    dual_bound: float
    gap: float
    certificate: Tensor
    consensus: float
    singular_values: Tensor
    iterations: int
    converged: bool
    rho: float


def min_nuclear_norm_completion(mask: Tensor, observed: Tensor, *, tol: float = 1e-6, max_iter: int = 20000,
                                check_every: int = 10, rho: float | None = None) -> NuclearNormSolution:
    """min ‖W‖_* s.t. W_ij = observed_ij for every (i, j) with ``mask[i, j]``.

    ``mask``: (d1, d2) bool, True at observed entries (at least one); ``observed``: (d1, d2), read
    only where ``mask`` is True. ``tol``, ``max_iter``, ``check_every``, ``rho`` (initial penalty;
    default 1/‖P_Ω(M)‖_2): see the module docstring. ``converged`` is False when ``max_iter``
    iterations did not bring the gap below ``tol``.
    """
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.dim() != 2:
        raise ConfigError(f"mask must be a 2-d bool tensor, got "
                          f"{tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__}")
    if not isinstance(observed, Tensor) or observed.shape != mask.shape:
        raise ConfigError(f"observed must be a tensor of the mask's shape {tuple(mask.shape)}, got "
                          f"{tuple(observed.shape) if isinstance(observed, Tensor) else type(observed).__name__}")
    if not bool(mask.any()):
        raise ConfigError("mask observes no entry; accepted: a mask with at least one True entry")
    target = torch.where(mask, observed.to(F64), torch.zeros((), dtype=F64, device=mask.device))
    if not bool(torch.isfinite(target).all()):
        raise ConfigError("observed holds non-finite values at observed entries")

    def project(x: Tensor) -> Tensor:
        return torch.where(mask, target, x)

    def to_range(g: Tensor) -> Tensor:
        return torch.where(mask, g, torch.zeros((), dtype=F64, device=g.device))

    return _admm(project, to_range, tuple(mask.shape), target.device, tol, max_iter, check_every, rho)


def min_nuclear_norm_sensing(measurements: Tensor, values: Tensor, *, tol: float = 1e-6, max_iter: int = 20000,
                             check_every: int = 10, rho: float | None = None) -> NuclearNormSolution:
    """min ‖W‖_* s.t. ⟨A_k, W⟩ = values_k for k = 1..m.

    ``measurements``: (m, d1, d2), the A_k, linearly independent (so m <= d1·d2); ``values``: (m,).
    Other arguments as :func:`min_nuclear_norm_completion`. Extra cost: a QR of the (d1 d2, m)
    matrix [vec A_1, ..., vec A_m], O(m² d1 d2), and O(m d1 d2) per projection.
    """
    if not isinstance(measurements, Tensor) or measurements.dim() != 3:
        raise ConfigError(f"measurements must be an (m, d1, d2) tensor, got "
                          f"{tuple(measurements.shape) if isinstance(measurements, Tensor) else type(measurements).__name__}")
    m, d1, d2 = measurements.shape
    if not isinstance(values, Tensor) or values.shape != (m,):
        raise ConfigError(f"values must be a tensor of shape ({m},), one per measurement, got "
                          f"{tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__}")
    if m == 0 or m > d1 * d2:
        raise ConfigError(f"sensing needs 1 <= m <= d1·d2 = {d1 * d2} linearly independent measurements, got m={m}")
    a_t = measurements.reshape(m, d1 * d2).to(F64).T  # (d1 d2, m)
    b = values.to(F64)
    if not bool(torch.isfinite(a_t).all() and torch.isfinite(b).all()):
        raise ConfigError("measurements and values must be finite")
    q, r = torch.linalg.qr(a_t)
    diagonal = r.diagonal().abs()
    if float(diagonal.min()) <= 1e-10 * float(diagonal.max()):
        raise ConfigError(f"the {m} measurement matrices are linearly dependent (R's smallest/largest diagonal "
                          f"{float(diagonal.min()):.3g}/{float(diagonal.max()):.3g}); accepted: independent A_k")
    # {x : A x = b} = {x : Qᵀ x = c} with c = R^{-T} b
    c = torch.linalg.solve_triangular(r.T, b[:, None], upper=False)[:, 0]

    def project(x: Tensor) -> Tensor:
        v = x.reshape(-1)
        return (v - q @ (q.T @ v - c)).reshape(d1, d2)

    def to_range(g: Tensor) -> Tensor:
        return (q @ (q.T @ g.reshape(-1))).reshape(d1, d2)

    return _admm(project, to_range, (d1, d2), measurements.device, tol, max_iter, check_every, rho)


def _admm(project: Callable[[Tensor], Tensor], to_range: Callable[[Tensor], Tensor], shape: tuple[int, int],
          device: torch.device, tol: float, max_iter: int, check_every: int, rho: float | None) -> NuclearNormSolution:
    """The ADMM iteration and duality-gap stopping rule of the module docstring."""
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
        raise ConfigError(f"tol must be a number in (0, 1), got {tol!r}")
    check_positive_int("max_iter", max_iter)
    check_positive_int("check_every", check_every)
    z = project(torch.zeros(shape, dtype=F64, device=device))  # the minimum-Frobenius-norm feasible point
    scale = float(torch.linalg.matrix_norm(z, ord=2))
    if scale == 0.0:  # b = 0: W = 0 is optimal, certified by Y = 0
        zero = torch.zeros(shape, dtype=F64, device=device)
        return NuclearNormSolution(zero, 0.0, 0.0, 0.0, zero.clone(), 0.0, torch.zeros(min(shape), dtype=F64,
                                   device=device), 0, True, math.nan)
    if rho is None:
        rho = 1.0 / scale
    elif isinstance(rho, bool) or not isinstance(rho, (int, float)) or not (math.isfinite(rho) and rho > 0):
        raise ConfigError(f"rho must be a positive finite number, got {rho!r}")
    rho = float(rho)
    u = torch.zeros_like(z)
    gap, upper, lower, certificate, consensus = math.inf, math.nan, math.nan, torch.zeros_like(z), math.nan
    iteration = 0
    for iteration in range(1, max_iter + 1):
        x = z - u
        left, sigma, right_t = torch.linalg.svd(x, full_matrices=False)
        threshold = 1.0 / rho
        w = (left * (sigma - threshold).clamp(min=0.0)) @ right_t
        z_prev = z
        z = project(w + u)
        u = u + w - z
        if iteration % check_every == 0 or iteration == max_iter:
            subgradient = (left * (rho * torch.minimum(sigma, torch.full_like(sigma, threshold)))) @ right_t
            y = to_range(subgradient)
            y = y / max(1.0, float(torch.linalg.matrix_norm(y, ord=2)))
            upper = float(torch.linalg.matrix_norm(z, ord="nuc"))
            lower = float((y * z).sum())
            gap = (upper - lower) / upper
            certificate = y
            consensus = float(torch.linalg.matrix_norm(w - z) / torch.linalg.matrix_norm(z))
            if gap <= tol:
                break
        primal = float(torch.linalg.matrix_norm(w - z))
        dual = rho * float(torch.linalg.matrix_norm(z - z_prev))
        if primal > BALANCE_FACTOR * dual:
            rho, u = 2.0 * rho, u / 2.0
        elif dual > BALANCE_FACTOR * primal:
            rho, u = rho / 2.0, u * 2.0
    return NuclearNormSolution(z, upper, lower, gap, certificate, consensus, torch.linalg.svdvals(z), iteration,
                               gap <= tol, rho)


__all__ = ["NuclearNormSolution", "min_nuclear_norm_completion", "min_nuclear_norm_sensing"]
