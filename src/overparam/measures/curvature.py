"""Curvature of the training loss: Hessian eigenvalues, trace and spectral density.

All three are matrix-free: they touch the Hessian H = ∇²L(θ) of the mean loss
L(θ) = (1/N) Σ_i ℓ_i(θ) over *all* of ``data`` only through exact Hessian-vector products
(HVPs), with batch means weighted by their sample counts.

HVPs (:class:`HessianOperator`)
    'graph' (default when the data fit in a few batches): the gradient of each batch is built
    once with ``create_graph=True`` and kept; every HVP is then one backward pass through
    that graph, Hv = ∇(∇L · v), about 1.5x the cost of a gradient.
    'forward_over_reverse': ``torch.func.jvp`` of ``torch.func.grad`` per batch, which keeps
    no graph between products (memory of one batch), at about 2-3x a gradient per batch.

Eigenvalues (:func:`hessian_eigenvalues`)
    Lanczos with full reorthogonalization. After every step the Ritz pairs (θ_j, y_j) of the
    tridiagonal matrix T_m give the residual norm r_j = ||H y_j − θ_j y_j|| = |β_m s_{mj}|
    (s_j the eigenvector of T_m). Iteration stops once the k largest satisfy
    bound_j ≤ tol·|θ_j|, with bound_j = r_j (criterion 'residual', rigorous: some eigenvalue
    of H lies within r_j of θ_j) or min(r_j, r_j²/gap_j) (criterion 'gap', the default:
    Kato-Temple with the gap to the nearest other Ritz value). The true residuals are
    recomputed from the stored products H q_j and reported, with a ``converged`` flag. A
    previous top eigenvector can warm-start the iteration (``v0``), which is what measuring
    along training should do.

Trace (:func:`hessian_trace`): Hutchinson or Hutch++ (Meyer et al. 2021) with Rademacher
probes, with a standard error. Density (:func:`hessian_spectrum`): stochastic Lanczos
quadrature (Golub & Meurant; Ghorbani et al. 2019).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from overparam.errors import ConfigError, check_positive_int
from overparam.measures.common import (
    Batch,
    Cost,
    LossFn,
    as_batches,
    flatten,
    num_examples,
    preserved,
    timed,
    trainable_parameters,
    unflatten,
)

HVP_METHODS = ("auto", "graph", "forward_over_reverse")


class HessianOperator:
    """v -> H v for the Hessian of the mean loss over ``batches`` w.r.t. the model's trainable
    parameters, flattened in ``model.parameters()`` order (dimension P).

    Use inside :func:`preserved` (the measures below do). ``cost.hvps`` counts products.
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, batches: Sequence[Batch], method: str = "auto",
                 max_graph_examples: int = 65536, cost: Cost | None = None) -> None:
        if method not in HVP_METHODS:
            raise ConfigError(f"unknown HVP method {method!r}; accepted: {HVP_METHODS}")
        self.model, self.loss_fn, self.batches = model, loss_fn, list(batches)
        self.params = trainable_parameters(model)
        if not self.params:
            raise ConfigError("the model has no trainable parameters")
        self.n = num_examples(self.batches)
        self.dim = sum(p.numel() for p in self.params)
        self.dtype, self.device = self.params[0].dtype, self.params[0].device
        self.cost = cost if cost is not None else Cost()
        if method == "auto":
            method = "graph" if self.n <= max_graph_examples else "forward_over_reverse"
        self.method = method
        self._graphs: list[tuple[int, list[Tensor]]] | None = None  # (batch size, gradient with graph)

    def _build_graphs(self) -> None:
        self._graphs = []
        for x, y in self.batches:
            loss = self.loss_fn(self.model(x), y)
            grads = torch.autograd.grad(loss, self.params, create_graph=True)
            self._graphs.append((len(x), list(grads)))
            self.cost.forward += len(x)
            self.cost.backward += len(x)

    def gradient(self) -> Tensor:
        """The flat gradient of the mean loss (reuses the graphs in 'graph' mode)."""
        if self.method == "graph":
            if self._graphs is None:
                self._build_graphs()
            return sum(flatten(g.detach() for g in grads) * (count / self.n) for count, grads in self._graphs)
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for x, y in self.batches:
            loss = self.loss_fn(self.model(x), y)
            total += flatten(torch.autograd.grad(loss, self.params)) * (len(x) / self.n)
            self.cost.forward += len(x)
            self.cost.backward += len(x)
        return total

    def matvec(self, v: Tensor) -> Tensor:
        """H v for a flat vector v of length P (any float dtype; computed in the model's)."""
        v = v.to(self.device, self.dtype)
        self.cost.hvps += 1
        if self.method == "graph":
            if self._graphs is None:
                self._build_graphs()
            pieces = unflatten(v, self.params)
            total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
            for count, grads in self._graphs:
                dot = sum((g * p).sum() for g, p in zip(grads, pieces))
                total += flatten(torch.autograd.grad(dot, self.params, retain_graph=True)) * (count / self.n)
                self.cost.backward += count
            return total
        return self._forward_over_reverse(v)

    def _forward_over_reverse(self, v: Tensor) -> Tensor:
        from torch.func import functional_call, grad, jvp

        names = [name for name, p in self.model.named_parameters() if p.requires_grad]
        buffers = dict(self.model.named_buffers())
        frozen = {name: p for name, p in self.model.named_parameters() if not p.requires_grad}
        primals = tuple(p.detach() for p in self.params)
        tangents = tuple(unflatten(v, self.params))
        total = torch.zeros(self.dim, dtype=self.dtype, device=self.device)
        for x, y in self.batches:
            def loss_of(*values, x=x, y=y):
                state = {**dict(zip(names, values)), **frozen, **buffers}
                return self.loss_fn(functional_call(self.model, state, (x,)), y)

            def grad_of(*values):
                return grad(loss_of, argnums=tuple(range(len(values))))(*values)

            _, hv = jvp(grad_of, primals, tangents)
            total += flatten(hv) * (len(x) / self.n)
            self.cost.forward += 2 * len(x)
            self.cost.backward += 2 * len(x)
        return total

    def dense(self) -> Tensor:
        """The full P x P Hessian, column by column (P HVPs): for tests and tiny models."""
        eye = torch.eye(self.dim, dtype=self.dtype, device=self.device)
        return torch.stack([self.matvec(eye[i]) for i in range(self.dim)], dim=1)


