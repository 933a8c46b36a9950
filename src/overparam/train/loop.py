"""One flat training loop with callbacks.

``fit(model, data, config)`` trains ``model`` on a device-resident :class:`Dataset` (no
DataLoader: each minibatch is an index into the training tensors), evaluates on a schedule,
calls callbacks at chosen steps (where measures run), and returns a :class:`TrainResult`.

Conventions
- A *step* is one parameter update. For ``optimizer='gd'`` a step uses the exact gradient of
  the mean training loss, accumulated over chunks of ``gd_chunk_size`` examples (exact for any
  dataset size, apart from BatchNorm, whose statistics are per chunk).
- Data order has its own seed (``data_seed``, default derived from ``seed``): per epoch a
  random permutation, batches of ``batch_size``, the last partial batch kept unless
  ``drop_last``.
- Explicit gradient regularization (``grad_penalty`` = λ > 0; Barrett & Dherin 2021): every
  step descends L_B + λ|∇_θ L_B|² instead of L_B, where L_B is the step's mean loss (the
  minibatch; for ``gd`` the full training set) and |·| the Euclidean norm over all trainable
  parameters. In the project's convention (``measures.implicit_gradient_regularizer``,
  R_IG = |∇L|²/P over P parameters) the penalty is λ·P·R_IG. Its gradient is
  ∇L_B + 2λ H_B ∇L_B (H_B the Hessian of L_B), by double backprop. GD with step h follows
  the flow of L + (h/4)|∇L|² to O(h²), so λ = h/4 is the explicit twin of GD's implicit term.
  The penalty uses L_B alone (weight decay is added by the optimizer, outside it); the
  recorded ``batch_loss`` is the unpenalized L_B.
- Divergence (a non-finite loss, or a training loss above ``divergence_loss``) ends the run
  with ``status='diverged'``; everything recorded so far is kept.
- Training to a target (``target_loss`` τ and/or ``target_acc`` a): the budget (``steps`` or
  ``epochs``) becomes a cap, and the run stops at the first evaluation where the training loss
  over the whole training set is <= τ or the training accuracy >= a (either suffices when both
  are set). Evaluations then happen every ``target_every`` steps as well as on the usual
  schedule (step 0 included: a model already at the target takes no step). The result says
  whether the target was reached (``target_reached``) and at which step (``target_step``); a
  run that hits the cap first ends with ``status='done'`` and ``target_reached=False``, and
  the caller decides what a miss means. Callbacks marked ``at_end`` also run at the stopping step.
- Deterministic: the same model, data, config and seeds give bit-identical results on CPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from overparam.data.base import Dataset
from overparam.errors import ConfigError, check_positive_int, choice_error
from overparam.seeding import derive_seed
from overparam.train.optim import (
    LR_SCALING,
    OPTIMIZERS,
    SCHEDULES,
    lr_factor,
    make_optimizer,
    sam_ascent,
    sam_restore,
    scaled_lr,
)

LOSSES = ("cross_entropy", "mse")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. The budget is ``epochs`` or ``steps`` (at most one may be set; with
    neither, 10 epochs)."""

    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    sam_rho: float = 0.05
    batch_size: int = 128
    lr_scaling: str = "none"  # none | linear | sqrt, relative to base_batch_size
    base_batch_size: int = 128
    epochs: float | None = None
    steps: int | None = None
    schedule: str = "constant"  # constant | step | cosine
    warmup_steps: int = 0
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    loss: str = "cross_entropy"  # cross_entropy | mse (one-hot targets for classification)
    eval_every: int | None = None  # steps between evaluations; None: once per epoch
    eval_batch_size: int = 4096
    gd_chunk_size: int = 4096
    drop_last: bool = False
    divergence_loss: float = 1e6
    data_seed: int | None = None
    grad_penalty: float = 0.0  # λ >= 0: minimize L_B + λ|∇L_B|² (explicit gradient regularization)
    target_loss: float | None = None  # stop once the train loss (whole training set) <= this; budget = cap
    target_acc: float | None = None  # stop once the train accuracy >= this; budget = cap
    target_every: int | None = None  # steps between target checks; None: at the evaluations (eval_every)

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise choice_error("optimizer", self.optimizer, OPTIMIZERS)
        if self.schedule not in SCHEDULES:
            raise choice_error("lr schedule", self.schedule, SCHEDULES)
        if self.lr_scaling not in LR_SCALING:
            raise choice_error("lr scaling rule", self.lr_scaling, LR_SCALING)
        if self.loss not in LOSSES:
            raise choice_error("loss", self.loss, LOSSES)
        for name in ("batch_size", "base_batch_size", "eval_batch_size", "gd_chunk_size"):
            check_positive_int(name, getattr(self, name))
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive finite number, got {self.lr!r}")
        if self.epochs is not None and self.steps is not None:
            raise ConfigError(f"set one of epochs and steps, not both: got epochs={self.epochs!r}, steps={self.steps!r}")
        if self.epochs is None and self.steps is None:
            object.__setattr__(self, "epochs", 10)
        if self.steps is not None:
            check_positive_int("steps", self.steps)
        if self.epochs is not None and not (isinstance(self.epochs, (int, float)) and self.epochs > 0):
            raise ConfigError(f"epochs must be a positive number, got {self.epochs!r}")
        if self.eval_every is not None:
            check_positive_int("eval_every", self.eval_every)
        check_positive_int("warmup_steps", self.warmup_steps, minimum=0)
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.optimizer == "sam" and not self.sam_rho > 0:
            raise ConfigError(f"sam_rho must be > 0, got {self.sam_rho!r}")
        if isinstance(self.grad_penalty, bool) or not isinstance(self.grad_penalty, (int, float)) or not (
                math.isfinite(self.grad_penalty) and self.grad_penalty >= 0):
            raise ConfigError(f"grad_penalty must be a finite number >= 0 (the λ of λ|∇L_B|²), "
                              f"got {self.grad_penalty!r}")
        if self.target_loss is not None and (isinstance(self.target_loss, bool) or not isinstance(
                self.target_loss, (int, float)) or not (math.isfinite(self.target_loss) and self.target_loss > 0)):
            raise ConfigError(f"target_loss must be a finite number > 0 (the training loss to stop at), "
                              f"got {self.target_loss!r}")
        if self.target_acc is not None and (isinstance(self.target_acc, bool) or not isinstance(
                self.target_acc, (int, float)) or not 0 < self.target_acc <= 1):
            raise ConfigError(f"target_acc must be a fraction in (0, 1] (the training accuracy to stop at), "
                              f"got {self.target_acc!r}")
        if self.target_every is not None:
            check_positive_int("target_every", self.target_every)
            if not self.has_target:
                raise ConfigError(f"target_every={self.target_every!r} needs target_loss or target_acc")
        if self.grad_penalty > 0 and self.optimizer == "sam":
            raise ConfigError("grad_penalty > 0 is not implemented for optimizer 'sam' (its ascent step would "
                              "need the penalized gradient too); accepted with: sgd, gd, adam, adamw")

    @property
    def has_target(self) -> bool:
        """Whether the run trains to a target (the budget is then a cap)."""
        return self.target_loss is not None or self.target_acc is not None

    def reached(self, metrics: dict[str, float]) -> bool:
        """Whether evaluated ``metrics`` (train_loss, train_acc) meet the target."""
        loss, acc = metrics.get("train_loss"), metrics.get("train_acc")
        return ((self.target_loss is not None and loss is not None and loss <= self.target_loss)
                or (self.target_acc is not None and acc is not None and acc >= self.target_acc))

    def evaluates_at(self, step: int, total: int, eval_every: int) -> bool:
        """Whether training evaluates (and checks its target) after update ``step``."""
        return (step % eval_every == 0 or step == total
                or (self.target_every is not None and step % self.target_every == 0))

    def effective_lr(self, n_train: int) -> float:
        """Base LR after the batch-size scaling rule."""
        return scaled_lr(self.lr, self.effective_batch_size(n_train), self.base_batch_size, self.lr_scaling)

    def effective_batch_size(self, n_train: int) -> int:
        return n_train if self.optimizer == "gd" else min(self.batch_size, n_train)

    def step_plan(self, n_train: int) -> tuple[int, int, int, int]:
        """(batch size, total steps, steps per epoch, steps between evaluations) for a
        training set of ``n_train`` examples; raises if drop_last leaves no batch."""
        batch_size = self.effective_batch_size(n_train)
        per_epoch = steps_per_epoch(n_train, batch_size, self.drop_last)
        if per_epoch == 0:
            raise ConfigError(f"batch_size={self.batch_size} with drop_last leaves no batch of {n_train} examples")
        return batch_size, self.total_steps(n_train), per_epoch, self.eval_every or per_epoch

    def total_steps(self, n_train: int) -> int:
        if self.steps is not None:
            return self.steps
        per_epoch = steps_per_epoch(n_train, self.effective_batch_size(n_train), self.drop_last)
        return max(1, math.ceil(self.epochs * per_epoch))


