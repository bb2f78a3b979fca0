"""How well does the CPU latency estimator rank and predict models it was not fitted on?

    .venv/bin/python benchmarks/cpu_estimator.py [--threads 1,2] [--write-host targets/host.toml]
    .venv/bin/python benchmarks/cpu_estimator.py --boards

Default mode, on this machine (the `host` target):
1. builds the fit set, the built-in micro-benchmarks `ran-edge calibrate-target` uses (single
   convs, depthwise, FC, add, pool, op chains, one reference-kernel op), and a held-out set of
   whole networks from other families, widths and resolutions (MobileNetV2 0.35-1.0,
   EfficientNet-Lite0, a VGG-style plain CNN, a ResNet-style net, a wide shallow net),
   each through ran-edge's own export + int8 quantisation;
2. times every model in LiteRT + XNNPACK at each thread count (median of three interleaved
   passes, so load on a shared machine spreads over all models);
3. fits the [cpu_model] parameters on the fit set only, predicts the held-out set, and prints
   per-model errors, Spearman rank correlation and median absolute percentage error, next to
   a MACs-only baseline (latency = MACs x one fitted constant).

--boards fits rpi4 and rpi5 to published TFLite 2.18 XNNPACK int8 latencies of EfficientDet-
Lite0/1 (and rpi3 through the published Pi 3 / Pi 4 ratio; see docs/cpu-targets.md) using
rebuilt proxies of those networks, and prints the [cpu_model] tables shipped in
targets/rpi*.toml. About 2 minutes on 2 cores in default mode, 1 minute with --boards.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from ran_edge.convert.tflite_ops import read_op_costs
from ran_edge.models import load_model
from ran_edge.quiet import captured_output
from ran_edge.targets.cortex_a.calibrate import (
    Sample,
    calibration_source,
    cpu_model_table,
    fit,
    measure_samples,
    predict,
    spearman,
    stats,
    with_cpu_model,
)
from ran_edge.targets.cortex_a.microbench import MICRO_BENCHMARKS, build_bench, build_int8
from ran_edge.targets.cortex_a.spec import CpuModelParams
from ran_edge.targets.loading import resolve_target

console = Console(stderr=False, width=120)


# --- held-out families, defined here so they share nothing with the fit set -----------------


def _cbr(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class PlainVgg(nn.Module):
    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        layers, cin = [], 3
        for w in widths:
            layers += [_cbr(cin, w), _cbr(w, w), nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a = _cbr(cin, cout, 3, stride)
        self.b = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.b(self.a(x)) + self.skip(x))


class MiniResNet(nn.Module):
    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.stem = _cbr(3, widths[0], 3, 2)
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            blocks += [Basic(cin, w, 1 if i == 0 else 2), Basic(w, w, 1)]
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(cin, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(
            torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1), 1)
        )


def _eval(m: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return m.eval()


def held_out() -> list[tuple[str, nn.Module, tuple[int, int, int, int]]]:
    """Whole networks: other families, widths and resolutions than anything in the fit set."""
    zoo = [
        ("mobilenet_v2_035", 96),
        ("mobilenet_v2_050", 128),
        ("mobilenet_v2", 96),
        ("mobilenet_v2_075", 160),
        ("efficientnet_lite0", 96),
        ("efficientnet_lite0", 160),
    ]
    nets = []
    for name, size in zoo:
        loaded = load_model(name, input_shape=(1, 3, size, size))
        nets.append((f"{name}@{size}", loaded.module, tuple(loaded.input_shape)))
    torch.manual_seed(0)
    nets += [
        ("vgg_16_32_64@64", PlainVgg((16, 32, 64)), (1, 3, 64, 64)),
        ("vgg_32_64_128@32", PlainVgg((32, 64, 128)), (1, 3, 32, 32)),
        ("resnet_32_64_128@64", MiniResNet((32, 64, 128)), (1, 3, 64, 64)),
        ("resnet_16_32@96", MiniResNet((16, 32)), (1, 3, 96, 96)),
        ("wide_shallow_128@32", nn.Sequential(_cbr(3, 128), _cbr(128, 128)), (1, 3, 32, 32)),
    ]
    return nets


# --- building and timing -----------------------------------------------------------------------


def _cached(cache: Path | None, name: str, build) -> bytes:
    """Build a model, or read it from `cache` (a folder of <name>.tflite) when it is there."""
    path = None if cache is None else cache / f"{name}.tflite"
    if path is not None and path.is_file():
        return path.read_bytes()
    with captured_output():
        data = build()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def build_all(quiet_console: Console, cache: Path | None = None) -> tuple[list, list]:
    fit_models, held = [], []
    start = time.perf_counter()
    with quiet_console.status("building the fit set (micro-benchmarks) ..."):
        for bench in MICRO_BENCHMARKS:
            data = _cached(cache, bench.name, lambda b=bench: build_bench(b))
            fit_models.append((bench.name, data, tuple(read_op_costs(data))))
    with quiet_console.status("building the held-out networks ..."):
        for name, module, shape in held_out():
            data = _cached(cache, name, lambda m=module, s=shape: build_int8(_eval(m), s))
            held.append((name, data, tuple(read_op_costs(data))))
    quiet_console.print(
        f"built {len(fit_models)} fit + {len(held)} held-out int8 models "
        f"in {time.perf_counter() - start:.0f} s"
    )
    return fit_models, held


def macs_baseline(fit_samples: list[Sample], held: list[Sample]) -> list[float]:
    """Latency = MACs x one constant fitted on the fit set (geometric mean of ms per MAC)."""

    def macs(s: Sample) -> int:
        return max(1, sum(c.macs for c in s.costs))

    ratios = [s.measured_ms / macs(s) for s in fit_samples]
    k = statistics.geometric_mean(ratios)
    return [k * macs(s) for s in held]


def _mdape(pred: list[float], meas: list[float]) -> float:
    return statistics.median(abs(p - m) / m * 100 for p, m in zip(pred, meas, strict=True))


def host_mode(threads_list: list[int], write_host: Path | None, cache: Path | None) -> None:
    target = resolve_target("host")
    spec = target.cpu
    threads_list = [t for t in threads_list if t <= spec.cores] or [1]
    t0 = time.perf_counter()
    fit_models, held_models = build_all(console, cache)
    with console.status("timing ..."):
        fit_samples = measure_samples(fit_models, threads_list)
        held_samples = measure_samples(held_models, threads_list)
    console.print(f"timed {len(fit_samples) + len(held_samples)} runs")
    start = replace(CpuModelParams(), reference_clock_hz=1e9)
    with console.status("fitting ..."):
        params = fit(fit_samples, spec, start)
    fit_stats = stats(fit_samples, spec, params)

    table = Table(
        title=f"held-out networks on this host ({spec.cores} cores)", title_justify="left"
    )
    for col in (
        "model",
        "threads",
        "MMACs",
        "measured ms",
        "estimated ms",
        "error %",
        "MACs-only ms",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    baseline = macs_baseline(fit_samples, held_samples)
    predicted = [predict(s, spec, params) for s in held_samples]
    for s, p, b in zip(held_samples, predicted, baseline, strict=True):
        macs = sum(c.macs for c in s.costs) / 1e6
        table.add_row(
            s.name,
            str(s.threads),
            f"{macs:,.1f}",
            f"{s.measured_ms:.3f}",
            f"{p:.3f}",
            f"{(p - s.measured_ms) / s.measured_ms * 100:+.1f}",
            f"{b:.3f}",
        )
    console.print(table)
    measured = [s.measured_ms for s in held_samples]
    summary = Table(title="estimator vs measured XNNPACK latency", title_justify="left")
    for col in ("set", "timings", "Spearman", "median abs error %"):
        summary.add_column(col, justify="left" if col == "set" else "right")
    summary.add_row(
        "fit set (in-sample)",
        str(fit_stats.samples),
        f"{fit_stats.spearman:.3f}",
        f"{fit_stats.median_abs_pct_error:.1f}",
    )
    summary.add_row(
        "held-out, estimator",
        str(len(measured)),
        f"{spearman(predicted, measured):.3f}",
        f"{_mdape(predicted, measured):.1f}",
    )
    for threads in threads_list:
        idx = [i for i, s in enumerate(held_samples) if s.threads == threads]
        p = [predicted[i] for i in idx]
        m = [measured[i] for i in idx]
        summary.add_row(
            f"  held-out, {threads} thread(s)",
            str(len(idx)),
            f"{spearman(p, m):.3f}",
            f"{_mdape(p, m):.1f}",
        )
    summary.add_row(
        "held-out, MACs-only baseline",
        str(len(measured)),
        f"{spearman(baseline, measured):.3f}",
        f"{_mdape(baseline, measured):.1f}",
    )
    console.print(summary)
    console.print(f"total {time.perf_counter() - t0:.0f} s")
    if write_host is not None:
        text = with_cpu_model(
            target.source.read_text(),
            cpu_model_table(
                params, calibration_source(f"this host ({spec.cores} cores)"), fit_stats
            ),
        )
        write_host.write_text(text)
        console.print(f"wrote {write_host}")


# --- boards: fit rpi4/rpi5 to published figures -------------------------------------------------

# TFLite 2.18 `benchmark_model`, XNNPACK, int8 EfficientDet-Lite0 (320x320) and -Lite1 (384x384),
# mean latency in ms by thread count, from github.com/NobuoTsukamoto/benchmarks:
# tensorflow/lite/efficentdet/results/RasPi4_64bit/efficientdet_latency_v2.18.0.txt and
# .../RasPi5/efficientdet_latency_v2.18.0.txt (Raspberry Pi OS 64-bit).
PUBLISHED_MS = {
    "rpi4": {
        "efficientdet_lite0": {1: 197.751, 2: 116.990, 3: 90.833, 4: 78.009},
        "efficientdet_lite1": {1: 372.260, 2: 213.295, 3: 161.690, 4: 138.299},
    },
    "rpi5": {
        "efficientdet_lite0": {1: 44.198, 2: 29.299, 3: 24.780, 4: 22.877},
        "efficientdet_lite1": {1: 81.633, 2: 52.584, 3: 42.918},
    },
}
# Raspberry Pi 3 (64-bit OS) over Raspberry Pi 4 (64-bit OS), same TFLite 2.5 int8 build, same
# models, by thread count: github.com/NobuoTsukamoto/benchmarks tensorflow/lite/efficentdet/
# efficientdet.md, "Latency mean (ms)", INT8 rows (RasPi3 64bit / RasPi4 64bit).
RPI3_OVER_RPI4 = {
    "efficientdet_lite0": {
        1: 624.07 / 344.03,
        2: 388.97 / 232.77,
        3: 317.03 / 143.85,
        4: 277.76 / 122.06,
    },
    "efficientdet_lite1": {
        1: 1131.02 / 546.90,
        2: 675.48 / 324.85,
        3: 532.03 / 251.86,
        4: 458.83 / 211.73,
    },
}
# What the published latencies are fitted with: one speed scale for all compute and memory
# rates (their ratios stay the profile's assumed defaults) and the thread efficiency.
BOARD_FITTED = ("parallel_efficiency",)


class SepConv(nn.Module):
    """EfficientDet's separable conv: depthwise 3x3 + pointwise, BN, ReLU6 (Lite)."""

    def __init__(self, cin: int, cout: int, act: bool = True) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, 1, 1, groups=cin, bias=False)
        self.pw = nn.Conv2d(cin, cout, 1, bias=True)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU6() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.pw(self.dw(x))))


