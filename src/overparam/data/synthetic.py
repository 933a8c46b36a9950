"""Synthetic problems with known ground truth, for the theory studies.

Every generator is keyword-only, draws from a local generator seeded by ``seed``, generates
in float64, and returns a :class:`RawSplit` whose ``extras`` hold the ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from overparam.data.base import RawSplit
from overparam.data.transforms import random_fourier_features
from overparam.errors import ConfigError, check_positive_int

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _check_noise(noise_std: float) -> None:
    if not (isinstance(noise_std, (int, float)) and noise_std >= 0):
        raise ConfigError(f"noise_std must be a number >= 0, got {noise_std!r}")


def linear_regression(*, n_train: int = 100, n_test: int = 1000, p: int = 1000, noise_std: float = 0.0,
                      seed: int = 0) -> RawSplit:
    """Linear regression y = x . w* + noise, x ~ N(0, I_p), w* ~ N(0, I_p / p) (so Var y ~ 1).

    Over-parameterized when p > n_train; then gradient descent from zero converges to the
    minimum-norm interpolant X^T (X X^T)^{-1} y. x: (n, p); y: (n,).
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("p", p)):
        check_positive_int(name, value)
    _check_noise(noise_std)
    gen = _gen(seed)
    w_star = torch.randn(p, generator=gen, dtype=F64) / math.sqrt(p)
    x = torch.randn(n_train + n_test, p, generator=gen, dtype=F64)
    y = x @ w_star + noise_std * torch.randn(n_train + n_test, generator=gen, dtype=F64)
    return RawSplit(x[:n_train], y[:n_train], x[n_train:], y[n_train:], None, extras={"w_star": w_star})


def _relu_mlp(x: Tensor, weights: list[Tensor]) -> Tensor:
    for w in weights[:-1]:
        x = torch.relu(x @ w.T)
    return x @ weights[-1].T


