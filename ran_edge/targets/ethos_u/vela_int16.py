"""Which TFLite ops Ethos-U runs with int16 activations (int8 weights), read from Vela itself.

Vela's supported-operator constraints are small functions whose docstrings are the reasons
it refuses an op. Running each of them on one int8 and one int16 instance of every NPU op
type tells which types Vela refuses in int16, and why, in Vela's own words: no hand-written
list to go stale when Vela changes.
"""

from __future__ import annotations

import contextlib
import functools
import io
from importlib.metadata import version

import numpy as np


def vela_int16_op_types() -> frozenset[str]:
    """TFLite op types Vela places on the NPU with int16 activations (int8 weights)."""
    return frozenset(op for op, reason in _vela_int16_probe().items() if reason is None)


def vela_int16_refusal(op_type: str) -> str | None:
    """Vela's reason an `op_type` cannot run on the NPU with int16 activations; None if it can."""
    probe = _vela_int16_probe()
    if op_type not in probe:
        return f"Vela {version('ethos-u-vela')} does not run {op_type} on the NPU at all"
    return probe[op_type]


@functools.cache
def _vela_int16_probe() -> dict[str, str | None]:
    """Run every Vela constraint on one int8 and one int16 instance of each NPU op type.

    A constraint that passes the int8 op and fails (or breaks on) the int16 one refuses int16;
    its docstring is Vela's own message. Constraints that break on both test structure this
    probe does not model (axis values, paddings), not data types, and are skipped. Size
    limits that differ by type (MEAN's kernel product) still apply at compile time.
    """
    from ethosu.vela.data_type import DataType
    from ethosu.vela.tflite_mapping import builtin_operator_map, builtin_operator_name_map
    from ethosu.vela.tflite_model_semantic import TFLiteSemantic
    from ethosu.vela.tflite_supported_operators import TFLiteSupportedOperators

    semantic, supported = TFLiteSemantic(), TFLiteSupportedOperators()
    probe: dict[str, str | None] = {}
    for code, (vela_op, *_rest) in builtin_operator_map.items():
        if vela_op not in TFLiteSupportedOperators.supported_operators:
            continue
        skip = semantic.get_generic_constraint_exclude_list().get(vela_op, [])
        constraints = [c for c in semantic.generic_constraints if c not in skip]
        constraints += semantic.specific_constraints[vela_op]
        skip = supported.generic_constraints_exceptions[vela_op]
        constraints += [c for c in supported.generic_constraints if c not in skip]
        constraints += supported.specific_constraints[vela_op]
        op8, op16 = _vela_probe_op(vela_op, DataType.int8), _vela_probe_op(vela_op, DataType.int16)
        refusals = [
            " ".join((c.__doc__ or c.__name__).split())
            for c in constraints
            if _passes(c, op8) and not _passes(c, op16)
        ]
        probe[builtin_operator_name_map[code]] = refusals[0] if refusals else None
    return probe


def _passes(constraint, op) -> bool:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return bool(constraint(op)[0])
    except Exception:  # a constraint reading structure the probe op lacks
        return False


def _vela_probe_op(vela_op, dtype):
    """A 3x3, 16-channel instance of `vela_op` on 1x8x8x16 activations of `dtype`."""
    from ethosu.vela.data_type import DataType
    from ethosu.vela.operation import Operation, Padding
    from ethosu.vela.tensor import QuantizationParameters, Tensor

    def tensor(name, shape, tensor_type, values=None):
        t = Tensor(shape, tensor_type, name)
        t.quantization = QuantizationParameters(0.05, 0)
        if values is not None:
            t.values = values
        return t

    op = Operation(vela_op, "probe")
    indices = vela_op.info.indices
    count = max([*indices.ifms, *indices.weights, *indices.biases, 0]) + 1
    bias_type = DataType.int64 if dtype == DataType.int16 else DataType.int32  # as TFLite's
    for i in range(count):
        if i in indices.weights:
            op.add_input_tensor(tensor("w", [3, 3, 16, 16], DataType.int8, np.ones((3, 3, 16, 16))))
        elif i in indices.biases:
            op.add_input_tensor(tensor("b", [16], bias_type, np.zeros(16, np.int64)))
        else:
            op.add_input_tensor(tensor(f"x{i}", [1, 8, 8, 16], dtype))
    op.set_output_tensor(tensor("y", [1, 8, 8, 16], dtype))
    op.attrs.update(
        stride_w=1,
        stride_h=1,
        padding=Padding.SAME,
        filter_width=3,
        filter_height=3,
        depth_multiplier=1,
        dilation_w_factor=1,
        dilation_h_factor=1,
    )
    return op
