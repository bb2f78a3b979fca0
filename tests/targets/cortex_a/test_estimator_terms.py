"""The CPU estimator's terms, one at a time, on OpCost rows written by hand: fused PADs, pooling
windows, ops outside XNNPACK, large depthwise kernels, the network context, cold weights; the
[cpu_model] uncertainty band and how calibration derives it; the random stacks' seeds. Only
the read_op_costs test runs the converter (marked slow)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from ran_edge.convert.tflite_ops import OpCost
from ran_edge.errors import UsageError
from ran_edge.targets.cortex_a.calibrate import Sample, band_from_ratios, group_weights
from ran_edge.targets.cortex_a.estimate import cold_weight_share, cost_class, estimate_ops
from ran_edge.targets.cortex_a.spec import (
    BAND_KEYS,
    CpuModelParams,
    CpuSpec,
    UncertaintyBand,
    parse_cpu_model,
)

SPEC = CpuSpec(core="test", cores=4, clock_hz=1e9, simd=("neon",), default_threads=1)
PARAMS = CpuModelParams()


def op(
    name: str,
    out: tuple[int, ...],
    inputs: tuple[tuple[int, ...], ...] | None = None,
    *,
    weights: tuple[int, ...] | None = None,
    macs: int = 0,
    window: int = 1,
    consumers: tuple[str, ...] = (),
    index: int = 0,
) -> OpCost:
    """One int8 op as read_op_costs would list it."""
    inputs = (out,) if inputs is None else inputs
    in_elements = sum(math.prod(s) for s in inputs)
    out_elements = math.prod(out)
    return OpCost(
        index=index,
        op=name,
        name=f"{name.lower()}{index}",
        output=out,
        inputs=inputs,
        weights=weights,
        macs=macs,
        in_elements=in_elements,
        out_elements=out_elements,
        activation_bytes=in_elements + out_elements,
        weight_bytes=math.prod(weights) if weights else 0,
        dtype="int8",
        window=window,
        consumers=consumers,
    )


def conv(cin: int, cout: int, hw: int, k: int = 3, index: int = 0) -> OpCost:
    out = (1, hw, hw, cout)
    return op(
        "CONV_2D",
        out,
        ((1, hw, hw, cin),),
        weights=(cout, k, k, cin),
        macs=hw * hw * cout * k * k * cin,
        index=index,
    )


def depthwise(c: int, hw: int, k: int) -> OpCost:
    return op("DEPTHWISE_CONV_2D", (1, hw, hw, c), weights=(1, k, k, c), macs=hw * hw * c * k * k)


def pad(consumers: tuple[str, ...]) -> OpCost:
    return op("PAD", (1, 34, 34, 16), ((1, 32, 32, 16),), consumers=consumers)


def one(cost: OpCost, params: CpuModelParams = PARAMS, spec: CpuSpec = SPEC, threads: int = 1):
    """The estimate of `cost` alone in a model: its single row."""
    (row,) = estimate_ops([cost], spec, params, threads).ops
    return row


def memory(cost: OpCost, params: CpuModelParams = PARAMS) -> float:
    return cost.bytes / params.memory_bytes_per_cycle


# --- fused PADs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "consumers", [("CONV_2D",), ("DEPTHWISE_CONV_2D",), ("CONV_2D", "DEPTHWISE_CONV_2D")]
)
def test_pad_read_only_by_convs_is_fused_and_free(consumers):
    cost = pad(consumers)
    assert cost_class(cost) == "fused"
    row = one(cost, threads=4)
    assert row.op_class == "fused"
    assert row.cycles == row.compute_cycles == row.memory_cycles == 0.0  # not even the overhead


@pytest.mark.parametrize("consumers", [("ADD",), ("CONV_2D", "ADD"), ()])
def test_pad_read_by_anything_else_is_a_copy(consumers):
    """An ADD reader (or a PAD that is the model's output) needs the padded tensor itself."""
    cost = pad(consumers)
    assert cost_class(cost) == "copy"
    row = one(cost)
    assert row.op_class == "copy"
    expected = cost.activation_bytes / PARAMS.copy_bytes_per_cycle
    assert row.compute_cycles == pytest.approx(expected)
    assert row.cycles == pytest.approx(PARAMS.op_overhead_cycles + expected + memory(cost))
    assert row.cycles > 0


def test_a_fused_pad_does_not_count_as_a_working_op():
    """A PAD + conv pair is one working op: no network context on the conv."""
    c = conv(16, 16, 32)
    alone = estimate_ops([c], SPEC, PARAMS, 1)
    paired = estimate_ops([pad(("CONV_2D",)), c], SPEC, PARAMS, 1)
    assert paired.cycles == pytest.approx(alone.cycles)


# --- pooling -----------------------------------------------------------------------------------


def test_max_pool_cost_grows_with_its_window():
    shape_in, shape_out = (1, 32, 32, 64), (1, 16, 16, 64)
    small = op("MAX_POOL_2D", shape_out, (shape_in,), window=4)
    large = replace(small, window=9)
    assert cost_class(small) == cost_class(large) == "pool"
    a, b = one(small), one(large)
    assert b.cycles > a.cycles
    per_window = math.prod(shape_out) / PARAMS.pool_elements_per_cycle
    assert a.compute_cycles == pytest.approx(4 * per_window)
    assert b.compute_cycles == pytest.approx(9 * per_window)
    assert b.cycles - a.cycles == pytest.approx(5 * per_window)  # memory and overhead alike


# --- ops outside XNNPACK -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "window"),
    [
        ("HARD_SWISH", "reference", 1),
        ("SQRT", "reference", 1),
        ("AVERAGE_POOL_2D", "tflite-move", 4),
        ("RESIZE_NEAREST_NEIGHBOR", "tflite-move", 1),
        ("PADV2", "tflite-move", 1),
    ],
)
def test_ops_outside_xnnpack_pay_a_partition_and_run_on_one_thread(name, kind, window):
    cost = op(name, (1, 16, 16, 32), ((1, 32, 32, 32),), window=window)
    assert cost_class(cost) == kind
    base = one(cost)
    more = one(
        cost, replace(PARAMS, partition_overhead_cycles=PARAMS.partition_overhead_cycles + 7e3)
    )
    assert base.op_class == kind
    assert more.cycles - base.cycles == pytest.approx(7e3)
    work = base.compute_cycles + base.memory_cycles
    assert base.cycles == pytest.approx(
        PARAMS.op_overhead_cycles + PARAMS.partition_overhead_cycles + work
    )
    threaded = one(cost, threads=4)
    assert threaded.speedup == 1.0 and threaded.cycles == pytest.approx(base.cycles)


