"""RepNAS on real labelled data: plain conv vs all-branch DBB vs searched ODBB, same deploy net.

    .venv/bin/python benchmarks/repnas_digits.py [--epochs 6] [--width 8] [--budget 2]
                                                 [--seeds 0,1,2] [--head gap] [--json]

A small CNN (four 3x3 conv + BN + ReLU layers, widths w, 2w, 2w, 2w, two of them stride 2,
then a global-average-pool or flatten head and a Linear) on scikit-learn's digits upsampled
to 16x16 (1,400 train, 397 held out), trained three ways for the same number of epochs
with the same optimiser, data order and initial kxk weights:

- plain: the network as written;
- DBB: every 3x3 conv (+BN) replaced by all candidate branches (1x1, 3x3, 1x1-3x3,
  1x1-avg, 1x3, 3x1, identity where shapes allow), summed, nothing searched;
- ODBB: the same blocks gated by architecture weights, top-`budget` branches per layer
  (`ran_edge.shrink.repnas.search_branches`: one stage, budget reached by fading the rest).

All three deploy to the same network (four 3x3 convs with bias, BN folded); the script
checks the deploy architectures are identical, that each merge is exact in float64
(`deploy_verified`), then compiles each variant's seed-0 deploy model to int8 and runs
Vela for ethos-u55-128: the cycles must agree up to weight compression. Held-out accuracy
is reported per seed, as mean, std and min-max. Everything is seeded; one intra-op thread.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ran_edge.blocks import to_deploy
from ran_edge.convert.export import export_float_tflite
from ran_edge.convert.fidelity import _run as run_tflite
from ran_edge.convert.quantize import quantize_int8
from ran_edge.shrink.distill import TrainConfig, accuracy, train_student
from ran_edge.shrink.repnas import deploy_verified, find_sites, search_branches, to_searchable
from ran_edge.targets.ethos_u.profile import profile_ethos_u
from ran_edge.targets.loading import resolve_target

SIZE = 16
INPUT_SHAPE = (1, 1, SIZE, SIZE)
TARGET = "ethos-u55-128"
VARIANTS = ("plain", "DBB", "ODBB")


def digits(seed: int = 0, size: int = SIZE) -> tuple[np.ndarray, ...]:
    """(train x, train y, test x, test y): 1,400 / 397 digits, N x 1 x size x size in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).numpy()
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


