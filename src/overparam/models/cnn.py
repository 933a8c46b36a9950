"""Width-scalable convolutional networks.

- :class:`CNN5`: the 5-layer CNN family of Nakkiran et al. 2019 ("Deep Double Descent"): four
  conv3x3-BatchNorm-ReLU layers of widths [k, 2k, 4k, 8k], max-pooling by 2 after layers 2-4,
  a global max-pool and a linear readout. k=64 on CIFAR-10 has 1,558,026 parameters.
- :class:`CNN1D`: the MNIST-1D paper's ConvBase (Greydanus & Kobak 2020): three strided 1-D
  convs of ``channels`` filters and a linear readout.

Both initialise like PyTorch's layers (from the global RNG at construction);
``reset_parameters(generator)`` re-draws them from a seeded generator.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from overparam.errors import ModelError
from overparam.models.common import check_size, reset_torch_default


class CNN5(nn.Module):
    """Input (n, C, H, W) with H, W >= 8 -> logits (n, num_classes).

    conv3x3(C -> k)-BN-ReLU, conv3x3(k -> 2k)-BN-ReLU-MaxPool2, conv3x3(2k -> 4k)-BN-ReLU-MaxPool2,
    conv3x3(4k -> 8k)-BN-ReLU-MaxPool2, global max-pool, Linear(8k -> num_classes); convs have
    biases and padding 1. Parameters: 378 k^2 + (9 C + 45) k + (8 k + 1) num_classes.

    The original ends with MaxPool2d(4) on the 4x4 map of a 32x32 input; a global max-pool is
    the same there and also takes 28x28 inputs (a 3x3 map).
    """

    def __init__(self, in_channels: int, num_classes: int, k: int = 64) -> None:
        super().__init__()
        check_size("in_channels", in_channels)
        check_size("num_classes", num_classes)
        check_size("k", k)
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate([k, 2 * k, 4 * k, 8 * k]):
            layers += [nn.Conv2d(previous, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            previous = width
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * k, num_classes)]
        self.net = nn.Sequential(*layers)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw all weights (PyTorch's default init) from ``generator``."""
        reset_torch_default(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CNN1D(nn.Module):
    """Input (n, length) or (n, 1, length) -> logits (n, num_classes).

    Conv1d(1, c, 5, stride 2, pad 1)-ReLU, Conv1d(c, c, 3, 2, 1)-ReLU, Conv1d(c, c, 3, 2, 1)-ReLU,
    flatten, Linear(c * L_out, num_classes), where each conv maps a length L to
    floor((L + 2 - kernel) / 2) + 1, so L_out = 5 for length 40 (the paper's linear_in = 125).
    """

    def __init__(self, length: int = 40, num_classes: int = 10, channels: int = 25) -> None:
        super().__init__()
        check_size("length", length)
        check_size("num_classes", num_classes)
        check_size("channels", channels)
        out = length
        for kernel in (5, 3, 3):
            out = (out + 2 - kernel) // 2 + 1
        if out < 1:
            raise ModelError(f"CNN1D needs length >= 3, got length={length}")
        self.length = length
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(channels * out, num_classes),
        )

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw all weights (PyTorch's default init) from ``generator``."""
        reset_torch_default(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.net(x)
