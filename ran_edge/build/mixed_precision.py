"""Mixed precision: int16 activations (a16w8) on the layers that need them, int8 elsewhere.

Two ways in. Explicit: the user names PyTorch modules (`blocks.3`, `features.2.conv`); their
ops, found through the same op-name attribution as the per-module cycle table, are quantized
with int16 activations. Automatic: the least faithful layers (by per-layer sensitivity) are
raised to int16 one at a time, re-quantizing and re-measuring, until a logit SQNR or top-1
target is met or the step budget runs out; every choice is compiled with Vela, so its NPU
cycle cost is measured and a choice that leaves the NPU is dropped, not shipped.

Why int16 costs cycles: ai-edge-quantizer puts a QUANTIZE (int8<->int16) on each edge between
an int8 and an int16 op, and int16 tensors move twice the bytes. Why it may gain little:
only activations widen, weights stay int8 (the only weight format Ethos-U runs), and an
isolated int16 op's output is rounded back to int8 for its int8 consumer.
"""

from __future__ import annotations

import difflib
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ran_edge.convert.attribution import ModuleIndex, ancestors, attribute_layers
from ran_edge.convert.fidelity import Fidelity, measure_fidelity
from ran_edge.convert.sensitivity import SQNR_CAP_DB, Sensitivity, measure_sensitivity
from ran_edge.errors import RanEdgeError, UsageError
from ran_edge.targets.loading import Target, resolve_target

Progress = Callable[[str], None]
OUTPUT_REASON = "it produces the model's output, which stays int8 (int8 in and out)"


@dataclass(frozen=True)
class FloatOp:
    """An op of the float model, named by its output tensor, with the module it came from."""

    index: int
    op_type: str
    tensor: str  # the name ai-edge-quantizer's recipe matches, and the int8 model keeps
    module: str
    is_output: bool  # its output is a model output


