"""Human tables for the terminal, rendered from `Report`s (so a saved report.json prints too:
`load_report(path)`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rich.console import Console
from rich.table import Table

from ran_edge.report.model import LayerRow, MetricValue, Report, TflmFacts
from ran_edge.report.traffic import AreaTraffic, MemoryTraffic, area_label


def _fmt(value, spec: str = ",.0f", missing: str = "n/a") -> str:
    if value is None:
        return missing
    if isinstance(value, str):
        return value
    return format(value, spec)


NO_BAND_NOTE = "no uncertainty band: profile not calibrated on held-out networks"
OLD_REPORT_BAND_NOTE = "no uncertainty band: the report predates schema 1.5; rebuild it"


def interval_text(m: MetricValue | None, fmt: Callable[[float], str]) -> str:
    """ "90% interval 19.0-24.0" for a figure with an uncertainty band (edges formatted like
    the figure); "" for one without."""
    if m is None or m.value is None or m.interval is None or m.coverage is None:
        return ""
    low, high = m.interval
    return f"{100 * m.coverage:g}% interval {fmt(low)}-{fmt(high)}"


def with_interval(m: MetricValue | None, fmt: Callable[[float], str], sep: str = " ") -> str:
    """The figure as text, its band (if any) after it in parentheses: "21.4 (90% interval
    19.0-24.0)"; "n/a" when absent or unavailable."""
    if m is None or m.value is None:
        return fmt(None)
    band = interval_text(m, fmt)
    return f"{fmt(m.value)}{sep}({band})" if band else fmt(m.value)


def band_note_metric(report: Report) -> str | None:
    """The one CPU figure that carries the "no uncertainty band" note: the estimated
    latency (the headline when estimated, the estimator's figure when measured)."""
    if not report.is_cpu or report.cpu is None:
        return None
    return "latency" if report.cpu.mode == "estimated" else "latency_estimated"


def band_note(report: Report) -> str:
    """Why a CPU report's estimated latency has no band ("" when it has one, or not a CPU)."""
    name = band_note_metric(report)
    m = report.metric(name) if name else None
    if m is None or m.value is None or m.interval is not None or m.source != "estimated":
        return ""
    return NO_BAND_NOTE if report.cpu.band_known else OLD_REPORT_BAND_NOTE


def _cell(report: Report, name: str, spec: str, sep: str = " ") -> str:
    """`report`'s figure `name` formatted with `spec`, with its uncertainty band if any."""
    return with_interval(report.metric(name), lambda x: _fmt(x, spec), sep)


def _memory_cell(report: Report) -> str:
    """Where weights (and, in Dedicated_Sram, the arena) live outside the NPU's SRAM."""
    parts = []
    for name, label in (
        ("off_chip_flash_used", "flash"),
        ("dram_used", "DRAM"),
        ("on_chip_flash_used", "on-chip flash"),
    ):
        value = report.value(name) or 0.0
        if value and not (label == "on-chip flash" and report.target.sram_only):
            parts.append(f"{label} {value:,.1f}")
    return ", ".join(parts) or "0"


def _sram_cell(report: Report) -> str:
    total = report.value("sram_total")
    if report.target.sram_only:
        weights = report.value("on_chip_flash_used") or 0.0
        return f"{_fmt(total, ',.1f')} (weights {weights:,.1f})"
    return _fmt(total, ",.1f")


def _clock(hz: float | None) -> str:
    return f"{hz / 1e6:,.0f} MHz" if hz else "no fixed clock"