def _handoff_model(outside: OpCost) -> list[OpCost]:
    return [conv(32, 32, 16, k=1, index=0), replace(outside, index=1)]


def test_handing_a_tensor_to_an_op_outside_xnnpack_costs_per_byte_and_grows_with_threads():
    """A conv then a hard-swish: the hard-swish pays handoff_cycles_per_byte for each byte it
    reads and writes, times 1 + (threads - 1) x growth; off (0) by default."""
    hs = op("HARD_SWISH", (1, 16, 16, 32))
    model = _handoff_model(hs)
    p = replace(PARAMS, handoff_cycles_per_byte=0.5, handoff_thread_growth=0.75)

    def outside_cycles(params, threads):
        return estimate_ops(model, SPEC, params, threads).ops[1].cycles

    assert PARAMS.handoff_cycles_per_byte == 0.0
    for threads in (1, 2, 4):
        extra = outside_cycles(p, threads) - outside_cycles(PARAMS, threads)
        growth = 1 + (threads - 1) * 0.75
        assert extra == pytest.approx(0.5 * hs.activation_bytes * growth)
    conv_alone = estimate_ops(model, SPEC, PARAMS, 2).ops[0].cycles
    assert estimate_ops(model, SPEC, p, 2).ops[0].cycles == pytest.approx(conv_alone)


def test_workers_that_slept_through_a_long_run_outside_xnnpack_cost_a_wake():
    """conv, hard-swish, hard-swish, conv: the run of two hard-swishes is charged one wake per
    extra thread, on its last op, in full when the run is long and hardly when it is short;
    none at 1 thread or when off (the default)."""
    hs = op("HARD_SWISH", (1, 16, 16, 32))
    model = [
        conv(32, 32, 16, k=1, index=0),
        replace(hs, index=1),
        replace(hs, index=2),
        conv(32, 32, 16, k=1, index=3),
    ]
    wake = replace(PARAMS, partition_wake_cycles=30000.0, partition_wake_gap_cycles=1.0)

    def extra(params, threads):
        with_wake = estimate_ops(model, SPEC, params, threads).ops
        without = estimate_ops(model, SPEC, PARAMS, threads).ops
        return [w.cycles - o.cycles for w, o in zip(with_wake, without, strict=True)]

    assert PARAMS.partition_wake_cycles == 0.0
    assert extra(wake, 1) == pytest.approx([0, 0, 0, 0])
    assert extra(wake, 3) == pytest.approx([0, 0, 2 * 30000.0, 0], rel=1e-6)
    short = replace(wake, partition_wake_gap_cycles=1e9)  # the run is short beside the gap
    assert 0 < extra(short, 2)[2] < 30.0


