"""Converter-level rewrites: patterns users write that convert to ops Ethos-U cannot run.

The passes live in `rewrite_pooling` and `rewrite_activations` (helpers in
`rewrite_graph`); advice for ops no rewrite handles is `rewrite_advice.suggest_fix`.

Each rewrite replaces an ATen pattern in the `torch.export` graph by one that computes the
same function (exactly, or to float rounding) and that litert-torch, ai-edge-quantizer
and Vela together turn into int8 NPU ops. They run inside `export_float_tflite`, before
litert-torch converts the graph, so users keep writing ordinary PyTorch.

Why each exists (measured with litert-torch 0.10, ai-edge-quantizer 0.10, Vela 5.2):

- `spatial-mean-to-avg-pool`: `x.mean((2, 3))` is converted to a TRANSPOSE back to NCHW and a
  MEAN over the last axis, which Vela reads as a depth reduction and leaves on the CPU
  ("Unsupported depth-reduction"). Average pooling over the same window is laid out NHWC by
  the converter and runs on the NPU. Same for `x.mean(-1)` over a Conv1d's time axis, for
  `x.flatten(2).mean(-1)`, and for a global `nn.AdaptiveAvgPool2d(1)` whose result is not
  simply flattened (ConvNeXt's pool -> LayerNorm2d head): the converter decomposes it into
  the same MEAN.
- `channel-mean-to-conv`: a mean over the channel axis (`x.mean(1, keepdim=True)` for
  CBAM-style spatial attention maps) is a depth reduction too: Vela runs it only when H, W
  or C is 1. A 1x1 convolution with weights 1/C computes the same mean on the NPU.
  (LayerNorm over channels is fine as it is: the converter reshapes it so one axis is 1.)
- `leaky-relu-to-max`: ai-edge-quantizer 0.10 has no int8 LEAKY_RELU, so it wraps the op in
  DEQUANTIZE/QUANTIZE and leaves it float, whatever precedes it (ConvTranspose2d or not).
  `max(x, a*x)` (0 <= a <= 1) is the same function from MUL and MAXIMUM, both quantized;
  Vela fuses the pair back into one int8 LeakyReLU on the NPU.
- `abs-to-max`: ai-edge-quantizer has no int8 ABS either; `max(x, -x)` is exact.
- `bilinear-upsample-to-nearest-conv`: `F.interpolate(..., mode="bilinear")` by 4x or 8x
  (segmentation heads upsampling to the input size) is a half-pixel RESIZE_BILINEAR, which
  Vela runs at 2x only. Nearest upsampling (Vela: 2x/4x/8x) followed by a fixed depthwise
  filter is the same interpolation, borders included.
- `clamp-to-relu` (opt-in: TFLM's reference interpreter aborts on the result): clamp/hardtanh bounds other than the ones TFLite fuses (ReLU, ReLU6)
  become RELU_0_TO_1, RELU_N1_TO_1 or MINIMUM/MAXIMUM, which the quantizer leaves float.
  `relu(x - lo) - relu(x - hi) + lo` is the same clamp from quantized RELU/ADD/SUB.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import fx, nn

from ran_edge.convert.rewrite_activations import rewrite_abs, rewrite_clamp, rewrite_leaky_relu
from ran_edge.convert.rewrite_advice import suggest_fix
from ran_edge.convert.rewrite_graph import Replacements, module_path
from ran_edge.convert.rewrite_pooling import (
    rewrite_bilinear_upsample,
    rewrite_channel_mean,
    rewrite_spatial_mean,
)


@dataclass(frozen=True)
class AppliedRewrite:
    """One place in the user's network where a rewrite replaced a pattern."""

    rewrite: str  # the rewrite's name, e.g. "spatial-mean-to-avg-pool"
    module: str  # the torch module path the pattern sat in ("" for the top level)
    detail: str  # what was replaced by what, with shapes

    def __str__(self) -> str:
        where = self.module or "(top level)"
        return f"{self.rewrite} at {where}: {self.detail}"


@dataclass(frozen=True)
class GraphRewrite:
    """A named pattern replacement over an exported ATen graph."""

    name: str
    summary: str  # one line: what it changes and why (docs, `--help`)
    apply: Callable[[fx.GraphModule], Replacements]
    default: bool = True  # applied by export_float_tflite unless asked for by name only


