"""Synthetic generators, each checked against the property that defines it, computed here
independently (solves, einsum, manual forward passes, closed-form truncated-normal moments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from overparam.data import synthetic
from overparam.data.base import RawSplit
from overparam.errors import ConfigError

F64 = torch.float64


def test_registry_names():
    assert set(synthetic.SYNTHETIC) == {"linear_regression", "teacher_student", "matrix_sensing",
                                        "matrix_completion", "separable", "rff_regression"}
    for name, fn in synthetic.SYNTHETIC.items():
        assert fn.__name__ == name and fn.__doc__


# ----------------------------------------------------------------------------- linear regression


@pytest.mark.parametrize("noise_std", [0.0, 0.3])
def test_linear_regression_min_norm_interpolates_when_overparameterized(noise_std):
    split = synthetic.linear_regression(n_train=50, n_test=20, p=300, noise_std=noise_std, seed=0)
    x, y = split.x_train, split.y_train
    assert x.shape == (50, 300) and y.shape == (50,) and split.x_test.shape == (20, 300)
    assert x.dtype == y.dtype == F64 and split.num_classes is None
    w = x.T @ torch.linalg.solve(x @ x.T, y)  # X^T (X X^T)^{-1} y
    torch.testing.assert_close(x @ w, y, rtol=0, atol=1e-9)


def test_linear_regression_follows_its_generative_model():
    split = synthetic.linear_regression(n_train=4000, n_test=2000, p=200, noise_std=0.5, seed=1)
    w_star = split.extras["w_star"]
    assert w_star.shape == (200,)
    assert (w_star**2).sum().item() == pytest.approx(1.0, abs=0.3)  # E||w*||^2 = 1, sd 0.1
    x = torch.cat([split.x_train, split.x_test]).numpy()
    assert abs(x.mean()) < 0.01 and x.var() == pytest.approx(1.0, abs=0.01)
    for xs, ys in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        residual = (ys - xs @ w_star).numpy()
        assert residual.std() == pytest.approx(0.5, rel=0.05) and abs(residual.mean()) < 0.05
    clean = synthetic.linear_regression(n_train=30, n_test=10, p=20, seed=2)
    torch.testing.assert_close(clean.y_test, clean.x_test @ clean.extras["w_star"], rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- teacher-student


def manual_teacher(x: torch.Tensor, extras: dict, depth: int) -> torch.Tensor:
    h = x.numpy()
    for k in range(1, depth + 1):
        h = np.maximum(h @ extras[f"teacher_w{k}"].numpy().T, 0.0)
    return h @ extras[f"teacher_w{depth + 1}"].numpy().T + extras["teacher_bias"].numpy()


def test_teacher_student_classification_labels_are_the_teacher_argmax():
    split = synthetic.teacher_student(n_train=500, n_test=100, in_features=6, teacher_width=16, teacher_depth=2,
                                      num_classes=3, seed=4)
    assert split.num_classes == 3 and split.y_train.dtype == torch.int64 and split.y_train.shape == (500,)
    shapes = [tuple(split.extras[f"teacher_w{k}"].shape) for k in (1, 2, 3)]
    assert shapes == [(16, 6), (16, 16), (3, 16)] and "teacher_w4" not in split.extras
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        np.testing.assert_array_equal(y.numpy(), manual_teacher(x, split.extras, 2).argmax(1))
    assert set(split.y_train.tolist()) == {0, 1, 2}  # the centred teacher uses every class
    assert [w.shape for w in synthetic.teacher_weights(split.extras)] == [torch.Size(s) for s in shapes]


def test_teacher_student_regression_targets_are_the_teacher_output():
    split = synthetic.teacher_student(n_train=300, n_test=50, in_features=5, teacher_width=32, teacher_depth=1, seed=5)
    assert split.num_classes is None and split.y_train.shape == (300,) and split.y_train.dtype == F64
    np.testing.assert_allclose(split.y_train.numpy(), manual_teacher(split.x_train, split.extras, 1)[:, 0],
                               rtol=1e-12, atol=1e-12)
    assert abs(split.y_train.mean().item()) < 0.15  # centred outputs
    noisy = synthetic.teacher_student(n_train=5000, n_test=10, in_features=5, teacher_width=32, noise_std=0.2, seed=5)
    residual = noisy.y_train.numpy() - manual_teacher(noisy.x_train, noisy.extras, 1)[:, 0]
    assert residual.std() == pytest.approx(0.2, rel=0.05)


def test_teacher_weights_have_fan_in_variance():
    split = synthetic.teacher_student(n_train=10, n_test=10, in_features=400, teacher_width=300, teacher_depth=2,
                                      seed=6)
    for k, fan_in in ((1, 400), (2, 300), (3, 300)):
        w = split.extras[f"teacher_w{k}"]
        assert w.var().item() == pytest.approx(1 / fan_in, rel=0.1 if w.numel() > 1000 else 0.5)


# ----------------------------------------------------------------------------- matrix sensing / completion


def test_matrix_sensing_measurements_are_trace_inner_products():
    split = synthetic.matrix_sensing(d=12, rank=3, n_train=40, n_test=10, seed=1)
    m = split.extras["M_star"]
    assert split.x_train.shape == (40, 12, 12) and split.x_test.shape == (10, 12, 12) and split.x_train.dtype == F64
    for a, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        torch.testing.assert_close(y, torch.einsum("nij,ij->n", a, m), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(y, torch.stack([torch.trace(ai.T @ m) for ai in a]), rtol=1e-12, atol=1e-12)
    assert torch.linalg.matrix_rank(m).item() == 3 and split.extras["rank"] == 3
    assert torch.linalg.matrix_norm(m).item() == pytest.approx(math.sqrt(12), rel=1e-12)


@pytest.mark.parametrize("d, rank", [(1, 1), (8, 8), (30, 1), (20, 7)])
def test_low_rank_ground_truth_has_the_stated_rank_and_norm(d, rank):
    m = synthetic.matrix_sensing(d=d, rank=rank, n_train=2, n_test=1, seed=d).extras["M_star"]
    assert m.shape == (d, d) and torch.linalg.matrix_rank(m).item() == rank
    assert torch.linalg.matrix_norm(m).item() == pytest.approx(math.sqrt(d), rel=1e-12)


def test_matrix_sensing_a_is_standard_gaussian():
    a = synthetic.matrix_sensing(d=10, rank=2, n_train=200, n_test=10, seed=3).x_train.numpy().ravel()
    assert abs(a.mean()) < 0.02 and a.var() == pytest.approx(1.0, abs=0.02)


def test_matrix_completion_splits_cover_every_entry_once():
    d = 10
    split = synthetic.matrix_completion(d=d, rank=2, n_train=30, seed=2)
    m, mask = split.extras["M_star"], split.extras["mask"]
    assert split.x_train.dtype == split.x_test.dtype == torch.int64
    assert split.x_train.shape == (30, 2) and split.x_test.shape == (70, 2)
    pairs = [tuple(p) for p in torch.cat([split.x_train, split.x_test]).tolist()]
    assert sorted(pairs) == [(i, j) for i in range(d) for j in range(d)]  # each entry exactly once
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        np.testing.assert_array_equal(y.numpy(), [m[i, j].item() for i, j in x.tolist()])
    assert mask.dtype == torch.bool and mask.shape == (d, d) and mask.sum().item() == 30
    assert {tuple(p) for p in split.x_train.tolist()} == {tuple(p) for p in torch.nonzero(mask).tolist()}
    assert torch.linalg.matrix_rank(m).item() == 2
    assert torch.linalg.matrix_norm(m).item() == pytest.approx(math.sqrt(d), rel=1e-12)


def test_matrix_completion_observes_uniformly_and_allows_a_full_matrix():
    hits = torch.zeros(6, 6)
    for seed in range(300):
        hits += synthetic.matrix_completion(d=6, rank=1, n_train=9, seed=seed).extras["mask"]
    assert hits.sum() == 2700 and stats.chisquare(hits.flatten().numpy()).pvalue > 1e-3
    full = synthetic.matrix_completion(d=4, rank=2, n_train=16, seed=0)
    assert full.x_train.shape == (16, 2) and full.x_test.shape == (0, 2) and full.extras["mask"].all()


# ----------------------------------------------------------------------------- separable


@pytest.mark.parametrize("dim, margin", [(2, 0.1), (5, 0.3), (200, 1.0), (3, 0.0), (4, 3.5)])
def test_separable_data_respect_the_margin_and_the_labels(dim, margin):
    split = synthetic.separable(n_train=300, n_test=100, dim=dim, margin=margin, seed=3)
    w = split.extras["w_star"]
    assert w.shape == (dim,) and w.norm().item() == pytest.approx(1.0, rel=1e-12)
    assert split.num_classes == 2 and split.x_train.shape == (300, dim) and split.x_test.shape == (100, dim)
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        scores = x.numpy() @ w.numpy()
        assert (np.abs(scores) >= margin - 1e-12).all()
        assert y.dtype == torch.int64
        np.testing.assert_array_equal(y.numpy(), (scores > 0).astype(np.int64))
        assert ((2 * y.numpy() - 1) * scores >= margin - 1e-12).all()  # separable through the origin
    assert set(split.y_train.tolist()) == {0, 1}


def test_separable_is_the_conditioned_gaussian():
    """|<w*, x>| follows N(0,1) truncated to |s| >= m; the orthogonal part stays N(0, I)."""
    m = 0.8
    split = synthetic.separable(n_train=20000, n_test=1, dim=3, margin=m, seed=8)
    w, x = split.extras["w_star"].numpy(), split.x_train.numpy()
    s = np.abs(x @ w)
    truncated = stats.truncnorm(m, np.inf)  # law of |s| given |s| >= m
    assert stats.kstest(s, truncated.cdf).pvalue > 1e-3
    orth = x - np.outer(x @ w, w)
    cov = orth.T @ orth / len(orth)
    np.testing.assert_allclose(cov, np.eye(3) - np.outer(w, w), atol=0.03)
    assert abs(split.y_train.double().mean().item() - 0.5) < 0.02  # symmetric classes


# ----------------------------------------------------------------------------- random features


def test_rff_regression_targets_are_a_random_feature_teacher():
    split = synthetic.rff_regression(n_train=300, n_test=50, dim=4, num_teacher_features=20, bandwidth=0.8, seed=5)
    w, b, a = (split.extras[k].numpy() for k in ("teacher_W", "teacher_b", "teacher_a"))
    assert w.shape == (20, 4) and b.shape == (20,) and a.shape == (20,)
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        phi = math.sqrt(2 / 20) * np.cos(x.numpy() @ w.T + b)
        np.testing.assert_allclose(y.numpy(), phi @ a, rtol=1e-10, atol=1e-12)
    assert split.num_classes is None and split.y_train.dtype == F64


def test_rff_regression_teacher_distribution_and_noise():
    split = synthetic.rff_regression(n_train=3000, n_test=10, dim=10, num_teacher_features=2000, bandwidth=2.0,
                                     noise_std=0.3, seed=6)
    w, b, a = (split.extras[k].numpy() for k in ("teacher_W", "teacher_b", "teacher_a"))
    assert w.std() == pytest.approx(1 / 2.0, rel=0.02) and a.std() == pytest.approx(1.0, rel=0.05)
    assert 0 <= b.min() and b.max() < 2 * math.pi
    x = split.x_train.numpy()
    clean = math.sqrt(2 / 2000) * np.cos(x @ w.T + b) @ a
    assert (split.y_train.numpy() - clean).std() == pytest.approx(0.3, rel=0.05)
    assert clean.var() == pytest.approx(1.0, abs=0.25)  # ||phi(x)||^2 ~ k(x, x) = 1


# ----------------------------------------------------------------------------- every generator

SMALL = {
    "linear_regression": {"n_train": 20, "n_test": 10, "p": 30},
    "teacher_student": {"n_train": 50, "n_test": 20, "num_classes": 4},
    "matrix_sensing": {"d": 6, "rank": 2, "n_train": 20, "n_test": 5},
    "matrix_completion": {"d": 8, "rank": 2, "n_train": 20},
    "separable": {"n_train": 50, "n_test": 20, "dim": 3},
    "rff_regression": {"n_train": 50, "n_test": 20, "dim": 3, "num_teacher_features": 10},
}


def tensors(split: RawSplit) -> dict:
    out = {"x_train": split.x_train, "y_train": split.y_train, "x_test": split.x_test, "y_test": split.y_test}
    out.update({k: v for k, v in split.extras.items() if isinstance(v, torch.Tensor)})
    return out


@pytest.mark.parametrize("name", sorted(synthetic.SYNTHETIC))
def test_every_generator_is_deterministic_per_seed_and_leaves_the_global_rng(name):
    fn = synthetic.SYNTHETIC[name]
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = fn(seed=7, **SMALL[name])
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(99)  # the global seed has no influence
    b, c = fn(seed=7, **SMALL[name]), fn(seed=8, **SMALL[name])
    ta, tb, tc = tensors(a), tensors(b), tensors(c)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key].dtype == tb[key].dtype and torch.equal(ta[key], tb[key]), key
    assert not torch.equal(ta["y_train"], tc["y_train"])
    assert {k: v for k, v in a.extras.items() if not isinstance(v, torch.Tensor)} == \
           {k: v for k, v in b.extras.items() if not isinstance(v, torch.Tensor)}


@pytest.mark.parametrize("name", sorted(synthetic.SYNTHETIC))
def test_every_generator_has_the_stated_dtypes_and_sizes(name):
    split = synthetic.SYNTHETIC[name](**SMALL[name])
    assert isinstance(split, RawSplit)
    x_dtype = torch.int64 if name == "matrix_completion" else F64
    assert split.x_train.dtype == split.x_test.dtype == x_dtype
    y_dtype = F64 if split.num_classes is None else torch.int64
    assert split.y_train.dtype == split.y_test.dtype == y_dtype
    assert len(split.x_train) == len(split.y_train) == SMALL[name]["n_train"]
    assert len(split.x_test) == len(split.y_test)
    assert split.y_train.ndim == 1
    for value in split.extras.values():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            assert value.dtype == F64


def test_default_arguments_work():
    for name, fn in synthetic.SYNTHETIC.items():
        if name != "matrix_sensing":  # the default is 2500 50x50 matrices; its shape is checked once here
            fn()
    assert synthetic.matrix_sensing(n_train=3, n_test=2).x_train.shape == (3, 50, 50)


BAD = [
    ("linear_regression", "p", 0), ("linear_regression", "n_train", -5), ("linear_regression", "n_test", 2.5),
    ("linear_regression", "noise_std", -0.1), ("linear_regression", "noise_std", math.nan),
    ("linear_regression", "seed", -1), ("linear_regression", "seed", "abc"),
    ("teacher_student", "in_features", 0), ("teacher_student", "teacher_width", 0),
    ("teacher_student", "teacher_depth", 0), ("teacher_student", "num_classes", 1),
    ("teacher_student", "num_classes", 2.0), ("teacher_student", "noise_std", -0.5),
    ("matrix_sensing", "rank", 51), ("matrix_sensing", "d", 0), ("matrix_sensing", "rank", 0),
    ("matrix_sensing", "n_test", 0),
    ("matrix_completion", "n_train", 2501), ("matrix_completion", "rank", 51), ("matrix_completion", "d", -3),
    ("separable", "margin", -1), ("separable", "margin", 4.5), ("separable", "margin", math.inf),
    ("separable", "dim", 0), ("separable", "margin", True),
    ("rff_regression", "bandwidth", 0), ("rff_regression", "bandwidth", -1.5),
    ("rff_regression", "num_teacher_features", 0), ("rff_regression", "noise_std", -2), ("rff_regression", "dim", 0),
]


@pytest.mark.parametrize("name, key, value", BAD)
def test_bad_values_raise_config_error_naming_them(name, key, value):
    with pytest.raises(ConfigError) as info:
        synthetic.SYNTHETIC[name](**{key: value})
    message = str(info.value)
    assert repr(value) in message and key in message, message


def test_unknown_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        synthetic.linear_regression(100)  # keyword-only


def test_synthetic_through_load_uses_the_seed_sizes_dtype_and_transforms():
    from overparam import data

    a = data.load("linear_regression", p=200, n_train=40, n_test=30, seed=0, dtype=torch.float64)
    assert a.x_train.shape == (40, 200) and a.x_test.shape == (30, 200)
    assert a.x_train.dtype == torch.float64 and a.task == "regression"
    b = data.load("linear_regression", p=200, n_train=40, n_test=30, seed=1, dtype=torch.float64)
    assert not torch.equal(a.x_train, b.x_train)  # a new problem per seed
    assert torch.equal(a.x_train, data.load("linear_regression", p=200, n_train=40, n_test=30, seed=0,
                                            dtype=torch.float64).x_train)
    big = data.load("linear_regression", p=20, n_train=500, seed=0)  # larger than the default 100
    assert big.n_train == 500
    noisy = data.load("separable", label_noise=0.1, seed=1)
    assert len(noisy.noisy_indices) == 20
    assert (noisy.y_train[noisy.noisy_indices] != noisy.clean_y_train[noisy.noisy_indices]).all()
    with pytest.raises(ConfigError, match="label_noise=0.1 needs a classification dataset"):
        data.load("linear_regression", label_noise=0.1)
