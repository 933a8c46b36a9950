"""Gradient statistics: per-example gradients, the implicit gradient regularizer, the terms of
SGD's modified loss, and the gradient noise scale.

Notation. Data (x_i, y_i), i = 1..N (all of ``data``, batches weighted by their sample
counts); ℓ_i(θ) = ``loss_fn(model(x_i[None]), y_i[None])`` the loss of example i alone;
L(θ) = (1/N) Σ_i ℓ_i(θ) the mean loss; g_i = ∇ℓ_i (a flat vector of length P, the trainable
parameters in ``model.parameters()`` order); ḡ = G = ∇L = (1/N) Σ_i g_i; for a set S of
examples, ∇L_S = (1/|S|) Σ_{i∈S} g_i, the gradient of the batch-mean loss on S.

Measures (each a plain function returning a small dataclass with a :class:`Cost`):

- :func:`per_example_gradients`: the (N, P) matrix of g_i via ``torch.func``
  (``vmap(grad(functional_call))``), chunked over examples.
- :func:`implicit_gradient_regularizer`: R_IG = (1/P) Σ_p (∂L/∂θ_p)² = |∇L|²/P
  (Barrett & Dherin 2021, "Implicit Gradient Regularization": gradient descent with step h
  follows the gradient flow of L + (h/4)|∇L|² = L + (hP/4) R_IG to O(h²)).
- :func:`sgd_modified_loss_terms`: Smith, Dherin, Barrett & De 2021 ("On the Origin of
  Implicit Regularization in Stochastic Gradient Descent"): one epoch of SGD with step ε over
  a random partition into m minibatches follows, to O(ε²), the modified loss
  L + (ε/(4m)) Σ_k |∇L_k|² = L + (ε/4)|∇L|² + (ε/(4m)) Σ_k |∇L_k − ∇L|².
- :func:`gradient_noise_scale`: B_simple = tr(Σ)/|G|² (McCandlish, Kaplan, Amodei et al.
  2018, "An Empirical Model of Large-Batch Training") from per-example gradients, and
  :func:`gradient_noise_scale_two_batch`, the paper's Appendix A estimator from gradient
  norms at two batch sizes, which needs no per-example gradients.

Mode. Every measure runs the model in eval mode (inside :func:`preserved`): per-example
gradients need examples not to interact, so BatchNorm must use its running statistics (in
train mode a batch of one has no batch statistics to speak of, and vmap cannot update the
running buffers) and dropout must be off. Consequently every minibatch gradient below is the
eval-mode gradient, L_S is exactly the mean of the ℓ_i over S, and all quantities are
consistent with one another. Nothing the caller sees changes: mode, ``.grad``, buffers
and RNG states are restored.

Cost is counted in passes over single examples (``Cost.forward``/``Cost.backward``): a
per-example gradient of N examples costs N forward and N backward passes (one vmapped
forward + backward per chunk), like one gradient of the mean loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

from overparam.errors import ConfigError, check_positive_int
from overparam.measures.common import (
    Batch,
    Cost,
    LossFn,
    as_batches,
    flatten,
    mean_loss_and_grad,
    num_examples,
    preserved,
    timed,
    trainable_parameters,
)

DEFAULT_CHUNK = 128


# --------------------------------------------------------------------------------------------
# shared machinery


def _check_chunk(chunk_size: object) -> int:
    return check_positive_int("chunk_size", chunk_size)


def _trainable(model: nn.Module) -> list[nn.Parameter]:
    params = trainable_parameters(model)
    if not params:
        raise ConfigError("the model has no trainable parameters (every requires_grad is False)")
    return params


def _per_example_chunks(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], chunk_size: int,
                        cost: Cost) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield (per-example flat gradients (c, P), per-example losses (c,)) for chunks of at most
    ``chunk_size`` examples, in data order. Call inside :func:`preserved` (eval mode)."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    primals = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    fixed = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    fixed.update(dict(model.named_buffers()))

    def loss_one(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        # a batch of one: the batch-mean loss is this example's loss
        out = functional_call(model, (params, fixed), (x.unsqueeze(0),))
        return loss_fn(out, y.unsqueeze(0))

    per_example = vmap(grad_and_value(loss_one), in_dims=(None, 0, 0))
    for x, y in batches:
        for start in range(0, len(x), chunk_size):
            xc, yc = x[start:start + chunk_size], y[start:start + chunk_size]
            grads, losses = per_example(primals, xc, yc)
            c = len(xc)
            cost.forward += c
            cost.backward += c
            yield torch.cat([grads[name].reshape(c, -1) for name in names], dim=1), losses.detach()


@dataclass
class _Moments:
    """Streaming count, mean and sum of squared deviations Σ|g_i − ḡ|² of flat vectors,
    combined chunk by chunk with Chan et al.'s parallel update (no cancellation, unlike
    Σ|g_i|² − N|ḡ|²)."""

    n: int = 0
    mean: Tensor | None = None
    m2: Tensor | None = None
    loss_sum: Tensor | None = None

    def add(self, g: Tensor, losses: Tensor) -> None:
        c = len(g)
        mean_c = g.mean(dim=0)
        m2_c = (g - mean_c).pow(2).sum()
        loss_c = losses.sum()
        if self.n == 0:
            self.n, self.mean, self.m2, self.loss_sum = c, mean_c, m2_c, loss_c
            return
        total = self.n + c
        delta = mean_c - self.mean
        self.mean = self.mean + delta * (c / total)
        self.m2 = self.m2 + m2_c + delta.dot(delta) * (self.n * c / total)
        self.loss_sum = self.loss_sum + loss_c
        self.n = total


def _moments(model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], chunk_size: int,
             cost: Cost) -> _Moments:
    acc = _Moments()
    for g, losses in _per_example_chunks(model, loss_fn, batches, chunk_size, cost):
        acc.add(g, losses)
    return acc


def _batch_gradient(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, params: Sequence[Tensor],
                    chunk_size: int, cost: Cost) -> Tensor:
    """Flat gradient of the batch-mean loss on (x, y), computed ``chunk_size`` examples at a time."""
    _, grads = mean_loss_and_grad(model, loss_fn, as_batches((x, y), chunk_size), params, cost)
    return flatten(grads).detach()


def _concatenate(batches: Sequence[Batch]) -> Batch:
    if len(batches) == 1:
        return batches[0]
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def _generator(seed: object) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    return torch.Generator(device="cpu").manual_seed(seed)


# --------------------------------------------------------------------------------------------
# per-example gradients


@dataclass
class PerExampleGradients:
    """``grads`` (N, P): row i is g_i = ∇_θ ℓ_i, flattened in ``model.parameters()`` order over
    the trainable parameters, in the model's dtype and device; ``losses`` (N,) the ℓ_i."""

    grads: Tensor
    losses: Tensor
    cost: Cost = field(default_factory=Cost)