def conv_bn_relu(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class SmallCNN(nn.Module):
    """16x16 -> 16 -> 8 -> 8 -> 4 with 3x3 conv + BN + ReLU, then pool (or flatten) + Linear."""

    def __init__(self, width: int = 8, head: str = "gap") -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            conv_bn_relu(1, w, 1),
            conv_bn_relu(w, 2 * w, 2),
            conv_bn_relu(2 * w, 2 * w, 1),
            conv_bn_relu(2 * w, 2 * w, 2),
        )
        self.head = head
        features = 2 * w if head == "gap" else 2 * w * (SIZE // 4) ** 2
        self.classifier = nn.Linear(features, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.mean(dim=(2, 3)) if self.head == "gap" else torch.flatten(x, 1)
        return self.classifier(x)


@dataclass(frozen=True)
class Run:
    variant: str
    seed: int
    accuracy_pct: float
    chosen: dict[str, list[str]]  # per layer (ODBB; every branch for DBB; empty for plain)
    merge_float64_max_rel_err: float | None
    seconds: float


def train_variant(
    variant: str, seed: int, args: argparse.Namespace, data: tuple
) -> tuple[Run, nn.Module]:
    """Train one variant from the seed's initial weights; its verified deploy model."""
    train_x, train_y, test_x, test_y = data
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(args.width, args.head)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, seed=seed, progress=False)
    start = time.perf_counter()
    chosen: dict[str, list[str]] = {}
    err = None
    if variant == "plain":
        train_student(model, train_x, labels=train_y, config=config, description="plain")
        deploy = to_deploy(model)
    else:
        budget = None if variant == "DBB" else args.budget
        finetune = args.finetune if variant == "ODBB" else 0  # within the same epochs
        config = replace(config, epochs=args.epochs - finetune)
        model = to_searchable(copy.deepcopy(model), find_sites(model), budget, seed=seed)
        start_fade, end_fade = (float(v) for v in args.fade.split(","))
        outcome = search_branches(
            model,
            train_x,
            train_y,
            config=config,
            arch_lr=args.arch_lr,
            noise=args.noise,
            fade_start=start_fade,
            fade_end=end_fade,
        )
        chosen = {layer.path: list(layer.chosen) for layer in outcome.layers}
        if finetune:
            tune = replace(config, epochs=finetune, seed=seed + 1)
            train_student(model, train_x, labels=train_y, config=tune, description="fine-tune")
        deploy, check = deploy_verified(model, INPUT_SHAPE)
        err = check.model_float64.max_rel_err
    seconds = time.perf_counter() - start
    acc = 100 * accuracy(deploy, test_x, test_y)
    return Run(variant, seed, acc, chosen, err, round(seconds, 1)), deploy


def architecture(deploy: nn.Module) -> list[tuple]:
    """What Vela sees of a deploy model: each leaf module's type and parameter shapes."""
    return [
        (type(m).__name__, *(tuple(p.shape) for p in m.parameters(recurse=False)))
        for m in deploy.modules()
        if not list(m.children()) and not isinstance(m, nn.Identity)
    ]


def vela_cycles(deploy: nn.Module, calib_x: np.ndarray, test_x, test_y, out: Path) -> dict:
    """int8 (calibrated on training digits) -> Vela on TARGET: cycles, and int8 accuracy."""
    float_tflite = export_float_tflite(deploy.eval(), INPUT_SHAPE)
    int8 = quantize_int8(float_tflite, np.ascontiguousarray(calib_x.transpose(0, 2, 3, 1)))
    path = out / "model_int8.tflite"
    out.mkdir(parents=True, exist_ok=True)
    path.write_bytes(int8)
    vela = profile_ethos_u(path, resolve_target(TARGET), out / "vela").vela
    logits = run_tflite(int8, np.ascontiguousarray(test_x.transpose(0, 2, 3, 1)))
    return {
        "cycles_total": vela.summary.cycles_total,
        "cycles_npu": vela.summary.cycles_npu,
        "npu_ops": vela.npu_ops,
        "cpu_ops": vela.cpu_ops,
        "encoded_weights_bytes": vela.summary.encoded_weights_bytes,
        "int8_accuracy_pct": round(100 * float((logits.argmax(1) == test_y).mean()), 2),
    }


def summarise(runs: list[Run], variant: str) -> dict:
    accs = [r.accuracy_pct for r in runs if r.variant == variant]
    return {
        "mean": round(statistics.mean(accs), 2),
        "std": round(statistics.stdev(accs), 2) if len(accs) > 1 else 0.0,
        "min": round(min(accs), 2),
        "max": round(max(accs), 2),
        "per_seed": [round(a, 2) for a in accs],
        "train_seconds": round(sum(r.seconds for r in runs if r.variant == variant), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--head", choices=["gap", "flatten"], default="gap")
    parser.add_argument("--budget", type=int, default=2, help="ODBB branches per layer")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--arch-lr", type=float, default=0.05)
    parser.add_argument("--noise", type=float, default=0.0, help="logistic noise on alpha")
    parser.add_argument("--fade", default="0.3,0.7", help="START,END of the fade-out")
    parser.add_argument(
        "--finetune", type=int, default=0, help="of --epochs, ODBB fine-tune epochs after search"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-vela", dest="vela", action="store_false")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    data = digits()
    runs: list[Run] = []
    deploys: dict[str, nn.Module] = {}
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    for seed in seeds:
        for variant in variants:
            run, deploy = train_variant(variant, seed, args, data)
            runs.append(run)
            deploys.setdefault(variant, deploy)  # the first seed's, for Vela
    shapes = {v: architecture(d) for v, d in deploys.items()}
    same_architecture = all(s == next(iter(shapes.values())) for s in shapes.values())
    assert same_architecture, shapes
    npu = {}
    if args.vela:
        with tempfile.TemporaryDirectory() as tmp:
            for variant, deploy in deploys.items():
                npu[variant] = vela_cycles(
                    deploy, data[0][:128], data[2], data[3], Path(tmp) / variant
                )
    result = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "input_shape": list(INPUT_SHAPE),
        "target": TARGET,
        "accuracy_pct": {v: summarise(runs, v) for v in variants},
        "vela_seed0": npu,
        "same_deploy_architecture": same_architecture,
        "deploy_convs": sum(
            isinstance(m, nn.Conv2d) for m in next(iter(deploys.values())).modules()
        ),
        "runs": [asdict(r) for r in runs],
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result)


def print_result(result: dict) -> None:
    s = result["settings"]
    print(
        f"digits {SIZE}x{SIZE}, SmallCNN width {s['width']} ({s['head']} head), {s['epochs']} "
        f"epochs, lr {s['lr']}, seeds {s['seeds']}, ODBB budget {s['budget']} (noise "
        f"{s['noise']}, fade {s['fade']}, fine-tune {s['finetune']} of the epochs)"
    )
    header = f"{'variant':<8} {'acc mean %':>10} {'std':>6} {'min-max':>13}   per seed"
    if result["vela_seed0"]:
        header += f"   {'Vela cycles':>11} {'int8 acc %':>10} {'weights B':>9}"
    print(header)
    for variant, acc in result["accuracy_pct"].items():
        line = (
            f"{variant:<8} {acc['mean']:>10.2f} {acc['std']:>6.2f} "
            f"{acc['min']:>6.2f}-{acc['max']:<6.2f}   {', '.join(map(str, acc['per_seed']))}"
        )
        vela = result["vela_seed0"].get(variant)
        if vela:
            line += (
                f"   {vela['cycles_total']:>11,} {vela['int8_accuracy_pct']:>10.2f} "
                f"{vela['encoded_weights_bytes']:>9,}"
            )
        print(line)
    print(
        f"deploy: {result['deploy_convs']} convs, identical architecture for all variants: "
        f"{result['same_deploy_architecture']}"
    )
    for run in result["runs"]:
        if run["variant"] == "ODBB":
            print(
                f"ODBB seed {run['seed']}: "
                + "; ".join(f"{p}: {'+'.join(c)}" for p, c in run["chosen"].items())
            )
    print(f"total {result['seconds']} s")


if __name__ == "__main__":
    main()
