"""The hard-margin SVM direction of linearly separable data, without bias (through the origin):
where gradient descent on the logistic loss of a linear model points in the limit (Soudry et
al. 2018, "The implicit bias of gradient descent on separable data").

Problem. Examples x_i ∈ R^d with labels y_i ∈ {−1, +1}, i = 1..n; write z_i = y_i x_i (the
rows of Z, (n, d)). The homogeneous hard-margin SVM is

    w* = argmin_w ½ ‖w‖²   subject to   z_iᵀ w ≥ 1  for every i,

its geometric margin γ* = min_i z_iᵀ w*/‖w*‖ = 1/‖w*‖ (the largest margin of any unit vector),
and its dual  max_{α ≥ 0} Σ_i α_i − ½ ‖Zᵀ α‖²,  with w* = Zᵀ α. KKT conditions (necessary and
sufficient, the problem is convex): primal feasibility z_iᵀ w ≥ 1, dual feasibility α_i ≥ 0,
stationarity w = Σ_i α_i z_i, complementary slackness α_i (z_iᵀ w − 1) = 0. The support
vectors are the examples with α_i > 0 (margin exactly 1).

Solver. The problem is a least-distance program, min ‖w‖ s.t. Z w ≥ h with h = 1, which
Lawson & Hanson (Solving Least Squares Problems, 1974, ch. 23) reduce to one non-negative
least-squares problem: with E = [Zᵀ; hᵀ] ((d+1, n)) and f = (0, …, 0, 1) ∈ R^{d+1}, solve
u = argmin_{u ≥ 0} ‖E u − f‖ (scipy's active-set NNLS, finite) and put r = E u − f; then
w* = −r_{1:d} / r_{d+1} and α = u / (1 − Σ_i u_i) (so that w* = Zᵀ α). The active-set
solution is exact up to rounding; the result is checked against the KKT conditions and an
error is raised if any is violated by more than ``tol`` (relative, see :func:`kkt_residual`).
Separability is decided first by a linear program (HiGHS): find w with Z w ≥ 1, which exists
iff some w has z_iᵀ w > 0 for all i.

Cost: the LP and NNLS are polynomial in practice; for n ≲ 10⁴ and d ≲ 10³ they take
milliseconds to seconds. Memory O(n d). All arithmetic in float64 (numpy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize

from overparam.errors import ConfigError

DEFAULT_TOL = 1e-9


@dataclass(frozen=True)
class MaxMarginSolution:
    """The SVM solution: ``w`` (d,), the dual variables ``alpha`` (n,) ≥ 0, the indices of the
    support vectors ``support`` (α_i > 0) and the largest KKT violation ``kkt_residual``."""

    w: np.ndarray
    alpha: np.ndarray
    support: np.ndarray
    kkt_residual: float

    @property
    def norm(self) -> float:
        """‖w*‖."""
        return float(np.linalg.norm(self.w))

    @property
    def margin(self) -> float:
        """The geometric margin γ* = 1/‖w*‖."""
        return 1.0 / self.norm

    @property
    def direction(self) -> np.ndarray:
        """w*/‖w*‖, (d,)."""
        return self.w / self.norm


def _as_problem(x: object, y: object) -> np.ndarray:
    """Z = y[:, None] * x as float64 (n, d), after checking shapes, finiteness and labels."""
    xs = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    ys = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y, dtype=np.float64)
    if xs.ndim != 2 or xs.shape[0] == 0 or xs.shape[1] == 0:
        raise ConfigError(f"x must be a non-empty (n, d) array, got shape {xs.shape}")
    if ys.shape != (xs.shape[0],):
        raise ConfigError(f"y must have shape ({xs.shape[0]},) (one label per row of x), got {ys.shape}")
    if not np.isfinite(xs).all():
        raise ConfigError("x must be finite (it holds NaN or inf)")
    bad = ~np.isin(ys, (-1.0, 1.0))
    if bad.any():
        raise ConfigError(f"labels must be -1 or +1, got {float(ys[bad][0]):g} (convert 0/1 labels with 2 y - 1)")
    return ys[:, None] * xs


def kkt_residual(z: np.ndarray, w: np.ndarray, alpha: np.ndarray) -> float:
    """The largest violation of the KKT conditions of the homogeneous SVM at (w, α), relative:
    max over i of  1 − z_iᵀw (primal), −α_i/max(α) (dual), α_i |z_iᵀw − 1|/max(α)
    (complementary slackness), and ‖w − Zᵀα‖/‖w‖ (stationarity). 0 at the exact solution."""
    margins = z @ w
    scale = max(float(alpha.max(initial=0.0)), np.finfo(float).tiny)
    parts = (
        float(np.max(1.0 - margins)),
        float(np.max(-alpha)) / scale,
        float(np.max(alpha * np.abs(margins - 1.0))) / scale,
        float(np.linalg.norm(w - z.T @ alpha)) / max(float(np.linalg.norm(w)), np.finfo(float).tiny),
    )
    return max(0.0, *parts)


def is_separable(x: object, y: object) -> bool:
    """Whether some w has y_i wᵀx_i > 0 for every i (separable through the origin): the LP
    feasibility problem Z w ≥ 1 (scaling w turns any strict separator into a solution)."""
    z = _as_problem(x, y)
    result = scipy.optimize.linprog(np.zeros(z.shape[1]), A_ub=-z, b_ub=-np.ones(len(z)),
                                    bounds=[(None, None)] * z.shape[1], method="highs")
    if result.status not in (0, 2):
        raise RuntimeError(f"separability LP failed: {result.message}")
    return result.status == 0


def hard_margin_svm(x: object, y: object, *, tol: float = DEFAULT_TOL) -> MaxMarginSolution:
    """The homogeneous hard-margin SVM of (x, y) (module docstring).

    Args:
        x: (n, d) inputs (numpy array or tensor).
        y: (n,) labels in {−1, +1}.
        tol: the largest accepted KKT residual (:func:`kkt_residual`) of the returned solution.

    Raises:
        ConfigError: bad shapes or labels, or data that are not linearly separable through the
            origin (then no SVM exists: the constraints z_iᵀw ≥ 1 have no solution).
        RuntimeError: the solution violates the KKT conditions by more than ``tol``.
    """
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ConfigError(f"tol must be a positive number, got {tol!r}")
    z = _as_problem(x, y)
    if not is_separable(x, y):
        raise ConfigError(f"the {len(z)} examples are not linearly separable through the origin (no w has "
                          "y_i w·x_i > 0 for every i), so the hard-margin SVM does not exist")
    n, d = z.shape
    e = np.vstack([z.T, np.ones((1, n))])
    f = np.zeros(d + 1)
    f[-1] = 1.0
    u, _ = scipy.optimize.nnls(e, f, maxiter=max(100, 50 * n))
    r = e @ u - f
    # r_{d+1} = Σu − 1 < 0 for feasible constraints (Lawson & Hanson, Theorem 23.4)
    w = -r[:d] / r[d]
    alpha = u / (-r[d])
    residual = kkt_residual(z, w, alpha)
    if not residual <= tol:
        raise RuntimeError(f"hard_margin_svm: KKT residual {residual:.3g} exceeds tol={tol:g} (n={n}, d={d}); "
                           "the data may be too close to non-separable for float64")
    return MaxMarginSolution(w=w, alpha=alpha, support=np.flatnonzero(alpha > 0), kkt_residual=residual)


__all__ = ["DEFAULT_TOL", "MaxMarginSolution", "hard_margin_svm", "is_separable", "kkt_residual"]