def steps_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


@dataclass
class TrainState:
    """What a callback sees: the live model and optimizer, the step about to be (or just) taken."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    data: Dataset
    config: TrainConfig
    step: int
    epoch: float
    curves: dict[str, list[tuple[int, float]]]
    metrics: dict[str, float]

    def record(self, name: str, value: float) -> None:
        """Append ``(step, value)`` to curve ``name``."""
        self.curves.setdefault(name, []).append((self.step, float(value)))


@dataclass
class Callback:
    """Calls ``fn(state)`` at the given steps (0 = before training, ``total`` = after the last
    update), or every ``every`` steps, or both."""

    fn: Callable[[TrainState], Any]
    steps: Iterable[int] = ()
    every: int | None = None
    at_end: bool = True

    def due(self, step: int, total: int, final: bool = False) -> bool:
        """Due at ``step`` of ``total``; ``final``: training stops after this step (a target was reached)."""
        return (step in set(self.steps) or (self.every is not None and step % self.every == 0)
                or (self.at_end and (step == total or final)))


@dataclass
class TrainResult:
    status: str  # "done" | "diverged"
    steps: int
    epochs: float
    metrics: dict[str, float]
    curves: dict[str, list[tuple[int, float]]]
    early_stopping_step: int | None  # step of minimum test (held-out) loss among evaluations
    early_stopping_test_acc: float | None
    wall_time_s: float
    lr: float
    batch_size: int
    divergence: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    target_reached: bool | None = None  # None: no target set
    target_step: int | None = None  # the step at which it was reached


def loss_function(name: str, num_classes: int | None) -> Callable[[Tensor, Tensor], Tensor]:
    """The mean loss over a batch, as a function (outputs, targets) -> scalar.

    cross_entropy: mean over examples of -log softmax(f(x_i))[y_i].
    mse: torch's ``mse_loss``, the mean over all n*k entries of (f(x_i)_j - t_ij)^2, with
    t_i = e_{y_i} (one-hot) for classification and t_i = y_i for regression.
    """
    if name not in LOSSES:
        raise choice_error("loss", name, LOSSES)
    if name == "cross_entropy":
        if num_classes is None:
            raise ConfigError("loss 'cross_entropy' needs a classification dataset; use loss='mse' for regression")
        return lambda out, y: nn.functional.cross_entropy(out, y)
    if num_classes is None:
        return lambda out, y: nn.functional.mse_loss(out.reshape(y.shape), y)
    return lambda out, y: nn.functional.mse_loss(out, nn.functional.one_hot(y, num_classes).to(out.dtype))


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable, batch_size: int = 4096,
             classification: bool = True) -> dict[str, float]:
    """Mean loss (and accuracy) of ``model`` on (x, y) in eval mode, in chunks weighted by
    their sizes. Restores the model's train/eval mode."""
    was_training = model.training
    model.eval()
    total_loss, correct, n = 0.0, 0, len(x)
    try:
        for start in range(0, n, batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            out = model(xb)
            total_loss += loss_fn(out, yb).item() * len(xb)
            if classification:
                correct += (out.argmax(dim=1) == yb).sum().item()
    finally:
        model.train(was_training)
    result = {"loss": total_loss / n}
    if classification:
        result["acc"] = correct / n
    return result


def _full_batch_backward(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable, chunk: int) -> float:
    """Accumulate into .grad the exact gradient of the mean loss over all of (x, y).

    Each chunk's mean loss is weighted by len(chunk)/n, so the sum is the full-batch mean.
    Returns the mean loss.
    """
    n, total = len(x), 0.0
    for start in range(0, n, chunk):
        xb, yb = x[start:start + chunk], y[start:start + chunk]
        loss = loss_fn(model(xb), yb) * (len(xb) / n)
        loss.backward()
        total += loss.item()
    return total


def _penalized_backward(loss: Tensor, params: Sequence[Tensor], penalty: float) -> None:
    """Accumulate into .grad the gradient of ``loss + penalty * |∇loss|²``, i.e.
    ∇L + 2·penalty·H∇L, by double backprop (the parameter gradient is built with
    ``create_graph=True`` and differentiated again). Cost: about two backward passes more
    than ``loss.backward()``."""
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    norm_sq = sum((g * g).sum() for g in grads if g is not None)
    (loss + penalty * norm_sq).backward()


def _full_batch_penalty_backward(model: nn.Module, params: Sequence[nn.Parameter], x: Tensor, y: Tensor,
                                 loss_fn: Callable, chunk: int, penalty: float) -> None:
    """With .grad holding the exact full-batch gradient g = ∇L (from :func:`_full_batch_backward`),
    add the penalty's gradient 2·penalty·H g, exactly over chunks: H g = Σ_c (n_c/n) ∇(∇L_c · g)
    (Hessian-vector products are linear in the chunks, while |∇L|² is not a sum of per-chunk
    |∇L_c|²). Cost per chunk: one forward, one backward with ``create_graph`` and one double
    backward."""
    g = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
    n = len(x)
    for start in range(0, n, chunk):
        xb, yb = x[start:start + chunk], y[start:start + chunk]
        loss = loss_fn(model(xb), yb) * (len(xb) / n)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        directional = sum((gc * gv).sum() for gc, gv in zip(grads, g) if gc is not None)
        (2 * penalty * directional).backward()


def fit(model: nn.Module, data: Dataset, config: TrainConfig, *, seed: int = 0,
        callbacks: Sequence[Callback] = (), progress: Callable[[int, int, dict], None] | None = None) -> TrainResult:
    """Train ``model`` on ``data`` as ``config`` says. See the module docstring."""
    started = time.perf_counter()
    classification = data.num_classes is not None
    loss_fn = loss_function(config.loss, data.num_classes)
    n = data.n_train
    batch_size, total, per_epoch, eval_every = config.step_plan(n)
    base_lr = config.effective_lr(n)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(config.optimizer, params, lr=base_lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay, betas=config.betas)
    order_gen = torch.Generator().manual_seed(
        derive_seed(seed if config.data_seed is None else config.data_seed, "data_order"))

    curves: dict[str, list[tuple[int, float]]] = {}
    metrics: dict[str, float] = {}
    state = TrainState(model, optimizer, data, config, 0, 0.0, curves, metrics)
    best: tuple[float, int, float | None] | None = None  # (test loss, step, test acc)

    def run_eval(step: int) -> None:
        nonlocal best
        train = evaluate(model, data.x_train, data.y_train, loss_fn, config.eval_batch_size, classification)
        test = evaluate(model, data.x_test, data.y_test, loss_fn, config.eval_batch_size, classification)
        for split, values in (("train", train), ("test", test)):
            for key, value in values.items():
                metrics[f"{split}_{key}"] = value
                state.record(f"{split}_{key}", value)
        if math.isfinite(test["loss"]) and (best is None or test["loss"] < best[0]):
            best = (test["loss"], step, test.get("acc"))
        if progress is not None:
            progress(step, total, dict(metrics))

    def run_callbacks(step: int, final: bool = False) -> None:
        for callback in callbacks:
            if callback.due(step, total, final):
                callback.fn(state)

    model.train()
    status, divergence, step, target_step = "done", None, 0, None
    run_eval(0)
    if config.has_target and config.reached(metrics):
        target_step = 0
    run_callbacks(0, final=target_step is not None)
    permutation, position = None, per_epoch  # force a new permutation at the first step
    while step < total and target_step is None:
        for group in optimizer.param_groups:
            group["lr"] = base_lr * lr_factor(step, total, config.schedule, warmup_steps=config.warmup_steps,
                                              milestones=config.milestones, gamma=config.gamma)
        optimizer.zero_grad(set_to_none=True)
        if config.optimizer == "gd" and config.grad_penalty > 0 and n <= config.gd_chunk_size:
            loss = loss_fn(model(data.x_train), data.y_train)  # one chunk: penalize it directly
            _penalized_backward(loss, params, config.grad_penalty)
            loss_value = loss.item()
        elif config.optimizer == "gd":
            loss_value = _full_batch_backward(model, data.x_train, data.y_train, loss_fn, config.gd_chunk_size)
            if config.grad_penalty > 0:
                _full_batch_penalty_backward(model, params, data.x_train, data.y_train, loss_fn,
                                             config.gd_chunk_size, config.grad_penalty)
        else:
            if position >= per_epoch:
                permutation = torch.randperm(n, generator=order_gen).to(data.x_train.device)
                position = 0
            idx = permutation[position * batch_size:(position + 1) * batch_size]
            position += 1
            xb, yb = data.x_train[idx], data.y_train[idx]
            loss = loss_fn(model(xb), yb)
            if config.grad_penalty > 0:
                _penalized_backward(loss, params, config.grad_penalty)
            else:
                loss.backward()
            loss_value = loss.item()
            if config.optimizer == "sam" and math.isfinite(loss_value):
                offsets = sam_ascent(params, config.sam_rho)
                optimizer.zero_grad(set_to_none=True)
                loss_fn(model(xb), yb).backward()
                sam_restore(params, offsets)
        if not math.isfinite(loss_value) or loss_value > config.divergence_loss:
            status = "diverged"
            divergence = f"training loss {loss_value:.4g} at step {step} (limit {config.divergence_loss:g})"
            state.record("batch_loss", loss_value)
            break
        optimizer.step()
        step += 1
        state.step, state.epoch = step, step / per_epoch
        state.record("batch_loss", loss_value)
        if config.evaluates_at(step, total, eval_every):
            run_eval(step)
            if not math.isfinite(metrics["train_loss"]) or metrics["train_loss"] > config.divergence_loss:
                status = "diverged"
                divergence = f"evaluated training loss {metrics['train_loss']:.4g} at step {step}"
                break
            if config.has_target and config.reached(metrics):
                target_step = step
                run_callbacks(step, final=True)
                break
        run_callbacks(step)

    return TrainResult(
        status=status,
        steps=step,
        epochs=step / per_epoch,
        metrics=dict(metrics),
        curves=curves,
        early_stopping_step=None if best is None else best[1],
        early_stopping_test_acc=None if best is None else best[2],
        wall_time_s=time.perf_counter() - started,
        lr=base_lr,
        batch_size=batch_size,
        divergence=divergence,
        config=asdict(config),
        target_reached=(target_step is not None) if config.has_target else None,
        target_step=target_step,
    )