def test_a_run_outside_xnnpack_at_the_end_wakes_the_next_invokes_workers():
    """A model ending in a hard-swish: invokes run back to back, so it too wakes the workers."""
    model = [conv(32, 32, 16, k=1, index=0), op("HARD_SWISH", (1, 16, 16, 32), index=1)]
    wake = replace(PARAMS, partition_wake_cycles=30000.0, partition_wake_gap_cycles=1.0)
    rows = estimate_ops(model, SPEC, wake, 2).ops
    plain = estimate_ops(model, SPEC, PARAMS, 2).ops
    assert rows[1].cycles - plain[1].cycles == pytest.approx(30000.0, rel=1e-6)


def test_no_handoff_without_a_delegated_op():
    """A model of ops outside XNNPACK only never enters the delegate: nothing is handed over
    and no worker wakes (an average pool alone measured the same at 1 and 2 threads)."""
    avg = op("AVERAGE_POOL_2D", (1, 16, 16, 32), ((1, 32, 32, 32),), window=4)
    p = replace(PARAMS, handoff_cycles_per_byte=0.5, partition_wake_cycles=30000.0)
    assert one(avg, p, threads=2).cycles == pytest.approx(one(avg, threads=2).cycles)


def test_outside_xnnpack_rates():
    """HARD_SWISH has its own per-element rate; AVERAGE_POOL_2D per output plus per window
    element; the other moves per element read and written."""
    shape_in, shape_out = (1, 32, 32, 32), (1, 16, 16, 32)
    n_in, n_out = math.prod(shape_in), math.prod(shape_out)
    hs = one(op("HARD_SWISH", shape_out, (shape_out,)))
    assert hs.compute_cycles == pytest.approx(2 * n_out * PARAMS.hard_swish_cycles_per_element)
    avg = one(op("AVERAGE_POOL_2D", shape_out, (shape_in,), window=4))
    per_output = PARAMS.tflite_pool_cycles_per_output + 4 * PARAMS.tflite_pool_cycles_per_element
    assert avg.compute_cycles == pytest.approx(n_out * per_output)
    resize = one(op("RESIZE_NEAREST_NEIGHBOR", shape_in, (shape_out,)))
    expected = (n_in + n_out) * PARAMS.tflite_move_cycles_per_element
    assert resize.compute_cycles == pytest.approx(expected)


def test_max_pool_and_hard_swish_delegated_classes_differ():
    """MAX_POOL_2D stays in XNNPACK (no partition); AVERAGE_POOL_2D does not."""
    shape_in, shape_out = (1, 32, 32, 32), (1, 16, 16, 32)
    assert cost_class(op("MAX_POOL_2D", shape_out, (shape_in,), window=4)) == "pool"
    assert cost_class(op("AVERAGE_POOL_2D", shape_out, (shape_in,), window=4)) == "tflite-move"
    assert cost_class(op("RELU6", shape_out)) == "elementwise"


def test_resize_bilinear_blends_four_neighbours():
    cost = op("RESIZE_BILINEAR", (1, 32, 32, 16), ((1, 16, 16, 16),))
    row = one(cost)
    assert row.op_class == "copy"
    expected = 4 * cost.out_elements / PARAMS.elementwise_elements_per_cycle
    assert row.compute_cycles == pytest.approx(expected)


# --- convs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "rate"),
    [
        (3, "depthwise_macs_per_cycle"),
        (5, "depthwise_macs_per_cycle"),
        (7, "depthwise_large_macs_per_cycle"),
    ],
)
def test_depthwise_rate_by_kernel_size(k, rate):
    """XNNPACK's int8 depthwise kernels stop at 25 taps: a 7x7 runs at the large rate."""
    params = replace(PARAMS, depthwise_macs_per_cycle=3.0, depthwise_large_macs_per_cycle=0.7)
    cost = depthwise(96, 16, k)
    row = one(cost, params)
    expected = cost.macs / getattr(params, rate) * (1 + params.depthwise_c_half / 96)
    assert row.compute_cycles == pytest.approx(expected)


def test_conv_penalty_has_k_n_m_and_cin_terms():
    p = replace(PARAMS, conv_k_half=10.0, conv_n_half=3.0, conv_m_half=5.0, conv_cin_half=2.0)
    cost = conv(8, 24, 6, k=3)  # k = 72, n = 24, m = 36 output pixels, cin = 8 per tap
    penalty = (1 + 10 / 72) * (1 + 3 / 24) * (1 + 5 / 36) * (1 + 2 / 8)
    assert one(cost, p).compute_cycles == pytest.approx(cost.macs / p.conv_macs_per_cycle * penalty)
    # each half-rate parameter slows the conv when raised alone
    for name in ("conv_k_half", "conv_n_half", "conv_m_half", "conv_cin_half"):
        slower = replace(p, **{name: getattr(p, name) * 4})
        assert one(cost, slower).compute_cycles > one(cost, p).compute_cycles, name


def test_few_output_pixels_cost_more_per_mac():
    """The m term: the same MACs on 4 output pixels run slower than on 64 (idle GEMM rows)."""
    narrow, wide = conv(64, 64, 2), conv(64, 64, 8)
    per_mac = [one(c).compute_cycles / c.macs for c in (narrow, wide)]
    assert per_mac[0] > per_mac[1]


