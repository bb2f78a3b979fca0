"""What an `ethos-u` target profile says: the NPU configuration, how Vela is run, and the
Cortex-M host that runs whatever Vela leaves on the CPU.

The NPU clock has one source. Vela times every op at the `core_clock` of the profile's system
config in its ini file, so that is the clock ran-edge uses; a `npu.clock_hz` in the TOML that
disagrees with it is refused rather than silently reported next to Vela's figures.
"""

from __future__ import annotations

import configparser
import difflib
from dataclasses import dataclass
from pathlib import Path

from ran_edge.errors import UsageError
from ran_edge.targets.ethos_u.cortex_m import HostCpu, parse_host_cpu
from ran_edge.targets.ethos_u.vela import vela_accelerators
from ran_edge.targets.profile_fields import require

KIND = "ethos-u"
VELA_OPTIMISE = ("Performance", "Size")


@dataclass(frozen=True)
class VelaOptions:
    """How Vela is run for a target: the ini file, system config, memory mode and flags."""

    config: str
    system_config: str
    memory_mode: str
    optimise: str = "Performance"
    arena_cache_size: int | None = None  # bytes
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

    def ini_path(self) -> Path:
        """The ini file itself: Vela's bundled `Arm/...` files resolved to where Vela keeps them."""
        if self.config.startswith("Arm/"):
            import ethosu.vela

            return Path(ethosu.vela.__file__).parent.parent / "config_files" / self.config
        return Path(self.config)

    def user_files(self) -> tuple[Path, ...]:
        """Files outside ran-edge and Vela that this target's results depend on."""
        return () if self.config.startswith("Arm/") else (Path(self.config),)


@dataclass(frozen=True)
class NpuSpec:
    """The Ethos-U configuration: Vela accelerator name, MACs per cycle and clock (Hz)."""

    accelerator: str
    macs_per_cycle: int
    clock_hz: float


@dataclass(frozen=True)
class EthosUSpec:
    """Everything kind-specific in an `ethos-u` profile."""

    npu: NpuSpec
    vela: VelaOptions
    host_cpu: HostCpu

    def dependency_files(self) -> tuple[Path, ...]:
        return (*self.vela.user_files(), Path(self.host_cpu.source))

    def table_cells(self) -> tuple[str, str, str, str]:
        """compute, clock MHz, config, memory columns of `ran-edge targets`."""
        return (
            f"{self.npu.macs_per_cycle} MACs/cycle",
            f"{self.npu.clock_hz / 1e6:.0f}",
            self.vela.system_config,
            self.vela.memory_mode,
        )

    def summary_row(self) -> dict:
        """The kind's fields of one `targets --json` row."""
        return {
            "accelerator": self.npu.accelerator,
            "macs_per_cycle": self.npu.macs_per_cycle,
            "clock_hz": self.npu.clock_hz,
            "system_config": self.vela.system_config,
            "memory_mode": self.vela.memory_mode,
            "optimise": self.vela.optimise,
            "arena_cache_size": self.vela.arena_cache_size,
            "host_cpu": self.host_cpu.core,
            "host_cpu_clock_hz": self.host_cpu.clock_hz,
        }


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


def vela_core_clock(vela: VelaOptions, where: str) -> float:
    """`core_clock` of the system config, read the way Vela reads it (ini sections may inherit)."""
    parser = configparser.ConfigParser()
    ini = vela.ini_path()
    try:
        parser.read_string(ini.read_text())
    except (OSError, configparser.Error) as exc:
        raise UsageError(f"target profile {where}: cannot read Vela config {ini}: {exc}") from None
    section = f"System_Config.{vela.system_config}"
    seen = set()
    while section in parser and section not in seen:
        seen.add(section)
        if "core_clock" in parser[section]:
            return float(parser[section]["core_clock"])
        section = parser[section].get("inherit", "")
    configs = [s.split(".", 1)[1] for s in parser.sections() if s.startswith("System_Config.")]
    close = difflib.get_close_matches(vela.system_config, configs, n=1)
    hint = f" Did you mean {close[0]}?" if close else ""
    raise UsageError(
        f"target profile {where}: Vela config {ini} has no system config "
        f"{vela.system_config!r} with a core_clock.{hint} Valid: {', '.join(configs)}."
    )


def parse_ethos_u(data: dict, where: str, path: Path) -> EthosUSpec:
    """The [npu], [vela] and [host_cpu] tables, with a clear error for every malformed field."""
    npu = require(data, "npu", where, dict)
    vela = require(data, "vela", where, dict)
    optimise = vela.get("optimise", "Performance")
    if optimise not in VELA_OPTIMISE:
        raise UsageError(f"target profile {where}: vela.optimise must be one of {VELA_OPTIMISE}.")
    accelerator = require(npu, "accelerator", where, str)
    known = vela_accelerators()
    if accelerator not in known:
        close = difflib.get_close_matches(accelerator, known, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise UsageError(
            f"target profile {where}: npu.accelerator {accelerator!r} is not an Ethos-U "
            f"configuration Vela knows.{hint} Valid: {', '.join(known)}."
        )
    arena = vela.get("arena_cache_size")
    if arena is not None and (not isinstance(arena, int) or arena <= 0):
        raise UsageError(
            f"target profile {where}: vela.arena_cache_size must be a positive int (bytes)."
        )
    options = VelaOptions(
        config=_resolve_vela_config(require(vela, "config", where, str), path),
        system_config=require(vela, "system_config", where, str),
        memory_mode=require(vela, "memory_mode", where, str),
        optimise=optimise,
        arena_cache_size=arena,
        extra_args=tuple(str(a) for a in vela.get("extra_args", ())),
    )
    clock = vela_core_clock(options, where)
    declared = npu.get("clock_hz")
    if declared is not None:
        if not isinstance(declared, (int, float)) or isinstance(declared, bool):
            raise UsageError(f"target profile {where}: npu.clock_hz must be a number (Hz).")
        if abs(float(declared) - clock) > 0.5:
            raise UsageError(
                f"target profile {where}: npu.clock_hz = {declared:g} but Vela times this "
                f"target at core_clock = {clock:g} Hz (system config {options.system_config} "
                f"in {options.config}). Make them agree: set npu.clock_hz = {clock:g}, or "
                "remove it (the Vela config is the source), or pick a system config with "
                "your clock."
            )
    npu_spec = NpuSpec(
        accelerator=accelerator,
        macs_per_cycle=require(npu, "macs_per_cycle", where, int),
        clock_hz=clock,
    )
    return EthosUSpec(
        npu=npu_spec,
        vela=options,
        host_cpu=parse_host_cpu(data, where, path, clock),
    )
