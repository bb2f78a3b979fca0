"""Fused-MBConv (EfficientNetV2): dense kxk expand -> act -> 1x1 project [+ x].

The dense kxk conv replaces MBConv's expand 1x1 + depthwise kxk, which suits NPUs: one
big conv keeps the MAC array busy where a depthwise conv would not. With
`expand_ratio=1` the block is a single kxk ConvBN + act. `act` is the attribute `act`,
replaceable; once it is nn.Identity the deploy form is one kxk conv (project has no
padding, so that merge is always exact).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ran_edge.blocks.conv_bn import ConvBN
from ran_edge.blocks.deploy import deploy_sequence


class FusedMBConv(nn.Module):
    """act(kxk ConvBN(x)) -> 1x1 ConvBN, residual when stride 1 and channels match."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 4,
        kernel_size: int = 3,
        act: Callable[[], nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__()
        self.use_residual = stride == 1 and in_channels == out_channels
        if expand_ratio == 1:
            self.fused = ConvBN(in_channels, out_channels, kernel_size, stride)
            self.project: ConvBN | None = None
        else:
            hidden = round(in_channels * expand_ratio)
            self.fused = ConvBN(in_channels, hidden, kernel_size, stride)
            self.project = ConvBN(hidden, out_channels, 1)
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        out = self.act(self.fused(x))
        if self.project is not None:
            out = self.project(out)
        return x + out if self.use_residual else out

    def to_deploy(self) -> nn.Module:
        project = self.project.to_deploy() if self.project is not None else None
        layers = [self.fused.to_deploy(), self.act, project]
        return deploy_sequence(layers, residual=self.use_residual)