def test_conv_tile_terms_off_by_default_leave_macs_over_rate():
    """Profiles fitted before the tile terms existed estimate convs exactly as before."""
    cost = conv(8, 24, 6, k=3)
    k, n, m, cin = 72, 24, 36, 8
    p = PARAMS
    penalty = (1 + p.conv_k_half / k) * (1 + p.conv_n_half / n) * (1 + p.conv_m_half / m)
    penalty *= 1 + p.conv_cin_half / cin
    assert (p.conv_tile_n, p.conv_tile_m, p.conv_pixel_cycles, p.conv_tap_cycles) == (1, 1, 0, 0)
    assert one(cost).compute_cycles == pytest.approx(cost.macs / p.conv_macs_per_cycle * penalty)


def test_conv_costs_whole_tiles_of_output_channels():
    """With a 64-wide tile (x86 AMX), 4 to 64 output channels cost alike; 65 cost two tiles."""
    p = replace(PARAMS, conv_tile_n=64.0, conv_pixel_cycles=10.0, conv_tap_cycles=3.0)
    cycles = {n: one(conv(16, n, 8), p).compute_cycles for n in (4, 32, 64, 65, 128)}
    assert cycles[4] == pytest.approx(cycles[32]) == pytest.approx(cycles[64])
    assert cycles[65] == pytest.approx(2 * cycles[64]) == pytest.approx(cycles[128])


def test_conv_costs_whole_tiles_of_output_pixels():
    """With 16-row tiles (x86 AMX), a 3x3 conv on a 4x4 map costs what it does on 3x3 or 1x1
    (one tile), and 5x5 (25 pixels) costs two: the steps measured on the host."""
    p = replace(PARAMS, conv_tile_n=64.0, conv_tile_m=16.0, conv_m_half=1e-9, conv_tap_cycles=3.0)
    cycles = {hw: one(conv(256, 256, hw), p).compute_cycles for hw in (1, 3, 4, 5, 6, 8)}
    assert cycles[1] == pytest.approx(cycles[3]) == pytest.approx(cycles[4])
    assert cycles[5] == pytest.approx(2 * cycles[4])
    assert cycles[6] == pytest.approx(3 * cycles[4])
    assert cycles[8] == pytest.approx(4 * cycles[4])


def test_conv_reduces_each_taps_channels_in_whole_depth_steps():
    """With conv_tile_k 64 (x86 AMX's 64 bytes), 24, 48 or 64 input channels cost one step
    and 96 costs what 128 does, two; the default (1) costs channels one by one."""
    p = replace(PARAMS, conv_tile_n=64.0, conv_tile_k=64.0, conv_cin_half=1e-9, conv_k_half=1e-9)
    cycles = {c: one(conv(c, 64, 8), p).compute_cycles for c in (24, 48, 64, 96, 128)}
    assert cycles[24] == pytest.approx(cycles[48]) == pytest.approx(cycles[64])
    assert cycles[96] == pytest.approx(cycles[128]) == pytest.approx(2 * cycles[64], rel=1e-2)
    by_channel = replace(p, conv_tile_k=1.0)
    assert PARAMS.conv_tile_k == 1.0
    assert one(conv(96, 64, 8), by_channel).compute_cycles < cycles[96]


def test_conv_speedup_is_capped_by_its_whole_gemm_tiles():
    """XNNPACK hands threads whole GEMM tiles: one 16x64 tile (16 pixels, 64 channels) runs on
    one thread however large its work; three tiles on two threads give at most 1.5x."""
    p = replace(PARAMS, conv_tile_n=64.0, conv_tile_m=16.0, parallel_half_work_cycles=1.0)
    assert one(conv(4096, 64, 4), p, threads=2).speedup == 1.0
    three = op("CONV_2D", (1, 1, 48, 64), ((1, 1, 48, 4096),), weights=(64, 3, 3, 4096))
    assert one(replace(three, macs=48 * 64 * 9 * 4096), p, threads=2).speedup == 1.5
    assert one(conv(4096, 64, 4), PARAMS, threads=2).speedup > 1.5  # untiled: no cap


@pytest.mark.parametrize(("rows", "k", "speedup"), [(1, 3, 1.0), (3, 3, 1.5), (3, 7, 2.0)])
def test_depthwise_speedup_is_capped_by_its_output_rows(rows, k, speedup):
    """A depthwise conv of up to 25 taps is split by output rows (1 row: no speedup; 3 rows on
    2 threads: 1.5x); a 7x7's multipass kernel splits finer (measured 2x on one pixel)."""
    p = replace(PARAMS, parallel_efficiency=1.0, parallel_half_work_cycles=1e-9)
    cost = op("DEPTHWISE_CONV_2D", (1, rows, 64, 256), weights=(1, k, k, 256))
    cost = replace(cost, macs=rows * 64 * 256 * k * k)
    assert one(cost, p, threads=2).speedup == pytest.approx(speedup, rel=1e-6)


