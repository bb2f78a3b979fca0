"""The Ethos-U backend: compile with Vela, take Vela's placement as the gate's verdict, cost
what stays on the Cortex-M, and write the Ethos-U sections of the report."""

from __future__ import annotations

from ran_edge.errors import StageError
from ran_edge.targets.backend import ETHOS_U, ProfileJob, ProfileOutcome
from ran_edge.targets.ethos_u import vela_worker
from ran_edge.targets.ethos_u.npu_gate import judge
from ran_edge.targets.ethos_u.profile import EthosUProfile, profile_ethos_u
from ran_edge.targets.ethos_u.report import ethos_u_sections
from ran_edge.targets.ethos_u.system_cost import system_cost
from ran_edge.targets.ethos_u.vela import VelaCrash
from ran_edge.targets.ethos_u.vela_crash import crash_report
from ran_edge.targets.loading import Target


class EthosUBackend:
    kind = ETHOS_U

    def describe(self, target: Target, cpu=None) -> str:
        return f"Vela for {target.name}"

    def prepare(self, target: Target) -> None:
        vela_worker.prestart()  # Vela imports while the model converts

    def profile(self, job: ProfileJob) -> ProfileOutcome:
        profile = self._compile(job)
        verdict = judge(job.info, profile.vela, job.modules, job.target.name)
        if not verdict.passed and not job.allow_cpu_fallback:
            raise StageError(verdict.message(job.model_name))
        system = system_cost(profile, job.int8_tflite)
        vela = profile.vela
        artifacts = {
            "vela_tflite": vela.optimised_model.name,
            "vela_summary_csv": vela.summary_csv.name,
            "vela_per_layer_csv": vela.per_layer_csv.name,
            "vela_log": vela.log.name,
        }
        if vela.debug_db is not None:
            artifacts["vela_debug_db"] = vela.debug_db.name
        sections = ethos_u_sections(profile, verdict, system, job.module_depth)
        return ProfileOutcome(profile, sections, artifacts, verdict.problems())

    @staticmethod
    def _compile(job: ProfileJob) -> EthosUProfile:
        """Vela for one target; on a Vela crash keep the model in `failed/` so the repro works."""
        try:
            return profile_ethos_u(job.int8_path, job.target, job.folder, job.modules)
        except VelaCrash as crash:
            raise StageError(crash_report(crash, job.int8_path, job.target, job.final)) from None


BACKEND = EthosUBackend()
