"""Property tests: every ran_edge.shrink transform is exact on the whole map, borders included.

Random shapes (odd and even sizes, so stride-2 borders fall both ways), strides 1 and 2,
groups 1 / in-between / depthwise, kernels 3, 5, 7, random biases and random BatchNorm
statistics. Exact means: max |train - deploy| <= 1e-5 * max |train| in float32, on the
border ring too, and the same top class behind a global pool + linear head.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from ran_edge.blocks import InvertedResidual
from ran_edge.blocks.inverted_residual import collapse_inverted_residual
from ran_edge.errors import UsageError
from ran_edge.reparam import (
    ConvChain,
    ConvKernel,
    MergeRefused,
    compose,
    ethos_u_conv_notes,
    fold_bn,
    merge_parallel,
    merge_sequential_convs,
)
from ran_edge.shrink import verify_equivalent

RTOL = 1e-5
# 60 examples per property keeps the file to a few seconds; raise it for a deeper search.
EXAMPLES = int(os.environ.get("RAN_EDGE_PROPERTY_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None)
CHANNELS = (4, 6, 8)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_conv(
    gen: torch.Generator,
    cin: int,
    cout: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int | None = None,
    groups: int = 1,
    bias: bool = True,
) -> nn.Conv2d:
    padding = kernel // 2 if padding is None else padding
    conv = nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=bias)
    fan_in = cin // groups * kernel * kernel
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / fan_in**0.5)
        if bias:
            conv.bias.copy_(torch.randn(cout, generator=gen))
    return conv


def randomize_bn(module: nn.Module, gen: torch.Generator) -> nn.Module:
    """Non-default statistics and affine parameters on every BatchNorm2d in `module`."""
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            with torch.no_grad():
                bn.running_mean.copy_(torch.randn(n, generator=gen))
                bn.running_var.copy_(torch.rand(n, generator=gen) * 2.0 + 0.1)
                bn.weight.copy_(torch.randn(n, generator=gen) * 0.5 + 1.0)
                bn.bias.copy_(torch.randn(n, generator=gen))
    return module.eval()


def random_bn(gen: torch.Generator, channels: int) -> nn.BatchNorm2d:
    return randomize_bn(nn.BatchNorm2d(channels), gen)


class Parallel(nn.Module):
    """Reference train form: the sum of parallel branches."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(branch(x) for branch in self.branches)


