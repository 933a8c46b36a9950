"""Kernel regression with a given kernel, e.g. a network's initial NTK: what a network trained in
the linearized (lazy) regime predicts.

Setting. A model f(x; θ) with k outputs, linearized at θ_0,

    f_lin(x; θ) = f_0(x) + J(x) (θ − θ_0),     J(x) = ∂f(x)/∂θ at θ_0, (k, P),

has the kernel Θ(x, x') = J(x) J(x')ᵀ (k, k): the empirical NTK at θ_0. On n training
examples X with targets Y (n, k), write K = Θ(X, X) as an (n k, n k) matrix with row (i, a)
(example i, output a), r_0 = vec(Y − f_0(X)), and the loss

    L(θ) = (1/m) Σ_{i,a} (f_a(x_i; θ) − Y_ia)²,    m = n k

(torch's ``mse_loss``, a mean over all entries). Gradient descent θ ← θ − η ∇L on the linearized
model moves the training residual r = vec(Y − f_lin(X)) by r ← (I − c K) r with the
function-space step c = 2η/m, and its parameters stay in θ_0 + span(J(X)ᵀ): after T steps

    f_T(x) = f_0(x) + Θ(x, X) β_T,     β_T = Σ_{s<T} c (I − c K)^s r_0
                                             = K^{-1} (I − (I − c K)^T) r_0,      (GD, T steps)

and as T → ∞ (0 < c λ_max < 2) β → K⁺ r_0, the ridgeless kernel regression: the minimum-norm
interpolating linearized model, f_∞(x) = f_0(x) + Θ(x, X) K⁺ (Y − f_0(X)). With a ridge ρ > 0,
β = (K + ρ I)^{-1} r_0 (the minimizer of Σ (f − Y)² + ρ ‖θ − θ_0‖²). (Gradient flow for time t is
the same formula with (I − c K)^T replaced by exp(−c K t); the study trains with discrete GD,
so that is the form used here.) For a loss ½ Σ (f − Y)² (a sum), c = η; for a mean over n
examples only (k not counted), c = 2η/n.

Kernel shapes: a full kernel (n, n, k, k) couples outputs (a finite-width NTK does); an (n, n)
kernel is the same kernel for each output (Θ ⊗ I_k, as at infinite width), so each output is
solved with it separately. All work is in float64.

Solvers, on the (N, N) matrix K (N = n k for a full kernel, n otherwise):

- finite T (``steps``): one eigendecomposition K = V Λ Vᵀ and β = V g(Λ) Vᵀ r_0 with
  g(λ) = (1 − (1 − c λ)^T)/λ (= c T at λ = 0; eigenvalues below 0, rounding of a PSD kernel,
  are read as 0), evaluated as −expm1(T log1p(−c λ))/λ where 0 ≤ c λ < 1 to avoid cancellation.
  Cost O(N³) (≈ 9 N³ flops for eigh), memory O(N²).
- ridgeless (``steps=None``, ``ridge=0``): the same eigendecomposition with g(λ) = 1/λ for λ
  above ``rcond`` · λ_max and 0 below (the pseudo-inverse; ``rcond`` defaults to N · 2⁻⁵²,
  numpy's rank tolerance). Cost O(N³).
- ridge (``ridge=ρ > 0``): Cholesky of K + ρ I, ≈ N³/3 flops.

Functions: :func:`dual_coefficients` (β from K and r_0), :func:`kernel_predict` (f_0 + Θ(x, X) β),
:func:`kernel_regression` (both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from overparam.errors import ConfigError, check_positive_int

F64 = torch.float64


@dataclass(frozen=True)
class DualSolution:
    """β with the shape of the residual ((n,) or (n, k)), and the training predictions it gives,
    ``fitted`` = Θ(X, X) β (add f_0(X) for f_T(X)); both float64."""

    coefficients: Tensor
    fitted: Tensor


def _kernel_matrix(name: str, kernel: object, n: int | None = None) -> tuple[Tensor, int | None]:
    """A kernel as an (rows, columns) float64 matrix plus k for a full (n1, n2, k, k) kernel
    (rows (i, a), columns (j, b)), or None for an (n1, n2) kernel."""
    if not isinstance(kernel, Tensor) or kernel.dim() not in (2, 4):
        raise ConfigError(f"{name} must be a tensor of shape (n1, n2) or (n1, n2, k, k), got "
                          f"{tuple(kernel.shape) if isinstance(kernel, Tensor) else type(kernel).__name__}")
    if n is not None and kernel.shape[1] != n:
        raise ConfigError(f"{name} must have {n} columns (one per training example), got shape {tuple(kernel.shape)}")
    k64 = kernel.detach().to(F64)
    if k64.dim() == 2:
        return k64, None
    n1, n2, k, k2 = k64.shape
    if k != k2:
        raise ConfigError(f"{name} of shape (n1, n2, k, k) must have equal output dims, got {tuple(kernel.shape)}")
    return k64.permute(0, 2, 1, 3).reshape(n1 * k, n2 * k), k


def _residual_matrix(residual: Tensor, n: int, k: int | None) -> Tensor:
    """The residual as an (N, columns) matrix matching the kernel matrix's rows."""
    if not isinstance(residual, Tensor):
        raise ConfigError(f"the residual/targets must be a tensor of shape (n,) or (n, k), got {type(residual).__name__}")
    r = residual.detach().to(F64)
    if r.dim() not in (1, 2) or r.shape[0] != n:
        raise ConfigError(f"the residual/targets must have shape ({n},) or ({n}, k), got {tuple(residual.shape)}")
    if k is None:
        return r.reshape(n, -1)
    if r.shape != (n, k):
        raise ConfigError(f"a full kernel with {k} outputs needs residual/targets of shape ({n}, {k}), "
                          f"got {tuple(residual.shape)}")
    return r.reshape(n * k, 1)