def per_example_gradients(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor,
                          chunk_size: int = DEFAULT_CHUNK) -> PerExampleGradients:
    """Per-example gradients g_i = ∇_θ ℓ_i(θ), i = 1..N, as an (N, P) matrix.

    ℓ_i = ``loss_fn(model(x[i:i+1]), y[i:i+1])``: ``loss_fn`` is a batch-mean loss, so on a
    batch of one it is that example's loss, and (1/N) Σ_i g_i is the gradient of the mean loss.
    Computed with ``torch.func``: ``vmap(grad(ℓ))`` over a ``functional_call`` of the model
    with its detached parameters, ``chunk_size`` examples per vmapped call.

    The model runs in eval mode (restored afterwards): BatchNorm uses its running statistics
    and dropout is off, so examples do not interact. A model whose forward pass mixes examples
    in eval mode has no per-example gradients; the result is then meaningless.

    Args:
        x: inputs, (N, ...). y: targets, (N, ...).
        chunk_size: examples per vmapped call; peak memory ≈ chunk_size × (P + activations).

    Cost: N forward and N backward passes; memory N × P for the output.
    """
    chunk_size = _check_chunk(chunk_size)
    if not (isinstance(x, Tensor) and isinstance(y, Tensor)):
        raise ConfigError(f"x and y must be tensors, got {type(x).__name__} and {type(y).__name__}")
    batches = as_batches((x, y))
    cost = Cost()
    with timed(cost), preserved(model, "eval"):
        _trainable(model)
        chunks = list(_per_example_chunks(model, loss_fn, batches, chunk_size, cost))
        grads = torch.cat([g for g, _ in chunks])
        losses = torch.cat([l for _, l in chunks])
    return PerExampleGradients(grads=grads, losses=losses, cost=cost)


