"""What every measure shares: data as weighted batches, a side-effect guard, cost accounting.

Conventions (DESIGN.md):
- ``data`` is an ``(x, y)`` pair or an iterable of ``(x, y)`` batches. A quantity "over the
  data" is the mean over all examples: batch means are weighted by their sample counts,
  never averaged with equal weight.
- ``loss_fn(outputs, targets)`` returns the *mean* loss over a batch (as
  :func:`overparam.train.loss_function` does).
- Measures have no side effects: :func:`preserved` restores the model's train/eval mode,
  every parameter's ``.grad`` and ``requires_grad``, and the CPU/CUDA RNG states.
- Each measure reports its cost in a :class:`Cost` (Hessian-vector products, forward and
  backward passes over examples, seconds).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from overparam.errors import ConfigError

LossFn = Callable[[Tensor, Tensor], Tensor]
Batch = tuple[Tensor, Tensor]


@dataclass
class Cost:
    """Work done by a measure. ``forward``/``backward`` count passes over single examples
    (a batch of 128 is 128), so costs of different batchings compare directly."""

    hvps: int = 0
    forward: int = 0
    backward: int = 0
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float]:
        return {"hvps": self.hvps, "forward": self.forward, "backward": self.backward, "seconds": self.seconds,
                **self.extra}


@contextlib.contextmanager
def timed(cost: Cost) -> Iterator[Cost]:
    """Add the wall time of the ``with`` block to ``cost.seconds``."""
    start = time.perf_counter()
    try:
        yield cost
    finally:
        cost.seconds += time.perf_counter() - start


def as_batches(data: Batch | Iterable[Batch], batch_size: int | None = None) -> list[Batch]:
    """Normalize ``data`` to a list of (x, y) batches.

    A single (x, y) pair of tensors is split into chunks of ``batch_size`` (all of it when
    None). An iterable of pairs is materialized as is (its batches are weighted by size later).
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        if len(x) != len(y):
            raise ConfigError(f"data has {len(x)} inputs but {len(y)} targets")
        if len(x) == 0:
            raise ConfigError("data is empty")
        step = len(x) if batch_size is None else batch_size
        if step < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        return [(x[i:i + step], y[i:i + step]) for i in range(0, len(x), step)]
    batches = list(data)
    if not batches:
        raise ConfigError("data is an empty iterable of batches")
    for i, batch in enumerate(batches):
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2 and all(isinstance(t, Tensor) for t in batch)):
            raise ConfigError(f"batch {i} is not an (x, y) pair of tensors")
    return [(x, y) for x, y in batches]


def num_examples(batches: Sequence[Batch]) -> int:
    return sum(len(x) for x, _ in batches)


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def flatten(tensors: Iterable[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into tensors shaped like ``like``."""
    out, offset = [], 0
    for t in like:
        out.append(vector[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
    return out


@contextlib.contextmanager
def preserved(model: nn.Module, mode: str | None = "eval") -> Iterator[nn.Module]:
    """Run a measure on ``model`` without side effects.

    Inside the block the model is in ``mode`` ('eval', 'train', or None to leave it), every
    ``.grad`` is cleared (so autograd calls start clean and nothing leaks into the caller's
    gradients), and afterwards the original mode, gradients, ``requires_grad`` flags and the
    CPU/CUDA RNG states are restored. Eval mode is the default because it makes the loss a
    per-example sum (BatchNorm uses running statistics, dropout is off), so batching is exact.
    """
    if mode not in ("eval", "train", None):
        raise ConfigError(f"mode must be 'eval', 'train' or None, got {mode!r}")
    was_training = model.training
    params = list(model.parameters())
    grads = [p.grad for p in params]
    requires = [p.requires_grad for p in params]
    devices = sorted({p.device.index or 0 for p in params if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        try:
            for p in params:
                p.grad = None
            if mode is not None:
                model.train(mode == "train")
            yield model
        finally:
            model.train(was_training)
            for p, g, r in zip(params, grads, requires):
                p.grad = g
                p.requires_grad_(r)


def mean_loss_and_grad(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], params: Sequence[Tensor],
                       cost: Cost | None = None, create_graph: bool = False) -> tuple[Tensor, list[Tensor]]:
    """The mean loss over all examples in ``batches`` and its gradient w.r.t. ``params``
    (batch means weighted by batch size). With ``create_graph`` the gradient keeps its graph.

    Parameters the loss does not reach get zero gradients. Returns (loss as a 0-dim tensor,
    list of gradients shaped like ``params``).
    """
    n = num_examples(batches)
    total = None
    grads = [torch.zeros_like(p) for p in params]
    for x, y in batches:
        weight = len(x) / n
        loss = loss_fn(model(x), y) * weight
        if loss.requires_grad:  # a loss no parameter reaches has zero gradient
            batch_grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
            grads = [g if b is None else g + b for g, b in zip(grads, batch_grads)]  # unused: zero gradient
        total = loss.detach() if total is None else total + loss.detach()
        if cost is not None:
            cost.forward += len(x)
            cost.backward += len(x)
    return total, grads
