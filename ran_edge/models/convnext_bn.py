"""ConvNeXt with conv-friendly norms and activations, and its RAN-i scaled version.

ConvNeXt (Liu et al., 2022) block: 7x7 depthwise conv, 1x1 expand x4, activation, 1x1
project, residual; a 4x4 stride-4 "patchify" stem and 2x2 stride-2 downsampling convs.
Two substitutions make it an Ethos-U network (measured: docs/shrink.md, "RAN-i"):

- **BatchNorm instead of LayerNorm**, placed after a conv (stem, downsampling, depthwise)
  so `ran_edge.blocks.to_deploy` folds every one of them into that conv: the deploy form
  has no normalisation op at all. LayerNorm over channels would lower to MEAN / SUB /
  RSQRT / MUL chains per pixel.
- **ReLU6 instead of GELU** (default; `act="hardswish"` is the other NPU option). Both
  convert through litert-torch and map to the NPU: ReLU6 fuses into the expand conv for
  free, hard-swish runs as a separate LUT op; GELU converts but stays float-heavy.

Layer scale and stochastic depth are training-only details and are left out; the head
is global pool -> linear (no norm). MACs are those of the original: norms, activations
and adds are not counted, and the convs are the same.

`convnext_t_bn`: depths [3, 3, 9, 3], widths [96, 192, 384, 768] (ConvNeXt-T).
`ran_i_t`: depths [5, 5, 15, 5], widths [64, 128, 256, 511] (RAN-i-T, deeper-thinner by
NN-Mass; `ran_edge.shrink.ran_i`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ran_edge.blocks import ConvBN
from ran_edge.errors import UsageError
from ran_edge.models.registry import register_model

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "gelu": nn.GELU,
}
CONVNEXT_T = ((3, 3, 9, 3), (96, 192, 384, 768))
RAN_I_T = ((5, 5, 15, 5), (64, 128, 256, 511))


class ConvNeXtBlock(nn.Module):
    """x + project(act(expand(BN(dw7x7(x))))); the BN folds into the depthwise conv."""

    def __init__(
        self, dim: int, act: Callable[[], nn.Module] = nn.ReLU6, expansion: int = 4
    ) -> None:
        super().__init__()
        self.dw = ConvBN(dim, dim, 7, groups=dim, bias=True)
        self.expand = nn.Conv2d(dim, expansion * dim, 1)
        self.act = act()
        self.project = nn.Conv2d(expansion * dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.project(self.act(self.expand(self.dw(x))))


class Stage(nn.Module):
    """Optional 2x2 stride-2 downsampling conv + BN, then `depth` blocks."""

    def __init__(
        self, cin: int, dim: int, depth: int, act: Callable[[], nn.Module], downsample: bool
    ) -> None:
        super().__init__()
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, dim, 2, 2), nn.BatchNorm2d(dim))
            if downsample
            else nn.Identity()
        )
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim, act) for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXtBN(nn.Module):
    """ConvNeXt with per-stage `depths` and `widths`, BN norms and an NPU activation."""

    def __init__(
        self,
        depths: Sequence[int] = CONVNEXT_T[0],
        widths: Sequence[int] = CONVNEXT_T[1],
        *,
        in_channels: int = 3,
        num_classes: int = 1000,
        act: str = "relu6",
    ) -> None:
        super().__init__()
        if len(depths) != len(widths) or not depths:
            raise UsageError(
                f"ConvNeXtBN needs one depth per width; got depths {list(depths)} and "
                f"widths {list(widths)}."
            )
        if min(depths) < 1 or min(widths) < 1:
            raise UsageError(f"depths and widths must be positive: {list(depths)}, {list(widths)}")
        if act not in ACTIVATIONS:
            raise UsageError(f"unknown activation {act!r}; use one of {', '.join(ACTIVATIONS)}")
        self.depths, self.widths = tuple(depths), tuple(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 4, 4), nn.BatchNorm2d(widths[0])
        )
        stages = []
        cin = widths[0]
        for index, (depth, dim) in enumerate(zip(depths, widths, strict=True)):
            stages.append(Stage(cin, dim, depth, ACTIVATIONS[act], downsample=index > 0))
            cin = dim
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(widths[-1], num_classes)
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stages(self.stem(x))
        return self.classifier(torch.flatten(self.pool(x), 1))


def _init_weights(model: nn.Module) -> None:
    """ConvNeXt's init (truncated normal, std 0.02, zero bias), BN at identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


_FAMILY = "convnext_bn"


@register_model(
    "convnext_t_bn",
    family=_FAMILY,
    description="ConvNeXt-T with BatchNorm + ReLU6 (depths 3,3,9,3, widths 96..768), 224x224",
)
def convnext_t_bn(**kwargs: Any) -> ConvNeXtBN:
    return ConvNeXtBN(*CONVNEXT_T, **kwargs)


@register_model(
    "ran_i_t",
    family=_FAMILY,
    description="RAN-i-T: NN-Mass-scaled ConvNeXt-T (depths 5,5,15,5, widths 64..511), 224x224",
)
def ran_i_t(**kwargs: Any) -> ConvNeXtBN:
    return ConvNeXtBN(*RAN_I_T, **kwargs)
