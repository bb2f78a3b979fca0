"""Does RAN-i-T run ~40% faster than ConvNeXt-T on Arm server CPUs, as the RAN paper reports?

    .venv/bin/python benchmarks/ran_i_neoverse.py [--resolutions 96,128,224] [--cache DIR]
        [--no-measure] [--rounds 6] [--timings FILE]

Builds the zoo's ConvNeXt-T (BN, ReLU6; `convnext_t_bn`) and its RAN-i scaled counterpart
(`ran_i_t`: 5/3 deeper, 2/3 thinner by NN-Mass, ran_edge/shrink/ran_i.py) at each resolution,
converts both to int8 TFLite through ran-edge's own export + quantisation (the path
benchmarks/cpu_estimator.py uses), and prints one table: estimated latency and FPS on
neoverse-n1 and neoverse-v1 (Graviton2/3 class; ESTIMATES transferred from rpi5, see
docs/cpu-targets.md), rpi5 and cortex-a76 for reference, and host, at 1 thread and every core,
with each profile's 90% band; the RAN-i / ConvNeXt FPS ratio per row; and the latency measured
on this host (fresh processes, the least over `--rounds` interleaved passes, as
calibrate-target times: on a shared machine the least is the least disturbed). A second table
says where the estimated time goes (7x7 depthwise, pointwise convs, residual adds, ...).

The measured host rows are the only timings; every other row is an estimate, and the Neoverse
rows rest on scaling factors no Neoverse timing has checked. Building takes 2-3 minutes per
resolution on 2 cores (keep the models with --cache), timing 2-3 minutes more.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ran_edge.convert.tflite_ops import OpCost, read_op_costs
from ran_edge.models.loading import load_model
from ran_edge.quiet import captured_output
from ran_edge.targets.cortex_a.batch_timing import measure_samples_here
from ran_edge.targets.cortex_a.calibrate import MIN_SECONDS, ROUNDS
from ran_edge.targets.cortex_a.estimate import CpuEstimate, cost_class, estimate_ops
from ran_edge.targets.cortex_a.microbench import build_int8
from ran_edge.targets.cortex_a.spec import UncertaintyBand
from ran_edge.targets.loading import Target, resolve_target

console = Console(width=150)
NETS = ("convnext_t_bn", "ran_i_t")
LABELS = {"convnext_t_bn": "ConvNeXt-T", "ran_i_t": "RAN-i-T"}
TARGETS = ("neoverse-n1", "neoverse-v1", "rpi5", "cortex-a76", "host")
PAPER_RATIO = 1.4  # "about 40% higher FPS" (RAN paper, Arm server CPUs)
Model = tuple[str, bytes, tuple[OpCost, ...]]


def build(name: str, size: int, cache: Path | None) -> Model:
    """One net at `size` x `size`, int8, from `cache` when it is there (<name>@<size>.tflite)."""
    key = f"{name}@{size}"
    path = None if cache is None else cache / f"{key}.tflite"
    if path is not None and path.is_file():
        data = path.read_bytes()
    else:
        shape = (1, 3, size, size)
        with captured_output():  # the converters' chatter
            data = build_int8(load_model(name, input_shape=shape).module, shape)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return key, data, tuple(read_op_costs(data))


def op_group(cost: OpCost) -> str:
    """Where a ConvNeXt op's time goes: the block's 7x7 depthwise, its two 1x1 convs, ..."""
    if cost_class(cost) == "fused":
        return "other"
    if cost.op == "DEPTHWISE_CONV_2D":
        taps = cost.weights[1] * cost.weights[2] if cost.weights else 9
        return "dw 7x7" if taps > 25 else "dw small"
    if cost.op == "CONV_2D":
        pointwise = cost.weights is not None and cost.weights[1] == cost.weights[2] == 1
        return "pointwise 1x1" if pointwise else "stem + downsample"
    return {"ADD": "residual add"}.get(cost.op, "head + other")


GROUPS = ("dw 7x7", "pointwise 1x1", "residual add", "stem + downsample", "head + other")


def group_shares(est: CpuEstimate) -> dict[str, float]:
    """Share of the estimated cycles per op group (the per-invoke overhead under 'other')."""
    cycles: dict[str, float] = defaultdict(float)
    cycles["head + other"] += est.invoke_cycles
    for row in est.ops:
        group = op_group(row.cost)
        cycles[group if group in GROUPS else "head + other"] += row.cycles
    return {g: cycles[g] / est.cycles for g in GROUPS}


def thread_counts(target: Target) -> list[int]:
    """1 thread (one stream per core) and every core (one inference as fast as it goes)."""
    return sorted({1, target.cpu.cores})


def _ms(value: float, band: UncertaintyBand | None) -> str:
    if band is None:
        return f"{value:.2f}"
    low, high = band.interval(value)
    return f"{value:.2f} ({low:.2f}-{high:.2f})"


def estimate_rows(models: dict[str, Model], size: int, table: Table) -> None:
    """One row per target and thread count: both nets' estimates, their FPS and the ratio."""
    for name in TARGETS:
        target = resolve_target(name)
        band = target.cpu_model.band
        for threads in thread_counts(target):
            ms = {
                n: estimate_ops(
                    list(models[n][2]), target.cpu, target.cpu_model.params, threads
                ).latency_ms
                for n in NETS
            }
            fps = {n: 1e3 / ms[n] for n in NETS}
            ratio = fps["ran_i_t"] / fps["convnext_t_bn"]
            table.add_row(
                str(size),
                name,
                "estimated",
                str(threads),
                _ms(ms["convnext_t_bn"], band),
                _ms(ms["ran_i_t"], band),
                f"{fps['convnext_t_bn']:.1f}",
                f"{fps['ran_i_t']:.1f}",
                f"{ratio:.2f}",
            )


