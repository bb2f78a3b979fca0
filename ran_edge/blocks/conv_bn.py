"""ConvBN: the conv + BatchNorm unit every other block is built from."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ran_edge.reparam.fold import fold_bn


class ConvBN(nn.Module):
    """Conv2d then BatchNorm2d; deploy form: one biased Conv2d (BN folded).

    `padding` defaults to (kernel_size - 1) // 2, which keeps every branch of a block
    centred alike so branches can be summed into one kernel.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2 if padding is None else padding
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn(self.conv(x))

    def to_deploy(self) -> nn.Module:
        """One biased Conv2d; a conv replaced by a stand-in (`advise --apply` on a CPU
        target) keeps its BN after it, in eval mode (the converter folds it)."""
        if isinstance(self.conv, nn.Conv2d):
            return fold_bn(self.conv, self.bn)
        return nn.Sequential(self.conv, self.bn).eval()

    def _conv_zero_response(self, like: Tensor) -> Tensor:
        """What the conv outputs on an all-zero receptive field: its bias, or for a
        stand-in (several convs, maybe a concat) its output at the centre of a zero input."""
        if isinstance(self.conv, nn.Conv2d):
            return self.conv.bias if self.conv.bias is not None else like.new_zeros(())
        ref = next(m for m in self.conv.modules() if isinstance(m, nn.Conv2d))
        side = 4 * max(ref.kernel_size) + 1
        with torch.no_grad():
            out = self.conv(like.new_zeros(1, ref.in_channels, side, side))
        return out[0, :, out.shape[2] // 2, out.shape[3] // 2]

    def zero_response(self, conv_out: Tensor | None = None) -> Tensor:
        """Per channel, what this unit outputs where its whole receptive field is zero.

        That is the pad value bias-aware padding needs after this unit. In training mode
        BN normalises with the batch's statistics, so pass this batch's conv output
        (`conv_out`); in eval mode the running statistics are used.
        """
        bn = self.bn
        if bn.training or bn.running_mean is None or bn.running_var is None:
            if conv_out is None:
                raise ValueError("zero_response in training mode needs this batch's conv_out")
            mean = conv_out.mean(dim=(0, 2, 3))
            var = conv_out.var(dim=(0, 2, 3), unbiased=False)
        else:
            mean, var = bn.running_mean, bn.running_var
        pre_bn = self._conv_zero_response(mean)
        value = (pre_bn - mean) * torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            value = value * bn.weight
        return value if bn.bias is None else value + bn.bias
