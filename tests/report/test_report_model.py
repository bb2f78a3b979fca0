"""The typed `Report`: a real report round-trips, figures are found one way (an unavailable
one explains itself, never raises), a damaged report is refused with a clear error, and
reports of older 1.x schemas still load."""

from __future__ import annotations

import copy
import io
import json
import math
import subprocess
import sys

import pytest
from helpers import BUILD_TARGETS
from rich.console import Console

from ran_edge.advise.advice import report_metric
from ran_edge.build.fingerprint import reused_report
from ran_edge.errors import StageError, UsageError
from ran_edge.regress.measure import figures_from_report
from ran_edge.report.console import comparison_table, print_report
from ran_edge.report.html import render_html
from ran_edge.report.json_report import validate
from ran_edge.report.metrics import metric_value
from ran_edge.report.model import (
    SCHEMA_VERSION,
    MetricValue,
    Report,
    load_report,
    schema,
)
from ran_edge.targets.loading import resolve_target

UNAVAILABLE = "Vela could not say (test)"


def _unavailable(data: dict, name: str, reason: str = UNAVAILABLE) -> dict:
    """`data` with metric `name` turned into an unavailable record, as the writers make."""
    damaged = copy.deepcopy(data)
    damaged["metrics"] = [
        {"name": m["name"], "unit": m["unit"], "availability": "unavailable", "reason": reason}
        if m["name"] == name
        else m
        for m in damaged["metrics"]
    ]
    return damaged


def _write(path, data) -> None:
    path.write_text(data if isinstance(data, str) else json.dumps(data))


# ---------------------------------------------------------------- a real report


def test_real_reports_round_trip(digits_build):
    for target in BUILD_TARGETS:
        data = digits_build.reports[target]
        report = Report.from_dict(data)
        assert report.to_dict() == data  # exactly the JSON that was read
        assert Report.from_dict(report.to_dict()) == report
        assert load_report(digits_build.model_dir / target / "report.json") == report
        assert load_report(digits_build.model_dir / target) == report  # its folder will do
        copied = report.to_dict()
        copied["metrics"].clear()
        assert report.to_dict() == data, "to_dict hands out a copy: the Report stays frozen"

        assert report.schema_version == SCHEMA_VERSION
        assert report.model.name == data["model"]["name"] == "digits_net_make_net"
        assert report.model.input_shape == (1, 1, 32, 32)
        t = report.target
        assert (t.name, t.kind, t.is_cpu) == (target, "ethos-u", False)
        assert t.clock_hz == data["target"]["clock_hz"] > 0
        assert t.arena_cache_size_bytes == data["target"]["arena_cache_size"]
        assert t.macs_per_cycle == int(target.rsplit("-", 1)[1])
        assert t.host_cpu is not None and t.host_cpu.core.startswith("cortex-m")
        # 1.4: the exact profile the report was made with
        assert t.profile_path and t.profile_path.endswith(".toml")
        assert t.profile_sha256 == resolve_target(target).sha256
        assert report.value("latency") == metric_value(data["metrics"], "latency") > 0
        assert report.fidelity.samples == 48 and report.fidelity_value("sqnr") > 0
        assert report.conversion.gate_passed and report.conversion.gate_problems == ()
        assert report.conversion.inputs[0].dtype == "int8"
        assert report.tflm is not None and report.tflm.bit_exact
        assert len(report.layers) == len(data["layers"]) > 0
        assert report.module_depth == data["modules"]["depth"]
        assert {r.path for r in report.modules_at(1)} >= {"stem", "block", "down"}
        assert report.artifacts["vela_tflite"].endswith("_vela.tflite")
        assert report.vela_command[0] == "vela"
        assert report.cpu is None
        assert "raw" not in repr(report)


def test_a_cpu_report_from_the_build_api(digits_build, tmp_path):
    """The producer side: `TargetBuild.report` is a Report, equal to the file it wrote; an
    estimate's latency spread is an unavailable figure with its reason; `--incremental`
    reuses the report on disk as a Report."""
    from ran_edge.build.profile import profile_tflite

    int8 = digits_build.model_dir / BUILD_TARGETS[0] / "digits_net_make_net_int8.tflite"
    target = resolve_target("rpi4")
    build = profile_tflite(int8, target, tmp_path)
    report = build.report
    assert isinstance(report, Report)
    on_disk = json.loads((build.out_dir / "report.json").read_text())
    assert report.to_dict() == on_disk
    assert report == load_report(build.out_dir / "report.json")
    assert report.is_cpu and report.target.core == "cortex-a72" and report.target.simd
    assert report.cpu is not None and report.cpu.mode == "estimated"
    assert report.cpu.measurement is None and report.cpu.estimate.latency_ms > 0
    assert report.target.profile_sha256 == target.sha256

    spread = report.metric("latency_p90")
    assert spread is not None and spread.value is None and not spread.available
    assert "estimate" in spread.reason and spread.source is None
    assert report.value("latency_p90") is None
    assert report.value("latency") > 0

    reused = reused_report(tmp_path, int8.stem, target, report.inputs_sha256)
    assert reused == report
    assert reused_report(tmp_path, int8.stem, target, "0" * 64) is None
    (build.out_dir / "report.json").write_text("{not json")
    assert reused_report(tmp_path, int8.stem, target, report.inputs_sha256) is None


