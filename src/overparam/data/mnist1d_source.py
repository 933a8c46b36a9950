"""MNIST-1D (Greydanus & Kobak 2020), generated locally by the ``mnist1d`` package.

Generation is deterministic given ``generation_seed`` (the package's own default is 42, which
gives the dataset in the MNIST-1D paper) and needs no network. The package seeds numpy's and
Python's global RNGs; we restore both so loading has no side effects on the caller.
Generation takes about a second, so each (size, split, seed, shuffle) is made once per process
and kept in memory; callers get copies.
"""

from __future__ import annotations

import functools
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
    check_positive_int("num_samples", num_samples, minimum=20)
    if not (isinstance(train_split, float) and 0.0 < train_split < 1.0):
        raise ConfigError(f"train_split must be a float in (0, 1), got {train_split!r}")
    # copies: a caller that writes into its dataset must not change the cached one
    x, y, x_test, y_test = (t.clone() for t in _generate(num_samples, train_split, int(generation_seed),
                                                          bool(shuffle_seq)))
    return RawSplit(x, y, x_test, y_test, 10,
                    extras={"source": f"mnist1d package, generation_seed={generation_seed}"})


@functools.lru_cache(maxsize=8)
def _generate(num_samples: int, train_split: float, generation_seed: int,
              shuffle_seq: bool) -> tuple[torch.Tensor, ...]:
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    args = get_dataset_args(as_dict=True)
    args.update(num_samples=num_samples, train_split=train_split, seed=generation_seed, shuffle_seq=shuffle_seq)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(args))
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return tuple(torch.from_numpy(np.asarray(data[k], dtype=np.float64 if k.startswith("x") else np.int64))
                 for k in ("x", "y", "x_test", "y_test"))
