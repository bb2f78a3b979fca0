"""Property tests: RMNet-style residual removal is exact on the whole map, borders included.

Random channels, sizes (odd and even), kernels, activations, BatchNorm statistics, border
conventions and input ranges. Exact means, in float64: max |block - plain| <= 1e-10 * max
|block| on inputs spanning the range the rewrite was made for (its endpoints on the border
rows, zero where the range holds it). Bounds are also checked to be sound: no sampled
value ever leaves them. Refusals name the reason.
"""

from __future__ import annotations

import copy
import json
import math
import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from ran_edge.blocks import ConvBN, FusedMBConv, InvertedResidual, Residual, to_deploy
from ran_edge.errors import UsageError
from ran_edge.models import load_model
from ran_edge.models.reference_nets import BasicBlock
from ran_edge.reparam import MergeRefused
from ran_edge.reparam.bounds import Interval, module_interval
from ran_edge.reparam.carry import CarryCode, plan_carry
from ran_edge.shrink import verify_equivalent
from ran_edge.shrink.intervals import block_input_bounds
from ran_edge.shrink.rmnet import (
    rebuild_without_residuals,
    remove_residual,
    remove_residuals,
    sample_inside,
)

EXAMPLES = int(os.environ.get("RAN_EDGE_PROPERTY_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None)
CHANNELS = (3, 4, 6, 8)
ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "none": nn.Identity}
INF = math.inf
sizes = st.integers(min_value=5, max_value=13)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread(one_torch_thread):
    """Tiny tensors: run this module on one torch thread (see conftest)."""


def randomize(module: nn.Module, seed: int) -> nn.Module:
    """Random conv weights and BatchNorm statistics / affine parameters, eval mode, float64."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / fan_in**0.5)
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=gen))
                m.running_var.copy_(torch.rand(n, generator=gen) * 2.0 + 0.1)
                m.weight.copy_(torch.randn(n, generator=gen) * 0.5 + 1.0)
                m.bias.copy_(torch.randn(n, generator=gen))
    return module.double().eval()


def random_range(seed: int, channels: int, kind: str) -> Interval | None:
    """Per-channel input bounds: none, non-negative, finite (straddling 0 or not)."""
    if kind == "unbounded":
        return None
    if kind == "nonneg":
        return Interval.of(0.0, INF)
    gen = torch.Generator().manual_seed(seed + 1)
    lo = torch.randn(channels, generator=gen, dtype=torch.float64) * 20.0
    width = torch.rand(channels, generator=gen, dtype=torch.float64) * 60.0 + 1e-3
    return Interval.of(lo, lo + width)


def assert_exact(block: nn.Module, plain: nn.Module, x_range: Interval | None, shape) -> None:
    x = sample_inside(x_range or Interval.unbounded(), shape, seed=shape[2] * 31 + shape[3])
    with torch.no_grad():
        want, got = block(x), plain(x)
    assert want.shape == got.shape
    err = float((want - got).abs().max())
    assert err <= 1e-10 * max(1.0, float(want.abs().max())), err
    assert not any(isinstance(m, Residual) for m in plain.modules())


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    channels=st.sampled_from(CHANNELS),
    kind=st.sampled_from(("unbounded", "nonneg", "finite")),
    h=sizes,
    w=sizes,
)
def test_basic_block_removal_is_exact(seed, channels, kind, h, w):
    block = randomize(BasicBlock(channels, channels, 1), seed)
    x_range = random_range(seed, channels, kind)
    plain = remove_residual(block, input_range=x_range)
    convs = [m for m in plain if isinstance(m, nn.Conv2d)]
    # ReLU carries x >= 0 as itself and an unbounded x as the pair (x, -x)
    widths = {"nonneg": 2 * channels, "unbounded": 3 * channels}
    if kind in widths:
        assert convs[0].out_channels == widths[kind]
    assert [type(m) for m in plain] == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU]
    assert_exact(block, plain, x_range, (2, channels, h, w))


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    channels=st.sampled_from(CHANNELS),
    expand=st.sampled_from((2, 3, 6)),
    kernel=st.sampled_from((3, 5, 7)),
    acts=st.tuples(st.sampled_from(tuple(ACTS)), st.sampled_from(tuple(ACTS))),
    border=st.sampled_from(("zeros", "bias")),
    kind=st.sampled_from(("unbounded", "nonneg", "finite")),
    h=sizes,
    w=sizes,
)
def test_inverted_residual_removal_is_exact(
    seed, channels, expand, kernel, acts, border, kind, h, w
):
    block = InvertedResidual(channels, channels, 1, expand, kernel, border=border)
    block.expand_act, block.dw_act = (ACTS[a]() for a in acts)
    randomize(block, seed)
    x_range = random_range(seed, channels, kind)
    active = {a for a in acts if a != "none"}
    carries = active <= {"relu"} or kind == "finite" or (kind == "nonneg" and "relu6" not in active)
    if not carries:
        # A bounded activation (ReLU6) or Hardswish without the bound it needs: refused, never
        # approximated.
        with pytest.raises(MergeRefused, match="proven range"):
            remove_residual(block, input_range=x_range)
        return
    plain = remove_residual(block, input_range=x_range)
    convs = [m for m in plain if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 and convs[1].groups == convs[1].in_channels  # still depthwise
    assert_exact(block, plain, x_range, (2, channels, h, w))


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    channels=st.sampled_from(CHANNELS),
    kernel=st.sampled_from((3, 5)),
    act=st.sampled_from(("relu", "relu6", "hardswish")),
    h=sizes,
    w=sizes,
)
def test_fused_mbconv_and_deploy_forms_are_exact(seed, channels, kernel, act, h, w):
    """FusedMBConv, and the `Residual` deploy forms `to_deploy` leaves (a ZeroPad2d first
    under bias-aware padding with the expand activation kept)."""
    x_range = random_range(seed, channels, "finite")
    fused = randomize(FusedMBConv(channels, channels, 1, 3, kernel, act=ACTS[act]), seed)
    assert_exact(fused, remove_residual(fused, input_range=x_range), x_range, (2, channels, h, w))
    block = InvertedResidual(channels, channels, 1, 4, kernel, act=ACTS[act], border="bias")
    randomize(block, seed)
    deploy = to_deploy(block)
    assert isinstance(deploy, Residual) and isinstance(deploy.body[0], nn.ZeroPad2d)
    plain = remove_residual(deploy, input_range=x_range)
    assert not any(isinstance(m, nn.ZeroPad2d) for m in plain)  # folded into expand padding
    assert_exact(block, plain, x_range, (2, channels, h, w))


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    channels=st.sampled_from(CHANNELS),
    kernel=st.sampled_from((1, 3, 5)),
    padding=st.integers(0, 2),
    groups_depthwise=st.booleans(),
    act=st.sampled_from(("relu", "relu6", "hardswish", "none", "leaky")),
    pool=st.sampled_from(("none", "max", "avg")),
    kind=st.sampled_from(("unbounded", "nonneg", "finite")),
)
def test_interval_bounds_hold(seed, channels, kernel, padding, groups_depthwise, act, pool, kind):
    """Sound: every output of conv -> BN -> act -> pool on inputs inside the input bounds
    lies inside the computed bounds (with the padding ring)."""
    groups = channels if groups_depthwise else 1
    layers = [
        nn.Conv2d(channels, channels, kernel, padding=min(padding, kernel), groups=groups),
        nn.BatchNorm2d(channels),
        nn.LeakyReLU(0.1) if act == "leaky" else ACTS[act](),
    ]
    if pool != "none":
        pool_layer = nn.MaxPool2d(3, 1, 1) if pool == "max" else nn.AvgPool2d(3, 1, 1)
        layers.append(pool_layer)
    net = randomize(nn.Sequential(*layers), seed)
    x_range = random_range(seed, channels, kind) or Interval.unbounded()
    out = module_interval(net, x_range)
    assert out is not None
    x = sample_inside(x_range, (4, channels, 9, 8), seed=seed % 1000)
    with torch.no_grad():
        y = net(x)
    lo, hi = (t.view(1, -1, 1, 1) for t in (out.lo, out.hi))
    assert bool((y >= lo - 1e-9).all() and (y <= hi + 1e-9).all())


def test_plan_carry_picks_the_cheapest_exact_encoding():
    relu, relu6 = (nn.ReLU(),), (nn.ReLU6(), nn.ReLU6())
    assert plan_carry(relu, Interval.of(0.0, INF), 3).modes == ("direct",) * 3
    code = plan_carry(relu, Interval.unbounded(), 3)
    assert code.modes == ("pair",) * 3 and code.carried == 6
    assert plan_carry(relu6, Interval.of(0.5, 5.0), 2).modes == ("direct", "direct")
    code = plan_carry(relu6, Interval.of(torch.tensor([-30.0, 1.0]), torch.tensor([30.0, 9.0])), 2)
    assert code.modes == ("affine", "affine") and code.letters == "aa"
    for c, (lo, hi) in enumerate(((-30.0, 30.0), (1.0, 9.0))):
        s, d = float(code.scale[c]), float(code.shift[c])
        assert s * lo + d >= 0.0 and s * hi + d <= 6.0  # the carry stays where ReLU6 is exact
    assert plan_carry((nn.Identity(),), Interval.unbounded(), 2).modes == ("direct", "direct")
    # a gain (for int8) is taken only where the identity range leaves room for it
    gain = torch.tensor([4.0, 4.0], dtype=torch.float64)
    assert plan_carry(relu, Interval.unbounded(), 2, gain=gain).scale.tolist() == [4.0, 4.0]
    assert plan_carry(relu6, Interval.of(0.0, 3.0), 2, gain=gain).scale.tolist() == [1.0, 1.0]
    assert CarryCode.from_letters("dap").carried == 4


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: InvertedResidual(4, 4, 2), "no shortcut"),
        (lambda: InvertedResidual(4, 8, 1), "no shortcut"),
        (lambda: BasicBlock(4, 8, 2), "projection"),
        (lambda: InvertedResidual(4, 4, 1, expand_ratio=1), "channel multiplier"),
        (lambda: FusedMBConv(4, 4, 1, expand_ratio=1), "between the last conv and the add"),
        (lambda: InvertedResidual(4, 4, 1, act=nn.GELU), "identity on no interval"),
        (lambda: InvertedResidual(4, 4, 1), "bounded activation cannot carry an unbounded"),
        (lambda: ConvBN(4, 4, 3), "not a residual block this pass knows"),
    ],
)
def test_refusals_say_why(make, message):
    block = randomize(make(), 0)
    with pytest.raises(MergeRefused, match=message) as refused:
        remove_residual(block)
    assert isinstance(refused.value, UsageError)


def _small_resnet() -> nn.Module:
    return nn.Sequential(
        nn.Sequential(ConvBN(3, 8, 3, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1)),
        BasicBlock(8, 8, 1),
        BasicBlock(8, 16, 2),
        BasicBlock(16, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def test_carries_that_int8_could_not_keep_are_refused_on_request():
    block = randomize(InvertedResidual(4, 4, 1, 2), 4)
    remove_residual(block, input_range=(-40.0, 40.0))  # exact: x scaled into ReLU6's [0, 6]
    with pytest.raises(MergeRefused, match="scaled down by up to 13.3x"):
        remove_residual(block, input_range=(-40.0, 40.0), min_scale=1.0)
    remove_residual(block, input_range=(0.0, 6.0), min_scale=1.0)  # fits as it is


def test_whole_resnet_pass_proves_non_negative_inputs_and_skips_projections():
    model = randomize(_small_resnet(), 3).float()
    bounds = block_input_bounds(model)
    assert all(
        float(b.lo.min()) == 0.0 and float(b.hi.max()) == INF for b in bounds.inputs.values()
    )
    result = remove_residuals(model)
    assert result.removed == ("1", "3")
    assert result.blocks[0].input_bound == (0.0, None)  # None: unbounded, so the JSON is valid
    json.dumps(result.to_dict(), allow_nan=False)
    refused = {b.path: b.reason for b in result.blocks if not b.removed}
    assert "projection" in refused["2"]
    assert all(b.carry == "d" * len(b.carry) for b in result.blocks if b.removed)
    assert all(
        b.max_abs_err is not None and b.max_abs_err < 1e-12 for b in result.blocks if b.removed
    )
    eq = verify_equivalent(model, result.model, (1, 3, 33, 30), seeds=2)
    assert eq.max_rel_err < 1e-5 and eq.border_max_rel_err < 1e-5 and eq.argmax_equal


def test_zoo_mobilenet_v2_loses_every_residual_exactly():
    zoo = load_model("mobilenet_v2_035_96").module.eval()
    result = remove_residuals(zoo)
    deployed = remove_residuals(to_deploy(zoo))  # BN folded, zoo blocks kept: the same rewrite
    assert deployed.removed == result.removed
    assert len(result.removed) == 10 and all(b.removed for b in result.blocks)
    # ReLU6 stages: each carried channel has a proven finite range, mapped into [0, 6]
    assert all(set(b.carry) <= {"d", "a"} for b in result.blocks)
    assert "interval arithmetic" in result.bounds
    adds = [m for m in result.model.modules() if isinstance(m, Residual)]
    assert adds == []
    eq = verify_equivalent(zoo, result.model, (1, 3, 96, 96), seeds=1, rtol=1e-4)
    assert eq.equivalent, eq
    # the record rebuilds the structure; the state_dict then gives the same function
    rebuilt = rebuild_without_residuals(zoo, result.to_dict())
    rebuilt.load_state_dict(result.model.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), result.model(x))


class _Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, so nothing is proven."""

    def __init__(self, act: type[nn.Module]) -> None:
        super().__init__()
        self.stem = ConvBN(3, 4, 3)
        self.block = InvertedResidual(4, 4, 1, 2, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if float(x.sum()) > 0:
            x = x * 1.0
        return self.block(x)


def test_without_bounds_only_blocks_that_need_none_are_removed():
    relu = remove_residuals(randomize(_Untraceable(nn.ReLU), 5).float())
    assert relu.bounds.startswith("no bounds") and relu.removed == ("block",)
    assert relu.blocks[0].carry == "pppp"
    relu6 = remove_residuals(randomize(_Untraceable(nn.ReLU6), 5).float())
    assert relu6.removed == () and "proven range" in relu6.blocks[0].reason


def test_input_range_is_used_and_the_original_is_untouched():
    model = randomize(nn.Sequential(InvertedResidual(4, 4, 1, 2)), 9).float()
    before = copy.deepcopy(model.state_dict())
    assert remove_residuals(model).blocks[0].removed is False  # ReLU6 on an unbounded input
    result = remove_residuals(model, input_range=(-2.0, 3.0))
    assert result.blocks[0].removed and result.blocks[0].input_bound == (-2.0, 3.0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
