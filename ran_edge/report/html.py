"""One self-contained `report.html` per model: summary cards, charts and tables for every
target built, readable offline (inline CSS, images as data URIs, a CSP that forbids any
network load), and byte-identical for the same reports.

The page is built in two steps: `Report`s -> view dataclasses (plain strings and
charts, all formatting decided here) -> the jinja2 template (autoescaped, layout only).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ran_edge.atomic import write_atomic
from ran_edge.errors import UsageError
from ran_edge.report import plots
from ran_edge.report.console import (
    area_role,
    band_note,
    band_note_metric,
    bound_text,
    busy_text,
    interval_text,
    memory_bound_text,
    tflm_verdict,
)
from ran_edge.report.model import REPORT_FILE, MetricValue, Report, by_target, load_report
from ran_edge.report.traffic import area_label

HTML_FILE = "report.html"
MODULE_TOP = 20
EXTRA_IMAGE_TYPES = {".png": "image/png", ".svg": "image/svg+xml"}
EXTRA_IMAGE_MAX_BYTES = 4 << 20

SOURCES = {
    "vela": ("Vela", "estimated by Vela's performance model"),
    "measured": ("measured", "measured on hardware or a cycle-accurate model"),
    "estimated": ("estimate", "estimated by a ran-edge model of the target"),
    "ran-edge": ("derived", "derived by ran-edge from other figures"),
    "litert": ("LiteRT", "computed by running the model in LiteRT"),
}

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("ran_edge.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


# ---------------------------------------------------------------- view model


@dataclass(frozen=True)
class Stat:
    """One figure on a card: its value as text, and where it came from or why it is missing."""

    label: str
    value: str  # "n/a" when unavailable
    unit: str = ""
    source: str | None = None  # a key of SOURCES
    reason: str = ""  # why the figure is unavailable
    note: str = ""
    interval: str = ""  # "90% interval 19.0-24.0": the figure's uncertainty band, if it has one

    @property
    def source_label(self) -> str:
        return SOURCES.get(self.source or "", (self.source or "", ""))[0]

    @property
    def source_help(self) -> str:
        return SOURCES.get(self.source or "", ("", self.source or ""))[1]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-align these columns


@dataclass(frozen=True)
class ExtraSection:
    """A section fed from outside the reports (search, shrink, ...): text, images, a table.

    `id` becomes the HTML anchor; everything is escaped, so plain text only.
    """

    id: str
    title: str
    paragraphs: tuple[str, ...] = ()
    charts: tuple[plots.Chart, ...] = ()
    captions: tuple[str, ...] = ()  # one per chart
    table: Table | None = None


@dataclass(frozen=True)
class TargetView:
    name: str
    anchor: str
    description: str
    config: str
    gate_passed: bool
    gate_problems: tuple[str, ...]
    hero: tuple[Stat, ...]
    stats: tuple[Stat, ...]
    fidelity: tuple[Stat, ...]
    tflm: str | None
    fallbacks: Table | None
    memory: Table | None  # 1.6, ethos-u: traffic per memory area
    memory_note: str  # NPU busy, memory-bound layers; or why there is no table
    layer_chart: plots.Chart
    module_chart: plots.Chart | None
    module_table: Table
    module_depth: int
    layer_table: Table
    layer_count: int
    vela_command: str
    artifacts: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ModelView:
    name: str
    source: str
    input_shape: str
    params: str
    macs: str
    weights: str
    calibration: str
    versions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class HtmlReport:
    """What `ran-edge report` wrote."""

    path: Path
    targets: tuple[str, ...]
    bytes: int

    def to_json(self) -> dict:
        return {"html": str(self.path), "targets": list(self.targets), "bytes": self.bytes}


# ---------------------------------------------------------------- loading


def find_reports(path: Path) -> tuple[Path, list[Path]]:
    """The folder the page belongs in, and the report.json files it covers.

    Accepts build/<model> (one sub-folder per target), build/<model>/<target>, or a
    report.json itself.
    """
    if not path.exists():
        raise UsageError(
            f"{path} does not exist; pass the folder `ran-edge build` wrote "
            "(build/<model>), one target folder in it, or a report.json."
        )
    if path.is_file():
        return path.parent, [path]
    if (path / REPORT_FILE).is_file():
        return path, [path / REPORT_FILE]
    found = sorted(p for p in path.glob(f"*/{REPORT_FILE}") if not p.parent.name.startswith("."))
    if not found:
        raise UsageError(
            f"no {REPORT_FILE} in {path} or its sub-folders; build first "
            f"(`ran-edge build --model ... --out {path.parent}`) and pass build/<model>."
        )
    return path, found


def load_reports(path: Path) -> tuple[Path, list[Report]]:
    """The folder the page belongs in, and its reports (checked, in target-name order)."""
    folder, files = find_reports(path)
    return folder, by_target([load_report(f) for f in files])


# Extra sections read from JSON files beside the reports: file name -> loader. A feature
# that writes e.g. `search.json` into build/<model>/ registers a loader here and its
# section appears in every report of that folder.
ExtraLoader = Callable[[dict, Path], ExtraSection]
EXTRA_JSON_LOADERS: dict[str, ExtraLoader] = {}


def discover_extras(folder: Path) -> list[ExtraSection]:
    """Sections from files beside the target folders: registered JSON files, and any
    .png/.svg (a search's pareto.png, say) shown as-is."""
    sections = []
    for name, loader in sorted(EXTRA_JSON_LOADERS.items()):
        file = folder / name
        if file.is_file():
            sections.append(loader(json.loads(file.read_text(encoding="utf-8")), file))
    charts, captions, skipped = [], [], []
    for file in sorted(folder.iterdir()):
        mime = EXTRA_IMAGE_TYPES.get(file.suffix.lower())
        if mime is None or not file.is_file():
            continue
        data = file.read_bytes()
        if len(data) > EXTRA_IMAGE_MAX_BYTES:
            skipped.append(f"{file.name} ({len(data) >> 20} MiB) is too large to embed.")
            continue
        charts.append(plots.Chart(mime=mime, data=data, alt=file.name, width=0, height=0))
        captions.append(file.name)
    if charts or skipped:
        sections.append(
            ExtraSection(
                id="extra-figures",
                title="Other figures in this folder",
                paragraphs=tuple(skipped),
                charts=tuple(charts),
                captions=tuple(captions),
            )
        )
    return sections


# ---------------------------------------------------------------- formatting


def _num(value, spec: str) -> str:
    """`spec` is a format spec, or "sig" for three significant digits without exponents."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if spec == "sig":
        size = abs(value)
        spec = ",.0f" if size >= 100 else ".1f" if size >= 10 else ".2f" if size >= 1 else ".3g"
    return format(value, spec)


def _stat(m: MetricValue | None, name: str, label: str, spec: str, note: str = "") -> Stat:
    """A card figure from `report.metric(name)` (or a fidelity metric)."""
    if m is None:
        return Stat(label, "n/a", reason=f"this report has no {name} figure")
    if m.value is None:
        return Stat(label, "n/a", m.unit, reason=m.reason or "unavailable")
    band = interval_text(m, lambda x: _num(x, spec))
    return Stat(label, _num(m.value, spec), m.unit, m.source, note=note, interval=band)


def _with_interval(m: MetricValue | None, spec: str) -> str:
    """A table cell: the figure, and its uncertainty band (if any) in parentheses."""
    if m is None or m.value is None:
        return "n/a"
    band = interval_text(m, lambda x: _num(x, spec))
    return f"{_num(m.value, spec)} ({band})" if band else _num(m.value, spec)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


# ---------------------------------------------------------------- per-target views


def _card_stats(report: Report) -> tuple[tuple[Stat, ...], tuple[Stat, ...]]:
    def stat(name: str, label: str, spec: str, note: str = "") -> Stat:
        return _stat(report.metric(name), name, label, spec, note)

    sram_only = report.target.sram_only
    on_chip = report.value("on_chip_flash_used") or 0
    # a CPU estimate without a band says so once, on the latency card
    no_band = band_note(report) if band_note_metric(report) == "latency" else ""
    hero = (
        stat("inferences_per_second", "inferences / s", ",.1f"),
        stat("latency", "latency", "sig", note=no_band),
    )
    npu, cpu = report.value("npu_ops"), report.value("cpu_ops")
    ops_metric = report.metric("npu_ops")
    share = report.value("npu_op_share")
    ops = Stat(
        "ops NPU / CPU",
        f"{_num(npu, ',')} / {_num(cpu, ',')}",
        "",
        ops_metric.source if ops_metric else None,
        reason=""
        if npu is not None
        else (ops_metric.reason if ops_metric else "") or "unavailable",
        note="" if share is None else f"{share:.0f} % of ops on the NPU",
    )
    sram_note = f"includes {on_chip:,.1f} KiB of weights (Sram_Only)" if sram_only else ""
    stats = [
        ops,
        stat("mac_utilisation", "MAC utilisation", ".1f"),
        stat("sram_total", "SRAM", ",.1f", note=sram_note),
        stat("off_chip_flash_used", "off-chip flash", ",.1f"),
        stat("dram_used", "DRAM", ",.1f"),
    ]
    if on_chip and not sram_only:
        stats.append(stat("on_chip_flash_used", "on-chip flash", ",.1f"))
    stats += [
        stat("cycles_total", "cycles, total", ","),
        stat("cycles_npu", "cycles, NPU compute", ","),
        stat("macs", "MACs", ","),
        stat("encoded_weights", "encoded weights", ","),
        stat("cpu_fallback_time", "CPU-fallback time", ",.2f"),
    ]
    return hero, tuple(stats)


def _fidelity_stats(report: Report) -> tuple[Stat, ...]:
    samples = report.fidelity.samples
    note = f"{samples} held-out samples" if samples else ""
    return tuple(
        _stat(report.fidelity_metric(name), name, label, spec, note=note)
        for name, label, spec in (
            ("top1_agreement", "top-1 agreement", ".1f"),
            ("sqnr", "SQNR", ".1f"),
            ("max_abs_error", "max |error|", ".3g"),
        )
    )


def _tflm_text(report: Report) -> str | None:
    """The TFLM-vs-LiteRT check (schema 1.1) in one sentence; None before 1.1 or for profile."""
    tflm = report.tflm
    if tflm is None:
        return None
    if tflm.error:
        return f"TFLM could not run the model: {tflm.error}"
    return (
        f"TFLM vs LiteRT reference kernels on {tflm.samples} samples: "
        f"{tflm_verdict(tflm)}; TFLM arena {tflm.arena_total_bytes or 0:,} B "
        f"({tflm.arena_persistent_bytes or 0:,} B persistent)."
    )


def _layer_bars(report: Report) -> list[plots.LayerBar]:
    return [
        plots.LayerBar(
            index=row.index,
            placement=row.placement,
            cycles=row.cycles,
            npu_cycles=row.npu_cycles,
            macs=row.macs,
            mac_utilisation_pct=row.mac_utilisation_pct,
            memory_bound=row.memory_bound,
            module=row.module,
        )
        for row in report.layers
    ]


def _layer_areas(report: Report) -> tuple[str, ...]:
    """The memory areas the per-layer table gets a bytes column for: those the network used,
    when its layers carry their traffic (1.6)."""
    traffic = report.memory_traffic
    if traffic is None or not any(row.memory for row in report.layers):
        return ()
    return tuple(a.area for a in traffic.active)


def _layer_table(report: Report) -> Table:
    areas = _layer_areas(report)

    def area_bytes(row, area: str) -> str:
        traffic = row.area(area)
        return _num(traffic.total_bytes, ",") if traffic else ""

    rows = tuple(
        (
            str(row.index),
            row.op,
            row.npu_op,
            row.placement,
            _num(row.cycles, ","),
            _num(row.npu_cycles, ","),
            _num(row.macs, ","),
            _num(row.mac_utilisation_pct, ".1f") if row.macs else "",
            bound_text(row),
            *(area_bytes(row, area) for area in areas),
            _num(row.sram_bytes, ","),
            row.module,
        )
        for row in report.layers
    )
    headers = ("#", "op", "Vela op", "on", "cycles", "NPU cycles", "MACs", "util %", "bound")
    headers += tuple(f"{area_label(a)} B" for a in areas)
    headers += ("SRAM staging B", "PyTorch module")
    numeric = (True, False, False, False, True, True, True, True, False)
    numeric += (True,) * len(areas) + (True, False)
    return Table(headers, rows, numeric)


def _memory_views(report: Report) -> tuple[Table | None, str]:
    """The network's traffic per memory area, and a sentence on the NPU-busy share and the
    memory-bound layers (or why there is no table)."""
    traffic = report.memory_traffic
    if traffic is None:
        if report.is_cpu:
            return None, "A CPU target: no NPU memory traffic."
        return None, "This report predates schema 1.6: rebuild it for its memory traffic."
    rows = tuple(
        (
            area_role(report, a),
            _num(a.activations_read_bytes, ","),
            _num(a.activations_write_bytes, ","),
            _num(a.weights_read_bytes, ","),
            _num(a.weights_write_bytes, ","),
            _num(a.other_bytes, ","),
            _num(a.total_bytes, ","),
            _num(a.access_cycles, ","),
            _num(100.0 * a.access_cycles / traffic.cycles_total, ".1f")
            if traffic.cycles_total
            else "n/a",
        )
        for a in traffic.active
    )
    table = Table(
        (
            "memory",
            "activations read B",
            "activations write B",
            "weights read B",
            "weights write B",
            "other B",
            "total B",
            "access cycles",
            "% of cycles",
        ),
        rows,
        (False,) + (True,) * 8,
    )
    note = f"{busy_text(traffic)} (compute; the rest waits on memory). {memory_bound_text(report)}."
    return table, note


def _module_views(report: Report) -> tuple[plots.Chart | None, Table, int]:
    depth = report.module_depth
    top = report.modules_at(depth)[:MODULE_TOP]
    chart = None
    if top:
        chart = plots.module_chart(
            [
                plots.ModuleBar(r.path, r.cycles, r.cycle_share_pct, r.mac_utilisation_pct, r.macs)
                for r in top
            ],
            target=report.target.name,
            depth=depth,
        )
    table = Table(
        ("module", "ops", "cycles", "share %", "MACs", "MAC util %"),
        tuple(
            (
                r.path,
                str(r.ops),
                _num(r.cycles, ","),
                _num(r.cycle_share_pct, ".1f"),
                _num(r.macs, ","),
                _num(r.mac_utilisation_pct, ".1f"),
            )
            for r in top
        ),
        (False, True, True, True, True, True),
    )
    return chart, table, depth


def _fallback_table(report: Report) -> Table | None:
    rows = tuple(
        (f.op_type, f.module or f.name, f.reason, f.fix or "") for f in report.cpu_fallbacks
    )
    if not rows:
        return None
    return Table(("op", "PyTorch module", "Vela's reason", "fix"), rows, (False,) * 4)


@dataclass(frozen=True)
class SensitivityView:
    """Per-op int8 error against float (schema 1.3): target-independent, shown once."""

    chart: plots.Chart
    worst: Table
    samples: int


def sensitivity_view(reports: Sequence[Report], worst: int = 10) -> SensitivityView | None:
    section = next((r.sensitivity for r in reports if r.sensitivity is not None), None)
    if section is None or not section.rows:
        return None
    points = [
        plots.SensitivityPoint(r.index, r.op_type, r.module, r.dtype, r.sqnr_db, r.exact)
        for r in section.rows
    ]
    table = Table(
        ("#", "op", "PyTorch module", "activations", "SQNR dB", "drop dB"),
        tuple(
            (
                str(r.index),
                r.op_type,
                r.module,
                r.dtype,
                _num(r.sqnr_db, ".1f"),
                _num(r.drop_db, ".1f"),
            )
            for r in section.worst(worst)
        ),
        (True, False, False, False, True, True),
    )
    return SensitivityView(plots.sensitivity_chart(points), table, section.samples)


def target_view(report: Report) -> TargetView:
    t = report.target
    config = ", ".join(
        str(part)
        for part in (
            t.system_config,
            t.memory_mode,
            f"{t.clock_hz / 1e6:,.0f} MHz" if t.clock_hz else None,
            f"{t.macs_per_cycle} MACs/cycle" if t.macs_per_cycle else None,
            t.optimise and f"optimise {t.optimise}",
        )
        if part
    )
    hero, stats = _card_stats(report)
    module_chart, module_table, depth = _module_views(report)
    memory, memory_note = _memory_views(report)
    return TargetView(
        name=t.name,
        anchor=_slug(t.name),
        description=t.description,
        config=config,
        gate_passed=report.conversion.gate_passed,
        gate_problems=report.conversion.gate_problems,
        hero=hero,
        stats=stats,
        fidelity=_fidelity_stats(report),
        tflm=_tflm_text(report),
        fallbacks=_fallback_table(report),
        memory=memory,
        memory_note=memory_note,
        layer_chart=plots.layer_chart(
            _layer_bars(report),
            target=t.name,
            mac_utilisation=report.value("mac_utilisation"),
        ),
        module_chart=module_chart,
        module_table=module_table,
        module_depth=depth,
        layer_table=_layer_table(report),
        layer_count=len(report.layers),
        vela_command=" ".join(report.vela_command),
        artifacts=tuple(sorted(report.artifacts.items())),
    )


def _float_or_none(value) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _comparison(reports: Sequence[Report]) -> tuple[plots.Chart, Table] | None:
    if len(reports) < 2:
        return None
    bars = [
        plots.TargetBar(
            name=r.target.name,
            inferences_per_second=_float_or_none(r.value("inferences_per_second")),
            mac_utilisation_pct=_float_or_none(r.value("mac_utilisation")),
            latency_ms=_float_or_none(r.value("latency")),
        )
        for r in reports
    ]
    rows = []
    for r in reports:
        v = r.value
        rows.append(
            (
                r.target.name,
                _with_interval(r.metric("inferences_per_second"), ",.1f"),
                _with_interval(r.metric("latency"), ",.3f"),
                _with_interval(r.metric("cycles_total"), ","),
                _num(v("mac_utilisation"), ".1f"),
                _num(v("sram_total"), ",.1f"),
                _num(v("off_chip_flash_used"), ",.1f"),
                _num(v("dram_used"), ",.1f"),
                f"{_num(v('npu_ops'), ',')} / {_num(v('cpu_ops'), ',')}",
            )
        )
    table = Table(
        (
            "target",
            "inf/s",
            "latency ms",
            "cycles",
            "MAC util %",
            "SRAM KiB",
            "flash KiB",
            "DRAM KiB",
            "ops NPU / CPU",
        ),
        tuple(rows),
        (False, True, True, True, True, True, True, True, True),
    )
    return plots.comparison_chart(bars), table


def model_view(report: Report) -> ModelView:
    model = report.model
    calib = report.calibration
    versions = [("ran-edge", report.ran_edge_version or "?")]
    versions += sorted(report.tools.items())
    return ModelView(
        name=model.name,
        source=model.source,
        input_shape="×".join(str(d) for d in model.input_shape),
        params=_num(model.params, ","),
        macs=_num(model.macs, ","),
        weights=model.weights,
        calibration=calib.description if calib else "none (profiled a ready .tflite)",
        versions=tuple(versions),
    )


# ---------------------------------------------------------------- rendering


def render_html(
    reports: Sequence[Report],
    *,
    title: str | None = None,
    extras: Sequence[ExtraSection] = (),
) -> str:
    """The page for these reports (pure: same reports and extras, same text)."""
    if not reports:
        raise UsageError("no reports to render; build a model first with `ran-edge build`.")
    models = sorted({r.model.name for r in reports})
    title = title or f"{' / '.join(models)} on Ethos-U"
    comparison = _comparison(reports)
    template = _TEMPLATES.get_template("report.html.j2")
    return template.render(
        title=title,
        model=model_view(reports[0]),
        other_models=models[1:],
        targets=[target_view(r) for r in reports],
        comparison_chart=comparison[0] if comparison else None,
        comparison_table=comparison[1] if comparison else None,
        sensitivity=sensitivity_view(reports),
        extras=list(extras),
        sources=SOURCES,
    )


def _write_atomic(path: Path, text: str) -> int:
    """Temp file beside `path`, then one rename: a reader never sees half a page."""
    data = text.encode("utf-8")
    write_atomic(path, data)
    return len(data)


def render_html_report(
    reports: Sequence[Report],
    out: Path,
    *,
    title: str | None = None,
    extras: Sequence[ExtraSection] = (),
) -> Path:
    """Write the page for `reports` (any number of targets) to `out`."""
    _write_atomic(out, render_html(reports, title=title, extras=extras))
    return out


def write_report_for(
    path: Path, out: Path | None = None, *, title: str | None = None
) -> HtmlReport:
    """What `ran-edge report PATH` does: find and check the reports, add the extras found
    beside them, write the page (default `<folder>/report.html`)."""
    folder, reports = load_reports(path)
    if out is None:
        out = folder / HTML_FILE
    elif out.is_dir():
        out = out / HTML_FILE
    text = render_html(reports, title=title, extras=discover_extras(folder))
    size = _write_atomic(out, text)
    return HtmlReport(out, tuple(r.target.name for r in reports), size)


__all__ = [
    "EXTRA_JSON_LOADERS",
    "ExtraSection",
    "HtmlReport",
    "Table",
    "discover_extras",
    "find_reports",
    "load_report",
    "load_reports",
    "render_html",
    "render_html_report",
    "write_report_for",
]