# --------------------------------------------------------------------------------------------
# implicit gradient regularizer


@dataclass
class ImplicitGradientRegularizer:
    """R_IG = |∇L|²/P (``r_ig``), |∇L|² (``grad_norm_sq``), P (``num_params``), L (``loss``)."""

    r_ig: float
    grad_norm_sq: float
    num_params: int
    loss: float
    cost: Cost = field(default_factory=Cost)

    def modified_loss(self, lr: float) -> float:
        """Barrett & Dherin's modified loss for gradient descent with step ``lr``:
        L + (lr/4)|∇L|² = L + (lr·P/4) R_IG."""
        return self.loss + lr / 4 * self.grad_norm_sq


def implicit_gradient_regularizer(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch],
                                  batch_size: int | None = None) -> ImplicitGradientRegularizer:
    """The implicit gradient regularizer of Barrett & Dherin (2021),

        R_IG(θ) = (1/P) Σ_{p=1}^{P} (∂L/∂θ_p)² = |∇L(θ)|² / P,

    for the mean loss L over all of ``data`` (batch means weighted by sample counts), P the
    number of trainable parameters (shared parameters counted once).

    Args:
        data: an (x, y) pair (in chunks of ``batch_size``, all at once when None) or an
            iterable of (x, y) batches.

    Cost: one gradient of the mean loss: N forward and N backward passes; memory O(P).
    """
    batches = as_batches(data, batch_size)
    cost = Cost()
    with timed(cost), preserved(model, "eval"):
        params = _trainable(model)
        loss, grads = mean_loss_and_grad(model, loss_fn, batches, params, cost)
        g = flatten(grads).detach()
        num_params = g.numel()
        norm_sq = float(g.dot(g))
    return ImplicitGradientRegularizer(r_ig=norm_sq / num_params, grad_norm_sq=norm_sq, num_params=num_params,
                                       loss=float(loss), cost=cost)


# --------------------------------------------------------------------------------------------
# SGD modified loss (Smith et al. 2021)


@dataclass
class SGDModifiedLossTerms:
    """The terms of Smith et al.'s SGD modified loss for one random partition.

    ``grad_norm_sq``: |∇L|² (full batch). ``mean_minibatch_grad_norm_sq``: (1/m) Σ_k |∇L_k|².
    ``variance_term``: (1/m) Σ_k |∇L_k − ∇L|² (sampled, this partition).
    ``expected_variance_term``: its exact expectation over random partitions,
    (N−B)/(B(N−1)) · ``per_example_variance``, with ``per_example_variance`` =
    (1/N) Σ_i |g_i − ḡ|². ``minibatch_grad_norms_sq`` and ``minibatch_deviations_sq`` (m,):
    the per-minibatch |∇L_k|² and |∇L_k − ∇L|² (float64, CPU). ``num_dropped``: the N − mB
    examples of the permutation's tail left out of the epoch (N mod B).
    """

    loss: float
    grad_norm_sq: float
    mean_minibatch_grad_norm_sq: float
    variance_term: float
    expected_variance_term: float
    per_example_variance: float
    minibatch_grad_norms_sq: Tensor
    minibatch_deviations_sq: Tensor
    num_examples: int
    batch_size: int
    num_batches: int
    num_dropped: int
    seed: int
    cost: Cost = field(default_factory=Cost)

    def modified_loss(self, lr: float) -> float:
        """L + (lr/(4m)) Σ_k |∇L_k|² for SGD with step ``lr`` on this partition."""
        return self.loss + lr / 4 * self.mean_minibatch_grad_norm_sq

    def expected_modified_loss(self, lr: float) -> float:
        """Its expectation over random partitions: L + (lr/4)(|∇L|² + E variance term)."""
        return self.loss + lr / 4 * (self.grad_norm_sq + self.expected_variance_term)


