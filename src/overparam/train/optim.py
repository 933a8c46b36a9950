"""Optimizers, learning-rate schedules and batch-size scaling rules.

Optimizers (``OPTIMIZERS``):
    sgd    torch SGD (momentum, Nesterov, weight decay) on minibatches.
    gd     exact full-batch gradient descent: the gradient of the mean loss over the whole
           training set, accumulated over chunks (the loop does the chunking), then an SGD step.
    adam, adamw   torch Adam / AdamW.
    sam    sharpness-aware minimization (Foret et al. 2021) around an SGD base step: ascend to
           w + rho * g/|g|, take the gradient there, apply it at w.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from overparam.errors import ConfigError, choice_error

OPTIMIZERS = ("sgd", "gd", "adam", "adamw", "sam")
SCHEDULES = ("constant", "step", "cosine")
LR_SCALING = ("none", "linear", "sqrt")


def make_optimizer(name: str, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float = 0.0,
                   nesterov: bool = False, weight_decay: float = 0.0,
                   betas: Sequence[float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """The torch optimizer that takes the parameter step for ``name`` (SAM and GD step with SGD)."""
    if name not in OPTIMIZERS:
        raise choice_error("optimizer", name, OPTIMIZERS)
    if not (lr > 0 and math.isfinite(lr)):
        raise ConfigError(f"lr must be a positive finite number, got {lr!r}")
    if nesterov and momentum <= 0:
        raise ConfigError(f"nesterov=True needs momentum > 0, got momentum={momentum!r}")
    if name in ("sgd", "gd", "sam"):
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def scaled_lr(base_lr: float, batch_size: int, base_batch_size: int, rule: str) -> float:
    """Learning rate for ``batch_size`` under a scaling rule relative to ``base_batch_size``:
    none: base_lr; linear: base_lr * B/B0 (Goyal et al. 2017); sqrt: base_lr * sqrt(B/B0)
    (Krizhevsky 2014, Hoffer et al. 2017)."""
    if rule not in LR_SCALING:
        raise choice_error("lr scaling rule", rule, LR_SCALING)
    ratio = batch_size / base_batch_size
    return base_lr * {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[rule]


def lr_factor(step: int, total_steps: int, schedule: str, *, warmup_steps: int = 0,
              milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1) -> float:
    """Multiplier of the base LR at ``step`` (0-based) of ``total_steps``.

    Linear warm-up from 1/warmup_steps to 1 over the first ``warmup_steps`` steps, then:
    constant: 1; step: ``gamma ** (number of milestones passed)`` with milestones given as
    fractions of ``total_steps``; cosine: 0.5 (1 + cos(pi t)) with t the post-warm-up fraction.
    """
    if schedule not in SCHEDULES:
        raise choice_error("lr schedule", schedule, SCHEDULES)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "step":
        passed = sum(step >= m * total_steps for m in milestones)
        return gamma**passed
    span = max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min((step - warmup_steps) / span, 1.0)))


@torch.no_grad()
def sam_ascent(params: Sequence[torch.nn.Parameter], rho: float) -> list[torch.Tensor]:
    """Move parameters to w + rho * g / |g| (global norm) in place; return the offsets."""
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
    scale = rho / (norm + 1e-12)
    offsets = [g * scale for g in grads]
    for p, e in zip(params, offsets):
        p.add_(e)
    return offsets


@torch.no_grad()
def sam_restore(params: Sequence[torch.nn.Parameter], offsets: Sequence[torch.Tensor]) -> None:
    for p, e in zip(params, offsets):
        p.sub_(e)
