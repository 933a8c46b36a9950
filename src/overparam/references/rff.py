"""Random-features regression: the minimum-norm least-squares solution and the Gaussian kernel's
median-distance bandwidth (Belkin, Hsu, Ma & Mandal 2019, "Reconciling modern machine-learning
practice and the classical bias-variance trade-off", random Fourier features).

Minimum-norm least squares. For A (m, p) and B (m, k) the minimum-norm least-squares solution is
X = A⁺ B: among the minimizers of ‖A X − B‖_F the one of smallest ‖X‖_F. Over-determined with
full column rank it is (AᵀA)⁻¹AᵀB, under-determined with full row rank Aᵀ(AAᵀ)⁻¹B (an
interpolant), and in general, with the thin SVD A = U S Vᵀ, X = V S⁻¹ Uᵀ B over the singular
values above the cutoff. At p ≈ m (the interpolation threshold of random-features regression)
A is badly conditioned and solvers that are not SVD-based (normal equations, QR without
pivoting) lose the minimum-norm property or accuracy; the norm of X and the test error peak there,
which is the phenomenon under study, so the solve must be the pseudo-inverse.

Computation (:func:`min_norm_lstsq`): with M = A if m ≥ p else Aᵀ (so M is tall, (r, c), r ≥ c),
a Householder QR M = Q R (backward stable; Q kept as Householder reflectors and applied with
``ormqr``) and the SVD of the small square R = U S Vᵀ give the SVD of M = (Q U) S Vᵀ, i.e. A's
singular values S. Then

    m ≥ p:  X = V S⁻¹ Uᵀ Qᵀ B,        m < p:  A = V S Uᵀ Qᵀ,  X = Q U S⁻¹ Vᵀ B,

keeping the singular values s > rtol · s_max (default rtol = max(m, p) · 2⁻⁵², numpy's rank
tolerance). Cost: 2 r c² flops for the QR plus O(c³) for the SVD of R; works on any device.
Memory O(r c).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from overparam.errors import ConfigError


@dataclass(frozen=True)
class MinNormSolution:
    """``solution`` X = A⁺B (p, k) (or (p,) for a vector B), A's singular values (descending,
    (min(m, p),)), how many were kept (``rank``) and the cutoff below which they were dropped."""

    solution: Tensor
    singular_values: Tensor
    rank: int
    cutoff: float


def min_norm_lstsq(a: Tensor, b: Tensor, rtol: float | None = None) -> MinNormSolution:
    """The minimum-norm least-squares solution X = A⁺ B (module docstring).

    Args:
        a: (m, p) floating matrix.
        b: (m,) or (m, k) right-hand side(s), same dtype and device as ``a``.
        rtol: singular values s ≤ rtol · s_max are treated as 0; default max(m, p) · eps(dtype).
    """
    if not isinstance(a, Tensor) or a.dim() != 2 or not a.is_floating_point() or 0 in a.shape:
        raise ConfigError(f"a must be a non-empty floating (m, p) tensor, got "
                          f"{tuple(a.shape) if isinstance(a, Tensor) else type(a).__name__}")
    if not isinstance(b, Tensor) or b.dim() not in (1, 2) or b.shape[0] != a.shape[0]:
        raise ConfigError(f"b must be a ({a.shape[0]},) or ({a.shape[0]}, k) tensor, got "
                          f"{tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__}")
    m, p = a.shape
    if rtol is None:
        rtol = max(m, p) * torch.finfo(a.dtype).eps
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not 0 <= rtol < 1:
        raise ConfigError(f"rtol must be a number in [0, 1), got {rtol!r}")
    rhs = b.to(a.dtype).reshape(m, -1)
    tall, small = m >= p, min(m, p)
    # Householder QR kept in factored form (Q is applied by ormqr, never formed: half the cost)
    householder, tau = torch.geqrf(a if tall else a.T)
    u, singular_values, vh = torch.linalg.svd(torch.triu(householder[:small]))
    cutoff = float(rtol) * float(singular_values[0])
    keep = singular_values > cutoff
    u, s, vh = u[:, keep], singular_values[keep], vh[keep]
    if tall:  # A = Q U S Vh:  X = Vhᵀ S⁻¹ Uᵀ (Qᵀ B)[:p]
        projected = torch.ormqr(householder, tau, rhs, left=True, transpose=True)[:small]
        x = vh.T @ ((u.T @ projected) / s[:, None])
    else:  # A = Vhᵀ S Uᵀ Qᵀ:  X = Q [U S⁻¹ Vh B; 0]
        padded = torch.zeros(p, rhs.shape[1], dtype=rhs.dtype, device=rhs.device)
        padded[:small] = u @ ((vh @ rhs) / s[:, None])
        x = torch.ormqr(householder, tau, padded, left=True, transpose=False)
    return MinNormSolution(x.reshape(p, *b.shape[1:]), singular_values, int(keep.sum()), cutoff)


def median_bandwidth(x: Tensor, max_points: int = 2000) -> float:
    """The median heuristic for the Gaussian kernel exp(−‖x − x'‖²/(2σ²)): σ = the median of
    the Euclidean distances ‖x_i − x_j‖ over the distinct pairs i < j of the first
    ``max_points`` rows of x (n, ...) (flattened per row; for an even number of pairs the lower
    of the two middle values, as torch.median). Cost O(max_points² d)."""
    if not isinstance(x, Tensor) or x.dim() < 2 or len(x) < 2:
        raise ConfigError(f"x must be a tensor of at least two examples (n, ...), got "
                          f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    points = x[:max_points].reshape(min(len(x), max_points), -1).to(torch.float64)
    distances = torch.cdist(points, points)
    upper = torch.triu_indices(len(points), len(points), offset=1, device=points.device)
    sigma = float(distances[upper[0], upper[1]].median())
    if not sigma > 0:
        raise ConfigError("the median pairwise distance of x is 0 (most inputs coincide); set a bandwidth explicitly")
    return sigma


__all__ = ["MinNormSolution", "median_bandwidth", "min_norm_lstsq"]
