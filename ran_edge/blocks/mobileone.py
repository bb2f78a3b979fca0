"""MobileOne block (Vasu et al., 2023): over-parameterized branches, one conv deployed.

Train form: `num_branches` parallel kxk ConvBN branches, a 1x1 ConvBN "scale" branch (for
k > 1) and a BN skip when shapes match, summed, then the activation. MobileOne stacks a
depthwise block (`MobileOneBlock.depthwise`) and a pointwise one (`.pointwise`).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ran_edge.blocks.conv_bn import ConvBN
from ran_edge.reparam.branches import merge_parallel


class MobileOneBlock(nn.Module):
    """act(sum of k kxk ConvBN branches + 1x1 ConvBN scale branch [+ BN(x)])."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        num_branches: int = 4,
        act: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if num_branches < 1:
            raise ValueError(f"num_branches must be >= 1, got {num_branches}")
        self.branches = nn.ModuleList(
            ConvBN(in_channels, out_channels, kernel_size, stride, groups=groups)
            for _ in range(num_branches)
        )
        self.scale = (
            ConvBN(in_channels, out_channels, 1, stride, padding=0, groups=groups)
            if kernel_size > 1
            else None
        )
        has_skip = in_channels == out_channels and stride == 1
        self.skip = nn.BatchNorm2d(in_channels) if has_skip else None
        self.act = act()

    @classmethod
    def depthwise(
        cls,
        channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        num_branches: int = 4,
        act: Callable[[], nn.Module] = nn.ReLU,
    ) -> MobileOneBlock:
        return cls(channels, channels, kernel_size, stride, channels, num_branches, act)

    @classmethod
    def pointwise(
        cls,
        in_channels: int,
        out_channels: int,
        num_branches: int = 4,
        act: Callable[[], nn.Module] = nn.ReLU,
    ) -> MobileOneBlock:
        return cls(in_channels, out_channels, 1, 1, 1, num_branches, act)

    def forward(self, x: Tensor) -> Tensor:
        out = sum(branch(x) for branch in self.all_branches())
        return self.act(out)

    def all_branches(self) -> list[nn.Module]:
        extra = [b for b in (self.scale, self.skip) if b is not None]
        return [*self.branches, *extra]

    def to_deploy(self) -> nn.Module:
        conv = merge_parallel(self.all_branches())
        return conv if isinstance(self.act, nn.Identity) else nn.Sequential(conv, self.act)