@dataclass
class EigenResult:
    """The k largest algebraic eigenvalues of the Hessian (descending) and their vectors.

    ``vectors`` is (P, k) in the model's dtype; ``residuals`` are the true
    ||H v − λ v|| / |λ| after the run; ``converged`` says whether every pair met ``tol``
    within the budget; ``num_hvps`` counts every product, the residual check included.
    """

    values: Tensor
    vectors: Tensor
    residuals: Tensor
    converged: bool
    num_hvps: int
    iterations: int
    cost: Cost = field(default_factory=Cost)


CRITERIA = ("gap", "residual")


@dataclass
class LanczosRun:
    """The state of a Lanczos run: coefficients, basis Q (m, P) and products H Q (m, P)."""

    alphas: list[float]
    betas: list[float]
    basis: Tensor
    products: Tensor
    converged: bool

    def ritz(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k largest Ritz values (descending) and their coordinate vectors s (m, k)."""
        theta, s = _tridiagonal_eig(self.alphas, self.betas)
        top = np.argsort(theta)[::-1][:k]
        return theta[top], s[:, top]


def _error_bounds(theta: np.ndarray, s_last: np.ndarray, beta: float, all_theta: np.ndarray,
                  criterion: str) -> np.ndarray:
    """Bounds on |θ_j − λ| for the Ritz values ``theta``: the residual r_j = |β s_mj| (rigorous),
    or with 'gap' min(r_j, r_j^2 / gap_j) (Kato-Temple), gap_j = distance from θ_j to the
    nearest other Ritz value (an estimate of the spectral gap)."""
    residual = np.abs(beta * s_last)
    if criterion == "residual" or len(all_theta) < 2:
        return residual
    gaps = np.array([np.min(np.abs(np.delete(all_theta, np.argmin(np.abs(all_theta - t))) - t)) for t in theta])
    return np.minimum(residual, residual**2 / np.maximum(gaps, 1e-300))


def _lanczos(matvec, dim: int, v0: Tensor, steps: int, k: int | None, tol: float, basis_dtype: torch.dtype,
             criterion: str = "residual") -> LanczosRun:
    """Lanczos with full reorthogonalization (Gram-Schmidt applied twice).

    Runs up to ``steps`` steps; if ``k`` is given, stops as soon as the error bounds of the k
    largest Ritz values are <= tol |θ_j| (see :func:`_error_bounds`). Buffers for the basis
    and the products H q_j grow in chunks, so memory is 2 x (steps taken) x P.
    """
    chunk = min(steps, 32)
    basis = torch.empty(chunk, dim, dtype=basis_dtype, device=v0.device)
    products = torch.empty(chunk, dim, dtype=basis_dtype, device=v0.device)
    basis[0] = v0.to(basis_dtype) / v0.to(basis_dtype).norm()
    alphas: list[float] = []
    betas: list[float] = []
    converged = False
    for j in range(steps):
        products[j] = matvec(basis[j]).to(basis_dtype)
        w = products[j].clone()
        alphas.append(float(torch.dot(w, basis[j])))
        done = basis[: j + 1]
        for _ in range(2):  # full reorthogonalization; twice is enough in floating point
            w = w - done.T @ (done @ w)
        beta = float(w.norm())
        if k is not None and len(alphas) >= k:
            all_theta, s = _tridiagonal_eig(alphas, betas)
            top = np.argsort(all_theta)[::-1][:k]
            bounds = _error_bounds(all_theta[top], s[-1, top], beta, all_theta, criterion)
            if np.all(bounds <= tol * np.maximum(np.abs(all_theta[top]), 1e-300)):
                converged = True
                break
        if beta <= 1e-12 * max(1.0, abs(alphas[-1])) or j == dim - 1:
            converged = k is not None  # an invariant subspace: the Ritz values are exact
            break
        if j < steps - 1:
            if j + 1 == len(basis):  # grow the buffers before writing the next basis vector
                basis = torch.cat([basis, torch.empty_like(basis[:chunk])])
                products = torch.cat([products, torch.empty_like(products[:chunk])])
            betas.append(beta)
            basis[j + 1] = w / beta
    m = len(alphas)
    return LanczosRun(alphas, betas[: m - 1], basis[:m], products[:m], converged)


def _tridiagonal_eig(alphas: Sequence[float], betas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    from scipy.linalg import eigh_tridiagonal

    m = len(alphas)
    return eigh_tridiagonal(np.asarray(alphas, dtype=np.float64), np.asarray(betas[: m - 1], dtype=np.float64))


def _rng(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


def hessian_eigenvalues(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch], k: int = 1,
                        tol: float = 1e-3, max_hvps: int | None = None, *, v0: Tensor | None = None,
                        batch_size: int | None = None, seed: int = 0, method: str = "auto",
                        criterion: str = "gap", mode: str | None = "eval") -> EigenResult:
    """The ``k`` largest algebraic eigenvalues of the Hessian of the mean loss over ``data``.

    Args:
        data: an (x, y) pair (split into ``batch_size`` chunks, all at once when None) or an
            iterable of (x, y) batches; the Hessian is that of the mean over all examples.
        tol: relative accuracy; iteration stops when every bound is <= tol·|θ_j|.
        criterion: 'gap' (default) bounds the eigenvalue error by min(r, r^2/gap) with the gap
            estimated from the other Ritz values (Kato-Temple; far fewer HVPs for the same
            accuracy, reliable once the next eigenvalue is resolved); 'residual' uses r alone,
            a rigorous bound (Bauer-Fike) that needs more steps.
        max_hvps: Lanczos budget (default min(P, 300)).
        v0: start vector (P,), e.g. the previous top eigenvector when tracking along training.
        mode: the model's mode during the measurement ('eval' default; restored afterwards).

    The reported ``residuals`` are the true ||H v − λ v|| / |λ|, computed from the stored
    products H q_j (no extra HVPs).

    Cost: one HVP per Lanczos step (about 8 for the top eigenvalue of an MLP Hessian at
    tol=1e-3 with the 'gap' criterion, 12 with 'residual'); memory 2 x steps x P.
    """
    check_positive_int("k", k)
    if not (isinstance(tol, float) and 0 < tol < 1):
        raise ConfigError(f"tol must be a float in (0, 1), got {tol!r}")
    batches = as_batches(data, batch_size)
    cost = Cost()
    with preserved(model, mode), timed(cost):
        op = HessianOperator(model, loss_fn, batches, method=method, cost=cost)
        budget = min(op.dim, 300) if max_hvps is None else max_hvps
        check_positive_int("max_hvps", budget)
        if criterion not in CRITERIA:
            raise ConfigError(f"unknown criterion {criterion!r}; accepted: {CRITERIA}")
        if k > op.dim:
            raise ConfigError(f"k={k} exceeds the number of parameters {op.dim}")
        start = v0.reshape(-1).to(op.device) if v0 is not None else torch.randn(
            op.dim, generator=_rng(seed, op.device), device=op.device, dtype=op.dtype)
        if start.numel() != op.dim or not torch.isfinite(start).all() or float(start.norm()) == 0:
            raise ConfigError(f"v0 must be a finite non-zero vector of length {op.dim}")
        # keep the basis in float64 on CPU for accuracy; on GPU in the model's dtype
        basis_dtype = torch.float64 if op.device.type == "cpu" else op.dtype
        run = _lanczos(op.matvec, op.dim, start, budget, k, tol, basis_dtype, criterion)
        theta, s_top = run.ritz(k)
        coords = torch.from_numpy(s_top.copy()).to(run.basis)
        vectors = run.basis.T @ coords
        values = torch.from_numpy(theta.copy())
        # True residuals ||H y − θ y|| from the stored products H q_j (H y = (H Q)^T s): no extra HVP.
        residuals = (run.products.T @ coords - vectors * values.to(vectors)).norm(dim=0).cpu() / values.abs().clamp_min(1e-300)
    return EigenResult(values=values, vectors=vectors.to(op.dtype), residuals=residuals.double(),
                       converged=run.converged, num_hvps=cost.hvps, iterations=len(run.alphas), cost=cost)


@dataclass
class TraceResult:
    """tr(H) estimate with its standard error (over the stochastic probes)."""

    value: float
    stderr: float
    num_hvps: int
    method: str
    cost: Cost = field(default_factory=Cost)


def hessian_trace(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch], num_hvps: int = 60, *,
                  method: str = "hutch++", batch_size: int | None = None, seed: int = 0,
                  mode: str | None = "eval") -> TraceResult:
    """Stochastic estimate of tr(H) with ``num_hvps`` Hessian-vector products.

    hutchinson: mean of z^T H z over Rademacher z; stderr = sample std / sqrt(num_hvps).
    hutch++ (Meyer, Musco, Musco & Woodruff 2021): with m = num_hvps split in thirds,
    S (P, m/3) Rademacher, Q = orth(H S), tr = tr(Q^T H Q) + Hutchinson on (I − QQ^T) H (I − QQ^T)
    with the last third; the first term is exact given Q, so the stderr is that of the
    Hutchinson part. Both are unbiased; Hutch++ has much lower variance when the spectrum
    is dominated by a few large eigenvalues (as network Hessians are).
    """
    if method not in ("hutchinson", "hutch++"):
        raise ConfigError(f"unknown trace method {method!r}; accepted: 'hutchinson', 'hutch++'")
    check_positive_int("num_hvps", num_hvps, minimum=3 if method == "hutch++" else 2)
    batches = as_batches(data, batch_size)
    cost = Cost()
    with preserved(model, mode), timed(cost):
        op = HessianOperator(model, loss_fn, batches, cost=cost)
        gen = _rng(seed, op.device)

        def rademacher(count: int) -> Tensor:
            return torch.randint(0, 2, (count, op.dim), generator=gen, device=op.device).to(op.dtype) * 2 - 1

        if method == "hutchinson":
            probes = rademacher(num_hvps)
            samples = torch.stack([torch.dot(z, op.matvec(z)) for z in probes]).double()
            value, stderr = float(samples.mean()), float(samples.std() / math.sqrt(num_hvps))
        else:
            third = num_hvps // 3
            sketch = torch.stack([op.matvec(z) for z in rademacher(third)], dim=1)
            q, _ = torch.linalg.qr(sketch.double())
            q = q.to(op.dtype)
            exact = float(sum(torch.dot(q[:, i], op.matvec(q[:, i])) for i in range(q.shape[1])))
            rest = num_hvps - 2 * third
            probes = rademacher(rest)
            projected = probes - (probes @ q) @ q.T
            samples = torch.stack([torch.dot(z, op.matvec(z)) for z in projected]).double()
            value = exact + float(samples.mean())
            stderr = float(samples.std() / math.sqrt(rest)) if rest > 1 else float("nan")
    return TraceResult(value=value, stderr=stderr, num_hvps=cost.hvps, method=method, cost=cost)


@dataclass
class SpectrumResult:
    """Stochastic Lanczos quadrature: nodes (num_vectors, m) and weights (num_vectors, m).

    The spectral density is phi(t) = (1/num_vectors) Σ_v Σ_j w_vj g_σ(t − θ_vj); its nodes
    and weights reproduce v^T f(H) v exactly for polynomials f of degree < 2m.
    """

    nodes: np.ndarray
    weights: np.ndarray
    num_hvps: int
    cost: Cost = field(default_factory=Cost)

    def density(self, grid: np.ndarray, sigma: float | None = None) -> np.ndarray:
        """Gaussian-smoothed density on ``grid`` (integrates to ~1). ``sigma`` defaults to
        1% of the spectrum's range."""
        nodes, weights = self.nodes.reshape(-1), self.weights.reshape(-1) / len(self.nodes)
        if sigma is None:
            sigma = max(1e-2 * float(nodes.max() - nodes.min()), 1e-12)
        diff = np.asarray(grid)[:, None] - nodes[None, :]
        return (weights[None, :] * np.exp(-0.5 * (diff / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))).sum(1)


def hessian_spectrum(model: nn.Module, loss_fn: LossFn, data: Batch | Iterable[Batch], num_steps: int = 30,
                     num_vectors: int = 1, *, batch_size: int | None = None, seed: int = 0,
                     mode: str | None = "eval") -> SpectrumResult:
    """Hessian eigenvalue density by stochastic Lanczos quadrature: ``num_vectors`` Gaussian
    start vectors, ``num_steps`` Lanczos steps each (full reorthogonalization); the Ritz
    values are the nodes and the squared first components of the Ritz vectors the weights.
    Cost: num_vectors x num_steps HVPs."""
    check_positive_int("num_steps", num_steps)
    check_positive_int("num_vectors", num_vectors)
    batches = as_batches(data, batch_size)
    cost = Cost()
    nodes, weights = [], []
    with preserved(model, mode), timed(cost):
        op = HessianOperator(model, loss_fn, batches, cost=cost)
        gen = _rng(seed, op.device)
        basis_dtype = torch.float64 if op.device.type == "cpu" else op.dtype
        for _ in range(num_vectors):
            start = torch.randn(op.dim, generator=gen, device=op.device, dtype=op.dtype)
            run = _lanczos(op.matvec, op.dim, start, min(num_steps, op.dim), None, 0.0, basis_dtype)
            theta, s = _tridiagonal_eig(run.alphas, run.betas)
            m = min(num_steps, op.dim)
            pad = m - len(theta)  # an early invariant subspace gives fewer nodes: pad with zero weight
            nodes.append(np.concatenate([theta, np.zeros(pad)]))
            weights.append(np.concatenate([s[0, :] ** 2, np.zeros(pad)]))
    return SpectrumResult(nodes=np.stack(nodes), weights=np.stack(weights), num_hvps=cost.hvps, cost=cost)
