"""NPU coverage: do third-party and everyday networks build 100% on the Ethos-U NPU?

    .venv/bin/python benchmarks/coverage.py [--models a,b] [--size 128] [--target ethos-u55-128]
                                            [--json] [--list]

Each network (random init, seeded, BatchNorm statistics estimated on the random
calibration arrays; no weights are downloaded) goes through the default
ran-edge build: export with the NPU rewrites on, static int8 on random calibration data,
Vela for the target (with CPU fallback allowed so the profile exists even when ops fell
back). Per network: whether a default build passes (int8 I/O and Vela's verdict
`CPU operators = 0`), NPU/CPU op counts, inferences/s, MAC utilisation, the rewrites that
fired, and for every op Vela left on the CPU: its op, PyTorch module, Vela's reason and the
suggested PyTorch-level change. Nothing is cached or written into the repository.

Third-party definitions come from torchvision and timm, optional benchmark dependencies:

    .venv/bin/pip install --no-deps torchvision==0.28.0 timm==1.0.31

(--no-deps: both would otherwise pull a CUDA torch; timm's own dependencies pyyaml,
huggingface_hub and safetensors are already in the lock.) Without them their rows are
skipped with that command. torchvision 0.28.0 is the release for torch 2.13 but its wheel
is CUDA-linked: on CPU torch its C++ ops fail to load and `import torchvision` dies with
"operator torchvision::nms does not exist". Only model *definitions* are needed here, so
`import_vision()` declares the two op schemas torchvision registers fake kernels for
(nms, qnms) before importing it; detection ops stay unusable, classification and
segmentation models build normally.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from everyday_nets import EVERYDAY_NETS  # noqa: E402

VISION_INSTALL = ".venv/bin/pip install --no-deps torchvision==0.28.0 timm==1.0.31"
SEED = 0

# torchvision (classification + one segmentation head) and timm: edge-sized CNNs users
# bring, plus the families measured on the tracker (MNASNet, ShuffleNetV2, ConvNeXt, RepViT).
TORCHVISION_MODELS = (
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "mnasnet0_5",
    "mnasnet1_0",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "resnet18",
    "resnet50",
    "efficientnet_b0",
    "regnet_x_400mf",
    "regnet_y_400mf",
    "googlenet",
    "densenet121",
    "convnext_tiny",
    "lraspp_mobilenet_v3_large",
)
TIMM_MODELS = (
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "mobilenetv4_conv_small",
    "efficientnet_lite0",
    "tf_efficientnet_lite0",
    "lcnet_050",
    "ghostnet_100",
    "repvit_m0_9",
    "mobileone_s0",
    "repvgg_a0",
    "rexnet_100",
    "mixnet_s",
    "tinynet_e",
    "semnasnet_075",
    "hardcorenas_a",
    "fbnetc_100",
    "convnext_atto",
    "resnet18d",
    "regnetx_002",
    "ese_vovnet19b_dw",
)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "torchvision", "timm" or "everyday"
    make: Callable[[int], tuple[nn.Module, tuple[int, int, int, int]]]


@dataclass(frozen=True)
class Fallback:
    """An op Vela left on the CPU, where it came from, and what to change."""

    op: str
    module: str
    reason: str
    fix: str


@dataclass
class Row:
    name: str
    family: str
    input_shape: tuple[int, ...] = ()
    params_m: float = 0.0
    builds: bool = False
    npu_ops: int | None = None
    cpu_ops: int | None = None
    inferences_per_second: float | None = None
    mac_utilisation_pct: float | None = None
    rewrites: list[str] = field(default_factory=list)
    fallbacks: list[Fallback] = field(default_factory=list)
    error: str = ""  # a stage that failed outright (export, quantize, Vela)
    skipped: str = ""  # why the row did not run (missing optional package)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error:
            return "error"
        return "100% NPU" if self.builds else "CPU ops"


# ---------------------------------------------------------------------------- models


def import_vision() -> tuple[object, object] | str:
    """(torchvision, timm), or why they cannot be imported (with the install command).

    torchvision's CUDA-linked C++ ops cannot load on CPU torch, and its module import
    registers fake kernels for torchvision::nms/qnms, which needs those schemas to exist.
    Declaring them (same signature as torchvision's C++) is enough for model definitions.
    """
    try:
        torch.ops.torchvision.nms  # noqa: B018 - raises if the schema is missing
    except (AttributeError, RuntimeError):
        lib = torch.library.Library("torchvision", "DEF")  # noqa: TID251
        for op in ("nms", "qnms"):
            lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import_vision.library = lib  # type: ignore[attr-defined] # keep the schemas alive
    try:
        import timm
        import torchvision
    except ImportError as exc:
        return f"{exc.name or exc} is not installed: {VISION_INSTALL}"
    return torchvision, timm


def _torchvision(name: str) -> Callable[[int], tuple[nn.Module, tuple[int, int, int, int]]]:
    def make(size: int) -> tuple[nn.Module, tuple[int, int, int, int]]:
        from torchvision import models

        if name.startswith("lraspp"):
            net = models.segmentation.lraspp_mobilenet_v3_large(
                weights=None, weights_backbone=None, num_classes=21
            )
            return _OutOnly(net), (1, 3, size, size)
        kwargs = {"aux_logits": False, "init_weights": True} if name == "googlenet" else {}
        return models.get_model(name, weights=None, **kwargs), (1, 3, size, size)

    return make


def _timm(name: str) -> Callable[[int], tuple[nn.Module, tuple[int, int, int, int]]]:
    def make(size: int) -> tuple[nn.Module, tuple[int, int, int, int]]:
        import timm

        return timm.create_model(name, pretrained=False), (1, 3, size, size)

    return make


class _OutOnly(nn.Module):
    """torchvision segmentation models return a dict; a deployed model returns the map."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)["out"]


def all_specs() -> list[ModelSpec]:
    specs = [ModelSpec(n, "torchvision", _torchvision(n)) for n in TORCHVISION_MODELS]
    specs += [ModelSpec(n, "timm", _timm(n)) for n in TIMM_MODELS]
    specs += [ModelSpec(n, "everyday", f) for n, f in EVERYDAY_NETS.items()]
    return specs


# ---------------------------------------------------------------------------- one network


@dataclass(frozen=True)
class _Loaded:
    """The fields of ran_edge.models.LoadedModel the pipeline reads."""

    module: nn.Module
    name: str
    input_shape: tuple[int, ...]
    source: str


def _calibration(shape: tuple[int, ...], samples: int):
    from ran_edge.calib import CalibrationData

    rng = np.random.default_rng(SEED)
    data = rng.standard_normal((samples, *shape[1:])).astype(np.float32)
    empty = np.zeros((0, *shape[1:]), np.float32)
    return CalibrationData(data, empty, "random", f"{samples} standard-normal arrays (seed {SEED})")


def settle_batchnorm(module: nn.Module, calib: np.ndarray) -> None:
    """Re-estimate BatchNorm statistics on the calibration arrays, then back to eval.

    Zero-initialised BN scales are set to 1 first (see below). Fresh torchvision/timm
    inits leave some networks with activations around 1e-9 (e.g.
    torchvision's MobileNetV2 at 128: the int8 scales underflow and the reference kernels
    refuse the model, "no_integer_overflow_from_quantization"). A trained network has
    normalised activations; one forward pass in train mode gives a random network the same,
    so the table measures op placement, not a degenerate init.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    with torch.no_grad():
        for m in norms:
            # timm zero-initialises the last BN of residual branches (resnet*d, regnet*,
            # repvit): a zero gamma folds into an all-zero conv, the converter drops the
            # branch, and the table would time a network without its residual blocks.
            if m.weight is not None and bool((m.weight == 0).all()):
                m.weight.fill_(1.0)
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the pass
    module.train()
    with torch.no_grad():
        module(torch.from_numpy(calib))
    module.eval()


def run_one(spec: ModelSpec, size: int, target_name: str, samples: int, work: Path) -> Row:
    """Build `spec` for `target_name` as `ran-edge build --allow-cpu-fallback` would."""
    from ran_edge.build.convert import convert_model
    from ran_edge.build.many import build_target
    from ran_edge.convert.rewrites import AppliedRewrite
    from ran_edge.targets.loading import resolve_target

    row = Row(spec.name, spec.family)
    start = time.perf_counter()
    stage = "build the model"
    try:
        torch.manual_seed(SEED)
        module, shape = spec.make(size)
        calib = _calibration(tuple(shape), samples)
        settle_batchnorm(module, calib.samples)
        row.input_shape = tuple(shape)
        row.params_m = round(sum(p.numel() for p in module.parameters()) / 1e6, 2)
        stage = "export + quantize"
        loaded = _Loaded(module, spec.name, tuple(shape), f"{spec.family}:{spec.name}")
        converted = convert_model(loaded, calib)
        applied = converted.quality.quantization["rewrites"]
        row.rewrites = [str(AppliedRewrite(**r)) for r in applied]
        stage = "Vela"
        target = resolve_target(target_name)
        build = build_target(converted, target, work, allow_cpu_fallback=True)
        profile = build.profile
        vela = profile.vela
        row.npu_ops, row.cpu_ops = vela.npu_ops, vela.cpu_ops
        row.inferences_per_second = round(vela.summary.inferences_per_second, 1)
        row.mac_utilisation_pct = round(profile.mac_utilisation_pct, 1)
        # The gate's own verdict: module path, Vela's reason and the fix, per CPU op.
        row.fallbacks = [
            Fallback(f.op_type, f.module, f.reason, f.fix) for f in build.report.cpu_fallbacks
        ]
        row.builds = converted.info.int8_io and vela.cpu_ops == 0
        if not converted.info.int8_io:
            row.fallbacks.append(Fallback("I/O", "", "input or output is not int8", ""))
    except Exception as exc:  # one network failing must not stop the table
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        row.error = f"{stage}: {type(exc).__name__}: {first[:300]}"
        if "--debug" in sys.argv:
            traceback.print_exc()
    row.seconds = round(time.perf_counter() - start, 1)
    return row


# ---------------------------------------------------------------------------- output


def _cause(row: Row) -> str:
    if row.skipped:
        return row.skipped
    if row.error:
        return row.error
    seen: dict[tuple[str, str], int] = {}
    for f in row.fallbacks:
        key = (f.op, f.reason)
        seen[key] = seen.get(key, 0) + 1
    parts = []
    for (op, reason), count in seen.items():
        modules = sorted({f.module for f in row.fallbacks if (f.op, f.reason) == (op, reason)})
        where = ", ".join(modules[:2]) + (f" +{len(modules) - 2}" if len(modules) > 2 else "")
        fix = next(f.fix for f in row.fallbacks if (f.op, f.reason) == (op, reason))
        parts.append(f"{count}x {op} in {where}: {reason[:90]} -> {fix}")
    return "\n".join(parts)


def _rewrite_names(row: Row) -> str:
    counts: dict[str, int] = {}
    for r in row.rewrites:
        name = r.split(" at ", 1)[0]
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{n} x{c}" for n, c in counts.items())


def print_table(rows: list[Row], target: str, size: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"NPU coverage on {target} (images {size}x{size}, random init)")
    for col in ("model", "family", "params M", "builds", "NPU", "CPU", "inf/s", "MAC %"):
        table.add_column(col, justify="right" if col not in ("model", "family") else "left")
    table.add_column("rewrites fired")
    table.add_column("CPU ops: module, Vela reason -> suggested change", overflow="fold")
    for r in rows:
        builds = {"100% NPU": "[green]yes[/]", "CPU ops": "[red]no[/]"}.get(r.status, r.status)
        table.add_row(*_cells(r, builds, _cause(r)))
    console = Console(width=220)
    console.print(table)
    console.print(summary_line(rows))


def _cells(r: Row, builds: str, cause: str) -> tuple[str, ...]:
    """One row's cells, the same for the terminal and the Markdown table."""
    return (
        r.name,
        r.family,
        f"{r.params_m:.2f}",
        builds,
        _num(r.npu_ops),
        _num(r.cpu_ops),
        _num(r.inferences_per_second),
        _num(r.mac_utilisation_pct),
        _rewrite_names(r),
        cause,
    )


def markdown_table(rows: list[Row]) -> str:
    """The table as Markdown (what docs/npu-coverage.md shows)."""
    head = "| model | family | params M | builds | NPU ops | CPU ops | inf/s | MAC % | rewrites fired | CPU ops: module, Vela reason -> change |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        builds = {"100% NPU": "yes", "CPU ops": "no"}.get(r.status, r.status)
        cause = _cause(r).replace("\n", "<br>").replace("|", "/")
        lines.append("| " + " | ".join(_cells(r, builds, cause)) + " |")
    return "\n".join(lines) + "\n\n" + summary_line(rows)


def summary_line(rows: list[Row]) -> str:
    ran = [r for r in rows if not r.skipped]
    full = [r for r in ran if r.builds]
    share = 100.0 * len(full) / len(ran) if ran else 0.0
    skipped = len(rows) - len(ran)
    text = f"{len(full)}/{len(ran)} networks 100% on the NPU with a default build ({share:.0f}%)"
    return text + (f"; {skipped} skipped" if skipped else "")


def _num(v: float | int | None) -> str:
    return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------- main


def _select(specs: list[ModelSpec], names: str | None) -> list[ModelSpec]:
    if not names:
        return specs
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    by_name = {s.name: s for s in specs}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; see --list")
    return [by_name[n] for n in wanted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"Optional dependencies (torchvision/timm rows): {VISION_INSTALL}",
    )
    parser.add_argument("--models", help="comma-separated names (default: all; see --list)")
    parser.add_argument("--size", type=int, default=128, help="image side (default 128)")
    parser.add_argument("--target", default="ethos-u55-128", help="Ethos-U target profile")
    parser.add_argument("--calib-samples", type=int, default=4, help="random calibration arrays")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--from-json", type=Path, help="render a saved --json-out file, run nothing"
    )
    parser.add_argument("--json-out", type=Path, help="also write the JSON to this file")
    parser.add_argument("--list", action="store_true", help="list the networks and exit")
    parser.add_argument("--debug", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)

    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        rows = [_row_from_json(r) for r in saved["rows"]]
        _print(rows, args, saved["target"], saved["size"])
        return 0
    specs = _select(all_specs(), args.models)
    if args.list:
        for s in specs:
            print(f"{s.family:12s} {s.name}")
        return 0
    vision = import_vision() if any(s.family != "everyday" for s in specs) else None
    missing = vision if isinstance(vision, str) else ""
    if missing:
        print(f"torchvision/timm rows skipped: {missing}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ran-edge-coverage-") as tmp:
        for i, spec in enumerate(specs, 1):
            if missing and spec.family != "everyday":
                rows.append(Row(spec.name, spec.family, skipped=missing))
                continue
            work = Path(tmp) / spec.name
            row = run_one(spec, args.size, args.target, args.calib_samples, work)
            rows.append(row)
            print(
                f"[{i}/{len(specs)}] {spec.name}: {row.status} ({row.seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
            if args.json_out:  # after every row: a long run that dies keeps what it measured
                args.json_out.write_text(
                    json.dumps(_payload(rows, args.target, args.size), indent=2)
                )
            gc.collect()
    _print(rows, args, args.target, args.size)
    return 0


def _print(rows: list[Row], args: argparse.Namespace, target: str, size: int) -> None:
    if args.json:
        print(json.dumps(_payload(rows, target, size), indent=2))
    elif args.markdown:
        print(markdown_table(rows))
    else:
        print_table(rows, target, size)


def _payload(rows: list[Row], target: str, size: int) -> dict:
    return {
        "target": target,
        "size": size,
        "summary": summary_line(rows),
        "rows": [asdict(r) | {"status": r.status} for r in rows],
    }


def _row_from_json(data: dict) -> Row:
    fields = {k: v for k, v in data.items() if k != "status"}
    fields["input_shape"] = tuple(fields.get("input_shape", ()))
    fields["fallbacks"] = [Fallback(**f) for f in fields.get("fallbacks", [])]
    return Row(**fields)


if __name__ == "__main__":
    sys.exit(main())
