"""Which ops of an int8 model LiteRT's XNNPACK delegate leaves to TFLite's own kernels.

The estimator needs to know: a kernel outside XNNPACK runs single-threaded, element by element,
and splits the delegate's graph into more partitions. LiteRT only says how many partitions
there are, so this runs the model once with every tensor kept, each op's output filled with a
sentinel first: XNNPACK keeps the tensors inside a partition in its own workspace and never
writes them back, so an op output that changed (other than a partition's own output) was
written by TFLite's kernel. `NOT_DELEGATED_INT8` is what that finds on the installed LiteRT;
a test re-checks it op by op, so an upgrade that changes the delegate's coverage fails there.
"""

from __future__ import annotations

# Int8 ops the XNNPACK delegate of ai-edge-litert 2.3 does not take (each checked alone between
# two convs, tests/targets/cortex_a/test_delegation.py): XNNPACK has float kernels for some of
# them, not the quantised form TFLite's delegate would need.
NOT_DELEGATED_INT8 = frozenset(
    {"HARD_SWISH", "AVERAGE_POOL_2D", "RESIZE_NEAREST_NEIGHBOR", "PADV2", "RELU", "SQRT"}
)

_SENTINEL = 77


def ops_outside_xnnpack(model: bytes) -> list[str]:
    """Builtin names of the ops of `model` TFLite ran itself rather than XNNPACK, in order."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(
        model_content=model, num_threads=1, experimental_preserve_all_tensors=True
    )
    interpreter.allocate_tensors()
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the model's ops, then one DELEGATE per partition
    partition_outputs = {int(t) for op in ops if op["op_name"] == "DELEGATE" for t in op["outputs"]}
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    watched: dict[int, str] = {}
    for op in ops:
        if op["op_name"] == "DELEGATE" or not len(op["outputs"]):
            continue
        out = int(op["outputs"][0])
        if out in partition_outputs:
            continue
        try:
            current = interpreter.get_tensor(out)
            interpreter.set_tensor(out, np.full(current.shape, _SENTINEL, current.dtype))
        except ValueError:  # not a plain activation buffer: cannot tell
            continue
        watched[out] = op["op_name"]
    interpreter.invoke()
    return [
        name
        for out, name in watched.items()
        if not np.all(interpreter.get_tensor(out) == _SENTINEL)
    ]
