"""Batched training: runs that differ only in seed (and optionally learning rate) trained
together as one vectorized model.

``fit_ensemble(models, data, config, seeds, lrs=None)`` trains M models of one architecture on
one :class:`Dataset` at once and returns one :class:`TrainResult` per model, each the result that
``fit(models[m], data, replace(config, lr=lrs[m]), seed=seeds[m])`` would give, up to float
rounding (the batched matrix products sum in a different order than M separate ones).

How
- The M models' parameters are stacked (``torch.func.stack_module_state``) into tensors of
  shape (M, *shape); ``models[0]`` serves as the stateless template called through
  ``functional_call``, and ``vmap`` maps it over the member axis of both the parameters and the
  data: member m's minibatch is ``x_train[perm_m[batch]]``, gathered for all members as one
  (M, B, ...) tensor from each member's own permutation (drawn per epoch from its own
  data-order generator, seeded exactly as ``fit`` seeds it). Full-batch GD and evaluation share
  one input across members (``in_dims=None``).
- Gradients: autograd of the sum of the M member losses with respect to the stacked tensors;
  slice m of the gradient is member m's gradient (the members do not interact).
- The update is torch.optim.SGD's, written on the stacked tensors (weight decay, momentum with
  the buffer initialised to the first step's direction, Nesterov, dampening 0), with one LR per
  member: ``base_lr_m * lr_factor(step, ...)``, base_lr_m after the batch-size scaling rule.
- Divergence is per member: a member whose batch loss is non-finite or above
  ``divergence_loss`` is frozen before that step's update (as ``fit`` breaks before
  ``optimizer.step()``), one whose evaluated training loss is bad is frozen after it; its
  weights and record are kept and it leaves the stacked tensors, and the others go on.
- At the end the final weights are copied back into ``models`` (left in train mode, as ``fit``
  leaves them).

Limits: optimizers 'sgd' and 'gd' only; no callbacks (measures need one model: run them
afterwards on ``models``); models must be parameter-only (no buffers, so no BatchNorm running
statistics) and without active dropout (its random masks cannot follow ``fit``'s global RNG).
``wall_time_s`` of each result is the ensemble's wall time until that member finished.

Cost: one vectorized forward/backward per step for all M members, so per-step Python and
dispatch overhead is paid once instead of M times; the arithmetic is the same.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from overparam.data.base import Dataset
from overparam.errors import ConfigError
from overparam.seeding import derive_seed
from overparam.train.loop import TrainConfig, TrainResult, loss_function, steps_per_epoch
from overparam.train.optim import lr_factor

BATCHED_OPTIMIZERS = ("sgd", "gd")


# --------------------------------------------------------------------------------------------
# Checks


def _module_signature(model: nn.Module) -> list[tuple[Any, ...]]:
    """What makes two models compute the same function of their parameters: every submodule's
    name and type and its plain (non-tensor) attributes, and every parameter's name, shape,
    dtype, device and requires_grad."""
    plain = (bool, int, float, str, type(None), tuple)
    signature: list[tuple[Any, ...]] = []
    for name, module in model.named_modules():
        attrs = tuple(sorted((k, v) for k, v in vars(module).items()
                             if not k.startswith("_") and k != "training" and isinstance(v, plain)))
        signature.append(("module", name, type(module).__qualname__, attrs))
    for name, p in model.named_parameters():
        signature.append(("parameter", name, tuple(p.shape), p.dtype, str(p.device), p.requires_grad))
    return signature


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
            first = next((a, b) for a, b in zip(reference + [None], signature + [None]) if a != b)
            raise ConfigError(
                f"fit_ensemble needs models of one architecture: models[{i}] ({type(model).__name__}) differs from "
                f"models[0] ({type(models[0]).__name__}) at {first[1]!r} (models[0]: {first[0]!r})")
    buffers = [name for name, _ in models[0].named_buffers()]
    if buffers:
        norms = [name for name, m in models[0].named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
        what = f"BatchNorm/normalization layers {norms}" if norms else "buffers"
        raise ConfigError(f"fit_ensemble does not support models with buffers ({what}; buffers {buffers[:4]}"
                          f"{' ...' if len(buffers) > 4 else ''}); train these runs one at a time with fit")
    dropout = [name for name, m in models[0].named_modules()
               if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
    if dropout:
        raise ConfigError(f"fit_ensemble does not support dropout (modules {dropout}): its random masks cannot "
                          f"follow fit's; train these runs one at a time with fit")
    if not any(p.requires_grad for p in models[0].parameters()):
        raise ConfigError("fit_ensemble: the models have no trainable parameters")


def _member_configs(config: TrainConfig, n_models: int, seeds: Sequence[int],
                    lrs: Sequence[float] | None) -> list[TrainConfig]:
    if config.optimizer not in BATCHED_OPTIMIZERS:
        raise ConfigError(f"fit_ensemble batches only optimizers 'sgd' and 'gd', got optimizer={config.optimizer!r}; "
                          f"train these runs one at a time with fit")
    if config.nesterov and config.momentum <= 0:
        raise ConfigError(f"nesterov=True needs momentum > 0, got momentum={config.momentum!r}")
    if len(seeds) != n_models:
        raise ConfigError(f"fit_ensemble needs one seed per model: got {len(seeds)} seeds for {n_models} models")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int):
            raise ConfigError(f"seeds must be integers, got {s!r}")
    if lrs is None:
        return [config] * n_models
    lrs = list(lrs)
    if len(lrs) != n_models:
        raise ConfigError(f"fit_ensemble needs one lr per model: got {len(lrs)} lrs for {n_models} models")
    for lr in lrs:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr)):
            raise ConfigError(f"lrs must be positive finite numbers, got {lr!r}")
    return [replace(config, lr=float(lr)) for lr in lrs]


# --------------------------------------------------------------------------------------------
# The stacked SGD step


@torch.no_grad()
def _sgd_step(params: list[Tensor], grads: list[Tensor], buffers: list[Tensor | None], lr: float | Tensor,
              *, momentum: float, nesterov: bool, weight_decay: float) -> None:
    """torch.optim.SGD's update (dampening 0, maximize False) on stacked tensors (M, *shape).

    d = g + wd * w;  b = d on the first step, else b = momentum * b + d;
    d = d + momentum * b (Nesterov) or d = b;  w = w - lr * d.
    ``lr`` is a float (the same for every member: the update is then torch's own op,
    ``w.add_(d, alpha=-lr)``) or a tensor of shape (M,) (``w.addcmul_(d, lr, value=-1)``, the
    formula torch uses for a tensor LR). ``buffers`` is updated in place (None: first step).
    """
    for i, (p, g) in enumerate(zip(params, grads)):
        d = g.add(p, alpha=weight_decay) if weight_decay != 0 else g
        if momentum != 0:
            buf = buffers[i]
            if buf is None:
                buf = d.detach().clone()
                buffers[i] = buf
            else:
                buf.mul_(momentum).add_(d, alpha=1.0)
            d = d.add(buf, alpha=momentum) if nesterov else buf
        if isinstance(lr, Tensor):
            p.addcmul_(d, lr.view(-1, *([1] * (p.dim() - 1))), value=-1)
        else:
            p.add_(d, alpha=-lr)


# --------------------------------------------------------------------------------------------
# Per-member bookkeeping


class _Member:
    """One run's record while the ensemble trains (what ``fit`` keeps in local variables)."""

    def __init__(self, index: int, seed: int, config: TrainConfig, data_seed: int, base_lr: float) -> None:
        self.index = index
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

    def record(self, name: str, step: int, value: float) -> None:
        self.curves.setdefault(name, []).append((step, float(value)))


