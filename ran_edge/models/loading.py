"""Turn a user's model spec (zoo name, `file.py:factory`, or `.pt2`) into a checked nn.Module.

Every way a spec can be wrong ends in a UsageError naming the problem and the fix, and every
model is proven to run on its input shape here, so later stages only see working models.

Spec forms:
  - zoo name, e.g. `mobilenet_v2`: input shape defaults to the zoo entry's.
  - `path/to/file.py:factory`: naming the file is the explicit opt-in to execute it. The
    file is imported under a unique module name (its directory is on sys.path only while it
    is imported and the factory runs, so sibling imports work) and `factory()` is called with
    no arguments; it must return an nn.Module. The input shape comes from, in order: the
    `input_shape` argument, an `input_shape` attribute on the returned module, or a
    module-level `INPUT_SHAPE` in the file; with none of these it is an error.
  - `path/to/arch.json`: an architecture file written by `ran-edge search`; the network is
    built from it (random init), named after the file stem, at the file's resolution.
  - `path/to/model.pt2` (from `torch.export.save`): the input shape is the exported
    program's example input; a different `input_shape` argument is an error.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import logging
import numbers
import re
import sys
import types
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ran_edge.errors import UsageError
from ran_edge.models.registry import create_model, get_entry
from ran_edge.probe import probe_forward

_SHAPE_HINT = "Pass --input-shape N,C,H,W matching the model."
_MAX_KEYS_SHOWN = 5
_WEIGHTS_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".safetensors"}


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for export: eval mode, weights loaded, proven to run on `input_shape`."""

    module: nn.Module
    name: str
    input_shape: tuple[int, ...]
    source: str


def load_model(
    spec: str,
    *,
    weights: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
) -> LoadedModel:
    """Resolve `spec` (zoo name, `file.py:factory` or `.pt2`), load `weights`, check it runs."""
    user_shape = validate_input_shape(input_shape) if input_shape is not None else None
    if spec.endswith(".pt2"):
        loaded = _load_pt2(Path(spec), user_shape)
    elif spec.endswith(".json"):
        loaded = _load_arch(Path(spec), user_shape)
    elif _looks_like_file_spec(spec):
        loaded = _load_python(spec, user_shape)
    else:
        loaded = _load_zoo(spec, user_shape, weights)
        weights = None  # applied while building (it may set num_classes)
    if weights is not None:
        _load_weights(loaded.module, Path(weights), loaded.name)
    _set_eval(loaded.module)
    _check_finite(loaded)
    _check_forward(loaded)
    return loaded


def validate_input_shape(shape: Sequence[int] | Any) -> tuple[int, ...]:
    """Input shapes must be 4-D NCHW with positive ints; anything else is a UsageError."""
    try:
        dims = tuple(shape)
    except TypeError:
        dims = None
    ok = (
        dims is not None
        and len(dims) == 4
        and all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims)
    )
    if not ok:
        raise UsageError(
            f"input shape {shape!r} is not a 4-D NCHW shape of positive integers. "
            f"Pass --input-shape N,C,H,W, e.g. 1,3,224,224."
        )
    return tuple(int(d) for d in dims)  # type: ignore[union-attr]


# --- zoo -------------------------------------------------------------------------------------


def _load_zoo(
    name: str, user_shape: tuple[int, ...] | None, weights: str | Path | None
) -> LoadedModel:
    entry = get_entry(name)
    kwargs: dict[str, Any] = {}
    state = None
    if weights is not None:
        state = _read_state_dict(Path(weights))
        # A checkpoint fine-tuned to k classes builds the model with k outputs.
        classifier = state.get("classifier.1.weight")
        if isinstance(classifier, torch.Tensor) and classifier.dim() == 2:
            kwargs["num_classes"] = int(classifier.shape[0])
    module = create_model(name, **kwargs)
    if state is not None:
        _apply_state_dict(module, state, name, Path(weights))  # type: ignore[arg-type]
    return LoadedModel(module, name, user_shape or entry.input_shape, f"zoo:{name}")


def _load_arch(path: Path, user_shape: tuple[int, ...] | None) -> LoadedModel:
    """An architecture file written by `ran-edge search` (random init; see docs/search.md)."""
    from ran_edge.models.arch_file import arch_input_shape, load_arch_model

    shape = arch_input_shape(path)
    return LoadedModel(load_arch_model(path), path.stem, user_shape or shape, f"arch:{path}")


