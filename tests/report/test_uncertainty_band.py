"""Uncertainty bands (schema 1.5): an estimated CPU figure carries its profile's held-out band
in report.json, the console and the HTML page; a profile without one says so, once."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest
from helpers import run_cli

from ran_edge.report.console import NO_BAND_NOTE
from ran_edge.report.model import SCHEMA_VERSION, MetricValue, Report, load_report, schema
from ran_edge.resources import shipped_dir
from ran_edge.targets.cortex_a.report import cpu_metrics
from ran_edge.targets.cortex_a.spec import UncertaintyBand
from ran_edge.targets.loading import TARGET_PATH_ENV

BAND = {"low": 0.8, "high": 1.25, "coverage": 0.9, "samples": 24, "source": "test held-out set"}
ESTIMATED = ("latency", "system_latency", "latency_estimated", "cycles_total")
RATES = ("inferences_per_second", "system_inferences_per_second")


def _metric_schema() -> dict:
    """The published metric definition, with the $defs it refers to."""
    full = schema()
    return {"$schema": full["$schema"], "$defs": full["$defs"], "$ref": "#/$defs/metric"}


def _profile_toml(name: str, band: dict | None) -> str:
    """The shipped rpi4 profile under another name, with `band` (or none) in [cpu_model]."""
    text = (shipped_dir("targets") / "rpi4.toml").read_text()
    text = text.replace('name = "rpi4"', f'name = "{name}"')
    text = re.sub(r"(?m)^aliases = .*\n", "", text)
    text = re.sub(r"(?m)^band_\w+ = .*\n", "", text)  # whatever the shipped profile has
    if band is not None:
        # TOML writes these strings and numbers as JSON does
        keys = "".join(f"band_{k} = {json.dumps(v)}\n" for k, v in band.items())
        text = text.replace("[cpu_model]\n", f"[cpu_model]\n{keys}", 1)
    return text


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("targets")
    (folder / "rpi4-band.toml").write_text(_profile_toml("rpi4-band", BAND))
    (folder / "rpi4-noband.toml").write_text(_profile_toml("rpi4-noband", None))
    return folder


@pytest.fixture(autouse=True)
def _target_path(monkeypatch, profiles):
    monkeypatch.setenv(TARGET_PATH_ENV, str(profiles))


@pytest.fixture(scope="module")
def tiny_tflite(tmp_path_factory) -> Path:
    """A two-conv int8 model (3 KB), built once: no Vela, no training."""
    from torch import nn

    from ran_edge.quiet import captured_output
    from ran_edge.targets.cortex_a.microbench import build_int8

    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 1))
    with captured_output():
        data = build_int8(net, (1, 3, 16, 16))
    path = tmp_path_factory.mktemp("model") / "tiny_int8.tflite"
    path.write_bytes(data)
    return path


def _profile(model: Path, target: str, out: Path, *extra: str):
    return run_cli("profile", model, "--target", target, "--out", out, "-q", *extra)


def _metrics(report: dict) -> dict[str, dict]:
    return {m["name"]: m for m in report["metrics"]}


# ---------------------------------------------------------------- the record


def test_metric_interval_round_trips_and_matches_the_schema():
    m = MetricValue("latency", "ms", 21.4, "estimated", interval=(19.0, 24.0), coverage=0.9)
    data = m.to_json()
    assert data["interval"] == {"low": 19.0, "high": 24.0, "coverage": 0.9}
    jsonschema.validate(data, _metric_schema())
    back = MetricValue.from_json(data)
    assert back == m and hash(back) == hash(m)
    assert back.interval == (19.0, 24.0) and back.coverage == 0.9
    # a figure without one writes none, and an older record (no interval) still reads
    plain = MetricValue("latency", "ms", 21.4, "vela")
    assert "interval" not in plain.to_json()
    assert MetricValue.from_json(plain.to_json()) == plain
    assert MetricValue.from_json(plain.to_json()).interval is None
    # an unavailable figure has no band to write
    gone = MetricValue("latency", "ms", None, None, "n/a", interval=(1.0, 2.0), coverage=0.9)
    assert "interval" not in gone.to_json()
    # the schema wants all three numbers, and nothing else
    for bad in (
        {"low": 1.0, "high": 2.0},
        {**data["interval"], "p": 1},
        {**data["interval"], "coverage": 1.5},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**data, "interval": bad}, _metric_schema())
    with pytest.raises(ValueError, match="coverage"):
        MetricValue("latency", "ms", 1.0, "estimated", interval=(0.9, 1.1))


# ---------------------------------------------------------------- a CPU estimate with a band


def test_estimated_profile_carries_the_band(tiny_tflite, tmp_path):
    out = tmp_path / "out"
    result = _profile(tiny_tflite, "rpi4-band", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["schema_version"] == SCHEMA_VERSION
    jsonschema.validate(report, schema())
    metrics = _metrics(report)
    for name in (*ESTIMATED, *RATES):
        m = metrics[name]
        assert m["source"] == "estimated", name
        band = m["interval"]
        assert band["coverage"] == 0.9
        assert band["low"] <= m["value"] <= band["high"], name
    latency = metrics["latency"]
    assert latency["interval"]["low"] == pytest.approx(latency["value"] * 0.8)
    assert latency["interval"]["high"] == pytest.approx(latency["value"] * 1.25)
    ips = metrics["inferences_per_second"]["interval"]
    assert ips["low"] == pytest.approx(1e3 / latency["interval"]["high"])
    assert ips["high"] == pytest.approx(1e3 / latency["interval"]["low"])
    # exact figures (counted, or with no band of their own) carry none
    for name in ("macs", "model_size", "model_memory", "cpu_ops", "latency_p90"):
        assert "interval" not in metrics[name], name
    cpu = report["cpu"]
    assert cpu["cpu_model"]["band"] == BAND
    est = cpu["estimate"]
    assert est["interval_ms"]["low"] == pytest.approx(est["latency_ms"] * 0.8)
    assert est["interval_ms"]["high"] == pytest.approx(est["latency_ms"] * 1.25)
    assert est["interval_ms"]["samples"] == 24
    # the per-op rows carry none: the band is a whole-network figure
    assert all("interval" not in row for row in report["layers"])

    folder = out / tiny_tflite.stem / "rpi4-band"
    loaded = load_report(folder)
    assert loaded.metric("latency").interval == pytest.approx(
        (latency["interval"]["low"], latency["interval"]["high"])
    )
    assert loaded.cpu.band == BAND and loaded.cpu.band_known

    table = _profile(tiny_tflite, "rpi4-band", tmp_path / "again")
    assert table.exit_code == 0, table.output
    assert "90% interval" in table.stdout
    assert "no uncertainty band" not in table.stdout

    page = run_cli("report", folder)
    assert page.exit_code == 0, page.output
    html = (folder / "report.html").read_text()
    assert "90% interval" in html
    assert "no uncertainty band" not in html


def test_measured_profile_bands_only_the_estimator(tiny_tflite, tmp_path):
    """Measured: the headline is a timing, so only `latency_estimated` gets the band."""
    from ran_edge.targets.cortex_a.profile import profile_cpu
    from ran_edge.targets.loading import resolve_target

    target = resolve_target("rpi4-band")
    estimated = profile_cpu(tiny_tflite, tiny_tflite.read_bytes(), target, measure=False)
    fake = SimpleNamespace(median_ms=1.0, p90_ms=1.2, peak_rss_delta_kib=100)
    measured = replace(estimated, mode="measured", measurement=fake)
    banded = {m.name for m in cpu_metrics(measured) if m.interval is not None}
    assert banded == {"latency_estimated"}
    banded = {m.name for m in cpu_metrics(estimated) if m.interval is not None}
    assert banded == {*ESTIMATED, *RATES}
    # the same Target with the band removed (as `dataclasses.replace` builds one)
    spec = replace(target.spec, cpu_model=replace(target.cpu_model, band=None))
    bare = replace(estimated, target=replace(target, spec=spec))
    assert all(m.interval is None for m in cpu_metrics(bare))
    # and a wider band gives a wider interval
    wide = UncertaintyBand(0.5, 2.0, 0.95, 10, "test")
    spec = replace(target.spec, cpu_model=replace(target.cpu_model, band=wide))
    latency = next(
        m
        for m in cpu_metrics(replace(estimated, target=replace(target, spec=spec)))
        if m.name == "latency"
    )
    assert latency.interval == pytest.approx((latency.value * 0.5, latency.value * 2.0))
    assert latency.coverage == 0.95


# ---------------------------------------------------------------- a CPU estimate without one


def test_profile_without_band_says_so_once(tiny_tflite, tmp_path):
    out = tmp_path / "out"
    result = _profile(tiny_tflite, "rpi4-noband", out, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, schema())
    assert all("interval" not in m for m in report["metrics"])
    assert report["cpu"]["estimate"]["interval_ms"] is None
    assert report["cpu"]["cpu_model"]["band"] is None
    loaded = Report.from_dict(report)
    assert loaded.cpu.band is None and loaded.cpu.band_known

    table = _profile(tiny_tflite, "rpi4-noband", tmp_path / "again")
    assert table.exit_code == 0, table.output
    text = " ".join(table.stdout.split())
    assert text.count(NO_BAND_NOTE) == 1, table.stdout
    assert "% interval" not in text

    folder = out / tiny_tflite.stem / "rpi4-noband"
    assert run_cli("report", folder).exit_code == 0
    html = (folder / "report.html").read_text()
    assert html.count(NO_BAND_NOTE) == 1
    assert "% interval" not in html


def test_report_before_1_5_still_loads(tiny_tflite, tmp_path):
    """A 1.4 report (no interval, no band fields) validates and reads; the page says it
    predates the band instead of blaming the profile."""
    out = tmp_path / "out"
    result = _profile(tiny_tflite, "rpi4-noband", out, "--json")
    report = json.loads(result.stdout)
    report["schema_version"] = "1.4"
    del report["cpu"]["estimate"]["interval_ms"]
    del report["cpu"]["cpu_model"]["band"]
    loaded = Report.from_dict(report)
    assert loaded.cpu.band is None and not loaded.cpu.band_known
    from ran_edge.report.html import render_html

    html = render_html([loaded])
    assert "predates schema 1.5" in html and NO_BAND_NOTE not in html
