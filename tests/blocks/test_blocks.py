"""Blocks: each train form (eval mode) equals its deploy form, borders included, and
`to_deploy` turns whole networks into plain convs, activations and adds."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import nn

from ran_edge.blocks import (
    CollapsedBlock,
    ConvBN,
    FusedMBConv,
    InvertedResidual,
    MobileOneBlock,
    Reparameterizable,
    RepVGGBlock,
    Residual,
    to_deploy,
    train_only_modules,
)
from ran_edge.blocks.inverted_residual import collapse_inverted_residual
from ran_edge.models import create_model
from ran_edge.reparam import MergeRefused
from ran_edge.shrink import verify_equivalent

RTOL = 1e-5
DEPLOY_MODULES = (
    nn.Conv2d,
    nn.ReLU,
    nn.ReLU6,
    nn.Hardswish,
    nn.Identity,
    nn.Sequential,
    nn.ZeroPad2d,
    Residual,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Linear,
    nn.Dropout,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


def randomize_bn(module: nn.Module, seed: int = 0, spread: float = 1.0) -> nn.Module:
    """Non-default BN statistics and affine parameters, so folding has something to fold."""
    gen = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            n = bn.num_features
            with torch.no_grad():
                bn.running_mean.copy_(torch.randn(n, generator=gen) * spread)
                bn.running_var.copy_(torch.rand(n, generator=gen) * 2 * spread + 0.2)
                bn.weight.copy_(1 + (torch.rand(n, generator=gen) - 0.5) * spread)
                bn.bias.copy_(torch.randn(n, generator=gen) * spread)
    return module.eval()


def linear(block: InvertedResidual) -> InvertedResidual:
    """What DepthShrinker does to a block it shrinks: both inner activations removed."""
    block.expand_act, block.dw_act = nn.Identity(), nn.Identity()
    return block


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def assert_plain(deploy: nn.Module) -> None:
    assert train_only_modules(deploy) == []
    for name, module in deploy.named_modules():
        if next(module.children(), None) is None:  # leaves: the ops that get exported
            assert isinstance(module, DEPLOY_MODULES), f"{name}: {type(module).__name__}"


def assert_exact(train: nn.Module, deploy: nn.Module, shape: tuple[int, ...]) -> None:
    eq = verify_equivalent(train, deploy, shape, rtol=RTOL)
    assert eq.max_rel_err <= RTOL and eq.border_max_rel_err <= RTOL, eq
    assert eq.argmax_equal, eq


BLOCKS: dict[str, Callable[[], nn.Module]] = {
    "conv_bn": lambda: ConvBN(8, 16, 3, stride=2),
    "conv_bn_grouped_biased": lambda: ConvBN(8, 16, 5, groups=4, bias=True),
    "repvgg": lambda: RepVGGBlock(8, 8),
    "repvgg_stride2_grouped": lambda: RepVGGBlock(8, 16, 3, stride=2, groups=2),
    "repvgg_5x5_linear": lambda: RepVGGBlock(8, 8, 5, act=nn.Identity),
    "mobileone_depthwise": lambda: MobileOneBlock.depthwise(8, 3, num_branches=3),
    "mobileone_depthwise_s2_k5": lambda: MobileOneBlock.depthwise(8, 5, stride=2),
    "mobileone_pointwise": lambda: MobileOneBlock.pointwise(8, 8, num_branches=2),
    "mobileone_pointwise_widen": lambda: MobileOneBlock.pointwise(8, 16),
    "inverted_residual": lambda: InvertedResidual(8, 8),
    "inverted_residual_s2_k5_hswish": lambda: InvertedResidual(
        8, 16, 2, kernel_size=5, act=nn.Hardswish
    ),
    "inverted_residual_no_expand": lambda: InvertedResidual(8, 8, expand_ratio=1),
    "inverted_residual_bias_border": lambda: InvertedResidual(8, 8, border="bias"),
    "inverted_residual_bias_border_half_linear": lambda: _half_linear(),
    "inverted_residual_collapsed": lambda: linear(InvertedResidual(8, 8, border="bias")),
    "inverted_residual_collapsed_s2_k7": lambda: linear(
        InvertedResidual(8, 16, 2, 4, 7, border="bias")
    ),
    "inverted_residual_collapsed_no_expand": lambda: linear(InvertedResidual(8, 8, 1, 1)),
    "fused_mbconv": lambda: FusedMBConv(8, 8),
    "fused_mbconv_s2": lambda: FusedMBConv(8, 16, 2, kernel_size=5),
    "fused_mbconv_no_expand": lambda: FusedMBConv(8, 8, expand_ratio=1),
    "collapsed": lambda: CollapsedBlock(8, 8),
    "collapsed_s2_k5": lambda: CollapsedBlock(8, 16, 5, 2, act=nn.Hardswish),
}


# Merges into a dense conv can hold more weights than the chain they replace: depthwise
# 3x3 (48 ch) -> 1x1 (48 -> 16) becomes a dense 3x3 48 -> 16; without an expand layer the
# block becomes a dense 3x3 8 -> 8; a 7x7 collapse is a dense 7x7 8 -> 16.
MERGE_GROWS = {
    "inverted_residual_bias_border_half_linear",
    "inverted_residual_collapsed_no_expand",
    "inverted_residual_collapsed_s2_k7",
}


def _half_linear() -> InvertedResidual:
    block = InvertedResidual(8, 16, border="bias")
    block.dw_act = nn.Identity()
    return block


@pytest.mark.parametrize("name", sorted(BLOCKS))
@pytest.mark.parametrize("size", [(13, 10), (16, 9)])
def test_deploy_form_equals_train_form(name, size):
    torch.manual_seed(0)
    block = randomize_bn(BLOCKS[name](), seed=1)
    assert isinstance(block, Reparameterizable)
    deploy = block.to_deploy()
    assert_plain(deploy)
    assert_exact(block, deploy, (2, 8, *size))
    if name in MERGE_GROWS:
        assert params(deploy) > params(block)
    else:
        assert params(deploy) < params(block)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (RepVGGBlock(8, 16, 3, groups=2), 16 * 4 * 9 + 16),
        (MobileOneBlock.depthwise(8, 3), 8 * 9 + 8),
        (MobileOneBlock.pointwise(8, 16, num_branches=4), 8 * 16 + 16),
        (linear(InvertedResidual(16, 16, 1, 6, 3, border="bias")), 16 * 16 * 9 + 16),
        (linear(InvertedResidual(16, 24, 2, 6, 5, border="bias")), 16 * 24 * 25 + 24),
        (FusedMBConv(8, 8, 1, 4, 3, act=nn.Identity), 8 * 8 * 9 + 8),
        (CollapsedBlock(8, 8, 3), 8 * 8 * 9 + 8),
    ],
    ids=["repvgg", "mobileone_dw", "mobileone_pw", "ir_k3", "ir_k5", "fused", "collapsed"],
)
def test_deploy_param_counts(block, expected):
    """Deploy forms are exactly one conv: kxk * in/groups * out weights + out biases."""
    deploy = block.eval().to_deploy()
    assert params(deploy) == expected


def test_collapse_can_grow_a_block():
    """A k=5, t=6 collapse is a dense 5x5 conv: more weights than PW+DW+PW (25 > 2t)."""
    block = linear(InvertedResidual(64, 64, 1, 6, 5, border="bias")).eval()
    assert params(block.to_deploy()) > params(block)


class TinyMobileNet(nn.Module):
    """MobileNetV2-like stack built from ran_edge.blocks, some blocks DepthShrinker-shrunk."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, 16, 3, 2), nn.ReLU6())
        self.features = nn.Sequential(
            InvertedResidual(16, 16, expand_ratio=1),
            linear(InvertedResidual(16, 24, 2, border="bias")),
            linear(InvertedResidual(24, 24, border="bias")),
            InvertedResidual(24, 24, border="bias"),
            InvertedResidual(24, 32, 2, kernel_size=5, act=nn.Hardswish),
            RepVGGBlock(32, 32, act=nn.ReLU6),
            MobileOneBlock.depthwise(32, stride=2),
            MobileOneBlock.pointwise(32, 48),
            FusedMBConv(48, 48),
            CollapsedBlock(48, 48),
        )
        self.head = nn.Sequential(nn.Conv2d(48, 64, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU6())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.features(self.stem(x)))
        return self.classifier(torch.flatten(self.pool(x), 1))