def fit_ensemble(models: Sequence[nn.Module], data: Dataset, config: TrainConfig, seeds: Sequence[int], *,
                 lrs: Sequence[float] | None = None) -> list[TrainResult]:
    """Train ``models`` together, member m as ``fit(models[m], data, config_m, seed=seeds[m])``
    with ``config_m = replace(config, lr=lrs[m])`` (``config`` when ``lrs`` is None).

    ``models``: M modules of one architecture (same module tree, attributes and parameter
    shapes, dtypes, devices), parameter-only; their current weights are the initial weights and
    their final weights are written back into them. ``seeds``: the M run seeds (each member's
    data order comes from ``derive_seed(seed or config.data_seed, "data_order")`` as in ``fit``).
    ``lrs``: optional per-member base learning rates (before batch-size scaling).

    Returns M :class:`TrainResult`, in the order of ``models``, with the curves (``batch_loss``,
    ``train_loss``/``train_acc``/``test_loss``/``test_acc``), metrics and status ``fit`` gives.
    Raises :class:`ConfigError` for an optimizer other than 'sgd'/'gd', mismatched
    architectures, models with buffers (BatchNorm) or dropout, and wrong numbers of seeds/lrs.
    """
    started = time.perf_counter()
    models = list(models)
    seeds = list(seeds)
    _check_models(models)
    configs = _member_configs(config, len(models), seeds, lrs)

    classification = data.num_classes is not None
    loss_fn = loss_function(config.loss, data.num_classes)
    n = data.n_train
    batch_size = config.effective_batch_size(n)
    total = config.total_steps(n)
    per_epoch = steps_per_epoch(n, batch_size, config.drop_last)
    if per_epoch == 0:
        raise ConfigError(f"batch_size={config.batch_size} with drop_last leaves no batch of {n} examples")
    eval_every = config.eval_every or per_epoch
    gd = config.optimizer == "gd"
    members = [_Member(i, s, c, s if config.data_seed is None else config.data_seed, c.effective_lr(n))
               for i, (s, c) in enumerate(zip(seeds, configs))]

    # Stacked state: the template is models[0]; `stacked` maps every parameter name to (M, ...).
    template = models[0]
    stacked, _ = stack_module_state(models)
    names = list(stacked)
    trainable = [name for name, p in template.named_parameters() if p.requires_grad]
    stacked = {name: t.detach().clone().requires_grad_(name in trainable) for name, t in stacked.items()}
    momentum_buffers: list[Tensor | None] = [None] * len(trainable)
    active = list(members)  # row r of the stacked tensors is active[r]

    def member_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(template, p, (x,)), y)

    def member_output(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(template, p, (x,))

    loss_per_batch = vmap(member_loss, in_dims=(0, 0, 0))        # each member its own batch
    loss_shared = vmap(member_loss, in_dims=(0, None, None))     # one batch for all (gd)
    output_shared = vmap(member_output, in_dims=(0, None))       # evaluation
    loss_of_outputs = vmap(loss_fn, in_dims=(0, None))

    def lr_now(step: int) -> float | Tensor:
        factor = lr_factor(step, total, config.schedule, warmup_steps=config.warmup_steps,
                           milestones=config.milestones, gamma=config.gamma)
        values = [m.base_lr * factor for m in active]
        if all(v == values[0] for v in values):
            return values[0]
        return torch.tensor(values, dtype=stacked[trainable[0]].dtype, device=stacked[trainable[0]].device)

    @torch.no_grad()
    def evaluate_split(x: Tensor, y: Tensor) -> list[dict[str, float]]:
        """Per active member, ``loop.evaluate``'s numbers: chunked mean loss (and accuracy)."""
        rows = len(active)
        totals, correct = [0.0] * rows, [0] * rows
        for start in range(0, len(x), config.eval_batch_size):
            xb, yb = x[start:start + config.eval_batch_size], y[start:start + config.eval_batch_size]
            out = output_shared(stacked, xb)
            for r, value in enumerate(loss_of_outputs(out, yb).tolist()):
                totals[r] += value * len(xb)
            if classification:
                hits = (out.argmax(dim=2) == yb).sum(dim=1).tolist()
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

    epoch_x: Tensor | None = None  # (M, n, ...): each member's training inputs in its epoch order
    epoch_y: Tensor | None = None

    def retire(rows: list[int], step: int) -> None:
        """Freeze the members in ``rows``: keep their weights, drop them from the stacked state."""
        nonlocal stacked, momentum_buffers, active, epoch_x, epoch_y
        now = time.perf_counter() - started
        for r in rows:
            member = active[r]
            member.final = {name: t[r].detach().clone() for name, t in stacked.items()}
            member.steps, member.wall_time_s = step, now
        keep = [r for r in range(len(active)) if r not in rows]
        if not keep:
            active = []
            return
        index = torch.tensor(keep, device=stacked[names[0]].device)
        stacked = {name: t.detach().index_select(0, index).requires_grad_(name in trainable)
                   for name, t in stacked.items()}
        momentum_buffers = [None if b is None else b.index_select(0, index) for b in momentum_buffers]
        if epoch_x is not None:
            epoch_x, epoch_y = epoch_x.index_select(0, index), epoch_y.index_select(0, index)
        active = [active[r] for r in keep]

    template.train()
    step = 0
    run_eval(0)
    position = per_epoch  # force new permutations at the first step
    while step < total and active:
        lr = lr_now(step)
        params = [stacked[name] for name in trainable]
        # Phase 1: per-member losses and gradients.
        if gd:
            grads: list[Tensor] | None = None
            loss_values = [0.0] * len(active)
            for start in range(0, n, config.gd_chunk_size):
                xb = data.x_train[start:start + config.gd_chunk_size]
                yb = data.y_train[start:start + config.gd_chunk_size]
                losses = loss_shared(stacked, xb, yb) * (len(xb) / n)
                chunk_grads = torch.autograd.grad(losses.sum(), params)
                if grads is None:
                    grads = list(chunk_grads)
                else:
                    for g, c in zip(grads, chunk_grads):
                        g.add_(c)
                loss_values = [t + v for t, v in zip(loss_values, losses.detach().tolist())]
        else:
            if position >= per_epoch:
                perms = torch.stack([torch.randperm(n, generator=m.order_gen) for m in active])
                perms = perms.to(data.x_train.device)
                epoch_x, epoch_y = data.x_train[perms], data.y_train[perms]
                position = 0
            xb = epoch_x[:, position * batch_size:(position + 1) * batch_size]
            yb = epoch_y[:, position * batch_size:(position + 1) * batch_size]
            position += 1
            losses = loss_per_batch(stacked, xb, yb)
            grads = list(torch.autograd.grad(losses.sum(), params))
            loss_values = losses.detach().tolist()

        # Phase 2: members whose batch loss blew up stop here, before the update.
        bad = [r for r, v in enumerate(loss_values) if not math.isfinite(v) or v > config.divergence_loss]
        if bad:
            for r in bad:
                member, value = active[r], loss_values[r]
                member.status = "diverged"
                member.divergence = f"training loss {value:.4g} at step {step} (limit {config.divergence_loss:g})"
                member.record("batch_loss", step, value)
            good = [r for r in range(len(active)) if r not in bad]
            keep_index = torch.tensor(good, dtype=torch.long, device=params[0].device)
            grads = [g.index_select(0, keep_index) for g in grads]
            loss_values = [loss_values[r] for r in good]
            retire(bad, step)
            if not active:
                break
            lr = lr_now(step)
            params = [stacked[name] for name in trainable]

        # Phase 3: the SGD update on the stacked tensors.
        _sgd_step(params, grads, momentum_buffers, lr, momentum=config.momentum, nesterov=config.nesterov,
                  weight_decay=config.weight_decay)
        step += 1
        for member, value in zip(active, loss_values):
            member.record("batch_loss", step, value)
        if step % eval_every == 0 or step == total:
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
    if active:
        retire(list(range(len(active))), step)

    # Write the final weights back into the models.
    with torch.no_grad():
        for member, model in zip(members, models):
            for name, p in model.named_parameters():
                p.copy_(member.final[name])
            model.train()

    results = []
    for member in members:
        results.append(TrainResult(
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
        ))
    return results


__all__ = ["BATCHED_OPTIMIZERS", "fit_ensemble"]