def _gd_filter(eigenvalues: Tensor, step_size: float, steps: int) -> Tensor:
    """g(λ) = (1 − (1 − c λ)^T)/λ = Σ_{s<T} c (1 − c λ)^s, with λ < 0 read as 0."""
    lam = eigenvalues.clamp(min=0.0)
    z = step_size * lam
    small = z < 1.0
    # −expm1(T log1p(−z)) = 1 − (1 − z)^T without cancellation for 0 <= z < 1
    stable = -torch.expm1(steps * torch.log1p(-torch.where(small, z, torch.zeros_like(z))))
    direct = 1.0 - torch.pow(1.0 - z, steps)
    numerator = torch.where(small, stable, direct)
    return torch.where(lam > 0, numerator / torch.where(lam > 0, lam, 1.0), torch.full_like(lam, step_size * steps))


def dual_coefficients(k_train: Tensor, residual: Tensor, *, step_size: float | None = None,
                      steps: int | None = None, ridge: float = 0.0, rcond: float | None = None) -> DualSolution:
    """β such that f(x) = f_0(x) + Θ(x, X) β (module docstring), in float64.

    Args:
        k_train: Θ(X, X), (n, n) (one kernel for every output) or (n, n, k, k) (full), symmetric
            positive semi-definite.
        residual: r_0 = Y − f_0(X), (n,) or (n, k) ((n, k) for a full kernel).
        step_size, steps: GD for ``steps`` steps with function-space step c = ``step_size``
            (c = 2η/(n k) for the learning rate η on torch's mean ``mse_loss``). Both or neither.
        ridge: ρ >= 0, used only without ``steps``: (K + ρ I)^{-1} r_0 by Cholesky when ρ > 0,
            the pseudo-inverse K⁺ r_0 when ρ = 0.
        rcond: relative eigenvalue cutoff of the pseudo-inverse (default N · 2⁻⁵²).

    Returns: :class:`DualSolution` (coefficients and Θ(X, X) β, shaped like ``residual``).
    Cost: O(N³) with N = n k (full kernel) or n.
    """
    matrix, k = _kernel_matrix("k_train", k_train)
    n = k_train.shape[0]
    if matrix.shape[0] != matrix.shape[1]:
        raise ConfigError(f"k_train must be square over training examples, got shape {tuple(k_train.shape)}")
    r = _residual_matrix(residual, n, k)
    if (step_size is None) != (steps is None):
        raise ConfigError(f"give both step_size and steps (GD for a finite time) or neither (converged); got "
                          f"step_size={step_size!r}, steps={steps!r}")
    if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not (math.isfinite(ridge) and ridge >= 0):
        raise ConfigError(f"ridge must be a finite number >= 0, got {ridge!r}")
    if steps is not None:
        check_positive_int("steps", steps)
        if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not (
                math.isfinite(step_size) and step_size > 0):
            raise ConfigError(f"step_size must be a positive finite number (c = 2·lr/(n·k) for mean MSE), "
                              f"got {step_size!r}")
        if ridge:
            raise ConfigError(f"ridge applies to the converged solution only (steps=None); got ridge={ridge!r} "
                              f"with steps={steps!r}")
    matrix = (matrix + matrix.T) / 2  # exact symmetry for eigh/Cholesky
    if steps is None and ridge > 0:
        factor = torch.linalg.cholesky(matrix + ridge * torch.eye(len(matrix), dtype=F64, device=matrix.device))
        beta = torch.cholesky_solve(r, factor)
    else:
        eigenvalues, vectors = torch.linalg.eigh(matrix)
        if steps is not None:
            gain = _gd_filter(eigenvalues, float(step_size), steps)
        else:
            cutoff = (len(matrix) * 2.0 ** -52 if rcond is None else rcond) * eigenvalues.abs().max().clamp(min=0)
            keep = eigenvalues > cutoff
            gain = torch.where(keep, 1.0 / torch.where(keep, eigenvalues, 1.0), torch.zeros_like(eigenvalues))
        beta = vectors @ (gain[:, None] * (vectors.T @ r))
    fitted = matrix @ beta
    shape = residual.shape
    return DualSolution(beta.reshape(shape), fitted.reshape(shape))


