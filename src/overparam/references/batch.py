"""Critical batch size: the steps-vs-batch-size curve of McCandlish et al. (2018) and the
critical mini-batch size of Ma, Bassily & Belkin (2018) for least squares.

**Steps vs batch size** (McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of
Large-Batch Training", eq. 2.11). Training to a fixed target loss with batch size B, each B at
its best learning rate, takes S(B) steps and E(B) = B·S(B) examples, with

    S(B) = S_min (1 + B_noise / B),     equivalently (S/S_min − 1)(E/E_min − 1) = 1,

E_min = S_min·B_noise, and the critical batch B_crit = E_min/S_min = B_noise: below it doubling
B halves the steps (perfect scaling, S ≈ E_min/B), above it the steps saturate at S_min.
:func:`fit_saturation` fits (S_min, B_noise) to measured (B, S) pairs. S is linear in 1/B,
S = a + b/B with a = S_min and b = S_min·B_noise = E_min, and the fit is the least-squares
solution on *relative* residuals,

    min_{a, b >= 0}  Σ_i ((S_i − a − b/B_i) / S_i)²,

so a point at 5 steps and one at 5000 weigh alike (S spans orders of magnitude across B);
this is weighted linear least squares (weights 1/S_i²) in (a, b), solved exactly: the 2×2
normal equations, and when their solution has a negative component, the better of the two
one-variable fits on the faces a = 0 (pure 1/B scaling, B_noise = ∞) and b = 0 (no
dependence on B, B_noise = 0), which is the constrained optimum of this convex quadratic.
``steps`` may carry leading dimensions (e.g. bootstrap resamples): the fit is vectorized over
them. Cost O(k) per curve of k points.

**Ma, Bassily & Belkin** (2018, "The Power of Interpolation", Section 4, quadratic loss).
Least squares L(w) = (1/2n) Σ_i (wᵀx_i − y_i)² in the interpolation regime (some w* fits every
example), H = (1/n) Σ_i x_i x_iᵀ (the uncentered covariance, the Hessian of L) with top
eigenvalue λ_1, and β = max_i |x_i|² (the smallest β with |x|² <= β on the data). Mini-batch
SGD with batch m and step η contracts E|w_t − w*|² by at most
g(η, m) = 1 − η λ_min (2 − η (β + (m − 1) λ_1)/m) per step (λ_min the smallest non-zero
eigenvalue), using E[H_m²] ≼ (β/m) H + ((m − 1)/m) λ_1 H for the mini-batch Hessian H_m.
That bound is minimized by

    η*(m) = m / (β + (m − 1) λ_1),     with rate 1 − m λ_min / (β + (m − 1) λ_1),

so each step of batch m is worth m steps of batch 1 while (m − 1)λ_1 ≪ β, and the gain
saturates beyond the critical mini-batch size m* = β/λ_1 (η* → 1/λ_1, a full-gradient step).
The predicted steps-to-target follow S(m) ∝ (β + (m − 1)λ_1)/m = λ_1 (1 + (m* − 1)/m): the
McCandlish form with B_noise = m* − 1. Both quantities are invariant to rescaling the loss;
η* is stated for the ½-mean-square loss above (for torch's ``mse_loss``, the plain mean of
squares, the same step is η*/2). Cost of :func:`ma_critical_batch`: one pass over X and the
p×p eigenvalue problem, O(n p² + p³), in float64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from overparam.errors import ConfigError

F64 = torch.float64


@dataclass(frozen=True)
class SaturationFit:
    """S(B) = S_min + E_min/B = S_min (1 + B_noise/B) fitted to (B, S) pairs; arrays over any
    leading (resample) dimensions, floats for one curve. ``residual`` is the root-mean-square
    relative residual (S_i − S(B_i))/S_i of the fit."""

    s_min: np.ndarray | float
    e_min: np.ndarray | float  # S_min·B_noise: the examples needed at vanishing batch size
    residual: np.ndarray | float

    @property
    def b_noise(self) -> np.ndarray | float:
        """E_min/S_min: ∞ where the fit found no saturation (S_min = 0), 0 where it found no
        dependence on B (E_min = 0)."""
        s_min, e_min = np.asarray(self.s_min, dtype=float), np.asarray(self.e_min, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            value = np.where(s_min > 0, e_min / np.where(s_min > 0, s_min, 1.0), math.inf)
        return float(value) if value.ndim == 0 else value

    @property
    def b_crit(self) -> np.ndarray | float:
        """B_crit = E_min / S_min, McCandlish et al.'s critical batch: equal to B_noise."""
        return self.b_noise

    def steps(self, batch_sizes: np.ndarray) -> np.ndarray:
        """The fitted S(B) at ``batch_sizes`` (one curve only)."""
        return self.s_min + self.e_min / np.asarray(batch_sizes, dtype=float)


