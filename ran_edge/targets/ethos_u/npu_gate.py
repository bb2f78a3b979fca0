"""The Ethos-U build gate: Vela's placement verdict, per PyTorch module, with a fix.

We pre-check only what Vela cannot judge for us (int8 input and output, float tensors the
quantizer left behind); placement itself is Vela's call, read from its compiled model.
A list of op names is not a verdict: Vela 5.2 runs int8 TRANSPOSE and int8->int8 QUANTIZE
on the NPU and folds shape arithmetic away, so judging by names rejects good models.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ran_edge.convert.attribution import UNATTRIBUTED, ModuleIndex, attribute_layers
from ran_edge.convert.rewrite_advice import suggest_fix
from ran_edge.convert.tflite_info import TfliteInfo, npu_gate_problems
from ran_edge.targets.ethos_u.vela import VelaResult

ROOT_FORWARD = "(the model's own forward)"
_ROOT_ONLY = re.compile(r"ChannelLastIOWrapper/[^/;]+_wrapped(;\d*)?$")


@dataclass(frozen=True)
class CpuOp:
    """One op Vela left on the CPU: where it came from, why, and what to write instead."""

    op_type: str
    name: str
    module: str  # PyTorch module path (or ROOT_FORWARD / UNATTRIBUTED)
    reason: str  # Vela's reason, verbatim
    fix: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class NpuVerdict:
    """Whether a build is fully int8 and NPU-mapped on one target, and if not, why."""

    target: str
    prechecks: tuple[str, ...]  # what Vela cannot judge: non-int8 I/O, float ops left
    cpu_ops: tuple[CpuOp, ...]  # Vela's verdict

    @property
    def passed(self) -> bool:
        return not self.prechecks and not self.cpu_ops

    def problems(self) -> list[str]:
        """One line per problem, as the report's gate lists them."""
        lines = list(self.prechecks)
        lines += [
            f"{op.op_type} in {op.module} runs on the CPU: {op.reason}" for op in self.cpu_ops
        ]
        return lines

    def message(self, model: str) -> str:
        """The error a failed build prints: each problem with its module and fix."""
        head = f"{model} is not fully int8 and NPU-mapped on {self.target}:"
        lines = [f"  - {p}" for p in self.prechecks]
        for op in self.cpu_ops:
            lines.append(f"  - {op.op_type} in module {op.module}: Vela: {op.reason}")
            lines.append(f"    fix: {op.fix}")
        tail = (
            "Or pass --allow-cpu-fallback to build and report anyway (the Cortex-M time of "
            "CPU ops is estimated); `ran-edge check` lists the same in seconds."
        )
        return "\n".join([head, *lines, tail])


def module_label(name: str, path: str, input_path: str = UNATTRIBUTED) -> str:
    """A module path a user can find.

    Ops of the root forward() have no submodule; the model's last op is named after the
    graph output (litert-torch), so it takes the module that produced its input.
    """
    if path != UNATTRIBUTED:
        return path
    if _ROOT_ONLY.search(name.split(";;")[0]):
        return ROOT_FORWARD
    return input_path


def judge(
    info: TfliteInfo, vela: VelaResult, modules: ModuleIndex | None, target: str
) -> NpuVerdict:
    """The gate's verdict from the int8 model's facts and Vela's compiled placement."""
    fallbacks = vela.cpu_fallbacks
    paths = attribute_layers([(f.name, 0) for f in fallbacks], modules)
    input_paths = attribute_layers([(f.input, 0) for f in fallbacks], modules)
    cpu_ops = tuple(
        CpuOp(
            f.op_type,
            f.name,
            module_label(f.name, path, input_path),
            f.reason,
            suggest_fix(f.op_type, f.reason),
        )
        for f, path, input_path in zip(fallbacks, paths, input_paths, strict=True)
    )
    return NpuVerdict(target, tuple(npu_gate_problems(info)), cpu_ops)