def test_to_deploy_network_of_blocks_is_exact():
    torch.manual_seed(0)
    net = randomize_bn(TinyMobileNet(), seed=2, spread=0.5)
    deploy = to_deploy(net)
    assert_plain(deploy)
    assert_exact(net, deploy, (2, 3, 48, 40))
    assert params(deploy) < params(net)
    # The two shrunk inverted residuals are single convs now; the residual one folded in.
    assert isinstance(deploy.features[1], nn.Conv2d) and deploy.features[1].stride == (2, 2)
    assert isinstance(deploy.features[2], nn.Conv2d) and deploy.features[2].kernel_size == (3, 3)
    assert isinstance(deploy.head[1], nn.Identity)  # Sequential conv -> BN folded in place


def test_to_deploy_copies_unless_inplace():
    net = randomize_bn(TinyMobileNet(), seed=3)
    deploy = to_deploy(net)
    assert deploy is not net
    assert train_only_modules(net)  # original untouched
    same = to_deploy(net, inplace=True)
    assert same is net and train_only_modules(net) == []
    block = randomize_bn(RepVGGBlock(4, 4))
    assert isinstance(to_deploy(block, inplace=True), nn.Sequential)


def test_to_deploy_folds_the_zoo_mobilenet_v2():
    """The zoo's MobileNetV2 is plain Sequentials: conv -> BN folding alone deploys it."""
    net = randomize_bn(create_model("mobilenet_v2_035_96", num_classes=10), seed=4, spread=0.3)
    deploy = to_deploy(net)
    assert train_only_modules(deploy) == []
    assert_exact(net, deploy, (1, 3, 96, 96))
    assert deploy.state_dict().keys() >= {"features.0.0.weight", "features.0.0.bias"}


