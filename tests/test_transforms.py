"""Transforms against independent answers: counts, exact label changes, kernel values."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from overparam.data.transforms import add_label_noise, flatten, random_fourier_features, standardize, stratified_subset
from overparam.errors import ConfigError


def labels(n=1000, k=10, seed=0):
    return torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.15, 0.333, 0.5, 1.0])
def test_label_noise_changes_exactly_the_recorded_labels_to_wrong_classes(fraction):
    y = labels()
    noisy, idx = add_label_noise(y, fraction, 10, seed=1)
    assert len(idx) == round(fraction * len(y))
    changed = torch.nonzero(noisy != y).flatten()
    assert torch.equal(changed, idx)  # every chosen label became wrong; nothing else moved
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == len(idx)
    assert y.equal(labels())  # input untouched


def test_label_noise_is_reproducible_per_seed_and_varies_across_seeds():
    y = labels()
    a, ia = add_label_noise(y, 0.2, 10, seed=5)
    b, ib = add_label_noise(y, 0.2, 10, seed=5)
    c, ic = add_label_noise(y, 0.2, 10, seed=6)
    assert torch.equal(a, b) and torch.equal(ia, ib)
    assert not torch.equal(ia, ic)


def test_label_noise_replacement_is_uniform_over_the_wrong_classes():
    """Chi-square test of the offset (noisy - clean) mod k, which must be uniform on 1..k-1."""
    y = labels(n=200_000, k=5, seed=2)
    noisy, idx = add_label_noise(y, 0.5, 5, seed=3)
    offsets = (noisy[idx] - y[idx]) % 5
    counts = torch.bincount(offsets, minlength=5)
    assert counts[0] == 0
    assert stats.chisquare(counts[1:].numpy()).pvalue > 1e-3


def test_label_noise_bad_input():
    with pytest.raises(ConfigError, match="1.5"):
        add_label_noise(labels(), 1.5, 10, 0)
    with pytest.raises(ConfigError, match="num_classes must be an integer >= 2, got 1"):
        add_label_noise(labels(k=1), 0.1, 1, 0)
    with pytest.raises(ConfigError, match=r"labels must lie in \[0, 5\)"):
        add_label_noise(labels(k=10), 0.1, 5, 0)


def test_stratified_subset_matches_proportional_counts():
    y = torch.cat([torch.full((600,), 0), torch.full((300,), 1), torch.full((100,), 2)])
    idx = stratified_subset(y, 100, seed=0)
    assert len(idx) == 100 and len(set(idx.tolist())) == 100
    assert torch.bincount(y[idx]).tolist() == [60, 30, 10]
    # largest-remainder rounding: 7 * (0.6, 0.3, 0.1) = (4.2, 2.1, 0.7) -> (4, 2, 1)
    assert torch.bincount(y[stratified_subset(y, 7, seed=0)], minlength=3).tolist() == [4, 2, 1]
    assert torch.equal(idx, stratified_subset(y, 100, seed=0))
    with pytest.raises(ConfigError, match="n=2000 exceeds the 1000"):
        stratified_subset(y, 2000, seed=0)


def test_standardize_uses_training_statistics_only():
    gen = torch.Generator().manual_seed(0)
    x_train = 3 + 2 * torch.randn(500, 4, generator=gen, dtype=torch.float64)
    x_test = 5 + torch.randn(100, 4, generator=gen, dtype=torch.float64)
    a, b, st = standardize(x_train, x_test)
    assert a.mean().item() == pytest.approx(0, abs=1e-12) and a.std().item() == pytest.approx(1)
    torch.testing.assert_close(b, (x_test - x_train.mean()) / x_train.std())
    a, b, _ = standardize(x_train, x_test, per_feature=True)
    torch.testing.assert_close(a.mean(0), torch.zeros(4, dtype=torch.float64), atol=1e-12, rtol=0)
    assert flatten(torch.zeros(3, 1, 4, 5)).shape == (3, 20)


def test_random_fourier_features_approximate_the_gaussian_kernel():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    bandwidth = 1.5
    exact = torch.exp(-torch.cdist(x, x) ** 2 / (2 * bandwidth**2))
    errors = []
    for n in (200, 20000):
        phi = random_fourier_features(x, n, bandwidth, seed=1)
        errors.append((phi @ phi.T - exact).abs().max().item())
    assert errors[1] < 0.03 and errors[1] < errors[0]
    # Monte Carlo rate: error shrinks like 1/sqrt(N); 100x more features -> ~10x smaller
    assert errors[1] < errors[0] / 3
    # k(x, x) = 1: the squared feature norm concentrates at 1
    norms = (random_fourier_features(x, 20000, bandwidth, seed=2) ** 2).sum(1)
    assert (norms - 1).abs().max().item() < 0.03
