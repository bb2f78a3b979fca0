"""End-to-end: a trained PyTorch model through export, int8 quantization and Vela on two targets."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
from helpers import BUILD_TARGETS, run_cli

from ran_edge.convert.fidelity import _run
from ran_edge.convert.tflite_info import inspect_tflite
from ran_edge.build.convert import TFLM_SAMPLES
from ran_edge.firmware.tflm_check import FIRST_BATCH
from ran_edge.report.json_report import SCHEMA_FILE
from ran_edge.report.metrics import metric_value

# Floors for a trained model's int8 twin on held-out digits. With the true min/max range
# over the calibration set (`--calib-method minmax`, the default) the logit SQNR measured
# 27.9 dB and agreement 100% on one machine, 24.6 dB and 95.8% on another: the seeded
# training is deterministic on a given CPU, but its float kernels (and so the weights)
# differ between CPUs. The quantizer's own moving-average ranges gave 15-18 dB. A wrong
# scale, zero-point or layout drops agreement to chance (~10%) and SQNR below 0 dB, so
# floors with room for the machine-to-machine spread still catch every such fault.
TOP1_AGREEMENT_FLOOR = 93.7  # at most 3 of 48 held-out samples may disagree
SQNR_FLOOR_DB = 22.0


def test_every_target_gets_its_artifacts(digits_build):
    for target in BUILD_TARGETS:
        folder = digits_build.model_dir / target
        names = {p.name for p in folder.iterdir()}
        assert {
            "digits_net_make_net_float.tflite",
            "digits_net_make_net_int8.tflite",
            "digits_net_make_net_int8_vela.tflite",
            "digits_net_make_net_int8_per-layer.csv",
            "report.json",
            "vela_stdout.txt",
        } <= names
        assert any(n.startswith("digits_net_make_net_int8_summary_") for n in names)
    leftovers = [p.name for p in digits_build.model_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == [], "temporary build folders must not survive a successful build"


def test_reports_match_the_schema(digits_build):
    schema = json.loads(SCHEMA_FILE.read_text())
    for report in digits_build.reports.values():
        jsonschema.validate(report, schema)
        assert report["schema_version"].startswith("1.")


def test_int8_model_is_fully_int8_and_npu_mapped(digits_build):
    for target, report in digits_build.reports.items():
        int8 = (digits_build.model_dir / target / "digits_net_make_net_int8.tflite").read_bytes()
        info = inspect_tflite(int8)
        assert info.int8_io
        assert "DELEGATE" not in info.op_types  # the model's own ops, not XNNPACK's node
        assert info.float_op_types == ()
        assert report["conversion"]["gate"] == {"passed": True, "problems": []}
        assert metric_value(report["metrics"], "cpu_ops") == 0
        assert metric_value(report["metrics"], "npu_op_share") == 100.0
        assert report["cpu_fallbacks"] == []


def test_int8_fidelity_above_floor(digits_build, digits_model):
    report = digits_build.reports[BUILD_TARGETS[0]]
    assert report["fidelity"]["samples"] == 48
    assert metric_value(report["fidelity"]["metrics"], "top1_agreement") >= TOP1_AGREEMENT_FLOOR
    assert metric_value(report["fidelity"]["metrics"], "sqnr") >= SQNR_FLOOR_DB


def test_tflm_runs_the_int8_model_bit_exactly(digits_build):
    """TFLM (as a Cortex-M runs it) and LiteRT's reference kernels agree byte for byte."""
    tflm = digits_build.reports[BUILD_TARGETS[0]]["tflm"]
    # the build offers TFLM_SAMPLES held-out rows; a bit-exact first batch stops the check
    assert tflm["samples_available"] == TFLM_SAMPLES and tflm["error"] is None
    assert tflm["samples"] == FIRST_BATCH
    assert tflm["bit_exact"] and tflm["max_abs_diff"] == 0 and tflm["first_mismatch"] is None
    assert 0 < tflm["arena_persistent_bytes"] < tflm["arena_total_bytes"]


