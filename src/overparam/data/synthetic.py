"""Synthetic problems with known ground truth, for the theory studies.

Every generator is keyword-only with defaults, validates its arguments (a bad value raises
:class:`~overparam.errors.ConfigError` naming it), draws everything from a local
``torch.Generator`` seeded from ``seed`` (stream ``derive_seed(seed, "synthetic", name)``, so
two generators given the same seed do not share draws; the global RNG is never touched),
generates in float64 and returns a :class:`RawSplit` whose ``extras`` hold the ground truth as
tensors (plain ints/floats in ``extras`` end up in ``Dataset.info``). Inputs ``x`` are float64
except for ``matrix_completion``, whose inputs are int64 (row, col) indices; classification
labels are int64; regression targets are float64 of shape (n,). Same seed and arguments give
bit-identical output.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from overparam.data.base import RawSplit
from overparam.data.transforms import random_fourier_features, rff_weights
from overparam.errors import ConfigError, check_positive_int
from overparam.seeding import derive_seed

F64 = torch.float64

#: Size of the reference sample used to centre the teacher's outputs (see ``teacher_student``).
TEACHER_REFERENCE_SAMPLES = 4096
#: Largest accepted ``margin`` of ``separable`` (acceptance rate 2 (1 - Phi(4)) ~ 6e-5).
MAX_MARGIN = 4.0


def _check_seed(seed: object) -> int:
    return check_positive_int("seed", seed, minimum=0)


def _gen(seed: int, name: str, *stream: str) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(derive_seed(_check_seed(seed), "synthetic", name, *stream))
    return gen


def _check_number(name: str, value: object, *, minimum: float = 0.0, maximum: float = math.inf,
                  open_minimum: bool = False) -> float:
    """``value`` as a finite float in [minimum, maximum] ((minimum, maximum] if ``open_minimum``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > minimum if open_minimum else value >= minimum) and value <= maximum
    if not ok:
        low = "(" if open_minimum else "["
        high = "inf)" if maximum == math.inf else f"{maximum:g}]"
        raise ConfigError(f"{name} must be a finite number in {low}{minimum:g}, {high}, got {value!r}")
    return float(value)


def _split(x: Tensor, y: Tensor, n_train: int, num_classes: int | None, extras: dict) -> RawSplit:
    return RawSplit(x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes, extras=extras)


# ----------------------------------------------------------------------------- linear regression


def linear_regression(*, n_train: int = 100, n_test: int = 1000, p: int = 1000, noise_std: float = 0.0,
                      seed: int = 0) -> RawSplit:
    """Gaussian linear regression y = <x, w*> + noise, x ~ N(0, I_p), w* ~ N(0, I_p / p).

    Generative model (train and test alike): w* ~ N(0, I_p / p) (so E||w*||^2 = 1 and
    Var y = ||w*||^2 + noise_std^2 ~ 1 + noise_std^2), x_i ~ N(0, I_p) iid,
    y_i = <x_i, w*> + noise_std * eps_i with eps_i ~ N(0, 1). Test targets carry the same noise;
    the excess risk of an estimate w is exactly ||w - w*||^2 because x is isotropic.

    Over-parameterized when p > n_train: then X X^T is invertible (a.s.) and the minimum-norm
    interpolant X^T (X X^T)^{-1} y (the limit of gradient descent from zero) fits the training
    set exactly — the setting of linear double descent (Hastie et al. 2019, Belkin et al. 2019).

    Shapes: x (n, p) float64; y (n,) float64. num_classes None. extras: 'w_star' (p,).
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("p", p)):
        check_positive_int(name, value)
    noise_std = _check_number("noise_std", noise_std)
    gen = _gen(seed, "linear_regression")
    n = n_train + n_test
    w_star = torch.randn(p, generator=gen, dtype=F64) / math.sqrt(p)
    x = torch.randn(n, p, generator=gen, dtype=F64)
    y = x @ w_star
    if noise_std > 0:
        y = y + noise_std * torch.randn(n, generator=gen, dtype=F64)
    return _split(x, y, n_train, None, {"w_star": w_star})


# ----------------------------------------------------------------------------- teacher-student


def teacher_weights(extras: dict) -> list[Tensor]:
    """The teacher's weight matrices ``[W_1, ..., W_{L+1}]`` from a ``teacher_student`` extras dict."""
    weights, k = [], 1
    while f"teacher_w{k}" in extras:
        weights.append(extras[f"teacher_w{k}"])
        k += 1
    if not weights:
        raise ConfigError(f"extras hold no teacher weights (keys 'teacher_w1', ...); got keys {sorted(extras)}")
    return weights


