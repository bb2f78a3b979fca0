"""CPU targets (kind cortex-a): shipped profiles with sourced figures, the estimator's shape,
measured and estimated reports, one comparison table with Ethos-U, calibration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from helpers import run_cli

from ran_edge.convert.tflite_ops import OpCost
from ran_edge.errors import UsageError
from ran_edge.report.json_report import SCHEMA_FILE
from ran_edge.report.metrics import metric_value
from ran_edge.resources import shipped_dir
from ran_edge.targets.cortex_a.estimate import estimate_ops
from ran_edge.targets.cortex_a.spec import usable_value
from ran_edge.targets.loading import TARGET_PATH_ENV, load_target_file, resolve_target

CPU_NAMES = (
    "host",
    "cortex-a53",
    "cortex-a72",
    "cortex-a76",
    "rpi3",
    "rpi-zero2",
    "rpi4",
    "rpi5",
    "neoverse-n1",
    "neoverse-v1",
)
BOARDS = ("rpi3", "rpi-zero2", "rpi4", "rpi5")
DOTPROD_CORES = ("cortex-a76", "neoverse-n1", "neoverse-v1")  # Armv8.2-A and later
INT8_MODEL = Path("ethos-u55-128") / "digits_net_make_net_int8.tflite"
FLOAT_MODEL = Path("ethos-u55-128") / "digits_net_make_net_float.tflite"
SCHEMA = json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(autouse=True)
def _no_user_targets(monkeypatch):
    monkeypatch.delenv(TARGET_PATH_ENV, raising=False)


def _metric_source(report: dict, name: str) -> str | None:
    return next((m.get("source") for m in report["metrics"] if m["name"] == name), None)


def _error(result) -> str:
    return " ".join(result.stderr.split())


# --- shipped profiles --------------------------------------------------------------------------


@pytest.mark.parametrize("name", CPU_NAMES)
def test_shipped_cpu_profile_loads(name):
    target = resolve_target(name)
    assert target.kind == "cortex-a" and target.is_cpu and not target.is_npu
    with pytest.raises(TypeError, match="cortex-a, not ethos-u"):
        target.npu  # noqa: B018 - the Ethos-U view refuses a CPU profile
    cpu = target.cpu
    assert cpu.cores >= 1 and 1 <= cpu.default_threads <= cpu.cores
    assert (cpu.clock_hz is None) == (name == "host")
    params = vars(target.cpu_model.params)
    assert all(usable_value(k, v) for k, v in params.items()), params
    assert target.description


@pytest.mark.parametrize("name", [n for n in CPU_NAMES if n != "host"])
def test_every_figure_has_a_source_or_says_it_is_an_assumption(name):
    """Each number in [cpu] follows a comment block that cites a document or says ASSUMPTION."""
    text = (shipped_dir("targets") / f"{name}.toml").read_text()
    cpu = text.split("[cpu]")[1].split("[cpu_model]")[0]
    comment = ""
    for line in cpu.splitlines():
        if line.startswith("#"):
            comment += line
        elif re.match(r"^(cores|clock_hz|l\dd?i?_bytes|memory_bandwidth\w*|simd) =", line):
            assert re.search(
                r"github\.com|raspberrypi\.com|ASSUMPTION|as above|product brief|\.adoc|bcm27",
                comment,
            ), (
                name,
                line,
            )
        elif not line.strip():
            comment = ""
    model = text.split("[cpu_model]")[1]
    assert "ASSUMPTION" in model  # what was not fitted is named


def test_boards_figures_from_the_raspberry_pi_documentation():
    rpi4, rpi5 = resolve_target("rpi4").cpu, resolve_target("rpi5").cpu
    assert (rpi4.core, rpi4.cores, rpi4.clock_hz) == ("cortex-a72", 4, 1.5e9)
    assert (rpi4.l1d_bytes, rpi4.l1i_bytes, rpi4.l2_bytes) == (32 * 1024, 48 * 1024, 1024**2)
    assert (rpi5.core, rpi5.cores, rpi5.clock_hz) == ("cortex-a76", 4, 2.4e9)
    assert (rpi5.l2_bytes, rpi5.l3_bytes, rpi5.memory_bandwidth_bytes_per_s) == (
        512 * 1024,
        2 * 1024**2,
        17e9,
    )
    assert resolve_target("rpi3").cpu.clock_hz == 1.4e9
    assert resolve_target("rpi-zero2").cpu.clock_hz == 1.0e9


def test_dot_product_only_on_armv8_2_and_later_cores():
    for name in CPU_NAMES[1:]:
        cpu = resolve_target(name).cpu
        assert "neon" in cpu.simd, name
        assert cpu.has_dotprod == (cpu.core in DOTPROD_CORES), name


def test_targets_lists_both_kinds():
    result = run_cli("targets", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(CPU_NAMES) <= set(rows)
    rpi4 = rows["rpi4"]
    assert rpi4["kind"] == "cortex-a" and rpi4["core"] == "cortex-a72"
    assert rpi4["cores"] == 4 and rpi4["clock_hz"] == 1.5e9 and rpi4["simd"] == ["neon"]
    assert rpi4["accelerator"] is None and rpi4["cpu_model_fitted"] is True
    assert rows["host"]["clock_hz"] is None
    assert rows["ethos-u55-128"]["host_cpu"] == "cortex-m55"
    table = run_cli("targets")
    assert table.exit_code == 0
    for name in CPU_NAMES:
        assert re.search(rf"(?m)^\W*{re.escape(name)}\s", table.stdout), name
    assert "4 x cortex-a76" in table.stdout


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        ((r'(?m)^simd = \["neon"\]$', 'simd = ["neon", "mmx"]'), ("unknown SIMD feature", "mmx")),
        ((r"(?m)^cores = 4$", "cores = 0"), ("cores", "positive")),
        (
            (r"(?m)^fitted = true$", "fitted = true\nwarp_factor = 9"),
            ("unknown [cpu_model]", "warp_factor"),
        ),
        # the fitted value changes with each calibration: match the line, not the number
        (
            (r"(?m)^parallel_efficiency = .*$", "parallel_efficiency = 1.5"),
            ("parallel_efficiency",),
        ),
        # an uncertainty band needs all its keys, and low <= high
        ((r"(?m)^band_samples = .*\n", ""), ("band_samples", "band_low")),
        ((r"(?m)^band_low = .*$", "band_low = 9.5"), ("band_low", "band_high")),
    ],
)
def test_malformed_cpu_profile_names_the_field(tmp_path, edit, words):
    text = (shipped_dir("targets") / "rpi4.toml").read_text()
    bad, count = re.subn(edit[0], edit[1], text, count=1)
    assert count == 1, edit[0]
    path = tmp_path / "bad.toml"
    path.write_text(bad)
    with pytest.raises(UsageError) as err:
        load_target_file(path)
    for word in words:
        assert word in str(err.value)
    assert str(path) in str(err.value)


# --- the estimator's shape (no timing asserted) -------------------------------------------------


def _conv(cin: int, cout: int, hw: int, index: int = 0) -> OpCost:
    out = (1, hw, hw, cout)
    return OpCost(
        index=index,
        op="CONV_2D",
        name=f"conv{index}",
        output=out,
        inputs=((1, hw, hw, cin),),
        weights=(cout, 3, 3, cin),
        macs=hw * hw * cout * 9 * cin,
        in_elements=hw * hw * cin,
        out_elements=hw * hw * cout,
        activation_bytes=hw * hw * (cin + cout),
        weight_bytes=cout * 9 * cin,
        dtype="int8",
    )


def _net(width: int) -> list[OpCost]:
    return [_conv(3, width, 64, 0), _conv(width, width, 32, 1), _conv(width, 2 * width, 16, 2)]


@pytest.mark.parametrize("name", CPU_NAMES)
def test_more_macs_give_a_higher_estimate(name):
    target = resolve_target(name)
    estimates = [
        estimate_ops(_net(w), target.cpu, target.cpu_model.params, 1).latency_ms
        for w in (8, 16, 32, 64, 128)
    ]
    assert all(e > 0 for e in estimates)
    # more MACs never cost materially less; within one GEMM tile (64 channels on the x86 host)
    # widths cost alike, as measured, so neighbours may tie to within 1%
    assert all(b >= 0.99 * a for a, b in zip(estimates, estimates[1:], strict=False)), estimates
    assert estimates[-1] > 1.5 * estimates[0], estimates


@pytest.mark.parametrize("name", BOARDS)
def test_threads_speed_up_a_large_model(name):
    target = resolve_target(name)
    one, four = (
        estimate_ops(_net(128), target.cpu, target.cpu_model.params, n).latency_ms for n in (1, 4)
    )
    assert four < one


def test_newer_boards_estimate_faster():
    ops = _net(64)
    latency = {
        n: estimate_ops(ops, resolve_target(n).cpu, resolve_target(n).cpu_model.params).latency_ms
        for n in ("rpi5", "rpi4", "rpi3", "rpi-zero2")
    }
    assert latency["rpi5"] < latency["rpi4"] < latency["rpi3"] < latency["rpi-zero2"], latency


def test_estimate_follows_the_clock(tmp_path):
    """A 1.8 GHz Pi 4 (C0 stepping) is the same cycles at a shorter period."""
    text = (shipped_dir("targets") / "rpi4.toml").read_text()
    fast = tmp_path / "rpi4-18.toml"
    fast.write_text(
        text.replace('name = "rpi4"', 'name = "rpi4-18"').replace(
            "clock_hz = 1_500_000_000", "clock_hz = 1_800_000_000"
        )
    )
    slow, quick = resolve_target("rpi4"), load_target_file(fast)
    ops = _net(32)
    a = estimate_ops(ops, slow.cpu, slow.cpu_model.params)
    b = estimate_ops(ops, quick.cpu, quick.cpu_model.params)
    assert a.cycles == pytest.approx(b.cycles)
    assert b.latency_ms == pytest.approx(a.latency_ms * 1.5 / 1.8)


# --- measured and estimated reports --------------------------------------------------------------


def test_profile_measures_on_this_host(digits_build, tmp_path):
    model = digits_build.model_dir / INT8_MODEL
    out = tmp_path / "out"
    args = ["profile", model, "--target", "host", "--measure", "--threads", 1]
    result = run_cli(*args, "--runs", 5, "--warmup", 1, "--out", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    assert report == json.loads((out / model.stem / "host" / "report.json").read_text())
    m = report["metrics"]
    for name in ("latency", "latency_p90", "inferences_per_second", "peak_memory"):
        assert _metric_source(report, name) == "measured", name
    assert 0 < metric_value(m, "latency") <= metric_value(m, "latency_p90")
    assert metric_value(m, "inferences_per_second") == pytest.approx(
        1e3 / metric_value(m, "latency")
    )
    assert metric_value(m, "peak_memory") > 0
    assert _metric_source(report, "latency_estimated") == "estimated"
    cpu = report["cpu"]
    assert cpu["mode"] == "measured" and cpu["where"] == "local" and cpu["threads"] == 1
    assert cpu["measurement"]["runs"] == 5 and cpu["measurement"]["xnnpack_partitions"] >= 1
    assert report["target"]["kind"] == "cortex-a" and report["vela_command"] == []
    assert report["layers"] and all(row["placement"] == "CPU" for row in report["layers"])
    assert {row["kernel"] for row in report["layers"]} == {"xnnpack"}


def test_profile_estimates_a_board(digits_build, tmp_path):
    model = digits_build.model_dir / INT8_MODEL
    out = tmp_path / "out"
    result = run_cli("profile", model, "--target", "rpi4", "--out", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, SCHEMA)
    assert _metric_source(report, "latency") == "estimated"
    assert _metric_source(report, "latency_p90") is None  # unavailable: an estimate has no spread
    assert metric_value(report["metrics"], "peak_memory") is None
    assert metric_value(report["metrics"], "model_memory") > 0
    cpu = report["cpu"]
    assert cpu["mode"] == "estimated" and cpu["where"] is None and cpu["measurement"] is None
    # the per-op rows add up to the estimate (plus one invoke overhead)
    cycles = sum(row["cycles"] for row in report["layers"])
    assert cycles == pytest.approx(cpu["estimate"]["cycles"], rel=1e-3, abs=1e4)
    assert metric_value(report["metrics"], "macs") == sum(r["macs"] for r in report["layers"]) > 0
    assert report["modules"]["rows"]


def test_measure_module_runs_standalone(digits_build):
    """The exact script --remote ships: runnable on its own, one JSON object out."""
    model = digits_build.model_dir / INT8_MODEL
    script = Path(__file__).parents[3] / "ran_edge" / "targets" / "cortex_a" / "measure.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(model), "--threads", "1", "--runs", "3", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["runs"] == 3 and len(data["latencies_ms"]) == 3
    assert data["latency_ms"]["min"] <= data["latency_ms"]["median"] <= data["latency_ms"]["max"]
    module = subprocess.run(
        [
            sys.executable,
            "-m",
            "ran_edge.targets.cortex_a.measure",
            str(model),
            "--runs",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert module.returncode == 0 and json.loads(module.stdout)["ok"]


def test_float_model_on_a_cpu_target(digits_build, tmp_path):
    out = tmp_path / "out"
    model = digits_build.model_dir / FLOAT_MODEL
    result = run_cli("profile", model, "--target", "rpi4", "--out", out, "-q")
    assert result.exit_code == 2, result.output
    message = _error(result)
    assert "is not an int8 model" in message and "CPU figures are for int8 models" in message
    assert not out.exists()


def test_measure_needs_a_cpu_target(digits_build, tmp_path):
    out = tmp_path / "out"
    model = digits_build.model_dir / INT8_MODEL
    result = run_cli("profile", model, "--target", "ethos-u55-128", "--measure", "--out", out)
    assert result.exit_code == 2
    assert "--measure runs the model on a CPU target" in _error(result)
    assert not out.exists()


def test_one_table_for_npu_and_cpu_targets(digits_model, tmp_path):
    out = tmp_path / "out"
    args = ["build", "--model", digits_model.spec, "--weights", digits_model.weights]
    args += ["--calib", digits_model.calib, "--calib-samples", 16, "--holdout", 8]
    args += ["--target", "ethos-u55-128", "--target", "rpi4", "--target", "host"]
    result = run_cli(*args, "--runs", 5, "--warmup", 1, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    table = result.stdout.split("targets side by side")[1]
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 3}
    assert "vela" in rows["ethos-u55-128"]
    assert "estimated" in rows["rpi4"] and "measured" not in rows["rpi4"]
    assert "measured" in rows["host"]
    folder = out / "digits_net_make_net"
    reports = {
        t: json.loads((folder / t / "report.json").read_text())
        for t in ("ethos-u55-128", "rpi4", "host")
    }
    for report in reports.values():
        jsonschema.validate(report, SCHEMA)
        assert metric_value(report["metrics"], "system_latency") > 0
    assert reports["host"]["cpu"]["mode"] == "measured"
    assert reports["rpi4"]["cpu"]["mode"] == "estimated"
    # MACs read from the int8 graph's shapes equal PyTorch's count of the source model
    rpi4 = reports["rpi4"]
    assert metric_value(rpi4["metrics"], "macs") == rpi4["model"]["macs"] > 0
    assert (folder / "rpi4" / "digits_net_make_net_int8.tflite").is_file()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow  # end to end: seconds of real tools
def test_calibrate_target_writes_a_usable_profile(tmp_path):
    path = tmp_path / "host.toml"
    result = run_cli(
        "calibrate-target", "--target", "host", "--quick", "--out", path, "--json", "-q"
    )
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)
    assert fit["out"] == str(path) and fit["timings"]
    assert all(t["measured_ms"] > 0 for t in fit["timings"])
    assert all(usable_value(k, v) for k, v in fit["params"].items()), fit["params"]
    target = load_target_file(path)
    assert target.name == "host" and target.cpu_model.fitted
    assert target.cpu_model.source.startswith("ran-edge calibrate-target on ")
    assert target.cpu_model.params.conv_macs_per_cycle == pytest.approx(
        fit["params"]["conv_macs_per_cycle"], rel=1e-5
    )
    assert "# no clock_hz" in path.read_text()  # the shipped profile's comments are kept
    # the held-out band is written with the parameters and reads back as written
    band = target.cpu_model.band
    assert band is not None and fit["band"]["samples"] == band.samples > 0
    assert band.low == pytest.approx(fit["band"]["low"], rel=1e-3)
    assert band.high == pytest.approx(fit["band"]["high"], rel=1e-3)
    assert 0 < band.low <= band.high and band.coverage == 0.9


def test_quick_set_is_a_subset_that_touches_every_op_class():
    from ran_edge.targets.cortex_a.microbench import MICRO_BENCHMARKS, QUICK, select

    names = {b.name for b in MICRO_BENCHMARKS}
    assert set(QUICK) <= names and len(select(quick=True)) == len(QUICK)
    assert len(names) == len(MICRO_BENCHMARKS)  # unique names
    for prefix in ("conv3x3", "conv1x1", "dw", "fc", "add", "maxpool", "gap", "chain", "sqrt"):
        assert any(q.startswith(prefix) for q in QUICK), prefix


def test_calibrate_target_refuses_an_npu(tmp_path):
    result = run_cli("calibrate-target", "--target", "ethos-u55-128", "--out", tmp_path / "x.toml")
    assert result.exit_code == 2
    assert "calibrate-target fits CPU (cortex-a) profiles" in _error(result)
    assert not (tmp_path / "x.toml").exists()