# --- file.py:factory -------------------------------------------------------------------------


def _looks_like_file_spec(spec: str) -> bool:
    """Anything path-like that is not a zoo name is treated as a file (and checked as one)."""
    return ":" in spec or "/" in spec or "\\" in spec or Path(spec).suffix != ""


def _load_python(spec: str, user_shape: tuple[int, ...] | None) -> LoadedModel:
    path_text, sep, factory_name = spec.rpartition(":")
    if not sep or not path_text.endswith(".py"):
        suffix = Path(path_text if sep else spec).suffix
        if suffix == ".py":
            raise UsageError(
                f"model spec {spec!r} names a Python file but no factory. "
                f"Use {spec}:<factory>, where <factory>() returns the nn.Module."
            )
        if suffix in _WEIGHTS_SUFFIXES:
            raise UsageError(
                f"{spec!r} looks like a weights file, not a model. Pass the model as a zoo "
                f"name or path/to/file.py:factory and the file with --weights {spec}."
            )
        raise UsageError(
            f"model {spec!r} is not a zoo name, a .py file or a .pt2 file. "
            f"Pass a zoo name (see `ran-edge models`), path/to/file.py:factory, "
            f"or an exported program saved with torch.export.save as .pt2."
        )
    if not factory_name.isidentifier():
        raise UsageError(
            f"factory {factory_name!r} in {spec!r} is not a Python function name. "
            f"Use path/to/file.py:factory with the name of a function defined in the file."
        )
    path = _existing_file(Path(path_text), "model file")
    module = _import_file(path)
    factory = getattr(module, factory_name, None)
    if factory is None:
        available = _public_callables(module)
        listed = ", ".join(available) if available else "none"
        raise UsageError(
            f"{path} has no factory {factory_name!r} (functions and classes defined there: "
            f"{listed}). Use {path}:<name> with one of them."
        )
    if not callable(factory):
        raise UsageError(
            f"{factory_name!r} in {path} is a {type(factory).__name__}, not a callable factory. "
            f"Point at a function that returns the nn.Module."
        )
    # Seeded, in a forked RNG: a factory's random init is then the same on every run
    # (same inputs, same bytes out) and the caller's RNG is untouched.
    with _on_sys_path(path.parent), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        try:
            model = factory()
        except (Exception, SystemExit) as exc:
            raise UsageError(
                f"factory {factory_name}() in {path} raised {_describe(exc)}. "
                f"Fix the factory; it is called with no arguments and must return an nn.Module."
            ) from None
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"factory {factory_name}() in {path} returned {type(model).__name__}, not a "
            f"torch.nn.Module. Return the model instance itself."
        )
    name = f"{path.stem}_{factory_name}"
    shape = user_shape or _declared_shape(model, module, path, name)
    return LoadedModel(model, name, shape, f"file:{path.resolve()}:{factory_name}")


def _import_file(path: Path) -> types.ModuleType:
    """Import a user file under a unique name so two files called model.py never collide."""
    resolved = path.resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module_name = f"ran_edge_user_{_identifier(path.stem)}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, resolved)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path} as Python. Check it is a readable .py file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up here
    with _on_sys_path(resolved.parent):
        try:
            spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            sys.modules.pop(module_name, None)
            raise UsageError(
                f"importing {path} failed with {_describe(exc)}. Fix the file "
                f"(`python {path}` shows the full traceback)."
            ) from None
    return module


def _declared_shape(
    model: nn.Module, module: types.ModuleType, path: Path, name: str
) -> tuple[int, ...]:
    for where, shape in (
        ("the model's input_shape attribute", getattr(model, "input_shape", None)),
        (f"INPUT_SHAPE in {path}", getattr(module, "INPUT_SHAPE", None)),
    ):
        if shape is not None:
            try:
                return validate_input_shape(shape)
            except UsageError:
                raise UsageError(
                    f"{where} is {shape!r}, not a 4-D NCHW shape of positive integers. "
                    f"Fix it (e.g. (1, 3, 224, 224)) or pass --input-shape N,C,H,W."
                ) from None
    raise UsageError(
        f"model {name} does not declare its input shape. Pass --input-shape N,C,H,W, or "
        f"define INPUT_SHAPE = (1, 3, H, W) in {path}."
    )


def _public_callables(module: types.ModuleType) -> list[str]:
    return sorted(
        n
        for n, v in vars(module).items()
        if not n.startswith("_")
        and (inspect.isfunction(v) or inspect.isclass(v))
        and getattr(v, "__module__", None) == module.__name__
    )


@contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    """Put `directory` first on sys.path for the duration only (sibling imports work)."""
    entry = str(directory.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with suppress(ValueError):
            sys.path.remove(entry)  # removes the first occurrence: ours


# --- .pt2 ------------------------------------------------------------------------------------

_REEXPORT_HINT = (
    "Re-export it: ep = torch.export.export(model.eval(), (torch.zeros(N, C, H, W),)); "
    "torch.export.save(ep, 'model.pt2')."
)


def _load_pt2(path: Path, user_shape: tuple[int, ...] | None) -> LoadedModel:
    path = _existing_file(path, "exported program")
    with _capture_torch_export_log() as logged:
        try:
            program = torch.export.load(path)
        except Exception as exc:
            problem = _pt2_problem(exc, logged)
            raise UsageError(
                f"{path} is not a readable torch.export program ({problem}). {_REEXPORT_HINT}"
            ) from None
    shape = _pt2_input_shape(program, path)
    if shape is None:
        if user_shape is None:
            raise UsageError(
                f"{path} has a dynamic input shape. Pass --input-shape N,C,H,W to fix it."
            )
        shape = user_shape
    elif user_shape is not None and user_shape != shape:
        raise UsageError(
            f"input shape {user_shape} disagrees with {path}, which was exported for {shape}. "
            f"Drop --input-shape (it is read from the file) or re-export at the shape you want."
        )
    _reject_training_graph(program, path)
    module = program.module()
    # torch.export's module() makes .train()/.eval() raise. The graph's BN/dropout mode is
    # fixed (and checked above to be inference), so the plain flag flip is harmless and lets
    # later stages call .eval() on every model alike.
    for method in ("train", "eval"):
        module.__dict__.pop(method, None)
    return LoadedModel(module, path.stem, shape, f"pt2:{path.resolve()}")


def _pt2_input_shape(program: torch.export.ExportedProgram, path: Path) -> tuple[int, ...] | None:
    """The single image input's shape; None when any dimension is dynamic."""
    user_inputs = [
        node
        for node in program.graph.nodes
        if node.op == "placeholder" and node.name in program.graph_signature.user_inputs
    ]
    if len(user_inputs) != 1:
        raise UsageError(
            f"{path} takes {len(user_inputs)} inputs; ran-edge needs exactly one image tensor. "
            f"{_REEXPORT_HINT}"
        )
    value = user_inputs[0].meta.get("val")
    if not isinstance(value, torch.Tensor):
        raise UsageError(f"{path}'s input is not a tensor. {_REEXPORT_HINT}")
    dims = tuple(value.shape)
    if not all(isinstance(d, int) for d in dims):
        return None
    try:
        return validate_input_shape(dims)
    except UsageError:
        raise UsageError(
            f"{path} was exported with input shape {dims}, not 4-D NCHW. {_REEXPORT_HINT}"
        ) from None


def _reject_training_graph(program: torch.export.ExportedProgram, path: Path) -> None:
    """A graph exported in train mode bakes in batch-statistics BN and live dropout."""
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        target = str(node.target)
        if "batch_norm" in target and "no_training" not in target:
            training = len(node.args) > 5 and node.args[5] is True
        elif "dropout" in target:
            training = len(node.args) > 2 and node.args[2] is True
        else:
            continue
        if training:
            raise UsageError(
                f"{path} was exported in training mode (BatchNorm/Dropout behave as in "
                f"training). Call model.eval() before torch.export.export. {_REEXPORT_HINT}"
            )


def _pt2_problem(exc: Exception, logged: list[BaseException]) -> str:
    """torch.export.load logs the real cause, then raises a generic error; report the cause."""
    cause = logged[-1] if logged else exc
    if "archive_format: file not found" in str(cause):
        return "a zip file but not an exported program; a torch.save checkpoint goes to --weights"
    return _describe(cause)


class _ExceptionCollector(logging.Handler):
    def __init__(self, sink: list[BaseException]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.sink.append(record.exc_info[1])


@contextmanager
def _capture_torch_export_log() -> Iterator[list[BaseException]]:
    """Keep torch.export's logged tracebacks off the console, collecting their exceptions."""
    logger = logging.getLogger("torch.export")
    saved = (logger.handlers, logger.propagate, logger.level)
    sink: list[BaseException] = []
    logger.handlers, logger.propagate = [_ExceptionCollector(sink)], False
    logger.setLevel(logging.WARNING)
    try:
        yield sink
    finally:
        logger.handlers, logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])