def sgd_modified_loss_terms(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch], batch_size: int,
                            seed: int = 0, chunk_size: int = DEFAULT_CHUNK) -> SGDModifiedLossTerms:
    """Terms of the modified loss of SGD (Smith, Dherin, Barrett & De 2021) for one epoch.

    One epoch of SGD with step ε shuffles the N examples (``torch.randperm(N)`` from a CPU
    generator seeded with ``seed``, examples in data order with batches concatenated) and
    cuts the permutation into m = ⌊N/B⌋ minibatches of B = ``batch_size`` (the last N mod B
    are dropped). To O(ε²) it follows the gradient flow of

        L_SGD = L + (ε/(4m)) Σ_k |∇L_k|²  =  L + (ε/4)|∇L|² + (ε/(4m)) Σ_k |∇L_k − ∇L|²,

    (the identity is exact when B divides N; with a dropped tail the cross term
    (ε/2) ∇L · (1/m)Σ_k(∇L_k − ∇L) need not vanish). Reported: |∇L|², (1/m) Σ_k |∇L_k|², the
    sampled variance term (1/m) Σ_k |∇L_k − ∇L|², and its exact expectation over random
    partitions. Each minibatch of a uniform random partition is marginally a uniform random
    B-subset drawn without replacement, so

        E |∇L_B − ∇L|² = (N − B) / (B (N − 1)) · (1/N) Σ_i |g_i − ḡ|²,

    computed from per-example gradients (streamed, never stored).

    Cost: per-example gradients (N forward + N backward, vmapped) and m minibatch gradients
    (mB forward + mB backward), ≈ 2 gradients of the mean loss; memory O(chunk_size × P).
    ``∇L`` is the mean of the per-example gradients (equal to the gradient of the mean loss
    in eval mode).
    """
    chunk_size = _check_chunk(chunk_size)
    gen = _generator(seed)
    batches = as_batches(data)
    n = num_examples(batches)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or not 1 <= batch_size <= n:
        raise ConfigError(f"batch_size must be an integer in [1, N={n}] (N the number of examples), "
                          f"got {batch_size!r}")
    if n < 2:
        raise ConfigError(f"the SGD modified loss needs at least 2 examples, got N={n}")
    cost = Cost()
    with timed(cost), preserved(model, "eval"):
        params = _trainable(model)
        moments = _moments(model, loss_fn, batches, chunk_size, cost)
        full = moments.mean
        per_example_variance = float(moments.m2) / n
        x, y = _concatenate(batches)
        perm = torch.randperm(n, generator=gen).to(x.device)
        m = n // batch_size
        norms, deviations = [], []
        for k in range(m):
            idx = perm[k * batch_size:(k + 1) * batch_size]
            gk = _batch_gradient(model, loss_fn, x[idx], y[idx], params, chunk_size, cost)
            norms.append(gk.dot(gk))
            d = gk - full
            deviations.append(d.dot(d))
        norms_t = torch.stack(norms).to("cpu", torch.float64)
        deviations_t = torch.stack(deviations).to("cpu", torch.float64)
        loss = float(moments.loss_sum) / n
        grad_norm_sq = float(full.dot(full))
    factor = (n - batch_size) / (batch_size * (n - 1))
    return SGDModifiedLossTerms(
        loss=loss, grad_norm_sq=grad_norm_sq, mean_minibatch_grad_norm_sq=float(norms_t.mean()),
        variance_term=float(deviations_t.mean()), expected_variance_term=factor * per_example_variance,
        per_example_variance=per_example_variance, minibatch_grad_norms_sq=norms_t,
        minibatch_deviations_sq=deviations_t, num_examples=n, batch_size=batch_size, num_batches=m,
        num_dropped=n - m * batch_size, seed=seed, cost=cost)


