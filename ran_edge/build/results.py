"""What a build or profile hands back, and the steps both share before and after the targets:
resolving the target names, and the HTML page over the model's folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ran_edge.build.target import TargetBuild
from ran_edge.errors import UsageError
from ran_edge.progress import BuildProgress
from ran_edge.targets.loading import Target, resolve_target


@dataclass(frozen=True)
class BuildResult:
    """Every target's build, in the order the targets were given, and the HTML page if any."""

    builds: tuple[TargetBuild, ...]
    html: Path | None = None
    firmware: tuple = ()  # FirmwareResult per Ethos-U target, with --firmware


def resolve_targets(names: Sequence[str]) -> list[Target]:
    """All targets resolved before any work starts, so a typo costs no conversion time."""
    if not names:
        raise UsageError("no target given: pass --target NAME (see `ran-edge targets`).")
    targets = [resolve_target(n) for n in names]
    seen: set[str] = set()
    for t in targets:
        if t.name in seen:
            raise UsageError(f"target {t.name} given twice; give each target once.")
        seen.add(t.name)
    return targets


def write_html(builds: list[TargetBuild], progress: BuildProgress) -> Path:
    from ran_edge.report.html import write_report_for

    with progress.stage("HTML report"):
        written = write_report_for(builds[0].out_dir.parent)
    progress.note(f"report: {written.path}")
    return written.path
