"""Rewrites of activations ai-edge-quantizer 0.10 leaves float (no int8 kernel for them).

The quantizer has no int8 LEAKY_RELU, ABS, RELU6 (standing alone), RELU_0_TO_1,
RELU_N1_TO_1 or MINIMUM: it wraps them in DEQUANTIZE/QUANTIZE and Vela puts all three on
the CPU. Each is rewritten into ops it does quantize (MUL, MAXIMUM, RELU, ADD, SUB) that
compute the same function; Vela fuses MUL+MAXIMUM back into one LeakyReLU or ABS.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import fx

from ran_edge.convert.rewrite_graph import Builder, Replacements, arg, call_nodes, is_float

aten = torch.ops.aten


def rewrite_leaky_relu(gm: fx.GraphModule) -> Replacements:
    """leaky_relu(x, a) -> maximum(x, a * x) for 0 <= a <= 1 (minimum for a > 1)."""
    done = []
    for node in call_nodes(gm, (aten.leaky_relu.default, aten.leaky_relu_.default)):
        x = node.args[0]
        slope = float(arg(node, 1, "negative_slope", 0.01))
        if not isinstance(x, fx.Node) or slope < 0 or math.isnan(slope):
            continue
        b = Builder(gm.graph, node)
        scaled = b.call(aten.mul.Tensor, x, slope, val=node.meta.get("val"))
        pick = aten.maximum.default if slope <= 1 else aten.minimum.default
        b.replace(b.call(pick, x, scaled))
        done.append((node, f"leaky_relu({slope:g}) -> maximum(x, {slope:g}*x)"))
    return done


def rewrite_abs(gm: fx.GraphModule) -> Replacements:
    """abs(x) -> maximum(x, -1 * x): Vela fuses MUL(-1)+MAXIMUM into its int8 ABS."""
    done = []
    for node in call_nodes(gm, (aten.abs.default,)):
        x = node.args[0]
        if not isinstance(x, fx.Node) or not is_float(x):
            continue
        b = Builder(gm.graph, node)
        neg = b.call(aten.mul.Tensor, x, -1.0, val=node.meta.get("val"))
        b.replace(b.call(aten.maximum.default, x, neg))
        done.append((node, "abs(x) -> maximum(x, -x)"))
    return done


# Ops TFLite fuses a following ReLU/ReLU6 into (batch norm folds into the conv before it).
_FUSING_PRODUCERS = frozenset(
    {
        aten.conv2d.default,
        aten.convolution.default,
        aten.conv_transpose2d.input,
        aten.linear.default,
        aten.addmm.default,
        aten.add.Tensor,
        aten.sub.Tensor,
        aten.mul.Tensor,
        aten.batch_norm.default,
        aten._native_batch_norm_legit_no_training.default,
        aten.avg_pool2d.default,
        aten.max_pool2d.default,
    }
)


def _fused_by_converter(x: fx.Node) -> bool:
    """Whether TFLite will fuse an activation into `x`'s op (so it never exists alone)."""
    producer = x.args[0] if x.target is operator.getitem and x.args else x  # batch norm tuple
    if not isinstance(producer, fx.Node):
        return False
    return producer.target in _FUSING_PRODUCERS and len(x.users) == 1


# Clamping ops and their default (min, max).
_CLAMP_DEFAULTS = {
    aten.clamp.default: (None, None),
    aten.hardtanh.default: (-1.0, 1.0),
    aten.hardtanh_.default: (-1.0, 1.0),
    aten.relu6.default: (0.0, 6.0),
}


def rewrite_clamp(gm: fx.GraphModule) -> Replacements:
    """clamp(x, lo, hi) / hardtanh -> relu(x - lo) - relu(x - hi) + lo.

    ReLU6 (0, 6) is left alone where the converter fuses it into the op before it (conv,
    linear, add, pooling), which is most of the time and costs nothing; standing alone
    (after a concat, reshape, resize...) it would be a float RELU6 and is rewritten too.
    """
    done = []
    for node in call_nodes(gm, _CLAMP_DEFAULTS):
        x = node.args[0]
        if not isinstance(x, fx.Node) or not is_float(x):
            continue
        default = _CLAMP_DEFAULTS[node.target]
        lo, hi = arg(node, 1, "min", default[0]), arg(node, 2, "max", default[1])
        if not all(v is None or isinstance(v, (int, float)) for v in (lo, hi)):
            continue
        lo = None if lo is None else float(lo)
        hi = None if hi is None else float(hi)
        if lo is None or hi is None or hi <= lo:
            continue  # one-sided clamps convert to quantizable RELU / MAXIMUM-free forms
        if (lo, hi) == (0.0, 6.0) and _fused_by_converter(x):
            continue
        b = Builder(gm.graph, node)
        val = node.meta.get("val")
        low = b.call(aten.relu.default, b.call(aten.sub.Tensor, x, lo, val=val), val=val)
        high = b.call(aten.relu.default, b.call(aten.sub.Tensor, x, hi, val=val), val=val)
        out = b.call(aten.sub.Tensor, low, high, val=val)
        if lo != 0:
            out = b.call(aten.add.Tensor, out, lo, val=val)
        b.replace(out)
        done.append((node, f"clamp({lo:g}, {hi:g}) -> relu(x{-lo:+g}) - relu(x{-hi:+g}){lo:+g}"))
    return done
