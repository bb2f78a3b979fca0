"""The zoo's listing without building anything: `ran-edge models` reads `zoo.json` here, so
listing the zoo imports no torch. The file is generated from the registry (the source of
truth) and a test fails when the two differ:

    python -m ran_edge.models.catalogue --write
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

CATALOGUE = Path(__file__).with_name("zoo.json")


@dataclass(frozen=True)
class ZooListing:
    name: str
    family: str
    input_shape: tuple[int, ...]
    description: str


def read_catalogue() -> list[ZooListing]:
    rows = json.loads(CATALOGUE.read_text())
    return [
        ZooListing(r["name"], r["family"], tuple(r["input_shape"]), r["description"]) for r in rows
    ]


def from_registry() -> list[dict]:
    """The listing as the registry has it (imports every zoo family: torch)."""
    from ran_edge.models import list_models

    return [
        {
            "name": e.name,
            "family": e.family,
            "input_shape": list(e.input_shape),
            "description": e.description,
        }
        for e in list_models()
    ]


def render(rows: list[dict]) -> str:
    return json.dumps(rows, indent=1) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m ran_edge.models.catalogue --write")
    CATALOGUE.write_text(render(from_registry()))
    print(f"wrote {CATALOGUE}")
