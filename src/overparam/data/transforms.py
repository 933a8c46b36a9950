"""Transforms shared by every dataset: subsets, label noise, standardization, feature maps.

All randomness comes from an explicit integer ``seed`` through a local ``torch.Generator``
(the global RNG is never touched), so the same seed gives bit-identical output. Random draws
are made on the CPU and moved to the input's device, so a seed means the same thing on every
device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from overparam.errors import ConfigError, check_fraction, check_positive_int

_MAX_SEED = 2**64  # torch.Generator.manual_seed accepts [0, 2**64)


def _generator(seed: object) -> torch.Generator:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _MAX_SEED:
        raise ConfigError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def _check_labels(y: object, what: str = "y") -> Tensor:
    if not isinstance(y, Tensor):
        raise ConfigError(f"{what} must be a torch.Tensor of integer labels, got {type(y).__name__}")
    if y.ndim != 1:
        raise ConfigError(f"{what} must be a 1-D tensor of labels, got shape {tuple(y.shape)}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ConfigError(f"{what} must hold integer class labels, got dtype {y.dtype}")
    return y


def stratified_subset(y: Tensor, n: int, seed: int) -> Tensor:
    """Sorted int64 indices of a class-stratified random subset of ``y`` of size ``n``.

    With class counts ``c_k`` (over the classes present in ``y``, total ``N = len(y)``), class
    ``k`` gets ``floor(n c_k / N)`` examples, and the ``n - sum_k floor(n c_k / N)`` left over go
    one each to the classes with the largest remainders ``n c_k / N - floor(n c_k / N)``
    (largest-remainder rounding; ties go to the smaller class label). The counts sum to exactly
    ``n`` and never exceed ``c_k``. Within a class the examples are chosen uniformly at random
    without replacement.

    Args:
        y: (N,) integer labels.
        n: subset size, 1 <= n <= N.
        seed: integer seed of a local generator.

    Returns:
        (n,) int64 indices into ``y``, sorted ascending, without duplicates.
    """
    y = _check_labels(y)
    total = len(y)
    check_positive_int("n", n)
    if n > total:
        raise ConfigError(f"subset size n={n} exceeds the {total} examples available; accepted: 1 <= n <= {total}")
    gen = _generator(seed)
    y_cpu = y.detach().cpu()
    classes, counts = torch.unique(y_cpu, sorted=True, return_counts=True)
    counts_list = [int(c) for c in counts]
    # Exact integer arithmetic: quota_k = n * c_k / N.
    floors = [n * c // total for c in counts_list]
    remainders = [n * c - f * total for c, f in zip(counts_list, floors)]  # numerators over N
    left = n - sum(floors)
    order = sorted(range(len(classes)), key=lambda k: (-remainders[k], k))
    for k in order[:left]:
        floors[k] += 1
    chosen = []
    for k, cls in enumerate(classes):
        take = floors[k]
        if take == 0:
            continue
        members = torch.nonzero(y_cpu == cls, as_tuple=True)[0]
        perm = torch.randperm(len(members), generator=gen)[:take]
        chosen.append(members[perm])
    indices = torch.cat(chosen).to(torch.int64).sort().values
    return indices.to(y.device)


def add_label_noise(y: Tensor, fraction: float, num_classes: int, seed: int) -> tuple[Tensor, Tensor]:
    """Replace exactly ``round(fraction * n)`` labels by a uniformly random *incorrect* class.

    The noisy positions are a uniformly random subset of that size (without replacement); each
    chosen label ``y_i`` becomes ``(y_i + s_i) mod num_classes`` with ``s_i`` uniform on
    ``{1, ..., num_classes - 1}``, i.e. uniform over the ``num_classes - 1`` classes other than
    ``y_i``. A noisy label therefore always differs from the clean one. ``round`` is Python's
    (round half to even). The input is not modified.

    Args:
        y: (n,) integer labels in ``[0, num_classes)``.
        fraction: in [0, 1].
        num_classes: >= 2.
        seed: integer seed of a local generator.

    Returns:
        ``(noisy_y, noisy_indices)``: a new (n,) label tensor of ``y``'s dtype and the sorted
        int64 indices whose label was replaced (exactly the positions where the two differ).
    """
    y = _check_labels(y)
    fraction = check_fraction("fraction", fraction, closed_upper=True)
    check_positive_int("num_classes", num_classes, minimum=2)
    if len(y):
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ConfigError(f"label {bad} is outside the accepted range [0, {num_classes}) for num_classes={num_classes}")
    gen = _generator(seed)
    n = len(y)
    count = round(fraction * n)
    positions = torch.randperm(n, generator=gen)[:count]
    shifts = torch.randint(1, num_classes, (count,), generator=gen)
    positions, shifts = positions.to(y.device), shifts.to(y.device)
    noisy = y.clone()
    noisy[positions] = ((y[positions].to(torch.int64) + shifts) % num_classes).to(y.dtype)
    return noisy, positions.sort().values.to(torch.int64)


def standardize(x_train: Tensor, x_test: Tensor, per_feature: bool = False, eps: float = 1e-8
                ) -> tuple[Tensor, Tensor, dict]:
    """Standardize both splits with statistics of the training split only.

    ``x -> (x - mean) / std`` where mean and std (population std, divisor n) are taken over
    all training entries (``per_feature=False``: two scalars) or over the training examples,
    dimension 0, separately for each feature (``per_feature=True``: shape ``x.shape[1:]``).
    A std ``<= eps`` (a constant feature) is replaced by 1, so such a feature is only centred
    and a test value that differs from the constant is not blown up. The test split is *not*
    forced to mean 0 / std 1. Statistics are computed in float64; outputs keep the input dtype.

    Returns:
        ``(x_train_std, x_test_std, {"mean": Tensor, "std": Tensor, "per_feature": bool})``.
    """
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if not isinstance(x, Tensor) or not x.is_floating_point():
            kind = x.dtype if isinstance(x, Tensor) else type(x).__name__
            raise ConfigError(f"{name} must be a floating-point tensor to standardize, got {kind}")
    if x_train.ndim < 1 or len(x_train) == 0:
        raise ConfigError(f"x_train must have at least one example to standardize, got shape {tuple(x_train.shape)}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ConfigError(f"x_train and x_test must have the same example shape, got {tuple(x_train.shape[1:])} "
                          f"and {tuple(x_test.shape[1:])}")
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps >= 0):
        raise ConfigError(f"eps must be a number >= 0, got {eps!r}")
    data = x_train.detach().to(torch.float64)
    if per_feature:
        mean = data.mean(dim=0)
        std = data.std(dim=0, correction=0)
    else:
        mean = data.mean()
        std = data.std(correction=0)
    std = torch.where(std > eps, std, torch.ones_like(std))
    dtype = x_train.dtype

    def apply(x: Tensor) -> Tensor:
        return ((x.to(torch.float64) - mean.to(x.device)) / std.to(x.device)).to(dtype)

    return apply(x_train), apply(x_test), {"mean": mean.to(dtype), "std": std.to(dtype), "per_feature": bool(per_feature)}


def flatten(x: Tensor) -> Tensor:
    """Reshape (n, d1, d2, ...) to (n, d1 * d2 * ...); (n,) becomes (n, 1)."""
    if not isinstance(x, Tensor) or x.ndim < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"flatten needs a tensor of shape (n, ...), got {shape}")
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def rff_weights(in_features: int, num_features: int, bandwidth: float = 1.0, seed: int = 0
                ) -> tuple[Tensor, Tensor]:
    """The random parameters of :func:`random_fourier_features`, in float64 on the CPU.

    Returns ``(W, b)``: W of shape (num_features, in_features) with iid N(0, 1/bandwidth^2)
    entries, and b of shape (num_features,) iid uniform on [0, 2 pi). W is drawn before b
    from one generator seeded with ``seed``.
    """
    check_positive_int("in_features", in_features)
    check_positive_int("num_features", num_features)
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or not (0 < bandwidth < math.inf):
        raise ConfigError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
    gen = _generator(seed)
    w = torch.randn(num_features, in_features, generator=gen, dtype=torch.float64) / float(bandwidth)
    b = torch.rand(num_features, generator=gen, dtype=torch.float64) * (2 * math.pi)
    return w, b


def random_fourier_features(x: Tensor, num_features: int, bandwidth: float = 1.0, seed: int = 0) -> Tensor:
    r"""Random Fourier features of the Gaussian kernel (Rahimi & Recht 2007).

    For the kernel :math:`k(x, x') = \exp(-\|x - x'\|^2 / (2\sigma^2))` with
    :math:`\sigma` = ``bandwidth``, Bochner's theorem gives
    :math:`k(x, x') = \mathbb{E}_{w \sim N(0, \sigma^{-2} I)}[\cos(w^\top (x - x'))]`, and with
    :math:`b \sim U[0, 2\pi)`, :math:`\mathbb{E}[2 \cos(w^\top x + b)\cos(w^\top x' + b)] = k(x, x')`.
    The map

    .. math:: \phi(x) = \sqrt{2 / N}\, \cos(x W^\top + b), \qquad
              W_{ij} \sim N(0, \sigma^{-2}),\; b_j \sim U[0, 2\pi),

    with ``N = num_features`` therefore satisfies
    :math:`\mathbb{E}[\phi(x)^\top \phi(x')] = k(x, x')`, with error
    :math:`O(1/\sqrt{N})` per pair.

    Shapes: x (..., d) -> (..., N); W (N, d); b (N,). W and b are drawn from ``seed`` alone
    (see :func:`rff_weights`), so calling this with the same seed on the train and the test
    inputs applies the same map. Output dtype is x's (float64 unless x is another float type);
    integer inputs are converted to float64. Cost O(n d N).
    """
    if not isinstance(x, Tensor) or x.ndim < 1:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"random_fourier_features needs a tensor of shape (..., d), got {shape}")
    dtype = x.dtype if x.is_floating_point() else torch.float64
    w, b = rff_weights(int(x.shape[-1]), num_features, bandwidth, seed)
    w, b = w.to(device=x.device, dtype=dtype), b.to(device=x.device, dtype=dtype)
    return math.sqrt(2.0 / num_features) * torch.cos(x.to(dtype) @ w.T + b)


__all__ = ["add_label_noise", "flatten", "random_fourier_features", "rff_weights", "standardize",
           "stratified_subset"]
