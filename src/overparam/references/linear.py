"""Exact solutions of linear least squares: the minimum-ℓ2-norm interpolant, the ridge path, the
interpolant nearest a given point, and the expected risk of the minimum-norm interpolant.

Notation: X (n, p) the design, y (n,) the targets, X^+ the Moore-Penrose pseudo-inverse. For
p > n and X of full row rank the interpolants {w : X w = y} form an affine space of dimension
p − n, and

    w_mn = X^+ y = X^T (X X^T)^{-1} y = argmin { ||w|| : X w = y },

the one in the row space of X (orthogonal to null(X)). Gradient descent on ||X w − y||² from
w_0 = 0 stays in the row space (every gradient X^T r lies in it), so its limit is w_mn; from
any w_0 its limit is the interpolant nearest w_0.

Everything is computed on the CPU in float64 (inputs are converted; results are float64 CPU
tensors), by SVD-based routines that never form X X^T, so the error grows with cond(X), not
cond(X)², and rank-deficient designs are handled (see :func:`min_norm_interpolant`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from overparam.errors import ConfigError

F64 = torch.float64


def _design(X: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    X = torch.as_tensor(X).detach().to("cpu", F64)
    y = torch.as_tensor(y).detach().to("cpu", F64)
    if X.ndim != 2 or y.ndim not in (1, 2) or y.shape[0] != X.shape[0]:
        raise ConfigError(f"expected X of shape (n, p) and y of shape (n,) or (n, k); got X {tuple(X.shape)} "
                          f"and y {tuple(y.shape)}")
    return X, y


def min_norm_interpolant(X: Tensor, y: Tensor, rcond: float | None = None) -> Tensor:
    """w = X^+ y, the minimum-ℓ2-norm least-squares solution: (p,) for y (n,), (p, k) for y (n, k).

    For p >= n and rank(X) = n this is the minimum-norm interpolant X^T (X X^T)^{-1} y (X w = y
    exactly, w ⟂ null(X)); for p < n and rank p it is the ordinary least-squares solution
    (X^T X)^{-1} X^T y; for a rank-deficient X it is the minimum-norm one among the
    least-squares solutions. Computed by LAPACK ``gelsd`` (SVD by divide and conquer):
    singular values σ_i <= rcond · σ_1 are treated as zero (default rcond = machine epsilon ·
    max(n, p)), i.e. w = Σ_{σ_i > rcond σ_1} (u_i·y / σ_i) v_i, the pseudo-inverse of the
    numerically non-zero part. Cost O(n p min(n, p)).
    """
    X, y = _design(X, y)
    rhs = y[:, None] if y.ndim == 1 else y
    solution = torch.linalg.lstsq(X, rhs, rcond=rcond, driver="gelsd").solution
    return solution[:, 0] if y.ndim == 1 else solution


def nearest_interpolant(X: Tensor, y: Tensor, w0: Tensor) -> Tensor:
    """w = w0 + X^+ (y − X w0): the least-squares solution nearest ``w0`` (p,) in ℓ2.

    Every least-squares solution is w_mn + z with z ∈ null(X); ||w0 − w_mn − z|| is smallest for
    z = P_null w0 = w0 − X^+ X w0, which gives the formula. For X of full row rank these are the
    interpolants and w = argmin { ||w − w0|| : X w = y } (KKT: X w = y and w − w0 ∈ row(X)). It
    is the limit of gradient descent on ||X w − y||² started at w0. Cost: one
    :func:`min_norm_interpolant`.
    """
    X, y = _design(X, y)
    w0 = torch.as_tensor(w0).detach().to("cpu", F64)
    if w0.shape != (X.shape[1],) or y.ndim != 1:
        raise ConfigError(f"expected w0 of shape ({X.shape[1]},) and y of shape (n,); got w0 {tuple(w0.shape)} "
                          f"and y {tuple(y.shape)}")
    return w0 + min_norm_interpolant(X, y - X @ w0)


def ridge(X: Tensor, y: Tensor, lam: float | Sequence[float] | Tensor) -> Tensor:
    """w_λ = argmin_w ||X w − y||² + λ ||w||² = (X^T X + λ I_p)^{-1} X^T y = X^T (X X^T + λ I_n)^{-1} y.

    ``lam``: one λ > 0, giving (p,), or a 1-d sequence of them, giving (len(lam), p) (one SVD for
    all). Note the unnormalized loss: the ridge of (1/n)||X w − y||² + λ||w||² is ``ridge(X, y, n λ)``.
    Computed from the thin SVD X = U diag(σ) V^T as w_λ = V diag(σ / (σ² + λ)) U^T y, stable for
    every λ > 0 (no normal equations). As λ → 0, w_λ → X^+ y = w_mn with
    w_λ − w_mn = −Σ_i λ / (σ_i (σ_i² + λ)) (u_i·y) v_i, so ||w_λ − w_mn|| = λ ||X^T (X X^T)^{-2} y|| + O(λ²)
    for X of full row rank: the distance falls linearly in λ. Cost O(n p min(n, p)).
    """
    X, y = _design(X, y)
    lams = torch.as_tensor(lam, dtype=F64).reshape(-1)
    if torch.as_tensor(lam).ndim > 1 or lams.numel() == 0 or not bool(torch.all(torch.isfinite(lams) & (lams > 0))):
        raise ConfigError(f"ridge needs λ > 0 (one number or a 1-d sequence of them), got {lam!r}; for λ = 0 use "
                          f"min_norm_interpolant")
    if y.ndim != 1:
        raise ConfigError(f"ridge expects y of shape (n,), got {tuple(y.shape)}")
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    coefficients = (U.T @ y)[None, :] * s[None, :] / (s[None, :] ** 2 + lams[:, None])  # (L, min(n, p))
    path = coefficients @ Vh
    return path[0] if torch.as_tensor(lam).ndim == 0 else path


def isotropic_min_norm_risk(n: int, p: int, signal: float, noise_var: float) -> float:
    """E ||X^+ y − w||² for a Gaussian design with iid N(0, 1) entries, y = X w + ε, ε ~ N(0, noise_var I_n),
    ||w||² = ``signal`` (the expectation over X and ε, exact for finite n and p):

        p <= n − 2:  noise_var · p / (n − p − 1)
        p >= n + 2:  signal · (1 − n / p) + noise_var · n / (p − n − 1)
        otherwise:   +inf

    For p < n, X^+ y − w = (X^T X)^{-1} X^T ε and E tr((X^T X)^{-1}) = p / (n − p − 1) (the mean
    of an inverse Wishart matrix). For p > n the error is −P_null w + X^T (X X^T)^{-1} ε; null(X)
    is a uniformly random (p − n)-dimensional subspace, so E ||P_null w||² = (1 − n/p) ||w||², and
    E tr((X X^T)^{-1}) = n / (p − n − 1). The two expectations of an inverse Wishart diverge for
    |p − n| <= 1: the peak of linear double descent. With isotropic inputs this is also the excess
    test risk E_x (x·(X^+ y − w))² (Hastie, Montanari, Rosset & Tibshirani 2019, Belkin, Hsu & Xu 2019).
    """
    for name, value in (("n", n), ("p", p)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    for name, value in (("signal", signal), ("noise_var", noise_var)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    if p <= n - 2:
        return noise_var * p / (n - p - 1)
    if p >= n + 2:
        return signal * (1 - n / p) + noise_var * n / (p - n - 1)
    return math.inf