def test_few_pixel_indirect_convs_run_a_pixel_at_a_time():
    """With conv_rowwise_max_m 4, a 3x3 conv on 1, 2 or 4 output pixels costs
    conv_rowwise_rows tiled rows per pixel (2x2 measured 2.5x slower than 3x3 on AMX); a
    1x1 conv (a plain GEMM) and 3x3 on more pixels keep their whole tiles; off by default."""
    tiled = replace(PARAMS, conv_tile_n=64.0, conv_tile_m=16.0, conv_m_half=1e-9)
    rowwise = replace(tiled, conv_rowwise_max_m=4.0, conv_rowwise_rows=10.0)
    assert PARAMS.conv_rowwise_max_m == 0.0
    for h, w in ((1, 1), (1, 2), (2, 2)):
        cost = op("CONV_2D", (1, h, w, 256), ((1, h, w, 256),), weights=(256, 3, 3, 256))
        cost = replace(cost, macs=h * w * 256 * 9 * 256)
        ratio = one(cost, rowwise).compute_cycles / one(cost, tiled).compute_cycles
        assert ratio == pytest.approx(h * w * 10 / 16)
    for cost in (conv(256, 256, 3), conv(1024, 1024, 2, k=1)):
        assert one(cost, rowwise).compute_cycles == pytest.approx(one(cost, tiled).compute_cycles)


def test_conv_tap_floor_hides_few_input_channels():
    """Below the tap floor, input channels are free: the tap's gather costs the same."""
    p = replace(
        PARAMS, conv_tile_n=16.0, conv_tap_cycles=50.0, conv_cin_half=1e-9, conv_k_half=1e-9
    )
    few, fewer, many = (one(conv(c, 16, 8), p).compute_cycles for c in (4, 2, 512))
    assert few == pytest.approx(fewer, rel=1e-3)
    assert many > 2 * few
    # more taps cost more floors: a 5x5 over a 3x3 at the same channels
    assert one(conv(4, 16, 8, k=5), p).compute_cycles == pytest.approx(25 / 9 * few, rel=1e-3)


