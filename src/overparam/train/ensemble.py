"""Batched training: runs that differ only in seed (and optionally learning rate) trained
together as one vectorized model.

``fit_ensemble(models, data, config, seeds, lrs=None)`` trains M models of one architecture on
one :class:`Dataset` at once and returns one :class:`TrainResult` per model: member m follows
the trajectory of ``fit(models[m], data, replace(config, lr=lrs[m]), seed=seeds[m])`` up to
float rounding (batched matrix products sum in another order than M separate ones: about
1e-15 relative per step in float64, 1e-7 in float32).

How
- State: the M models' trainable parameters are stacked (``torch.func.stack_module_state``)
  into one flat tensor, parameter by parameter, each block the contiguous (M, *shape) stack of
  one parameter; the optimizer update is then a few ops on one tensor.
- Data: member m's minibatch is ``x_train[perm_m[batch]]``, its permutation drawn per epoch
  from its own data-order generator, seeded as ``fit`` seeds it
  (``derive_seed(seed_m if config.data_seed is None else config.data_seed, "data_order")``).
  The M epoch orders are gathered once per epoch into (M, n, ...) and each step takes the
  (M, B, ...) slice. Full-batch GD and evaluation share one input across members.
- Loss and gradient, by one of two kernels (``backend``):
  'vmap' (any parameter-only model): ``vmap`` over the member axis of the parameters and of
  the batch of ``functional_call(models[0], params, (x,))``, then autograd of the sum of the
  M per-member mean losses (slice m of the gradient is member m's gradient: members do not
  interact).
  'bmm' (:class:`overparam.models.MLP`): the same function written with batched matrix
  products, ``baddbmm`` per layer, and its backward written out (the chain rule autograd
  applies to ``MLP.forward``); no vmap or autograd overhead per step. 'auto' (the default)
  takes 'bmm' for an MLP whose parameters are all trainable, else 'vmap'.
  GD accumulates the gradients of ``loss_chunk * len(chunk)/n`` over chunks as ``fit`` does.
- Update: torch.optim.SGD's formulas on the stacked tensor, dampening 0:
  ``d = g + wd w``; ``b = d`` on the first step, else ``b = momentum b + d``;
  ``d = d + momentum b`` (Nesterov) or ``d = b``; ``w = w - lr d``, with one LR per member,
  ``lr_m = base_lr_m * lr_factor(step, ...)`` and base_lr_m after the batch-size scaling rule.
  'adam'/'adamw': torch.optim.Adam/AdamW's formulas (eps 1e-8, no amsgrad): for adamw first
  ``w = w (1 - lr wd)``, for adam ``g = g + wd w``; ``m = lerp(m, g, 1 - β1)``,
  ``v = β2 v + (1 - β2) g²``; ``w = w - lr/(1 - β1^t) · m / (sqrt(v)/sqrt(1 - β2^t) + eps)``.
- Masks (``masks``, per member a dict parameter name -> bool tensor, as
  :func:`overparam.prune.mask_callback` takes for ``fit``): the masked entries' gradients are
  zeroed before the update (the optimizer state never sees them) and the weights zeroed after
  it, exactly what the callback's optimizer hooks do.
- Targets (``target_loss``/``target_acc``): checked per member at every evaluation, as ``fit``
  checks them; a member that reached its target is frozen there (its weights and record kept,
  ``target_step`` set) while the others go on, so each member still matches its ``fit`` run.
- Evaluation: ``loop.evaluate``'s chunk-weighted mean loss and accuracy per member, at fit's
  steps. The 'vmap' kernel uses fit's chunks (``eval_batch_size``, ``gd_chunk_size``); the
  'bmm' kernel splits them over the members (chunk // M examples for all M at once), which
  keeps the activations in cache and, the MLP being per-example, only reorders a sum.
- Divergence is per member: a member whose batch loss is non-finite or above
  ``divergence_loss`` is frozen before that step's update (as ``fit`` stops before
  ``optimizer.step()``), one whose evaluated training loss is bad is frozen after it; its
  weights and record are kept, it leaves the stacked state, and the others go on.
- At the end the final weights are copied back into ``models`` (left in train mode, as ``fit``
  leaves them).

Limits: optimizers 'sgd', 'gd', 'adam' and 'adamw' (not 'sam'), without ``grad_penalty``; no callbacks (measures need one model: run them on
``models`` afterwards); models must be parameter-only (no buffers, hence no BatchNorm running
statistics) and without active dropout (its masks cannot follow ``fit``'s global RNG).
``wall_time_s`` of a result is the ensemble's wall time until that member finished.

Cost: the arithmetic of M runs, in one batched call per layer instead of M small ones, with
the per-step Python, dispatch and autograd overhead paid once instead of M times
(bench/bench_ensemble.py: 8 small MLPs on MNIST-1D, 2-core CPU: 3.3-3.5x faster than 8
``fit`` calls with the 'bmm' kernel, 1.4-1.7x with 'vmap'; 2.2x on one thread).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from overparam.data.base import Dataset
from overparam.errors import ConfigError, choice_error
from overparam.models.common import Erf
from overparam.models.mlp import MLP
from overparam.seeding import derive_seed
from overparam.train.loop import LOSSES, TrainConfig, TrainResult
from overparam.train.optim import lr_factor

BATCHED_OPTIMIZERS = ("sgd", "gd", "adam", "adamw")
ADAM_EPS = 1e-8  # torch.optim.Adam's default, which make_optimizer keeps
BACKENDS = ("auto", "vmap", "bmm")


# --------------------------------------------------------------------------------------------
# Checks


def _module_signature(model: nn.Module) -> list[tuple[str, dict[str, Any]]]:
    """What makes two models compute the same function of their parameters: every submodule's
    name, type and plain (non-tensor) attributes, and every parameter's name, shape, dtype,
    device and requires_grad."""
    plain = (bool, int, float, str, type(None), tuple)
    signature: list[tuple[str, dict[str, Any]]] = []
    for name, module in model.named_modules():
        attrs = {k: v for k, v in sorted(vars(module).items())
                 if not k.startswith("_") and k != "training" and isinstance(v, plain)}
        signature.append((f"module {name or '(root)'!r}", {"type": type(module).__qualname__, **attrs}))
    for name, p in model.named_parameters():
        signature.append((f"parameter {name!r}", {"shape": tuple(p.shape), "dtype": p.dtype, "device": str(p.device),
                                                  "requires_grad": p.requires_grad}))
    return signature


def _describe_difference(reference: list, signature: list) -> str:
    for ref, got in zip(reference, signature):
        if ref[0] != got[0]:
            return f"{got[0]} where models[0] has {ref[0]}"
        if ref[1] != got[1]:
            keys = [k for k in {**ref[1], **got[1]} if ref[1].get(k) != got[1].get(k)]
            diffs = ", ".join(f"{k}={got[1].get(k)!r} (models[0]: {ref[1].get(k)!r})" for k in keys)
            return f"{got[0]}: {diffs}"
    longer, what = (signature, "has an extra") if len(signature) > len(reference) else (reference, "lacks")
    return f"{what} {longer[min(len(reference), len(signature))][0]}"


def _check_models(models: Sequence[nn.Module]) -> None:
    if len(models) == 0:
        raise ConfigError("fit_ensemble needs at least one model, got none")
    for i, model in enumerate(models):
        if not isinstance(model, nn.Module):
            raise ConfigError(f"models[{i}] must be a torch.nn.Module, got {type(model).__name__}")
    reference = _module_signature(models[0])
    for i, model in enumerate(models[1:], start=1):
        signature = _module_signature(model)
        if signature != reference:
            raise ConfigError(f"fit_ensemble needs models of one architecture: models[{i}] ({type(model).__name__}) "
                              f"differs from models[0] ({type(models[0]).__name__}) at "
                              f"{_describe_difference(reference, signature)}")
    buffers = [name for name, _ in models[0].named_buffers()]
    if buffers:
        norms = [name for name, m in models[0].named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        what = f"BatchNorm/normalization layers {norms}" if norms else "buffers"
        more = " ..." if len(buffers) > 4 else ""
        raise ConfigError(f"fit_ensemble does not support models with buffers ({what}; buffers {buffers[:4]}{more}); "
                          f"train these runs one at a time with fit")
    dropout = [name for name, m in models[0].named_modules()
               if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    if dropout:
        raise ConfigError(f"fit_ensemble does not support dropout (modules {dropout}): its random masks cannot "
                          f"follow fit's; train these runs one at a time with fit")
    dtypes = {p.dtype for p in models[0].parameters() if p.requires_grad}
    if not dtypes:
        raise ConfigError("fit_ensemble: the models have no trainable parameters")
    if len(dtypes) > 1:
        raise ConfigError(f"fit_ensemble needs the trainable parameters in one dtype, got {sorted(map(str, dtypes))}")


def _member_configs(config: TrainConfig, n_models: int, seeds: Sequence[int],
                    lrs: Sequence[float] | None) -> list[TrainConfig]:
    if config.optimizer not in BATCHED_OPTIMIZERS:
        raise ConfigError(f"fit_ensemble batches only optimizers {list(BATCHED_OPTIMIZERS)}, got "
                          f"optimizer={config.optimizer!r}; train these runs one at a time with fit")
    if config.nesterov and config.momentum <= 0:
        raise ConfigError(f"nesterov=True needs momentum > 0, got momentum={config.momentum!r}")
    if config.grad_penalty > 0:
        raise ConfigError(f"fit_ensemble does not implement grad_penalty (got {config.grad_penalty!r}; its "
                          f"kernels have no double backprop); train these runs one at a time with fit")
    if len(seeds) != n_models:
        raise ConfigError(f"fit_ensemble needs one seed per model: got {len(seeds)} seeds for {n_models} models")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise ConfigError(f"seeds must be integers, got {s!r}")
    if lrs is None:
        return [config] * n_models
    lrs = list(lrs)
    if len(lrs) != n_models:
        raise ConfigError(f"fit_ensemble needs one lr per model: got {len(lrs)} lrs for {n_models} models")
    for lr in lrs:
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"lrs must be positive finite numbers, got {lr!r}")
    return [replace(config, lr=float(lr)) for lr in lrs]


def ensemble_unsupported(models: Sequence[nn.Module], config: TrainConfig) -> str | None:
    """Why ``fit_ensemble(models, ..., config)`` cannot train these models together (the
    ConfigError message it would raise), or None when it can."""
    try:
        _check_models(models)
        _member_configs(config, len(models), [0] * len(models), None)
    except ConfigError as error:
        return str(error)
    return None


# --------------------------------------------------------------------------------------------
# Stacked parameters


class _Stack:
    """The members' parameters. The trainable ones live in one flat tensor ``flat`` of M * P
    entries, parameter by parameter, each block the (M, *shape) stack of one parameter (so
    every block is contiguous); ``views`` are those blocks (autograd leaves), ``params`` maps
    every name to its (M, ...) tensor, the non-trainable ones stacked as constants. Gradients,
    momentum buffers and per-entry LRs use the same flat layout."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        stacked, _ = stack_module_state(list(models))
        trainable = {name for name, p in models[0].named_parameters() if p.requires_grad}
        self.members = len(models)
        self.spec = [(name, tuple(t.shape[1:]), math.prod(t.shape[1:])) for name, t in stacked.items()
                     if name in trainable]
        self.flat = torch.cat([stacked[name].detach().reshape(-1) for name, _, _ in self.spec])
        self.constants = {name: t.detach().clone() for name, t in stacked.items() if name not in trainable}
        self._make_views()

    def split(self, t: Tensor) -> list[Tensor]:
        """The per-parameter (M, *shape) views of a tensor in the flat layout."""
        views, offset = [], 0
        for _, shape, numel in self.spec:
            views.append(t[offset:offset + self.members * numel].view(self.members, *shape))
            offset += self.members * numel
        return views

    def _make_views(self) -> None:
        self.views = [v.requires_grad_() for v in self.split(self.flat)]
        self.params = {**self.constants, **{name: v for (name, _, _), v in zip(self.spec, self.views)}}

    def flatten(self, grads: Sequence[Tensor]) -> Tensor:
        """Per-parameter tensors (M, *shape), in ``spec`` order -> the flat layout."""
        return torch.cat([g.reshape(-1) for g in grads])

    def per_member(self, values: Tensor) -> Tensor:
        """(M,) values -> the flat layout, each member's entries equal to its value."""
        column = values.view(self.members, 1)
        return torch.cat([column.expand(self.members, numel).reshape(-1) for _, _, numel in self.spec])

    def stacked(self, per_member: Sequence[dict[str, Tensor] | None]) -> Tensor | None:
        """Per-member dicts name -> tensor of a parameter's shape (missing names and None: ones)
        -> the flat layout; None when every member's dict is None or empty."""
        if all(not d for d in per_member):
            return None
        blocks = []
        for name, shape, _ in self.spec:
            rows = [torch.ones(shape, dtype=self.flat.dtype, device=self.flat.device) if not d or name not in d
                    else d[name].to(device=self.flat.device, dtype=self.flat.dtype).reshape(shape) for d in per_member]
            blocks.append(torch.stack(rows).reshape(-1))
        return torch.cat(blocks)

    def select(self, t: Tensor, index: Tensor) -> Tensor:
        """The rows (members) ``index`` of a tensor in the flat layout."""
        return torch.cat([v.index_select(0, index).reshape(-1) for v in self.split(t)])

    def keep(self, index: Tensor) -> None:
        """Keep only the members in ``index``."""
        self.flat = self.select(self.flat.detach(), index)
        self.members = len(index)
        self.constants = {name: t.index_select(0, index) for name, t in self.constants.items()}
        self._make_views()

    def member(self, row: int) -> dict[str, Tensor]:
        state = {name: t[row].clone() for name, t in self.constants.items()}
        for (name, _, _), view in zip(self.spec, self.split(self.flat.detach())):
            state[name] = view[row].clone()
        return state


