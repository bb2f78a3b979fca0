"""Memory traffic per area is Vela's own: the report's network figures are its summary CSV's,
and the per-layer bytes (from its debug database) add up to them exactly, on real compiles of
the digits model for a flash-weights (Shared_Sram), a DRAM (Dedicated_Sram) and an all-SRAM
(Sram_Only) target."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from helpers import BUILD_TARGETS, run_cli
from rich.console import Console

from ran_edge.errors import StageError
from ran_edge.report.console import memory_table
from ran_edge.report.model import Report
from ran_edge.targets.ethos_u.vela import parse_per_layer_csv, with_traffic
from ran_edge.targets.ethos_u.vela_traffic import AREAS, layer_traffic
from ran_edge.targets.loading import resolve_target

FIELDS = (
    "activations_read_bytes",
    "activations_write_bytes",
    "weights_read_bytes",
    "weights_write_bytes",
    "total_bytes",
    "access_cycles",
)
SUMMARY_COLUMNS = (  # the summary CSV's name for each field, given the area
    "{}_feature_map_read_bytes",
    "{}_feature_map_write_bytes",
    "{}_weight_read_bytes",
    "{}_weight_write_bytes",
    "{}_total_bytes",
    "cycles_{}_access",
)
CSV_ACCESS_COLUMNS = {"sram": 8, "dram": 9, "on_chip_flash": 10, "off_chip_flash": 11}


def _summary_row(folder: Path) -> dict[str, str]:
    (path,) = folder.glob("*_summary_*.csv")
    with path.open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    return row


def _per_layer_rows(folder: Path) -> list[list[str]]:
    (path,) = folder.glob("*_per-layer.csv")
    with path.open(newline="") as f:
        return [r for r in csv.reader(f) if r and r[0] != "Original Operator"]


@pytest.mark.parametrize("target", BUILD_TARGETS)
def test_layers_add_up_to_vela_network_totals(digits_build, target):
    folder = digits_build.model_dir / target
    report = digits_build.reports[target]
    traffic = report["memory_traffic"]
    row = _summary_row(folder)
    assert traffic["per_layer"] is True
    assert report["artifacts"]["vela_debug_db"] == "digits_net_make_net_int8_debug.xml"
    assert (folder / report["artifacts"]["vela_debug_db"]).is_file()
    assert "--enable-debug-db" in report["vela_command"]
    for area in AREAS:
        network = traffic["areas"][area]
        for field, column in zip(FIELDS, SUMMARY_COLUMNS, strict=True):
            # the network figure is the summary CSV's, as Vela wrote it
            assert network[field] == int(float(row[column.format(area)])), (area, field)
            # and the layers' figures, from the debug database, add up to it
            summed = sum(
                layer.get("memory", {}).get(area, {}).get(field, 0) for layer in report["layers"]
            )
            assert summed == network[field], (target, area, field)
    cycles_total, cycles_npu = int(float(row["cycles_total"])), int(float(row["cycles_npu"]))
    assert (traffic["cycles_total"], traffic["cycles_npu"]) == (cycles_total, cycles_npu)
    assert traffic["npu_busy_pct"] == pytest.approx(100.0 * cycles_npu / cycles_total)


@pytest.mark.parametrize("target", BUILD_TARGETS)
def test_each_layer_matches_the_per_layer_csv(digits_build, target):
    """Access cycles per area are the per-layer CSV's; an op costs max(compute, busiest
    memory), and a memory-bound op names that memory."""
    folder = digits_build.model_dir / target
    layers = digits_build.reports[target]["layers"]
    rows = _per_layer_rows(folder)
    assert len(rows) == len(layers)
    for layer, row in zip(layers, rows, strict=True):
        memory = layer["memory"]
        for area, column in CSV_ACCESS_COLUMNS.items():
            assert memory.get(area, {}).get("access_cycles", 0) == int(row[column]), area
        access = {area: m["access_cycles"] for area, m in memory.items()}
        busiest = max(access.values(), default=0)
        assert layer["cycles"] == max(layer["npu_cycles"], busiest)
        assert layer["memory_bound"] == (busiest > layer["npu_cycles"])
        if layer["memory_bound"]:
            assert access[layer["bound_by"]] == busiest == layer["cycles"]
        else:
            assert layer["bound_by"] is None
        for m in memory.values():  # only the areas an op touches are listed
            assert m["total_bytes"] or m["access_cycles"]
            parts = sum(m[f] for f in FIELDS[:4])
            assert parts <= m["total_bytes"]  # the rest: scales/biases and LUTs


def test_shared_sram_streams_weights_from_flash(digits_build):
    """Shared_Sram (ethos-u55-128): weights live in off-chip flash and are read from there;
    Dedicated_Sram (ethos-u65-256): everything lives in DRAM, flash is idle."""
    u55 = digits_build.reports["ethos-u55-128"]
    assert u55["target"]["memory_mode"] == "Shared_Sram"
    traffic = u55["memory_traffic"]
    assert (traffic["weights_area"], traffic["activations_area"]) == ("off_chip_flash", "sram")
    flash = traffic["areas"]["off_chip_flash"]
    assert flash["weights_read_bytes"] > 0 and flash["access_cycles"] > 0
    assert flash["weights_write_bytes"] == 0  # flash is read-only to the NPU
    assert traffic["areas"]["dram"]["total_bytes"] == 0
    # the classifier reads its weights from flash and barely computes: flash bounds it
    classifier = [layer for layer in u55["layers"] if layer["module"] == "classifier"]
    assert classifier and all(layer["bound_by"] == "off_chip_flash" for layer in classifier)

    u65 = digits_build.reports["ethos-u65-256"]
    assert u65["target"]["memory_mode"] == "Dedicated_Sram"
    traffic = u65["memory_traffic"]
    assert (traffic["weights_area"], traffic["activations_area"]) == ("dram", "dram")
    assert traffic["areas"]["dram"]["weights_read_bytes"] > 0
    assert traffic["areas"]["off_chip_flash"]["total_bytes"] == 0


# ---------------------------------------------------------------- the debug database reader

PERF = '"id","source_id","optimised_id","operator","name","staging_usage","op_cycles","npu_cycles","mac_count","Sram_ac","OffChipFlash_ac"'
PERF_DEBUG = (
    '"id","SramFeatureMap_read","SramFeatureMap_write","SramWeights_read","SramScales_read",'
    '"SramFeatureMap_ac","shramLut_read","OffChipFlashWeights_read","OffChipFlashWeights_ac",'
    '"Sram_read_efficiency"'
)


def _debug_db(path: Path, perf_rows: list[str], debug_rows: list[str]) -> Path:
    tables = {"perf": [PERF, *perf_rows], "perf_debug": [PERF_DEBUG, *debug_rows]}
    text = "<?xml version='1.0' encoding='UTF-8'?>\n<debug source=\"./m\">\n"
    for name, lines in tables.items():
        text += f'<table name="{name}">\n<![CDATA[\n' + "\n".join(lines) + "\n]]>\n</table>\n"
    path.write_text(text + "</debug>\n")
    return path


def test_debug_database_rows_pair_with_the_csv_by_position(tmp_path):
    db = _debug_db(
        tmp_path / "m_debug.xml",
        ['7,1,2,"Conv2D","a, with comma",10,500,100,64,40,500', '9,2,3,"Relu","b",0,0,0,0,0,0'],
        ['7,1000,200,"",16,35,999,320,500,"64.5"', "9,0,0,0,0,0,0,0,0,0"],
    )
    conv, relu = layer_traffic(db, [500, 0])
    sram = conv[AREAS.index("sram")]
    assert (sram.activations_read_bytes, sram.activations_write_bytes) == (1000, 200)
    assert (sram.weights_read_bytes, sram.total_bytes) == (0, 1216)  # + scales, not SHRAM
    assert sram.access_cycles == 40  # the perf table's, not perf_debug's per-purpose sum
    flash = conv[AREAS.index("off_chip_flash")]
    assert (flash.weights_read_bytes, flash.total_bytes, flash.access_cycles) == (320, 320, 500)
    assert all(a.idle for a in relu)

    with pytest.raises(StageError, match="does not match its per-layer CSV"):
        layer_traffic(db, [500])
    with pytest.raises(StageError, match="does not match its per-layer CSV"):
        layer_traffic(db, [499, 0])


def test_without_a_debug_database_layers_carry_no_traffic(digits_build, tmp_path):
    folder = digits_build.model_dir / BUILD_TARGETS[0]
    layers = parse_per_layer_csv(next(folder.glob("*_per-layer.csv")))
    assert all(x.traffic is None for x in with_traffic(layers, tmp_path / "none.xml"))
    legacy = tmp_path / "legacy_debug.xml"  # another layout: no perf / perf_debug tables
    legacy.write_text('<debug><table name="optimised"><![CDATA[\n"id"\n1\n]]></table></debug>')
    assert layer_traffic(legacy, [1]) is None
    broken = tmp_path / "broken_debug.xml"
    broken.write_text("<debug><table")
    with pytest.raises(StageError, match="not readable XML"):
        layer_traffic(broken, [1])
    traced = with_traffic(layers, next(folder.glob("*_debug.xml")))
    assert all(x.traffic is not None and len(x.traffic) == len(AREAS) for x in traced)


def test_sram_only_keeps_everything_in_sram(digits_build, tmp_path):
    """Sram_Only: Vela files the weights under on-chip flash, yet every byte moves in SRAM;
    the figures still add up, and the console puts the weights where they really are."""
    shipped = resolve_target(BUILD_TARGETS[0]).source
    toml = Path(shipped).read_text().replace('"Shared_Sram"', '"Sram_Only"')
    profile = tmp_path / "u55-sram-only.toml"
    profile.write_text(toml.replace('name = "ethos-u55-128"', 'name = "u55-sram-only"'))
    int8 = digits_build.model_dir / BUILD_TARGETS[0] / "digits_net_make_net_int8.tflite"
    result = run_cli("profile", int8, "--target", profile, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    traffic = data["memory_traffic"]
    assert traffic["weights_area"] == "on_chip_flash" and traffic["activations_area"] == "sram"
    assert [a for a, m in traffic["areas"].items() if m["total_bytes"]] == ["sram"]
    for field in FIELDS:
        summed = sum(layer["memory"].get("sram", {}).get(field, 0) for layer in data["layers"])
        assert summed == traffic["areas"]["sram"][field]
    report = Report.from_dict(data)
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(memory_table(report))
    assert "SRAM (weights, arena)" in console.file.getvalue()