def summary_table(report: Report) -> Table:
    t = report.target
    table = Table(
        title=f"{report.model.name} on {t.name}",
        caption=f"{t.system_config}, {t.memory_mode}, {_clock(t.clock_hz)}",
        show_header=False,
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    v = report.value
    rows = [
        ("inferences/s", _cell(report, "inferences_per_second", ",.1f")),
        ("latency (ms)", _cell(report, "latency", ",.2f")),
        ("NPU cycles", _fmt(v("cycles_npu"))),
        ("total cycles", _cell(report, "cycles_total", ",.0f")),
        ("MACs", _fmt(v("macs"))),
        ("MAC utilisation (%)", _fmt(v("mac_utilisation"), ".1f")),
        ("SRAM used (KiB)", _sram_cell(report)),
        ("off-chip memory used (KiB)", _memory_cell(report)),
        ("encoded weights (B)", _fmt(v("encoded_weights"))),
        ("ops NPU / CPU", f"{_fmt(v('npu_ops'))} / {_fmt(v('cpu_ops'))}"),
    ]
    if v("cpu_ops"):
        host = t.host_cpu
        core = f" on {host.core} @ {host.clock_hz / 1e6:,.0f} MHz" if host else ""
        rows += [
            (f"CPU-fallback time (ms, estimated{core})", _fmt(v("cpu_fallback_time"), ",.3f")),
            ("system latency, NPU + CPU (ms)", _cell(report, "system_latency", ",.3f")),
            ("system inferences/s", _cell(report, "system_inferences_per_second", ",.1f")),
        ]
    if report.fidelity.samples:
        caveat = " (random weights)" if report.model.random_weights else ""
        top1 = report.fidelity_value("top1_agreement")
        rows.append(("int8 top-1 agreement (%)", _fmt(top1, ".1f") + caveat))
        rows.append(("int8 SQNR (dB)", _fmt(report.fidelity_value("sqnr"), ".1f") + caveat))
    quantization = report.conversion.quantization
    if quantization is not None:
        precision = f"int8, {quantization.method} ranges"
        if quantization.int16_activations:
            precision += f"; int16 activations in {len(quantization.int16_activations)} module(s)"
        rows.append(("quantization", precision))
    if report.tflm is not None:
        rows.append(("TFLM vs LiteRT reference", tflm_verdict(report.tflm)))
    for name, value in rows:
        table.add_row(name, value)
    return table


def tflm_verdict(tflm: TflmFacts) -> str:
    """The TFLM check in a cell: passed (bit-exact or rounding only), or what differs."""
    if tflm.error:
        return tflm.error[:90]
    if tflm.bit_exact:
        return f"passed: bit-exact ({tflm.samples} samples)"
    where = f", from {tflm.first_mismatch[:60]}" if tflm.first_mismatch else ""
    differ = f"{tflm.mismatched_samples}/{tflm.samples} samples differ by "
    differ += f"{tflm.max_abs_diff} LSB{where}"
    if tflm.passed:
        return f"passed: {differ} (rounding mode, not a bug)"
    return differ


RANDOM_WEIGHTS_NOTE = (
    "[yellow]note:[/yellow] random weights (no --weights): about 85% of a random network's "
    "logit signal does not depend on the input, so int8 agreement and SQNR say nothing about "
    "a trained model's; pass --weights for fidelity that means something. The TFLM check "
    "and every Vela figure are valid as they are."
)


def sensitivity_table(report: Report, count: int = 5) -> Table | None:
    """The ops whose quantized output is furthest from float: where to look first."""
    section = report.sensitivity
    if section is None or not section.rows:
        return None
    table = Table(
        title=f"least faithful layers (SQNR vs float on {section.samples} held-out samples)",
        title_justify="left",
        caption="cumulative: each op carries its inputs' error; `drop` is what this op adds. "
        "Fix: --int16-activations MODULE or --auto-mixed-precision.",
        caption_justify="left",
    )
    for col, justify in (
        ("#", "right"),
        ("op", "left"),
        ("PyTorch module", "left"),
        ("act.", "left"),
        ("SQNR dB", "right"),
        ("drop dB", "right"),
    ):
        table.add_column(col, justify=justify)
    for r in section.worst(count):
        table.add_row(
            str(r.index),
            r.op_type,
            r.module,
            r.dtype,
            _fmt(r.sqnr_db, ".1f"),
            _fmt(r.drop_db, ".1f", "-"),
        )
    return table


def mixed_precision_table(report: Report) -> Table | None:
    """Each automatic mixed-precision choice with its fidelity and Vela cycle cost."""
    quantization = report.conversion.quantization
    mixed: Mapping | None = quantization.mixed_precision if quantization else None
    if not mixed:
        return None
    goal = mixed["goal"]
    table = Table(
        title=f"automatic mixed precision (goal {goal.get('sqnr_db')} dB"
        + (f" or {goal['top1_agreement']}% top-1" if goal.get("top1_agreement") else "")
        + f"; cycles on {mixed['target']}): {mixed['stop_reason']}",
        title_justify="left",
    )
    for col in ("step", "int16 module(s)", "kept", "SQNR dB", "top-1 %", "cycles", "extra %"):
        table.add_column(col, justify="left" if col in ("int16 module(s)", "kept") else "right")
    for step in [mixed["baseline"], *mixed["steps"]]:
        table.add_row(
            str(step["step"]),
            ", ".join(step["modules"]) or "(all int8)",
            "yes" if step["kept"] else f"no: {step['reason']}"[:60],
            _fmt(step["sqnr_db"], ".1f"),
            _fmt(step["top1_agreement"], ".1f"),
            _fmt(step["cycles"]),
            _fmt(step["extra_cycles_pct"], "+.1f"),
        )
    return table


def fallback_table(report: Report) -> Table | None:
    if not report.cpu_fallbacks:
        return None
    table = Table(
        title="ops Vela leaves on the CPU (its reason, and the fix)", title_justify="left"
    )
    table.add_column("op")
    table.add_column("PyTorch module")
    table.add_column("Vela's reason", overflow="fold")
    table.add_column("fix", overflow="fold")
    table.add_column("host ms (est.)", justify="right")
    for f in report.cpu_fallbacks:
        table.add_row(
            f.op_type,
            f.module or f.name[-50:],
            f.reason,
            f.fix or "",
            _fmt(f.host_time_ms, ",.4f"),
        )
    return table


def module_table(report: Report, depth: int | None = None, count: int = 10) -> Table:
    depth = depth or report.module_depth
    table = Table(
        title=f"top PyTorch modules by cycles (depth {depth})",
        title_justify="left",
    )
    for col, justify in (
        ("module", "left"),
        ("cycles", "right"),
        ("share %", "right"),
        ("MACs", "right"),
        ("MAC util %", "right"),
    ):
        table.add_column(col, justify=justify)
    for r in report.modules_at(depth)[:count]:
        table.add_row(
            r.path,
            _fmt(r.cycles),
            _fmt(r.cycle_share_pct, ".1f"),
            _fmt(r.macs),
            _fmt(r.mac_utilisation_pct, ".1f"),
        )
    return table


def kib(n: int) -> str:
    return f"{n / 1024:,.1f}"


def bound_text(row: LayerRow) -> str:
    """What limits a layer: "compute", or the memory area it waits on (1.6 reports name it)."""
    if not row.memory_bound:
        return "compute"
    return area_label(row.bound_by) if row.bound_by else "memory"


def area_role(report: Report, area: AreaTraffic) -> str:
    """ "off-chip flash (weights)": the area's label and what Vela stores there. In Sram_Only
    Vela files the weights under on-chip flash though they sit in (and move through) SRAM."""
    traffic = report.memory_traffic
    weights = "sram" if report.target.sram_only else traffic.weights_area
    roles = [
        role
        for role, where in (("weights", weights), ("arena", traffic.activations_area))
        if where == area.area
    ]
    return f"{area.label} ({', '.join(roles)})" if roles else area.label


def busy_text(traffic: MemoryTraffic) -> str:
    busy = _fmt(traffic.npu_busy_pct, ".1f")
    return f"NPU busy {busy}% of {traffic.cycles_total:,} cycles"


def memory_bound_text(report: Report) -> str:
    """ "12 of 100 layers memory-bound (off-chip flash 9, SRAM 3)"."""
    bound = [r for r in report.layers if r.memory_bound]
    counts: dict[str, int] = {}
    for r in bound:
        counts[bound_text(r)] = counts.get(bound_text(r), 0) + 1
    detail = ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"{len(bound)} of {len(report.layers)} layers memory-bound" + (
        f" ({detail})" if detail else ""
    )


def memory_table(report: Report) -> Table | None:
    """Bytes per memory area (activations / weights, read / write) and the cycles each was
    busy, per inference: where an Ethos-U network waits on memory. None before schema 1.6."""
    traffic = report.memory_traffic
    if traffic is None:
        return None
    table = Table(
        title=f"memory traffic per inference (Vela): {busy_text(traffic)}",
        title_justify="left",
        caption=f"{memory_bound_text(report)}. other: scales, biases, LUTs. Access cycles "
        "overlap compute; an area near the total bounds the network.",
        caption_justify="left",
    )
    table.add_column("memory", no_wrap=True)
    for col, justify in (
        ("act. read KiB", "right"),
        ("act. write KiB", "right"),
        ("weights read KiB", "right"),
        ("weights write KiB", "right"),
        ("other KiB", "right"),
        ("access cycles", "right"),
        ("% of total", "right"),
    ):
        table.add_column(col, justify=justify)
    for a in traffic.active:
        share = 100.0 * a.access_cycles / traffic.cycles_total if traffic.cycles_total else None
        table.add_row(
            area_role(report, a),
            kib(a.activations_read_bytes),
            kib(a.activations_write_bytes),
            kib(a.weights_read_bytes),
            kib(a.weights_write_bytes),
            kib(a.other_bytes),
            _fmt(a.access_cycles),
            _fmt(share, ".1f"),
        )
    return table


def layer_table(report: Report) -> Table:
    title = "per-layer (estimated, LiteRT + XNNPACK)" if report.is_cpu else "per-layer (Vela)"
    table = Table(title=title, title_justify="left")
    for col in ("#", "op", "on", "cycles", "MACs", "util %", "bound", "module"):
        table.add_column(col)
    for row in report.layers:
        table.add_row(
            str(row.index),
            row.op,
            row.placement,
            _fmt(row.cycles),
            _fmt(row.macs),
            _fmt(row.mac_utilisation_pct, ".1f"),
            bound_text(row),
            row.module,
        )
    return table


def _source(report: Report, name: str) -> str:
    m = report.metric(name)
    if m is None:
        return "n/a"
    return m.source or "unavailable"


def _system_latency(report: Report) -> MetricValue | None:
    m = report.metric("system_latency")
    return report.metric("latency") if m is None or m.value is None else m


def _system_ips(report: Report) -> MetricValue | None:
    m = report.metric("system_inferences_per_second")
    return report.metric("inferences_per_second") if m is None or m.value is None else m


def _memory_kib(report: Report) -> tuple[str, str]:
    """(memory cell, its source): RSS growth or model memory on a CPU, SRAM on an Ethos-U."""
    if report.is_cpu:
        peak = report.value("peak_memory")
        if peak is not None:
            return f"{peak:,.0f} RSS", _source(report, "peak_memory")
        return f"{_fmt(report.value('model_memory'), ',.0f')} model", "estimated"
    return f"{_sram_cell(report)} SRAM", _source(report, "sram_total")


def _latency_source(report: Report) -> str:
    if report.is_cpu:
        return _source(report, "latency")
    if (report.value("cpu_ops") or 0) == 0:
        return "vela"
    return "vela + estimated CPU" if _source(report, "cpu_fallback_time") == "estimated" else "vela"


def comparison_table(reports: Sequence[Report]) -> Table:
    """One row per target, Ethos-U and CPU alike: latency, FPS, memory, and where each came from.

    Ethos-U latency here is the whole system's (NPU + Cortex-M time of CPU-fallback ops)."""
    table = Table(title="targets side by side", title_justify="left")
    for col, justify in (
        ("target", "left"),
        ("latency ms", "right"),
        ("inf/s", "right"),
        ("memory KiB", "right"),
        ("NPU/CPU ops", "right"),
        ("MAC util %", "right"),
        ("latency from", "left"),
        ("memory from", "left"),
    ):
        table.add_column(col, justify=justify)
    for r in reports:
        memory, memory_source = _memory_kib(r)
        table.add_row(
            r.target.name,
            with_interval(_system_latency(r), lambda x: _fmt(x, ",.3f"), "\n"),
            with_interval(_system_ips(r), lambda x: _fmt(x, ",.1f"), "\n"),
            memory,
            f"{_fmt(r.value('npu_ops'))}/{_fmt(r.value('cpu_ops'))}",
            "-" if r.is_cpu else _fmt(r.value("mac_utilisation"), ".1f"),
            _latency_source(r),
            memory_source,
        )
    return table


def cpu_summary_table(report: Report) -> Table:
    t = report.target
    cpu = report.cpu
    where = cpu.where if cpu else None
    mode = (cpu.mode if cpu else "estimated") + (
        f" on {where}" if where and where != "local" else ""
    )
    table = Table(
        title=f"{report.model.name} on {t.name} ({mode})",
        caption=f"{t.cores} x {t.core}, {_clock(t.clock_hz)}, SIMD {', '.join(t.simd) or 'none'}, "
        f"{t.threads} thread(s); LiteRT + XNNPACK",
        show_header=False,
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    table.add_column("source", style="dim")
    rows = [
        ("inferences/s", "inferences_per_second", ",.1f"),
        ("latency (ms)", "latency", ",.3f"),
        ("latency p90 (ms)", "latency_p90", ",.3f"),
        ("estimator's latency (ms)", "latency_estimated", ",.3f"),
        ("MACs", "macs", ",.0f"),
        ("peak memory, RSS growth (KiB)", "peak_memory", ",.0f"),
        ("model memory: weights + largest activations (KiB)", "model_memory", ",.0f"),
        ("ops", "cpu_ops", ",.0f"),
    ]
    note, note_on = band_note(report), band_note_metric(report)
    for label, name, spec in rows:
        cell = _cell(report, name, spec)
        if note and name == note_on:
            cell += f"\n({note})"
        table.add_row(label, cell, _source(report, name))
    m = cpu.measurement if cpu else None
    if m is not None:
        table.add_row("runs (warm-up)", f"{m.runs} ({m.warmup})", "measured")
        table.add_row("machine", f"{m.machine.get('cpu_model', '')}"[:50], "measured")
    if report.fidelity.samples:
        top1 = report.fidelity_value("top1_agreement")
        table.add_row("int8 top-1 agreement (%)", _fmt(top1, ".1f"), "litert")
    return table


def print_quantization(console: Console, report: Report) -> None:
    """Where the int8 error comes from, what was raised to int16, what was rewritten."""
    quantization = report.conversion.quantization
    for rewrite in quantization.rewrites if quantization else ():
        where = rewrite.module or "(top level)"
        console.print(f"[dim]rewritten for the NPU: {rewrite.rewrite} at {where}[/dim]")
    for table in (mixed_precision_table(report), sensitivity_table(report)):
        if table is not None:
            console.print(table)
    if report.fidelity.samples and report.model.random_weights:
        console.print(RANDOM_WEIGHTS_NOTE)


def print_report(console: Console, report: Report, *, layers: bool = False, depth=None) -> None:
    if report.is_cpu:
        console.print(cpu_summary_table(report))
        console.print(module_table(report, depth))
        if layers:
            console.print(layer_table(report))
        return
    console.print(summary_table(report))
    print_quantization(console, report)
    for table in (fallback_table(report), memory_table(report)):
        if table is not None:
            console.print(table)
    console.print(module_table(report, depth))
    if layers:
        console.print(layer_table(report))