def teacher_forward(x: Tensor, weights: list[Tensor], bias: Tensor) -> Tensor:
    """f(x) = W_{L+1} relu(W_L ... relu(W_1 x)) + b for x (n, in_features) -> (n, outputs)."""
    h = x
    for w in weights[:-1]:
        h = torch.relu(h @ w.T)
    return h @ weights[-1].T + bias


def teacher_student(*, n_train: int = 1000, n_test: int = 1000, in_features: int = 20, teacher_width: int = 64,
                    teacher_depth: int = 1, num_classes: int | None = None, noise_std: float = 0.0,
                    seed: int = 0) -> RawSplit:
    """Targets from a random ReLU MLP teacher, x ~ N(0, I_in_features).

    Teacher: ``teacher_depth`` hidden ReLU layers of width ``teacher_width`` without biases,
    then a linear output layer with ``k`` outputs (k = 1 for regression, ``num_classes`` for
    classification)::

        f(x) = W_{L+1} relu(W_L ... relu(W_1 x)) + b,   (W_l)_ij ~ N(0, 1 / fan_in_l) iid,

    and the output bias b = -mean of the bias-free output over a reference sample of
    ``TEACHER_REFERENCE_SAMPLES`` inputs drawn from N(0, I) (separately from the data), which
    centres the outputs. Without it the positive mean of the ReLU features makes one class win
    the argmax almost everywhere for deeper teachers. The centred output std shrinks with depth
    (each ReLU layer about halves the second moment: ~0.57 at L = 1, ~0.25 at L = 3, ~0.06 at
    L = 6 for the default widths); ``noise_std`` is absolute, not relative to it.

    Regression (``num_classes=None``): y = f(x) + noise_std * eps, y float64 of shape (n,).
    Classification (``num_classes=k >= 2``): y = argmax_j (f(x) + noise_std * eps)_j with eps
    ~ N(0, I_k) (noise on the logits; 0 gives a deterministic teacher), int64 labels in [0, k).

    Shapes: x (n, in_features) float64. extras: 'teacher_w1' ... 'teacher_w{L+1}' (W_l of shape
    (fan_out, fan_in); see :func:`teacher_weights`), 'teacher_bias' (k,), and the ints
    'teacher_width', 'teacher_depth'. :func:`teacher_forward` evaluates the teacher.
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("in_features", in_features),
                        ("teacher_width", teacher_width), ("teacher_depth", teacher_depth)):
        check_positive_int(name, value)
    if num_classes is not None:
        check_positive_int("num_classes", num_classes, minimum=2)
    noise_std = _check_number("noise_std", noise_std)
    gen = _gen(seed, "teacher_student")
    outputs = 1 if num_classes is None else num_classes
    sizes = [in_features] + [teacher_width] * teacher_depth + [outputs]
    weights = [torch.randn(fan_out, fan_in, generator=gen, dtype=F64) / math.sqrt(fan_in)
               for fan_in, fan_out in zip(sizes[:-1], sizes[1:])]
    reference = torch.randn(TEACHER_REFERENCE_SAMPLES, in_features, generator=gen, dtype=F64)
    bias = -teacher_forward(reference, weights, torch.zeros(outputs, dtype=F64)).mean(dim=0)
    n = n_train + n_test
    x = torch.randn(n, in_features, generator=gen, dtype=F64)
    out = teacher_forward(x, weights, bias)
    if noise_std > 0:
        out = out + noise_std * torch.randn(n, outputs, generator=gen, dtype=F64)
    y = out[:, 0] if num_classes is None else out.argmax(dim=1).to(torch.int64)
    extras: dict = {f"teacher_w{k}": w for k, w in enumerate(weights, start=1)}
    extras.update(teacher_bias=bias, teacher_width=teacher_width, teacher_depth=teacher_depth)
    return _split(x, y, n_train, num_classes, extras)


# ----------------------------------------------------------------------------- low-rank matrices


def _check_low_rank(d: int, rank: int) -> None:
    check_positive_int("d", d)
    check_positive_int("rank", rank)
    if rank > d:
        raise ConfigError(f"rank={rank} exceeds the matrix size d={d}; accepted: 1 <= rank <= d")


def _low_rank(d: int, rank: int, gen: torch.Generator) -> Tensor:
    """M* = sqrt(d) U V^T / ||U V^T||_F with U, V (d, rank) iid N(0, 1): rank ``rank``, ||M*||_F = sqrt(d)."""
    u = torch.randn(d, rank, generator=gen, dtype=F64)
    v = torch.randn(d, rank, generator=gen, dtype=F64)
    m = u @ v.T
    return m * (math.sqrt(d) / torch.linalg.matrix_norm(m))


def matrix_sensing(*, d: int = 50, rank: int = 5, n_train: int = 2000, n_test: int = 500, seed: int = 0) -> RawSplit:
    """Matrix sensing y_i = <A_i, M*> = trace(A_i^T M*) with Gaussian measurement matrices A_i.

    Ground truth: M* = sqrt(d) · U V^T / ||U V^T||_F with U, V of shape (d, rank), iid N(0, 1)
    entries; so rank(M*) = ``rank`` (almost surely) and ||M*||_F = sqrt(d) exactly (the mean
    squared entry is 1/d). Measurements: A_i (d, d) with iid N(0, 1) entries, independent of M*,
    y_i = sum_jk (A_i)_jk M*_jk ~ N(0, ||M*||_F^2 = d). No noise.
    Over-determined for matrices when n_train >= d^2, under-determined (but identifiable through
    low rank) when rank·(2d - rank) < n_train < d^2 — the setting of implicit regularization in
    matrix factorization (Gunasekar et al. 2017).

    Shapes: x (n, d, d) float64 (the A_i); y (n,) float64. num_classes None.
    extras: 'M_star' (d, d), 'rank' (int).
    """
    _check_low_rank(d, rank)
    check_positive_int("n_train", n_train)
    check_positive_int("n_test", n_test)
    gen = _gen(seed, "matrix_sensing")
    m_star = _low_rank(d, rank, gen)
    a = torch.randn(n_train + n_test, d, d, generator=gen, dtype=F64)
    y = (a * m_star).sum(dim=(1, 2))
    return _split(a, y, n_train, None, {"M_star": m_star, "rank": rank})


def matrix_completion(*, d: int = 50, rank: int = 5, n_train: int = 2000, seed: int = 0) -> RawSplit:
    """Matrix completion: ``n_train`` entries of a low-rank M* observed, chosen uniformly.

    Ground truth M* as in :func:`matrix_sensing` (rank ``rank``, ||M*||_F = sqrt(d)). The observed
    set is a uniformly random subset of the d^2 positions of size ``n_train`` (without
    replacement); the test split is every unobserved entry (d^2 - n_train of them; empty when
    n_train = d^2). Both splits list their positions in row-major order.

    Shapes: x (n, 2) int64 (row, col) index pairs; y (n,) float64 with y_i = M*[row_i, col_i].
    num_classes None. extras: 'M_star' (d, d), 'mask' (d, d) bool, True at observed entries,
    'rank' (int).
    """
    _check_low_rank(d, rank)
    check_positive_int("n_train", n_train)
    if n_train > d * d:
        raise ConfigError(f"n_train={n_train} exceeds the {d * d} entries of a {d}x{d} matrix; "
                          f"accepted: 1 <= n_train <= {d * d}")
    gen = _gen(seed, "matrix_completion")
    m_star = _low_rank(d, rank, gen)
    order = torch.randperm(d * d, generator=gen)
    observed, unobserved = order[:n_train].sort().values, order[n_train:].sort().values
    mask = torch.zeros(d * d, dtype=torch.bool)
    mask[observed] = True

    def pairs(flat: Tensor) -> Tensor:
        return torch.stack([flat // d, flat % d], dim=1).to(torch.int64)

    flat_m = m_star.reshape(-1)
    return RawSplit(pairs(observed), flat_m[observed].clone(), pairs(unobserved), flat_m[unobserved].clone(), None,
                    extras={"M_star": m_star, "mask": mask.reshape(d, d), "rank": rank})


# ----------------------------------------------------------------------------- separable data


def separable(*, n_train: int = 200, n_test: int = 1000, dim: int = 2, margin: float = 0.1, seed: int = 0) -> RawSplit:
    """Linearly separable binary classification through the origin, with margin >= ``margin``.

    w* is uniform on the unit sphere of R^dim (a normalised Gaussian); x ~ N(0, I_dim)
    conditioned on |<w*, x>| >= margin; y = 1 if <w*, x> > 0 else 0. So every point, train and
    test, satisfies (2y - 1) <w*, x> >= margin: w* separates the data through the origin with
    (geometric) margin at least ``margin`` — the setting of the implicit bias of gradient
    descent on separable data (Soudry et al. 2018).

    Sampling: writing x = s w* + (I - w* w*^T) z with s = <w*, x> ~ N(0, 1) independent of the
    orthogonal part, the conditioning only touches s; s is drawn by vectorised rejection
    sampling (batches of N(0, 1) draws, keeping |s| >= margin, in order) and z ~ N(0, I_dim)
    separately. This is exactly the law of rejection sampling whole vectors, at a cost that does
    not grow with dim. ``margin`` is limited to [0, 4] (acceptance rate >= 6e-5).

    Shapes: x (n, dim) float64; y (n,) int64 in {0, 1}. num_classes 2. extras: 'w_star' (dim,).
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("dim", dim)):
        check_positive_int(name, value)
    margin = _check_number("margin", margin, maximum=MAX_MARGIN)
    gen = _gen(seed, "separable")
    w_star = torch.randn(dim, generator=gen, dtype=F64)
    w_star = w_star / w_star.norm()
    n = n_train + n_test
    accept = math.erfc(margin / math.sqrt(2.0))  # P(|s| >= margin)
    kept: list[Tensor] = []
    have = 0
    while have < n:
        batch = min(1 << 24, int(1.1 * (n - have) / accept) + 64)
        s = torch.randn(batch, generator=gen, dtype=F64)
        s = s[s.abs() >= margin]
        kept.append(s)
        have += len(s)
    s = torch.cat(kept)[:n]
    z = torch.randn(n, dim, generator=gen, dtype=F64)
    x = z - torch.outer(z @ w_star, w_star) + torch.outer(s, w_star)
    # Labels from the sign of the sampled projection (s, not x @ w*, which rounding could move
    # across zero when margin = 0).
    y = (s > 0).to(torch.int64)
    return _split(x, y, n_train, 2, {"w_star": w_star})


