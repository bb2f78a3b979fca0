"""Memory traffic in a report (schema 1.6, Ethos-U): the bytes each memory area moved per
inference, split into activations and weights, and the cycles it was busy, for the network
(`Report.memory_traffic`) and per layer (`LayerRow.memory`). Why a layer is slow is often
here: weights streamed from flash, or activations spilled to DRAM.

Standard library only, like `ran_edge.report.model`, which reads these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

AREAS = ("sram", "dram", "on_chip_flash", "off_chip_flash")
AREA_LABELS = {
    "sram": "SRAM",
    "dram": "DRAM",
    "on_chip_flash": "on-chip flash",
    "off_chip_flash": "off-chip flash",
}


def area_label(area: str | None) -> str:
    return AREA_LABELS.get(area or "", area or "")


@dataclass(frozen=True)
class AreaTraffic:
    """One memory area's bytes (read and written, activations and weights) and busy cycles."""

    area: str  # one of AREAS
    activations_read_bytes: int = 0  # feature maps
    activations_write_bytes: int = 0
    weights_read_bytes: int = 0
    weights_write_bytes: int = 0
    total_bytes: int = 0  # the above plus scales/biases and lookup tables, both directions
    access_cycles: int = 0

    @property
    def label(self) -> str:
        return area_label(self.area)

    @property
    def other_bytes(self) -> int:
        """Scales/biases and lookup tables: the total less activations and weights."""
        parts = self.activations_read_bytes + self.activations_write_bytes
        parts += self.weights_read_bytes + self.weights_write_bytes
        return self.total_bytes - parts

    @property
    def idle(self) -> bool:
        return not (self.total_bytes or self.access_cycles)

    def to_json(self) -> dict[str, int]:
        """The area's entry in report.json (its name is the key)."""
        return {
            "activations_read_bytes": self.activations_read_bytes,
            "activations_write_bytes": self.activations_write_bytes,
            "weights_read_bytes": self.weights_read_bytes,
            "weights_write_bytes": self.weights_write_bytes,
            "total_bytes": self.total_bytes,
            "access_cycles": self.access_cycles,
        }

    @classmethod
    def from_json(cls, area: str, d: Mapping) -> AreaTraffic:
        return cls(
            area,
            d["activations_read_bytes"],
            d["activations_write_bytes"],
            d["weights_read_bytes"],
            d["weights_write_bytes"],
            d["total_bytes"],
            d["access_cycles"],
        )


def areas_from_json(d: Mapping | None) -> tuple[AreaTraffic, ...]:
    """Areas of a JSON `{area: traffic}` object, in AREAS order (unknown names last)."""
    if not d:
        return ()
    order = sorted(d, key=lambda a: (AREAS.index(a) if a in AREAS else len(AREAS), a))
    return tuple(AreaTraffic.from_json(a, d[a]) for a in order)


@dataclass(frozen=True)
class MemoryTraffic:
    """A network's memory traffic per inference (Vela's totals) and the NPU-busy share."""

    cycles_total: int
    cycles_npu: int
    npu_busy_pct: float | None  # cycles_npu / cycles_total: the rest waits on memory
    weights_area: str
    activations_area: str
    areas: tuple[AreaTraffic, ...]  # every area, idle ones too
    per_layer: bool  # every layer carries its own `memory`

    def area(self, name: str) -> AreaTraffic | None:
        return next((a for a in self.areas if a.area == name), None)

    @property
    def active(self) -> tuple[AreaTraffic, ...]:
        """The areas that moved anything or spent any cycle."""
        return tuple(a for a in self.areas if not a.idle)

    @classmethod
    def from_json(cls, d: Mapping | None) -> MemoryTraffic | None:
        if not d:
            return None
        return cls(
            cycles_total=d["cycles_total"],
            cycles_npu=d["cycles_npu"],
            npu_busy_pct=d["npu_busy_pct"],
            weights_area=d["weights_area"],
            activations_area=d["activations_area"],
            areas=areas_from_json(d["areas"]),
            per_layer=bool(d["per_layer"]),
        )
