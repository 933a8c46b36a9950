"""MNIST-1D (Greydanus & Kobak 2020), generated locally by the ``mnist1d`` package.

Generation is deterministic given ``generation_seed`` (the package's own default is 42, which
gives the dataset in the MNIST-1D paper) and needs no network. The package seeds numpy's and
Python's global RNGs; we restore both so loading has no side effects on the caller.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from overparam.data.base import RawSplit
from overparam.errors import ConfigError, check_positive_int


def load_mnist1d(*, num_samples: int = 5000, train_split: float = 0.8, generation_seed: int = 42,
                 shuffle_seq: bool = False) -> RawSplit:
    """MNIST-1D: 10 classes of 1-D signals of length 40; default 4000 train / 1000 test.

    ``shuffle_seq`` permutes the 40 positions (the paper's control that removes spatial
    structure). x has shape (n, 40), float; y int64 in [0, 10).
    """
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    check_positive_int("num_samples", num_samples, minimum=20)
    if not (isinstance(train_split, float) and 0.0 < train_split < 1.0):
        raise ConfigError(f"train_split must be a float in (0, 1), got {train_split!r}")
    args = get_dataset_args(as_dict=True)
    args.update(num_samples=num_samples, train_split=train_split, seed=int(generation_seed),
                shuffle_seq=bool(shuffle_seq))
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return RawSplit(
        torch.from_numpy(np.asarray(data["x"], dtype=np.float64)),
        torch.from_numpy(np.asarray(data["y"], dtype=np.int64)),
        torch.from_numpy(np.asarray(data["x_test"], dtype=np.float64)),
        torch.from_numpy(np.asarray(data["y_test"], dtype=np.int64)),
        10,
        extras={"source": f"mnist1d package, generation_seed={generation_seed}"},
    )
