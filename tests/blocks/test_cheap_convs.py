"""The dense-conv stand-ins start at the closest fit to the conv they replace: exact where the
conv's weights have the stand-in's structure (borders included, float64), and as close as
the truncated SVD allows where they do not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ran_edge.blocks.cheap_convs import GhostConv, LowRankConv, SeparableConv, grouped_from_dense


def _dense(cin: int, cout: int, k: int, stride: int, weight: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, stride, k // 2).double()
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(torch.randn(cout, dtype=torch.float64))
    return conv


def _same(a: nn.Module, b: nn.Module, cin: int, size: int = 11) -> float:
    x = torch.randn(3, cin, size, size, dtype=torch.float64)
    with torch.no_grad():
        return float((a(x) - b(x)).abs().max())


@pytest.mark.parametrize(("k", "stride"), [(3, 1), (3, 2), (5, 2)])
def test_separable_is_exact_on_a_separable_conv(k, stride):
    torch.manual_seed(0)
    cin, cout = 6, 10
    depthwise = torch.randn(cin, k, k, dtype=torch.float64)
    pointwise = torch.randn(cout, cin, dtype=torch.float64)
    dense = _dense(cin, cout, k, stride, pointwise[:, :, None, None] * depthwise[None])
    fit = SeparableConv(cin, cout, k, stride).double().from_dense(dense)
    assert _same(dense, fit, cin) < 1e-10


@pytest.mark.parametrize(("k", "stride"), [(3, 1), (3, 2), (5, 1)])
def test_low_rank_is_exact_at_full_rank_and_an_svd_truncation_below(k, stride):
    torch.manual_seed(1)
    cin, cout = 4, 6
    dense = _dense(cin, cout, k, stride, torch.randn(cout, cin, k, k, dtype=torch.float64))
    full = LowRankConv(cin, cout, k, stride, rank=cin * k).double().from_dense(dense)
    assert _same(dense, full, cin) < 1e-10
    rank = 3
    low = LowRankConv(cin, cout, k, stride, rank=rank).double().from_dense(dense)
    composed = torch.einsum(
        "rih,orw->oihw", low.vertical.weight[..., 0], low.horizontal.weight[:, :, 0]
    )
    matrix = dense.weight.permute(1, 2, 0, 3).reshape(cin * k, cout * k)
    discarded = torch.linalg.svdvals(matrix)[rank:]
    error = torch.linalg.norm((composed - dense.weight).detach())
    assert float(error) == pytest.approx(float(torch.linalg.norm(discarded)), rel=1e-9)


def test_grouped_keeps_the_block_diagonal_part_exactly():
    torch.manual_seed(2)
    cin, cout, groups = 8, 12, 4
    weight = torch.zeros(cout, cin, 3, 3, dtype=torch.float64)
    for g in range(groups):
        weight[g * 3 : (g + 1) * 3, g * 2 : (g + 1) * 2] = torch.randn(3, 2, 3, 3)
    dense = _dense(cin, cout, 3, 2, weight)
    grouped = nn.Conv2d(cin, cout, 3, 2, 1, groups=groups).double()
    grouped_from_dense(grouped, dense)
    assert _same(dense, grouped, cin) < 1e-10


@pytest.mark.parametrize(("stride", "cout"), [(1, 8), (2, 8), (1, 7)])
def test_ghost_is_exact_inside_on_a_conv_with_ghost_structure(stride, cout):
    """A dense conv whose second half is a 3x3 depthwise of its first half: the fit finds
    it (away from the output's edge, where the cheap 3x3 pads the primary output with
    zeros while the dense conv sees the input's padding)."""
    torch.manual_seed(3)
    cin, k = 5, 3
    truth = GhostConv(cin, cout, k, stride).double()
    x = torch.randn(2, cin, 13, 13, dtype=torch.float64)
    # the dense equivalent of `truth`, built by composing its filters on the input grid
    primary = truth.primary.weight.detach()
    m = primary.shape[0]
    size = k + 2 * stride
    weight = torch.zeros(cout, cin, size, size, dtype=torch.float64)
    weight[:m, :, stride : stride + k, stride : stride + k] = primary
    for j in range(cout - m):
        for dy in range(3):
            for dx in range(3):
                tap = truth.cheap.weight[j, 0, dy, dx].detach()
                weight[m + j, :, dy * stride : dy * stride + k, dx * stride : dx * stride + k] += (
                    tap * primary[j]
                )
    wide = nn.Conv2d(cin, cout, size, stride, size // 2).double()
    with torch.no_grad():
        wide.weight.copy_(weight)
        # a constant primary output b gives the cheap half sum(taps) * b + its own bias
        bias = truth.primary.bias.detach()
        taps = truth.cheap.weight.detach().sum((1, 2, 3))[: cout - m]
        wide.bias.copy_(torch.cat([bias, taps * bias[: cout - m] + truth.cheap.bias[: cout - m]]))
    # the composed filter is (k + 2 stride) wide: fit a ghost conv of that kernel to it
    fit = GhostConv(cin, cout, size, stride).double().from_dense(wide)
    with torch.no_grad():
        got, want = fit(x), wide(x)
    edge = 1  # the cheap 3x3 reads one pixel past the primary output's edge
    assert float((got[..., :m, :, :] - want[..., :m, :, :]).abs().max()) < 1e-10
    inner = (slice(None), slice(m, None), slice(edge, -edge), slice(edge, -edge))
    assert float((got[inner] - want[inner]).abs().max()) < 1e-6


@pytest.mark.parametrize("make", [
    lambda: SeparableConv(8, 12, 3, 2),
    lambda: LowRankConv(8, 12, 3, 2, rank=6),
    lambda: GhostConv(8, 12, 3, 2),
])  # fmt: skip
def test_a_conv_without_bias_gives_stand_ins_with_zero_bias(make):
    dense = nn.Conv2d(8, 12, 3, 2, 1, bias=False)
    fit = make().from_dense(dense)
    zeros = torch.zeros(1, 8, 9, 9)
    with torch.no_grad():
        assert float(fit(zeros).abs().max()) == 0.0


def test_a_convbn_with_a_stand_in_deploys_and_knows_its_zero_response():
    from ran_edge.blocks import ConvBN

    torch.manual_seed(4)
    unit = ConvBN(8, 12, 3, 1, bias=True)
    with torch.no_grad():
        unit.bn.running_mean.uniform_(-1, 1)
        unit.bn.running_var.uniform_(0.5, 2)
    unit.eval()
    want = unit.zero_response()
    unit.conv = GhostConv(8, 12, 3, 1).from_dense(unit.conv)
    deploy = unit.to_deploy()
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        assert torch.allclose(deploy(x), unit(x), atol=1e-6)
    # the ghost's primary half is the conv's own, exactly; the cheap half is its fit
    got = unit.zero_response()
    assert torch.allclose(got[:6], want[:6], atol=1e-6)
    assert got.shape == want.shape
