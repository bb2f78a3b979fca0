"""The Ray side of `ran_edge.jobs`: the same job function as a Ray task on a cluster.

Every node must run the same ran-edge and tool versions as this machine: a task reports
its node's versions with its result, and a mismatch is an error, not a cost from another
Vela filed under this machine's cache key. Ray retries a task whose worker process died
(`MAX_RETRIES`); a task that raised is not retried (the same inputs would raise again).
"""

from __future__ import annotations

import logging
import platform
import socket
from collections.abc import Callable, Sequence
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from ran_edge.errors import RanEdgeError, StageError, UsageError

MAX_RETRIES = 3
CONNECT_TIMEOUT_S = 5.0
# What must match between this machine and every worker for results to be the same bytes.
TOOLS = ("ran-edge", "torch", "litert-torch", "ai-edge-quantizer", "ethos-u-vela")


@cache
def node_identity() -> str:
    """Python minor version and the versions of the tools that shape a result."""
    parts = [f"python={'.'.join(platform.python_version_tuple()[:2])}"]
    for tool in TOOLS:
        try:
            parts.append(f"{tool}={version(tool)}")
        except PackageNotFoundError:
            parts.append(f"{tool}=absent")
    return " ".join(parts)


def _identified(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """What runs on the worker: the job, plus the worker's identity for the caller to check."""
    return node_identity(), fn(*args)


def check_reachable(address: str) -> None:
    """A fast, readable error for an address nothing listens on (ray.init would wait ~1 min)."""
    if address in ("auto", "local"):
        return
    host_port = address.split("://", 1)[-1]
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(
            f"--ray {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379, the head's GCS port that "
            "`ray start --head` prints) or 'auto'."
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UsageError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with "
            "`ray start --head`, pass its address, or drop --ray / unset RAY_ADDRESS to run "
            "locally."
        ) from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--ray (or RAY_ADDRESS) needs Ray: pip install 'ran-edge[ray]' (make setup installs it)."
        ) from None
    return ray


def run_on_ray(
    address: str,
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    on_result: Callable[[int, Any], None],
    advance: Callable[[], None],
) -> None:
    """`JobPool.run` on the cluster at `address`: one task per job, results as they finish."""
    check_reachable(address)
    ray = _import_ray()
    try:
        ray.init(
            address=address,
            logging_level=logging.ERROR,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UsageError(f"could not join the Ray cluster at {address}: {exc}") from None
    try:
        task = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_identified)
        refs = {task.remote(fn, *job): index for index, job in enumerate(jobs)}
        here = node_identity()
        while refs:
            done, _ = ray.wait(list(refs), num_returns=1)
            index = refs.pop(done[0])
            identity, result = _get(ray, done[0], index)
            if identity != here:
                raise StageError(
                    f"a Ray worker runs {identity}, this machine {here}; install the same "
                    "versions on every node (results would differ from a local run)."
                )
            on_result(index, result)
            advance()
    finally:
        ray.shutdown()


def _get(ray: Any, ref: Any, index: int) -> Any:
    """The task's result; its own readable error re-raised as is, anything else explained."""
    from ray.exceptions import RayError, RayTaskError, WorkerCrashedError

    try:
        return ray.get(ref)
    except RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, RanEdgeError):
            raise cause from None
        raise StageError(f"job {index} failed on a Ray worker: {cause or exc}") from None
    except WorkerCrashedError:
        raise StageError(
            f"job {index}: its Ray worker died {MAX_RETRIES + 1} times; finished results are "
            "kept. Check the nodes' memory (`ray status`) and rerun."
        ) from None
    except RayError as exc:  # out of memory, a node lost, a result that cannot travel
        raise StageError(
            f"job {index} failed on the Ray cluster ({type(exc).__name__}: {exc}); finished "
            "results are kept. Check `ray status` and rerun."
        ) from None
