"""Analytical latency of an int8 model on a Cortex-A (or host) CPU running LiteRT + XNNPACK.

Per op: compute work (MACs, elements or bytes over the rate of its class, with a shape
penalty for narrow convs), plus bytes over the memory rate; threads split that work with an
efficiency that grows with the op's size (XNNPACK parallelises over output tiles, so small
ops gain little); a fixed dispatch overhead per op and per invoke. An op XNNPACK leaves to
TFLite's kernels also pays for the tensors handed to it and back and, with threads, for waking
the workers that slept through it. A PAD read only by convs costs nothing: XNNPACK folds it
into the conv's own padding. Pooling is costed per window element (the filter area comes from
the flatbuffer, not the shapes). The parameters live in the target profile's [cpu_model]
table (docs/cpu-targets.md says which are fitted to what).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ran_edge.convert.tflite_ops import OpCost, op_class
from ran_edge.targets.cortex_a.delegation import NOT_DELEGATED_INT8
from ran_edge.targets.cortex_a.spec import CpuModelParams, CpuSpec


@dataclass(frozen=True)
class OpEstimate:
    """One op's estimated cost on the target."""

    cost: OpCost
    op_class: str
    cycles: float  # wall-clock cycles at the target clock, threads included
    compute_cycles: float  # single-thread compute part
    memory_cycles: float  # single-thread memory part
    speedup: float

    @property
    def memory_bound(self) -> bool:
        return self.memory_cycles > self.compute_cycles


@dataclass(frozen=True)
class CpuEstimate:
    """The model's estimated latency and its per-op breakdown."""

    ops: tuple[OpEstimate, ...]
    invoke_cycles: float
    clock_hz: float
    threads: int

    @property
    def cycles(self) -> float:
        return self.invoke_cycles + sum(o.cycles for o in self.ops)

    @property
    def latency_ms(self) -> float:
        return 1e3 * self.cycles / self.clock_hz


def _conv_cycles(cost: OpCost, p: CpuModelParams) -> float:
    """A conv as its GEMM runs it (`_gemm_cycles`), read off the op's shapes; a transposed
    conv as the conv of its MACs per output pixel, times its own penalty (XNNPACK's int8
    deconvolution measured ~9x slower than that on x86)."""
    cin = cost.weights[-1] if cost.weights else 1  # channels per tap: the K loop's step
    m, n = _gemm_shape(cost)
    k = cost.macs / max(1, cost.out_elements)  # reduction depth kh*kw*Cin (/ stride^2)
    cycles = _gemm_cycles(m, n, cin, k, p)
    return cycles * p.transpose_conv_penalty if cost.op == "TRANSPOSE_CONV" else cycles


def _gemm_shape(cost: OpCost) -> tuple[float, int]:
    """A conv's GEMM: output pixels (its rows) by output channels (its columns)."""
    n = cost.output[-1] if cost.output else 1
    return cost.out_elements / max(n, 1), n


def _whole_tiles(size: float, tile: float) -> int:
    return math.ceil(size / max(1.0, tile) - 1e-9)


def _rounded_up(size: float, tile: float) -> float:
    """`size` in whole tiles: what a kernel that works a tile at a time computes."""
    return _whole_tiles(size, tile) * max(1.0, tile)


def _gemm_cycles(m: float, n: int, cin: int, k: float, p: CpuModelParams) -> float:
    """m output pixels by n output channels over a reduction of depth k (taps x cin): per
    pixel (rounded up to whole tiles of conv_tile_m, or a pixel at a time on few pixels) and
    tile of conv_tile_n channels, a fixed cost plus, per tap, the larger of the tap's floor and
    its MACs (input channels in whole steps of conv_tile_k) over the rate (a smooth maximum,
    so the fit sees a slope); times penalties for shallow and short GEMMs (and for narrow ones when there is no tile:
    conv_tile_n 1)."""
    taps = k / max(cin, 1)
    tile = max(1.0, p.conv_tile_n)
    tiles = _whole_tiles(n, tile)
    if taps > 1 and m <= p.conv_rowwise_max_m:  # a pixel at a time
        rows = m * p.conv_rowwise_rows
    else:
        rows = _rounded_up(m, p.conv_tile_m)
    per_tap = (
        _rounded_up(cin, p.conv_tile_k)
        * tile
        / p.conv_macs_per_cycle
        * (1 + p.conv_cin_half / max(cin, 1))
    )
    if p.conv_tap_cycles > 0:
        per_tap = (per_tap**4 + p.conv_tap_cycles**4) ** 0.25
    penalty = (1 + p.conv_k_half / max(k, 1)) * (1 + p.conv_m_half / max(m, 1))
    if tile <= 1:  # whole tiles already cost a narrow conv its idle channels
        penalty *= 1 + p.conv_n_half / max(n, 1)
    return rows * tiles * (p.conv_pixel_cycles + taps * per_tap) * penalty


