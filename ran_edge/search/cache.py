"""Content keys and the on-disk cache: same inputs, same key, no recompilation.

Layout under the cache folder:
  tflite/<graph key>.tflite   int8 graph (target-independent: shared by every target)
  graphs/<cost key>.json      cost of one graph on one target (Vela, or the CPU estimator)
  blocks/<block key>.json     a block's cost (sandwich minus frames) on one target
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.metadata import version
from pathlib import Path

from ran_edge.atomic import write_atomic
from ran_edge.targets.loading import Target

# Bump when the way graphs are built or costs are derived changes.
SCHEMA = "ran-edge-cost-table/1"


def content_key(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()


@cache
def vela_identity() -> str:
    return f"ethos-u-vela={version('ethos-u-vela')}"


@cache
def estimator_identity() -> str:
    """The CPU estimator's code: a change to how ops are read or costed is a new cost."""
    from ran_edge.convert import tflite_ops
    from ran_edge.search import cost, table
    from ran_edge.targets.cortex_a import delegation, estimate, spec

    h = hashlib.sha256()
    for module in (tflite_ops, delegation, estimate, spec, cost, table):
        h.update(Path(module.__file__).read_bytes())
    return f"cpu-estimator={h.hexdigest()[:16]}"


def target_fingerprint(target: Target) -> str:
    """The profile and every file it pulls in (`target.sha256`), plus what costs graphs on
    it: Vela's version on Ethos-U; on a CPU the estimator's code and the profile as loaded
    (a `host` profile resolves cores, caches and SIMD on the machine that loads it)."""
    if target.is_cpu:
        loaded = (repr(target.cpu), repr(target.cpu_model.params))
        return content_key(target.sha256, estimator_identity(), *loaded)
    return content_key(target.sha256, vela_identity())


class DiskCache:
    """Three flat folders of content-addressed files, written atomically."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, kind: str, key: str) -> Path:
        suffix = ".tflite" if kind == "tflite" else ".json"
        return self.root / kind / f"{key}{suffix}"

    def get_bytes(self, kind: str, key: str) -> bytes | None:
        try:
            return self.path(kind, key).read_bytes()
        except FileNotFoundError:
            return None

    def put_bytes(self, kind: str, key: str, data: bytes) -> None:
        write_atomic(self.path(kind, key), data)

    def count(self, kind: str) -> int:
        suffix = ".tflite" if kind == "tflite" else ".json"
        return len(list((self.root / kind).glob(f"[!.]*{suffix}")))
