"""The RAN-e collapsed block: one dense kxk conv, BN, residual when shapes match, activation.

It is what an inverted residual becomes once DepthShrinker has removed its inner
activations and the chain has collapsed (`collapse_inverted_residual(block,
trainable=True)`), kept in a trainable form. The residual is added before the
activation, `act(bn(conv(x)) + x)`, so the deploy form folds it into the conv's centre
tap: one Conv2d (+ act), which Ethos-U runs as a single fused op with no ADD.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ran_edge.blocks.conv_bn import ConvBN
from ran_edge.errors import UsageError
from ran_edge.reparam.branches import as_pair
from ran_edge.reparam.chain import fold_residual


class CollapsedBlock(nn.Module):
    """act(BN(kxk conv(x)) [+ x]); deploy form: one kxk Conv2d [+ act]."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: Callable[[], nn.Module] = nn.ReLU6,
        residual: bool | None = None,
    ) -> None:
        super().__init__()
        shapes_match = stride == 1 and in_channels == out_channels
        self.use_residual = shapes_match if residual is None else residual
        if self.use_residual and not (shapes_match and kernel_size % 2 == 1):
            raise UsageError(
                "a CollapsedBlock residual needs stride 1, in_channels == out_channels and an "
                f"odd kernel (got stride {stride}, {in_channels}->{out_channels}, kernel "
                f"{kernel_size}); pass residual=False or change the shape."
            )
        self.conv_bn = ConvBN(in_channels, out_channels, kernel_size, stride)
        self.act = act()

    @classmethod
    def from_conv(
        cls, conv: nn.Conv2d, *, residual: bool, act: nn.Module | None = None
    ) -> CollapsedBlock:
        """A block whose eval output equals `act(conv(x) [+ x])`: conv weights copied, BN
        set to pass through with the conv's bias as its shift."""
        (kh, kw), stride, padding = as_pair(conv.kernel_size), as_pair(conv.stride), conv.padding
        if kh != kw or len(set(stride)) != 1 or conv.groups != 1:
            raise UsageError(
                f"CollapsedBlock.from_conv needs a square, dense, equal-stride conv; got {conv}"
            )
        if residual and as_pair(padding) != ((kh - 1) // 2, (kw - 1) // 2):
            raise UsageError(
                f"CollapsedBlock.from_conv with residual=True needs 'same' padding; got {conv}"
            )
        block = cls(conv.in_channels, conv.out_channels, kh, stride[0], residual=residual)
        block.act = act if act is not None else nn.Identity()
        block.conv_bn.conv.padding = padding
        weight = block.conv_bn.conv.weight
        bn = block.conv_bn.bn
        with torch.no_grad():
            weight.copy_(conv.weight)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.fill_(float(torch.tensor(1.0 + bn.eps, dtype=torch.float64).sqrt()))
            bias = torch.zeros_like(bn.bias) if conv.bias is None else conv.bias
            bn.bias.copy_(bias)
        return block.to(device=conv.weight.device, dtype=conv.weight.dtype)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_bn(x)
        if self.use_residual:
            out = out + x
        return self.act(out)

    def to_deploy(self) -> nn.Module:
        conv = self.conv_bn.to_deploy()
        if self.use_residual:
            conv = fold_residual(conv)
        return conv if isinstance(self.act, nn.Identity) else nn.Sequential(conv, self.act)