# XNNPACK's int8 depthwise kernels take up to 25 taps (5x5) in one pass over the window
UNIPASS_TAPS = 25


def _depthwise_taps(cost: OpCost) -> int:
    return cost.weights[1] * cost.weights[2] if cost.weights else 9


def _depthwise_cycles(cost: OpCost, p: CpuModelParams) -> float:
    """XNNPACK's depthwise kernel takes one output channel per input channel; with a depth
    multiplier (a 1-channel input's first layer, e.g. a keyword-spotting net's 10x4) it runs
    a GEMM per input channel instead, costed as convs of 1 input channel."""
    c = cost.output[-1] if cost.output else 1
    c_in = cost.inputs[0][-1] if cost.inputs and cost.inputs[0] else c
    taps = _depthwise_taps(cost)
    if c_in and c > c_in:
        m = cost.out_elements / c
        return c_in * _gemm_cycles(m, c // c_in, 1, taps, p)
    penalty = 1 + p.depthwise_c_half / max(c, 1)
    if taps <= UNIPASS_TAPS:
        return cost.macs / p.depthwise_macs_per_cycle * penalty
    if cost.inputs and min(cost.inputs[0][1:3]) <= cost.weights[1] // 2:
        penalty *= p.depthwise_large_padded_penalty  # the input no larger than its padding
    return cost.macs / p.depthwise_large_macs_per_cycle * penalty


def _compute_cycles(cost: OpCost, kind: str, p: CpuModelParams) -> float:
    if kind == "conv":
        return _conv_cycles(cost, p)
    if kind == "depthwise":
        return _depthwise_cycles(cost, p)
    if kind == "fc":
        k = cost.weights[-1] if cost.weights else 1
        return cost.macs / p.fc_macs_per_cycle * (1 + p.conv_k_half / max(k, 1))
    if kind in ("elementwise", "quantize"):  # XNNPACK takes int8 (de)quantize too
        return (cost.in_elements + cost.out_elements) / p.elementwise_elements_per_cycle
    if kind == "pool":
        return cost.out_elements * cost.window / p.pool_elements_per_cycle
    if kind == "reduce":
        return cost.in_elements / p.reduce_elements_per_cycle
    if cost.op == "RESIZE_BILINEAR":  # four neighbours blended per output element
        return 4 * cost.out_elements / p.elementwise_elements_per_cycle
    if kind == "copy":
        return cost.activation_bytes / p.copy_bytes_per_cycle
    if kind == "free":
        return 0.0
    if kind == "tflite-move" and cost.op == "AVERAGE_POOL_2D":
        per_output = (
            p.tflite_pool_cycles_per_output + cost.window * p.tflite_pool_cycles_per_element
        )
        return cost.out_elements * per_output
    if kind == "tflite-move":
        return (cost.in_elements + cost.out_elements) * p.tflite_move_cycles_per_element
    if cost.op == "HARD_SWISH":
        return (cost.in_elements + cost.out_elements) * p.hard_swish_cycles_per_element
    # any other op XNNPACK does not take runs in a TFLite reference kernel, one element at a time
    return (cost.in_elements + cost.out_elements) * p.reference_cycles_per_element


_OUTSIDE_XNNPACK = ("reference", "tflite-move")
_CONVS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})
# Ops outside XNNPACK that only move or average data: TFLite's kernels for them are plain loops.
_MOVES = frozenset({"AVERAGE_POOL_2D", "RESIZE_NEAREST_NEIGHBOR", "PADV2"})


def cost_class(cost: OpCost) -> str:
    """The op's class: a PAD that only convs read is folded into them ("fused"); an op the
    XNNPACK delegate leaves to TFLite's kernels is "tflite-move" (it only moves or averages
    data) or "reference", whatever its kind elsewhere."""
    if cost.op == "PAD" and cost.consumers and set(cost.consumers) <= _CONVS:
        return "fused"
    if cost.op in NOT_DELEGATED_INT8:
        return "tflite-move" if cost.op in _MOVES else "reference"
    return op_class(cost.op)


def _speedup(cost: OpCost, work: float, threads: int, kind: str, p: CpuModelParams) -> float:
    """Threads' speedup on one op: near 1 for tiny ops, 1 + (n-1)*efficiency for large ones,
    and never more than its pieces allow (`_parallel_pieces`)."""
    if threads <= 1 or kind in ("reference", "tflite-move", "free", "fused"):
        return 1.0
    speedup = 1.0 + (threads - 1) * p.parallel_efficiency * work / (
        work + p.parallel_half_work_cycles
    )
    pieces = _parallel_pieces(cost, kind, p)
    if pieces == math.inf:
        return speedup
    return min(speedup, pieces / math.ceil(pieces / threads))


