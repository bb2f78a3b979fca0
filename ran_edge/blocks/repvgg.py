"""RepVGG block (Ding et al., 2021): kxk + 1x1 + identity-BN branches, one kxk conv deployed."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ran_edge.blocks.conv_bn import ConvBN
from ran_edge.reparam.branches import merge_parallel


class RepVGGBlock(nn.Module):
    """act(kxk ConvBN(x) + 1x1 ConvBN(x) [+ BN(x)]); the BN skip exists when shapes match.

    The extra branches only help optimisation: the deploy form is one kxk conv + act.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        act: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        self.dense = ConvBN(in_channels, out_channels, kernel_size, stride, groups=groups)
        self.pointwise = ConvBN(in_channels, out_channels, 1, stride, padding=0, groups=groups)
        has_skip = in_channels == out_channels and stride == 1
        self.skip = nn.BatchNorm2d(in_channels) if has_skip else None
        self.act = act()

    def forward(self, x: Tensor) -> Tensor:
        out = self.dense(x) + self.pointwise(x)
        if self.skip is not None:
            out = out + self.skip(x)
        return self.act(out)

    def branches(self) -> list[nn.Module]:
        return [b for b in (self.dense, self.pointwise, self.skip) if b is not None]

    def to_deploy(self) -> nn.Module:
        conv = merge_parallel(self.branches())
        return conv if isinstance(self.act, nn.Identity) else nn.Sequential(conv, self.act)
