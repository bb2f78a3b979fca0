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
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ran_edge.errors import UsageError
from ran_edge.hw.cortex_m import HostCpu, parse_host_cpu
from ran_edge.hw.cpu_spec import CpuModel, CpuSpec, parse_cpu, parse_cpu_model
from ran_edge.hw.profile_fields import require
from ran_edge.hw.vela import vela_accelerators
from ran_edge.resources import shipped_dir

TARGET_PATH_ENV = "RAN_EDGE_TARGET_PATH"
ETHOS_U = "ethos-u"
CORTEX_A = "cortex-a"
SUPPORTED_KINDS = (ETHOS_U, CORTEX_A)
VELA_OPTIMISE = ("Performance", "Size")


@dataclass(frozen=True)
class VelaOptions:
    """How Vela is run for a target: the ini file, system config, memory mode and flags."""

    config: str
    system_config: str
    memory_mode: str
    optimise: str = "Performance"
    arena_cache_size: int | None = None
    extra_args: tuple[str, ...] = ()

    def cli_args(self) -> list[str]:
        """Vela command-line flags for these options (accelerator excluded)."""
        args = [
            "--config",
            self.config,
            "--system-config",
            self.system_config,
            "--memory-mode",
            self.memory_mode,
            "--optimise",
            self.optimise,
        ]
        if self.arena_cache_size is not None:
            args += ["--arena-cache-size", str(self.arena_cache_size)]
        return args + list(self.extra_args)


@dataclass(frozen=True)
class NpuSpec:
    """The Ethos-U configuration: Vela accelerator name, MACs per cycle and clock."""

    accelerator: str
    macs_per_cycle: int
    clock_hz: float


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

    `ethos-u` profiles carry `npu`, `vela` and `host_cpu`; `cortex-a` profiles carry `cpu`
    and `cpu_model`. The others are None.
    """

    name: str
    kind: str
    description: str
    source: Path
    npu: NpuSpec | None = None
    vela: VelaOptions | None = None
    aliases: tuple[str, ...] = field(default=())
    memory: MemoryBudget = field(default_factory=MemoryBudget)
    host_cpu: HostCpu | None = None
    cpu: CpuSpec | None = None
    cpu_model: CpuModel | None = None

    @property
    def vela_accelerator(self) -> str:
        return self.npu.accelerator

    @property
    def is_npu(self) -> bool:
        return self.kind == ETHOS_U

    @property
    def is_cpu(self) -> bool:
        return self.kind == CORTEX_A


def _search_dirs() -> list[Path]:
    user = [Path(p) for p in os.environ.get(TARGET_PATH_ENV, "").split(os.pathsep) if p]
    return [*user, shipped_dir("targets")]


_require = require


def _resolve_vela_config(config: str, toml_path: Path) -> str:
    """A bundled Vela config (`Arm/vela.ini`) stays as is; anything else is a file path."""
    if config.startswith("Arm/"):
        return config
    path = Path(config)
    if not path.is_absolute():
        path = toml_path.parent / path
    if not path.is_file():
        raise UsageError(
            f"target profile {toml_path}: Vela config file {path} does not exist; "
            "fix `vela.config` (a path relative to the TOML, or Arm/vela.ini)."
        )
    return str(path.resolve())


def _read_toml(path: Path) -> dict:
    where = str(path)
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read target profile {where}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"target profile {where} is not valid TOML: {exc}") from None


def load_target_file(path: Path) -> Target:
    """Parse one target TOML, with a clear error for every malformed field."""
    where = str(path)
    data = _read_toml(path)
    name = _require(data, "name", where, str)
    kind = _require(data, "kind", where, str)
    if kind not in SUPPORTED_KINDS:
        raise UsageError(
            f"target profile {where}: kind {kind!r} is not supported by this version; "
            f"supported kinds: {', '.join(SUPPORTED_KINDS)}."
        )
    common = {
        "name": name,
        "kind": kind,
        "description": str(data.get("description", "")),
        "source": path,
        "aliases": tuple(data.get("aliases", ())),
        "memory": _memory_budget(data, where),
    }
    if kind == CORTEX_A:
        return Target(**common, cpu=parse_cpu(data, where), cpu_model=parse_cpu_model(data, where))
    return _load_ethos_u(data, where, path, common)


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


def _load_ethos_u(data: dict, where: str, path: Path, common: dict) -> Target:
    npu = _require(data, "npu", where, dict)
    vela = _require(data, "vela", where, dict)
    optimise = vela.get("optimise", "Performance")
    if optimise not in VELA_OPTIMISE:
        raise UsageError(f"target profile {where}: vela.optimise must be one of {VELA_OPTIMISE}.")
    accelerator = _require(npu, "accelerator", where, str)
    if accelerator not in vela_accelerators():
        close = difflib.get_close_matches(accelerator, vela_accelerators(), n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise UsageError(
            f"target profile {where}: npu.accelerator {accelerator!r} is not an Ethos-U "
            f"configuration Vela knows.{hint} Valid: {', '.join(vela_accelerators())}."
        )
    arena = vela.get("arena_cache_size")
    if arena is not None and (not isinstance(arena, int) or arena <= 0):
        raise UsageError(f"target profile {where}: vela.arena_cache_size must be a positive int.")
    npu_spec = NpuSpec(
        accelerator=accelerator,
        macs_per_cycle=_require(npu, "macs_per_cycle", where, int),
        clock_hz=float(_require(npu, "clock_hz", where, (int, float))),
    )
    return Target(
        **common,
        npu=npu_spec,
        vela=VelaOptions(
            config=_resolve_vela_config(_require(vela, "config", where, str), path),
            system_config=_require(vela, "system_config", where, str),
            memory_mode=_require(vela, "memory_mode", where, str),
            optimise=optimise,
            arena_cache_size=arena,
            extra_args=tuple(str(a) for a in vela.get("extra_args", ())),
        ),
        host_cpu=parse_host_cpu(data, where, path, npu_spec.clock_hz),
    )


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
