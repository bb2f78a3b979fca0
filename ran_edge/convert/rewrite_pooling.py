"""Rewrites of reductions and resizes the converter lays out in ways Vela refuses.

- mean over H/W (`x.mean((2, 3))`, `x.flatten(2).mean(-1)`, a Conv1d's `x.mean(-1)`, a
  global adaptive pool that is not simply flattened) -> average pooling: the converter
  otherwise transposes the map back to NCHW and emits a MEAN over the last axis, a depth
  reduction for Vela ("Unsupported depth-reduction").
- mean over channels -> 1x1 convolution with weights 1/C: Vela reduces over depth only when
  H, W or C is 1.
- bilinear upsampling by 4x/8x -> nearest upsampling + a fixed depthwise filter: Vela runs
  half-pixel bilinear resizes at 2x only.
"""

from __future__ import annotations

import torch
from torch import fx

from ran_edge.convert.rewrite_graph import (
    Builder,
    Replacements,
    arg,
    call_nodes,
    constant,
    fmt_shape,
    is_float,
    norm_dims,
    shape_of,
)

aten = torch.ops.aten

# Vela (regor) AVERAGE_POOL_2D with VALID padding: kernel height <= 256, product <= 256*256.
MAX_POOL_KERNEL_H = 256
MAX_POOL_KERNEL_PRODUCT = 256 * 256


_MEAN_TARGETS = (aten.mean.dim,)
_VIEW_TARGETS = (aten.view.default, aten.reshape.default, aten._unsafe_view.default)
_FLATTEN_TARGETS = (aten.flatten.using_ints,)


def _pool_source(node: fx.Node) -> tuple[fx.Node, tuple[int, int, int, int]] | None:
    """For a 3-D (N, C, L) tensor that is a flattened (N, C, H, W) map, that 4-D map."""
    if node.target not in _VIEW_TARGETS + _FLATTEN_TARGETS:
        return None
    src = node.args[0]
    src_shape = shape_of(src)
    shape = shape_of(node)
    if src_shape is None or shape is None or len(src_shape) != 4 or len(shape) != 3:
        return None
    n, c, h, w = src_shape
    if shape != (n, c, h * w):
        return None
    return src, (n, c, h, w)  # type: ignore[return-value]


def _fits_pool(kh: int, kw: int) -> bool:
    return kh <= MAX_POOL_KERNEL_H and kh * kw <= MAX_POOL_KERNEL_PRODUCT


def rewrite_spatial_mean(gm: fx.GraphModule) -> Replacements:
    """mean over H and/or W of (N, C, H, W), or over L of (N, C, L) -> avg_pool2d + view."""
    done = []
    for node in call_nodes(gm, _MEAN_TARGETS):
        x = node.args[0]
        shape, out_shape = shape_of(x), shape_of(node)
        if shape is None or out_shape is None or not is_float(x):
            continue
        if arg(node, 3, "dtype") is not None:
            continue
        dims = norm_dims(arg(node, 1, "dim"), len(shape))
        if len(shape) == 4 and dims in ((2,), (3,), (2, 3)):
            src, (n, c, h, w) = x, shape
            kh, kw = (h if 2 in dims else 1), (w if 3 in dims else 1)
        elif len(shape) == 3 and dims == (2,):
            flat = _pool_source(x)
            if flat is not None:  # x.flatten(2).mean(-1): pool the map itself
                src, (n, c, h, w) = flat
                kh, kw = h, w
            else:  # Conv1d features (N, C, L): pool a (N, C, 1, L) view
                n, c, length = shape
                src = Builder(gm.graph, node).call(aten.view.default, x, [n, c, 1, length])
                h, w, kh, kw = 1, length, 1, length
        else:
            continue
        if (kh, kw) == (1, 1) or not _fits_pool(kh, kw):
            continue
        _pool(gm, node, src, kh, kw, out_shape)
        done.append((node, f"mean over {dims} of {fmt_shape(shape)} -> avg_pool2d {kh}x{kw}"))
    for node in call_nodes(gm, (aten.adaptive_avg_pool2d.default,)):
        x, size = node.args[0], arg(node, 1, "output_size")
        shape, out_shape = shape_of(x), shape_of(node)
        if shape is None or out_shape is None or len(shape) != 4 or list(size or ()) != [1, 1]:
            continue
        if all(user.target in _CLASSIFIER_USERS for user in node.users):
            continue  # pool -> flatten -> linear: the converter keeps this NHWC already
        n, c, h, w = shape
        if (h, w) == (1, 1) or not _fits_pool(h, w):
            continue
        _pool(gm, node, x, h, w, out_shape)
        done.append((node, f"adaptive_avg_pool2d(1) of {fmt_shape(shape)} -> avg_pool2d {h}x{w}"))
    return done


