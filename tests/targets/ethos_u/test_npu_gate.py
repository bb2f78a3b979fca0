"""The NPU gate is Vela's verdict: placement from the compiled model, per module, with a fix.

Real exports, the real quantizer and real Vela runs on tiny everyday networks.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ASSETS, run_cli

from ran_edge.convert.tflite_info import inspect_tflite
from ran_edge.targets.ethos_u.placement import PlacedOp
from ran_edge.targets.ethos_u.vela import VelaCrash, parse_cpu_fallbacks, split_fallbacks
from ran_edge.targets.ethos_u.vela_crash import FAILED_DIR, crash_report
from ran_edge.targets.loading import resolve_target

NETS = ASSETS / "everyday_nets.py"
SHAPE = "1,3,16,16"

VELA_WARNINGS = """
Warning (supported operators) operator: MEAN, ofm: 'net/Sequential_head;1'
Reason: Unsupported depth-reduction.  IFM: 1, 1280, 4, 4
Reduction over depth is only supported if any of h,w,c == 1

Warning (supported operators) operator: STRIDED_SLICE, ofm: 'flatten;2'
Reason: Input tensor(s) must be constant or dynamic shape not supported
Warning (supported operators) operator: SQRT, ofm: 'serving_default_output_0_output'
Reason: Unsupported opType
################################################################################
"""


@pytest.fixture(scope="module")
def calib(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "calib.npy"
    np.save(path, np.random.default_rng(0).random((12, 3, 16, 16), dtype=np.float32))
    return path


def test_vela_warnings_keep_their_constraint_text():
    found = parse_cpu_fallbacks(VELA_WARNINGS)
    assert [f.op_type for f in found] == ["MEAN", "STRIDED_SLICE", "SQRT"]
    assert found[0].reason == (
        "Unsupported depth-reduction. IFM: 1, 1280, 4, 4; "
        "Reduction over depth is only supported if any of h,w,c == 1"
    )
    assert found[2].reason == "Unsupported opType"


def test_warnings_about_folded_ops_are_not_cpu_fallbacks():
    """Only ops left in Vela's compiled model run on the CPU; the others were folded away."""
    warned = parse_cpu_fallbacks(VELA_WARNINGS)
    left = (PlacedOp("SQRT", "serving_default_output_0_output", False),)
    on_cpu, folded = split_fallbacks(warned, left)
    assert [f.op_type for f in on_cpu] == ["SQRT"]
    assert on_cpu[0].reason == "Unsupported opType"
    assert {f.op_type for f in folded} == {"MEAN", "STRIDED_SLICE"}
    unwarned, _ = split_fallbacks([], (PlacedOp("GATHER", "g", False),))
    assert unwarned[0].reason == "placed on the CPU by Vela"


