"""CPU operator search, measured: `advise --target rpi3 --apply` on trained networks.

    .venv/bin/python benchmarks/cpu_advise.py [--models digits,resnet18,repvgg_a0]
                                               [--epochs 6] [--recover-epochs 6] [--json]

Each network is trained on scikit-learn's digits (1,400 training images; the other 397
are held out), then goes through the same code as `ran-edge advise MODEL --target rpi3
--apply`: its dense convs (and inverted residuals) are costed with their stand-ins by the
rpi3 CPU estimator, the fastest saving at least 10% of its site is put in, and the new
operators are distilled from the trained network on the 1,400 training images (no labels).

- digits: `PlainCNN` of benchmarks/digits_models.py (32x32x1, five 3x3 convs);
- resnet18, repvgg_a0: the zoo's ResNet-18 and RepVGG-A0 (deploy form: plain 3x3 convs),
  10 classes, on the digits upsampled to 64x64x3 (trained in their train form; RepVGG is
  deployed after training).

Printed per network: sites replaced, rpi3 latency estimated before / after (the
estimator, at the profile's threads), host latency measured before / after (the
int8 files, 1 thread, LiteRT + XNNPACK, least of 6 rounds in 2 fresh processes), top-1
agreement of the advised int8-free PyTorch model with the original on the 397 held-out
digits, and both accuracies. Goal (issue): >= 2x estimated rpi3 speedup on one model at
>= 98% agreement on digits. Seeded throughout; about 17 min on 2 cores for all three.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from digits_models import (  # noqa: E402 - the benchmark folder is not a package
    DigitsSplit,
    TrainSettings,
    accuracy,
    digits_split,
    predict,
    train,
)

from ran_edge.advise.request import AdviseRequest  # noqa: E402
from ran_edge.advise.run import run_advise  # noqa: E402
from ran_edge.convert.tflite_ops import read_op_costs  # noqa: E402
from ran_edge.models import load_model  # noqa: E402
from ran_edge.progress import SILENT  # noqa: E402
from ran_edge.targets.cortex_a.batch_timing import measure_samples_here  # noqa: E402

HERE = Path(__file__).parent
TARGET = "rpi3"
ZOO_SIZE = 64


@dataclass(frozen=True)
class Network:
    """How to build one benchmark network: its factory in this folder and its data."""

    name: str
    factory: str  # a function of digits_models.py or this file
    zoo: bool  # 64x64x3 digits (zoo models) or 32x32x1 (digits model)


NETWORKS = {
    "digits": Network("digits", "digits_models.py:PlainCNN", zoo=False),
    "resnet18": Network("resnet18", "cpu_advise.py:resnet18_digits", zoo=True),
    "repvgg_a0": Network("repvgg_a0", "cpu_advise.py:repvgg_a0_digits", zoo=True),
}


def resnet18_digits() -> nn.Module:
    from ran_edge.models.reference_nets import ResNet18

    return ResNet18(num_classes=10)


def repvgg_a0_train() -> nn.Module:
    from ran_edge.models.reference_nets import RepVGG

    return RepVGG(num_classes=10)


def repvgg_a0_digits() -> nn.Module:
    """RepVGG-A0's deploy form (plain 3x3 convs with bias): what the benchmark advises on."""
    from ran_edge.blocks import to_deploy

    return to_deploy(repvgg_a0_train().eval())


@dataclass(frozen=True)
class Row:
    model: str
    sites: int
    replaced: list[str]
    forms: list[str]
    rpi3_ms_before: float
    rpi3_ms_after: float
    rpi3_speedup: float
    host_ms_before: float
    host_ms_after: float
    host_speedup: float
    agreement_pct: float
    teacher_accuracy_pct: float
    student_accuracy_pct: float
    train_s: float
    advise_s: float


def zoo_images(x: np.ndarray) -> np.ndarray:
    """Digits 32x32x1 -> 64x64x3 (bilinear, gray repeated)."""
    t = F.interpolate(torch.from_numpy(x), size=(ZOO_SIZE, ZOO_SIZE), mode="bilinear")
    return t.repeat(1, 3, 1, 1).numpy()


def seeded(make: Callable[[], nn.Module], seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return make()


def trained_teacher(net: Network, data: DigitsSplit, epochs: int, seed: int) -> nn.Module:
    """The network trained on the digits (RepVGG in its train form, then deployed)."""
    from digits_models import PlainCNN

    from ran_edge.blocks import to_deploy

    make = {"digits": PlainCNN, "resnet18": resnet18_digits, "repvgg_a0": repvgg_a0_train}
    model = seeded(make[net.name], seed)
    with one_thread():
        train(model, data.train_x, data.train_y, TrainSettings(epochs=epochs, seed=seed))
    return to_deploy(model.eval()) if net.name == "repvgg_a0" else model.eval()


class one_thread:
    """Training is seeded; one intra-op thread keeps its reductions in a fixed order."""

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: object) -> None:
        torch.set_num_threads(self.before)


