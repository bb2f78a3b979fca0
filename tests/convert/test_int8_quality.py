"""int8 you can deploy, through the CLI: range methods, per-op sensitivity, int16 layers,
automatic mixed precision, and fidelity for `profile` given the float model.

A trained DigitsNet (conftest) through the real converter, quantizer, LiteRT, TFLM and Vela.
"""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
from helpers import BUILD_TARGETS, run_cli

from ran_edge.convert.tflite_info import inspect_tflite
from ran_edge.report.json_report import SCHEMA_FILE
from ran_edge.report.metrics import metric_value

MODEL = "digits_net_make_net"


def build_args(digits_model, out, *extra) -> list:
    return [
        "build", "--model", digits_model.spec, "--weights", digits_model.weights,
        "--calib", digits_model.calib, "--calib-samples", 64, "--holdout", 24,
        "--out", out, "-q", *extra,
    ]  # fmt: skip


def test_report_says_how_it_was_quantized_and_where_the_error_comes_from(digits_build):
    report = digits_build.reports[BUILD_TARGETS[0]]
    assert report["calibration"]["method"] == "minmax"
    quantization = report["conversion"]["quantization"]
    assert quantization["method"] == "minmax" and quantization["int16_activations"] == []
    assert quantization["mixed_precision"] is None
    section = report["sensitivity"]
    assert section["samples"] == 48
    rows = section["rows"]
    assert {r["module"] for r in rows} >= {"stem.0", "block.1.0", "down.0"}
    assert all(r["dtype"] == "int8" for r in rows)
    # The last scored op is the logits: its SQNR is the report's logit SQNR.
    logit_sqnr = metric_value(report["fidelity"]["metrics"], "sqnr")
    # (within 0.25 dB: fidelity runs XNNPACK kernels, sensitivity the reference ones)
    assert rows[-1]["sqnr_db"] == pytest.approx(logit_sqnr, abs=0.25)
    assert report["tflm"]["passed"] is True


def test_console_prints_the_least_faithful_layers(digits_build):
    text = " ".join(digits_build.stdout.split())
    assert "least faithful layers" in text
    assert "random weights" not in text  # trained weights were given


def test_int16_activations_for_a_module_stay_on_the_npu(tmp_path, digits_model, digits_build):
    out = tmp_path / "out"
    result = run_cli(*build_args(digits_model, out, "--int16-activations", "down", "--json"))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, json.loads(SCHEMA_FILE.read_text()))
    assert report["conversion"]["quantization"]["int16_activations"] == ["down.0"]
    assert metric_value(report["metrics"], "cpu_ops") == 0
    int16 = {r["module"] for r in report["sensitivity"]["rows"] if r["dtype"] == "int16"}
    assert int16 == {"down.0"}
    int8_only = digits_build.reports[BUILD_TARGETS[0]]
    before = {r["module"]: r for r in int8_only["sensitivity"]["rows"] if r["op_type"] == "CONV_2D"}
    after = {r["module"]: r for r in report["sensitivity"]["rows"] if r["op_type"] == "CONV_2D"}
    # The raised conv adds less error of its own (int8 weights still add some).
    assert after["down.0"]["drop_db"] < before["down.0"]["drop_db"]
    info = inspect_tflite((out / MODEL / "ethos-u55-128" / f"{MODEL}_int8.tflite").read_bytes())
    assert info.int8_io  # int8 in and out, whatever is int16 inside
    assert report["tflm"]["passed"]  # TFLM's int16 kernels run it as LiteRT does


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--int16-activations", "no.such.module"), "no op of the converted model"),
        (("--calib-method", "percentile", "--calib-samples", 8), "--calib-samples"),
        (("--auto-mixed-precision", "--int16-activations", "down"), "not both"),
        (("--auto-mixed-precision", "--holdout", 0), "--holdout"),
    ],
)
def test_bad_quantization_requests_are_refused_with_nothing_written(
    tmp_path, digits_model, extra, words
):
    out = tmp_path / "out"
    result = run_cli(*build_args(digits_model, out), *extra)  # later options win in click
    assert result.exit_code == 2, result.output
    assert words in " ".join(result.stderr.split())
    assert "Traceback" not in result.output
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.slow
def _auto_build(digits_model, out, goal_db: float) -> tuple[dict, str]:
    extra = ("--auto-mixed-precision", "--target-sqnr", goal_db, "--max-extra-cycles", 300)
    result = run_cli(*build_args(digits_model, out, *extra))
    assert result.exit_code == 0, result.output
    report = json.loads((out / MODEL / "ethos-u55-128" / "report.json").read_text())
    assert metric_value(report["metrics"], "cpu_ops") == 0
    return report["conversion"]["quantization"]["mixed_precision"], result.stdout


def test_auto_mixed_precision_reports_each_choice_with_its_cycles(tmp_path, digits_model):
    # A goal no a16w8 mix can reach: the int8 model ships, no cycles spent, and it says why.
    hopeless, _ = _auto_build(digits_model, tmp_path / "a", 99.0)
    assert hopeless["target"] == "ethos-u55-128"
    assert hopeless["baseline"]["step"] == 0 and hopeless["baseline"]["cycles"] > 0
    assert hopeless["stop_reason"].startswith("search skipped")
    assert hopeless["steps"] == [] and hopeless["extra_cycles_pct"] == 0.0
    # A goal int8 already meets: nothing raised, the goal reported reached.
    met, stdout = _auto_build(digits_model, tmp_path / "b", hopeless["baseline"]["sqnr_db"] - 1)
    assert met["reached"] and met["stop_reason"] == "goal reached"
    assert met["steps"] == [] and met["int16_modules"] == []
    assert "automatic mixed precision" in " ".join(stdout.split())
    # (The search itself, step by step with Vela, is tested in test_mixed_precision.py.)


def test_profile_measures_fidelity_given_the_float_model(tmp_path, digits_build, digits_model):
    folder = digits_build.model_dir / BUILD_TARGETS[0]
    samples = tmp_path / "holdout.npy"
    np.save(samples, digits_model.test_x[:16])  # NCHW, as PyTorch holds them
    result = run_cli(
        "profile", folder / f"{MODEL}_int8.tflite", "--float", folder / f"{MODEL}_float.tflite",
        "--samples", samples, "--out", tmp_path / "out", "--json", "-q",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["fidelity"]["samples"] == 16
    assert metric_value(report["fidelity"]["metrics"], "sqnr") > 20.0
    assert len(report["sensitivity"]["rows"]) >= 4


def test_profile_needs_float_and_samples_together(tmp_path, digits_build):
    folder = digits_build.model_dir / BUILD_TARGETS[0]
    result = run_cli(
        "profile", folder / f"{MODEL}_int8.tflite", "--float", folder / f"{MODEL}_float.tflite",
        "--out", tmp_path / "out", "-q",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "go together" in result.stderr
