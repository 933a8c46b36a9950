"""Gradient flow and the modified flow of implicit gradient regularization, integrated finely.

For a loss L(θ) on a flat parameter vector θ ∈ R^P (float64):

- gradient flow:  θ'(t) = −∇L(θ);
- modified flow (Barrett & Dherin 2021, "Implicit Gradient Regularization"):
  θ'(t) = −∇L̃(θ),  L̃ = L + (h/4)|∇L|²,  ∇L̃ = ∇L + (h/2) H ∇L  (H = ∇²L, one Hessian-vector
  product per evaluation).

One step of gradient descent with step h, θ_1 = θ_0 − h∇L(θ_0), stays O(h²) away from the
gradient flow's point φ(h) and O(h³) away from the modified flow's point φ̃(h) (backward error
analysis). For L = ½θᵀAθ everything is closed form: φ(t) = e^{−At}θ_0,
φ̃(t) = e^{−(A + (h/2)A²)t}θ_0, θ_1 = (I − hA)θ_0, and the errors are
|θ_1 − φ(h)| = (h²/2)|A²θ_0| + O(h³), |θ_1 − φ̃(h)| = (h³/3)|A³θ_0| + O(h⁴).

Integration: classical fourth-order Runge-Kutta with ``substeps`` equal steps over time h, on
the displacement δ(t) = θ(t) − θ_0 (δ(0) = 0) rather than on θ, so the O(h³) differences that
:func:`one_step_errors` measures are not lost to the rounding of a large θ_0. Local error per
RK4 step O((h/K)⁵), global O(h (h/K)⁴) for K substeps, far below the O(h³) it resolves.
:func:`one_step_errors` also integrates with 2K substeps and reports |δ_K − δ_2K| as the
integration error estimate (Richardson: the 2K result, which it returns, is ~15x closer).

Cost: K RK4 steps = 4K gradient evaluations (plain flow) or 4K gradient + 4K Hessian-vector
products (modified flow); memory O(P).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from overparam.errors import ConfigError, check_positive_int

F64 = torch.float64
VectorField = Callable[[Tensor], Tensor]  # θ (P,) -> (P,)
HessianVectorProduct = Callable[[Tensor, Tensor], Tensor]  # (θ, v) -> H(θ) v


# --- loss functions of a flat parameter vector ---------------------------------------------------


def network_loss(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor,
                 y: Tensor) -> tuple[Callable[[Tensor], Tensor], Tensor]:
    """(L, θ_0): L(θ) = ``loss_fn(model_θ(x), y)`` as a function of the flat float64 vector θ of
    the model's trainable parameters (``model.parameters()`` order), and θ_0 the model's
    current parameters. The model's other parameters and buffers are held fixed, and its
    mode (train/eval) is used as it is. ``x`` is cast to float64; the model itself is left
    untouched (a float64 copy of its parameters is used)."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ConfigError("the model has no trainable parameters (every requires_grad is False)")
    shapes = [p.shape for name, p in model.named_parameters() if p.requires_grad]
    sizes = [math.prod(shape) for shape in shapes]
    fixed = {name: p.detach().to(F64) for name, p in model.named_parameters() if not p.requires_grad}
    fixed.update({name: b.to(F64) if b.is_floating_point() else b for name, b in model.named_buffers()})
    theta0 = torch.cat([p.detach().to(F64).reshape(-1) for p in model.parameters() if p.requires_grad])
    x64 = x.to(F64) if x.is_floating_point() else x
    y64 = y.to(F64) if y.is_floating_point() else y

    def loss(theta: Tensor) -> Tensor:
        params = {name: piece.view(shape) for name, piece, shape in zip(names, theta.split(sizes), shapes)}
        return loss_fn(functional_call(model, (params, fixed), (x64,)), y64)

    return loss, theta0


def loss_fields(loss: Callable[[Tensor], Tensor]) -> tuple[VectorField, HessianVectorProduct]:
    """(∇L, (θ, v) ↦ H(θ)v) of a scalar function of a flat vector, by autograd: one backward
    pass for the gradient; the Hessian-vector product differentiates ∇L·v once more (double
    backprop, about two gradients' cost)."""
    def gradient(theta: Tensor) -> Tensor:
        theta = theta.detach().requires_grad_()
        return torch.autograd.grad(loss(theta), theta)[0]

    def hvp(theta: Tensor, v: Tensor) -> Tensor:
        theta = theta.detach().requires_grad_()
        g = torch.autograd.grad(loss(theta), theta, create_graph=True)[0]
        return torch.autograd.grad(g @ v, theta)[0]

    return gradient, hvp


def modified_gradient(gradient: VectorField, hvp: HessianVectorProduct, h: float) -> VectorField:
    """θ ↦ ∇L̃(θ) = ∇L + (h/2) H∇L, the gradient of L + (h/4)|∇L|²."""
    def field(theta: Tensor) -> Tensor:
        g = gradient(theta)
        return g + (h / 2) * hvp(theta, g)

    return field


# --- integration ---------------------------------------------------------------------------------


