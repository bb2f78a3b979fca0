"""What to change in the PyTorch model when Vela leaves an op on the CPU and no rewrite exists.

`suggest_fix(op_type, vela_reason)` turns one of Vela's per-op refusals ("Warning
(supported operators) operator: MEAN ... Reason: Unsupported depth-reduction ...") into a
concrete PyTorch-level change. Rules are matched in order: specific (op + reason) first,
then by reason, then by op, then a generic pointer at Vela's SUPPORTED_OPS. The reasons are
the ones Vela 5.2 prints (its regor backend for U55/U65/U85), as met by the coverage
benchmark (benchmarks/coverage.py) on torchvision, timm and hand-written networks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

GENERIC_FIX = (
    "replace the module with NPU-supported ops: see the constraints for this operator in "
    "Vela's SUPPORTED_OPS.md (`python -m ethosu.vela --supported-ops-report`), or pass "
    "--allow-cpu-fallback to build and cost it on the CPU"
)

# Ops ai-edge-quantizer 0.10 cannot quantize: they stay float (DEQUANTIZE/op/QUANTIZE).
_FLOAT_ONLY_FIXES = {
    "LEAKY_RELU": "ran-edge rewrites nn.LeakyReLU to maximum(x, a*x) by default; if you see "
    "this, the slope is negative or the export ran with rewrites off: use a slope in [0, 1]",
    "ELU": "use nn.LeakyReLU(0.1), nn.SiLU or nn.Hardswish instead of ELU/SELU/CELU "
    "(their EXP/SELECT have no int8 form in ai-edge-quantizer)",
    "EXP": "replace the exp-based activation (ELU, SELU, CELU, Softplus, Mish) with nn.SiLU, "
    "nn.Hardswish or nn.LeakyReLU; int8 EXP is not produced by ai-edge-quantizer",
    "LOG": "replace Softplus/Mish/LogSigmoid with nn.SiLU or nn.Hardswish (no int8 LOG)",
    "SELECT": "avoid torch.where / comparisons in the forward pass (ELU, Softplus and Mish "
    "lower to SELECT): use nn.ReLU, nn.LeakyReLU, nn.SiLU or nn.Hardswish",
    "SELECT_V2": "avoid torch.where in the forward pass; use max/min of x and a scaled x",
    "GREATER": "comparisons have no NPU form: use nn.ReLU/LeakyReLU/Hardswish, not torch.where",
    "GREATER_EQUAL": "comparisons have no NPU form: use nn.ReLU/LeakyReLU, not torch.where",
    "DIV": "divide by a constant as a multiply (x * (1 / c)); Ethos-U has no division "
    "(Softsign and normalisations by a tensor need another formulation)",
    "MINIMUM": "torch.minimum/clamp with an upper bound stays float: put the clamp right "
    "after a conv/linear/add (TFLite fuses ReLU/ReLU6 there) or use nn.ReLU",
    "ABS": "ran-edge rewrites torch.abs to maximum(x, -x) by default; check rewrites were on",
    "RELU_0_TO_1": "clamp(0, 1) has no int8 kernel in ai-edge-quantizer: use nn.Hardsigmoid "
    "or ReLU6(x)/6 right after a conv, or rewrite it as relu(x) - relu(x - 1) "
    "(ran-edge's opt-in clamp-to-relu rewrite)",
    "RELU_N1_TO_1": "hardtanh(-1, 1) has no int8 kernel in ai-edge-quantizer: use nn.Tanh, or "
    "relu(x + 1) - relu(x - 1) - 1 (ran-edge's opt-in clamp-to-relu rewrite)",
    "RELU6": "a ReLU6 not directly after a conv/linear/add/mul/pool cannot be fused and has no "
    "int8 kernel: move it right after the conv (before concat/reshape/resize) or use nn.ReLU",
    "DEQUANTIZE": "a float op sits here: fix the op that follows it (listed too)",
    "QUANTIZE": "a float op sits here: fix the op that precedes it (listed too)",
    "CAST": "keep the graph float32 in PyTorch (no .long()/.int()/.bool() in forward)",
}


@dataclass(frozen=True)
class _Rule:
    matches: Callable[[str, str], bool]  # (OP_TYPE, reason lower-cased)
    fix: str | Callable[[str, str], str]


def _reason(*needles: str) -> Callable[[str, str], bool]:
    return lambda _op, reason: any(n in reason for n in needles)


def _op(*ops: str) -> Callable[[str, str], bool]:
    return lambda op, _reason: op in ops


def _both(op: Callable[[str, str], bool], reason: Callable[[str, str], bool]):
    return lambda o, r: op(o, r) and reason(o, r)


def _float_fix(op: str, _reason: str) -> str:
    return _FLOAT_ONLY_FIXES.get(
        op,
        f"{op} was left float by the quantizer (no int8 {op} in ai-edge-quantizer 0.10): "
        "replace it with an op from conv/linear/add/mul/relu/relu6/hardswish/sigmoid/tanh/"
        "gelu/avg-or-max-pool/concat/reshape",
    )


_RULES: tuple[_Rule, ...] = (
    _Rule(
        _both(_op("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"), _reason("depth-reduction")),
        "reduce over H and W of an NCHW map, not over channels or a flattened axis: use "
        "nn.AdaptiveAvgPool2d(1) (or x.mean((2, 3)), rewritten to average pooling); for a "
        "mean over channels use a 1x1 nn.Conv2d(C, 1) with weights 1/C",
    ),
    _Rule(
        _reason("unsupported datatype float32", "datatype float32"),
        _float_fix,
    ),
    _Rule(
        _both(_op("TRANSPOSE"), _reason("transpose")),
        "avoid permute/transpose of 4-D maps in forward (channel shuffle via view/transpose "
        "is fine only when Vela maps it): keep tensors NCHW and let Conv/Pool/Linear work; "
        "for a channel shuffle use a 1x1 conv with a permutation weight",
    ),
    _Rule(
        _reason("scale-factor"),
        "upsample by 2x, 4x or 8x (nn.Upsample(scale_factor=2), mode nearest or bilinear) "
        "instead of arbitrary sizes; for other factors use nn.ConvTranspose2d",
    ),
    _Rule(
        _reason("stride>3", "kernel stride", "stride values", "stride must"),
        "use stride 1 or 2 (at most 3) in Conv2d/pooling; reach larger strides with several "
        "stride-2 layers, or use padding=0 and dilation=1 for a large stride",
    ),
    _Rule(
        _reason("kernel width and height must be less than or equal to 8"),
        "pooling with padding (SAME) supports kernels up to 8x8: use padding=0 or a smaller "
        "kernel, or nn.AdaptiveAvgPool2d(1) for a global pool",
    ),
    _Rule(
        _reason("kernel product", "kernel height"),
        "the pooling window is too large (Vela: height <= 256, H*W <= 65536): pool in two "
        "steps (e.g. nn.AvgPool2d(4) then nn.AdaptiveAvgPool2d(1))",
    ),
    _Rule(
        _reason("dilation"),
        "use dilation up to 2 with stride 1 (Vela's limit), or replace a large dilation by "
        "a strided conv followed by an upsample",
    ),
    _Rule(
        _reason("product of any n-2 axes", "w * h", "product of ifm width and height", "65536"),
        "the feature map is too large for one NPU op (H*W, H*C, W*C <= 65536): lower the "
        "input resolution or downsample earlier (a stride-2 stem)",
    ),
    _Rule(
        _reason("rank"),
        "keep tensors at most 4-D (N, C, H, W): fold extra dimensions into channels with a "
        "view instead of 5-D reshapes",
    ),
    _Rule(
        _reason("bias", "weight tensors must be", "weights shape", "must be constant"),
        "weights and biases must be constants: use nn.Conv2d/nn.Linear parameters, not "
        "tensors computed in forward (dynamic convolution / attention weights)",
    ),
    _Rule(
        _op("BATCH_MATMUL"),
        "matrix products of two activations (attention) run on Ethos-U85 only: for U55/U65 "
        "replace attention with convolutions (or pick an ethos-u85 target)",
    ),
    _Rule(_op(*_FLOAT_ONLY_FIXES), _float_fix),
    _Rule(
        _op("GATHER", "GATHER_ND", "SCATTER_ND", "ARG_MAX", "ARG_MIN", "TOPK_V2"),
        "index/gather ops have no NPU form: compute the index outside the model (firmware) "
        "or express the selection with a 1x1 conv / slicing",
    ),
    _Rule(
        _op("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"),
        "resize by a power-of-two factor (scale_factor=2) with align_corners=False",
    ),
    _Rule(
        _op("PAD", "MIRROR_PAD", "PADV2"),
        "use zero padding inside Conv2d (padding=k//2) instead of F.pad/reflection padding",
    ),
)


def suggest_fix(op_type: str, vela_reason: str) -> str:
    """A concrete PyTorch change for an op Vela left on the CPU, given Vela's reason text."""
    op, reason = op_type.strip().upper(), vela_reason.strip().lower()
    for rule in _RULES:
        if rule.matches(op, reason):
            return rule.fix(op, reason) if callable(rule.fix) else rule.fix
    return GENERIC_FIX
