"""Transforms against independent answers: exact counts, label changes, hand-rounded quotas,
training statistics computed here, and the Gaussian kernel itself."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy import stats

from overparam.data.transforms import (add_label_noise, flatten, random_fourier_features, rff_weights, standardize,
                                       stratified_subset)
from overparam.errors import ConfigError


def labels(n=1000, k=10, seed=0):
    return torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- label noise


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.05, 0.15, 1 / 3, 0.5, 0.999, 1.0])
def test_label_noise_changes_exactly_the_recorded_labels_to_wrong_classes(fraction):
    y = labels(n=1001)
    original = y.clone()
    noisy, idx = add_label_noise(y, fraction, 10, seed=1)
    assert len(idx) == round(fraction * 1001)
    assert idx.dtype == torch.int64 and noisy.dtype == torch.int64 and noisy.shape == y.shape
    # the recorded indices are exactly the positions where the label differs
    assert idx.tolist() == [i for i in range(1001) if noisy[i].item() != y[i].item()]
    assert ((noisy >= 0) & (noisy < 10)).all()
    assert torch.equal(y, original)  # input untouched


def test_label_noise_edge_fractions():
    y = labels(n=257, k=3)
    noisy, idx = add_label_noise(y, 0.0, 3, seed=0)
    assert torch.equal(noisy, y) and idx.numel() == 0 and idx.dtype == torch.int64
    noisy, idx = add_label_noise(y, 1.0, 3, seed=0)
    assert torch.equal(idx, torch.arange(257)) and (noisy != y).all()
    # two classes: a noisy label is forced to the other class
    y2 = labels(n=100, k=2)
    noisy, idx = add_label_noise(y2, 1.0, 2, seed=4)
    assert torch.equal(noisy, 1 - y2)
    noisy, idx = add_label_noise(torch.empty(0, dtype=torch.long), 0.5, 4, seed=0)
    assert noisy.numel() == 0 and idx.numel() == 0


def test_label_noise_is_reproducible_per_seed_and_varies_across_seeds():
    y = labels()
    a, ia = add_label_noise(y, 0.2, 10, seed=5)
    b, ib = add_label_noise(y, 0.2, 10, seed=5)
    c, ic = add_label_noise(y, 0.2, 10, seed=6)
    assert torch.equal(a, b) and torch.equal(ia, ib)
    assert not torch.equal(ia, ic) and not torch.equal(a, c)


def test_label_noise_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a, _ = add_label_noise(labels(), 0.3, 10, seed=9)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(456)
    b, _ = add_label_noise(labels(), 0.3, 10, seed=9)
    assert torch.equal(a, b)


def test_label_noise_replacement_is_uniform_over_the_wrong_classes():
    """Chi-square: given the clean class c, the new class is uniform over the k-1 others."""
    k = 5
    y = labels(n=200_000, k=k, seed=2)
    noisy, idx = add_label_noise(y, 0.5, k, seed=3)
    clean, new = y[idx].numpy(), noisy[idx].numpy()
    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (clean, new), 1)
    assert np.trace(table) == 0
    chi2 = 0.0
    for c in range(k):
        observed = np.delete(table[c], c)
        expected = observed.sum() / (k - 1)
        chi2 += ((observed - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(chi2, df=k * (k - 2)) > 1e-3
    # the noisy positions are a uniform subset: equal counts over 20 blocks of positions
    blocks = np.bincount(idx.numpy() * 20 // len(y), minlength=20)
    assert stats.chisquare(blocks).pvalue > 1e-3


@pytest.mark.parametrize("args, fragment", [
    ((labels(), 1.5, 10, 0), "1.5"),
    ((labels(), -0.1, 10, 0), "-0.1"),
    ((labels(k=1), 0.1, 1, 0), "num_classes must be an integer >= 2, got 1"),
    ((labels(k=10), 0.1, 5, 0), "label 9 is outside the accepted range [0, 5)"),
    ((labels(k=3) - 1, 0.1, 3, 0), "label -1"),
    ((labels().double(), 0.1, 10, 0), "torch.float64"),
    ((labels(), 0.1, 10, -3), "-3"),
])
def test_label_noise_bad_input_names_the_value(args, fragment):
    with pytest.raises(ConfigError) as info:
        add_label_noise(*args)
    assert fragment in str(info.value)


# ----------------------------------------------------------------------------- stratified subset


def largest_remainder(counts: list[int], n: int) -> list[int]:
    """Independent rounding with exact fractions; ties to the earlier (smaller-label) class."""
    total = sum(counts)
    quotas = [Fraction(n * c, total) for c in counts]
    base = [math.floor(q) for q in quotas]
    ranked = sorted(range(len(counts)), key=lambda k: (-(quotas[k] - base[k]), k))
    for k in ranked[: n - sum(base)]:
        base[k] += 1
    return base


def test_stratified_subset_matches_hand_computed_counts():
    y = torch.cat([torch.full((600,), 0), torch.full((300,), 1), torch.full((100,), 2)])
    assert torch.bincount(y[stratified_subset(y, 100, seed=0)], minlength=3).tolist() == [60, 30, 10]
    # 7 * (0.6, 0.3, 0.1) = (4.2, 2.1, 0.7): floors (4, 2, 0), one left -> largest remainder 0.7
    assert torch.bincount(y[stratified_subset(y, 7, seed=0)], minlength=3).tolist() == [4, 2, 1]
    # 3 * (0.6, 0.3, 0.1) = (1.8, 0.9, 0.3): floors (1, 0, 0), two left -> 0.9 and 0.8
    assert torch.bincount(y[stratified_subset(y, 3, seed=0)], minlength=3).tolist() == [2, 1, 0]
    # equal remainders 2/3 each: ties go to the smaller labels
    y3 = torch.tensor([0, 1, 2])
    assert y3[stratified_subset(y3, 2, seed=0)].tolist() == [0, 1]


@pytest.mark.parametrize("n", [1, 17, 250, 999, 1234, 2000])
def test_stratified_subset_counts_are_the_proportional_quotas(n):
    gen = torch.Generator().manual_seed(11)
    # unequal classes with non-contiguous labels
    y = torch.tensor([3, 7, 8, 20, 41])[torch.multinomial(torch.tensor([0.5, 0.25, 0.15, 0.08, 0.02]), 2000,
                                                           replacement=True, generator=gen)]
    idx = stratified_subset(y, n, seed=n)
    assert idx.dtype == torch.int64 and len(idx) == n
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == n
    assert 0 <= idx.min() and idx.max() < len(y)
    classes = sorted(set(y.tolist()))
    counts = [int((y == c).sum()) for c in classes]
    got = [int((y[idx] == c).sum()) for c in classes]
    assert got == largest_remainder(counts, n)
    assert all(math.floor(n * c / 2000) <= g <= math.ceil(n * c / 2000) for c, g in zip(counts, got))


def test_stratified_subset_full_size_reproducible_and_seeded():
    y = labels(n=500, k=4)
    assert torch.equal(stratified_subset(y, 500, seed=3), torch.arange(500))
    a, b, c = (stratified_subset(y, 100, seed=s) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_stratified_subset_is_uniform_within_a_class():
    y = torch.tensor([0] * 10 + [1] * 30)  # n=8 -> 2 from class 0, 6 from class 1
    hits = torch.zeros(40)
    for seed in range(500):
        hits[stratified_subset(y, 8, seed=seed)] += 1
    assert hits[:10].sum() == 1000 and hits[10:].sum() == 3000
    assert stats.chisquare(hits[:10].numpy()).pvalue > 1e-3
    assert stats.chisquare(hits[10:].numpy()).pvalue > 1e-3


@pytest.mark.parametrize("y, n, fragment", [
    (labels(), 2000, "n=2000 exceeds the 1000 examples"),
    (labels(), 0, "got 0"),
    (labels(), 2.5, "got 2.5"),
    (labels().double(), 10, "torch.float64"),
    (labels().reshape(10, 100), 10, "(10, 100)"),
])
def test_stratified_subset_bad_input_names_the_value(y, n, fragment):
    with pytest.raises(ConfigError) as info:
        stratified_subset(y, n, seed=0)
    assert fragment in str(info.value)


# ----------------------------------------------------------------------------- standardize, flatten


def test_standardize_uses_training_statistics_only():
    gen = torch.Generator().manual_seed(0)
    x_train = 3 + 2 * torch.randn(500, 4, generator=gen, dtype=torch.float64)
    x_test = 5 + torch.randn(100, 4, generator=gen, dtype=torch.float64)
    a, b, st = standardize(x_train, x_test)
    tr, te = x_train.numpy(), x_test.numpy()
    mean, std = tr.mean(), tr.std()  # numpy: population std over all entries
    np.testing.assert_allclose(a.numpy(), (tr - mean) / std, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.numpy(), (te - mean) / std, rtol=1e-12, atol=1e-12)
    assert st["mean"].item() == pytest.approx(mean) and st["std"].item() == pytest.approx(std)
    assert b.mean().item() > 0.5  # the test split is not re-centred (its shift is (5 - 3) / 2 ~ 1)


def test_standardize_per_feature_and_constant_features():
    gen = torch.Generator().manual_seed(1)
    scales = torch.tensor([1.0, 10.0, 0.1, 0.0], dtype=torch.float64)  # the last feature is constant
    x_train = 2 + scales * torch.randn(300, 4, generator=gen, dtype=torch.float64)
    x_test = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    a, b, st = standardize(x_train, x_test, per_feature=True)
    tr, te = x_train.numpy(), x_test.numpy()
    mean, std = tr.mean(0), tr.std(0)
    std[3] = 1.0  # a constant feature is only centred
    np.testing.assert_allclose(a.numpy(), (tr - mean) / std, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.numpy(), (te - mean) / std, rtol=1e-10, atol=1e-12)
    assert st["mean"].shape == (4,) and st["std"].shape == (4,) and st["per_feature"] is True
    # images: per-pixel statistics, float32 kept
    imgs = torch.rand(20, 1, 3, 3, generator=gen)
    a, b, st = standardize(imgs, imgs[:5], per_feature=True)
    assert a.dtype == torch.float32 and st["mean"].shape == (1, 3, 3)
    np.testing.assert_allclose(a.numpy().mean(0), 0, atol=1e-5)


def test_standardize_rejects_mismatched_or_integer_inputs():
    with pytest.raises(ConfigError, match=r"\(3,\) and \(4,\)"):
        standardize(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ConfigError, match="torch.int64"):
        standardize(torch.zeros(5, 3, dtype=torch.long), torch.zeros(5, 3))


def test_flatten_shapes_and_order():
    x = torch.arange(3 * 4 * 5, dtype=torch.float64).reshape(3, 1, 4, 5)
    out = flatten(x)
    assert out.shape == (3, 20)
    np.testing.assert_array_equal(out.numpy(), x.numpy().reshape(3, -1))
    assert flatten(torch.zeros(0, 2, 3)).shape == (0, 6)
    assert flatten(torch.zeros(7)).shape == (7, 1)
    assert flatten(torch.zeros(4, 9)).shape == (4, 9)


# ----------------------------------------------------------------------------- random Fourier features


def gaussian_kernel(x: np.ndarray, bandwidth: float) -> np.ndarray:
    sq = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-sq / (2 * bandwidth**2))


def test_random_fourier_features_approximate_the_gaussian_kernel():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(15, 3, generator=gen, dtype=torch.float64)
    bandwidth = 1.5
    exact = gaussian_kernel(x.numpy(), bandwidth)
    assert exact[np.triu_indices(15, 1)].min() < 0.2 < 0.8 < exact[np.triu_indices(15, 1)].max()  # a spread of values
    mean_errors = {}
    for n in (100, 1000, 20000):
        errs = []
        for seed in range(3):
            phi = random_fourier_features(x, n, bandwidth, seed=seed)
            assert phi.shape == (15, n) and phi.dtype == torch.float64
            errs.append(np.abs((phi @ phi.T).numpy() - exact))
        mean_errors[n] = float(np.mean(errs))
        if n == 20000:
            assert max(e.max() for e in errs) < 0.03
    assert mean_errors[20000] < 0.01
    assert mean_errors[100] > mean_errors[1000] > mean_errors[20000]
    # Monte Carlo rate 1/sqrt(N): 200x more features -> ~14x smaller error
    assert mean_errors[20000] < mean_errors[100] / 5


def test_random_fourier_features_other_bandwidth_and_same_map_per_seed():
    gen = torch.Generator().manual_seed(3)
    x_train = torch.randn(8, 5, generator=gen, dtype=torch.float64) * 0.5
    x_test = torch.randn(6, 5, generator=gen, dtype=torch.float64) * 0.5
    exact = gaussian_kernel(torch.cat([x_train, x_test]).numpy(), 0.7)
    phi_train = random_fourier_features(x_train, 20000, 0.7, seed=4)
    phi_test = random_fourier_features(x_test, 20000, 0.7, seed=4)
    cross = (phi_train @ phi_test.T).numpy()  # train-test products use one shared map
    assert np.abs(cross - exact[:8, 8:]).max() < 0.03
    joint = random_fourier_features(torch.cat([x_train, x_test]), 20000, 0.7, seed=4)
    torch.testing.assert_close(joint, torch.cat([phi_train, phi_test]), rtol=0, atol=1e-12)
    assert not torch.equal(phi_train, random_fourier_features(x_train, 20000, 0.7, seed=5))
    # float32 in, float32 out, same map up to rounding
    phi32 = random_fourier_features(x_train.float(), 20000, 0.7, seed=4)
    assert phi32.dtype == torch.float32
    torch.testing.assert_close(phi32.double(), phi_train, rtol=0, atol=1e-5)


def test_rff_weights_have_the_stated_distribution():
    w, b = rff_weights(10, 5000, bandwidth=2.0, seed=0)
    assert w.shape == (5000, 10) and b.shape == (5000,)
    assert w.std().item() == pytest.approx(0.5, rel=0.02) and abs(w.mean().item()) < 0.01
    assert 0 <= b.min() and b.max() < 2 * math.pi
    assert stats.kstest(b.numpy() / (2 * math.pi), "uniform").pvalue > 1e-3


@pytest.mark.parametrize("kwargs, fragment", [
    ({"num_features": 0}, "got 0"),
    ({"num_features": 10, "bandwidth": 0.0}, "got 0.0"),
    ({"num_features": 10, "bandwidth": -2.0}, "got -2.0"),
    ({"num_features": 10, "seed": -1}, "got -1"),
])
def test_random_fourier_features_bad_input_names_the_value(kwargs, fragment):
    with pytest.raises(ConfigError) as info:
        random_fourier_features(torch.zeros(3, 2), **kwargs)
    assert fragment in str(info.value)