class EfficientDetLiteProxy(nn.Module):
    """EfficientDet-Lite's compute graph (Tan, Pang, Le 2020; google/automl Lite variants):
    EfficientNet-Lite backbone, BiFPN (width W, D layers, levels P3-P7, weighted fusion),
    shared class (9 anchors x 90 classes) and box heads of depth 3. No NMS post-processing op:
    its (serial) time stays inside the fitted thread efficiency."""

    def __init__(self, depth_mult: float, width: int, layers: int) -> None:
        super().__init__()
        from ran_edge.models.efficientnet_lite import EfficientNetLite

        backbone = EfficientNetLite(width_mult=1.0, depth_mult=depth_mult)
        self.stem, self.blocks = backbone.stem, backbone.blocks
        strides, stride = [], 2
        for block in self.blocks:
            stride *= block.depthwise[0].stride[0]
            strides.append(stride)
        self.taps = [max(i for i, s in enumerate(strides) if s == want) for want in (8, 16, 32)]
        chans = [self.blocks[i].project[0].out_channels for i in self.taps]
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in chans)
        self.p6 = nn.Conv2d(chans[-1], width, 1)
        self.fpn = nn.ModuleList(
            nn.ModuleList(SepConv(width, width) for _ in range(8)) for _ in range(layers)
        )
        self.cls = nn.ModuleList(SepConv(width, width) for _ in range(3))
        self.cls_out = SepConv(width, 9 * 90, act=False)
        self.box = nn.ModuleList(SepConv(width, width) for _ in range(3))
        self.box_out = SepConv(width, 9 * 4, act=False)

    @staticmethod
    def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return nn.functional.interpolate(x, size=like.shape[-2:], mode="nearest")

    @staticmethod
    def _down(x: torch.Tensor) -> torch.Tensor:
        return nn.functional.max_pool2d(x, 3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        feats = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.taps:
                feats.append(x)
        p = [lat(f) for lat, f in zip(self.lateral, feats, strict=True)]
        p6 = self._down(self.p6(feats[-1]))
        p = [*p, p6, self._down(p6)]
        for nodes in self.fpn:  # fast normalised fusion: constant weights w / (sum w)
            td = [p[4]]
            for level, node in zip((3, 2, 1, 0), nodes[:4], strict=True):
                td.insert(0, node(0.5 * p[level] + 0.5 * self._up(td[0], p[level])))
            out = [td[0]]
            for level, node in zip((1, 2, 3), nodes[4:7], strict=True):
                out.append(node((p[level] + td[level] + self._down(out[-1])) / 3))
            out.append(nodes[7](0.5 * p[4] + 0.5 * self._down(out[-1])))
            p = out
        heads = []
        for level in p:
            c, b = level, level
            for layer in self.cls:
                c = layer(c)
            for layer in self.box:
                b = layer(b)
            heads.append(torch.flatten(self.cls_out(c), 1))
            heads.append(torch.flatten(self.box_out(b), 1))
        return torch.cat(heads, 1)


PROXIES = {
    "efficientdet_lite0": (lambda: EfficientDetLiteProxy(1.0, 64, 3), 320),
    "efficientdet_lite1": (lambda: EfficientDetLiteProxy(1.1, 88, 4), 384),
}


def boards_mode(cache: Path | None) -> None:
    """Fit rpi4 and rpi5 (and rpi3 via the published Pi 3 / Pi 4 ratio) to the figures above."""
    from scipy.optimize import least_squares

    from ran_edge.targets.cortex_a.estimate import estimate_ops

    costs = {}
    with console.status("building the EfficientDet-Lite proxies ..."):
        for name, (make, size) in PROXIES.items():
            data = _cached(cache, name, lambda m=make, s=size: build_int8(_eval(m()), (1, 3, s, s)))
            costs[name] = read_op_costs(data)
            macs = sum(c.macs for c in costs[name]) / 1e9
            console.print(f"{name} proxy: {macs:.2f} GMACs, {len(costs[name])} ops")
    published = dict(PUBLISHED_MS)
    published["rpi3"] = {
        model: {t: published["rpi4"][model][t] * RPI3_OVER_RPI4[model][t] for t in by_t}
        for model, by_t in RPI3_OVER_RPI4.items()
    }
    for board in ("rpi4", "rpi5", "rpi3"):
        target = resolve_target(board)
        base = CpuModelParams()

        def params_for(x, base=base):
            scale, efficiency = math.exp(x[0]), min(1.0, math.exp(x[1]))
            rates = {n: getattr(base, n) * scale for n in RATE_NAMES}
            return replace(base, parallel_efficiency=efficiency, **rates)

        points = [(m, t, ms) for m, by_t in published[board].items() for t, ms in by_t.items()]

        def residuals(x, points=points, target=target, params_for=params_for):
            params = params_for(x)
            return [
                math.log(estimate_ops(costs[m], target.cpu, params, t).latency_ms / ms)
                for m, t, ms in points
            ]

        result = least_squares(residuals, [0.0, math.log(0.8)], bounds=([-10, -5], [10, 0]))
        params = params_for(result.x)
        table = Table(title=f"{board}: published vs fitted (ms)", title_justify="left")
        for col in ("model", "threads", "published", "fitted", "error %"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for m, t, ms in points:
            est = estimate_ops(costs[m], target.cpu, params, t).latency_ms
            table.add_row(m, str(t), f"{ms:.1f}", f"{est:.1f}", f"{(est - ms) / ms * 100:+.1f}")
        console.print(table)
        console.print(f"scale {math.exp(result.x[0]):.4f}")
        source = f"fitted to published figures ({board}), benchmarks/cpu_estimator.py --boards"
        console.print(cpu_model_table(params, source, None, reference_clock=False))


RATE_NAMES = (
    "conv_macs_per_cycle",
    "depthwise_macs_per_cycle",
    "fc_macs_per_cycle",
    "elementwise_elements_per_cycle",
    "pool_elements_per_cycle",
    "reduce_elements_per_cycle",
    "copy_bytes_per_cycle",
    "memory_bytes_per_cycle",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--write-host", type=Path, help="write the fitted host profile here")
    parser.add_argument("--boards", action="store_true", help="fit rpi4/rpi5 to published figures")
    parser.add_argument(
        "--cache", type=Path, help="keep built models here between runs (delete it after changes)"
    )
    args = parser.parse_args(argv)
    if args.boards:
        boards_mode(args.cache)
        return 0
    host_mode([int(t) for t in args.threads.split(",")], args.write_host, args.cache)
    return 0


if __name__ == "__main__":
    sys.exit(main())
