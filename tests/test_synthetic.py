"""Synthetic generators: each checked against the property it is defined by."""

from __future__ import annotations

import math

import pytest
import torch

from overparam import data
from overparam.data import synthetic
from overparam.errors import ConfigError


def test_linear_regression_min_norm_interpolates_when_overparameterized():
    split = synthetic.linear_regression(n_train=50, n_test=20, p=300, seed=0)
    x, y = split.x_train, split.y_train
    w = x.T @ torch.linalg.solve(x @ x.T, y)  # X^T (X X^T)^{-1} y
    torch.testing.assert_close(x @ w, y)
    torch.testing.assert_close(split.x_train @ split.extras["w_star"], y)  # noiseless targets
    assert x.shape == (50, 300) and split.num_classes is None


def test_matrix_sensing_measurements_are_trace_inner_products():
    split = synthetic.matrix_sensing(d=12, rank=3, n_train=40, n_test=10, seed=1)
    m = split.extras["M_star"]
    expected = torch.stack([torch.trace(a.T @ m) for a in split.x_train])
    torch.testing.assert_close(split.y_train, expected)
    assert torch.linalg.matrix_rank(m).item() == 3
    assert torch.linalg.matrix_norm(m).item() == pytest.approx(math.sqrt(12))


def test_matrix_completion_splits_cover_every_entry_once():
    split = synthetic.matrix_completion(d=10, rank=2, n_train=30, seed=2)
    m = split.extras["M_star"]
    entries = torch.cat([split.x_train, split.x_test])
    flat = entries[:, 0] * 10 + entries[:, 1]
    assert sorted(flat.tolist()) == list(range(100))
    torch.testing.assert_close(split.y_train, m[split.x_train[:, 0], split.x_train[:, 1]])
    assert split.extras["mask"].sum().item() == 30
    assert split.extras["mask"][split.x_train[:, 0], split.x_train[:, 1]].all()
    with pytest.raises(ConfigError, match="n_train=100"):
        synthetic.matrix_completion(d=10, n_train=100)


def test_separable_data_respect_the_margin_and_the_labels():
    split = synthetic.separable(n_train=300, n_test=100, dim=5, margin=0.3, seed=3)
    w = split.extras["w_star"]
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        scores = x @ w
        assert (scores.abs() >= 0.3).all()
        assert torch.equal(y, (scores > 0).long())
    assert w.norm().item() == pytest.approx(1.0)


def test_teacher_student_labels_come_from_the_teacher():
    split = synthetic.teacher_student(n_train=100, n_test=10, in_features=6, teacher_width=16, teacher_depth=2,
                                      num_classes=3, seed=4)
    w1, w2, w3 = split.extras["teacher_weights"]
    manual = torch.relu(torch.relu(split.x_train @ w1.T) @ w2.T) @ w3.T
    assert torch.equal(split.y_train, manual.argmax(1))
    reg = synthetic.teacher_student(n_train=20, n_test=5, in_features=6, seed=4)
    assert reg.num_classes is None and reg.y_train.shape == (20,)


def test_rff_regression_targets_are_in_the_feature_span():
    split = synthetic.rff_regression(n_train=300, n_test=50, dim=4, num_teacher_features=20, seed=5)
    assert split.y_train.shape == (300,) and torch.isfinite(split.y_train).all()
    assert split.y_train.std() > 0.1


@pytest.mark.parametrize("name", sorted(synthetic.SYNTHETIC))
def test_every_generator_is_deterministic_per_seed(name):
    small = {"linear_regression": {"p": 30}, "matrix_sensing": {"d": 6, "n_train": 20}, "matrix_completion": {"d": 8},
             "teacher_student": {}, "separable": {}, "rff_regression": {}}[name]
    if name == "matrix_completion":
        small["n_train"] = 20
    a, b = synthetic.SYNTHETIC[name](seed=7, **small), synthetic.SYNTHETIC[name](seed=7, **small)
    c = synthetic.SYNTHETIC[name](seed=8, **small)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.y_train, c.y_train)


@pytest.mark.parametrize("call, fragment", [
    (lambda: synthetic.linear_regression(p=0), "p must be an integer >= 1, got 0"),
    (lambda: synthetic.matrix_sensing(d=4, rank=9), "rank=9"),
    (lambda: synthetic.separable(margin=-1), "-1"),
    (lambda: synthetic.teacher_student(noise_std=-0.5), "-0.5"),
])
def test_bad_values_are_named(call, fragment):
    with pytest.raises(ConfigError, match=fragment):
        call()


def test_synthetic_through_load_casts_and_applies_transforms():
    ds = data.load("linear_regression", p=200, n_train=40, seed=0, dtype=torch.float64)
    assert ds.x_train.shape == (40, 200) and ds.x_train.dtype == torch.float64 and ds.task == "regression"
    ds = data.load("separable", label_noise=0.1, seed=1)
    assert len(ds.noisy_indices) == 20 and (ds.y_train[ds.noisy_indices] != ds.clean_y_train[ds.noisy_indices]).all()
    with pytest.raises(ConfigError, match="label_noise=0.1 needs a classification dataset"):
        data.load("linear_regression", label_noise=0.1)