def test_zero_padded_linear_block_is_kept_apart_and_says_why():
    block = randomize_bn(linear(InvertedResidual(8, 8)))
    with pytest.raises(MergeRefused, match="border='bias'"):
        collapse_inverted_residual(block)
    with pytest.warns(UserWarning, match="non-zero bias"):
        deploy = block.to_deploy()
    assert isinstance(deploy, Residual)  # expand conv, then depthwise+project merged
    assert_exact(block, deploy, (2, 8, 11, 12))


def test_collapse_refuses_a_block_with_activations():
    block = randomize_bn(InvertedResidual(8, 8, border="bias"))
    with pytest.raises(MergeRefused, match=r"expand_act is ReLU6, dw_act is ReLU6"):
        collapse_inverted_residual(block)


def test_trainable_collapse_gives_a_collapsed_block():
    block = randomize_bn(linear(InvertedResidual(8, 8, border="bias")))
    collapsed = collapse_inverted_residual(block, trainable=True)
    assert isinstance(collapsed, CollapsedBlock) and collapsed.use_residual
    assert_exact(block, collapsed, (2, 8, 12, 12))
    assert_exact(block, collapsed.to_deploy(), (2, 8, 12, 12))


def test_verify_equivalent_sees_border_only_errors():
    """Merging a zero-padded block as if bias-aware is right inside, wrong at the border."""
    block = randomize_bn(linear(InvertedResidual(8, 8, border="bias")))
    zero_padded = randomize_bn(linear(InvertedResidual(8, 8, border="zeros")))
    zero_padded.load_state_dict(block.state_dict())
    eq = verify_equivalent(zero_padded, collapse_inverted_residual(block), (2, 8, 16, 16))
    assert not eq.equivalent
    assert eq.interior_max_err < 1e-5 < eq.border_max_err


def test_bias_aware_padding_uses_batch_statistics_in_training():
    """In training mode the ring holds what BN really outputs on a zero pre-activation."""
    unit = ConvBN(4, 6, 1).train()
    x = torch.randn(3, 4, 5, 5)
    x[:, :, 0, 0] = 0  # a pixel with an all-zero receptive field
    pre_bn = unit.conv(x)
    out = unit.bn(pre_bn)
    ring = unit.zero_response(pre_bn)
    torch.testing.assert_close(out[:, :, 0, 0], ring.expand(3, 6))


def test_bias_border_block_trains():
    block = linear(InvertedResidual(4, 4, border="bias")).train()
    out = block(torch.randn(2, 4, 9, 9))
    out.square().mean().backward()
    assert block.expand.bn.bias.grad is not None and block.expand.bn.bias.grad.abs().sum() > 0


def test_deploy_sequence_warnings_do_not_fire_for_exact_blocks():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in ("inverted_residual", "inverted_residual_collapsed", "fused_mbconv"):
            randomize_bn(BLOCKS[name]()).to_deploy()