# --- weights ---------------------------------------------------------------------------------


def _load_weights(module: nn.Module, path: Path, name: str) -> None:
    _apply_state_dict(module, _read_state_dict(path), name, path)


def _read_state_dict(path: Path) -> dict[str, Any]:
    """Read a state_dict safely (weights_only): bare, or under a `state_dict`/`model` key."""
    path = _existing_file(path, "weights file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(
            f"cannot read weights from {path}: {_weights_problem(exc)}. Save them with "
            f"torch.save(model.state_dict(), path) (tensors only; pickled modules are refused)."
        ) from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise UsageError(
            f"{path} does not hold a state_dict (a mapping of names to tensors; found "
            f"{type(obj).__name__}). Save with torch.save(model.state_dict(), path), or a dict "
            f"with the state_dict under 'state_dict' or 'model'."
        )
    state = dict(obj)
    # nn.DataParallel / DDP checkpoints prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _weights_problem(exc: Exception) -> str:
    """Boil torch.load's long weights_only messages down to what is wrong with the file."""
    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return f"it pickles Python objects ({found.group(1)}), not only tensors"
    if "WeightsUnpickler error" in text:
        return "it is not a PyTorch checkpoint (unreadable pickle data)"
    if "PytorchStreamReader failed" in text:
        return f"the file is truncated or corrupt ({_first_line(exc)})"
    return _describe(exc)


def _apply_state_dict(module: nn.Module, state: dict[str, Any], name: str, path: Path) -> None:
    expected = set(module.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {_count_keys(missing)} ({_first_keys(missing)})")
        if unexpected:
            parts.append(f"unexpected {_count_keys(unexpected)} ({_first_keys(unexpected)})")
        raise UsageError(
            f"weights {path} do not match model {name}: {'; '.join(parts)}. Pass weights "
            f"saved from this same architecture (torch.save(model.state_dict(), path))."
        )
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        details = [ln.strip() for ln in str(exc).splitlines()[1:] if ln.strip()]
        shown = "; ".join(details[:_MAX_KEYS_SHOWN]) or _first_line(exc)
        raise UsageError(
            f"weights {path} do not fit model {name}: {shown}. Pass weights saved from this "
            f"same architecture and configuration (e.g. the same number of classes)."
        ) from None


def _count_keys(keys: list[str]) -> str:
    return f"{len(keys)} key" if len(keys) == 1 else f"{len(keys)} keys"


def _first_keys(keys: list[str]) -> str:
    more = f", ... {len(keys) - _MAX_KEYS_SHOWN} more" if len(keys) > _MAX_KEYS_SHOWN else ""
    return ", ".join(keys[:_MAX_KEYS_SHOWN]) + more


# --- checks and helpers ----------------------------------------------------------------------


def _set_eval(module: nn.Module) -> None:
    with suppress(NotImplementedError):  # torch.export GraphModule: mode fixed at export
        module.eval()


def _check_finite(loaded: LoadedModel) -> None:
    """NaN or Inf in a weight poisons every later stage with errors that blame the wrong thing."""
    state = loaded.module.state_dict()
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = tensor.numel() - int(torch.isfinite(tensor).sum())
            kinds = [
                k
                for k, present in (
                    ("NaN", bool(torch.isnan(tensor).any())),
                    ("Inf", bool(torch.isinf(tensor).any())),
                )
                if present
            ]
            raise UsageError(
                f"model {loaded.name}: parameter {key} holds {'/'.join(kinds)} "
                f"({bad} of {tensor.numel()} values). Fix the training run or checkpoint "
                "(a diverged run writes NaN) and save the weights again."
            )


def _check_forward(loaded: LoadedModel) -> None:
    try:
        probe_forward(loaded.module, loaded.input_shape)
    except Exception as exc:
        raise UsageError(
            f"input shape {loaded.input_shape} does not fit model {loaded.name}: "
            f"{_first_line(exc)}. {_SHAPE_HINT}"
        ) from None


def _existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist. Check the path.")
    if not path.is_file():
        raise UsageError(f"{what} {path} is not a file. Point at the file itself.")
    return path


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].rstrip(". ") if text else ""
    if "PytorchStreamReader failed" in line:  # drop miniz's boilerplate after the first sentence
        line = line.split(". ")[0]
    return line or type(exc).__name__


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)