def teacher_student(*, n_train: int = 1000, n_test: int = 1000, in_features: int = 20, teacher_width: int = 64,
                    teacher_depth: int = 1, num_classes: int | None = None, noise_std: float = 0.0,
                    seed: int = 0) -> RawSplit:
    """Targets from a random ReLU MLP teacher (weights N(0, 1/fan_in), no biases), x ~ N(0, I).

    Regression (num_classes None): y = f*(x) + noise, shape (n,). Classification
    (num_classes=k): y = argmax of a k-output teacher. extras: 'teacher_weights' (list).
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("in_features", in_features),
                        ("teacher_width", teacher_width), ("teacher_depth", teacher_depth)):
        check_positive_int(name, value)
    if num_classes is not None:
        check_positive_int("num_classes", num_classes, minimum=2)
    _check_noise(noise_std)
    gen = _gen(seed)
    sizes = [in_features] + [teacher_width] * teacher_depth + [num_classes or 1]
    weights = [torch.randn(out, fan_in, generator=gen, dtype=F64) / math.sqrt(fan_in)
               for fan_in, out in zip(sizes[:-1], sizes[1:])]
    x = torch.randn(n_train + n_test, in_features, generator=gen, dtype=F64)
    out = _relu_mlp(x, weights)
    if num_classes is None:
        y = out[:, 0] + noise_std * torch.randn(len(x), generator=gen, dtype=F64)
    else:
        y = out.argmax(dim=1)
    return RawSplit(x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes,
                    extras={"teacher_weights": weights})


def _low_rank(d: int, rank: int, gen: torch.Generator) -> Tensor:
    """M* = U V^T with Gaussian U, V (d, rank), scaled so that ||M*||_F = sqrt(d)."""
    u = torch.randn(d, rank, generator=gen, dtype=F64)
    v = torch.randn(d, rank, generator=gen, dtype=F64)
    m = u @ v.T
    return m * (math.sqrt(d) / torch.linalg.matrix_norm(m))


def matrix_sensing(*, d: int = 50, rank: int = 5, n_train: int = 2000, n_test: int = 500, seed: int = 0) -> RawSplit:
    """Matrix sensing: y_i = <A_i, M*> = trace(A_i^T M*) with A_i iid N(0, 1) entries.

    M* (d, d) has rank ``rank`` and ||M*||_F = sqrt(d). x: (n, d, d) sensing matrices; y: (n,).
    extras: 'M_star', 'rank'.
    """
    for name, value in (("d", d), ("rank", rank), ("n_train", n_train), ("n_test", n_test)):
        check_positive_int(name, value)
    if rank > d:
        raise ConfigError(f"rank={rank} exceeds the matrix size d={d}")
    gen = _gen(seed)
    m_star = _low_rank(d, rank, gen)
    a = torch.randn(n_train + n_test, d, d, generator=gen, dtype=F64)
    y = torch.einsum("nij,ij->n", a, m_star)
    return RawSplit(a[:n_train], y[:n_train], a[n_train:], y[n_train:], None, extras={"M_star": m_star, "rank": rank})


def matrix_completion(*, d: int = 50, rank: int = 5, n_train: int = 2000, seed: int = 0) -> RawSplit:
    """Matrix completion: observe ``n_train`` entries of M* chosen uniformly without replacement.

    x: int64 (n, 2) (row, col) indices; y: the entries. The test split is every unobserved
    entry. extras: 'M_star', 'mask' (d, d) bool of observed entries, 'rank'.
    """
    for name, value in (("d", d), ("rank", rank), ("n_train", n_train)):
        check_positive_int(name, value)
    if rank > d:
        raise ConfigError(f"rank={rank} exceeds the matrix size d={d}")
    if n_train >= d * d:
        raise ConfigError(f"n_train={n_train} must be below the {d * d} entries of a {d}x{d} matrix")
    gen = _gen(seed)
    m_star = _low_rank(d, rank, gen)
    order = torch.randperm(d * d, generator=gen)
    observed, unobserved = order[:n_train].sort().values, order[n_train:].sort().values
    mask = torch.zeros(d * d, dtype=torch.bool)
    mask[observed] = True

    def pairs(flat: Tensor) -> Tensor:
        return torch.stack([flat // d, flat % d], dim=1)

    flat_m = m_star.reshape(-1)
    return RawSplit(pairs(observed), flat_m[observed], pairs(unobserved), flat_m[unobserved], None,
                    extras={"M_star": m_star, "mask": mask.reshape(d, d), "rank": rank})


def separable(*, n_train: int = 200, n_test: int = 1000, dim: int = 2, margin: float = 0.1, seed: int = 0) -> RawSplit:
    """Linearly separable binary classification through the origin with margin >= ``margin``.

    w* is a random unit vector; x ~ N(0, I_dim) conditioned on |<w*, x>| >= margin (rejection
    sampling); y = 1 if <w*, x> > 0 else 0. extras: 'w_star'.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("dim", dim)):
        check_positive_int(name, value)
    if not (isinstance(margin, (int, float)) and 0 <= margin < 3):
        raise ConfigError(f"margin must be a number in [0, 3), got {margin!r}")
    gen = _gen(seed)
    w_star = torch.randn(dim, generator=gen, dtype=F64)
    w_star /= w_star.norm()
    n, kept = n_train + n_test, []
    while sum(len(k) for k in kept) < n:
        x = torch.randn(2 * n, dim, generator=gen, dtype=F64)
        kept.append(x[(x @ w_star).abs() >= margin])
    x = torch.cat(kept)[:n]
    y = (x @ w_star > 0).long()
    return RawSplit(x[:n_train], y[:n_train], x[n_train:], y[n_train:], 2, extras={"w_star": w_star})


def rff_regression(*, n_train: int = 500, n_test: int = 1000, dim: int = 10, num_teacher_features: int = 100,
                   bandwidth: float = 1.0, noise_std: float = 0.0, seed: int = 0) -> RawSplit:
    """Regression whose target lies in a random-Fourier-feature space: x ~ N(0, I_dim),
    y = phi(x) . a + noise with phi the RFF map of the Gaussian kernel of ``bandwidth``
    (``num_teacher_features`` features) and a ~ N(0, I). For random-features double descent.
    extras: 'teacher_coefficients'.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("dim", dim),
                        ("num_teacher_features", num_teacher_features)):
        check_positive_int(name, value)
    _check_noise(noise_std)
    gen = _gen(seed)
    x = torch.randn(n_train + n_test, dim, generator=gen, dtype=F64)
    coefficients = torch.randn(num_teacher_features, generator=gen, dtype=F64)
    feature_seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    phi = random_fourier_features(x, num_teacher_features, bandwidth, seed=feature_seed)
    y = phi @ coefficients + noise_std * torch.randn(len(x), generator=gen, dtype=F64)
    return RawSplit(x[:n_train], y[:n_train], x[n_train:], y[n_train:], None,
                    extras={"teacher_coefficients": coefficients})


SYNTHETIC: dict[str, Callable[..., RawSplit]] = {
    "linear_regression": linear_regression,
    "teacher_student": teacher_student,
    "matrix_sensing": matrix_sensing,
    "matrix_completion": matrix_completion,
    "separable": separable,
    "rff_regression": rff_regression,
}