def flow_displacement(gradient: VectorField, theta0: Tensor, time: float, substeps: int) -> Tensor:
    """δ(time) for δ' = −∇(θ_0 + δ), δ(0) = 0: the flow of ``gradient`` from θ_0, as a
    displacement, by RK4 with ``substeps`` equal steps. θ(time) = θ_0 + δ(time)."""
    substeps = check_positive_int("substeps", substeps)
    if not (isinstance(time, (int, float)) and math.isfinite(time) and time >= 0):
        raise ConfigError(f"time must be a finite number >= 0, got {time!r}")
    dt = time / substeps
    delta = torch.zeros_like(theta0)
    for _ in range(substeps):
        k1 = -gradient(theta0 + delta)
        k2 = -gradient(theta0 + (delta + (dt / 2) * k1))
        k3 = -gradient(theta0 + (delta + (dt / 2) * k2))
        k4 = -gradient(theta0 + (delta + dt * k3))
        delta = delta + (dt / 6) * (k1 + 2 * k2 + 2 * k3 + k4)
    return delta


def gradient_flow(gradient: VectorField, theta0: Tensor, time: float, substeps: int = 64) -> Tensor:
    """θ(time) of the gradient flow θ' = −∇L(θ) from θ_0 (RK4, ``substeps`` steps)."""
    return theta0 + flow_displacement(gradient, theta0, time, substeps)


def modified_flow(gradient: VectorField, hvp: HessianVectorProduct, theta0: Tensor, h: float,
                  time: float | None = None, substeps: int = 64) -> Tensor:
    """θ(time) of the modified flow θ' = −(∇L + (h/2)H∇L) from θ_0; ``time`` defaults to h (one
    GD step's worth)."""
    return theta0 + flow_displacement(modified_gradient(gradient, hvp, h), theta0, h if time is None else time,
                                      substeps)


# --- one GD step against both flows --------------------------------------------------------------


@dataclass
class OneStepErrors:
    """Per step size h (``hs``, shape (k,)), float64 numpy arrays:

    ``plain``: |θ_1 − φ(h)|, GD's distance to the gradient flow; ``modified``: |θ_1 − φ̃(h)|,
    its distance to the modified flow; ``step``: |θ_1 − θ_0| = h|∇L(θ_0)|;
    ``integration``: the larger over both flows of |δ_K − δ_2K| (the RK4 error estimate of
    the K-substep result; the 2K result used is ~15x more accurate). ``plain_slope`` and
    ``modified_slope``: least-squares slopes of log error on log h (theory: 2 and 3)."""

    hs: np.ndarray
    plain: np.ndarray
    modified: np.ndarray
    step: np.ndarray
    integration: np.ndarray
    plain_slope: float
    modified_slope: float


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y on log x (positive values)."""
    lx, ly = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    lx, ly = lx - lx.mean(), ly - ly.mean()
    return float((lx * ly).sum() / (lx * lx).sum())


def one_step_errors(gradient: VectorField, hvp: HessianVectorProduct, theta0: Tensor, hs: Sequence[float],
                    substeps: int = 16) -> OneStepErrors:
    """One GD step θ_1 = θ_0 − h∇L(θ_0) against the gradient flow and the modified flow, each
    integrated over time h from θ_0 with 2·``substeps`` RK4 steps, for every h in ``hs``.

    Cost per h: 24·substeps gradient evaluations and 12·substeps Hessian-vector products
    (both flows at K and 2K substeps; each modified-flow evaluation is a gradient and an HVP)."""
    hs = [float(h) for h in hs]
    if len(hs) < 2 or any(not (math.isfinite(h) and h > 0) for h in hs):
        raise ConfigError(f"hs must be at least two positive finite step sizes, got {hs!r}")
    substeps = check_positive_int("substeps", substeps)
    g0 = gradient(theta0)
    plain, modified, step, integration = [], [], [], []
    for h in hs:
        gd = -h * g0
        errors, estimates = [], []
        for field in (gradient, modified_gradient(gradient, hvp, h)):
            coarse = flow_displacement(field, theta0, h, substeps)
            fine = flow_displacement(field, theta0, h, 2 * substeps)
            errors.append(float(torch.linalg.vector_norm(gd - fine)))
            estimates.append(float(torch.linalg.vector_norm(coarse - fine)))
        plain.append(errors[0])
        modified.append(errors[1])
        step.append(float(torch.linalg.vector_norm(gd)))
        integration.append(max(estimates))
    plain_a, modified_a = np.asarray(plain), np.asarray(modified)
    return OneStepErrors(hs=np.asarray(hs), plain=plain_a, modified=modified_a, step=np.asarray(step),
                         integration=np.asarray(integration), plain_slope=loglog_slope(hs, plain_a),
                         modified_slope=loglog_slope(hs, modified_a))


__all__ = ["OneStepErrors", "flow_displacement", "gradient_flow", "loglog_slope", "loss_fields", "modified_flow",
           "modified_gradient", "network_loss", "one_step_errors"]
