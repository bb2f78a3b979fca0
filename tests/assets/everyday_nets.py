"""Small networks with patterns users write every day, for the NPU gate and `check` tests.

Each factory seeds torch, so a model file gives the same weights on every run.
"""

from __future__ import annotations

import torch
from torch import nn


class UNetFlatten(nn.Module):
    """U-Net-style skip concat after nearest upsampling, then a flatten -> linear head.

    The int8 model holds TRANSPOSE (the flatten's NCHW order) and QUANTIZE (requantizing at
    the concat); Vela 5.2 runs both on the NPU.
    """

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU())
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec = nn.Conv2d(48, 8, 3, padding=1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 16 * 16, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.enc(x)
        b = self.up(self.down(a))
        return self.head(self.dec(torch.cat([a, b], 1)))


class SqrtBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.relu(self.conv(x)) + 1)


class SqrtNet(nn.Module):
    """SQRT has no Ethos-U mapping: Vela leaves it on the CPU, inside module `body.1`."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.ReLU(), SqrtBlock())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))


def make_unet() -> UNetFlatten:
    torch.manual_seed(0)
    return UNetFlatten()


def make_sqrt() -> SqrtNet:
    torch.manual_seed(0)
    return SqrtNet()


def make_nan() -> SqrtNet:
    """A diverged checkpoint: one NaN in one weight."""
    net = make_sqrt()
    with torch.no_grad():
        net.stem.weight[0, 0, 0, 0] = float("nan")
    return net
