"""A tiny CNN for scikit-learn's 8x8 digits upsampled to 32x32: trained in seconds, so the
suite measures int8 fidelity on a model that has learned something."""

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 32, 32)


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(),
    )


class DigitsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _conv_bn(1, 16, 3, 2)
        self.block = nn.Sequential(_conv_bn(16, 16, 3, 1, groups=16), _conv_bn(16, 32, 1, 1))
        self.down = _conv_bn(32, 32, 3, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(self.block(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def make_net() -> DigitsNet:
    return DigitsNet()