def measured_rows(
    models: dict[str, Model], size: int, measured: dict[tuple[str, int], float], table: Table
) -> None:
    """The host's timings of both nets (least over the passes), with FPS and the ratio."""
    for threads in thread_counts(resolve_target("host")):
        ms = {n: measured[(models[n][0], threads)] for n in NETS}
        fps = {n: 1e3 / ms[n] for n in NETS}
        table.add_row(
            str(size),
            "host",
            "[bold]measured[/bold]",
            str(threads),
            f"{ms['convnext_t_bn']:.2f}",
            f"{ms['ran_i_t']:.2f}",
            f"{fps['convnext_t_bn']:.1f}",
            f"{fps['ran_i_t']:.1f}",
            f"[bold]{fps['ran_i_t'] / fps['convnext_t_bn']:.2f}[/bold]",
        )


def breakdown_table(built: dict[int, dict[str, Model]]) -> Table:
    """Per resolution, net and target (1 thread and every core): shares of estimated time."""
    table = Table(
        title="where the estimated time goes: share of each net's estimated cycles (%)",
        title_justify="left",
    )
    for col in ("res", "net", "target", "threads", *GROUPS, "MMACs", "weights MB"):
        table.add_column(col, justify="left" if col in ("net", "target") else "right")
    for size, models in built.items():
        for n in NETS:
            costs = list(models[n][2])
            macs = sum(c.macs for c in costs) / 1e6
            weights = sum(c.weight_bytes for c in costs) / 1e6
            for name in ("neoverse-n1", "neoverse-v1", "host"):
                target = resolve_target(name)
                for threads in thread_counts(target):
                    est = estimate_ops(costs, target.cpu, target.cpu_model.params, threads)
                    shares = group_shares(est)
                    table.add_row(
                        str(size),
                        LABELS[n],
                        name,
                        str(threads),
                        *(f"{100 * shares[g]:.1f}" for g in GROUPS),
                        f"{macs:,.0f}",
                        f"{weights:.1f}",
                    )
    return table


# conv : 7x7-depthwise rate ratios to try: the Arm profiles assume 16 (rpi5's fit scaled every
# rate alike), host.toml's fit found about 180 on x86 (AVX-512 VNNI GEMMs, a slow 7x7 path).
DW_RATIOS = (4.0, 16.0, 64.0, 180.0)


