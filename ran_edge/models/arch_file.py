"""The architecture file a search writes and `ran-edge build --model file.json` builds.

Versioned JSON, keys sorted, two-space indent, no timestamps: the same search writes the
same bytes. Only `format`, `version`, `resolution` and `blocks` define the network; the
rest (`target`, `predicted`, `search`) documents where it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from ran_edge.errors import UsageError
from ran_edge.models.ran_e_space import Arch, Candidate, Slot, build_network, ran_e_slots

FORMAT = "ran-edge-arch"
VERSION = 1
SPACE = "ran_e"


def arch_to_dict(arch: Arch, **extra: Any) -> dict[str, Any]:
    blocks = [
        {
            "cin": s.cin,
            "cout": s.cout,
            "stride": s.stride,
            "kind": c.kind,
            "kernel": c.kernel,
            "expand": c.expand,
        }
        for s, c in arch.blocks
    ]
    return {
        "format": FORMAT,
        "version": VERSION,
        "space": SPACE,
        "resolution": arch.resolution,
        "input_shape": [1, 3, arch.resolution, arch.resolution],
        "blocks": blocks,
        **extra,
    }


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def write_arch(path: Path, arch: Arch, **extra: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(arch_to_dict(arch, **extra)))
    return path


def arch_from_dict(data: Any, origin: str = "architecture") -> Arch:
    def bad(why: str) -> UsageError:
        return UsageError(f"{origin} is not a ran-edge architecture file: {why}.")

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f'expected "format": "{FORMAT}" (written by `ran-edge search`)')
    if data.get("version") != VERSION:
        raise bad(
            f"version {data.get('version')!r} is not supported (this ran-edge reads {VERSION})"
        )
    if data.get("space", SPACE) != SPACE:
        raise bad(f"space {data.get('space')!r} is not {SPACE!r}")
    resolution = data.get("resolution")
    if not isinstance(resolution, int) or resolution < 8:
        raise bad(f"resolution {resolution!r} must be an integer >= 8")
    slots = ran_e_slots(resolution)
    blocks = data.get("blocks")
    if not isinstance(blocks, list) or len(blocks) != len(slots):
        raise bad(f"expected {len(slots)} blocks on the RAN-e skeleton")
    out = []
    for i, (slot, b) in enumerate(zip(slots, blocks, strict=True)):
        if not isinstance(b, dict):
            raise bad(f"block {i} is not an object")
        shape = (b.get("cin"), b.get("cout"), b.get("stride"))
        if shape != (slot.cin, slot.cout, slot.stride):
            raise bad(
                f"block {i} has cin/cout/stride {shape}, the skeleton needs "
                f"{(slot.cin, slot.cout, slot.stride)}"
            )
        try:
            cand = Candidate(b.get("kind"), b.get("kernel", 3), b.get("expand", 1))
        except (ValueError, TypeError) as exc:
            raise bad(f"block {i}: {exc}") from None
        if not cand.is_block:
            raise bad(f"block {i} kind {cand.kind!r} is not 'ir' or 'collapsed'")
        out.append((Slot(slot.cin, slot.cout, slot.size, slot.stride), cand))
    return Arch(resolution, tuple(out))


def read_arch(path: Path) -> tuple[Arch, dict[str, Any]]:
    if not path.is_file():
        raise UsageError(f"architecture file {path} does not exist.")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"architecture file {path} is not valid JSON: {exc}.") from None
    return arch_from_dict(data, str(path)), data


def arch_input_shape(path: Path | str) -> tuple[int, ...]:
    arch, _ = read_arch(Path(path))
    return (1, 3, arch.resolution, arch.resolution)


def load_arch_model(path: Path | str) -> nn.Module:
    """The network an architecture file describes (random init)."""
    arch, _ = read_arch(Path(path))
    return build_network(arch)
