"""Neoverse N1 / V1 (Graviton2 / Graviton3 class) profiles: their sourced figures, the stated
transfer from rpi5's fitted rates, the widened band, and estimates through the CLI."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from helpers import run_cli

from ran_edge.convert.tflite_ops import OpCost
from ran_edge.report.metrics import metric_value
from ran_edge.targets.cortex_a.estimate import estimate_ops
from ran_edge.targets.cortex_a.transfer import transferred_band, transferred_params
from ran_edge.targets.loading import TARGET_PATH_ENV, resolve_target

INT8_MODEL = Path("ethos-u55-128") / "digits_net_make_net_int8.tflite"
# the factors stated in the profiles' comments (MAC, data and cold-weight rates, band)
FACTORS = {
    "neoverse-n1": {"mac": 1.0, "data": 1.0, "cold": 1.0, "band": 1.15},
    "neoverse-v1": {"mac": 2.0, "data": 1.5, "cold": 1.5, "band": 1.30},
}


@pytest.fixture(autouse=True)
def _no_user_targets(monkeypatch):
    monkeypatch.delenv(TARGET_PATH_ENV, raising=False)


def _conv(cin: int, cout: int, hw: int, index: int) -> OpCost:
    return OpCost(
        index=index,
        op="CONV_2D",
        name=f"conv{index}",
        output=(1, hw, hw, cout),
        inputs=((1, hw, hw, cin),),
        weights=(cout, 1, 1, cin),
        macs=hw * hw * cout * cin,
        in_elements=hw * hw * cin,
        out_elements=hw * hw * cout,
        activation_bytes=hw * hw * (cin + cout),
        weight_bytes=cout * cin,
        dtype="int8",
    )


NET = [_conv(64, 256, 32, 0), _conv(256, 64, 32, 1), _conv(64, 256, 16, 2)]


def test_figures_from_the_aws_graviton_table():
    n1, v1 = resolve_target("neoverse-n1").cpu, resolve_target("neoverse-v1").cpu
    assert (n1.cores, n1.clock_hz, n1.default_threads) == (64, 2.5e9, 64)
    assert (v1.cores, v1.clock_hz, v1.default_threads) == (64, 2.6e9, 64)
    for cpu in (n1, v1):
        assert (cpu.l1d_bytes, cpu.l1i_bytes) == (64 * 1024, 64 * 1024)
        assert (cpu.l2_bytes, cpu.l3_bytes) == (1024**2, 32 * 1024**2)
    assert n1.simd == ("neon", "dotprod")
    assert {"dotprod", "i8mm", "sve"} <= set(v1.simd)
    assert (n1.memory_bandwidth_bytes_per_s, v1.memory_bandwidth_bytes_per_s) == (204.8e9, 307.2e9)


def test_graviton_aliases():
    assert resolve_target("graviton2").name == "neoverse-n1"
    assert resolve_target("graviton3").name == "neoverse-v1"


@pytest.mark.parametrize("name", FACTORS)
def test_rates_are_rpi5s_times_the_stated_factors(name):
    """The transfer is exactly what the profile says: rpi5's rates x a factor per group."""
    rpi5 = resolve_target("rpi5").cpu_model.params
    model = resolve_target(name).cpu_model
    assert model.source.startswith("ESTIMATE")
    expected = transferred_params(rpi5, FACTORS[name])
    assert asdict(model.params) == pytest.approx(asdict(expected), rel=1e-5)


def test_band_is_rpi5s_widened_for_the_transfer():
    rpi5 = resolve_target("rpi5").cpu_model.band
    n1 = resolve_target("neoverse-n1").cpu_model.band
    v1 = resolve_target("neoverse-v1").cpu_model.band
    assert n1 is not None and v1 is not None
    assert v1.low < n1.low < rpi5.low <= 1.0 <= rpi5.high < n1.high < v1.high
    for name, band in (("neoverse-n1", n1), ("neoverse-v1", v1)):
        expected = transferred_band(rpi5, FACTORS[name]["band"], band.source)
        assert band == expected
        assert band.coverage == 0.9 and band.samples == rpi5.samples
        assert band.source.startswith("transferred") and "assumed" in band.source


def test_n1_is_the_a76_per_cycle_and_v1_is_faster():
    """Same rates as rpi5 (a small net: no cold weights), so the same cycles at 1 thread, at
    N1's clock; V1 is faster per cycle; 64 threads beat 1 on a large enough net."""
    rpi5, n1, v1 = (resolve_target(n) for n in ("rpi5", "neoverse-n1", "neoverse-v1"))
    one = {t.name: estimate_ops(NET, t.cpu, t.cpu_model.params, 1) for t in (rpi5, n1, v1)}
    assert one["neoverse-n1"].cycles == pytest.approx(one["rpi5"].cycles)
    assert one["neoverse-n1"].latency_ms == pytest.approx(one["rpi5"].latency_ms * 2.4 / 2.5)
    assert one["neoverse-v1"].latency_ms < one["neoverse-n1"].latency_ms
    for target in (n1, v1):
        many = estimate_ops(NET, target.cpu, target.cpu_model.params).latency_ms
        assert many < one[target.name].latency_ms


@pytest.mark.parametrize(
    ("alias", "name"), [("graviton2", "neoverse-n1"), ("neoverse-v1", "neoverse-v1")]
)
def test_profile_estimates_a_neoverse_target(digits_build, tmp_path, alias, name):
    model = digits_build.model_dir / INT8_MODEL
    out = tmp_path / "out"
    result = run_cli("profile", model, "--target", alias, "--out", out, "--json", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["target"]["name"] == name
    assert report["cpu"]["mode"] == "estimated" and report["cpu"]["threads"] == 64
    latency = next(m for m in report["metrics"] if m["name"] == "latency")
    assert latency["source"] == "estimated"
    low, high = latency["interval"]["low"], latency["interval"]["high"]
    assert low < metric_value(report["metrics"], "latency") < high
