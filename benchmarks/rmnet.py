"""RMNet residual removal, measured: what dropping the ADDs costs and saves, per target.

    .venv/bin/python benchmarks/rmnet.py [--json]

Two small networks built here, 96x96x3, seeded weights with BatchNorm statistics measured
on random inputs (as the zoo does):

- a ResNet of basic blocks (ReLU): stem 3x3/2 -> [32, 32] -> [64 (projection), 64] ->
  [128 (projection), 128] -> pool -> linear; 4 identity shortcuts;
- the zoo's MobileNetV2-0.35 at 96x96 (ReLU6): 10 identity shortcuts.

For each: the deploy form (BN folded, residual ADDs) and the same after
`remove_residuals` (the ADDs carried away), both through ran-edge's own int8 conversion
(built-in photos for calibration), Vela on ethos-u55-128 and ethos-u65-256, and the
Cortex-A estimator on rpi4 (estimated, not measured). Printed: parameters, MACs, ADD ops
left, cycles, rpi4 latency, int8-vs-float SQNR and top-1 agreement of each model on 16
held-out photos (its own float model as reference), and the float difference between the
two forms: max |before - after| in float32 on the whole network, and the worst per-block
float64 check. About 90 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from ran_edge.blocks import ConvBN, to_deploy
from ran_edge.build.convert import convert_model
from ran_edge.build.many import build_target
from ran_edge.calib import load_calibration
from ran_edge.models import count_macs, count_params, load_model
from ran_edge.models.loading import LoadedModel
from ran_edge.models.reference_nets import BasicBlock
from ran_edge.models.registry import calibrate_batchnorm
from ran_edge.shrink import verify_equivalent
from ran_edge.shrink.rmnet import remove_residuals
from ran_edge.targets.loading import resolve_target

SHAPE = (1, 3, 96, 96)
NPU_TARGETS = ("ethos-u55-128", "ethos-u65-256")
CPU_TARGET = "rpi4"


class SmallResNet(nn.Module):
    """Basic-block ResNet for 96x96 inputs: three stages of two blocks, widths 32/64/128."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(ConvBN(3, 32, 3, 2), nn.ReLU())
        blocks, cin = [], 32
        for i, width in enumerate((32, 64, 128)):
            blocks += [BasicBlock(cin, width, 1 if i == 0 else 2), BasicBlock(width, width, 1)]
            cin = width
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def small_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = SmallResNet()
    calibrate_batchnorm(model, SHAPE)
    return model.eval()


@dataclass(frozen=True)
class Row:
    model: str
    form: str
    params: int
    macs: int
    add_ops: int
    cycles: dict[str, int]
    rpi4_ms: float
    int8_sqnr_db: float
    int8_top1_pct: float


def measure(name: str, form: str, module: nn.Module, calib, work: Path) -> Row:
    loaded = LoadedModel(module, f"{name}_{form}", SHAPE, "benchmark")
    converted = convert_model(loaded, calib, macs=count_macs(module, SHAPE))
    cycles = {}
    for target in NPU_TARGETS:
        report = build_target(converted, resolve_target(target), work).report
        cycles[target] = int(report.value("cycles_total"))
    cpu = build_target(converted, resolve_target(CPU_TARGET), work).report
    return Row(
        name,
        form,
        count_params(module),
        count_macs(module, SHAPE),
        converted.info.op_types.count("ADD"),
        cycles,
        float(cpu.value("latency")),
        float(converted.fidelity.sqnr_db),
        100.0 * float(converted.fidelity.top1_agreement),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    calib = load_calibration(None, SHAPE, num_samples=64, holdout=16, seed=0)
    nets = {
        "resnet (basic blocks)": small_resnet(),
        "mobilenet_v2_035_96": load_model("mobilenet_v2_035_96").module.eval(),
    }
    rows, checks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in nets.items():
            before = to_deploy(model)
            removal = remove_residuals(before)
            after = removal.model
            eq = verify_equivalent(before, after, SHAPE, seeds=3, rtol=1e-4)
            checks[name] = {
                "removed": len(removal.removed),
                "kept": [b.path for b in removal.blocks if not b.removed],
                "carry": {b.path: b.reason for b in removal.blocks},
                "max_abs_diff_float32": eq.max_abs_err,
                "max_rel_diff_float32": eq.max_rel_err,
                "worst_block_float64": max(
                    (b.max_abs_err for b in removal.blocks if b.max_abs_err is not None),
                    default=0.0,
                ),
            }
            for form, module in (("before", before), ("after", after)):
                rows.append(measure(name, form, module, calib, Path(tmp) / name))
    result = {
        "rows": [asdict(r) for r in rows],
        "checks": checks,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)


def print_table(result: dict) -> None:
    npu = " | ".join(f"{t} cycles" for t in NPU_TARGETS)
    print(
        f"| model | form | params | MACs | ADD ops | {npu} | rpi4 ms (est.) | int8 SQNR dB "
        "| int8 top-1 agree % |"
    )
    print("|---|---|---:|---:|---:|" + "---:|" * len(NPU_TARGETS) + "---:|---:|---:|")
    for r in result["rows"]:
        cycles = " | ".join(f"{r['cycles'][t]:,}" for t in NPU_TARGETS)
        print(
            f"| {r['model']} | {r['form']} | {r['params']:,} | {r['macs']:,} | {r['add_ops']} | "
            f"{cycles} | {r['rpi4_ms']:.2f} | {r['int8_sqnr_db']:.1f} | {r['int8_top1_pct']:.0f} |"
        )
    print()
    for name, c in result["checks"].items():
        kept = ", ".join(c["kept"]) or "none"
        print(
            f"{name}: {c['removed']} shortcuts removed (kept: {kept}); max |before - after| "
            f"{c['max_abs_diff_float32']:.2e} in float32 (rel {c['max_rel_diff_float32']:.1e}), "
            f"worst block {c['worst_block_float64']:.1e} in float64"
        )
        for path, why in c["carry"].items():
            print(f"  {path}: {why}")
    print(f"{result['seconds']} s")


if __name__ == "__main__":
    main()
