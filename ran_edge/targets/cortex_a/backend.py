"""The Cortex-A backend: time the int8 model in LiteRT + XNNPACK (here or on a board over SSH)
or estimate it per op, and write the Cortex-A sections of the report."""

from __future__ import annotations

from ran_edge.targets.backend import CORTEX_A, ProfileJob, ProfileOutcome
from ran_edge.targets.cortex_a.plan import CpuPlan
from ran_edge.targets.cortex_a.profile import profile_cpu
from ran_edge.targets.cortex_a.report import cortex_a_sections, cpu_gate_problems
from ran_edge.targets.loading import Target


class CortexABackend:
    kind = CORTEX_A

    def describe(self, target: Target, cpu: CpuPlan | None = None) -> str:
        return f"{target.name}: {(cpu or CpuPlan()).describe(target)}"

    def prepare(self, target: Target) -> None:
        pass  # nothing to start ahead: measuring waits for the checks anyway

    def profile(self, job: ProfileJob) -> ProfileOutcome:
        plan: CpuPlan = job.cpu or CpuPlan()
        profile = profile_cpu(
            job.int8_path,
            job.int8_tflite,
            job.target,
            measure=plan.for_target(job.target),
            options=plan.options_for(job.target),
            modules=job.modules,
            progress=plan.progress,
        )
        sections = cortex_a_sections(profile, job.module_depth)
        return ProfileOutcome(profile, sections, {}, cpu_gate_problems(job.info))


BACKEND = CortexABackend()