# --------------------------------------------------------------------------------------------
# Kernels: per-member losses and the stacked gradient, and outputs for evaluation.
# Inputs x are (M, B, ...) (one batch per member) or shared (B, ...); targets y are (M, B, ...).


def _batched_loss(name: str, num_classes: int | None) -> Callable[[Tensor, Tensor], Tensor]:
    """Per-member mean loss (M,) of outputs (M, B, ...) against targets (M, B, ...):
    ``loop.loss_function``'s loss, member by member."""
    if name not in LOSSES:
        raise choice_error("loss", name, LOSSES)
    if name == "cross_entropy":
        if num_classes is None:
            raise ConfigError("loss 'cross_entropy' needs a classification dataset; use loss='mse' for regression")
        return lambda out, y: F.cross_entropy(out.transpose(1, 2), y, reduction="none").mean(1)
    if num_classes is None:
        return lambda out, y: F.mse_loss(out.reshape(y.shape), y, reduction="none").flatten(1).mean(1)
    return lambda out, y: F.mse_loss(out, F.one_hot(y, num_classes).to(out.dtype), reduction="none").flatten(1).mean(1)


class _VmapKernel:
    """Any parameter-only model: ``vmap`` of ``functional_call(template, params, (x,))`` over the
    members, autograd for the gradient."""

    def __init__(self, template: nn.Module, loss: str, num_classes: int | None) -> None:
        def one(params: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(template, params, (x,))

        self.per_member, self.shared = vmap(one, in_dims=(0, 0)), vmap(one, in_dims=(0, None))
        self.loss = _batched_loss(loss, num_classes)

    def outputs(self, stack: _Stack, x: Tensor, shared: bool) -> Tensor:
        return (self.shared if shared else self.per_member)(stack.params, x)

    def loss_and_grad(self, stack: _Stack, x: Tensor, y: Tensor, shared: bool,
                      weight: float = 1.0) -> tuple[Tensor, Tensor]:
        """(weight * per-member mean loss (M,), its gradient in the flat layout of ``stack``)."""
        losses = self.loss(self.outputs(stack, x, shared), y)
        if weight != 1.0:
            losses = losses * weight
        grads = torch.autograd.grad(losses.sum(), stack.views)
        return losses.detach(), stack.flatten(grads)


def _relu_backward(g: Tensor, a: Tensor, h: Tensor, module: nn.Module) -> Tensor:
    return torch.ops.aten.threshold_backward(g, h, 0)


def _tanh_backward(g: Tensor, a: Tensor, h: Tensor, module: nn.Module) -> Tensor:
    return torch.ops.aten.tanh_backward(g, h)


def _erf_backward(g: Tensor, a: Tensor, h: Tensor, module: nn.Module) -> Tensor:
    return 2.0 / math.sqrt(math.pi) * torch.exp(-a.pow(2)) * g


def _gelu_backward(g: Tensor, a: Tensor, h: Tensor, module: nn.Module) -> Tensor:
    return torch.ops.aten.gelu_backward(g, a, approximate=module.approximate)


def _identity_backward(g: Tensor, a: Tensor, h: Tensor, module: nn.Module) -> Tensor:
    return g


# d act(a) / da applied to g, as autograd computes it (a: pre-activation, h = act(a)).
_ACTIVATION_BACKWARD: dict[type, Callable[[Tensor, Tensor, Tensor, nn.Module], Tensor]] = {
    nn.ReLU: _relu_backward, nn.Tanh: _tanh_backward, Erf: _erf_backward, nn.GELU: _gelu_backward,
    nn.Identity: _identity_backward,
}


class _MLPKernel:
    """:class:`MLP` for stacked parameters with batched matrix products and a hand-written
    backward (the chain rule autograd applies to ``MLP.forward``, member by member):

    forward   a_l = h_{l-1} W_l^T + b_l (baddbmm; in the NTK parameterization with
              W_l * w_std/sqrt(fan_in) and b_l * b_std), h_l = act(a_l), f = alpha * a_L;
    backward  g_L = alpha dloss/df, then per layer dW_l = g_l^T h_{l-1}, db_l = sum_B g_l
              (times the NTK scales), g_{l-1} = act'(a_{l-1}) * (g_l W_l).

    The readout is computed transposed, (M, C, B), which suits the small C of a classifier.
    It runs without autograd: no graph, no per-op bookkeeping."""

    def __init__(self, template: MLP, loss: str, num_classes: int | None) -> None:
        self.layers: list[tuple[str, str, float | None, float | None]] = []
        for i, layer in enumerate([*template.hidden, template.readout]):
            prefix = f"hidden.{i}" if i < len(template.hidden) else "readout"
            if layer.parameterization == "ntk":
                scales = (layer.w_std / math.sqrt(layer.in_features), layer.b_std)
            else:
                scales = (None, None)
            self.layers.append((f"{prefix}.weight", f"{prefix}.bias", *scales))
        self.activation = template.activation
        self.activation_backward = _ACTIVATION_BACKWARD[type(template.activation)]
        self.alpha = template.alpha
        self.loss_name, self.num_classes = loss, num_classes
        self.loss = _batched_loss(loss, num_classes)

    @staticmethod
    def supports(model: nn.Module) -> bool:
        return (type(model) is MLP and type(model.activation) in _ACTIVATION_BACKWARD
                and all(p.requires_grad for p in model.parameters()))

    def _forward(self, params: dict[str, Tensor], x: Tensor, shared: bool, cache: list | None) -> Tensor:
        members = params[self.layers[0][0]].shape[0]
        h = x.flatten(1).expand(members, -1, -1) if shared else x.flatten(2)
        last = len(self.layers) - 1
        for i, (weight_name, bias_name, weight_scale, bias_scale) in enumerate(self.layers):
            w, b = params[weight_name], params[bias_name]
            if weight_scale is not None:
                w, b = w * weight_scale, b * bias_scale
            if i < last:
                a = torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
                if cache is not None:
                    cache.append((h, w, a))
                h = self.activation(a)
            else:
                if cache is not None:
                    cache.append((h, w, None))
                a = torch.baddbmm(b.unsqueeze(2), w, h.transpose(1, 2)).transpose(1, 2)
        return a if self.alpha == 1.0 else self.alpha * a

    @torch.no_grad()
    def outputs(self, stack: _Stack, x: Tensor, shared: bool) -> Tensor:
        return self._forward(stack.params, x, shared, None)

    def _loss_and_output_grad(self, out: Tensor, y: Tensor, weight: float) -> tuple[Tensor, Tensor]:
        """Per-member mean loss (M,) and d(weight * loss_m)/d out, as autograd of
        cross_entropy / mse_loss with mean reduction gives them."""
        batch = out.shape[1]
        if self.loss_name == "cross_entropy":
            logp = torch.log_softmax(out.transpose(1, 2), dim=1)  # (M, C, B)
            index = y.unsqueeze(1)
            losses = -logp.gather(1, index).squeeze(1).mean(1)
            grad = logp.exp_()
            grad.scatter_add_(1, index, torch.full(index.shape, -1.0, dtype=grad.dtype, device=grad.device))
            grad.mul_(weight / batch)
            return losses, grad.transpose(1, 2)
        target = y if self.num_classes is None else F.one_hot(y, self.num_classes).to(out.dtype)
        diff = out.reshape(target.shape) - target
        losses = diff.pow(2).flatten(1).mean(1)
        grad = diff.mul_(2.0 * weight / diff[0].numel())
        return losses, grad.reshape(out.shape)

    @torch.no_grad()
    def loss_and_grad(self, stack: _Stack, x: Tensor, y: Tensor, shared: bool,
                      weight: float = 1.0) -> tuple[Tensor, Tensor]:
        """(weight * per-member mean loss (M,), its gradient in the flat layout of ``stack``)."""
        cache: list[tuple[Tensor, Tensor, Tensor | None]] = []
        out = self._forward(stack.params, x, shared, cache)
        losses, g = self._loss_and_output_grad(out, y, weight)
        if weight != 1.0:
            losses = losses * weight
        if self.alpha != 1.0:
            g = self.alpha * g
        grad = torch.empty_like(stack.flat)
        blocks = {name: view for (name, _, _), view in zip(stack.spec, stack.split(grad))}
        for i in range(len(self.layers) - 1, -1, -1):
            weight_name, bias_name, weight_scale, bias_scale = self.layers[i]
            h_in, w, _ = cache[i]
            grad_w = torch.bmm(g.transpose(1, 2), h_in, out=blocks[weight_name])
            grad_b = torch.sum(g, 1, out=blocks[bias_name])
            if weight_scale is not None:
                grad_w.mul_(weight_scale)
                grad_b.mul_(bias_scale)
            if i > 0:
                a_prev = cache[i - 1][2]
                g = self.activation_backward(torch.bmm(g, w), a_prev, h_in, self.activation)
        return losses, grad


# --------------------------------------------------------------------------------------------
# The stacked SGD step


@torch.no_grad()
def _sgd_step(flat: Tensor, grad: Tensor, buffer: Tensor | None, lr: float | Tensor, *, momentum: float,
              nesterov: bool, weight_decay: float) -> Tensor | None:
    """torch.optim.SGD's update (dampening 0, maximize False) on the flat stacked parameters.

    ``lr`` is a float (one LR for all members: torch's own op ``w.add_(d, alpha=-lr)``) or a
    tensor in the flat layout (``w.addcmul_(d, lr, value=-1)``, torch's formula for a tensor LR).
    Returns the momentum buffer (None without momentum), created on the first step.
    """
    d = grad.add(flat, alpha=weight_decay) if weight_decay != 0 else grad
    if momentum != 0:
        if buffer is None:
            buffer = d.detach().clone()
        else:
            buffer.mul_(momentum).add_(d, alpha=1.0)
        d = d.add(buffer, alpha=momentum) if nesterov else buffer
    if isinstance(lr, Tensor):
        flat.addcmul_(d, lr, value=-1)
    else:
        flat.add_(d, alpha=-lr)
    return buffer


@torch.no_grad()
def _adam_step(flat: Tensor, grad: Tensor, moments: tuple[Tensor, Tensor] | None, lr: float | Tensor, step: int, *,
               betas: tuple[float, float], weight_decay: float, decoupled: bool) -> tuple[Tensor, Tensor]:
    """torch.optim.Adam's (``decoupled``: AdamW's) single-tensor update on the flat stacked
    parameters at step ``step`` (1-based), eps 1e-8, no amsgrad. Returns the moments (m, v),
    created as zeros on the first step."""
    beta1, beta2 = betas
    if moments is None:
        moments = (torch.zeros_like(flat), torch.zeros_like(flat))
    exp_avg, exp_avg_sq = moments
    if weight_decay != 0:
        if decoupled:
            flat.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(flat, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - beta1 ** step
    bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(ADAM_EPS)
    if isinstance(lr, Tensor):
        flat.sub_(exp_avg / denom * (lr / bias_correction1))
    else:
        flat.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
    return exp_avg, exp_avg_sq


# --------------------------------------------------------------------------------------------
# The loop


class _Member:
    """One run's record while the ensemble trains (what ``fit`` keeps in local variables)."""

    def __init__(self, seed: int, config: TrainConfig, data_seed: int, base_lr: float) -> None:
        self.seed = seed
        self.config = config
        self.base_lr = base_lr
        self.order_gen = torch.Generator().manual_seed(derive_seed(data_seed, "data_order"))
        self.curves: dict[str, list[tuple[int, float]]] = {}
        self.metrics: dict[str, float] = {}
        self.best: tuple[float, int, float | None] | None = None
        self.status, self.divergence, self.steps = "done", None, 0
        self.final: dict[str, Tensor] | None = None
        self.wall_time_s = 0.0
        self.target_step: int | None = None

    def record(self, name: str, step: int, value: float) -> None:
        self.curves.setdefault(name, []).append((step, float(value)))


def fit_ensemble(models: Sequence[nn.Module], data: Dataset, config: TrainConfig, seeds: Sequence[int], *,
                 lrs: Sequence[float] | None = None, backend: str = "auto",
                 masks: Sequence[dict[str, Tensor] | None] | None = None) -> list[TrainResult]:
    """Train ``models`` together, member m as ``fit(models[m], data, config_m, seed=seeds[m])``
    with ``config_m = replace(config, lr=lrs[m])`` (``config`` when ``lrs`` is None).

    ``models``: M modules of one architecture (same module tree, attributes and parameter
    shapes, dtypes, devices), parameter-only; their current weights are the initial weights, and
    their final weights are written back into them. ``seeds``: the M run seeds (each member's
    data order is drawn as in ``fit``). ``lrs``: optional per-member base learning rates (before
    batch-size scaling). ``backend``: 'vmap' (any model), 'bmm' (:class:`MLP` only) or 'auto'
    ('bmm' for an MLP, else 'vmap'); see the module docstring. ``masks``: optional per-member
    pruning masks (name -> bool tensor, None for an unpruned member), kept as
    ``fit(..., callbacks=[prune.mask_callback(masks[m])])`` keeps them.

    Returns M :class:`TrainResult`, in the order of ``models``, with the status, steps, curves
    (``batch_loss``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``), metrics and
    early-stopping fields that ``fit`` gives. Raises :class:`ConfigError` for an optimizer other
    than 'sgd'/'gd'/'adam'/'adamw', mismatched architectures, models with buffers (BatchNorm) or dropout, and
    wrong numbers of seeds or lrs.
    """
    started = time.perf_counter()
    models, seeds = list(models), list(seeds)
    if backend not in BACKENDS:
        raise choice_error("fit_ensemble backend", backend, BACKENDS)
    configs = _member_configs(config, len(models), seeds, lrs)
    _check_models(models)
    template = models[0]
    if backend == "bmm" and not _MLPKernel.supports(template):
        raise ConfigError(f"fit_ensemble backend 'bmm' supports overparam.models.MLP (all parameters trainable) "
                          f"only, got {type(template).__name__}; use backend='vmap'")
    bmm = backend != "vmap" and _MLPKernel.supports(template)
    kernel = (_MLPKernel if bmm else _VmapKernel)(template, config.loss, data.num_classes)

    classification = data.num_classes is not None
    n = data.n_train
    batch_size, total, per_epoch, eval_every = config.step_plan(n)
    gd = config.optimizer == "gd"
    members = [_Member(s, c, s if config.data_seed is None else config.data_seed, c.effective_lr(n))
               for s, c in zip(seeds, configs)]

    stack = _Stack(models)
    if masks is not None and len(masks) != len(models):
        raise ConfigError(f"fit_ensemble needs one mask (or None) per model: got {len(masks)} masks for {len(models)} "
                          f"models")
    parameter_names = {name for name, _, _ in stack.spec}
    for i, member_masks in enumerate(masks or []):
        unknown = sorted(set(member_masks or {}) - parameter_names)
        if unknown:
            raise ConfigError(f"masks[{i}] names no trainable parameter: {unknown}; parameters: {sorted(parameter_names)}")
    mask_flat = None if masks is None else stack.stacked(list(masks))
    if mask_flat is not None:
        with torch.no_grad():
            stack.flat.mul_(mask_flat)  # fit's runs start from masked weights (prune.rewind applies them)
    adam = config.optimizer in ("adam", "adamw")
    # Chunks for evaluation and GD: fit's, except that the MLP kernel (whose outputs are per
    # example, so chunking only changes the order of summation) splits them over the members,
    # chunk // M examples at a time, which keeps the M members' activations in cache.
    eval_chunk, gd_chunk = config.eval_batch_size, config.gd_chunk_size
    if bmm:
        eval_chunk, gd_chunk = max(1, eval_chunk // len(models)), max(1, gd_chunk // len(models))
    momentum_buffer: Tensor | None = None
    adam_moments: tuple[Tensor, Tensor] | None = None
    active = list(members)  # row r of the stacked state is active[r]
    epoch_x: Tensor | None = None  # (M, n, ...): each member's training inputs in its epoch order
    epoch_y: Tensor | None = None

    lr_cache: dict[tuple[float, ...], Tensor] = {}

    def lr_now(step: int) -> float | Tensor:
        """Each active member's LR at ``step``, as fit sets it: a float when they are equal,
        else a tensor in the flat layout."""
        factor = lr_factor(step, total, config.schedule, warmup_steps=config.warmup_steps,
                           milestones=config.milestones, gamma=config.gamma)
        values = tuple(m.base_lr * factor for m in active)
        if all(v == values[0] for v in values):
            return values[0]
        if values not in lr_cache:
            lr_cache.clear()
            lr_cache[values] = stack.per_member(torch.tensor(values, dtype=stack.flat.dtype, device=stack.flat.device))
        return lr_cache[values]

    @torch.no_grad()
    def evaluate_split(x: Tensor, y: Tensor) -> list[dict[str, float]]:
        """Per active member, ``loop.evaluate``'s numbers: chunked mean loss (and accuracy)."""
        rows = len(active)
        totals, correct = [0.0] * rows, [0] * rows
        for start in range(0, len(x), eval_chunk):
            xb, yb = x[start:start + eval_chunk], y[start:start + eval_chunk]
            out = kernel.outputs(stack, xb, True)
            losses = kernel.loss(out, yb.expand(rows, *yb.shape))
            totals = [t + v * len(xb) for t, v in zip(totals, losses.tolist())]
            if classification:
                # max(dim).indices is argmax (the first maximal index), and fast along a strided dim
                hits = (out.max(dim=2).indices == yb).sum(dim=1).tolist()
                correct = [c + h for c, h in zip(correct, hits)]
        results = []
        for r in range(rows):
            result = {"loss": totals[r] / len(x)}
            if classification:
                result["acc"] = correct[r] / len(x)
            results.append(result)
        return results

    def run_eval(step: int) -> None:
        template.eval()
        try:
            train, test = evaluate_split(data.x_train, data.y_train), evaluate_split(data.x_test, data.y_test)
        finally:
            template.train()
        for member, tr, te in zip(active, train, test):
            for split, values in (("train", tr), ("test", te)):
                for key, value in values.items():
                    member.metrics[f"{split}_{key}"] = value
                    member.record(f"{split}_{key}", step, value)
            if math.isfinite(te["loss"]) and (member.best is None or te["loss"] < member.best[0]):
                member.best = (te["loss"], step, te.get("acc"))

    def retire(rows: list[int], step: int) -> None:
        """Freeze the members in ``rows``: keep their weights and drop them from the stacked state."""
        nonlocal momentum_buffer, adam_moments, mask_flat, active, epoch_x, epoch_y
        now = time.perf_counter() - started
        for r in rows:
            active[r].final = stack.member(r)
            active[r].steps, active[r].wall_time_s = step, now
        keep = [r for r in range(len(active)) if r not in rows]
        active = [active[r] for r in keep]
        if not keep:
            return
        index = torch.tensor(keep, device=stack.flat.device)
        if momentum_buffer is not None:
            momentum_buffer = stack.select(momentum_buffer, index)
        if adam_moments is not None:
            adam_moments = (stack.select(adam_moments[0], index), stack.select(adam_moments[1], index))
        if mask_flat is not None:
            mask_flat = stack.select(mask_flat, index)
        stack.keep(index)
        if epoch_x is not None:
            epoch_x, epoch_y = epoch_x.index_select(0, index), epoch_y.index_select(0, index)

    def retire_finished(step: int) -> None:
        """Freeze the members whose last evaluation meets the target (as fit stops there)."""
        if config.has_target:
            done = [r for r, member in enumerate(active) if config.reached(member.metrics)]
            for r in done:
                active[r].target_step = step
            if done:
                retire(done, step)

    template.train()
    step = 0
    run_eval(0)
    retire_finished(0)
    position = per_epoch  # force new permutations at the first step
    while step < total and active:
        # Per-member losses and the stacked gradient (M, P).
        if gd:
            grad, loss_values = None, [0.0] * len(active)
            for start in range(0, n, gd_chunk):
                xb, yb = data.x_train[start:start + gd_chunk], data.y_train[start:start + gd_chunk]
                losses, chunk = kernel.loss_and_grad(stack, xb, yb.expand(len(active), *yb.shape), True, len(xb) / n)
                grad = chunk if grad is None else grad.add_(chunk)
                loss_values = [t + v for t, v in zip(loss_values, losses.tolist())]
        else:
            if position >= per_epoch:
                perms = torch.stack([torch.randperm(n, generator=m.order_gen) for m in active])
                perms = perms.to(data.x_train.device)
                epoch_x, epoch_y = data.x_train[perms], data.y_train[perms]
                position = 0
            batch = slice(position * batch_size, (position + 1) * batch_size)
            position += 1
            losses, grad = kernel.loss_and_grad(stack, epoch_x[:, batch], epoch_y[:, batch], False)
            loss_values = losses.tolist()

        # Members whose batch loss blew up stop here, before the update (as fit breaks).
        bad = [r for r, v in enumerate(loss_values) if not math.isfinite(v) or v > config.divergence_loss]
        if bad:
            for r in bad:
                member, value = active[r], loss_values[r]
                member.status = "diverged"
                member.divergence = f"training loss {value:.4g} at step {step} (limit {config.divergence_loss:g})"
                member.record("batch_loss", step, value)
            good = [r for r in range(len(active)) if r not in bad]
            loss_values = [loss_values[r] for r in good]
            if good:
                grad = stack.select(grad, torch.tensor(good, device=grad.device))
            retire(bad, step)
            if not active:
                break

        # The update on the stacked tensor (masked entries: no gradient before, zero weight after).
        if mask_flat is not None:
            grad = grad.mul_(mask_flat)
        if adam:
            adam_moments = _adam_step(stack.flat, grad, adam_moments, lr_now(step), step + 1, betas=tuple(config.betas),
                                      weight_decay=config.weight_decay, decoupled=config.optimizer == "adamw")
        else:
            momentum_buffer = _sgd_step(stack.flat, grad, momentum_buffer, lr_now(step), momentum=config.momentum,
                                        nesterov=config.nesterov, weight_decay=config.weight_decay)
        if mask_flat is not None:
            with torch.no_grad():
                stack.flat.mul_(mask_flat)
        step += 1
        for member, value in zip(active, loss_values):
            member.record("batch_loss", step, value)
        if config.evaluates_at(step, total, eval_every):
            run_eval(step)
            bad = []
            for r, member in enumerate(active):
                train_loss = member.metrics["train_loss"]
                if not math.isfinite(train_loss) or train_loss > config.divergence_loss:
                    member.status = "diverged"
                    member.divergence = f"evaluated training loss {train_loss:.4g} at step {step}"
                    bad.append(r)
            if bad:
                retire(bad, step)
            retire_finished(step)
    if active:
        retire(list(range(len(active))), step)

    # Write the final weights back into the models.
    with torch.no_grad():
        for member, model in zip(members, models):
            for name, p in model.named_parameters():
                p.copy_(member.final[name])
            model.train()

    return [TrainResult(
        status=member.status,
        steps=member.steps,
        epochs=member.steps / per_epoch,
        metrics=dict(member.metrics),
        curves=member.curves,
        early_stopping_step=None if member.best is None else member.best[1],
        early_stopping_test_acc=None if member.best is None else member.best[2],
        wall_time_s=member.wall_time_s,
        lr=member.base_lr,
        batch_size=batch_size,
        divergence=member.divergence,
        config=asdict(member.config),
        target_reached=(member.target_step is not None) if config.has_target else None,
        target_step=member.target_step,
    ) for member in members]


__all__ = ["BACKENDS", "BATCHED_OPTIMIZERS", "ensemble_unsupported", "fit_ensemble"]