def float_ops(float_tflite: bytes, modules: ModuleIndex | None = None) -> tuple[FloatOp, ...]:
    """Every op of the float model with its module path, attributed as Vela's rows are."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from ran_edge.convert.tflite_ops import read_op_costs

    costs = read_op_costs(float_tflite)
    interpreter = Interpreter(
        model_content=float_tflite,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    outputs = {str(d["name"]) for d in interpreter.get_output_details()}
    paths = attribute_layers([(c.name, c.macs) for c in costs], modules)
    return tuple(
        FloatOp(c.index, c.op, c.name, path, c.name in outputs)
        for c, path in zip(costs, paths, strict=True)
    )


def int16_refusal(op: FloatOp) -> str | None:
    """Why `op` cannot take int16 activations in an Ethos-U build (None: it can)."""
    from ran_edge.targets.ethos_u.vela_int16 import vela_int16_refusal

    reason = vela_int16_refusal(op.op_type)
    if reason is not None:
        return f"Vela refuses int16 for {op.op_type}: {reason}"
    if op.is_output:
        return OUTPUT_REASON
    return None


def _in_module(op: FloatOp, path: str) -> bool:
    return op.module == path or op.module.startswith(path + ".")


def _known_modules(ops: Sequence[FloatOp]) -> list[str]:
    return sorted({p for op in ops for p in ancestors(op.module)})


def int16_tensors_for_modules(
    float_tflite: bytes, module_paths: Sequence[str], modules: ModuleIndex | None = None
) -> tuple[str, ...]:
    """The float model's op output tensors for `--int16-activations MODULE...`, in op order.

    Refuses (UsageError, one line with the fix) a path that no op comes from, and a module
    holding an op that cannot be int16 on Ethos-U, naming the op and why.
    """
    ops = float_ops(float_tflite, modules)
    chosen: dict[int, FloatOp] = {}
    for path in module_paths:
        matched = [op for op in ops if _in_module(op, path)]
        if not matched:
            near = difflib.get_close_matches(path, _known_modules(ops), n=3)
            hint = f"did you mean {', '.join(near)}?" if near else "see the per-module table"
            raise UsageError(
                f"--int16-activations {path}: no op of the converted model comes from module "
                f"{path!r}; give a PyTorch module path as the report's module table shows "
                f"({hint})."
            )
        for op in matched:
            reason = int16_refusal(op)
            if reason is not None:
                raise UsageError(
                    f"--int16-activations {path}: its {op.op_type} op ({op.module}) cannot take "
                    f"int16 activations: {reason}; name only modules that leave it out (it stays int8)."
                )
            chosen[op.index] = op
    return tuple(chosen[i].tensor for i in sorted(chosen))


def modules_of(ops: Sequence[FloatOp], tensors: Collection[str]) -> tuple[str, ...]:
    """The module paths of the ops that output `tensors`, in op order, without repeats."""
    wanted = set(tensors)
    return tuple(dict.fromkeys(op.module for op in ops if op.tensor in wanted))


@dataclass(frozen=True)
class AutoGoal:
    """When automatic mixed precision stops, and what a choice may cost.

    Stops at the first state reaching `sqnr_db` or `top1_agreement` (either; None: not a
    goal), or after `max_steps` choices. A choice costing more than `max_extra_cycles_pct`
    over the all-int8 model (None: no limit) is dropped. Each step tries the
    `candidates_per_step` least faithful layers and keeps the one that helps the logits most.
    """

    sqnr_db: float | None = 38.0
    top1_agreement: float | None = None
    max_steps: int = 8
    max_extra_cycles_pct: float | None = None
    candidates_per_step: int = 3
    # A choice must lift the logit SQNR by this much to be worth its cycles: on small models
    # a lone int16 layer often buys hundredths of a dB for several % more cycles.
    min_gain_db: float = 0.25
    # Stop before searching when raising every int16-capable op cannot reach `sqnr_db` (and
    # no top-1 goal is set): the error left is in the int8 weights and int8 I/O.
    give_up_when_unreachable: bool = True

    def reached(self, fidelity: Fidelity) -> bool:
        sqnr = self.sqnr_db is not None and fidelity.sqnr_db >= self.sqnr_db
        top1 = (
            self.top1_agreement is not None
            and fidelity.top1_agreement is not None
            and fidelity.top1_agreement >= self.top1_agreement
        )
        return sqnr or top1


@dataclass(frozen=True)
class Step:
    """One choice: what was raised, what it measured, and whether it was kept."""

    step: int  # 0: the all-int8 model
    modules: tuple[str, ...]  # modules of the ops raised by this choice
    tensors: tuple[str, ...]  # op output tensors raised by this choice
    op_types: tuple[str, ...]
    kept: bool
    reason: str
    sqnr_db: float | None  # logit SQNR vs float (None: not measured, the choice was refused)
    top1_agreement: float | None
    layer_sqnr_before_db: float | None  # the raised layer's own SQNR, int8 then int16
    layer_sqnr_after_db: float | None
    cycles: int | None  # Vela's cycles_total (what inference time follows)
    cycles_npu: int | None
    extra_cycles_pct: float | None  # vs the all-int8 model
    cpu_ops: int | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Excluded:
    """An op never tried, and why."""

    tensor: str
    module: str
    op_type: str
    reason: str


@dataclass(frozen=True)
class MixedPrecision:
    """The outcome of automatic mixed precision: every step and the model chosen."""

    target: str
    goal: AutoGoal
    baseline: Step
    steps: tuple[Step, ...]
    int16_tensors: tuple[str, ...]  # the final choice (empty: int8 stayed best)
    int16_modules: tuple[str, ...]
    model: bytes = field(repr=False)
    fidelity: Fidelity
    cycles: int
    extra_cycles_pct: float
    reached: bool
    stop_reason: str
    all_int16_sqnr_db: float | None  # every int16-capable op raised (no Vela): a16w8's reach
    excluded: tuple[Excluded, ...]

    def as_dict(self) -> dict:
        """JSON-safe (finite floats, no bytes): the report's `mixed_precision` section."""
        return {
            "target": self.target,
            "goal": asdict(self.goal),
            "reached": self.reached,
            "stop_reason": self.stop_reason,
            "int16_modules": list(self.int16_modules),
            "int16_tensors": list(self.int16_tensors),
            "sqnr_db": _finite(self.fidelity.sqnr_db),
            "top1_agreement": self.fidelity.top1_agreement,
            "cycles": self.cycles,
            "extra_cycles_pct": self.extra_cycles_pct,
            "all_int16_sqnr_db": self.all_int16_sqnr_db,
            "baseline": self.baseline.as_dict(),
            "steps": [s.as_dict() for s in self.steps],
            "excluded": [asdict(e) for e in self.excluded],
        }


