"""One small protocol every target kind implements, and the registry that finds it by kind.

A kind parses its own TOML tables (`parse_spec`, into a spec that also gives its listing row);
its backend starts what is slow to start (`prepare`), says what it does (`describe`) and
profiles an int8 model (`profile`): compile with Vela, or measure or estimate on a CPU, and
hand back the report sections that differ by kind, the target's facts among them. The build pipeline
has one path for every kind; adding a kind is a sub-package with a `backend.py`, not a branch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ran_edge.convert.attribution import ModuleIndex
    from ran_edge.convert.tflite_info import TfliteInfo
    from ran_edge.targets.loading import Target

ETHOS_U = "ethos-u"
CORTEX_A = "cortex-a"
SUPPORTED_KINDS = (ETHOS_U, CORTEX_A)
_SPEC_PARSERS = {
    ETHOS_U: ("ran_edge.targets.ethos_u.spec", "parse_ethos_u"),
    CORTEX_A: ("ran_edge.targets.cortex_a.spec", "parse_cortex_a"),
}
_BACKENDS = {
    ETHOS_U: "ran_edge.targets.ethos_u.backend",
    CORTEX_A: "ran_edge.targets.cortex_a.backend",
}


@dataclass(frozen=True)
class ProfileJob:
    """One int8 model to profile on one target, in a staging folder that becomes `final`."""

    target: Target
    model_name: str
    int8_tflite: bytes
    int8_path: Path  # already written in `folder`
    info: TfliteInfo
    modules: ModuleIndex | None
    folder: Path
    final: Path
    allow_cpu_fallback: bool = True
    cpu: Any = None  # the cortex-a backend's run plan (CpuPlan); ignored by other kinds
    module_depth: int = 2


@dataclass(frozen=True)
class ProfileOutcome:
    """What a backend found: its typed profile, the report sections that differ by kind
    (target, metrics, cpu_fallbacks, layers, modules, vela_command, and any of its own),
    and the files it wrote into the job's folder (artifact role -> file name)."""

    profile: Any
    sections: dict
    artifacts: dict[str, str] = field(default_factory=dict)
    gate_problems: list[str] = field(default_factory=list)

    def relocated(self, old: Path, new: Path) -> ProfileOutcome:
        relocate = getattr(self.profile, "relocated", None)
        if relocate is None:
            return self
        return ProfileOutcome(relocate(old, new), self.sections, self.artifacts, self.gate_problems)


class TargetBackend(Protocol):
    kind: str

    def profile(self, job: ProfileJob) -> ProfileOutcome:
        """Cost the job's model on its target; raise StageError when the target refuses it."""

    def describe(self, target: Target, cpu: Any = None) -> str:
        """A few words for progress output: what profiling this target does."""

    def prepare(self, target: Target) -> None:
        """Start what is slow to start (a compiler process), before the model is ready."""


def parse_spec(kind: str, data: dict, where: str, path: Path):
    module, name = _SPEC_PARSERS[kind]
    return getattr(importlib.import_module(module), name)(data, where, path)


def backend_for(kind: str) -> TargetBackend:
    """The backend of `kind`, imported on first use (listing targets imports no backend)."""
    return importlib.import_module(_BACKENDS[kind]).BACKEND