# --------------------------------------------------------------------------------------------
# gradient noise scale (McCandlish et al. 2018)


@dataclass
class GradientNoiseScale:
    """B_simple = tr(Σ)/|G|² (``b_simple``), ``trace_sigma`` = tr(Σ), ``grad_norm_sq`` = |G|²,
    over ``num_examples`` examples. ``b_simple`` is inf when G = 0 (nan if also tr Σ = 0)."""

    b_simple: float
    trace_sigma: float
    grad_norm_sq: float
    num_examples: int
    cost: Cost = field(default_factory=Cost)


def _ratio(num: float, den: float) -> float:
    if den == 0.0:
        return math.nan if num == 0.0 else math.inf
    return num / den


def gradient_noise_scale(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch],
                         chunk_size: int = DEFAULT_CHUNK) -> GradientNoiseScale:
    """The simple gradient noise scale of McCandlish et al. (2018) from per-example gradients:

        G = (1/N) Σ_i g_i,   tr(Σ) = (1/(N−1)) Σ_i |g_i − G|²,   B_simple = tr(Σ) / |G|².

    Σ is the per-example gradient covariance with the unbiased 1/(N−1) normalization; its
    trace is accumulated chunk by chunk with Chan et al.'s stable update (the (N, P) matrix is
    never formed). |G|² is the plug-in |ḡ|², exact for the data as the population (as it is
    for SGD on a training set); as an estimate of a distribution's |E g|² it is biased upward
    by tr(Σ)/N.

    Cost: N forward + N backward passes (vmapped); memory O(chunk_size × P). For models where
    per-example gradients are too expensive, use :func:`gradient_noise_scale_two_batch`.
    """
    chunk_size = _check_chunk(chunk_size)
    batches = as_batches(data)
    n = num_examples(batches)
    if n < 2:
        raise ConfigError(f"the gradient noise scale needs at least 2 examples, got N={n}")
    cost = Cost()
    with timed(cost), preserved(model, "eval"):
        _trainable(model)
        moments = _moments(model, loss_fn, batches, chunk_size, cost)
        trace = float(moments.m2) / (n - 1)
        norm_sq = float(moments.mean.dot(moments.mean))
    return GradientNoiseScale(b_simple=_ratio(trace, norm_sq), trace_sigma=trace, grad_norm_sq=norm_sq,
                              num_examples=n, cost=cost)


@dataclass
class TwoBatchNoiseScale:
    """The two-batch estimate: ``b_simple`` = mean(tr Σ estimates)/mean(|G|² estimates) with
    its delta-method ``b_simple_stderr``; ``trace_sigma`` and ``grad_norm_sq`` (the means over
    pairs) with standard errors; the per-pair ``small_norms_sq`` |G_small|² and
    ``big_norms_sq`` |G_big|² (num_pairs,), float64 on the CPU."""

    b_simple: float
    b_simple_stderr: float
    trace_sigma: float
    trace_sigma_stderr: float
    grad_norm_sq: float
    grad_norm_sq_stderr: float
    small_batch: int
    big_batch: int
    num_pairs: int
    num_examples: int
    finite_population: bool
    small_norms_sq: Tensor
    big_norms_sq: Tensor
    cost: Cost = field(default_factory=Cost)


