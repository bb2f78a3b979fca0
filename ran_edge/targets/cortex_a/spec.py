"""Cortex-A (and host) target profiles: the [cpu] facts and the [cpu_model] estimator parameters.

A profile of kind `cortex-a` describes a CPU that runs the int8 model in LiteRT with the
XNNPACK delegate: cores, clock, SIMD features, caches and memory bandwidth (each with its
source in the TOML), plus the parameters of ran-edge's analytical latency model, fitted to
measurements (`ran-edge calibrate-target`) or to published figures (see docs/cpu-targets.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

from ran_edge.errors import UsageError
from ran_edge.targets.profile_fields import positive, positive_int, require, table

KIND = "cortex-a"
SIMD_FEATURES = ("neon", "dotprod", "i8mm", "sve", "sse4", "avx2", "avx512", "avx512vnni")


@dataclass(frozen=True)
class CpuSpec:
    """What the board is: cores, clock, SIMD, caches, memory. `clock_hz` None: not fixed (host)."""

    core: str
    cores: int
    clock_hz: float | None
    simd: tuple[str, ...]
    default_threads: int
    l1d_bytes: int | None = None
    l1i_bytes: int | None = None
    l2_bytes: int | None = None
    l3_bytes: int | None = None
    l2_shared: bool = False  # one L2 for the cluster (Cortex-A53/A72), not one per core
    memory: str = ""
    memory_bandwidth_bytes_per_s: float | None = None

    @property
    def has_dotprod(self) -> bool:
        return "dotprod" in self.simd


@dataclass(frozen=True)
class CpuModelParams:
    """Parameters of the per-op latency model (docs/cpu-targets.md), in cycles of `clock_hz`.

    Rates are per core. Work of an op = its MACs (or elements, or bytes) over the rate for its
    class, times a shape penalty, plus bytes over the memory rate; threads divide that work
    with an efficiency that grows with the op's size, at a synchronisation cost per extra
    thread; every op adds a fixed overhead.
    """

    conv_macs_per_cycle: float = 8.0
    depthwise_macs_per_cycle: float = 2.0
    fc_macs_per_cycle: float = 4.0
    elementwise_elements_per_cycle: float = 2.0
    pool_elements_per_cycle: float = 4.0
    reduce_elements_per_cycle: float = 8.0
    copy_bytes_per_cycle: float = 8.0
    reference_cycles_per_element: float = 10.0  # ops XNNPACK does not take (TFLite kernels)
    hard_swish_cycles_per_element: float = 20.0  # HARD_SWISH: a TFLite kernel for int8
    tflite_move_cycles_per_element: float = 4.0  # resize, PADV2 outside XNNPACK
    # AVERAGE_POOL_2D outside XNNPACK: per output element, plus per element of its window
    tflite_pool_cycles_per_output: float = 4.0
    tflite_pool_cycles_per_element: float = 1.0
    conv_k_half: float = 16.0  # reduction depth (kh*kw*Cin) at which a conv runs at half rate
    conv_n_half: float = 4.0  # output channels at which a conv runs at half rate
    conv_m_half: float = 1.0  # output pixels at which a conv runs at half rate (GEMM rows)
    conv_cin_half: float = 1.0  # input channels per tap at which a conv runs at half rate
    # A GEMM kernel computes conv_tile_n output channels of conv_tile_m output pixels at once
    # (x86 AMX: 64 x 16, NEON: 8-16 x 4-8), so a conv costs by whole tiles: a 3x3 conv on a
    # 4x4 map costs what it does on 3x3, and half what it does on 5x5 (measured on AMX); each
    # output pixel and tile pays conv_pixel_cycles, and each tap at least conv_tap_cycles
    # (gathering the tap's input row), however few its channels. The defaults (1, 1, 0, 0)
    # leave convs costed by MACs alone. The two cycle terms are fitted; the tiles are steps, so
    # calibrate.fit tries each of CONV_TILES, CONV_ROW_TILES and CONV_DEPTH_TILES instead.
    conv_tile_n: float = 1.0
    conv_tile_m: float = 1.0
    # Each tap's input channels are reduced in whole steps of conv_tile_k: x86 AMX multiplies
    # 64 bytes at once, so a 3x3 conv of 96 channels on 14x14 took 1.9x the time of one of 192
    # on 7x7, the same MACs (1: by channel, as before)
    conv_tile_k: float = 1.0
    # A conv of more than one tap (an indirect GEMM) on at most conv_rowwise_max_m output
    # pixels runs a kernel that takes one pixel at a time, each costing conv_rowwise_rows rows
    # of the tiled kernel: on x86 AMX, 2x2 outputs (a ResNet's last stage at 64x64) measured
    # 2.5x slower than 3x3 or 4x4. conv_rowwise_max_m is a step (calibrate.fit tries
    # CONV_ROWWISE_MAX_M); 0: no such kernel.
    conv_rowwise_max_m: float = 0.0
    conv_rowwise_rows: float = 1.0
    conv_pixel_cycles: float = 0.0
    conv_tap_cycles: float = 0.0
    # a transposed conv (decoder upsampling) over the conv of the same MACs per output pixel
    transpose_conv_penalty: float = 1.0
    depthwise_c_half: float = 4.0
    # XNNPACK's int8 depthwise kernels stop at 25 taps (5x5): a 7x7 takes a slow general path
    depthwise_large_macs_per_cycle: float = 0.5
    # ... and slower still on a map no larger than its padding (a 7x7 on 2x2: ConvNeXt's tail
    # at low resolution), where XNNPACK 2.x measured 9x slower per MAC on x86
    depthwise_large_padded_penalty: float = 1.0
    memory_bytes_per_cycle: float = 4.0
    # weights read once per inference from beyond L2, when the model's weights do not fit it
    cold_weight_bytes_per_cycle: float = 2.0
    # threads split a GEMM's output channels, so each extra core's private L2 holds a share
    # of the weights too; this is how much of one L2 it adds (spec.l2_shared: none)
    l2_thread_share: float = 0.5
    op_overhead_cycles: float = 2000.0
    # In a network an op finds what the ops before it evicted; a model of one op keeps its
    # weights and buffers warm from run to run. Work of every op of a multi-op model x (1 + this).
    context_fraction: float = 0.05
    # ... more with threads: x (1 + (threads - 1) x this). 0: the same at any thread count
    context_thread_growth: float = 0.0
    invoke_overhead_cycles: float = 5000.0
    partition_overhead_cycles: float = 2000.0  # per op outside XNNPACK: one more partition
    # Handing a tensor between XNNPACK and an op outside it costs per byte the op reads and
    # writes (eight 1x1 convs each followed by a hard-swish at 24x24x56 on the x86 host: ~20 µs
    # per handoff at 1 thread, ~40 µs at 2), more with each extra thread, whose share of the
    # tensor sits in another core's cache: x (1 + (threads - 1) x growth). 0: off.
    handoff_cycles_per_byte: float = 0.0
    handoff_thread_growth: float = 1.0
    # With threads, XNNPACK's workers sleep through a long run of ops outside it, and the next
    # delegated op waits for them to wake: partition_wake_cycles per extra thread, in full
    # once the run is well over partition_wake_gap_cycles (a short run finds them spinning)
    partition_wake_cycles: float = 0.0
    partition_wake_gap_cycles: float = 20000.0
    parallel_efficiency: float = 0.8  # speedup per extra thread, for large ops
    parallel_half_work_cycles: float = 50000.0  # op size at which half that speedup is reached
    thread_sync_cycles: float = 500.0  # per op and extra thread: waking and joining workers
    reference_clock_hz: float = 1e9  # the clock cycles are counted at when the spec has none

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


# [cpu_model] terms that may be 0: switched off (a profile fitted before they existed)
OFF_BY_DEFAULT = frozenset(
    {
        "conv_pixel_cycles",
        "conv_tap_cycles",
        "handoff_cycles_per_byte",
        "conv_rowwise_max_m",
        "context_thread_growth",
        "partition_wake_cycles",
    }
)


def usable_value(name: str, value: float) -> bool:
    """A [cpu_model] value a profile may hold: positive and finite, or 0 for a switchable term."""
    return (name in OFF_BY_DEFAULT and value == 0) or 0 < value < float("inf")


# [cpu_model] fractions: at most 1 (profiles are checked, fits are bounded)
SHARES = ("parallel_efficiency", "l2_thread_share")


@dataclass(frozen=True)
class UncertaintyBand:
    """How far a measurement may fall from an estimate: measured / estimated latency lies in
    [low, high] for `coverage` of networks the parameters were not fitted on.

    Derived from held-out residuals (`calibrate-target`'s check networks, or
    benchmarks/cpu_estimator.py's held-out set); `source` says which, and how many timings."""

    low: float  # ratio measured / estimated at the band's lower edge
    high: float
    coverage: float  # e.g. 0.9: the share of held-out timings the band is built to contain
    samples: int  # held-out timings it was derived from
    source: str

    def interval(self, estimate: float) -> tuple[float, float]:
        """The band around an estimated latency (ms), in the same unit."""
        return estimate * self.low, estimate * self.high

    def rate_interval(self, rate: float) -> tuple[float, float]:
        """The band around a rate (1/s) derived from an estimated latency: the edges swap."""
        return rate / self.high, rate / self.low


BAND_KEYS = ("band_low", "band_high", "band_coverage", "band_samples", "band_source")


@dataclass(frozen=True)
class CpuModel:
    """The [cpu_model] table: parameters plus where they came from, and how far to trust them."""

    params: CpuModelParams
    source: str  # e.g. "fitted on ...", "calibrate-target on <host> at <date>"
    fitted: bool  # False: every parameter is an assumption
    band: UncertaintyBand | None = None  # None: no held-out residuals (an assumed profile)
    given: bool = True  # False: the profile has no [cpu_model] table, all defaults


def host_cores() -> int:
    return os.cpu_count() or 1


# /proc/cpuinfo flag -> our SIMD feature name (aarch64 "Features", x86 "flags").
_CPUINFO_FLAGS = {
    "asimd": "neon",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "sve": "sve",
    "sse4_2": "sse4",
    "avx2": "avx2",
    "avx512f": "avx512",
    "avx512_vnni": "avx512vnni",
}


def host_cache_bytes(level: int) -> int | None:
    """This machine's per-core cache of `level` (2 or 3), from sysfs (Linux); None elsewhere."""
    from pathlib import Path

    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            if int((index / "level").read_text()) != level:
                continue
            if (index / "type").read_text().strip() not in ("Unified", "Data"):
                continue
            size = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(size[-1:], 1)
        digits = size.rstrip("KMG")
        return int(digits) * scale if digits.isdigit() else None
    return None


def host_simd() -> tuple[str, ...]:
    """This machine's SIMD features relevant to int8 kernels, from /proc/cpuinfo (Linux)."""
    try:
        text = open("/proc/cpuinfo").read()  # noqa: SIM115 - a one-shot read of a virtual file
    except OSError:
        return ()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return tuple(dict.fromkeys(name for flag, name in _CPUINFO_FLAGS.items() if flag in flags))


def parse_cpu(data: dict, where: str) -> CpuSpec:
    """The [cpu] table; `cores = "auto"` (host) counts this machine's cores."""
    cpu = table(data, "cpu", where)
    core = require(cpu, "core", where, str)
    cores_value = cpu.get("cores")
    if cores_value == "auto":
        cores = host_cores()
    else:
        cores = positive_int(cpu, "cores", where)
        if cores is None:
            raise UsageError(f'target profile {where} lacks `cpu.cores` (an int, or "auto").')
    simd = cpu.get("simd", [])
    if simd == "auto":
        simd = list(host_simd())
    if not isinstance(simd, list) or not all(isinstance(s, str) for s in simd):
        raise UsageError(f"target profile {where}: `cpu.simd` must be a list of strings.")
    unknown = [s for s in simd if s not in SIMD_FEATURES]
    if unknown:
        raise UsageError(
            f"target profile {where}: unknown SIMD feature(s) {unknown}; "
            f"known: {', '.join(SIMD_FEATURES)}."
        )
    threads = positive_int(cpu, "threads", where, default=cores)
    auto_l2 = cpu.get("l2_bytes") == "auto"
    keys = ("l1d_bytes", "l1i_bytes") if auto_l2 else ("l1d_bytes", "l1i_bytes", "l2_bytes")
    sizes = {k: positive_int(cpu, k, where) for k in keys}
    if auto_l2:  # host: read at load time, like its cores
        sizes["l2_bytes"] = host_cache_bytes(2)
    l3 = cpu.get("l3_bytes")
    if l3 == "auto":
        l3 = host_cache_bytes(3)
    if l3 is not None and (not isinstance(l3, int) or l3 < 0):
        raise UsageError(f"target profile {where}: `cpu.l3_bytes` must be an int >= 0.")
    l2_shared = cpu.get("l2_shared", False)
    if not isinstance(l2_shared, bool):
        raise UsageError(f"target profile {where}: `cpu.l2_shared` must be true or false.")
    return CpuSpec(
        core=core,
        cores=cores,
        l2_shared=l2_shared,
        clock_hz=positive(cpu, "clock_hz", where),
        simd=tuple(simd),
        default_threads=min(threads or cores, cores),
        l3_bytes=l3,
        memory=str(cpu.get("memory", "")),
        memory_bandwidth_bytes_per_s=positive(cpu, "memory_bandwidth_bytes_per_s", where),
        **sizes,
    )


def parse_cpu_model(data: dict, where: str) -> CpuModel:
    """The [cpu_model] table: any parameter left out keeps its (assumed) default."""
    model = table(data, "cpu_model", where, required=False)
    known = set(CpuModelParams.names())
    unknown = sorted(set(model) - known - {"source", "fitted", *BAND_KEYS})
    if unknown:
        raise UsageError(
            f"target profile {where}: unknown [cpu_model] key(s) {unknown}; "
            f"known: {', '.join(sorted(known))}."
        )
    values = {}
    for name in CpuModelParams.names():
        if name in OFF_BY_DEFAULT and model.get(name) == 0:
            values[name] = 0.0  # a term switched off
            continue
        value = positive(model, name, where)
        if value is not None:
            values[name] = value
    params = CpuModelParams(**values)
    for share in SHARES:
        if getattr(params, share) > 1.0:
            raise UsageError(f"target profile {where}: `{share}` must be in (0, 1].")
    for tile in ("conv_tile_n", "conv_tile_m", "conv_tile_k"):
        if getattr(params, tile) < 1:
            raise UsageError(f"target profile {where}: `{tile}` must be at least 1.")
    fitted = model.get("fitted", False)
    if not isinstance(fitted, bool):
        raise UsageError(f"target profile {where}: `cpu_model.fitted` must be true or false.")
    source = str(model.get("source", "defaults (assumptions)"))
    given = "cpu_model" in data
    return CpuModel(params, source, fitted, _parse_band(model, where), given)


def _parse_band(model: dict, where: str) -> UncertaintyBand | None:
    """The band_* keys of [cpu_model]: all of them, or none."""
    given = [k for k in BAND_KEYS if k in model]
    if not given:
        return None
    missing = [k for k in BAND_KEYS if k not in model]
    if missing:
        raise UsageError(
            f"target profile {where}: [cpu_model] has {', '.join(given)} but not "
            f"{', '.join(missing)}; an uncertainty band needs all of {', '.join(BAND_KEYS)}."
        )
    low, high = positive(model, "band_low", where), positive(model, "band_high", where)
    coverage = positive(model, "band_coverage", where)
    samples = positive_int(model, "band_samples", where)
    if not low <= high or coverage >= 1.0:
        raise UsageError(
            f"target profile {where}: band_low {low} <= band_high {high} and "
            f"0 < band_coverage {coverage} < 1 must hold (ratios measured / estimated)."
        )
    return UncertaintyBand(low, high, coverage, samples, str(model["band_source"]))


@dataclass(frozen=True)
class CortexASpec:
    """Everything kind-specific in a `cortex-a` profile."""

    cpu: CpuSpec
    cpu_model: CpuModel

    def dependency_files(self) -> tuple:
        return ()

    def table_cells(self) -> tuple[str, str, str, str]:
        """compute, clock MHz, config (SIMD), memory columns of `ran-edge targets`."""
        cpu = self.cpu
        clock = f"{cpu.clock_hz / 1e6:.0f}" if cpu.clock_hz else "-"
        parts = [f"L2 {_size(cpu.l2_bytes)}"] if cpu.l2_bytes else []
        parts += [f"L3 {_size(cpu.l3_bytes)}"] if cpu.l3_bytes else []
        bandwidth = cpu.memory_bandwidth_bytes_per_s
        parts += [f"{bandwidth / 1e9:.1f} GB/s"] if bandwidth else []
        return (
            f"{cpu.cores} x {cpu.core}",
            clock,
            ", ".join(cpu.simd) or "-",
            ", ".join(parts) or "-",
        )

    def summary_row(self) -> dict:
        """The kind's fields of one `targets --json` row (Ethos-U fields null)."""
        cpu, model = self.cpu, self.cpu_model
        return {
            "core": cpu.core,
            "cores": cpu.cores,
            "clock_hz": cpu.clock_hz,
            "simd": list(cpu.simd),
            "threads": cpu.default_threads,
            "l1d_bytes": cpu.l1d_bytes,
            "l1i_bytes": cpu.l1i_bytes,
            "l2_bytes": cpu.l2_bytes,
            "l3_bytes": cpu.l3_bytes,
            "memory": cpu.memory,
            "memory_bandwidth_bytes_per_s": cpu.memory_bandwidth_bytes_per_s,
            "cpu_model_source": model.source,
            "cpu_model_fitted": model.fitted,
            "accelerator": None,
            "macs_per_cycle": None,
            "system_config": None,
            "memory_mode": None,
        }


def _size(value: int | None) -> str:
    if not value:
        return "?"
    return f"{value // 1024**2} MiB" if value >= 1024**2 else f"{value // 1024} KiB"


def parse_cortex_a(data: dict, where: str, path) -> CortexASpec:
    """The [cpu] and [cpu_model] tables."""
    return CortexASpec(cpu=parse_cpu(data, where), cpu_model=parse_cpu_model(data, where))