def sensitivity_table(built: dict[int, dict[str, Model]]) -> Table:
    """The ratio at 1 thread as the 7x7 depthwise rate moves against the conv rate: the one
    assumption of the transferred profiles the answer hangs on (no Arm timing fixes it)."""
    table = Table(
        title="RAN-i / ConvNeXt FPS ratio at 1 thread if 7x7 depthwise ran at conv rate / r "
        "(the Arm profiles assume r = 16; host.toml measured ~180 on x86)",
        title_justify="left",
    )
    for col in ("res", "target", *(f"r = {r:g}" for r in DW_RATIOS), "MACs only"):
        table.add_column(col, justify="left" if col == "target" else "right")
    for size, models in built.items():
        for name in ("neoverse-n1", "neoverse-v1"):
            target = resolve_target(name)
            base = target.cpu_model.params
            cells = []
            for r in DW_RATIOS:
                params = replace(base, depthwise_large_macs_per_cycle=base.conv_macs_per_cycle / r)
                ms = [
                    estimate_ops(list(models[n][2]), target.cpu, params, 1).latency_ms for n in NETS
                ]
                cells.append(f"{ms[0] / ms[1]:.2f}")
            macs = [sum(c.macs for c in models[n][2]) for n in NETS]
            table.add_row(str(size), name, *cells, f"{macs[0] / macs[1]:.2f}")
    return table


def merge_timings(path: Path, new: dict[tuple[str, int], float]) -> dict[tuple[str, int], float]:
    """The least of `new` and the timings kept in `path` (then written back): on a shared
    machine each run adds passes, and the least is the least disturbed. Delete the file after
    changing the models."""
    kept = json.loads(path.read_text()) if path.is_file() else {}
    for (name, threads), ms in new.items():
        key = f"{name}@{threads}"
        kept[key] = min(ms, kept.get(key, ms))
    path.write_text(json.dumps(kept, indent=1, sort_keys=True))
    return {(name, threads): kept[f"{name}@{threads}"] for name, threads in new}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", default="96,128,224", help="comma-separated")
    parser.add_argument("--cache", type=Path, help="keep the int8 models here between runs")
    parser.add_argument("--no-measure", action="store_true", help="estimates only, no timing")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timing passes (least wins)")
    parser.add_argument(
        "--timings", type=Path, help="JSON kept between runs: each figure the least of all runs"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.resolutions.split(",") if s.strip()]
    start = time.perf_counter()
    built: dict[int, dict[str, Model]] = {}
    for size in sizes:
        with console.status(f"building ConvNeXt-T and RAN-i-T at {size}x{size} (int8) ..."):
            built[size] = {n: build(n, size, args.cache) for n in NETS}
    console.print(f"built {2 * len(sizes)} int8 models in {time.perf_counter() - start:.0f} s")
    measured: dict[tuple[str, int], float] = {}
    if not args.no_measure:
        models = [m for by_net in built.values() for m in by_net.values()]
        threads = thread_counts(resolve_target("host"))
        with console.status(f"timing {len(models)} models x {threads} threads on this host ..."):
            samples = measure_samples_here(
                models, threads, rounds=args.rounds, min_seconds=MIN_SECONDS
            )
        measured = {(s.name, s.threads): s.measured_ms for s in samples}
        if args.timings is not None:
            measured = merge_timings(args.timings, measured)
    table = Table(
        title="RAN-i-T vs ConvNeXt-T (BN, ReLU6), int8, LiteRT + XNNPACK: latency ms "
        "(90% band of the profile), FPS = 1000 / ms; ratio = RAN-i FPS / ConvNeXt FPS "
        f"(paper: ~{PAPER_RATIO:.1f})",
        title_justify="left",
    )
    for col in ("res", "target", "figure", "threads", "ConvNeXt-T ms", "RAN-i-T ms"):
        table.add_column(col, justify="left" if col in ("target", "figure") else "right")
    for col in ("ConvNeXt FPS", "RAN-i FPS", "ratio"):
        table.add_column(col, justify="right")
    for size, models in built.items():
        estimate_rows(models, size, table)
        if measured:
            measured_rows(models, size, measured, table)
        table.add_section()
    console.print(table)
    console.print(breakdown_table(built))
    console.print(sensitivity_table(built))
    if measured:
        console.print(
            f"host timings: fresh processes, the least over {args.rounds} interleaved passes "
            "(2 processes) of each pass's 10th-percentile run, as calibrate-target times; the "
            "machine is shared, so they are noisy, and the ratio is the steadier figure."
        )
    console.print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