REWRITES: tuple[GraphRewrite, ...] = (
    GraphRewrite(
        "spatial-mean-to-avg-pool",
        "x.mean((2, 3)) / x.mean(-1) -> average pooling (a MEAN over W/H is a depth "
        "reduction for Vela after the converter's NCHW transpose)",
        rewrite_spatial_mean,
    ),
    GraphRewrite(
        "channel-mean-to-conv",
        "mean over channels -> 1x1 conv with weights 1/C (Vela reduces depth only if H, W or C is 1)",
        rewrite_channel_mean,
    ),
    GraphRewrite(
        "leaky-relu-to-max",
        "LeakyReLU -> maximum(x, a*x) (ai-edge-quantizer has no int8 LEAKY_RELU; Vela fuses "
        "MUL+MAXIMUM back into LeakyReLU)",
        rewrite_leaky_relu,
    ),
    GraphRewrite(
        "abs-to-max",
        "abs(x) -> maximum(x, -x) (ai-edge-quantizer has no int8 ABS)",
        rewrite_abs,
    ),
    GraphRewrite(
        "clamp-to-relu",
        "clamp/hardtanh (and ReLU6 the converter cannot fuse) -> relu(x-lo) - relu(x-hi) + lo "
        "(RELU6, RELU_0_TO_1, RELU_N1_TO_1 alone stay float in ai-edge-quantizer)",
        rewrite_clamp,
        # Off by default: TFLM's reference interpreter aborts on the SUB form it produces
        # (LiteRT and Vela accept it); opt in by name until that is understood.
        default=False,
    ),
    GraphRewrite(
        "bilinear-upsample-to-nearest-conv",
        "bilinear upsampling by 4x/8x (align_corners=False) -> nearest upsampling + fixed "
        "depthwise filter (Vela runs half-pixel bilinear at 2x only, nearest at 2x/4x/8x)",
        rewrite_bilinear_upsample,
    ),
)

REWRITE_NAMES: tuple[str, ...] = tuple(r.name for r in REWRITES)
DEFAULT_REWRITES: tuple[str, ...] = tuple(r.name for r in REWRITES if r.default)


def rewrite_graph_module(
    gm: fx.GraphModule, enabled: Iterable[str] | None = None
) -> list[AppliedRewrite]:
    """Apply the enabled rewrites (`DEFAULT_REWRITES` when None) to `gm` in place; list
    what fired."""
    names = set(DEFAULT_REWRITES if enabled is None else enabled)
    unknown = names - set(REWRITE_NAMES)
    if unknown:
        raise ValueError(f"unknown rewrite(s) {sorted(unknown)}; known: {list(REWRITE_NAMES)}")
    applied: list[AppliedRewrite] = []
    for rewrite in REWRITES:
        if rewrite.name not in names:
            continue
        for node, detail in rewrite.apply(gm):
            applied.append(AppliedRewrite(rewrite.name, module_path(node), detail))
    if applied:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return applied


def rewrite_module(
    module: nn.Module, example: tuple[torch.Tensor, ...], enabled: Iterable[str] | None = None
) -> tuple[nn.Module, list[AppliedRewrite]]:
    """Export `module` on `example` and rewrite its graph.

    Returns the rewritten graph module (to hand to litert-torch, which exports it again
    with every node's module path intact) and what fired. When nothing fires the original
    module comes back untouched, so a network without these patterns converts exactly as
    before.
    """
    rewritten, applied, _exported = export_and_rewrite(module, example, enabled)
    return rewritten, applied


def _fires_on_lifted_graph(
    exported: torch.export.ExportedProgram, enabled: Iterable[str] | None
) -> bool:
    """Whether any rewrite would fire, tried on a copy of the exported graph as it is, with
    parameters as inputs: the copy holds no weights, so it is cheap, where unlifting the
    program into a module costs ~0.7 s on MobileNetV2. The patterns match the same ATen
    nodes and shapes either way; when in doubt (the trial raises) it says yes, and the real
    pass decides on the unlifted module."""
    try:
        trial = copy.deepcopy(exported.graph_module)
        return bool(rewrite_graph_module(trial, enabled))
    except ValueError:
        raise  # an unknown rewrite name: the caller's error
    except Exception:  # noqa: BLE001 - any other trouble: take the unlifted path
        return True


def export_and_rewrite(
    module: nn.Module, example: tuple[torch.Tensor, ...], enabled: Iterable[str] | None = None
) -> tuple[nn.Module, list[AppliedRewrite], torch.export.ExportedProgram | None]:
    """`rewrite_module`, plus the program torch.export made of `module` when nothing fired
    (the converter, exporting the same module on the same inputs, can use it as is)."""
    exported = torch.export.export(module, example, strict=False)
    if not _fires_on_lifted_graph(exported, enabled):
        return module, [], exported
    gm = exported.module()
    applied = rewrite_graph_module(gm, enabled)
    if not applied:
        return module, [], exported
    object.__setattr__(gm, "training", False)  # unlifted modules refuse .eval()
    return gm, applied, None


__all__ = [
    "REWRITES",
    "DEFAULT_REWRITES",
    "REWRITE_NAMES",
    "AppliedRewrite",
    "GraphRewrite",
    "module_path",
    "rewrite_graph_module",
    "rewrite_module",
    "suggest_fix",
]