# ---------------------------------------------------------------- finding figures


def test_an_unavailable_metric_is_returned_with_its_reason(digits_build):
    data = _unavailable(digits_build.reports[BUILD_TARGETS[0]], "cycles_total")
    report = Report.from_dict(data)
    m = report.metric("cycles_total")
    assert m == MetricValue("cycles_total", "cycles", None, None, UNAVAILABLE)
    assert report.value("cycles_total") is None
    assert report.metric("no_such_figure") is None and report.value("no_such_figure") is None
    assert report.fidelity_metric("no_such_figure") is None
    assert metric_value(data["metrics"], "cycles_total") is None

    # every reader copes: left out, "n/a" with the reason, or an error that gives it
    assert "cycles_total" not in figures_from_report(report)
    console = Console(file=io.StringIO(), width=160)
    print_report(console, report, layers=True)
    console.print(
        comparison_table([report, Report.from_dict(digits_build.reports[BUILD_TARGETS[1]])])
    )
    assert "n/a" in console.file.getvalue()
    assert UNAVAILABLE in render_html([report])
    with pytest.raises(StageError, match="cycles_total.*unavailable: Vela could not say"):
        report_metric(report, "cycles_total")


def test_metric_records_round_trip_infinities_and_refuse_nan():
    inf = MetricValue("sqnr", "dB", math.inf, source="litert")
    assert inf.to_json() == {"name": "sqnr", "value": "inf", "unit": "dB", "source": "litert"}
    assert MetricValue.from_json(inf.to_json()) == inf
    nan = MetricValue("sqnr", "dB", math.nan, source="litert").to_json()
    assert nan["availability"] == "unavailable" and "NaN" in nan["reason"]


# ---------------------------------------------------------------- refusing damaged reports


def test_a_damaged_report_is_refused_naming_file_field_and_fix(digits_build, tmp_path):
    good = digits_build.reports[BUILD_TARGETS[0]]
    path = tmp_path / "report.json"

    damaged = copy.deepcopy(good)
    damaged["target"]["clock_hz"] = "fast"
    _write(path, damaged)
    with pytest.raises(UsageError) as err:
        load_report(path)
    message = str(err.value)
    assert str(path) in message and "target/clock_hz" in message and "rebuild" in message

    damaged = copy.deepcopy(good)
    del damaged["layers"]
    with pytest.raises(UsageError, match=r"the report does not match .* at \(top\).*'layers'"):
        Report.from_dict(damaged)
    with pytest.raises(StageError, match="internal error"):  # the writer's check: a bug
        validate(damaged)

    for text, fragment in (
        ("{not json", "not valid JSON"),
        ({**good, "schema": "mlia/report"}, "not a ran-edge report"),
        ({**good, "schema_version": "2.0"}, "reads 1.x"),
        ([1, 2], "not a ran-edge report"),
    ):
        _write(path, text)
        with pytest.raises(UsageError, match=fragment):
            load_report(path)
    with pytest.raises(UsageError, match="does not exist"):
        load_report(tmp_path / "nowhere" / "report.json")


def test_a_1_3_report_without_the_profile_fields_still_loads(digits_build):
    old = copy.deepcopy(digits_build.reports[BUILD_TARGETS[0]])
    del old["target"]["profile_path"], old["target"]["profile_sha256"]
    with pytest.raises(UsageError, match="profile_path"):  # required from 1.4 on
        Report.from_dict(old)
    old["schema_version"] = "1.3"
    report = Report.from_dict(old)
    assert report.target.profile_path is None and report.target.profile_sha256 is None
    assert report.target.name == BUILD_TARGETS[0]
    assert report.value("latency") > 0


# ---------------------------------------------------------------- the schema and the module


def test_schema_id_matches_the_version_written():
    assert schema()["$id"] == f"ran-edge/report/{SCHEMA_VERSION}"
    target = schema()["properties"]["target"]["properties"]
    assert "bytes" in target["arena_cache_size"]["description"]
    assert "Hz" in target["clock_hz"]["description"]


def test_the_model_module_is_import_light():
    code = (
        "import sys, ran_edge.report.model; "
        "print(sorted(m for m in ('torch', 'numpy', 'jsonschema', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
