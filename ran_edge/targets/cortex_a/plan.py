"""Which CPU targets a command measures and how: `host` always, `--remote` the one board
given, `profile --measure` every CPU target here; the rest are estimated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ran_edge.errors import UsageError
from ran_edge.targets.cortex_a.measure_runner import Progress
from ran_edge.targets.cortex_a.profile import MeasureOptions
from ran_edge.targets.loading import Target


@dataclass(frozen=True)
class CpuPlan:
    """How CPU targets are run: measure on which of them, and with what options."""

    measure: frozenset[str] = frozenset()  # target names measured (the rest are estimated)
    options: MeasureOptions = MeasureOptions()
    progress: Progress | None = None
    remote_target: str | None = None  # the one target measured on options.remote

    def with_progress(self, progress: Progress | None) -> CpuPlan:
        return replace(self, progress=progress)

    def for_target(self, target: Target) -> bool:
        return target.name in self.measure

    def options_for(self, target: Target) -> MeasureOptions:
        """The measure options of one target: only the remote target goes over SSH."""
        if target.name == self.remote_target:
            return self.options
        return replace(self.options, remote=None)

    def run_key(self, target: Target) -> str:
        """How a target is run, for its inputs fingerprint: empty for what is not a CPU."""
        return self.describe(target) if target.is_cpu else ""

    def describe(self, target: Target) -> str:
        if not self.for_target(target):
            return "estimated"
        remote = self.options_for(target).remote
        where = f"on {remote.label}" if remote is not None else "here"
        threads = min(self.options.threads or target.cpu.default_threads, target.cpu.cores)
        return f"measured {where}, {threads} thread(s), {self.options.runs} runs"


def plan_cpu(
    targets: Sequence[Target], *, measure_all: bool, options: MeasureOptions | None
) -> CpuPlan:
    """`host` is always measured; `--remote` measures the one other CPU target on the board;
    `--measure` (profile) measures every CPU target here. `options` None: the defaults."""
    options = options or MeasureOptions()
    cpu = [t for t in targets if t.is_cpu]
    others = [t for t in cpu if t.name != "host"]
    if options.remote is not None and len(others) > 1:
        raise UsageError(
            f"--remote measures one board, but {len(others)} CPU targets were given "
            f"({', '.join(t.name for t in others)}); give the board's target alone with it."
        )
    measured = {t.name for t in cpu if t.name == "host" or measure_all}
    remote_target = None
    if options.remote is not None:
        if not cpu:
            raise UsageError(
                "--remote measures a CPU target: add --target rpi4 (or the profile of the "
                "board at that address); Ethos-U targets are compiled, not run."
            )
        remote_target = (others or cpu)[0].name
        measured.add(remote_target)
    return CpuPlan(frozenset(measured), options, remote_target=remote_target)