def host_ms(files: list[Path]) -> list[float]:
    """Each int8 file timed here at 1 thread: least of 6 rounds over 2 fresh processes."""
    models = [(f.stem, f.read_bytes(), tuple(read_op_costs(f.read_bytes()))) for f in files]
    samples = measure_samples_here(models, [1], rounds=6, min_seconds=0.2)
    return [s.measured_ms for s in samples]


def int8_file(report: str) -> Path:
    (path,) = Path(report).parent.glob("*_int8.tflite")
    return path


def run_network(net: Network, args: argparse.Namespace, work: Path) -> Row:
    data = digits_split(seed=args.seed)
    if net.zoo:
        data = DigitsSplit(
            zoo_images(data.train_x), data.train_y, zoo_images(data.test_x), data.test_y
        )
    start = time.perf_counter()
    teacher = trained_teacher(net, data, args.epochs, args.seed)
    train_s = time.perf_counter() - start
    weights = work / f"{net.name}.pt"
    torch.save(teacher.state_dict(), weights)
    calib = work / f"{net.name}_train.npy"
    np.save(calib, data.train_x.astype(np.float32))
    request = AdviseRequest(
        model_spec=str(HERE / net.factory),
        target=TARGET,
        weights=weights,
        input_shape=(1, *data.train_x.shape[1:]),
        calib=str(calib),
        calib_samples=len(data.train_x),
        holdout=0,
        out=work / "build",
        cache_dir=args.cache_dir,
        apply=True,
        epochs=args.recover_epochs,
        seed=args.seed,
        progress=not args.json,
    )
    start = time.perf_counter()
    result = run_advise(request, SILENT)
    advise_s = time.perf_counter() - start
    advice, applied = result.advice, result.applied
    if applied is None:
        raise SystemExit(f"{net.name}: advise recommended nothing on {TARGET}")
    student = load_model(f"{applied.files['factory']}:make_model").module.eval()
    before, after = host_ms([int8_file(result.report), int8_file(applied.report)])
    teacher_top1 = predict(teacher, data.test_x).argmax(1)
    student_top1 = predict(student, data.test_x).argmax(1)
    return Row(
        model=net.name,
        sites=len(advice.blocks),
        replaced=list(applied.replaced),
        forms=[b.best.form.label() for b in advice.recommended if b.best],
        rpi3_ms_before=1e3 / advice.fps,
        rpi3_ms_after=1e3 / applied.fps,
        rpi3_speedup=applied.fps / advice.fps,
        host_ms_before=before,
        host_ms_after=after,
        host_speedup=before / after,
        agreement_pct=100.0 * float((teacher_top1 == student_top1).mean()),
        teacher_accuracy_pct=100.0 * accuracy(teacher, data.test_x, data.test_y),
        student_accuracy_pct=100.0 * accuracy(student, data.test_x, data.test_y),
        train_s=train_s,
        advise_s=advise_s,
    )


def print_table(rows: list[Row]) -> None:
    table = Table(
        title=f"advise --target {TARGET} --apply on networks trained on digits "
        "(agreement and accuracy on 397 held-out digits)"
    )
    columns = (
        "model",
        "replaced",
        "rpi3 est. ms before > after",
        "speedup",
        "host meas. ms before > after",
        "speedup",
        "agreement",
        "accuracy before > after",
    )
    for c in columns:
        table.add_column(c, justify="left" if c in ("model", "replaced") else "right")
    for r in rows:
        table.add_row(
            r.model,
            f"{len(r.replaced)}/{r.sites}",
            f"{r.rpi3_ms_before:.2f} > {r.rpi3_ms_after:.2f}",
            f"{r.rpi3_speedup:.2f}x",
            f"{r.host_ms_before:.3f} > {r.host_ms_after:.3f}",
            f"{r.host_speedup:.2f}x",
            f"{r.agreement_pct:.1f}%",
            f"{r.teacher_accuracy_pct:.1f}% > {r.student_accuracy_pct:.1f}%",
        )
    console = Console(width=160)
    console.print(table)
    for r in rows:
        forms = sorted(set(r.forms))
        console.print(
            f"{r.model}: {', '.join(forms)} (train {r.train_s:.0f} s, advise {r.advise_s:.0f} s)"
        )
    met = [r for r in rows if r.rpi3_speedup >= 2.0 and r.agreement_pct >= 98.0]
    goal = "met by " + ", ".join(r.model for r in met) if met else "NOT met"
    console.print(f"goal >= 2x estimated rpi3 speedup at >= 98% agreement: {goal}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(NETWORKS))
    parser.add_argument("--epochs", type=int, default=6, help="training epochs of each network")
    parser.add_argument("--recover-epochs", type=int, default=6, help="advise --epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=Path("build/cost-cache"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}: choose from {', '.join(NETWORKS)}")
    with tempfile.TemporaryDirectory(prefix="ran-edge-cpu-advise-") as tmp:
        rows = [run_network(NETWORKS[n], args, Path(tmp)) for n in names]
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
