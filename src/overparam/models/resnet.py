"""Pre-activation ResNet18 (He et al. 2016) with stage widths [k, 2k, 4k, 8k].

The layout of kuangliu/pytorch-cifar's PreActResNet18, which Deep Double Descent scales by
its width k (k=64 is the standard network): a 3x3 stem conv, four stages of two pre-activation
basic blocks (BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus an identity shortcut, or a 1x1 conv of the
first BN-ReLU output where the shape changes), stride 2 in the first block of stages 2-4,
global average pooling and a linear readout. Convolutions have no biases. Like the reference
code (and unlike He et al.'s ImageNet model) there is no final BN-ReLU before pooling.

Parameters, with C input channels and n classes: 2724 k^2 + (9 C + 106) k + (8 k + 1) n,
so 11,171,146 for k=64, C=3, n=10.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from overparam.models.common import check_size, reset_torch_default


class PreActBlock(nn.Module):
    """(n, in_planes, H, W) -> (n, planes, ceil(H / stride), ceil(W / stride))."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Input (n, C, H, W) -> logits (n, num_classes); any H, W (28x28 and 32x32 both end in a
    4x4 map before the global average pool)."""

    def __init__(self, in_channels: int, num_classes: int, k: int = 64) -> None:
        super().__init__()
        check_size("in_channels", in_channels)
        check_size("num_classes", num_classes)
        check_size("k", k)
        self.stem = nn.Conv2d(in_channels, k, 3, stride=1, padding=1, bias=False)
        blocks, in_planes = [], k
        for stage, planes in enumerate([k, 2 * k, 4 * k, 8 * k]):
            for block in range(2):
                blocks.append(PreActBlock(in_planes, planes, stride=2 if stage > 0 and block == 0 else 1))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(8 * k, num_classes)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw all weights (PyTorch's default init) from ``generator``."""
        reset_torch_default(self, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.pool(self.blocks(self.stem(x))).flatten(1))