def _finite(db: float | None) -> float | None:
    """A JSON-safe dB figure: clamped like per-layer SQNRs, rounded to 0.001 dB."""
    if db is None:
        return None
    return round(float(max(-SQNR_CAP_DB, min(SQNR_CAP_DB, db))), 3)


def _pct(cycles: int, base: int) -> float:
    return round(100.0 * (cycles - base) / base, 2) if base else 0.0


@dataclass(frozen=True)
class _Cost:
    cycles: int
    cycles_npu: int
    cpu_ops: int
    fallbacks: str


def _vela_cost(model: bytes, target: Target, modules: ModuleIndex | None) -> _Cost:
    """Compile `model` with Vela into a throwaway folder; its cycles and CPU placement."""
    from ran_edge.targets.ethos_u.profile import profile_ethos_u

    with tempfile.TemporaryDirectory(prefix="ran-edge-mixed-") as tmp:
        path = Path(tmp) / "mixed.tflite"
        path.write_bytes(model)
        vela = profile_ethos_u(path, target, Path(tmp) / "vela", modules).vela
    fallbacks = "; ".join(f"{f.op_type}: {f.reason}" for f in vela.cpu_fallbacks)
    return _Cost(vela.summary.cycles_total, vela.summary.cycles_npu, vela.cpu_ops, fallbacks)


@dataclass(frozen=True)
class _State:
    """A kept int16 choice: its quantized model and what it measured."""

    tensors: tuple[str, ...]
    model: bytes
    fidelity: Fidelity
    cost: _Cost


@dataclass(frozen=True)
class _Trial:
    op: FloatOp
    tensors: tuple[str, ...]
    model: bytes
    fidelity: Fidelity


@dataclass
class _Search:
    """What automatic mixed precision works on, and the tools it measures with."""

    float_tflite: bytes
    calibration: np.ndarray
    holdout: np.ndarray
    target: Target
    modules: ModuleIndex | None
    method: str
    ops: tuple[FloatOp, ...]
    progress: Progress

    def quantize(self, tensors: Collection[str]) -> bytes:
        from ran_edge.convert.quantize import quantize_int8

        return quantize_int8(
            self.float_tflite, self.calibration, method=self.method, int16_tensors=tensors
        )

    def fidelity(self, model: bytes) -> Fidelity:
        return measure_fidelity(self.float_tflite, model, self.holdout)

    def sensitivity(self, model: bytes) -> Sensitivity:
        return measure_sensitivity(self.float_tflite, model, self.holdout)

    def state(self, tensors: tuple[str, ...], model: bytes, fidelity: Fidelity) -> _State:
        return _State(tensors, model, fidelity, _vela_cost(model, self.target, self.modules))

    def trial(self, current: Collection[str], op: FloatOp) -> _Trial | str:
        """`current` plus `op`, quantized and measured on the logits; or why it cannot be."""
        wanted = {*current, op.tensor}
        tensors = tuple(o.tensor for o in self.ops if o.tensor in wanted)
        try:
            # quantize_int8 verifies the int16 tensors and that input and output stay int8
            model = self.quantize(tensors)
        except RanEdgeError as exc:  # the quantizer refused or skipped this op's int16
            return str(exc).splitlines()[0]
        return _Trial(op, tensors, model, self.fidelity(model))