def kernel_predict(k_test_train: Tensor, coefficients: Tensor, f0_test: Tensor | None = None) -> Tensor:
    """f(x) = f_0(x) + Θ(x, X) β for test inputs: (n_test,) or (n_test, k), float64.

    ``k_test_train`` is Θ(X_test, X): (n_test, n) or (n_test, n, k, k), the same layout as the
    kernel β was solved with; ``f0_test`` (shaped like the output) defaults to 0."""
    n = coefficients.shape[0] if isinstance(coefficients, Tensor) and coefficients.dim() else None
    matrix, k = _kernel_matrix("k_test_train", k_test_train, n)
    beta = _residual_matrix(coefficients, k_test_train.shape[1], k)
    m = k_test_train.shape[0]
    out = (matrix @ beta).reshape((m, k) if k is not None else (m, *coefficients.shape[1:]))
    if f0_test is not None:
        if not isinstance(f0_test, Tensor) or f0_test.shape != out.shape:
            raise ConfigError(f"f0_test must have shape {tuple(out.shape)}, got "
                              f"{tuple(f0_test.shape) if isinstance(f0_test, Tensor) else type(f0_test).__name__}")
        out = out + f0_test.detach().to(F64)
    return out


def kernel_regression(k_train: Tensor, k_test_train: Tensor, targets: Tensor, *, f0_train: Tensor | None = None,
                      f0_test: Tensor | None = None, step_size: float | None = None, steps: int | None = None,
                      ridge: float = 0.0, rcond: float | None = None) -> Tensor:
    """Test predictions f_0(x) + Θ(x, X) β with β from :func:`dual_coefficients` applied to
    r_0 = targets − f0_train (f_0 defaults to 0 on both sets). Cost O(N³ + n_test n k²)."""
    for name, value in (("targets", targets), ("f0_train", f0_train)):
        if value is not None and not isinstance(value, Tensor):
            raise ConfigError(f"{name} must be a tensor of shape (n,) or (n, k), got {type(value).__name__}")
    residual = targets.detach().to(F64)
    if f0_train is not None:
        if f0_train.shape != targets.shape:
            raise ConfigError(f"f0_train must have the targets' shape {tuple(targets.shape)}, got "
                              f"{tuple(f0_train.shape)}")
        residual = residual - f0_train.detach().to(F64)
    solution = dual_coefficients(k_train, residual, step_size=step_size, steps=steps, ridge=ridge, rcond=rcond)
    return kernel_predict(k_test_train, solution.coefficients, f0_test)


__all__ = ["DualSolution", "dual_coefficients", "kernel_predict", "kernel_regression"]
