"""Firmware artifacts from a real build: exact bytes, I/O contract, budgets, compile check."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import BUILD_TARGETS, run_cli

from ran_edge.firmware.compile_check import toolchain_available

TARGET = BUILD_TARGETS[0]
needs_toolchain = pytest.mark.skipif(
    not toolchain_available(),
    reason="arm-none-eabi-gcc not installed (Debian gcc-arm-none-eabi; `make setup` installs it as root)",
)


@pytest.fixture
def target_dir(digits_build, tmp_path):
    """A private copy of one built target, so tests can regenerate firmware freely."""
    folder = tmp_path / TARGET
    shutil.copytree(digits_build.model_dir / TARGET, folder)
    return folder


def _firmware(folder, *args):
    result = run_cli("firmware", folder, "--json", *args)
    return result, (json.loads(result.stdout) if result.exit_code == 0 else None)


def _array_bytes(source: str) -> bytes:
    body = source[source.index("= {") : source.index("};")]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", body))


def test_model_array_is_the_vela_model_byte_for_byte(target_dir):
    result, manifest = _firmware(target_dir)
    assert result.exit_code == 0, result.output
    fw = target_dir / "firmware"
    vela = (target_dir / "digits_net_make_net_int8_vela.tflite").read_bytes()
    source = (fw / "model_data.cc").read_text()
    assert _array_bytes(source) == vela
    assert '__attribute__((section(".nn_model"), aligned(16)))' in source
    assert f"_len = {len(vela)};" in source
    assert manifest["model_bytes"] == len(vela)
    header = (fw / "model_data.h").read_text()
    assert f"TENSOR_ARENA_SIZE {manifest['tensor_arena_bytes']}u" in header
    assert "FAST_MEMORY_SIZE 0u" in header  # Shared_Sram: one arena


def test_io_header_carries_the_int8_contract(target_dir, digits_build):
    result, _ = _firmware(target_dir)
    assert result.exit_code == 0, result.output
    io = (target_dir / "firmware" / "model_io.h").read_text()
    report = digits_build.reports[TARGET]
    (inp,) = report["conversion"]["inputs"]
    (out,) = report["conversion"]["outputs"]
    assert "{ 1, 32, 32, 1 }" in io and "{ 1, 10 }" in io
    assert (
        f"INPUT0_SCALE {inp['scale']}f" in io and f"INPUT0_ZERO_POINT ({inp['zero_point']})" in io
    )
    assert f"OUTPUT0_ZERO_POINT ({out['zero_point']})" in io
    assert "needs only the ethos-u custom op" in io  # fully NPU-mapped: no CPU op to register


def test_arena_is_vela_scratch_plus_measured_tflm_margin(target_dir, digits_build):
    _, manifest = _firmware(target_dir)
    tflm = digits_build.reports[TARGET]["tflm"]
    assert manifest["tflm_margin_bytes"] >= tflm["arena_persistent_bytes"]
    assert manifest["tflm_margin_bytes"] % 1024 == 0
    assert manifest["tensor_arena_bytes"] % 16 == 0
    sram = next(r for r in manifest["memory"] if r["memory"] == "SRAM")
    assert sram["needed_bytes"] == manifest["tensor_arena_bytes"] and sram["fits"] is True
    assert "| SRAM |" in (target_dir / "firmware" / "memory_map.md").read_text()


def test_a_model_that_does_not_fit_fails_loudly_and_writes_nothing(target_dir):
    result, _ = _firmware(target_dir, "--sram-budget", "4KiB")
    assert result.exit_code == 1
    assert "does not fit" in result.stderr and "SRAM" in result.stderr
    assert not (target_dir / "firmware").exists()
    assert not [p for p in target_dir.iterdir() if p.name.startswith(".")]


def test_second_run_does_nothing_and_a_change_regenerates(target_dir):
    _, first = _firmware(target_dir)
    source = target_dir / "firmware" / "model_data.cc"
    stamp = source.stat().st_mtime_ns
    _, second = _firmware(target_dir)
    assert second == first and source.stat().st_mtime_ns == stamp
    labels = target_dir / "labels.txt"
    labels.write_text("".join(f'digit "{i}"\n' for i in range(10)))
    _, third = _firmware(target_dir, "--labels", labels)
    assert third["fingerprint"] != first["fingerprint"]
    io = (target_dir / "firmware" / "model_io.h").read_text()
    assert '"digit \\"7\\"",' in io  # quotes escaped for C


@needs_toolchain
def test_sources_compile_for_cortex_m55_with_the_model_in_its_section(target_dir, tmp_path):
    result, manifest = _firmware(target_dir, "--section", ".ml_weights", "--compile-check")
    assert result.exit_code == 0, result.output
    check = manifest["compile_check"]
    assert check["section_bytes"] == manifest["model_bytes"] and check["section_align"] >= 16
    # Independently of ran-edge: compile model_data.cc and model_io.h users, read the sizes.
    fw = target_dir / "firmware"
    (tmp_path / "use_io.cc").write_text(
        '#include "model_io.h"\n#include "model_data.h"\nint f(){return 0;}\n'
    )
    for src in (fw / "model_data.cc", tmp_path / "use_io.cc"):
        subprocess.run(
            ["arm-none-eabi-gcc", "-mcpu=cortex-m55", "-mthumb", "-c", str(src), "-I", str(fw),
             "-o", str(tmp_path / (src.stem + ".o"))],
            check=True,
        )  # fmt: skip
    sizes = subprocess.run(
        ["arm-none-eabi-size", "-A", str(tmp_path / "model_data.o")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    row = next(line.split() for line in sizes.splitlines() if line.startswith(".ml_weights"))
    assert int(row[1]) == manifest["model_bytes"]


def test_build_incremental_reuses_then_rebuilds_on_a_changed_model(digits_model, tmp_path):
    args = ["build", "--model", digits_model.spec, "--calib", digits_model.calib,
            "--calib-samples", 16, "--holdout", 4, "--target", TARGET, "--out", tmp_path,
            "--incremental", "--firmware", "--no-compile-check"]  # fmt: skip
    first = run_cli(*args, "--weights", digits_model.weights)
    assert first.exit_code == 0, first.output
    report = tmp_path / "digits_net_make_net" / TARGET / "report.json"
    stamp = report.stat().st_mtime_ns
    again = run_cli(*args, "--weights", digits_model.weights)
    assert again.exit_code == 0 and report.stat().st_mtime_ns == stamp
    # Other weights, same architecture: a different model, so everything is rebuilt.
    changed = run_cli(*args)
    assert changed.exit_code == 0, changed.output
    assert report.stat().st_mtime_ns != stamp


def test_dedicated_sram_target_gets_a_separate_fast_memory(digits_build, tmp_path):
    folder = tmp_path / "ethos-u65-256"
    shutil.copytree(digits_build.model_dir / "ethos-u65-256", folder)
    result, manifest = _firmware(folder, "--no-compile-check")
    assert result.exit_code == 0, result.output
    assert manifest["fast_memory_bytes"] > 0
    regions = {r["memory"]: r for r in manifest["memory"]}
    assert regions["SRAM"]["needed_bytes"] == manifest["fast_memory_bytes"]
    assert regions["SRAM"]["budget_bytes"] == 393_216 and regions["SRAM"]["fits"]
    assert regions["DRAM"]["fits"] is None  # board-specific: not declared, not checked
    header = (folder / "firmware" / "model_data.h").read_text()
    assert f"FAST_MEMORY_SIZE {manifest['fast_memory_bytes']}u" in header


def test_firmware_for_a_build_with_a_custom_target_file(digits_build, tmp_path, monkeypatch):
    """The report names its profile file, so `firmware` finds a target given as a path
    (it used to look the name up among the shipped profiles and fail)."""
    from ran_edge.targets.loading import TARGET_PATH_ENV

    monkeypatch.delenv(TARGET_PATH_ENV, raising=False)
    shipped = (digits_build.model_dir / BUILD_TARGETS[0] / "report.json").read_text()
    profile = tmp_path / "my-board.toml"
    source = json.loads(shipped)["target"]["profile_path"]
    text = Path(source).read_text().replace('name = "ethos-u55-128"', 'name = "my-board"')
    profile.write_text(text.replace('aliases = ["ethos-u55"]', "aliases = []"))
    model = digits_build.model_dir / BUILD_TARGETS[0] / "digits_net_make_net_int8.tflite"
    out = tmp_path / "out"
    assert run_cli("profile", model, "--target", profile, "--out", out, "-q").exit_code == 0
    folder = out / model.stem / "my-board"
    assert json.loads((folder / "report.json").read_text())["target"]["profile_path"] == str(
        profile.resolve()
    )
    result = run_cli("firmware", folder, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["target"] == "my-board"
