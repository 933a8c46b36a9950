"""Width-scalable convolutional networks.

- ``CNN5``: the 5-layer CNN family of Nakkiran et al. 2019 ("Deep Double Descent"): four
  conv3x3-BatchNorm-ReLU layers of widths [k, 2k, 4k, 8k], max-pooling by 2 after layers 2-4,
  a global max-pool and a linear readout. k=64 on CIFAR-10 has 1,558,026 parameters.
- ``CNN1D``: the MNIST-1D paper's ConvBase (Greydanus & Kobak 2020): three strided 1-D convs
  of ``channels`` filters and a linear readout.
"""

from __future__ import annotations

from torch import Tensor, nn

from overparam.errors import ModelError, check_positive_int


class CNN5(nn.Module):
    """Input (n, C, H, W) with H, W >= 8 -> logits (n, num_classes).

    The original ends with MaxPool2d(4) on the 4x4 map of a 32x32 input; a global max-pool is
    the same there and also takes 28x28 inputs (3x3 map).
    """

    def __init__(self, in_channels: int, num_classes: int, k: int = 64) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("k", k)):
            check_positive_int(name, value, cls=ModelError)
        widths = [k, 2 * k, 4 * k, 8 * k]
        layers: list[nn.Module] = []
        previous = in_channels
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(previous, width, 3, padding=1, bias=True), nn.BatchNorm2d(width), nn.ReLU()]
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            previous = width
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8 * k, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CNN1D(nn.Module):
    """Input (n, length) or (n, 1, length) -> logits (n, num_classes).

    Conv1d(1, c, 5, stride 2, pad 1) - ReLU - Conv1d(c, c, 3, 2, 1) - ReLU - Conv1d(c, c, 3, 2, 1)
    - ReLU - flatten - Linear(c * L_out, num_classes); L_out = 5 for length 40.
    """

    def __init__(self, length: int = 40, num_classes: int = 10, channels: int = 25) -> None:
        super().__init__()
        for name, value in (("length", length), ("num_classes", num_classes), ("channels", channels)):
            check_positive_int(name, value, cls=ModelError)
        out = length
        for kernel in (5, 3, 3):
            out = (out + 2 - kernel) // 2 + 1
        if out < 1:
            raise ModelError(f"length={length} is too short for CNN1D (needs >= 4)")
        self.length = length
        self.net = nn.Sequential(
            nn.Conv1d(1, channels, 5, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv1d(channels, channels, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(channels * out, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return self.net(x)
