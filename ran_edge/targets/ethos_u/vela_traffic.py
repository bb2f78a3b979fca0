"""Memory traffic as Vela reports it: the bytes each memory area moved (activations, weights,
the rest) and the cycles spent on it, for the network and for each layer.

Network totals come from the summary CSV (`<area>_feature_map_read_bytes`, ...,
`cycles_<area>_access`). The per-layer CSV has access cycles but no bytes. Vela 5 compiles
with its C++ core (Regor), so the legacy Python core's per-pass bandwidth arrays are not there
to collect; Regor puts each op's bytes per memory, purpose and direction into its debug
database (`--enable-debug-db`: `<name>_debug.xml`, table `perf_debug`), beside the per-layer
CSV's rows and access cycles (table `perf`). All are Vela's own figures, read as written,
never re-derived: the per-op rows add up to the summary's totals (the suite checks it).
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ran_edge.errors import StageError
from ran_edge.report.traffic import AREAS, AreaTraffic

# AREAS, the report's memory areas, are Vela's as the summary CSV prefixes them
# (MemArea.identifier_name); SHRAM, the NPU's internal buffer, is left out as Vela's summary
# leaves it out. AreaTraffic, the report's record of one area, is filled here from Vela's.
# The debug database's memory names (lower-cased) as AREAS ids.
_DB_AREAS = {
    "sram": "sram",
    "dram": "dram",
    "onchipflash": "on_chip_flash",
    "offchipflash": "off_chip_flash",
}
# `SramFeatureMap_read`, `OffChipFlashWeights_write`, ...: memory, purpose, direction. Purposes
# other than feature maps and weights (scales/biases, LUTs) count in the total only.
_DB_BYTES = re.compile(r"^(sram|dram|onchipflash|offchipflash)([a-z]+)_(read|write)$")
# `Sram_ac`, ... in the `perf` table: the op's access cycles per memory, as the per-layer CSV
# has them (perf_debug's per-purpose `_ac` are rounded each, so their sum can be 1 cycle off).
_DB_CYCLES = re.compile(r"^(sram|dram|onchipflash|offchipflash)_ac$")


@dataclass(frozen=True)
class NetworkTraffic:
    """The summary CSV's traffic: every area (idle ones too), and where Vela put each kind."""

    areas: tuple[AreaTraffic, ...]
    weights_area: str  # an AREAS id: where the weights are stored
    activations_area: str  # where the feature maps (the arena) are stored

    def area(self, name: str) -> AreaTraffic:
        return next(a for a in self.areas if a.area == name)


def _area_id(display_name: str) -> str:
    """Vela's display name ("Off-chip Flash") as an AREAS id ("off_chip_flash")."""
    return re.sub(r"[^a-z]+", "_", display_name.lower()).strip("_")


def traffic_from_summary(row: Mapping[str, str]) -> NetworkTraffic:
    """The traffic columns of one summary CSV row."""

    def count(key: str) -> int:
        return int(float(row[key]))

    areas = tuple(
        AreaTraffic(
            area,
            activations_read_bytes=count(f"{area}_feature_map_read_bytes"),
            activations_write_bytes=count(f"{area}_feature_map_write_bytes"),
            weights_read_bytes=count(f"{area}_weight_read_bytes"),
            weights_write_bytes=count(f"{area}_weight_write_bytes"),
            total_bytes=count(f"{area}_total_bytes"),
            access_cycles=count(f"cycles_{area}_access"),
        )
        for area in AREAS
    )
    return NetworkTraffic(
        areas,
        weights_area=_area_id(row["weights_storage_area"]),
        activations_area=_area_id(row["feature_map_storage_area"]),
    )


def read_debug_tables(path: Path) -> dict[str, list[dict[str, str]]]:
    """Every table of a Vela debug database: name -> rows (column -> text)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise StageError(f"Vela's debug database {path} is not readable XML: {exc}") from None
    tables = {}
    for table in root.iter("table"):
        rows = list(csv.reader(io.StringIO((table.text or "").strip("\n"))))
        header, body = (rows[0], rows[1:]) if rows else ([], [])
        tables[table.get("name", "")] = [dict(zip(header, r, strict=False)) for r in body]
    return tables


def _op_traffic(perf: Mapping[str, str], debug: Mapping[str, str]) -> tuple[AreaTraffic, ...]:
    """One op's traffic per area: bytes by purpose and direction from its `perf_debug` row,
    access cycles from its `perf` row."""
    sums = {area: dict.fromkeys(("fm_r", "fm_w", "w_r", "w_w", "total", "ac"), 0) for area in AREAS}
    for row, pattern in ((debug, _DB_BYTES), (perf, _DB_CYCLES)):
        for column, text in row.items():
            match = pattern.match((column or "").lower())
            if match is None:
                continue
            s = sums[_DB_AREAS[match[1]]]
            value = int(float(text or 0))
            if pattern is _DB_CYCLES:
                s["ac"] += value
                continue
            s["total"] += value
            kind = {"featuremap": "fm", "weights": "w"}.get(match[2])
            if kind is not None:
                s[f"{kind}_{match[3][0]}"] += value
    return tuple(
        AreaTraffic(area, s["fm_r"], s["fm_w"], s["w_r"], s["w_w"], s["total"], s["ac"])
        for area, s in sums.items()
    )


def layer_traffic(
    path: Path, op_cycles: Sequence[int]
) -> tuple[tuple[AreaTraffic, ...], ...] | None:
    """Per-op traffic from the debug database, one entry per per-layer CSV row.

    Vela writes the per-layer CSV from the database's `perf` table, row for row, so the rows
    pair up by position; `op_cycles` (the CSV's, in order) checks that they do. None when the
    database has no `perf`/`perf_debug` tables (Vela's legacy core writes another format)
    or an op has no `perf_debug` row.
    """
    tables = read_debug_tables(path)
    perf, debug = tables.get("perf"), tables.get("perf_debug")
    if perf is None or debug is None:
        return None
    db_cycles = [int(float(r.get("op_cycles") or 0)) for r in perf]
    if db_cycles != list(op_cycles):
        raise StageError(
            f"Vela's debug database {path} does not match its per-layer CSV "
            f"({len(perf)} vs {len(op_cycles)} ops, or other cycles): cannot pair the "
            "per-layer memory traffic with the layers."
        )
    by_id = {r.get("id"): r for r in debug}
    if any(r.get("id") not in by_id for r in perf):
        return None  # an op without its bytes: no per-layer traffic rather than zeros
    return tuple(_op_traffic(r, by_id[r.get("id")]) for r in perf)