def test_int8_model_keeps_the_float_accuracy(digits_build, digits_model):
    """The int8 .tflite classifies real held-out digits about as well as the PyTorch model."""
    int8 = digits_build.model_dir / BUILD_TARGETS[0] / "digits_net_make_net_int8.tflite"
    logits = _run(
        int8.read_bytes(), np.ascontiguousarray(digits_model.test_x.transpose(0, 2, 3, 1))
    )
    int8_accuracy = float((logits.argmax(1) == digits_model.test_y).mean())
    assert digits_model.float_accuracy > 0.85, "the fixture model failed to train"
    assert int8_accuracy >= digits_model.float_accuracy - 0.03


def test_figures_are_consistent(digits_build):
    for target, report in digits_build.reports.items():
        m = report["metrics"]
        ips = metric_value(m, "inferences_per_second")
        latency_ms = metric_value(m, "latency")
        assert abs(ips * latency_ms / 1e3 - 1.0) < 1e-6
        cycles_total = metric_value(m, "cycles_total")
        assert abs(cycles_total / report["target"]["clock_hz"] * 1e3 - latency_ms) < 1e-3
        util = metric_value(m, "mac_utilisation")
        expected = (
            100
            * metric_value(m, "macs")
            / (metric_value(m, "cycles_npu") * report["target"]["macs_per_cycle"])
        )
        assert abs(util - expected) < 1e-9 and 0 < util <= 100
        assert report["target"]["name"] == target
        assert metric_value(m, "sram_used") > 0


def test_cycles_are_attributed_to_torch_modules(digits_build):
    report = digits_build.reports[BUILD_TARGETS[0]]
    rows = {r["path"]: r for r in report["modules"]["rows"]}
    # Every weighted layer of DigitsNet shows up under its own module path.
    for path in ("stem", "block.0", "block.1", "down", "classifier"):
        assert path in rows and rows[path]["cycles"] > 0, path
    attributed = sum(r["cycles"] for r in rows.values() if r["depth"] == 1)
    total = sum(layer["cycles"] for layer in report["layers"])
    assert attributed == total
    assert "(unattributed)" not in rows, "every op of DigitsNet maps back to a module"
    # The depthwise conv runs at lower MAC utilisation than the dense convs.
    assert rows["block.0"]["mac_utilisation_pct"] < rows["down"]["mac_utilisation_pct"]


def test_console_output_has_a_comparison_table(digits_build):
    out = digits_build.stdout
    assert "targets side by side" in out
    for target in BUILD_TARGETS:
        assert target in out
    assert "top PyTorch modules by cycles" in out


def test_json_output_is_the_report(digits_build, digits_model, tmp_path):
    result = run_cli(
        "build", "--model", digits_model.spec, "--weights", digits_model.weights,
        "--calib", digits_model.calib, "--calib-samples", 16, "--holdout", 8,
        "--target", "ethos-u55-64", "--out", tmp_path, "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"]["name"] == "ethos-u55-64"
    on_disk = json.loads((tmp_path / "digits_net_make_net/ethos-u55-64/report.json").read_text())
    assert report == on_disk


def test_same_inputs_give_the_same_bytes(digits_build, digits_model, tmp_path):
    """A second build of the same model, data and target writes identical files."""
    target = BUILD_TARGETS[0]
    result = run_cli(
        "build", "--model", digits_model.spec, "--weights", digits_model.weights,
        "--calib", digits_model.calib, "--calib-samples", 64, "--holdout", 48,
        "--target", target, "--out", tmp_path, "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    first = digits_build.model_dir / target
    second = tmp_path / "digits_net_make_net" / target
    for path in sorted(first.iterdir()):
        assert (second / path.name).read_bytes() == path.read_bytes(), path.name


def test_profile_an_existing_int8_model(digits_build, tmp_path):
    int8 = digits_build.model_dir / BUILD_TARGETS[0] / "digits_net_make_net_int8.tflite"
    result = run_cli("profile", int8, "--target", "ethos-u55-128", "--out", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    built = digits_build.reports[BUILD_TARGETS[0]]
    assert report["metrics"] == built["metrics"]
    assert report["fidelity"]["metrics"][0]["availability"] == "unavailable"
    # Without the torch model, module paths are read from the op names alone.
    paths = {r["path"] for r in report["modules"]["rows"]}
    assert {"stem", "block", "down"} <= paths
