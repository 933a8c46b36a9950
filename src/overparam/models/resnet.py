"""Pre-activation ResNet18 (He et al. 2016) with stage widths [k, 2k, 4k, 8k].

The layout of kuangliu/pytorch-cifar's PreActResNet18, used by Deep Double Descent with
width k (k=64 is the standard network): a 3x3 stem conv, four stages of two pre-activation
basic blocks (BN-ReLU-conv3x3, BN-ReLU-conv3x3, identity or 1x1-conv shortcut), stride 2 at
the first block of stages 2-4, global average pooling and a linear readout. Convolutions have
no biases. Like the reference code (and unlike He et al.'s ImageNet model) there is no final
BN-ReLU before pooling; k=64 with 3 input channels and 10 classes has 11,171,146 parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from overparam.errors import ModelError, check_positive_int


class PreActBlock(nn.Module):
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
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    """Input (n, C, H, W) -> logits (n, num_classes). Works on 28x28 and 32x32 inputs."""

    def __init__(self, in_channels: int, num_classes: int, k: int = 64) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("num_classes", num_classes), ("k", k)):
            check_positive_int(name, value, cls=ModelError)
        self.stem = nn.Conv2d(in_channels, k, 3, stride=1, padding=1, bias=False)
        blocks, in_planes = [], k
        for stage, planes in enumerate([k, 2 * k, 4 * k, 8 * k]):
            for block in range(2):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(PreActBlock(in_planes, planes, stride))
                in_planes = planes
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(8 * k, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        out = self.blocks(self.stem(x))
        return self.linear(nn.functional.adaptive_avg_pool2d(out, 1).flatten(1))