def with_head(module: nn.Module, channels: int, gen: torch.Generator) -> nn.Module:
    head = nn.Linear(channels, 10)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=gen))
    return nn.Sequential(module, nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


def assert_exact(train: nn.Module, deploy: nn.Module, shape: tuple[int, ...]) -> None:
    eq = verify_equivalent(train, deploy, shape, seeds=2, rtol=RTOL)
    assert eq.max_rel_err <= RTOL, eq
    assert eq.border_max_rel_err <= RTOL, eq
    assert eq.argmax_equal, eq


def assert_exact_with_head(
    train: nn.Module, deploy: nn.Module, shape: tuple[int, ...], channels: int, seed: int
) -> None:
    assert_exact(train, deploy, shape)
    head = with_head(nn.Identity(), channels, seeded(seed))[1:]
    eq = verify_equivalent(
        nn.Sequential(train, head), nn.Sequential(deploy, head), shape, seeds=2, rtol=RTOL
    )
    assert eq.argmax_equal and eq.max_rel_err <= RTOL, eq


sizes = st.integers(min_value=7, max_value=16)


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    cin=st.sampled_from(CHANNELS),
    out_mult=st.sampled_from((1, 2)),
    kernel=st.sampled_from((1, 3, 5, 7)),
    stride=st.sampled_from((1, 2)),
    pad_choice=st.sampled_from(("same", "none", "full")),
    group_pick=st.integers(0, 10),
    bias=st.booleans(),
    h=sizes,
    w=sizes,
)
def test_fold_bn_is_exact(seed, cin, out_mult, kernel, stride, pad_choice, group_pick, bias, h, w):
    gen = seeded(seed)
    groups = divisors(cin)[group_pick % len(divisors(cin))]
    padding = {"same": kernel // 2, "none": 0, "full": kernel - 1}[pad_choice]
    conv = random_conv(
        gen, cin, cin * out_mult, kernel, stride=stride, padding=padding, groups=groups, bias=bias
    )
    bn = random_bn(gen, cin * out_mult)
    folded = fold_bn(conv, bn)
    assert (folded.stride, folded.padding, folded.groups) == (conv.stride, conv.padding, groups)
    assert_exact(nn.Sequential(conv, bn), folded, (2, cin, h, w))


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    cin=st.sampled_from(CHANNELS),
    kernel=st.sampled_from((3, 5, 7)),
    stride=st.sampled_from((1, 2)),
    group_picks=st.tuples(st.integers(0, 10), st.integers(0, 10), st.integers(0, 10)),
    square_out=st.booleans(),
    extras=st.sets(st.sampled_from(("small_kxk", "identity", "bn", "avgpool", "avgpool_bn"))),
    h=sizes,
    w=sizes,
)
def test_merge_parallel_is_exact(seed, cin, kernel, stride, group_picks, square_out, extras, h, w):
    gen = seeded(seed)
    cout = cin if square_out else 2 * cin
    g_main, g_point, g_small = (divisors(cin)[p % len(divisors(cin))] for p in group_picks)
    branches: list[nn.Module] = [
        nn.Sequential(
            random_conv(gen, cin, cout, kernel, stride=stride, groups=g_main, bias=False),
            random_bn(gen, cout),
        ),
        nn.Sequential(
            random_conv(gen, cin, cout, 1, stride=stride, groups=g_point), random_bn(gen, cout)
        ),
    ]
    if "small_kxk" in extras:
        small = kernel - 2
        branches.append(random_conv(gen, cin, cout, small, stride=stride, groups=g_small))
    if square_out and stride == 1 and "identity" in extras:
        branches.append(nn.Identity())
    if square_out and stride == 1 and "bn" in extras:
        branches.append(random_bn(gen, cin))
    if square_out and "avgpool" in extras:
        branches.append(nn.AvgPool2d(kernel, stride, kernel // 2))
    if square_out and "avgpool_bn" in extras:
        branches.append(nn.Sequential(nn.AvgPool2d(3, stride, 1), random_bn(gen, cin)))
    merged = merge_parallel(branches)
    assert merged.kernel_size == (kernel, kernel) and merged.stride == (stride, stride)
    assert merged.groups == _gcd_of_groups(branches, cin)
    assert_exact_with_head(Parallel(branches), merged, (2, cin, h, w), cout, seed)


def _gcd_of_groups(branches: list[nn.Module], channels: int) -> int:
    groups = [
        m.groups if isinstance(m, nn.Conv2d) else channels
        for b in branches
        for m in (b[0] if isinstance(b, nn.Sequential) else b,)
    ]
    return math.gcd(*groups)


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    cin=st.sampled_from(CHANNELS),
    cout=st.sampled_from(CHANNELS),
    expand=st.sampled_from((2, 3, 6)),
    kernel=st.sampled_from((3, 5, 7)),
    dw_stride=st.sampled_from((1, 2)),
    pw_stride=st.sampled_from((1, 2)),
    h=sizes,
    w=sizes,
)
def test_pw_dw_pw_chain_with_bias_aware_padding_is_exact(
    seed, cin, cout, expand, kernel, dw_stride, pw_stride, h, w
):
    gen = seeded(seed)
    hidden = cin * expand
    convs = [
        random_conv(gen, cin, hidden, 1, stride=pw_stride),
        random_conv(gen, hidden, hidden, kernel, stride=dw_stride, groups=hidden),
        random_conv(gen, hidden, cout, 1),
    ]
    chain = ConvChain(convs, border="bias")
    merged = chain.to_deploy()
    size = 1 + (kernel - 1) * pw_stride
    assert merged.kernel_size == (size, size)
    assert merged.stride == (pw_stride * dw_stride,) * 2
    assert merged.padding == ((kernel // 2) * pw_stride,) * 2
    assert merged.groups == 1
    assert_exact_with_head(chain, merged, (2, cin, h, w), cout, seed)


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    channels=st.tuples(st.sampled_from(CHANNELS), st.sampled_from(CHANNELS)),
    kernels=st.tuples(st.sampled_from((1, 3, 5, 7)), st.sampled_from((1, 3, 5))),
    strides=st.tuples(st.sampled_from((1, 2)), st.sampled_from((1, 2))),
    first_padding=st.integers(0, 6),
    group_picks=st.tuples(st.integers(0, 10), st.integers(0, 10)),
    third=st.booleans(),
    h=st.integers(9, 18),
    w=st.integers(9, 18),
)
def test_chain_padded_only_at_the_input_is_exact(
    seed, channels, kernels, strides, first_padding, group_picks, third, h, w
):
    """kxk -> kxk (-> 1x1) with padding on the first conv only: exact for any bias."""
    gen = seeded(seed)
    cin, cmid = channels
    (k1, k2), (s1, s2) = kernels, strides
    common = [d for d in divisors(cin) if cmid % d == 0]
    g1 = common[group_picks[0] % len(common)]
    g2 = divisors(cmid)[group_picks[1] % len(divisors(cmid))]
    p1 = min(first_padding, k1 - 1 + 2)
    convs = [
        random_conv(gen, cin, cmid, k1, stride=s1, padding=p1, groups=g1),
        random_conv(gen, cmid, cmid, k2, stride=s2, padding=0, groups=g2),
    ]
    if third:
        convs.append(random_conv(gen, cmid, cin, 1, padding=0))
    chain = ConvChain(convs, border="zeros")
    assume(min(h, w) + 2 * p1 - k1 >= (k2 - 1) * s1)  # the second conv still has an output
    merged = chain.to_deploy()
    assert merged.kernel_size == (k1 + (k2 - 1) * s1,) * 2
    assert merged.stride == (s1 * s2,) * 2 and merged.padding == (p1, p1)
    assert_exact(chain, merged, (2, cin, h, w))


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    cin=st.sampled_from(CHANNELS),
    k1=st.sampled_from((1, 3, 5)),
    k2=st.sampled_from((3, 5, 7)),
    strides=st.tuples(st.sampled_from((1, 2)), st.sampled_from((1, 2))),
    border=st.sampled_from(("zeros", "bias")),
    h=sizes,
    w=sizes,
)
def test_fully_padded_first_conv_merges_with_a_padded_second(
    seed, cin, k1, k2, strides, border, h, w
):
    """p1 >= k1 - 1 puts the ring's receptive field in the input padding: exact under "bias",
    and under "zeros" when the bias is zero."""
    gen = seeded(seed)
    s1, s2 = strides
    convs = [
        random_conv(gen, cin, cin, k1, stride=s1, padding=k1 - 1, bias=border == "bias"),
        random_conv(gen, cin, cin, k2, stride=s2, groups=cin),
    ]
    chain = ConvChain(convs, border=border)
    assert_exact(chain, chain.to_deploy(), (2, cin, h, w))


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    cin=st.sampled_from(CHANNELS),
    cout=st.sampled_from(CHANNELS),
    stride=st.sampled_from((1, 2)),
    kernel=st.sampled_from((3, 5, 7)),
    expand=st.sampled_from((1, 2, 4)),
    trainable=st.booleans(),
    h=sizes,
    w=sizes,
)
def test_collapse_inverted_residual_is_exact(
    seed, cin, cout, stride, kernel, expand, trainable, h, w
):
    torch.manual_seed(seed)
    block = InvertedResidual(cin, cout, stride, expand, kernel, border="bias")
    block.expand_act, block.dw_act = nn.Identity(), nn.Identity()
    randomize_bn(block, seeded(seed))
    collapsed = collapse_inverted_residual(block, trainable=trainable)
    conv = collapsed if isinstance(collapsed, nn.Conv2d) else collapsed.to_deploy()
    assert isinstance(conv, nn.Conv2d)
    assert conv.kernel_size == (kernel, kernel) and conv.stride == (stride, stride)
    assert_exact_with_head(block, collapsed, (2, cin, h, w), cout, seed)


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    cin=st.sampled_from(CHANNELS),
    kernel=st.sampled_from((3, 5, 7)),
    stride=st.sampled_from((1, 2)),
    h=sizes,
    w=sizes,
)
def test_refused_merges_really_are_inexact_at_the_border(seed, cin, kernel, stride, h, w):
    """Zero padding after a biased 1x1 conv: interior merges fine, the border does not, and
    merge_sequential_convs refuses rather than return the wrong conv."""
    gen = seeded(seed)
    convs = [
        random_conv(gen, cin, 2 * cin, 1),
        random_conv(gen, 2 * cin, 2 * cin, kernel, stride=stride, groups=2 * cin),
    ]
    with pytest.raises(MergeRefused, match="border='bias'"):
        merge_sequential_convs(convs, border="zeros")
    naive = merge_sequential_convs(convs, border="bias")
    eq = verify_equivalent(ConvChain(convs, border="zeros"), naive, (2, cin, h, w), seeds=1)
    assert eq.interior_max_err <= 1e-4 * eq.max_abs_err
    assert eq.border_max_err > 1e-3 and not eq.equivalent


