"""Memory traffic in the report (schema 1.6): typed on read, checked by the schema, shown in
the console and on the HTML page; a 1.5 report without it still loads and says why."""

from __future__ import annotations

import copy
import io

import jsonschema
import pytest
from helpers import BUILD_TARGETS
from rich.console import Console

from ran_edge.errors import UsageError
from ran_edge.report.console import layer_table, memory_table, print_report
from ran_edge.report.html import render_html
from ran_edge.report.model import SCHEMA_VERSION, Report, schema
from ran_edge.report.traffic import AREAS

U55, U65 = BUILD_TARGETS


def _text(renderable) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def _old(data: dict) -> dict:
    """`data` as a 1.5 report: no memory traffic anywhere."""
    old = copy.deepcopy(data)
    del old["memory_traffic"]
    for layer in old["layers"]:
        layer.pop("memory", None)
        layer.pop("bound_by", None)
    return old


def test_typed_traffic_adds_up(digits_build):
    for target in BUILD_TARGETS:
        report = Report.from_dict(digits_build.reports[target])
        assert report.schema_version == SCHEMA_VERSION == "1.6"
        traffic = report.memory_traffic
        assert traffic is not None and traffic.per_layer
        assert tuple(a.area for a in traffic.areas) == AREAS
        assert 0 < traffic.npu_busy_pct <= 100
        for network in traffic.areas:
            layers = [row.area(network.area) for row in report.layers]
            moved = sum(a.total_bytes for a in layers if a is not None)
            weights = sum(a.weights_read_bytes for a in layers if a is not None)
            assert (moved, weights) == (network.total_bytes, network.weights_read_bytes)
            assert network.other_bytes >= 0
        assert {a.area for a in traffic.active} == {"sram", traffic.weights_area}
        bound = [row for row in report.layers if row.memory_bound]
        assert all(row.bound_by in AREAS for row in bound)


def test_schema_requires_it_from_1_6_and_checks_it(digits_build):
    data = digits_build.reports[U55]
    with pytest.raises(UsageError, match="memory_traffic"):
        Report.from_dict(_old(data))
    old = _old(data)
    old["schema_version"] = "1.5"
    report = Report.from_dict(old)
    assert report.memory_traffic is None
    assert all(row.memory == () and row.bound_by is None for row in report.layers)
    assert report.value("latency") > 0

    validator = jsonschema.Draft202012Validator(schema())
    for damage in (
        lambda d: d["memory_traffic"]["areas"].pop("dram"),
        lambda d: d["memory_traffic"]["areas"].update(flash=d["memory_traffic"]["areas"]["sram"]),
        lambda d: d["memory_traffic"].update(weights_area="Off-chip Flash"),
        lambda d: d["layers"][0]["memory"]["sram"].update(total_bytes=-1),
        lambda d: d["layers"][0]["memory"]["sram"].pop("access_cycles"),
        lambda d: d["layers"][0].update(bound_by="L2"),
    ):
        damaged = copy.deepcopy(data)
        damage(damaged)
        assert not validator.is_valid(damaged)


def test_console_shows_the_memory_table_and_what_bounds_each_layer(digits_build):
    report = Report.from_dict(digits_build.reports[U55])
    traffic = report.memory_traffic
    flash = traffic.area("off_chip_flash")
    text = _text(memory_table(report))
    assert "memory traffic per inference (Vela)" in text
    assert f"NPU busy {traffic.npu_busy_pct:.1f}% of {traffic.cycles_total:,} cycles" in text
    assert "off-chip flash (weights)" in text and "SRAM (arena)" in text
    assert f"{flash.weights_read_bytes / 1024:,.1f}" in text
    assert f"{flash.access_cycles:,}" in text
    assert "DRAM" not in text  # idle areas are left out
    assert "layers memory-bound (off-chip flash" in text

    layers = _text(layer_table(report))
    assert "off-chip flash" in layers and "compute" in layers

    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_report(console, report)
    assert "memory traffic per inference" in console.file.getvalue()

    u65 = Report.from_dict(digits_build.reports[U65])
    assert "DRAM (weights, arena)" in _text(memory_table(u65))

    old = _old(digits_build.reports[U55])
    old["schema_version"] = "1.5"
    report = Report.from_dict(old)
    assert memory_table(report) is None
    assert "memory" in _text(layer_table(report))  # memory-bound, area unknown


def test_html_page_shows_the_traffic(digits_build):
    reports = [Report.from_dict(digits_build.reports[t]) for t in BUILD_TARGETS]
    html = render_html(reports)
    section = html.split('<section id="memory">')[1].split("</section>")[0]
    assert '<a href="#memory">Memory traffic</a>' in html
    for report in reports:
        traffic = report.memory_traffic
        assert f'id="memory-{report.target.name}"' in section
        assert f"NPU busy {traffic.npu_busy_pct:.1f}%" in section
        weights = traffic.area(traffic.weights_area)
        assert f">{weights.weights_read_bytes:,}<" in section
        assert f">{weights.access_cycles:,}<" in section
    assert "off-chip flash (weights)" in section and "DRAM (weights, arena)" in section
    details = html.split('<section id="details">')[1]
    assert "<th>bound</th>" in details and '<th class="num">off-chip flash B</th>' in details

    old = _old(digits_build.reports[U55])
    old["schema_version"] = "1.5"
    assert "predates schema 1.6" in render_html([Report.from_dict(old)])