def gradient_noise_scale_two_batch(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch],
                                   small_batch: int, big_batch: int, num_pairs: int = 10, seed: int = 0, *,
                                   finite_population: bool = True,
                                   chunk_size: int = DEFAULT_CHUNK) -> TwoBatchNoiseScale:
    """B_simple from gradient norms at two batch sizes (McCandlish et al. 2018, Appendix A).

    For a batch of B examples, E|G_B|² = |G|² + tr(Σ)/B. Measuring |G_B|² at B_small and
    B_big and solving the two equations gives, per pair j,

        tr(Σ)_j = (|G_small|² − |G_big|²) / (1/B_small − 1/B_big),
        |G|²_j  = (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small),

    and, as the paper recommends, B_simple = mean_j tr(Σ)_j / mean_j |G|²_j (numerator and
    denominator averaged separately before dividing). Standard errors over pairs use the
    sample standard deviation (ddof 1, nan for one pair); that of B_simple is the delta
    method, sqrt(var_j(tr(Σ)_j − B_simple |G|²_j) / num_pairs) / |mean_j |G|²_j|.

    Sampling: each pair draws B_big distinct examples uniformly at random (a CPU generator
    seeded with ``seed``); the small batch is the first B_small of them (as in the paper's
    data-parallel setting, one worker's shard), so G_big = (B_small G_small +
    (B_big − B_small) G_rest)/B_big costs B_big examples per pair. Drawing without
    replacement from N examples gives E|G_B|² = |G|² + tr(Σ)(1/B − 1/N) with tr(Σ) the
    1/(N−1) per-example trace; with ``finite_population`` (default) the estimator solves
    these equations instead, i.e. adds tr(Σ)_j/N to |G|²_j, which makes both estimates
    unbiased for :func:`gradient_noise_scale`'s tr(Σ) and |G|² on ``data``. Without it, the
    paper's formulas above are used verbatim (|G|² biased by −tr(Σ)/N; negligible for N ≫ B).
    tr(Σ)_j is unaffected.

    Individual |G|²_j (and tr(Σ)_j) estimates can be negative; only their means are meaningful.

    Cost: num_pairs × B_big forward and backward passes; memory O(P) plus one chunk.
    """
    chunk_size = _check_chunk(chunk_size)
    num_pairs = check_positive_int("num_pairs", num_pairs)
    gen = _generator(seed)
    batches = as_batches(data)
    n = num_examples(batches)
    small_batch = check_positive_int("small_batch", small_batch)
    big_batch = check_positive_int("big_batch", big_batch)
    if not small_batch < big_batch <= n:
        raise ConfigError(f"need small_batch < big_batch <= N={n} (N the number of examples), "
                          f"got small_batch={small_batch}, big_batch={big_batch}")
    cost = Cost(extra={"pairs": float(num_pairs)})
    with timed(cost), preserved(model, "eval"):
        params = _trainable(model)
        x, y = _concatenate(batches)
        small, big = [], []
        for _ in range(num_pairs):
            idx = torch.randperm(n, generator=gen)[:big_batch].to(x.device)
            first, rest = idx[:small_batch], idx[small_batch:]
            g_small = _batch_gradient(model, loss_fn, x[first], y[first], params, chunk_size, cost)
            g_rest = _batch_gradient(model, loss_fn, x[rest], y[rest], params, chunk_size, cost)
            g_big = (g_small * small_batch + g_rest * (big_batch - small_batch)) / big_batch
            small.append(g_small.dot(g_small))
            big.append(g_big.dot(g_big))
        small_t = torch.stack(small).to("cpu", torch.float64)
        big_t = torch.stack(big).to("cpu", torch.float64)
    trace_j = (small_t - big_t) / (1 / small_batch - 1 / big_batch)
    norm_j = (big_batch * big_t - small_batch * small_t) / (big_batch - small_batch)
    if finite_population:
        norm_j = norm_j + trace_j / n
    trace, norm_sq = float(trace_j.mean()), float(norm_j.mean())
    b_simple = _ratio(trace, norm_sq)

    def stderr(values: Tensor) -> float:
        return float(values.std(correction=1) / math.sqrt(num_pairs)) if num_pairs > 1 else math.nan

    b_err = stderr(trace_j - b_simple * norm_j) / abs(norm_sq) if math.isfinite(b_simple) else math.nan
    return TwoBatchNoiseScale(
        b_simple=b_simple, b_simple_stderr=b_err, trace_sigma=trace, trace_sigma_stderr=stderr(trace_j),
        grad_norm_sq=norm_sq, grad_norm_sq_stderr=stderr(norm_j), small_batch=small_batch, big_batch=big_batch,
        num_pairs=num_pairs, num_examples=n, finite_population=finite_population, small_norms_sq=small_t,
        big_norms_sq=big_t, cost=cost)