# Users of a global pool that keep it channel-last in the converter (the classifier idiom).
_CLASSIFIER_USERS = frozenset(
    {
        *_VIEW_TARGETS,
        *_FLATTEN_TARGETS,
        aten.squeeze.dims,
        aten.squeeze.dim,
        aten.linear.default,
        aten.conv2d.default,
        aten.mul.Tensor,
    }
)


def _pool(
    gm: fx.GraphModule, node: fx.Node, src: fx.Node, kh: int, kw: int, out_shape: tuple[int, ...]
) -> None:
    """Replace `node` by avg_pool2d(src, (kh, kw)) viewed to `out_shape`."""
    b = Builder(gm.graph, node)
    # Stride 1: with a kernel the size of the map the output is 1 either way, and stride 1
    # is inside every Ethos-U stride limit.
    pooled = b.call(aten.avg_pool2d.default, src, [kh, kw], [1, 1])
    b.replace(b.call(aten.view.default, pooled, list(out_shape)))


# ---------------------------------------------------------------------------- channel mean


def rewrite_channel_mean(gm: fx.GraphModule) -> Replacements:
    """mean over C of (N, C, H, W) (keepdim) -> 1x1 conv with weights 1/C.

    Vela reduces over depth only when H, W or C is 1; a convolution has no such limit. The
    weight is one value per output channel, so per-channel int8 weights represent it exactly.
    """
    done = []
    for node in call_nodes(gm, _MEAN_TARGETS):
        x = node.args[0]
        shape, out_shape = shape_of(x), shape_of(node)
        if shape is None or out_shape is None or len(shape) != 4 or not is_float(x):
            continue
        if arg(node, 3, "dtype") is not None:
            continue
        if norm_dims(arg(node, 1, "dim"), 4) != (1,):
            continue
        n, c, h, w = shape
        if c == 1 or h * w == 1:
            continue  # Vela runs those as they are
        weight = constant(gm, node, f"_ran_edge_channel_mean_{c}", torch.full((1, c, 1, 1), 1 / c))
        b = Builder(gm.graph, node)
        conv = b.call(aten.conv2d.default, x, weight)
        b.replace(b.call(aten.view.default, conv, list(out_shape)))
        done.append((node, f"mean over channels of {fmt_shape(shape)} -> 1x1 conv (1/{c})"))
    return done


# ---------------------------------------------------------------------------- upsampling

# Vela runs half-pixel bilinear resizes at 2x only, nearest-neighbour ones at 2x/4x/8x.
_NEAREST_FACTORS = (4, 8)


def bilinear_kernel(scale: int) -> torch.Tensor:
    """1-D filter that turns a nearest-upsampled signal into half-pixel linear interpolation.

    Nearest upsampling by s repeats each sample s times; averaging with [1, 2, ..., 2, 1]/2s
    (even s) or a box of width s (odd s) weights the two neighbouring inputs by exactly the
    odd multiples of 1/2s (or the multiples of 1/s) that half-pixel bilinear interpolation
    uses. With reflection padding of the upsampled map (= edge replication, the pad is
    shorter than one repeated block) the borders match PyTorch's clamping too.
    """
    if scale % 2:
        return torch.full((scale,), 1.0 / scale)
    k = torch.full((scale + 1,), 2.0)
    k[0] = k[-1] = 1.0
    return k / (2 * scale)


def rewrite_bilinear_upsample(gm: fx.GraphModule) -> Replacements:
    """bilinear upsample by 4x/8x (align_corners=False) -> nearest upsample + depthwise conv."""
    done = []
    targets = (aten.upsample_bilinear2d.vec, aten.upsample_bilinear2d.default)
    for node in call_nodes(gm, targets):
        x = node.args[0]
        shape, out_shape = shape_of(x), shape_of(node)
        if shape is None or out_shape is None or len(shape) != 4 or not is_float(x):
            continue
        if arg(node, 2, "align_corners", False):
            continue
        n, c, h, w = shape
        oh, ow = out_shape[2:]
        if oh % h or ow % w or oh // h != ow // w or oh // h not in _NEAREST_FACTORS:
            continue
        scale = oh // h
        k1 = bilinear_kernel(scale)
        pad = len(k1) // 2
        weight = constant(
            gm,
            node,
            f"_ran_edge_bilinear_x{scale}_c{c}",
            (k1[:, None] * k1[None, :]).expand(c, 1, -1, -1).contiguous(),
        )
        b = Builder(gm.graph, node)
        up = b.call(aten.upsample_nearest2d.vec, x, [oh, ow], None)
        padded = b.call(aten.reflection_pad2d.default, up, [pad, pad, pad, pad])
        b.replace(b.call(aten.conv2d.default, padded, weight, None, [1, 1], [0, 0], [1, 1], c))
        detail = f"bilinear x{scale} of {fmt_shape(shape)} -> nearest x{scale} + {len(k1)}x{len(k1)} depthwise"
        done.append((node, detail))
    return done