def test_spatial_first_conv_with_padded_second_is_refused():
    gen = seeded(0)
    convs = [random_conv(gen, 4, 4, 3), random_conv(gen, 4, 4, 3)]
    for border in ("zeros", "bias"):
        with pytest.raises(MergeRefused, match="Pad once at the input") as refused:
            merge_sequential_convs(convs, border=border)
        assert "padding 2" in refused.value.reason
    assert isinstance(refused.value, UsageError)


def test_avgpool_branches_that_no_kernel_matches_are_refused():
    conv = random_conv(seeded(0), 4, 4, 3)
    with pytest.raises(MergeRefused, match="count_include_pad"):
        merge_parallel([conv, nn.AvgPool2d(3, 1, 1, count_include_pad=False)])
    with pytest.raises(MergeRefused, match="ceil_mode"):
        merge_parallel([conv, nn.AvgPool2d(3, 1, 1, ceil_mode=True)])
    exact = merge_parallel([conv, nn.AvgPool2d(3, 1, 1, divisor_override=5)])
    train = Parallel([conv, nn.AvgPool2d(3, 1, 1, divisor_override=5)])
    assert_exact(train, exact, (2, 4, 9, 8))


def test_misaligned_or_mismatched_branches_are_refused():
    gen = seeded(0)
    conv = random_conv(gen, 4, 4, 3)
    with pytest.raises(MergeRefused, match="centred differently"):
        merge_parallel([conv, random_conv(gen, 4, 4, 3, padding=0)])
    with pytest.raises(MergeRefused, match="stride"):
        merge_parallel([conv, random_conv(gen, 4, 4, 1, stride=2)])
    with pytest.raises(MergeRefused, match="channels"):
        merge_parallel([random_conv(gen, 4, 8, 3), nn.Identity()])
    with pytest.raises(MergeRefused, match="dilation"):
        merge_parallel([conv, nn.Conv2d(4, 4, 3, padding=2, dilation=2)])