# ----------------------------------------------------------------------------- random features


def rff_regression(*, n_train: int = 500, n_test: int = 1000, dim: int = 10, num_teacher_features: int = 100,
                   bandwidth: float = 1.0, noise_std: float = 0.0, seed: int = 0) -> RawSplit:
    """Regression with a target in a random-Fourier-feature space, for random-features double descent.

    x ~ N(0, I_dim); teacher f*(x) = <phi(x), a> with phi the random Fourier feature map of the
    Gaussian kernel exp(-||x - x'||^2 / (2 bandwidth^2)) with N = ``num_teacher_features``
    features (:func:`~overparam.data.transforms.random_fourier_features`:
    phi(x) = sqrt(2/N) cos(W x + b), W_ij ~ N(0, 1/bandwidth^2), b_j ~ U[0, 2 pi)) and
    a ~ N(0, I_N). Since ||phi(x)||^2 ~ k(x, x) = 1, Var f*(x) ~ 1. Targets
    y = f*(x) + noise_std * eps, eps ~ N(0, 1), on train and test alike.

    The teacher's feature map uses its own seed, ``derive_seed(seed, "synthetic",
    "rff_regression", "teacher_features")``, stored in extras: a student built from random
    features should use a different seed, or it contains the teacher exactly.

    Shapes: x (n, dim) float64; y (n,) float64. num_classes None. extras: 'teacher_W' (N, dim),
    'teacher_b' (N,), 'teacher_a' (N,), 'teacher_feature_seed' (int).
    """
    for name, value in (("n_train", n_train), ("n_test", n_test), ("dim", dim),
                        ("num_teacher_features", num_teacher_features)):
        check_positive_int(name, value)
    bandwidth = _check_number("bandwidth", bandwidth, open_minimum=True)
    noise_std = _check_number("noise_std", noise_std)
    gen = _gen(seed, "rff_regression")
    feature_seed = derive_seed(seed, "synthetic", "rff_regression", "teacher_features")
    n = n_train + n_test
    x = torch.randn(n, dim, generator=gen, dtype=F64)
    a = torch.randn(num_teacher_features, generator=gen, dtype=F64)
    y = random_fourier_features(x, num_teacher_features, bandwidth, seed=feature_seed) @ a
    if noise_std > 0:
        y = y + noise_std * torch.randn(n, generator=gen, dtype=F64)
    w, b = rff_weights(dim, num_teacher_features, bandwidth, seed=feature_seed)
    return _split(x, y, n_train, None, {"teacher_W": w, "teacher_b": b, "teacher_a": a,
                                        "teacher_feature_seed": feature_seed})


SYNTHETIC: dict[str, Callable[..., RawSplit]] = {
    "linear_regression": linear_regression,
    "teacher_student": teacher_student,
    "matrix_sensing": matrix_sensing,
    "matrix_completion": matrix_completion,
    "separable": separable,
    "rff_regression": rff_regression,
}

__all__ = ["SYNTHETIC", "linear_regression", "matrix_completion", "matrix_sensing", "rff_regression", "separable",
           "teacher_forward", "teacher_student", "teacher_weights"]