def _parallel_pieces(cost: OpCost, kind: str, p: CpuModelParams) -> float:
    """How many pieces XNNPACK hands its threads: a conv's GEMM whole tiles of output pixels by
    output channels; a depthwise conv of up to 25 taps, output rows (3 rows on 2 threads: 1.6x
    measured on the x86 host, 1 row 1.2x); every other op, as many as its work allows (inf)."""
    if kind == "conv" and cost.output:
        m, n = _gemm_shape(cost)
        return _whole_tiles(m, p.conv_tile_m) * _whole_tiles(n, p.conv_tile_n)
    if kind == "depthwise" and len(cost.output) == 4 and cost.inputs and cost.inputs[0]:
        if cost.inputs[0][-1] != cost.output[-1]:  # a depth multiplier: GEMMs, not rows
            return math.inf
        if _depthwise_taps(cost) <= UNIPASS_TAPS:  # multipass kernels split finer
            return cost.output[1]
    return math.inf


def cold_weight_share(
    weight_bytes: int, spec: CpuSpec, params: CpuModelParams, threads: int
) -> float:
    """The share of a model's weights fetched from beyond L2 on every inference: none while
    they fit, all once they fill it twice over (in between, what the cache keeps is reused).
    Threads split a conv's output channels, so each core reads its own share of the weights:
    each extra core's private L2 adds l2_thread_share of one (spec.l2_shared: none)."""
    if not spec.l2_bytes:
        return 0.0
    l2 = spec.l2_bytes * (1 if spec.l2_shared else 1 + (threads - 1) * params.l2_thread_share)
    return min(1.0, max(0.0, weight_bytes / l2 - 1.0))


def _with_worker_wakes(
    rows: list[OpEstimate], threads: int, params: CpuModelParams
) -> list[OpEstimate]:
    """Each run of ops outside XNNPACK costs the wake of the workers that slept through it,
    charged to the run's last op. Invokes run back to back, so a run at the end of the model
    leads into the first delegated op of the next invoke."""
    order = [i for i, r in enumerate(rows) if r.op_class not in ("free", "fused")]
    first = next(p for p, i in enumerate(order) if rows[i].op_class not in _OUTSIDE_XNNPACK)
    order = order[first:] + order[:first]  # start at a delegated op: no run wraps around
    rows = list(rows)
    gap = 0.0
    for position, i in enumerate(order):
        if rows[i].op_class not in _OUTSIDE_XNNPACK:
            continue
        gap += rows[i].cycles
        after = order[(position + 1) % len(order)]
        if rows[after].op_class in _OUTSIDE_XNNPACK:
            continue
        asleep = gap**2 / (gap**2 + params.partition_wake_gap_cycles**2)
        wake = (threads - 1) * params.partition_wake_cycles * asleep
        rows[i] = replace(rows[i], cycles=rows[i].cycles + wake)
        gap = 0.0
    return rows


def estimate_ops(
    costs: list[OpCost], spec: CpuSpec, params: CpuModelParams, threads: int | None = None
) -> CpuEstimate:
    """Estimate every op of a model; `threads` defaults to the profile's, capped at its cores."""
    n = max(1, min(threads or spec.default_threads, spec.cores))
    cold = cold_weight_share(sum(c.weight_bytes for c in costs), spec, params, n)
    kinds = [cost_class(c) for c in costs]
    working = [k for k in kinds if k not in ("free", "fused")]
    delegated = any(k not in _OUTSIDE_XNNPACK for k in working)
    handoff = params.handoff_cycles_per_byte * (1 + (n - 1) * params.handoff_thread_growth)
    growth = 1 + (n - 1) * params.context_thread_growth
    context = 1.0 + (params.context_fraction * growth if len(working) > 1 else 0.0)
    rows: list[OpEstimate] = []
    for cost, kind in zip(costs, kinds, strict=True):
        if kind == "fused":
            rows.append(OpEstimate(cost, kind, 0.0, 0.0, 0.0, 1.0))
            continue
        compute = _compute_cycles(cost, kind, params)
        memory = 0.0 if kind == "free" else cost.bytes / params.memory_bytes_per_cycle
        if cold:
            memory += cold * cost.weight_bytes / params.cold_weight_bytes_per_cycle
        work = (compute + memory) * context
        speedup = _speedup(cost, work, n, kind, params)
        sync = (n - 1) * params.thread_sync_cycles if speedup > 1.0 else 0.0
        overhead = params.op_overhead_cycles
        if kind in _OUTSIDE_XNNPACK:  # it splits the delegate's graph in two
            overhead += params.partition_overhead_cycles
            if delegated:  # and takes its input from XNNPACK, and gives its output back
                overhead += handoff * cost.activation_bytes
        cycles = overhead + work / speedup + sync
        rows.append(OpEstimate(cost, kind, cycles, compute, memory, speedup))
    if n > 1 and delegated and params.partition_wake_cycles > 0:
        rows = _with_worker_wakes(rows, n, params)
    clock = spec.clock_hz or params.reference_clock_hz
    return CpuEstimate(tuple(rows), params.invoke_overhead_cycles, clock, n)
