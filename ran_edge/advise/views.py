"""How advice is shown: a rich table for people, a stable JSON document for tools."""

from __future__ import annotations

import sys
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from ran_edge.advise.advice import Advice, BlockAdvice
from ran_edge.advise.run import AdviseResult

# 2: conv sites and CPU targets; "figures" says who costs them; applied.fps / applied.cycles
# (were vela_fps / vela_cycles).
JSON_FORMAT = "ran-edge-advice/2"


def _block_json(b: BlockAdvice) -> dict:
    return {
        "path": b.site.path,
        "slot": asdict(b.site.slot),
        "form": {**asdict(b.site.form), "label": b.site.form.label()},
        "params": b.site.params,
        "network": asdict(b.network),
        "wasteful": b.wasteful,
        "current_table_cost": None if b.current is None else asdict(b.current),
        "options": [
            {
                "form": {**asdict(o.form), "label": o.form.label()},
                "table_cost": asdict(o.cost),
                "params": o.params,
            }
            for o in b.options
        ],
        "recommended": None if b.best is None else b.best.form.label(),
        "gain_cycles": b.gain_cycles,
        "table_gain_cycles": b.table_gain_cycles,
        "context_gain_cycles": b.context_gain_cycles,
    }


def advice_json(result: AdviseResult) -> dict:
    a = result.advice
    applied = None
    if result.applied is not None:
        applied = asdict(result.applied)
        applied["prediction_error_pct"] = _error_pct(a.predicted_fps, result.applied.fps)
    return {
        "format": JSON_FORMAT,
        "model": a.model,
        "target": a.target,
        "figures": a.figures,
        "report": result.report,
        "thresholds": asdict(a.thresholds),
        "network": {
            "cycles_total": a.network_cycles,
            "fps": a.fps,
            "mac_utilisation_pct": a.network_utilisation_pct,
        },
        "predicted": {
            "cycles_total": a.predicted_cycles,
            "fps": a.predicted_fps,
            "table_fps": a.table_predicted_fps,
            "in_context": any(b.context_gain_cycles is not None for b in a.blocks),
        },
        "blocks": [_block_json(b) for b in a.blocks],
        "skipped": list(a.skipped),
        "applied": applied,
    }


def _error_pct(predicted: float, measured: float) -> float:
    return 100.0 * (predicted - measured) / measured


def print_advice(result: AdviseResult, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 140)
    a = result.advice
    console.print(_table(a))
    for line in _summary(a):
        console.print(line)
    for skipped in a.skipped:
        console.print(f"[dim]not considered: {skipped}[/dim]")
    if result.applied is not None:
        for line in _applied(a, result):
            console.print(line)
    elif result.apply_requested:
        console.print("--apply: nothing to apply (no block has a recommended replacement).")


def _table(a: Advice) -> Table:
    rule = f"share >= {a.thresholds.min_share_pct:g}%"
    if a.utilisation_flags:
        rule = f"MAC util < {a.thresholds.max_utilisation_pct:.1f}% and {rule}"
    table = Table(title=f"{a.model} on {a.target}: sites by cycles ({a.figures}; flagged: {rule})")
    for col, justify in (
        ("site", "left"),
        ("slot cin>cout @size /s", "left"),
        ("now", "left"),
        ("cycles", "right"),
        ("share", "right"),
        ("MAC util", "right"),
        ("advice", "left"),
        ("saving", "right"),
        ("of net", "right"),
    ):
        table.add_column(col, justify=justify)
    for b in sorted(a.blocks, key=lambda b: -b.network.cycles):
        s = b.site.slot
        advice, saving, of_net = "", "", ""
        if b.best is not None:
            advice = f"[bold green]→ {b.best.form.label()}[/bold green]"
            saving = f"{b.gain_cycles:,}" + ("*" if b.context_gain_cycles is not None else "")
            of_net = f"{100.0 * b.gain_cycles / a.network_cycles:.1f}%"
        elif b.context_gain_cycles is not None:
            advice = "[yellow]keep: saves too little in context[/yellow]"
            saving = f"{b.context_gain_cycles:,}"
        elif b.wasteful:
            advice = "[yellow]keep: nothing saves enough[/yellow]"
        flag = "[red]●[/red] " if b.wasteful else "  "
        table.add_row(
            flag + b.site.path,
            f"{s.cin}>{s.cout} @{s.size} /{s.stride}",
            b.site.form.label(),
            f"{b.network.cycles:,}",
            f"{b.network.share_pct:.1f}%",
            f"{b.network.mac_utilisation_pct:.1f}%",
            advice,
            saving,
            of_net,
        )
    return table


def _summary(a: Advice) -> list[str]:
    if not a.blocks:
        return [
            f"{a.model} has no sites to advise on (advise replaces inverted residuals: "
            "ran_edge.blocks.InvertedResidual and zoo MobileNetV2 / EfficientNet-Lite blocks; "
            "and dense kxk convs with --sites convs|all, the default on CPU targets)."
        ]
    flagged = sum(b.wasteful for b in a.blocks)
    lines = [
        f"{len(a.blocks)} sites, {flagged} flagged, {len(a.recommended)} with a replacement "
        f"saving >= {a.thresholds.min_gain_pct:g}% of the site (savings: the cost table, by "
        f"the {a.figures}, each form alone in the same sandwich; * measured in the whole network)."
    ]
    if a.recommended:
        lines.append(
            f"network now: {a.fps:,.1f} FPS ({a.network_cycles:,} cycles, {a.figures}); "
            f"predicted with the advice: [bold]{a.predicted_fps:,.1f} FPS[/bold] "
            f"({a.predicted_fps / a.fps:.2f}x). New blocks need recovery: --apply distils them."
        )
    return lines


def _applied(a: Advice, result: AdviseResult) -> list[str]:
    ap = result.applied
    assert ap is not None
    lines = [
        f"applied {len(ap.replaced)} replacement(s): {', '.join(ap.replaced)}",
        f"wrote {ap.files['program']} and {ap.files['factory']}:make_model",
        f"{a.figures} on the rewritten network: [bold]{ap.fps:,.1f} FPS[/bold] "
        f"({ap.fps / a.fps:.2f}x the original; predicted {a.predicted_fps:,.1f}, "
        f"error {_error_pct(a.predicted_fps, ap.fps):+.1f}%)",
    ]
    if ap.agreement_after is not None:
        lines.append(
            f"top-1 agreement with the original on held-out images: "
            f"{100 * (ap.agreement_before or 0):.1f}% before recovery, "
            f"{100 * ap.agreement_after:.1f}% after {ap.epochs} epoch(s)"
        )
    return lines
