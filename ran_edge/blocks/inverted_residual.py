"""Inverted residual (MobileNetV2): expand 1x1 -> depthwise kxk -> project 1x1 [+ x].

The two inner activations are the attributes `expand_act` and `dw_act`, plain modules a
DepthShrinker step can replace with nn.Identity. Once both are Identity the block is
linear and its deploy form collapses to one dense kxk conv (residual in the centre tap).

`border` sets what the depthwise conv pads its input with:

- "zeros": ordinary zero padding, as MobileNetV2 and its checkpoints use. With the
  activations removed the collapse is exact only without an expand layer (or with a
  zero expand bias); otherwise `to_deploy` keeps the convs apart and warns, and
  `collapse_inverted_residual` raises MergeRefused.
- "bias": bias-aware padding. The ring holds what the expand stage outputs at a zero
  input pixel (`expand_act(expand.zero_response())`), i.e. what it would compute on a
  zero-padded input. The collapse is then exact, borders included. With an expand
  activation still present the deploy form pads the block input instead (ZeroPad2d ->
  expand -> act -> depthwise without padding), which is the same function but costs a
  PAD op that Vela runs slowly: use "bias" on blocks that will collapse.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ran_edge.blocks.collapsed import CollapsedBlock
from ran_edge.blocks.conv_bn import ConvBN
from ran_edge.blocks.deploy import deploy_sequence
from ran_edge.errors import UsageError
from ran_edge.reparam.branches import ConvKernel, MergeRefused
from ran_edge.reparam.chain import (
    Border,
    check_border,
    conv2d_value_padded,
    fold_residual,
    merge_sequential_convs,
)


class InvertedResidual(nn.Module):
    """MobileNetV2 block with replaceable activations and a choice of depthwise border."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        expand_ratio: float = 6,
        kernel_size: int = 3,
        act: Callable[[], nn.Module] = nn.ReLU6,
        border: Border = "zeros",
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise UsageError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        if kernel_size % 2 == 0:
            raise UsageError(
                f"InvertedResidual kernel_size must be odd (3, 5, 7), got {kernel_size}"
            )
        hidden = round(in_channels * expand_ratio)
        self.border = check_border(border)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = ConvBN(in_channels, hidden, 1) if expand_ratio != 1 else None
        self.expand_act = act() if self.expand is not None else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel_size, stride, groups=hidden)
        self.dw_act = act()
        self.project = ConvBN(hidden, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        hidden = x
        if self.expand is None:
            hidden = self.depthwise(hidden)
        else:
            pre_bn = self.expand.conv(x)
            hidden = self.expand_act(self.expand.bn(pre_bn))
            if self.border == "bias":
                ring = self.expand.zero_response(pre_bn).reshape(1, -1, 1, 1)
                ring = self.expand_act(ring).flatten()
                padded = conv2d_value_padded(self.depthwise.conv, hidden, ring)
                hidden = self.depthwise.bn(padded)
            else:
                hidden = self.depthwise(hidden)
        out = self.project(self.dw_act(hidden))
        return x + out if self.use_residual else out

    @property
    def is_linear(self) -> bool:
        """True once both inner activations are nn.Identity (the block can collapse)."""
        return isinstance(self.expand_act, nn.Identity) and isinstance(self.dw_act, nn.Identity)

    def folded_convs(self) -> list[nn.Conv2d]:
        """[expand,] depthwise, project as biased convs with BN folded (eval statistics)."""
        stages = (self.expand, self.depthwise, self.project)
        return [stage.to_deploy() for stage in stages if stage is not None]

    def to_deploy(self) -> nn.Module:
        if self.is_linear:
            try:
                return collapse_inverted_residual(self)
            except MergeRefused:
                pass  # deploy_sequence keeps the convs apart and warns why
        expand = self.expand.to_deploy() if self.expand is not None else None
        depthwise = self.depthwise.to_deploy()
        project = self.project.to_deploy()
        pad: nn.Module | None = None
        expand_is_linear = isinstance(self.expand_act, nn.Identity)
        if self.border == "bias" and expand is not None and not expand_is_linear:
            pad, depthwise = _pad_first(depthwise)
        layers = [pad, expand, self.expand_act, depthwise, self.dw_act, project]
        return deploy_sequence(layers, residual=self.use_residual, border=self.border)


def _pad_first(depthwise: nn.Conv2d) -> tuple[nn.ZeroPad2d, nn.Conv2d]:
    """Move the depthwise padding to the block input: the 1x1 expand stage then computes
    the ring itself, which is what bias-aware padding fills it with."""
    kernel = ConvKernel.from_conv(depthwise)
    ph, pw = kernel.padding
    unpadded = ConvKernel(kernel.weight, kernel.bias, kernel.stride, (0, 0), kernel.groups)
    return nn.ZeroPad2d((pw, pw, ph, ph)), unpadded.to_conv(like=depthwise.weight)


def collapse_inverted_residual(
    block: InvertedResidual, *, trainable: bool = False
) -> nn.Conv2d | CollapsedBlock:
    """The whole linear inverted residual (expand -> depthwise -> project [+ x]) as one conv.

    Needs both inner activations to be nn.Identity (e.g. removed by DepthShrinker) and a
    border convention that makes the merge exact: border="bias", or no expand layer, or
    an expand layer whose folded bias is zero. `trainable=True` returns a CollapsedBlock
    (conv + BN + residual, no activation) initialised to the same function, for further
    training; else a plain Conv2d with BN and the residual folded in.
    """
    nonlinear = [
        f"{name} is {type(act).__name__}"
        for name, act in (("expand_act", block.expand_act), ("dw_act", block.dw_act))
        if not isinstance(act, nn.Identity)
    ]
    if nonlinear:
        raise MergeRefused(
            f"the inverted residual is not linear ({', '.join(nonlinear)}); only a chain "
            "without activations collapses. Set those activations to nn.Identity() "
            "(DepthShrinker) and fine-tune before collapsing."
        )
    merged = merge_sequential_convs(block.folded_convs(), border=block.border)
    if trainable:
        return CollapsedBlock.from_conv(merged, residual=block.use_residual, act=nn.Identity())
    return fold_residual(merged) if block.use_residual else merged
