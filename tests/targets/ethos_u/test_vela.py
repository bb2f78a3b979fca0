"""Our reading of Vela is checked against Vela itself: a direct `vela` CLI run on the same file."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import BUILD_TARGETS

from ran_edge.report.metrics import metric_value
from ran_edge.targets.ethos_u.vela import parse_cpu_fallbacks, parse_op_counts, parse_per_layer_csv
from ran_edge.targets.loading import resolve_target

VELA = Path(sys.executable).with_name("vela")


def _direct_vela(model: Path, target_name: str, out: Path) -> str:
    """Run the `vela` console script by hand, the way a user would, and return its stdout."""
    target = resolve_target(target_name)
    args = [str(VELA), str(model), "--accelerator-config", target.npu.accelerator]
    args += target.vela.cli_args() + ["--verbose-performance", "--output-dir", str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, check=True)
    return proc.stdout


@pytest.mark.parametrize("target", BUILD_TARGETS)
def test_parsed_figures_equal_a_direct_vela_run(digits_build, tmp_path, target):
    folder = digits_build.model_dir / target
    model = tmp_path / "digits_net_make_net_int8.tflite"
    shutil.copy(folder / model.name, model)
    stdout = _direct_vela(model, target, tmp_path / "vela")
    (summary_csv,) = (tmp_path / "vela").glob("*_summary_*.csv")
    with summary_csv.open() as f:
        (row,) = list(csv.DictReader(f))
    report = digits_build.reports[target]
    m = report["metrics"]
    assert metric_value(m, "inferences_per_second") == pytest.approx(
        float(row["inferences_per_second"]), rel=1e-12
    )
    assert metric_value(m, "latency") == pytest.approx(float(row["inference_time"]) * 1e3)
    assert metric_value(m, "cycles_npu") == int(float(row["cycles_npu"]))
    assert metric_value(m, "cycles_total") == int(float(row["cycles_total"]))
    assert metric_value(m, "macs") == int(float(row["nn_macs"]))
    assert metric_value(m, "sram_used") == float(row["sram_memory_used"])
    assert metric_value(m, "off_chip_flash_used") == float(row["off_chip_flash_memory_used"])
    assert metric_value(m, "dram_used") == float(row["dram_memory_used"])
    assert metric_value(m, "encoded_weights") == int(float(row["total_npu_encoded_weights"]))
    assert report["target"]["system_config"] == row["system_config"]
    assert report["target"]["memory_mode"] == row["memory_mode"]
    # Op counts appear only on Vela's stdout.
    npu = int(re.search(r"NPU operators = (\d+)", stdout).group(1))
    cpu = int(re.search(r"CPU operators = (\d+)", stdout).group(1))
    assert (metric_value(m, "npu_ops"), metric_value(m, "cpu_ops")) == (npu, cpu)
    # Per-layer: same rows, same cycles, in order.
    with (tmp_path / "vela" / "digits_net_make_net_int8_per-layer.csv").open() as f:
        rows = [r for r in csv.reader(f) if r and r[0] != "Original Operator"]
    assert [int(r[5]) for r in rows] == [layer["cycles"] for layer in report["layers"]]
    assert [int(r[12]) for r in rows] == [layer["macs"] for layer in report["layers"]]
    # And the compiled model itself is byte-identical.
    vela_tflite = tmp_path / "vela" / "digits_net_make_net_int8_vela.tflite"
    assert (
        vela_tflite.read_bytes() == (folder / "digits_net_make_net_int8_vela.tflite").read_bytes()
    )


def test_report_records_the_command_that_reproduces_it(digits_build):
    report = digits_build.reports[BUILD_TARGETS[0]]
    command = report["vela_command"]
    assert command[:2] == ["vela", "digits_net_make_net_int8.tflite"]
    for flag in ("--accelerator-config", "--system-config", "--memory-mode", "--optimise"):
        assert flag in command


PER_LAYER_TWO_SUBGRAPHS = """\
Original Operator,NNG Operator,Target,Staging Usage,Peak% (Staging),Op Cycles,Network% (cycles),NPU,SRAM AC,DRAM AC,OnFlash AC,OffFlash AC,MAC Count,Network% (MAC),Util% (MAC),Name
Conv2D,Conv2D,NPU,100,50.0,1000,40.0,900,300,0,0,120,4096,80.0,3.2,a/b.Conv2d_0;1
Sqrt,Passthrough,CPU,0,0.0,0,0.0,0,0,0,0,0,0,0.0,100,a/b,with,commas
Original Operator,NNG Operator,Target,Staging Usage,Peak% (Staging),Op Cycles,Network% (cycles),NPU,SRAM AC,DRAM AC,OnFlash AC,OffFlash AC,MAC Count,Network% (MAC),Util% (MAC),Name
Add,Add,NPU,64,25.0,1500,60.0,200,1500,0,0,0,0,0.0,0.0,c;2
"""


def test_per_layer_csv_with_repeated_headers_and_commas(tmp_path):
    path = tmp_path / "x_per-layer.csv"
    path.write_text(PER_LAYER_TWO_SUBGRAPHS)
    layers = parse_per_layer_csv(path)
    assert [layer.original_op for layer in layers] == ["Conv2D", "Sqrt", "Add"]
    assert layers[1].placement == "CPU" and layers[1].name == "a/b,with,commas"
    assert layers[0].mac_utilisation_pct == 3.2 and layers[0].op_cycles == 1000
    assert not layers[0].memory_bound  # compute 900 cycles > 300 SRAM, 120 flash access cycles
    assert layers[2].memory_bound  # 1500 SRAM access cycles > 200 compute cycles


VELA_STDOUT_WITH_FALLBACK = """\
Warning (supported operators) operator: SQRT, ofm: 'model/layer;;model/other;'
Reason: Unsupported opType
Warning (supported operators) operator: RESIZE_BILINEAR, ofm: 'up'
Reason: Scale factor must be a power of two
Reason: Half pixel centers are only supported with ...

CPU operators = 2 (28.6%)
NPU operators = 5 (71.4%)
"""


def test_cpu_fallbacks_and_counts_from_stdout():
    assert parse_op_counts(VELA_STDOUT_WITH_FALLBACK) == (5, 2)
    sqrt, resize = parse_cpu_fallbacks(VELA_STDOUT_WITH_FALLBACK)
    assert (sqrt.op_type, sqrt.name, sqrt.reason) == (
        "SQRT",
        "model/layer;;model/other;",
        "Unsupported opType",
    )
    assert resize.reason.startswith("Scale factor must be a power of two; Half pixel")


def test_an_op_named_after_the_next_modules_pad_is_matched_by_macs():
    """litert-torch can name a conv's output after the consumer's ZeroPad2d; MACs settle it."""
    from torch import nn

    from ran_edge.convert.attribution import ModuleIndex, attribute_layers

    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 5, padding=2),
        nn.Sequential(nn.ZeroPad2d(1), nn.Conv2d(8, 8, 3, groups=8)),
    )
    index = ModuleIndex.from_model(net, (1, 3, 16, 16))
    wrapper = "litert_torch._convert.to_channel_last_io.ChannelLastIOWrapper/x.Net_wrapped/"
    pad = wrapper + "torch.nn.modules.container.Sequential_2/torch.nn.modules.padding.ZeroPad2d_0;"
    dw = wrapper + "torch.nn.modules.container.Sequential_2/torch.nn.modules.conv.Conv2d_1;2"
    layers = [("", index.macs["0"]), (pad, index.macs["1"]), (dw, index.macs["2.1"])]
    assert attribute_layers(layers, index) == ["0", "1", "2.1"]
