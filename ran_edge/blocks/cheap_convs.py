"""Cheaper stand-ins for one dense kxk convolution, for the CPU operator search.

Each keeps the dense conv's contract (in/out channels, kernel reach, stride, "same"
padding k//2), so it drops into the conv's place with the network around it untouched
(the BatchNorm and activation that followed the conv still follow it). Each computes a
restricted, linear form of what the dense conv computes, and `from_dense` starts it at
the closest such form to the trained conv's weights (a truncated SVD, the block-diagonal
part, a least-squares fit), so distillation (`advise --apply`) recovers from a near
miss, not from random weights.

- `SeparableConv`: depthwise kxk then pointwise 1x1 (MobileNet's factorisation).
- grouped: a plain `nn.Conv2d` with groups (`grouped_from_dense` sets it).
- `LowRankConv`: kx1 to `rank` channels, then 1xk (spatially separable, low rank).
- `GhostConv`: a dense kxk conv to half the channels, a cheap depthwise 3x3 makes the
  other half from them (GhostNet's "cheap features").
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def _bias_of(dense: nn.Conv2d, channels: slice | None = None) -> Tensor | None:
    if dense.bias is None:
        return None
    return dense.bias.detach() if channels is None else dense.bias.detach()[channels]


class SeparableConv(nn.Module):
    """Depthwise kxk (stride s) -> pointwise 1x1 to `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, kernel_size, stride, pad, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))

    @torch.no_grad()
    def from_dense(self, dense: nn.Conv2d) -> SeparableConv:
        """Per input channel, the best rank-1 fit of its (out x kxk) slice of the weights:
        the depthwise filter and the pointwise column of the leading singular pair."""
        w = dense.weight.detach()  # out, in, k, k
        cout, cin, k, _ = w.shape
        per_input = w.permute(1, 0, 2, 3).reshape(cin, cout, k * k)
        u, s, vh = torch.linalg.svd(per_input, full_matrices=False)
        scale = s[:, :1].sqrt()  # in, 1
        self.depthwise.weight.copy_((vh[:, 0, :] * scale).reshape(cin, 1, k, k))
        self.pointwise.weight.copy_((u[:, :, 0] * scale).T.reshape(cout, cin, 1, 1))
        bias = _bias_of(dense)
        self.pointwise.bias.copy_(bias if bias is not None else torch.zeros(cout))
        return self


@torch.no_grad()
def grouped_from_dense(conv: nn.Conv2d, dense: nn.Conv2d) -> nn.Conv2d:
    """A grouped conv set to the block-diagonal part of `dense`'s weights: each output
    keeps its taps on the inputs of its own group."""
    w, g = dense.weight.detach(), conv.groups
    per_in, per_out = conv.in_channels // g, conv.out_channels // g
    for group in range(g):
        outs = slice(group * per_out, (group + 1) * per_out)
        conv.weight[outs] = w[outs, group * per_in : (group + 1) * per_in]
    bias = _bias_of(dense)
    conv.bias.copy_(bias if bias is not None else torch.zeros(conv.out_channels))
    return conv


class LowRankConv(nn.Module):
    """kx1 conv to `rank` channels (stride s down the rows) -> 1xk conv to `out_channels`
    (stride s across the columns): same reach and output shape as kxk."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, rank: int
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.vertical = nn.Conv2d(
            in_channels, rank, (kernel_size, 1), (stride, 1), (pad, 0), bias=False
        )
        self.horizontal = nn.Conv2d(rank, out_channels, (1, kernel_size), (1, stride), (0, pad))

    def forward(self, x: Tensor) -> Tensor:
        return self.horizontal(self.vertical(x))

    @torch.no_grad()
    def from_dense(self, dense: nn.Conv2d) -> LowRankConv:
        """The best rank-r fit of the weights seen as an (in x row) by (out x column)
        matrix (Tai et al., 2016): its r leading singular pairs are the two convs."""
        w = dense.weight.detach()  # out, in, kh, kw
        cout, cin, k, _ = w.shape
        rank = self.vertical.out_channels
        matrix = w.permute(1, 2, 0, 3).reshape(cin * k, cout * k)
        u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
        used = min(rank, len(s))  # a rank above the matrix's: the rest stays zero (exact)
        root = s[:used].sqrt()
        vertical = w.new_zeros(rank, cin * k)
        vertical[:used] = (u[:, :used] * root).T
        horizontal = w.new_zeros(cout * k, rank)
        horizontal[:, :used] = vh[:used].T * root
        vertical = vertical.reshape(rank, cin, k, 1)
        horizontal = horizontal.reshape(cout, k, rank).permute(0, 2, 1)
        self.vertical.weight.copy_(vertical)
        self.horizontal.weight.copy_(horizontal.reshape(cout, rank, 1, k))
        bias = _bias_of(dense)
        self.horizontal.bias.copy_(bias if bias is not None else torch.zeros(cout))
        return self


class GhostConv(nn.Module):
    """Dense kxk to ceil(out/2) channels, a depthwise 3x3 on them gives the rest; the two
    are concatenated to `out_channels`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        primary = (out_channels + 1) // 2
        self.cheap_channels = out_channels - primary
        self.primary = nn.Conv2d(in_channels, primary, kernel_size, stride, kernel_size // 2)
        self.cheap = nn.Conv2d(primary, primary, 3, 1, 1, groups=primary)

    def forward(self, x: Tensor) -> Tensor:
        y = self.primary(x)
        cheap = self.cheap(y)
        if cheap.shape[1] != self.cheap_channels:  # odd out_channels: one fewer cheap channel
            cheap = cheap[:, : self.cheap_channels]
        return torch.cat([y, cheap], dim=1)

    @torch.no_grad()
    def from_dense(self, dense: nn.Conv2d) -> GhostConv:
        """The primary half is the dense conv's first outputs, exactly; each cheap 3x3 is the
        least-squares fit, in weight space, of its output's dense filter by that 3x3
        applied to its primary filter (taps `stride` apart in the input)."""
        w = dense.weight.detach()
        m = self.primary.out_channels
        self.primary.weight.copy_(w[:m])
        bias = _bias_of(dense)
        self.primary.bias.copy_(bias[:m] if bias is not None else torch.zeros(m))
        stride = self.primary.stride[0]
        for j in range(self.cheap_channels):
            taps = _shifted_copies(w[j], stride)  # 9, in * canvas
            target = F.pad(w[m + j], (stride,) * 4).reshape(-1)
            fit = torch.linalg.lstsq(taps.T, target[:, None]).solution[:, 0]
            self.cheap.weight[j, 0] = fit.reshape(3, 3)
            # a constant primary output p (bias only) gives sum(fit) * p + cheap bias
            want = bias[m + j] if bias is not None else w.new_zeros(())
            got = fit.sum() * (bias[j] if bias is not None else 0.0)
            self.cheap.bias[j] = want - got
        return self


def _shifted_copies(filt: Tensor, stride: int) -> Tensor:
    """The filter (in x k x k) placed on a (k + 2 stride)^2 canvas at each of the 3x3
    offsets a cheap depthwise tap reads: what that tap adds to the composed filter."""
    cin, k, _ = filt.shape
    size = k + 2 * stride
    copies = []
    for dy in range(3):
        for dx in range(3):
            canvas = filt.new_zeros(cin, size, size)
            canvas[:, dy * stride : dy * stride + k, dx * stride : dx * stride + k] = filt
            copies.append(canvas.reshape(-1))
    return torch.stack(copies)
