"""The containers every loader returns."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class RawSplit:
    """What a source produces before the shared transforms: train/test arrays as tensors.

    ``x_*`` are float tensors of shape (n, *input_shape); ``y_*`` are int64 class labels of
    shape (n,) for classification, or float targets of shape (n,) or (n, k) for regression.
    ``extras`` carries ground truth a study may need (teacher weights, the low-rank matrix,
    the observation operator, ...), as tensors or plain values.
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int | None  # None for regression
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dataset:
    """Train/test tensors ready for training, resident on one device.

    ``noisy_indices`` lists the training indices whose label was replaced by label noise
    (empty when there is none); ``clean_y_train`` keeps the labels before the noise.
    ``info`` records the source, checksums and every transform applied, so a run can state
    exactly what it trained on.
    """

    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int | None
    noisy_indices: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))
    clean_y_train: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return "regression" if self.num_classes is None else "classification"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def to(self, device: torch.device | str) -> "Dataset":
        def move(value):
            return value.to(device) if isinstance(value, Tensor) else value

        return replace(
            self,
            x_train=move(self.x_train),
            y_train=move(self.y_train),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
            noisy_indices=move(self.noisy_indices),
            clean_y_train=move(self.clean_y_train),
            extras={k: move(v) for k, v in self.extras.items()},
        )

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={tuple(self.x_train.shape)}, test={tuple(self.x_test.shape)}, "
            f"num_classes={self.num_classes}, noisy={len(self.noisy_indices)}, device={self.x_train.device})"
        )