def auto_mixed_precision(
    float_tflite: bytes,
    calibration_nhwc: np.ndarray,
    holdout_nhwc: np.ndarray,
    target: Target | str,
    *,
    modules: ModuleIndex | None = None,
    goal: AutoGoal = AutoGoal(),
    method: str = "minmax",
    progress: Progress | None = None,
) -> MixedPrecision:
    """Raise the least faithful layers to int16 activations until `goal` is met.

    Each step measures per-layer sensitivity of the current model, tries the
    `goal.candidates_per_step` lowest-SQNR layers not yet int16 (quantize + logit fidelity
    on `holdout_nhwc`), and compiles the best with Vela for `target`: kept when it stays
    100% on the NPU and within the cycle budget, dropped (with the reason) otherwise.
    The result is the first state meeting the goal, else the kept state with the best
    logit SQNR (the all-int8 model when nothing beat it). Deterministic for given inputs.
    """
    if goal.sqnr_db is None and goal.top1_agreement is None:
        raise UsageError("automatic mixed precision needs a goal: an SQNR (dB) or a top-1 target.")
    if holdout_nhwc.ndim != 4 or len(holdout_nhwc) == 0:
        raise UsageError("automatic mixed precision measures on held-out samples: give --holdout.")
    target = resolve_target(target) if isinstance(target, str) else target
    if not target.is_npu:
        raise UsageError(
            f"mixed precision is costed with Vela: give an Ethos-U target, not {target.name}."
        )
    ops = float_ops(float_tflite, modules)
    search = _Search(
        float_tflite,
        calibration_nhwc,
        holdout_nhwc,
        target,
        modules,
        method,
        ops,
        progress or (lambda _message: None),
    )
    return _search(search, goal)


def _search(search: _Search, goal: AutoGoal) -> MixedPrecision:
    excluded = [
        Excluded(op.tensor, op.module, op.op_type, reason)
        for op in search.ops
        if (reason := int16_refusal(op)) is not None
    ]
    raisable = [op for op in search.ops if int16_refusal(op) is None]
    base_model = search.quantize(())
    base = search.state((), base_model, search.fidelity(base_model))
    search.progress(f"all int8: {base.fidelity.sqnr_db:.2f} dB, {base.cost.cycles} cycles")
    all_int16 = None
    if raisable:
        all_int16 = search.fidelity(search.quantize([op.tensor for op in raisable])).sqnr_db
    states, steps = [base], []
    sensitivity = search.sensitivity(base.model)
    while True:
        if goal.reached(states[-1].fidelity):
            stop = "goal reached"
            break
        if _unreachable(goal, all_int16):
            stop = "search skipped: no mix of int16 activations can reach the goal"
            break
        if len(steps) >= goal.max_steps:
            stop = f"step budget spent ({goal.max_steps} choices)"
            break
        done = {t for s in steps for t in s.tensors} | {e.tensor for e in excluded}
        scores = sensitivity.by_tensor()
        candidates = sorted(
            (op for op in raisable if op.tensor not in done and op.tensor in scores),
            key=lambda op: (scores[op.tensor].sqnr_db, op.index),
        )[: goal.candidates_per_step]
        if not candidates:
            stop = "no layer left to raise"
            break
        trials = []
        for op in candidates:
            trial = search.trial(states[-1].tensors, op)
            if isinstance(trial, str):
                excluded.append(Excluded(op.tensor, op.module, op.op_type, trial))
            else:
                trials.append(trial)
        if not trials:
            continue
        best = max(trials, key=lambda t: (t.fidelity.sqnr_db, -t.op.index))
        state = search.state(best.tensors, best.model, best.fidelity)
        gain = best.fidelity.sqnr_db - states[-1].fidelity.sqnr_db
        step = _judge(len(steps) + 1, best.op, scores, state, base.cost, goal, gain)
        if step.kept:
            states.append(state)
            sensitivity = search.sensitivity(state.model)
            after = sensitivity.by_tensor().get(best.op.tensor)
            step = replace(step, layer_sqnr_after_db=after.sqnr_db if after else None)
        steps.append(step)
        search.progress(f"step {step.step}: {best.op.module} ({best.op.op_type}): {step.reason}")
    return _result(search, goal, states, steps, stop, all_int16, excluded)