def test_composed_geometry_and_ethos_u_notes():
    gen = seeded(0)
    first = ConvKernel.from_conv(random_conv(gen, 4, 4, 3, stride=2, padding=1))
    second = ConvKernel.from_conv(random_conv(gen, 4, 4, 3, stride=2, padding=0))
    merged = compose(first, second)
    assert merged.kernel_size == (7, 7) and merged.stride == (4, 4) and merged.padding == (1, 1)
    notes = ethos_u_conv_notes(merged.to_conv(like=torch.zeros(())))
    assert any("stride 4x4" in note for note in notes)
    assert ethos_u_conv_notes(random_conv(gen, 4, 4, 3, stride=2)) == []


def test_merge_works_in_float64_and_returns_the_input_dtype():
    gen = seeded(1)
    convs = [random_conv(gen, 4, 8, 1), random_conv(gen, 8, 8, 5, groups=8)]
    assert merge_sequential_convs(convs, border="bias").weight.dtype == torch.float32
    convs64 = [c.double() for c in convs]
    merged = merge_sequential_convs(convs64, border="bias")
    assert merged.weight.dtype == torch.float64
    eq = verify_equivalent(ConvChain(convs64, border="bias"), merged, (1, 4, 9, 9))
    assert eq.max_rel_err < 1e-12
