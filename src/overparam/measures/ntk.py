"""Neural tangent kernels: empirical (finite width), analytic (infinite width), and distances.

Empirical NTK (:func:`empirical_ntk`)
    For a model f(x; θ) with k outputs and trainable parameters θ (dimension P),

        Θ(x, x')_{ab} = Σ_p ∂f_a(x)/∂θ_p ∂f_b(x')/∂θ_p = [J(x) J(x')^T]_{ab},

    J(x) the (k, P) Jacobian. Two strategies, tested against each other and against an
    explicit Jacobian product:

    'jacobian' (any model): per-sample Jacobians of every parameter with ``torch.func``
        (``vmap`` of ``jacrev`` of a ``functional_call``), contracted per parameter and summed.
        Cost O(n1 n2 k² P) multiply-adds for the contraction (+ k backward passes per sample);
        memory 2 · chunk_size · k · P values (the Jacobians of one x1 chunk and one x2 chunk).

    'structured' (models whose trainable parameters all belong to ``Dense`` / ``nn.Linear``
        layers): a layer z = c · x W^T + s · b contributes

            Θ_layer(x, x')_{ab} = (c² x·x' + s²) · (g_a(x) · g_b(x')),

        x the layer's input, g_a(x) = ∂f_a/∂z its output cotangent for output a (the weight
        term c² (X X'^T) ⊙ (G G'^T) plus the bias term s² G G'^T). One forward pass records
        the inputs; one ``autograd.grad`` batched over the k output basis vectors
        (``is_grads_batched``, a vmap of the vjp) gives all cotangents. The full kernel then
        costs one (n1 k, u) @ (u, n2 k) matmul per layer of u output units, i.e.
        O(n1 n2 k² Σ_l u_l) instead of O(n1 n2 k² P); with ``trace_outputs`` one
        (n1, k u) @ (k u, n2) matmul, k times cheaper again. Memory: the output plus the layer
        inputs and cotangents of two chunks, O(chunk_size · k · Σ_l u_l).
        Anything between the layers (activations, reshapes, scalings such as ``MLP.alpha``)
        enters only through autograd's cotangents, so it need not be elementwise; what the
        method needs is that every trainable parameter is the weight or bias of a
        ``Dense``/``nn.Linear`` layer, that each such layer is called exactly once per forward
        on a (batch, features) input, and that examples do not interact (eval mode).

    'auto' picks 'structured' when the parameters allow it and falls back to 'jacobian' if a
    layer turns out to be called other than once on a 2-D input; an explicit 'structured'
    raises :class:`ConfigError` instead.

Analytic NTK (:func:`analytic_ntk`): the infinite-width NNGP and NTK of the ReLU MLP in
Neural Tangents' 'ntk' parameterization (recursion in its docstring).

Kernel distances (:func:`kernel_distance`): relative Frobenius distance and 1 − CKA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from overparam.errors import ConfigError, check_positive_int, choice_error
from overparam.measures.common import Cost, preserved, timed
from overparam.models.mlp import Dense

NTK_METHODS = ("auto", "structured", "jacobian")


# --------------------------------------------------------------------------------------------
# empirical NTK


def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None, *, trace_outputs: bool = False,
                  chunk_size: int | None = None, method: str = "auto", cost: Cost | None = None) -> Tensor:
    """The empirical NTK Θ(x1, x2) = J(x1) J(x2)^T of ``model``'s outputs w.r.t. its trainable
    parameters (those with ``requires_grad``), at the current parameters.

    Args:
        model: maps (n, *shape) to (n, k) (or (n, *out) with prod(out) = k, flattened).
            Evaluated in eval mode; its mode, ``.grad``s and the RNG states are restored.
        x1: (n1, *shape) inputs; converted to the parameters' dtype and device.
        x2: (n2, *shape) inputs, or None for x2 = x1 (then only blocks on and above the
            diagonal are computed and the rest is filled by symmetry).
        trace_outputs: sum over the diagonal output pairs, Σ_a Θ_aa (the kernel usually
            quoted for a k-output model, = k Θ_scalar in the infinite-width limit).
        chunk_size: number of examples processed at once. Memory is bounded by the output plus
            the per-chunk work (see the module docstring); the result does not depend on it.
            None: 256 for 'structured'; for 'jacobian' the largest chunk (<= 256) whose
            Jacobian holds at most 2^26 values (k · P · chunk), about 256 MB in float32.
        method: 'auto', 'structured' or 'jacobian' (module docstring).
        cost: if given, forward/backward example passes and seconds are added to it.

    Returns:
        (n1, n2) if k = 1 or ``trace_outputs``, else (n1, n2, k, k) with
        out[i, j, a, b] = Σ_p ∂f_a(x1_i)/∂θ_p ∂f_b(x2_j)/∂θ_p; dtype of the parameters.

    Cost: 'structured' O(n1 n2 k² Σ_l u_l) (u_l = output units of layer l), 'jacobian'
    O(n1 n2 k² P), plus forward and k-fold batched backward passes over the examples (with
    more than one chunk, the x2 chunks are recomputed for every x1 chunk).
    """
    if method not in NTK_METHODS:
        raise choice_error("NTK method", method, NTK_METHODS)
    if chunk_size is not None:
        check_positive_int("chunk_size", chunk_size)
    if not isinstance(trace_outputs, bool):
        raise ConfigError(f"trace_outputs must be True or False, got {trace_outputs!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("model has no trainable parameters (none with requires_grad=True); the NTK is empty")
    reference = params[0]
    x1 = _check_inputs("x1", x1, reference)
    symmetric = x2 is None
    x2 = x1 if symmetric else _check_inputs("x2", x2, reference)
    if x1.shape[1:] != x2.shape[1:]:
        raise ConfigError(f"x1 and x2 must have the same example shape, got {tuple(x1.shape[1:])} and "
                          f"{tuple(x2.shape[1:])}")
    cost = cost if cost is not None else Cost()
    with preserved(model, mode="eval"), timed(cost):
        layers = _structured_layers(model) if method != "jacobian" else None
        if method == "structured" and layers is None:
            raise ConfigError("method 'structured' needs every trainable parameter to be the weight or bias of a "
                              f"Dense or nn.Linear layer (used once); {type(model).__name__} has others; "
                              "use method 'jacobian' or 'auto'")
        if layers is not None:
            try:
                return _blockwise(lambda x: _structured_features(model, layers, x), _structured_block,
                                  x1, x2, symmetric, trace_outputs, chunk_size or 256, cost)
            except _NotStructured as error:
                if method == "structured":
                    raise ConfigError(f"method 'structured' cannot handle this model: {error}") from None
        if chunk_size is None:
            with torch.no_grad():
                outputs = model(x1[:1]).numel()
            chunk_size = max(1, min(256, 2**26 // (outputs * sum(p.numel() for p in params))))
        return _blockwise(lambda x: _jacobian_features(model, x), _jacobian_block,
                          x1, x2, symmetric, trace_outputs, chunk_size, cost)


def _check_inputs(name: str, x: object, reference: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise ConfigError(f"{name} must be a tensor of shape (n, *example_shape), got {type(x).__name__}")
    if x.dim() < 1 or len(x) == 0:
        raise ConfigError(f"{name} must have shape (n, *example_shape) with n >= 1, got shape {tuple(x.shape)}")
    return x.detach().to(device=reference.device, dtype=reference.dtype)


class _NotStructured(Exception):
    pass


def _blockwise(features, block, x1: Tensor, x2: Tensor, symmetric: bool, trace: bool, chunk: int,
               cost: Cost) -> Tensor:
    """Assemble the kernel from blocks over chunks of x1 (rows) and x2 (columns).

    ``features(x)`` -> (per-example data: a list of tuples of tensors or None, batch first; k);
    ``block(f1, f2, flat)`` -> (m1, m2) when ``flat``, else (m1, k, m2, k). With x2 = x1 only
    blocks on and above the diagonal are computed, and diagonal blocks are split into
    sub-blocks so that their upper triangle alone is computed (about 5/8 of the products)."""
    n1, n2 = len(x1), len(x2)
    starts1 = list(range(0, n1, chunk))
    starts2 = list(range(0, n2, chunk))
    state: dict = {}

    def put(i0: int, j0: int, b: Tensor, mirror: bool) -> None:
        k = state["k"]
        m1 = b.shape[0]
        m2 = b.shape[1] if state["flat"] else b.shape[2]
        out = state["out"]
        if not state["flat"]:
            b = b.view(m1, k, m2, k).permute(0, 2, 1, 3)
        out[i0:i0 + m1, j0:j0 + m2] = b
        if mirror:
            out[j0:j0 + m2, i0:i0 + m1] = b.transpose(0, 1) if state["flat"] else b.permute(1, 0, 3, 2)

    def passes(m: int, k: int) -> None:
        cost.forward += m
        cost.backward += k * m

    cache2 = None  # features of the only x2 chunk, reused for every x1 chunk
    for bi, i0 in enumerate(starts1):
        f1, k = features(x1[i0:i0 + chunk])
        passes(len(x1[i0:i0 + chunk]), k)
        if not state:
            flat = trace or k == 1
            shape = (n1, n2) if flat else (n1, n2, k, k)
            state.update(k=k, flat=flat, out=torch.empty(shape, dtype=x1.dtype, device=x1.device))
        flat = state["flat"]
        for bj, j0 in enumerate(starts2):
            if symmetric and bj < bi:
                continue
            if symmetric and bj == bi:
                m = len(x1[i0:i0 + chunk])
                step = max(32, -(-m // 4))
                subs = list(range(0, m, step))
                for p, a0 in enumerate(subs):
                    for b0 in subs[p:]:
                        b = block(_rows(f1, a0, step), _rows(f1, b0, step), flat)
                        put(i0 + a0, i0 + b0, b, mirror=b0 != a0)
                continue
            if len(starts2) == 1 and cache2 is not None:
                f2 = cache2
            else:
                f2, _ = features(x2[j0:j0 + chunk])
                passes(len(x2[j0:j0 + chunk]), k)
                if len(starts2) == 1:
                    cache2 = f2
            put(i0, j0, block(f1, f2, flat), mirror=symmetric)
    return state["out"]


def _rows(feats, start: int, length: int):
    """Examples start .. start + length of per-chunk features (batch-first tensors)."""
    return [tuple(t[start:start + length] if isinstance(t, Tensor) else t for t in f) for f in feats]


# structured ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Layer:
    module: nn.Module
    weight_scale: float  # c, with z = c x W^T + s b
    bias_scale: float  # s (0 when there is no trainable bias)
    weight_trainable: bool


def _structured_layers(model: nn.Module) -> list[_Layer] | None:
    """The Dense/Linear layers holding the trainable parameters, or None if some trainable
    parameter lives elsewhere (or is shared between layers)."""
    owner: dict[int, nn.Module] = {}
    layers: list[_Layer] = []
    for module in model.modules():
        own = dict(module.named_parameters(recurse=False))
        if not any(p.requires_grad for p in own.values()):
            continue
        if not isinstance(module, (Dense, nn.Linear)) or set(own) - {"weight", "bias"}:
            return None
        for p in own.values():
            if p.requires_grad:
                if id(p) in owner:
                    return None
                owner[id(p)] = module
        if isinstance(module, Dense) and module.parameterization == "ntk":
            c, s = module.w_std / math.sqrt(module.in_features), module.b_std
        else:
            c, s = 1.0, 1.0
        weight = module.weight
        bias = module.bias
        layers.append(_Layer(module, c if weight.requires_grad else 0.0,
                             s if bias is not None and bias.requires_grad else 0.0, weight.requires_grad))
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if trainable != set(owner):
        return None
    return layers


def _structured_features(model: nn.Module, layers: list[_Layer], x: Tensor):
    """For one chunk of m examples: per layer (scaled inputs c·X (m, d) or None, bias scale,
    cotangents G (m, k, u)), and k."""
    records: dict[int, list[tuple[Tensor, Tensor]]] = {}

    def hook(module, args, output):
        records.setdefault(id(module), []).append((args[0], output))

    handles = [layer.module.register_forward_hook(hook) for layer in layers]
    try:
        with torch.enable_grad():
            out = model(x.detach().requires_grad_(True))
    finally:
        for handle in handles:
            handle.remove()
    m = len(x)
    f = out.reshape(m, -1)
    k = f.shape[1]
    inputs, outputs = [], []
    for layer in layers:
        calls = records.get(id(layer.module), [])
        if len(calls) != 1:
            raise _NotStructured(f"layer {layer.module!r} was called {len(calls)} times in one forward pass "
                                 "(needs exactly once)")
        inp, z = calls[0]
        if inp.dim() != 2 or z.dim() != 2 or len(inp) != m:
            raise _NotStructured(f"layer {layer.module!r} got an input of shape {tuple(inp.shape)} "
                                 f"(needs (batch={m}, features))")
        inputs.append(inp.detach())
        outputs.append(z)
    basis = torch.eye(k, dtype=f.dtype, device=f.device).unsqueeze(1).expand(k, m, k)
    grads = torch.autograd.grad(f, outputs, grad_outputs=basis, is_grads_batched=True, allow_unused=True)
    feats = []
    for layer, inp, z, g in zip(layers, inputs, outputs, grads):
        if g is None:  # the layer does not reach the output
            continue
        g = g.transpose(0, 1).contiguous()  # (m, k, u)
        scaled = inp * layer.weight_scale if layer.weight_trainable else None
        feats.append((scaled, layer.bias_scale, g))
    return feats, k


def _structured_block(f1, f2, flat: bool) -> Tensor:
    """Σ_l (c² X1 X2^T + s²) ⊙ (G1 G2^T): (m1, m2) summed over output pairs a = b when
    ``flat``, else (m1, k, m2, k)."""
    total = None
    for (xs1, s, g1), (xs2, _, g2) in zip(f1, f2):
        m1, k, u = g1.shape
        m2 = g2.shape[0]
        if xs1 is not None:
            factor = xs1 @ xs2.T
            if s:
                factor += s * s
        else:
            factor = torch.full((m1, m2), s * s, dtype=g1.dtype, device=g1.device)
        if flat:  # Σ_a g_a(x)·g_a(x'): one (m1, k u) @ (k u, m2) product
            term = g1.reshape(m1, k * u) @ g2.reshape(m2, k * u).T
            term.mul_(factor)
        else:
            term = (g1.reshape(m1 * k, u) @ g2.reshape(m2 * k, u).T).view(m1, k, m2, k)
            term.mul_(factor[:, None, :, None])
        total = term if total is None else total.add_(term)
    return total


# jacobian ----------------------------------------------------------------------------------


def _jacobian_features(model: nn.Module, x: Tensor):
    """Per-sample Jacobians [(m, k, numel) per parameter] of the trainable parameters, and k."""
    trainable = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    fixed = {name: p.detach() for name, p in model.named_parameters() if not p.requires_grad}
    fixed.update(dict(model.named_buffers()))

    def f(params, sample):
        return functional_call(model, (params, fixed), (sample.unsqueeze(0),)).reshape(-1)

    jac = vmap(jacrev(f), in_dims=(None, 0))(trainable, x)
    m = len(x)
    feats = [(j.reshape(m, j.shape[1], -1),) for j in jac.values()]
    return feats, feats[0][0].shape[1]


def _jacobian_block(f1, f2, flat: bool) -> Tensor:
    """Σ_params J1 J2^T: (m1, m2) summed over a = b when ``flat``, else (m1, k, m2, k)."""
    total = None
    for (j1,), (j2,) in zip(f1, f2):
        m1, k, p = j1.shape
        m2 = j2.shape[0]
        if flat:
            term = j1.reshape(m1, k * p) @ j2.reshape(m2, k * p).T
        else:
            term = (j1.reshape(m1 * k, p) @ j2.reshape(m2 * k, p).T).view(m1, k, m2, k)
        total = term if total is None else total.add_(term)
    return total


# --------------------------------------------------------------------------------------------
# analytic NTK


@dataclass(frozen=True)
class AnalyticKernels:
    """Infinite-width kernels, each (n1, n2) float64: ``ntk`` (Θ) and ``nngp`` (K) of the
    scalar output (for k outputs both are these times the identity in output indices)."""

    ntk: Tensor
    nngp: Tensor


def analytic_ntk(x1: Tensor, x2: Tensor | None = None, depth: int = 1, w_std: float = 1.0,
                 b_std: float = 0.0) -> AnalyticKernels:
    """The infinite-width NNGP and NTK of ``MLP(d, width, depth, 1, parameterization='ntk',
    w_std=w_std, b_std=b_std)`` (ReLU), in Neural Tangents' convention for
    ``stax.serial(Dense(w, b), Relu(), ..., Dense(w, b))`` with parameterization 'ntk'.

    With σ_w = w_std, σ_b = b_std and d the input dimension (inputs flattened from dim 1):

        first Dense:  K¹(x, x') = σ_w² x·x'/d + σ_b²,              Θ¹ = K¹
        for l = 1 .. depth (ReLU, then Dense):
            q = K^l(x, x), q' = K^l(x', x'),  cos θ = K^l(x, x') / sqrt(q q')
            E[relu(u) relu(v)] = sqrt(q q') / (2π) · (sin θ + (π − θ) cos θ)
            K̇^l(x, x')       = E[relu'(u) relu'(v)] = (π − θ) / (2π)
            K^{l+1} = σ_w² E[relu(u) relu(v)] + σ_b²
            Θ^{l+1} = K^{l+1} + σ_w² K̇^l Θ^l

    (u, v) ~ N(0, [[q, K^l], [K^l, q']]). The readout is the last Dense: ``nngp`` = K^{depth+1},
    ``ntk`` = Θ^{depth+1}. ``depth = 0`` is the linear model K = Θ = σ_w² x·x'/d + σ_b².

    Args: x1 (n1, *shape), x2 (n2, *shape) or None for x1; depth >= 0 hidden layers;
    w_std > 0; b_std >= 0. Returns :class:`AnalyticKernels` with (n1, n2) float64 tensors.
    Cost O(n1 n2 (d + depth)).
    """
    check_positive_int("depth", depth, minimum=0)
    w_std = _check_std("w_std", w_std, allow_zero=False)
    b_std = _check_std("b_std", b_std, allow_zero=True)
    if not isinstance(x1, Tensor) or x1.dim() < 1 or len(x1) == 0:
        raise ConfigError(f"x1 must be a tensor of shape (n, *example_shape) with n >= 1, got "
                          f"{tuple(x1.shape) if isinstance(x1, Tensor) else type(x1).__name__}")
    a = x1.detach().to(torch.float64).reshape(len(x1), -1)
    symmetric = x2 is None
    if symmetric:
        b = a
    else:
        if not isinstance(x2, Tensor) or x2.dim() < 1 or len(x2) == 0:
            raise ConfigError(f"x2 must be a tensor of shape (n, *example_shape) with n >= 1, got "
                              f"{tuple(x2.shape) if isinstance(x2, Tensor) else type(x2).__name__}")
        b = x2.detach().to(device=a.device, dtype=torch.float64).reshape(len(x2), -1)
        if b.shape[1] != a.shape[1]:
            raise ConfigError(f"x1 and x2 must have the same number of features, got {a.shape[1]} and {b.shape[1]}")
    d = a.shape[1]
    w2, b2 = w_std ** 2, b_std ** 2
    k = w2 * (a @ b.T) / d + b2
    q1 = w2 * (a * a).sum(1) / d + b2
    q2 = q1 if symmetric else w2 * (b * b).sum(1) / d + b2
    theta_k = k.clone()
    for _ in range(depth):
        norm = torch.sqrt(q1[:, None] * q2[None, :])
        cos = torch.where(norm > 0, k / torch.where(norm > 0, norm, 1.0), torch.zeros_like(k)).clamp(-1.0, 1.0)
        if symmetric:
            cos.fill_diagonal_(1.0)
        angle = torch.arccos(cos)
        relu_kernel = norm / (2 * math.pi) * (torch.sin(angle) + (math.pi - angle) * cos)
        derivative = (math.pi - angle) / (2 * math.pi)
        k = w2 * relu_kernel + b2
        theta_k = k + w2 * derivative * theta_k
        q1 = w2 * q1 / 2 + b2
        q2 = q1 if symmetric else w2 * q2 / 2 + b2
    return AnalyticKernels(ntk=theta_k, nngp=k)


def _check_std(name: str, value: object, *, allow_zero: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and (value >= 0 if allow_zero else value > 0)):
        raise ConfigError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# kernel distances


def kernel_distance(K0: Tensor, K1: Tensor) -> dict[str, float]:
    """How far kernel ``K1`` is from ``K0`` (e.g. the NTK after training vs at init).

    Kernels are (n, n) or (n, n, k, k); the latter are read as (n k, n k) matrices with row
    (i, a) and column (j, b). Computed in float64:

    - ``'relative_frobenius'`` = ||K1 − K0||_F / ||K0||_F (inf if K0 = 0 ≠ K1, nan if both 0);
    - ``'one_minus_cka'`` = 1 − <H K0 H, H K1 H>_F / (||H K0 H||_F ||H K1 H||_F), with
      H = I − 1 1^T / N the centering matrix (N = n or n k): 0 for kernels equal up to a
      positive scale, at most 2; nan if a centered kernel is 0.

    Cost O(N²).
    """
    a, b = _as_matrix("K0", K0), _as_matrix("K1", K1)
    if a.shape != b.shape:
        raise ConfigError(f"K0 and K1 must have the same shape, got {tuple(K0.shape)} and {tuple(K1.shape)}")
    b = b.to(a.device)
    diff = torch.linalg.matrix_norm(b - a).item()
    norm0 = torch.linalg.matrix_norm(a).item()
    relative = diff / norm0 if norm0 > 0 else (math.nan if diff == 0 else math.inf)
    ca, cb = _center(a), _center(b)
    na, nb = torch.linalg.matrix_norm(ca).item(), torch.linalg.matrix_norm(cb).item()
    cka = (ca * cb).sum().item() / (na * nb) if na > 0 and nb > 0 else math.nan
    return {"relative_frobenius": relative, "one_minus_cka": 1.0 - cka}


def _as_matrix(name: str, kernel: object) -> Tensor:
    if not isinstance(kernel, Tensor):
        raise ConfigError(f"{name} must be a tensor of shape (n, n) or (n, n, k, k), got {type(kernel).__name__}")
    s = tuple(kernel.shape)
    if len(s) == 2 and s[0] == s[1] and s[0] > 0:
        return kernel.detach().to(torch.float64)
    if len(s) == 4 and s[0] == s[1] and s[2] == s[3] and s[0] > 0 and s[2] > 0:
        n, k = s[0], s[2]
        return kernel.detach().to(torch.float64).permute(0, 2, 1, 3).reshape(n * k, n * k)
    raise ConfigError(f"{name} must have shape (n, n) or (n, n, k, k), got {s}")


def _center(k: Tensor) -> Tensor:
    """H K H with H = I − 1 1^T / N: subtract row and column means, add back the grand mean."""
    return k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()


__all__ = ["NTK_METHODS", "AnalyticKernels", "analytic_ntk", "empirical_ntk", "kernel_distance"]
