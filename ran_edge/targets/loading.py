"""Target profiles: hardware described as TOML data, never as code.

A profile lives in `targets/<name>.toml` (shipped) or in any folder named by the
`RAN_EDGE_TARGET_PATH` environment variable (colon-separated), or is given directly as a
path to a `.toml` file. Users add hardware by adding a file; no code changes.

Two kinds: `ethos-u` (an NPU compiled for with Vela, plus the Cortex-M host that runs what
Vela leaves on the CPU) and `cortex-a` (a CPU running LiteRT + XNNPACK: Raspberry Pi
boards, generic Cortex-A cores, and `host`, the machine ran-edge runs on).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ran_edge.errors import UsageError
from ran_edge.resources import shipped_dir
from ran_edge.targets.backend import CORTEX_A, ETHOS_U, SUPPORTED_KINDS, backend_for, parse_spec
from ran_edge.targets.profile_fields import require

if TYPE_CHECKING:  # the kinds stay independent: each is imported only through the registry
    from ran_edge.targets.backend import TargetBackend
    from ran_edge.targets.cortex_a.spec import CortexASpec, CpuModel, CpuSpec
    from ran_edge.targets.ethos_u.cortex_m import HostCpu
    from ran_edge.targets.ethos_u.spec import EthosUSpec, NpuSpec, VelaOptions

TARGET_PATH_ENV = "RAN_EDGE_TARGET_PATH"


@dataclass(frozen=True)
class MemoryBudget:
    """What the board offers the model (bytes); None means not declared, so not checked."""

    sram_bytes: int | None = None
    flash_bytes: int | None = None
    dram_bytes: int | None = None
    source: str = ""


@dataclass(frozen=True)
class Target:
    """One target profile as loaded from its TOML file.

    `spec` holds what the kind's backend parsed (`EthosUSpec` or `CortexASpec`); `sha256`
    hashes the profile and every file it pulls in (a user's Vela ini, Cortex-M cycle costs),
    so a report can say exactly which profile made it.
    """

    name: str
    kind: str
    description: str
    source: Path
    sha256: str
    spec: EthosUSpec | CortexASpec
    aliases: tuple[str, ...] = field(default=())
    memory: MemoryBudget = field(default_factory=MemoryBudget)

    @property
    def backend(self) -> TargetBackend:
        return backend_for(self.kind)

    @property
    def is_npu(self) -> bool:
        return self.kind == ETHOS_U

    @property
    def is_cpu(self) -> bool:
        return self.kind == CORTEX_A

    # Kind-specific views: each raises on the other kind instead of handing back None.
    @property
    def npu(self) -> NpuSpec:
        return self._ethos_u().npu

    @property
    def vela(self) -> VelaOptions:
        return self._ethos_u().vela

    @property
    def host_cpu(self) -> HostCpu:
        return self._ethos_u().host_cpu

    @property
    def cpu(self) -> CpuSpec:
        return self._cortex_a().cpu

    @property
    def cpu_model(self) -> CpuModel:
        return self._cortex_a().cpu_model

    def _ethos_u(self) -> EthosUSpec:
        if self.kind != ETHOS_U:
            raise TypeError(f"target {self.name} is {self.kind}, not {ETHOS_U}")
        return self.spec

    def _cortex_a(self) -> CortexASpec:
        if self.kind != CORTEX_A:
            raise TypeError(f"target {self.name} is {self.kind}, not {CORTEX_A}")
        return self.spec


def _search_dirs() -> list[Path]:
    user = [Path(p) for p in os.environ.get(TARGET_PATH_ENV, "").split(os.pathsep) if p]
    return [*user, shipped_dir("targets")]


def _read_toml(path: Path) -> dict:
    where = str(path)
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read target profile {where}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"target profile {where} is not valid TOML: {exc}") from None


def _profile_hash(path: Path, spec: EthosUSpec | CortexASpec) -> str:
    h = hashlib.sha256(path.read_bytes())
    for extra in spec.dependency_files():
        h.update(Path(extra).read_bytes())
    return h.hexdigest()


def load_target_file(path: Path) -> Target:
    """Parse one target TOML, with a clear error for every malformed field."""
    where = str(path)
    data = _read_toml(path)
    name = require(data, "name", where, str)
    kind = require(data, "kind", where, str)
    if kind not in SUPPORTED_KINDS:
        raise UsageError(
            f"target profile {where}: kind {kind!r} is not supported by this version; "
            f"supported kinds: {', '.join(SUPPORTED_KINDS)}."
        )
    spec = parse_spec(kind, data, where, path)
    return Target(
        name=name,
        kind=kind,
        description=str(data.get("description", "")),
        source=path,
        sha256=_profile_hash(path, spec),
        spec=spec,
        aliases=tuple(data.get("aliases", ())),
        memory=_memory_budget(data, where),
    )


def _memory_budget(data: dict, where: str) -> MemoryBudget:
    memory = data.get("memory", {})
    if not isinstance(memory, dict):
        raise UsageError(
            f"target profile {where}: [memory] must be a table (see targets/README.md)."
        )
    budgets = {}
    for key in ("sram_bytes", "flash_bytes", "dram_bytes"):
        value = memory.get(key)
        if value is not None and (not isinstance(value, int) or value <= 0):
            raise UsageError(
                f"target profile {where}: memory.{key} must be a positive int (bytes)."
            )
        budgets[key] = value
    return MemoryBudget(**budgets, source=str(memory.get("source", "")))


def list_targets() -> list[Target]:
    """Every profile found, user folders first; a user file shadows a shipped one of the same name."""
    found: dict[str, Target] = {}
    for folder in _search_dirs():
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            target = load_target_file(path)
            found.setdefault(target.name, target)
    return sorted(found.values(), key=lambda t: t.name)


def resolve_target(name_or_path: str) -> Target:
    """Find a target by name, alias (`ethos-u55` -> `ethos-u55-128`) or TOML path."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(f"target profile file {path} does not exist.")
        return load_target_file(path)
    targets = list_targets()
    for target in targets:
        if name_or_path == target.name or name_or_path in target.aliases:
            return target
    names = [t.name for t in targets] + [a for t in targets for a in t.aliases]
    close = difflib.get_close_matches(name_or_path, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UsageError(
        f"unknown target {name_or_path!r}.{hint} Run `ran-edge targets` to list them all, "
        f"or add a TOML file (see targets/README.md)."
    )


def target_identity(target: Target) -> dict:
    """What every report says about its target whatever the kind: name, kind, and the exact
    profile file (path and hash) so `firmware` and `regress` can reload the same target."""
    return {
        "name": target.name,
        "kind": target.kind,
        "description": target.description,
        "profile_path": str(target.source.resolve()),
        "profile_sha256": target.sha256,
    }


def target_from_report(name: str, path: str | None, sha256: str | None) -> Target:
    """The target a report was made for: its recorded profile file when it is still there and
    unchanged, else the profile of that name (a build moved to another machine, or a report
    older than schema 1.4)."""
    if path and Path(path).is_file():
        target = load_target_file(Path(path))
        if sha256 is None or target.sha256 == sha256:
            return target
        raise UsageError(
            f"target profile {path} changed since this build (hash differs); rebuild, or "
            "restore the profile it was built with."
        )
    return resolve_target(name)