def _unreachable(goal: AutoGoal, all_int16: float | None) -> bool:
    return (
        goal.give_up_when_unreachable
        and goal.top1_agreement is None
        and goal.sqnr_db is not None
        and all_int16 is not None
        and all_int16 < goal.sqnr_db
    )


def _judge(
    number: int,
    op: FloatOp,
    scores: dict,
    state: _State,
    base: _Cost,
    goal: AutoGoal,
    gain_db: float = float("inf"),
) -> Step:
    """The step record of one compiled choice: kept, or dropped with the reason."""
    cost = state.cost
    extra = _pct(cost.cycles, base.cycles)
    reason = "kept"
    if gain_db < goal.min_gain_db:
        reason = (
            f"dropped: +{gain_db:.2f} dB is less than the {goal.min_gain_db} dB a choice must "
            f"gain for its +{extra:.1f}% cycles"
        )
    elif cost.cpu_ops:
        reason = f"dropped: Vela puts {cost.cpu_ops} op(s) on the CPU ({cost.fallbacks})"
    elif goal.max_extra_cycles_pct is not None and extra > goal.max_extra_cycles_pct:
        reason = f"dropped: +{extra:.1f}% cycles exceeds the {goal.max_extra_cycles_pct}% budget"
    before = scores.get(op.tensor)
    return Step(
        step=number,
        modules=(op.module,),
        tensors=(op.tensor,),
        op_types=(op.op_type,),
        kept=reason == "kept",
        reason=reason,
        sqnr_db=_finite(state.fidelity.sqnr_db),
        top1_agreement=state.fidelity.top1_agreement,
        layer_sqnr_before_db=before.sqnr_db if before else None,
        layer_sqnr_after_db=None,
        cycles=cost.cycles,
        cycles_npu=cost.cycles_npu,
        extra_cycles_pct=extra,
        cpu_ops=cost.cpu_ops,
    )


def _baseline_step(base: _State) -> Step:
    return Step(
        step=0,
        modules=(),
        tensors=(),
        op_types=(),
        kept=True,
        reason="all int8",
        sqnr_db=_finite(base.fidelity.sqnr_db),
        top1_agreement=base.fidelity.top1_agreement,
        layer_sqnr_before_db=None,
        layer_sqnr_after_db=None,
        cycles=base.cost.cycles,
        cycles_npu=base.cost.cycles_npu,
        extra_cycles_pct=0.0,
        cpu_ops=base.cost.cpu_ops,
    )


def _result(
    search: _Search,
    goal: AutoGoal,
    states: list[_State],
    steps: list[Step],
    stop: str,
    all_int16: float | None,
    excluded: list[Excluded],
) -> MixedPrecision:
    """The first state meeting the goal, else the best SQNR (the earlier state on a tie)."""
    base = states[0]
    reaching = [s for s in states if goal.reached(s.fidelity)]
    if reaching:
        final = reaching[0]
    else:
        final = max(enumerate(states), key=lambda e: (e[1].fidelity.sqnr_db, -e[0]))[1]
        stop = f"{stop}; goal not reached"
        if goal.sqnr_db is not None and all_int16 is not None and all_int16 < goal.sqnr_db:
            stop += (
                f" (every int16-capable op raised gives {all_int16:.1f} dB: the error left "
                "is in the int8 weights and the int8 input and output, which stay int8)"
            )
    return MixedPrecision(
        target=search.target.name,
        goal=goal,
        baseline=_baseline_step(base),
        steps=tuple(steps),
        int16_tensors=final.tensors,
        int16_modules=modules_of(search.ops, final.tensors),
        model=final.model,
        fidelity=final.fidelity,
        cycles=final.cost.cycles,
        extra_cycles_pct=_pct(final.cost.cycles, base.cost.cycles),
        reached=bool(reaching),
        stop_reason=stop,
        all_int16_sqnr_db=_finite(all_int16),
        excluded=tuple(excluded),
    )
