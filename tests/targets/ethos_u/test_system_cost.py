"""Ethos-U system cost: the Cortex-M time of CPU-fallback ops is added to the NPU's, so a model
that moves ops off the NPU never looks faster for it."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from helpers import SQRT_NET, run_cli

from ran_edge.convert.tflite_ops import OpCost
from ran_edge.errors import UsageError
from ran_edge.report.json_report import SCHEMA_FILE
from ran_edge.report.metrics import metric_value
from ran_edge.resources import shipped_dir
from ran_edge.targets.ethos_u.cortex_m import HostCpu, load_core
from ran_edge.targets.loading import TARGET_PATH_ENV, load_target_file

TARGET = "ethos-u55-128"
# The same network with the SQRT that Vela leaves on the CPU taken out.
PLAIN_NET = SQRT_NET.replace("torch.sqrt(torch.relu(self.a(x)) + 1)", "torch.relu(self.a(x)) + 1")
SCHEMA = json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(autouse=True)
def _no_user_targets(monkeypatch):
    monkeypatch.delenv(TARGET_PATH_ENV, raising=False)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, dict]:
    """Both networks built for ethos-u55-128 (the SQRT one with --allow-cpu-fallback)."""
    assert PLAIN_NET != SQRT_NET
    folder = tmp_path_factory.mktemp("system")
    calib = folder / "calib.npy"
    np.save(calib, np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32))
    reports = {}
    for name, text in (("sqrt_net", SQRT_NET), ("plain_net", PLAIN_NET)):
        (folder / f"{name}.py").write_text(text)
        out = folder / "out"
        args = ["build", "--model", f"{folder / name}.py:make", "--calib", calib, "--holdout", 2]
        result = run_cli(*args, "--target", TARGET, "--allow-cpu-fallback", "--out", out, "-q")
        assert result.exit_code == 0, result.output
        reports[name] = json.loads((out / f"{name}_make" / TARGET / "report.json").read_text())
        reports[name]["_int8"] = out / f"{name}_make" / TARGET / f"{name}_make_int8.tflite"
    return reports


def _m(report: dict, name: str):
    return metric_value(report["metrics"], name)


def _source(report: dict, name: str) -> str | None:
    return next((m.get("source") for m in report["metrics"] if m["name"] == name), None)


def test_cpu_fallback_never_makes_a_model_look_faster(pair):
    sqrt, plain = pair["sqrt_net"], pair["plain_net"]
    assert _m(sqrt, "cpu_ops") == 1 and _m(plain, "cpu_ops") == 0
    # Vela alone would rank the fallback model first: it does not count the SQRT at all.
    assert _m(sqrt, "latency") < _m(plain, "latency")
    # The system figures charge the Cortex-M for it.
    assert _m(sqrt, "system_latency") > _m(plain, "system_latency")
    assert _m(sqrt, "system_inferences_per_second") < _m(plain, "system_inferences_per_second")


def test_fallback_time_is_an_estimated_figure(pair):
    sqrt = {k: v for k, v in pair["sqrt_net"].items() if k != "_int8"}
    jsonschema.validate(sqrt, SCHEMA)
    cpu_ms = _m(sqrt, "cpu_fallback_time")
    assert cpu_ms > 0 and _source(sqrt, "cpu_fallback_time") == "estimated"
    assert _m(sqrt, "system_latency") == pytest.approx(_m(sqrt, "latency") + cpu_ms)
    assert _m(sqrt, "system_inferences_per_second") == pytest.approx(
        1e3 / _m(sqrt, "system_latency")
    )
    assert _source(sqrt, "system_latency") == "estimated"
    (fallback,) = sqrt["cpu_fallbacks"]
    assert fallback["op_type"] == "SQRT" and fallback["host_cycles"] > 0
    assert fallback["host_time_ms"] == pytest.approx(cpu_ms)
    host = sqrt["target"]["host_cpu"]
    assert host["core"] == "cortex-m55" and host["clock_hz"] == 500e6
    assert host["cycle_costs"] == "cortex-m55.toml"


def test_no_fallback_means_the_npu_figures(pair):
    plain = {k: v for k, v in pair["plain_net"].items() if k != "_int8"}
    jsonschema.validate(plain, SCHEMA)
    assert _m(plain, "cpu_fallback_time") == 0 and _source(plain, "cpu_fallback_time") == "ran-edge"
    assert _m(plain, "system_latency") == _m(plain, "latency")
    assert _source(plain, "system_latency") == "vela"


def _user_profile(tmp_path, core: str, clock: str) -> str:
    text = (shipped_dir("targets") / f"{TARGET}.toml").read_text()
    text = re.sub(r'(?m)^name = ".*"$', f'name = "u55-{core}"', text)
    text = re.sub(r"(?m)^aliases = .*$", "aliases = []", text)
    text = re.sub(r'(?m)^core = ".*"$', f'core = "{core}"', text)
    text = re.sub(r"(?m)^cpu_clock_hz = .*$", f"cpu_clock_hz = {clock}", text)
    path = tmp_path / f"u55-{core}.toml"
    path.write_text(text)
    return str(path)


def test_a_slower_host_core_costs_more(pair, tmp_path):
    int8 = pair["sqrt_net"]["_int8"]
    times = {}
    for core, clock in (("cortex-m55", "500_000_000"), ("cortex-m4", "100_000_000")):
        target = _user_profile(tmp_path, core, clock)
        result = run_cli(
            "profile", int8, "--target", target, "--out", tmp_path / core, "--json", "-q"
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["target"]["host_cpu"]["core"] == core
        times[core] = _m(report, "cpu_fallback_time")
    assert times["cortex-m4"] > times["cortex-m55"] > 0


def test_unknown_host_core_is_a_usage_error(tmp_path):
    path = _user_profile(tmp_path, "cortex-m99", "100_000_000")
    with pytest.raises(UsageError) as err:
        load_target_file(Path(path))
    message = str(err.value)
    assert "cortex-m99" in message and "cortex-m55" in message and "cortex-m4" in message


def _op(op: str, macs: int, elements: int) -> OpCost:
    return OpCost(
        0,
        op,
        op,
        (1, elements),
        ((1, elements),),
        None,
        macs,
        elements,
        elements,
        2 * elements,
        0,
        "int8",
    )


@pytest.mark.parametrize(
    "op",
    [
        _op("CONV_2D", 1_000_000, 4096),
        _op("ADD", 0, 4096),
        _op("SQRT", 0, 4096),
        _op("AVERAGE_POOL_2D", 0, 4096),
    ],
)
def test_cortex_m_cycle_models_rank_the_cores(op):
    cycles = {}
    for core in ("cortex-m55", "cortex-m7", "cortex-m4"):
        costs, description, path = load_core(core, shipped_dir("targets"))
        host = HostCpu(core, 1e8, costs, description, str(path), False)
        cycles[core] = host.op_cycles(op)
        bigger = replace(
            op, macs=op.macs * 2, out_elements=op.out_elements * 2, in_elements=op.in_elements * 2
        )
        assert host.op_cycles(bigger) > cycles[core] > 0
    assert cycles["cortex-m55"] < cycles["cortex-m7"] < cycles["cortex-m4"]


def test_every_shipped_ethos_u_profile_names_its_host_core():
    for path in sorted(shipped_dir("targets").glob("ethos-u*.toml")):
        target = load_target_file(path)
        assert target.host_cpu.core == "cortex-m55", path.name
        assert not target.host_cpu.clock_assumed, path.name
        assert target.host_cpu.clock_hz == target.npu.clock_hz, path.name