def fit_saturation(batch_sizes, steps) -> SaturationFit:
    """Fit S(B) = S_min (1 + B_noise/B) by non-negative least squares on relative residuals
    (see the module docstring). ``batch_sizes`` (k,) positive; ``steps`` (..., k) positive,
    the leading dimensions fitted independently. Needs k >= 2 distinct batch sizes."""
    b = np.asarray(batch_sizes, dtype=float)
    s = np.asarray(steps, dtype=float)
    if b.ndim != 1 or s.ndim < 1 or s.shape[-1] != b.size:
        raise ConfigError(f"fit_saturation needs batch_sizes of shape (k,) and steps of shape (..., k), got "
                          f"{b.shape} and {s.shape}")
    if np.unique(b).size < 2:
        raise ConfigError(f"fit_saturation needs at least two distinct batch sizes, got {b.tolist()}")
    if not (np.all(np.isfinite(b)) and np.all(b > 0) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ConfigError("fit_saturation needs positive finite batch sizes and steps; got batch sizes "
                          f"{b.tolist()} and steps with minimum {np.min(s)!r}")
    # Residual_i = 1 − a u_i − c v_i with u = 1/S, v = 1/(B S): least squares of the target 1.
    u, v = 1.0 / s, 1.0 / (b * s)
    suu, svv, suv = (u * u).sum(-1), (v * v).sum(-1), (u * v).sum(-1)
    su, sv = u.sum(-1), v.sum(-1)
    det = suu * svv - suv * suv
    with np.errstate(divide="ignore", invalid="ignore"):
        a_free = (svv * su - suv * sv) / det
        c_free = (suu * sv - suv * su) / det
    a_only, c_only = su / suu, sv / svv  # the faces c = 0 and a = 0 (both positive: u, v > 0)

    def objective(a, c):
        return ((1.0 - a[..., None] * u - c[..., None] * v) ** 2).sum(-1)

    free_ok = (a_free >= 0) & (c_free >= 0) & np.isfinite(a_free) & np.isfinite(c_free)
    zero = np.zeros_like(a_only)
    a_face = objective(a_only, zero) <= objective(zero, c_only)
    a = np.where(free_ok, a_free, np.where(a_face, a_only, 0.0))
    c = np.where(free_ok, c_free, np.where(a_face, 0.0, c_only))
    residual = np.sqrt(objective(a, c) / b.size)
    if a.ndim == 0:
        return SaturationFit(float(a), float(c), float(residual))
    return SaturationFit(a, c, residual)


@dataclass(frozen=True)
class MaCritical:
    """Ma et al.'s constants of a least-squares design: β = max_i |x_i|², λ_1 the top
    eigenvalue of H = XᵀX/n, and the critical mini-batch size m* = β/λ_1."""

    beta: float
    lambda_1: float

    @property
    def m_star(self) -> float:
        return self.beta / self.lambda_1

    def step_size(self, m: int) -> float:
        """η*(m) = m / (β + (m − 1) λ_1) for the loss (1/2n) Σ (wᵀx_i − y_i)²."""
        return ma_step_size(m, self.beta, self.lambda_1)


def ma_critical_batch(x: Tensor) -> MaCritical:
    """β and λ_1 of the design ``x`` (n, p) (rows are the examples' features), in float64."""
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[0] < 1:
        raise ConfigError(f"ma_critical_batch needs a design matrix x of shape (n, p), got "
                          f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    x64 = x.detach().to(F64)
    beta = float(x64.pow(2).sum(dim=1).max())
    lambda_1 = float(torch.linalg.eigvalsh(x64.T @ x64 / x64.shape[0])[-1])
    if not lambda_1 > 0:
        raise ConfigError("ma_critical_batch: the design is all zeros (λ_1 = 0), m* is undefined")
    return MaCritical(beta, lambda_1)


def ma_step_size(m: int, beta: float, lambda_1: float) -> float:
    """Ma et al.'s optimal step η*(m) = m / (β + (m − 1) λ_1) for batch size m >= 1 (the loss
    (1/2n) Σ (wᵀx_i − y_i)²; halve it for the plain mean of squares)."""
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1:
        raise ConfigError(f"batch size m must be an integer >= 1, got {m!r}")
    if not (beta > 0 and lambda_1 > 0 and lambda_1 <= beta * (1 + 1e-12)):
        raise ConfigError(f"need beta >= lambda_1 > 0 (λ_1 <= tr H <= max |x|²), got beta={beta!r}, "
                          f"lambda_1={lambda_1!r}")
    return m / (beta + (m - 1) * lambda_1)
