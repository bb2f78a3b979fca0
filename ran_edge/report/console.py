"""Human tables for the terminal, rendered from report dicts (so a saved report.json prints too)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ran_edge.report.metrics import metric_value


def _fmt(value, spec: str = ",.0f", missing: str = "n/a") -> str:
    if value is None:
        return missing
    if isinstance(value, str):
        return value
    return format(value, spec)


def _metric(report: dict, name: str):
    return metric_value(report["metrics"], name)


def _fidelity(report: dict, name: str):
    return metric_value(report["fidelity"]["metrics"], name)


def _memory_cell(report: dict) -> str:
    """Where weights (and, in Dedicated_Sram, the arena) live outside the NPU's SRAM."""
    parts = []
    for name, label in (
        ("off_chip_flash_used", "flash"),
        ("dram_used", "DRAM"),
        ("on_chip_flash_used", "on-chip flash"),
    ):
        value = _metric(report, name) or 0.0
        if value and not (label == "on-chip flash" and _sram_only(report)):
            parts.append(f"{label} {value:,.1f}")
    return ", ".join(parts) or "0"


def _sram_only(report: dict) -> bool:
    return report["target"]["memory_mode"] == "Sram_Only"


def _sram_cell(report: dict) -> str:
    total = _metric(report, "sram_total")
    if _sram_only(report):
        weights = _metric(report, "on_chip_flash_used") or 0.0
        return f"{_fmt(total, ',.1f')} (weights {weights:,.1f})"
    return _fmt(total, ",.1f")


def summary_table(report: dict) -> Table:
    t = report["target"]
    table = Table(
        title=f"{report['model']['name']} on {t['name']}",
        caption=f"{t['system_config']}, {t['memory_mode']}, {t['clock_hz'] / 1e6:.0f} MHz",
        show_header=False,
        title_justify="left",
        caption_justify="left",
    )
    table.add_column("figure", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("inferences/s", _fmt(_metric(report, "inferences_per_second"), ",.1f")),
        ("latency (ms)", _fmt(_metric(report, "latency"), ",.2f")),
        ("NPU cycles", _fmt(_metric(report, "cycles_npu"))),
        ("total cycles", _fmt(_metric(report, "cycles_total"))),
        ("MACs", _fmt(_metric(report, "macs"))),
        ("MAC utilisation (%)", _fmt(_metric(report, "mac_utilisation"), ".1f")),
        ("SRAM used (KiB)", _sram_cell(report)),
        ("off-chip memory used (KiB)", _memory_cell(report)),
        ("encoded weights (B)", _fmt(_metric(report, "encoded_weights"))),
        ("ops NPU / CPU", f"{_metric(report, 'npu_ops')} / {_metric(report, 'cpu_ops')}"),
    ]
    if report["fidelity"]["samples"]:
        top1 = _fidelity(report, "top1_agreement")
        rows.append(("int8 top-1 agreement (%)", _fmt(top1, ".1f")))
        rows.append(("int8 SQNR (dB)", _fmt(_fidelity(report, "sqnr"), ".1f")))
    tflm = report.get("tflm")
    if tflm:
        if tflm.get("error"):
            verdict = tflm["error"][:90]
        elif tflm["bit_exact"]:
            verdict = f"bit-exact ({tflm['samples']} samples)"
        else:
            verdict = f"{tflm['mismatched_samples']}/{tflm['samples']} samples differ"
            if tflm.get("first_mismatch"):
                verdict += f", from {tflm['first_mismatch'][:60]}"
        rows.append(("TFLM vs LiteRT reference", verdict))
    for name, value in rows:
        table.add_row(name, value)
    return table


def fallback_table(report: dict) -> Table | None:
    if not report["cpu_fallbacks"]:
        return None
    table = Table(title="ops on the CPU (Vela's reason)", title_justify="left")
    table.add_column("op")
    table.add_column("tensor")
    table.add_column("reason")
    for f in report["cpu_fallbacks"]:
        table.add_row(f["op_type"], f["name"][-50:], f["reason"])
    return table


def module_rows(report: dict, depth: int) -> list[dict]:
    """Module costs with paths cut at `depth`: a module shallower than `depth` with no child."""
    rows = report["modules"]["rows"]
    paths = {r["path"] for r in rows}
    keep = [
        r
        for r in rows
        if r["depth"] == depth
        or (r["depth"] < depth and not any(p.startswith(r["path"] + ".") for p in paths))
    ]
    return sorted(keep, key=lambda r: -r["cycles"])


def module_table(report: dict, depth: int | None = None, count: int = 10) -> Table:
    depth = depth or report["modules"]["depth"]
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
    for r in module_rows(report, depth)[:count]:
        table.add_row(
            r["path"],
            _fmt(r["cycles"]),
            _fmt(r["cycle_share_pct"], ".1f"),
            _fmt(r["macs"]),
            _fmt(r["mac_utilisation_pct"], ".1f"),
        )
    return table


def layer_table(report: dict) -> Table:
    table = Table(title="per-layer (Vela)", title_justify="left")
    for col in ("#", "op", "on", "cycles", "MACs", "util %", "bound", "module"):
        table.add_column(col)
    for row in report["layers"]:
        table.add_row(
            str(row["index"]),
            row["op"],
            row["placement"],
            _fmt(row["cycles"]),
            _fmt(row["macs"]),
            _fmt(row["mac_utilisation_pct"], ".1f"),
            "memory" if row["memory_bound"] else "compute",
            row["module"],
        )
    return table


def comparison_table(reports: list[dict]) -> Table:
    table = Table(title="targets side by side", title_justify="left")
    for col, justify in (
        ("target", "left"),
        ("inf/s", "right"),
        ("latency ms", "right"),
        ("NPU cycles", "right"),
        ("MAC util %", "right"),
        ("SRAM KiB", "right"),
        ("off-chip KiB", "right"),
        ("NPU/CPU ops", "right"),
        ("source", "left"),
    ):
        table.add_column(col, justify=justify)
    for r in reports:
        table.add_row(
            r["target"]["name"],
            _fmt(_metric(r, "inferences_per_second"), ",.1f"),
            _fmt(_metric(r, "latency"), ",.2f"),
            _fmt(_metric(r, "cycles_npu")),
            _fmt(_metric(r, "mac_utilisation"), ".1f"),
            _sram_cell(r),
            _memory_cell(r),
            f"{_metric(r, 'npu_ops')}/{_metric(r, 'cpu_ops')}",
            "vela",
        )
    return table


def print_report(console: Console, report: dict, *, layers: bool = False, depth=None) -> None:
    console.print(summary_table(report))
    fallbacks = fallback_table(report)
    if fallbacks is not None:
        console.print(fallbacks)
    console.print(module_table(report, depth))
    if layers:
        console.print(layer_table(report))
