"""A small plain CNN for scikit-learn's 8x8 digits upsampled to 16x16: three 3x3 conv + BN
+ ReLU layers (one with stride 2, one with a same-shape skip-free identity case), trained
in seconds, so the RepNAS tests search on real labelled data."""

import torch
from torch import nn

INPUT_SHAPE = (1, 1, 16, 16)


def _conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class DigitsCNN16(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(1, width, 1),
            _conv_bn_relu(width, 2 * width, 2),
            _conv_bn_relu(2 * width, 2 * width, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(2 * width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def make_net() -> DigitsCNN16:
    return DigitsCNN16()