@pytest.mark.parametrize("c_in", [1, 2])
def test_depthwise_with_a_multiplier_is_costed_as_a_gemm_per_input_channel(c_in):
    """A 1-channel input's 10x4 'depthwise' with 64 outputs is a conv to XNNPACK, not its
    slow large-kernel depthwise path (a keyword-spotting net was estimated 20x too slow)."""
    p = replace(PARAMS, conv_tile_n=16.0, conv_pixel_cycles=10.0, conv_tap_cycles=3.0)
    out = (1, 8, 8, 64)
    dw = op(
        "DEPTHWISE_CONV_2D",
        out,
        ((1, 8, 8, c_in),),
        weights=(1, 10, 4, 64),
        macs=8 * 8 * 64 * 40,
    )
    per_channel = op(
        "CONV_2D",
        (1, 8, 8, 64 // c_in),
        ((1, 8, 8, 1),),
        weights=(64 // c_in, 10, 4, 1),
        macs=8 * 8 * 64 // c_in * 40,
    )
    assert one(dw, p).compute_cycles == pytest.approx(c_in * one(per_channel, p).compute_cycles)


def test_transposed_conv_is_the_conv_of_its_macs_times_its_penalty():
    p = replace(PARAMS, conv_tile_n=16.0, conv_pixel_cycles=10.0, transpose_conv_penalty=9.0)
    out, w = (1, 16, 16, 6), (6, 4, 4, 12)
    macs = 8 * 8 * 12 * 6 * 16
    tconv = op("TRANSPOSE_CONV", out, ((1, 8, 8, 12),), weights=w, macs=macs)
    same = op("CONV_2D", out, ((1, 8, 8, 12),), weights=w, macs=macs)
    assert cost_class(tconv) == "conv"
    assert one(tconv, p).compute_cycles == pytest.approx(9.0 * one(same, p).compute_cycles)
    assert one(tconv).compute_cycles == pytest.approx(one(same).compute_cycles)  # default 1


def test_padded_large_depthwise_pays_its_penalty_only_on_maps_no_larger_than_the_padding():
    p = replace(PARAMS, depthwise_large_padded_penalty=9.0)
    for hw, padded in ((1, True), (3, True), (4, False), (8, False)):
        ratio = (
            one(depthwise(64, hw, 7), p).compute_cycles / one(depthwise(64, hw, 7)).compute_cycles
        )
        assert ratio == pytest.approx(9.0 if padded else 1.0), hw
    assert one(depthwise(64, 2, 5), p).compute_cycles == one(depthwise(64, 2, 5)).compute_cycles


# --- the network around an op ------------------------------------------------------------------


def test_context_fraction_applies_to_a_multi_op_model_only():
    params = replace(PARAMS, context_fraction=0.25)
    a, b = conv(16, 16, 32, index=0), conv(16, 16, 32, index=1)
    alone = one(a, params)
    assert alone.cycles == pytest.approx(
        params.op_overhead_cycles + alone.compute_cycles + alone.memory_cycles
    )
    pair = estimate_ops([a, b], SPEC, params, 1).ops
    for row in pair:
        work = row.compute_cycles + row.memory_cycles
        assert row.cycles == pytest.approx(params.op_overhead_cycles + 1.25 * work)
    assert pair[0].cycles > alone.cycles


def test_context_grows_with_threads_only_when_told():
    """context_thread_growth 0 (the default): the same context at any thread count; 1: at 2
    threads, twice the context of 1 thread."""
    costs = [conv(32, 32, 16, index=i) for i in range(2)]

    def context_at(params, threads):
        """The row's work with its context, back out of cycles = overhead + work / speedup +
        sync, over its work alone."""
        row = estimate_ops(costs, SPEC, params, threads).ops[0]
        sync = (threads - 1) * params.thread_sync_cycles
        with_context = (row.cycles - params.op_overhead_cycles - sync) * row.speedup
        return with_context / (row.compute_cycles + row.memory_cycles) - 1

    p = replace(PARAMS, context_fraction=0.1, parallel_half_work_cycles=1e-9)
    assert context_at(p, 1) == pytest.approx(0.1)
    assert context_at(p, 2) == pytest.approx(0.1)
    grown = replace(p, context_thread_growth=1.0)
    assert context_at(grown, 1) == pytest.approx(0.1)
    assert context_at(grown, 2) == pytest.approx(0.2)
    assert context_at(grown, 4) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("l2_over_weights", "threads", "shared", "share"),
    [
        (1.0, 1, False, 0.0),  # they just fit
        (0.75, 1, False, 1 / 3),  # a third beyond it
        (0.5, 1, False, 1.0),  # twice L2: all of them, every inference
        (0.5, 2, False, 1 / 3),  # a second core's private L2 adds half of one
        (0.5, 3, False, 0.0),
        (0.5, 3, True, 1.0),  # a cluster's shared L2 does not grow with threads
    ],
)
def test_cold_weight_share_ramps_with_weights_over_l2(l2_over_weights, threads, shared, share):
    weights = 3_000_000
    spec = replace(SPEC, l2_bytes=int(weights * l2_over_weights), l2_shared=shared)
    params = replace(PARAMS, l2_thread_share=0.5)
    assert cold_weight_share(weights, spec, params, threads) == pytest.approx(share, abs=1e-6)
    assert cold_weight_share(weights, replace(spec, l2_bytes=None), params, threads) == 0.0


def test_cold_weights_cost_extra_when_they_outgrow_l2():
    costs = [conv(256, 256, 4, k=3, index=i) for i in range(3)]  # 3 x 590 KB of weights
    weights = sum(c.weight_bytes for c in costs)
    warm = estimate_ops(costs, SPEC, PARAMS, 1)
    cold_spec = replace(SPEC, l2_bytes=weights // 2)  # twice over: all cold
    cold = estimate_ops(costs, cold_spec, PARAMS, 1)
    assert cold.cycles > warm.cycles
    for w, c in zip(warm.ops, cold.ops, strict=True):
        extra = c.cost.weight_bytes / PARAMS.cold_weight_bytes_per_cycle
        assert c.memory_cycles - w.memory_cycles == pytest.approx(extra)
    roomy = estimate_ops(costs, replace(SPEC, l2_bytes=2 * weights), PARAMS, 1)
    assert roomy.cycles == pytest.approx(warm.cycles)  # weights that fit cost nothing extra


# --- the uncertainty band in [cpu_model] -------------------------------------------------------

BAND_TABLE = {
    "band_low": 0.8,
    "band_high": 1.25,
    "band_coverage": 0.9,
    "band_samples": 16,
    "band_source": "held-out stacks",
}


def _parse(table: dict):
    return parse_cpu_model({"cpu_model": table}, "test.toml")


@pytest.mark.parametrize("tile", ["conv_tile_n", "conv_tile_m", "conv_tile_k"])
def test_a_conv_tile_below_one_is_a_usage_error(tile):
    """A tile is a count of channels or pixels: 0.5 names the key and the floor."""
    with pytest.raises(UsageError, match=f"`{tile}` must be at least 1"):
        _parse({tile: 0.5})


def test_band_keys_parse_to_an_uncertainty_band():
    model = _parse({"fitted": True, "conv_macs_per_cycle": 12.0, **BAND_TABLE})
    assert model.band == UncertaintyBand(0.8, 1.25, 0.9, 16, "held-out stacks")
    assert model.params.conv_macs_per_cycle == 12.0
    assert _parse({"fitted": True}).band is None  # no band keys: no band


@pytest.mark.parametrize("missing", BAND_KEYS)
def test_band_missing_a_key_names_it(missing):
    table = {k: v for k, v in BAND_TABLE.items() if k != missing}
    with pytest.raises(UsageError) as err:
        _parse(table)
    message = str(err.value)
    assert f"but not {missing}" in message and "test.toml" in message


@pytest.mark.parametrize(
    "edit",
    [
        {"band_low": 1.3, "band_high": 1.2},
        {"band_coverage": 1.0},
        {"band_coverage": 1.5},
        {"band_coverage": 0},
        {"band_low": -0.5},
        {"band_samples": 2.5},
    ],
)
def test_band_out_of_range_is_a_usage_error(edit):
    with pytest.raises(UsageError, match="test.toml"):
        _parse({**BAND_TABLE, **edit})


def test_band_interval_arithmetic():
    band = UncertaintyBand(0.8, 1.25, 0.9, 16, "x")
    assert band.interval(10.0) == pytest.approx((8.0, 12.5))
    # a rate from an estimated latency: a slower measurement (high ratio) is a lower rate
    assert band.rate_interval(100.0) == pytest.approx((80.0, 125.0))
    low, high = band.rate_interval(100.0)
    assert low <= 100.0 <= high


# --- how calibration derives the band ----------------------------------------------------------


def test_band_from_ratios_covers_its_share_of_a_known_log_normal():
    rng = np.random.default_rng(7)
    mu, sigma = 0.1, 0.2
    band = band_from_ratios(np.exp(rng.normal(mu, sigma, 2000)), "synthetic")
    assert band.coverage == 0.9 and band.samples == 2000 and band.source == "synthetic"
    assert 0 < band.low < math.exp(mu) < band.high
    fresh = np.exp(rng.normal(mu, sigma, 20000))
    covered = float(np.mean((fresh >= band.low) & (fresh <= band.high)))
    assert 0.88 <= covered <= 0.92, covered


def test_band_from_ratios_widens_with_fewer_samples():
    """The t-quantile and sqrt(1 + 1/n): the same spread from 4 ratios gives a wider band."""
    few = band_from_ratios([0.9, 1.0, 1.0, 1.1], "few")
    many = band_from_ratios([0.9, 1.0, 1.0, 1.1] * 10, "many")
    assert few.low < many.low and few.high > many.high


def test_band_from_ratios_needs_three():
    with pytest.raises(UsageError, match="at least 3"):
        band_from_ratios([1.0, 1.1], "x")
    assert band_from_ratios([0.9, 1.0, 1.1], "x").samples == 3


def test_group_weights_give_singles_and_stacks_equal_say():
    def sample(name: str) -> Sample:
        return Sample(name, (), 1, 1.0)

    samples = [sample(f"conv{i}") for i in range(30)] + [sample(f"stack{i:02d}") for i in range(6)]
    weights = group_weights(samples)
    stacks = np.array([s.name.startswith("stack") for s in samples])
    assert weights[stacks].sum() == pytest.approx(weights[~stacks].sum())
    assert weights.sum() == pytest.approx(len(samples))  # a reweighting, not a rescaling
    assert len(set(weights[stacks])) == len(set(weights[~stacks])) == 1  # alike within a group
    only_singles = group_weights(samples[:30])
    assert np.all(only_singles == 1.0)


# --- read from a real model --------------------------------------------------------------------


@pytest.mark.slow  # the converter: a few seconds
def test_read_op_costs_has_pool_window_and_pad_consumers():
    """A padded 3x3 max pool then a strided conv: the converter pads the pool with a PADV2 (a
    TFLite kernel) and the conv with a PAD (torch pads both sides, TFLite's SAME does not),
    which only the conv reads: XNNPACK folds that one in."""
    from torch import nn

    from ran_edge.convert.tflite_ops import read_op_costs
    from ran_edge.quiet import captured_output
    from ran_edge.targets.cortex_a.microbench import build_int8

    module = nn.Sequential(nn.MaxPool2d(3, 2, 1), nn.Conv2d(8, 8, 3, stride=2, padding=1))
    with captured_output():
        data = build_int8(module, (1, 8, 16, 16))
    costs = read_op_costs(data)
    rows = [(c.op, c.output, c.window, c.consumers) for c in costs]
    assert rows == [
        ("PADV2", (1, 18, 18, 8), 1, ("MAX_POOL_2D",)),
        ("MAX_POOL_2D", (1, 8, 8, 8), 9, ("PAD",)),
        ("PAD", (1, 10, 10, 8), 1, ("CONV_2D",)),
        ("CONV_2D", (1, 4, 4, 8), 1, ()),  # the model's output: nothing reads it
    ]
    assert [cost_class(c) for c in costs] == ["tflite-move", "pool", "fused", "conv"]
    estimate = estimate_ops(costs, SPEC, PARAMS, 1)
    assert estimate.ops[2].cycles == 0.0 and all(o.cycles > 0 for o in estimate.ops[:2])


@pytest.mark.slow  # the converter: a few seconds
def test_read_op_costs_counts_a_transposed_convs_weights_and_macs():
    """TRANSPOSE_CONV's inputs are (output shape, weights, input, bias): the weights are not an
    activation, and every input pixel scatters a kh x kw x Cout patch (MACs, not 0)."""
    from torch import nn

    from ran_edge.convert.tflite_ops import read_op_costs
    from ran_edge.quiet import captured_output
    from ran_edge.targets.cortex_a.microbench import build_int8

    with captured_output():
        data = build_int8(nn.ConvTranspose2d(12, 6, 4, 2, 1), (1, 12, 8, 8))
    (cost,) = read_op_costs(data)
    assert cost.op == "TRANSPOSE_CONV"
    assert cost.weights == (6, 4, 4, 12) and cost.inputs == ((1, 8, 8, 12),)
    assert cost.output == (1, 16, 16, 6)
    assert cost.macs == 8 * 8 * 12 * 6 * 4 * 4
    assert cost.weight_bytes >= 6 * 4 * 4 * 12  # int8 weights (+ int32 bias)
    assert cost.activation_bytes == 8 * 8 * 12 + 16 * 16 * 6


# --- random stacks -----------------------------------------------------------------------------


def test_random_stack_is_deterministic_per_seed():
    from ran_edge.targets.cortex_a.microbench import random_stack

    a, shape_a = random_stack(5)
    b, shape_b = random_stack(5)
    assert str(a) == str(b) and shape_a == shape_b
    drawn = {(str(random_stack(s)[0]), random_stack(s)[1]) for s in range(1, 9)}
    assert len(drawn) == 8  # every seed draws its own network
    assert all(shape[:2] == (1, 3) and shape[2] == shape[3] for _, shape in drawn)


def test_cpu_model_table_round_trips_its_band():
    """What calibrate-target writes reads back as the band it derived (4 decimals, any size)."""
    import tomllib

    from ran_edge.targets.cortex_a.calibrate import cpu_model_table

    band = UncertaintyBand(0.8531, 1.2049, 0.9, 16, 'calibrate-target on "box": 16 timings')
    params = replace(PARAMS, conv_macs_per_cycle=13.25)
    text = cpu_model_table(params, "a test", None, band=band)
    model = parse_cpu_model({"cpu_model": tomllib.loads(text)["cpu_model"]}, "written.toml")
    assert model.band == band
    assert model.params == params and model.fitted
    assert _parse({}).band is None
    no_band = cpu_model_table(params, "a test", None)
    assert "band_" not in no_band


def test_fit_chooses_the_conv_tile_width_that_explains_the_timings():
    """Timings made by 16-wide, 4-row tiles: the fit tries each width and keeps 16, then each
    row tile at that width and keeps 4; the terms that start switched off (0 cycles) are
    switched on and sized."""
    from ran_edge.targets.cortex_a.calibrate import fit, predict

    truth = replace(
        PARAMS,
        conv_tile_n=16.0,
        conv_tile_m=4.0,
        conv_pixel_cycles=40.0,
        conv_tap_cycles=6.0,
        conv_n_half=1e-9,
    )
    shapes = [
        (cin, cout, hw, k)
        for cin in (3, 16, 64)
        for cout in (8, 16, 24, 40, 64)
        for hw, k in ((8, 3), (16, 1), (5, 3), (3, 1))
    ]
    samples = []
    for i, (cin, cout, hw, k) in enumerate(shapes):
        costs = (conv(cin, cout, hw, k=k),)
        ms = estimate_ops(list(costs), SPEC, truth, 1).latency_ms
        samples.append(Sample(f"c{i}", costs, 1, ms))
    names = ("conv_macs_per_cycle", "conv_pixel_cycles", "conv_tap_cycles")
    start = replace(
        truth, conv_tile_n=1.0, conv_tile_m=1.0, conv_pixel_cycles=0.0, conv_tap_cycles=0.0
    )
    steps = {"conv_tile_n": (1, 16, 64), "conv_tile_m": (1, 4)}
    fitted = fit(samples, SPEC, start, names=names, prior_weight=0.0, steps=steps)
    assert fitted.conv_tile_n == 16 and fitted.conv_tile_m == 4
    assert fitted.conv_pixel_cycles > 0 and fitted.conv_tap_cycles > 0
    for s in samples:
        assert predict(s, SPEC, fitted) == pytest.approx(s.measured_ms, rel=0.02)