def test_transpose_and_requantize_on_the_npu_build_by_default(tmp_path, calib):
    """U-Net concat + flatten head: TRANSPOSE and QUANTIZE in the graph, all on the NPU."""
    out = tmp_path / "out"
    result = run_cli(
        "build", "--model", f"{NETS}:make_unet", "--input-shape", SHAPE, "--calib", calib,
        "--holdout", 4, "--out", out, "-q", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    folder = out / "everyday_nets_make_unet" / "ethos-u55-128"
    info = inspect_tflite((folder / "everyday_nets_make_unet_int8.tflite").read_bytes())
    assert {"TRANSPOSE", "QUANTIZE"} <= set(info.op_types)
    assert "DELEGATE" not in report["conversion"]["op_counts"]
    assert sum(report["conversion"]["op_counts"].values()) == len(info.op_types)
    assert report["conversion"]["gate"] == {"passed": True, "problems": []}
    assert report["cpu_fallbacks"] == []


def test_a_real_cpu_op_fails_the_build_naming_module_reason_and_fix(tmp_path, calib):
    out = tmp_path / "out"
    result = run_cli(
        "build", "--model", f"{NETS}:make_sqrt", "--input-shape", SHAPE, "--calib", calib,
        "--holdout", 4, "--out", out, "-q",
    )  # fmt: skip
    assert result.exit_code == 1
    message = " ".join(result.stderr.split())
    assert "SQRT in module body.1: Vela: Unsupported opType" in message
    assert "fix:" in message and "--allow-cpu-fallback" in message
    assert "Traceback" not in result.output
    assert not (out / "everyday_nets_make_sqrt" / "ethos-u55-128").exists()


def test_check_lists_each_cpu_op_with_module_reason_and_fix(calib):
    result = run_cli(
        "check", f"{NETS}:make_sqrt", "--input-shape", SHAPE, "--calib", calib, "--json", "-q"
    )
    assert result.exit_code == 1, result.output
    verdict = json.loads(result.stdout)
    assert verdict["passed"] is False
    [target] = verdict["targets"]
    assert (target["npu_ops"], target["cpu_ops"]) == (3, 1)
    [op] = target["cpu_fallbacks"]
    assert (op["op_type"], op["module"], op["reason"]) == ("SQRT", "body.1", "Unsupported opType")
    assert op["fix"].strip()


def test_check_passes_a_model_vela_maps_entirely(calib):
    result = run_cli("check", f"{NETS}:make_unet", "--input-shape", SHAPE, "--calib", calib, "-q")
    assert result.exit_code == 0, result.output
    assert "all on the NPU" in result.stdout


def test_check_refuses_a_cpu_target(calib):
    result = run_cli("check", f"{NETS}:make_unet", "--target", "rpi4", "-q")
    assert result.exit_code == 2
    assert "CPU target" in result.stderr


def test_nan_weights_are_refused_at_load_naming_the_parameter(tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "build", "--model", f"{NETS}:make_nan", "--input-shape", SHAPE, "--out", out, "-q"
    )
    assert result.exit_code == 2
    assert "parameter stem.weight holds NaN" in " ".join(result.stderr.split())
    assert not out.exists()


@pytest.mark.parametrize("kind", ["file", "under-file", "unwritable"])
def test_unwritable_out_is_refused_before_any_work(tmp_path, kind):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = {
        "file": blocker,
        "under-file": blocker / "sub",
        "unwritable": Path("/proc/ran-edge-out"),  # refused even for root
    }[kind]
    result = run_cli("build", "--model", f"{NETS}:make_unet", "--input-shape", SHAPE, "--out", out)
    assert result.exit_code == 2, result.output
    assert "--out" in result.stderr and "Traceback" not in result.output
    assert "load model" not in result.stderr  # refused before the first stage
    assert blocker.read_text() == "not a folder"


def test_vela_crash_keeps_the_model_and_the_repro_command_works(tmp_path, digits_build):
    """A crash report names the fault, tries another generation, and keeps a working repro."""
    model = digits_build.model_dir / "ethos-u55-128" / "digits_net_make_net_int8.tflite"
    staging = tmp_path / "out" / "m" / ".ethos-u55-128.tmp"
    staging.mkdir(parents=True)
    int8 = staging / model.name
    int8.write_bytes(model.read_bytes())
    final = tmp_path / "out" / "m" / "ethos-u55-128"
    target = resolve_target("ethos-u55-128")
    message = crash_report(VelaCrash("Vela crashed (signal 11)", -11), int8, target, final)
    kept = tmp_path / "out" / "m" / FAILED_DIR / "ethos-u55-128" / model.name
    assert kept.read_bytes() == model.read_bytes()
    first, repro = message.splitlines()
    assert "it compiles for ethos-u85-256" in first
    assert repro.startswith("To reproduce: cd ")
    command = repro.removeprefix("To reproduce: ")
    vela = str(Path(sys.executable).parent / "vela")
    run = subprocess.run(
        command.replace("&& vela ", f"&& {shlex.quote(vela)} "),
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "NPU operators" in run.stdout
