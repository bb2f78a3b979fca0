"""How well does the CPU latency estimator predict networks of families it was not fitted on?

    .venv/bin/python benchmarks/cpu_estimator.py [--threads 1,2,all] [--per-op] [--repeat]
        [--cache DIR] [--timings FILE] [--write-host targets/host.toml]
    .venv/bin/python benchmarks/cpu_estimator.py --boards
    .venv/bin/python benchmarks/cpu_estimator.py --users [--cache DIR]

Default mode, on this machine (the `host` target):
1. builds the fit set exactly as `ran-edge calibrate-target` does (single-op micro-benchmarks
   and random op stacks, ran_edge/targets/cortex_a/microbench.py) and the held-out set
   (benchmarks/cpu_nets.py: MobileNetV2, EfficientNet-Lite0, VGG-style, ResNet, MobileNetV3-
   style SE/hard-swish and U-Net-style networks at several widths and resolutions), each
   through ran-edge's own export + int8 quantisation;
2. times every model in LiteRT + XNNPACK at each thread count (the least of three interleaved
   passes' medians, as calibrate-target does, so load on a shared machine spreads out);
3. fits the [cpu_model] on the fit set only, derives the uncertainty band as calibrate-target
   does (stacks held out in two folds), and predicts the held-out networks: per network, per
   thread count and per family the error, the share within +-10%, the mean signed error
   (bias), Spearman, and how many held-out timings the band covers;
4. prints where the error comes from: per op class, the scale that best explains the held-out
   residuals (non-negative least squares of measured on each class's estimated time), and with
   --per-op every op of every held-out network timed alone (ran_edge.convert.op_slices)
   against its own estimate, by op type and thread count; the share of a network's time its
   ops alone do not account for is the context effect (cache, fusion, dispatch).

--repeat times the held-out set a second time and prints how often the two agree within
+-10%: the ceiling this machine puts on the issue's "90% within +-10%".
--users judges the shipped targets/host.toml, unrefitted, on networks of users' kinds: two CNNs
trained on scikit-learn's digits and benchmarks/everyday_nets.py (1-channel keyword spotting,
transposed-conv decoder, PReLU/tanh, channel shuffle, ...), about a minute.
--timings FILE keeps the timings (JSON) so a model change can be re-judged without re-timing;
delete it after changing the models. --boards fits rpi3/4/5 to published figures (below).
About 5 minutes on 2 cores in default mode (models cached: 2), plus 3 with --per-op.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import torch
from cpu_nets import FAMILIES, held_out_networks
from rich.console import Console
from rich.table import Table
from torch import nn

from ran_edge.convert.tflite_ops import read_op_costs
from ran_edge.quiet import captured_output
from ran_edge.targets.cortex_a.batch_timing import measure_samples_here
from ran_edge.targets.cortex_a.calibrate import (
    MIN_SECONDS,
    ROUNDS,
    Sample,
    band_from_ratios,
    build_calibration_models,
    cpu_model_table,
    fit,
    held_out_ratios,
    is_stack,
    predict,
    spearman,
    stats,
    with_cpu_model,
    with_tile,
)
from ran_edge.targets.cortex_a.estimate import cost_class, estimate_ops
from ran_edge.targets.cortex_a.microbench import build_int8
from ran_edge.targets.cortex_a.spec import CpuModelParams, UncertaintyBand
from ran_edge.targets.loading import resolve_target

console = Console(stderr=False, width=130)


# --- building and timing -----------------------------------------------------------------------


def _eval(m: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    return m.eval()


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


Model = tuple[str, bytes, tuple]


def build_all(cache: Path | None) -> tuple[list[Model], list[Model]]:
    start = time.perf_counter()
    with console.status("building the fit set (micro-benchmarks and random stacks) ..."):
        if cache is not None and (cache / "fit").is_dir():
            fit_models = [
                (p.stem, p.read_bytes(), tuple(read_op_costs(p.read_bytes())))
                for p in sorted((cache / "fit").glob("*.tflite"))
            ]
        else:
            fit_models = build_calibration_models(quick=False)
            if cache is not None:
                (cache / "fit").mkdir(parents=True, exist_ok=True)
                for name, data, _ in fit_models:
                    (cache / "fit" / f"{name}.tflite").write_bytes(data)
    held = []
    with console.status("building the held-out networks ..."):
        for name, module, shape in held_out_networks():
            data = _cached(cache, name, lambda m=module, s=shape: build_int8(_eval(m), s))
            held.append((name, data, tuple(read_op_costs(data))))
    console.print(
        f"built {len(fit_models)} fit + {len(held)} held-out int8 models "
        f"in {time.perf_counter() - start:.0f} s"
    )
    return fit_models, held


def timed(fit_models: list[Model], held: list[Model], threads: list[int], store: dict) -> tuple:
    """Fit and held-out samples, from `store` when it holds them all, else timed now.

    Both sets are timed in one batch, their passes interleaved: a machine whose speed drifts
    between phases would otherwise bias one set against the other."""
    models = fit_models + held
    wanted = [f"{name}@{t}" for name, _, _ in models for t in threads]
    if not all(w in store for w in wanted):
        with console.status(f"timing {len(wanted)} models x threads, {ROUNDS} passes ..."):
            samples = measure_samples_here(models, threads, rounds=ROUNDS, min_seconds=MIN_SECONDS)
        store.update({f"{s.name}@{s.threads}": s.measured_ms for s in samples})
    costs = {name: c for name, _, c in models}

    def samples_of(group: list[Model]) -> list[Sample]:
        return [Sample(n, costs[n], t, store[f"{n}@{t}"]) for n, _, _ in group for t in threads]

    return samples_of(fit_models), samples_of(held)


# --- judging -------------------------------------------------------------------------------------


def _err(p: float, m: float) -> float:
    return (p - m) / m * 100


def _summary_row(table: Table, label: str, pred: list[float], meas: list[float], band) -> None:
    errors = [_err(p, m) for p, m in zip(pred, meas, strict=True)]
    within = sum(abs(e) <= 10 for e in errors)
    covered = sum(band.low <= m / p <= band.high for p, m in zip(pred, meas, strict=True))
    table.add_row(
        label,
        str(len(errors)),
        f"{within}/{len(errors)} ({100 * within / len(errors):.0f}%)",
        f"{statistics.fmean(errors):+.1f}",
        f"{statistics.median(abs(e) for e in errors):.1f}",
        f"{max(abs(e) for e in errors):.1f}",
        f"{spearman(pred, meas):.3f}",
        f"{covered}/{len(errors)} ({100 * covered / len(errors):.0f}%)",
    )


def class_times(sample: Sample, spec, params: CpuModelParams) -> dict[str, float]:
    """Estimated ms per op class (plus the per-invoke overhead) for one sample."""
    est = estimate_ops(list(sample.costs), spec, params, sample.threads)
    out: dict[str, float] = defaultdict(float)
    out["invoke"] = 1e3 * est.invoke_cycles / est.clock_hz
    for row in est.ops:
        out[row.op_class] += 1e3 * row.cycles / est.clock_hz
    return out


def class_scales(samples: list[Sample], spec, params: CpuModelParams) -> dict[str, float]:
    """The per-class factor that best explains measured = sum(factor x estimated class time)."""
    from scipy.optimize import nnls

    rows = [class_times(s, spec, params) for s in samples]
    classes = sorted({k for r in rows for k, v in r.items() if v > 0})
    a = np.array([[r.get(k, 0.0) for k in classes] for r in rows])
    b = np.array([s.measured_ms for s in samples])
    w = 1 / b  # relative errors: every network counts alike
    x, _ = nnls(a * w[:, None], b * w)
    share = a.sum(0) / a.sum()
    return {k: (float(v), float(sh)) for k, v, sh in zip(classes, x, share, strict=True)}


def per_op_residuals(held: list[Model], threads: list[int], spec, params) -> None:
    """Every op of every held-out network timed alone, against its own one-op estimate."""
    from ran_edge.convert.op_slices import slice_ops

    pieces, whole = [], []
    for name, data, costs in held:
        whole.append((name, data, costs))
        for piece, cost in zip(slice_ops(data), costs, strict=True):
            pieces.append((f"{name}#{piece.index}", piece.model, (cost,)))
    with console.status(f"timing {len(pieces)} held-out ops alone, each in a one-op model ..."):
        alone = measure_samples_here(
            [(n, d, tuple(read_op_costs(d))) for n, d, _ in pieces],
            threads,
            rounds=1,
            min_seconds=0.02,
        )
    by_type: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    sums: dict[tuple[str, int], float] = defaultdict(float)
    for (name, _data, (cost,)), s in zip([p for p in pieces for _ in threads], alone, strict=True):
        kind = cost_class(cost)
        one = predict(s, spec, params)
        label = "PAD (fused)" if kind == "fused" else cost.op
        by_type[(label, s.threads)].append((one, s.measured_ms))
        if kind != "fused":
            sums[(name.split("#")[0], s.threads)] += s.measured_ms
    table = Table(title="each op timed alone vs its one-op estimate", title_justify="left")
    for col in (
        "op",
        "threads",
        "ops",
        "measured ms",
        "estimated ms",
        "est / meas",
        "median err %",
    ):
        table.add_column(col, justify="left" if col == "op" else "right")
    for (op, t), pairs in sorted(by_type.items(), key=lambda kv: -sum(m for _, m in kv[1])):
        est, meas = sum(p for p, _ in pairs), sum(m for _, m in pairs)
        med = statistics.median(_err(p, m) for p, m in pairs)
        table.add_row(
            op,
            str(t),
            str(len(pairs)),
            f"{meas:.3f}",
            f"{est:.3f}",
            f"{est / meas:.2f}",
            f"{med:+.1f}",
        )
    console.print(table)
    timed_whole = {(s.name, s.threads): s.measured_ms for s in measure_samples_here(whole, threads)}
    for t in threads:
        shares = [
            (timed_whole[(n, t)] - sums[(n, t)]) / timed_whole[(n, t)] * 100 for n, _, _ in held
        ]
        console.print(
            f"context effect, {t} thread(s): a network's time minus its ops' time alone is "
            f"{statistics.median(shares):+.1f}% of it (median; each op alone pays one invoke; "
            "fused PADs count 0)"
        )


def repeatability(held: list[Model], first: list[Sample], threads: list[int]) -> None:
    """The held-out set timed once more, right after: how often the machine agrees with
    itself within +-10% is the ceiling on how often any estimate can."""
    with console.status(f"timing the {len(first)} held-out timings again ..."):
        again = measure_samples_here(held, threads, rounds=ROUNDS, min_seconds=MIN_SECONDS)
    second = {(s.name, s.threads): s.measured_ms for s in again}
    diffs = [_err(second[(s.name, s.threads)], s.measured_ms) for s in first]
    for t in threads:
        per_t = [d for d, s in zip(diffs, first, strict=True) if s.threads == t]
        within = sum(abs(d) <= 10 for d in per_t)
        console.print(
            f"repeatability at {t} thread(s): {within}/{len(per_t)} held-out timings agree "
            f"with a second timing within +-10% (median |diff| "
            f"{statistics.median(abs(d) for d in per_t):.1f}%, worst {max(map(abs, per_t)):.1f}%)"
        )
    within = sum(abs(d) <= 10 for d in diffs)
    console.print(
        f"repeatability, all thread counts: {within}/{len(diffs)} within +-10%: no estimate "
        "can be shown within +-10% more often than the machine agrees with itself"
    )


def host_mode(args: argparse.Namespace) -> None:
    target = resolve_target("host")
    spec = target.cpu
    threads = sorted(
        {spec.cores if t == "all" else int(t) for t in args.threads.split(",")}
        & set(range(1, spec.cores + 1))
    ) or [1]
    t0 = time.perf_counter()
    fit_models, held_models = build_all(args.cache)
    store = json.loads(args.timings.read_text()) if args.timings and args.timings.is_file() else {}
    fit_samples, held_samples = timed(fit_models, held_models, threads, store)
    if args.timings:
        args.timings.write_text(json.dumps(store, indent=1, sort_keys=True))
    start = replace(CpuModelParams(), reference_clock_hz=1e9)
    with console.status("fitting (and once more per held-out fold of stacks) ..."):
        params = fit(fit_samples, spec, start)
        ratios = held_out_ratios(fit_samples, spec, with_tile(start, params), is_stack)
    band = band_from_ratios(
        ratios,
        f"benchmarks/cpu_estimator.py on this host ({spec.cores} cores): {len(ratios)} timings "
        "of random stacks, each predicted by a fit that held it out",
    )
    fit_stats = stats(fit_samples, spec, params)
    predicted = [predict(s, spec, params) for s in held_samples]
    measured = [s.measured_ms for s in held_samples]

    table = Table(
        title=f"held-out networks on this host ({spec.cores} cores)", title_justify="left"
    )
    for col in ("model", "family", "threads", "MMACs", "measured ms", "estimated ms", "error %"):
        table.add_column(col, justify="left" if col in ("model", "family") else "right")
    for s, p in zip(held_samples, predicted, strict=True):
        table.add_row(
            s.name,
            FAMILIES.get(s.name, "?"),
            str(s.threads),
            f"{sum(c.macs for c in s.costs) / 1e6:,.1f}",
            f"{s.measured_ms:.3f}",
            f"{p:.3f}",
            f"{_err(p, s.measured_ms):+.1f}",
        )
    console.print(table)

    summary = Table(
        title=f"estimator vs measured XNNPACK latency; band {band.low:.3f}-{band.high:.3f} "
        f"(x estimate, {band.coverage:.0%}) from {band.samples} held-out stack timings",
        title_justify="left",
    )
    for col in (
        "set",
        "timings",
        "within +-10%",
        "mean err %",
        "median |err| %",
        "worst |err| %",
        "Spearman",
        "in band",
    ):
        summary.add_column(col, justify="left" if col == "set" else "right")
    fit_pred = [predict(s, spec, params) for s in fit_samples]
    _summary_row(
        summary, "fit set (in-sample)", fit_pred, [s.measured_ms for s in fit_samples], band
    )
    _summary_row(summary, "held-out", predicted, measured, band)
    for t in threads:
        idx = [i for i, s in enumerate(held_samples) if s.threads == t]
        _summary_row(
            summary,
            f"  {t} thread(s)",
            [predicted[i] for i in idx],
            [measured[i] for i in idx],
            band,
        )
    for family in sorted(set(FAMILIES.values())):
        idx = [i for i, s in enumerate(held_samples) if FAMILIES.get(s.name) == family]
        if idx:
            _summary_row(
                summary,
                f"  {family}",
                [predicted[i] for i in idx],
                [measured[i] for i in idx],
                band,
            )
    console.print(summary)

    scales = Table(
        title="where the held-out error sits: per op class, the factor on its estimated time "
        "that best explains the measured networks (1.00: right)",
        title_justify="left",
    )
    for col in ("class", *(f"{t} thr factor" for t in threads), "share of estimate"):
        scales.add_column(col, justify="left" if col == "class" else "right")
    per_t = {
        t: class_scales([s for s in held_samples if s.threads == t], spec, params) for t in threads
    }
    for k in sorted({k for v in per_t.values() for k in v}):
        cells = [f"{per_t[t][k][0]:.2f}" if k in per_t[t] else "-" for t in threads]
        share = statistics.fmean(per_t[t][k][1] for t in threads if k in per_t[t])
        scales.add_row(k, *cells, f"{100 * share:.1f}%")
    console.print(scales)
    if args.per_op:
        per_op_residuals(held_models, threads, spec, params)
    if args.repeat:
        repeatability(held_models, held_samples, threads)
    console.print(f"fit: {fit_stats.samples} timings; total {time.perf_counter() - t0:.0f} s")
    if args.write_host is not None:
        text = with_cpu_model(
            target.source.read_text(),
            cpu_model_table(
                params,
                f"benchmarks/cpu_estimator.py --write-host on this host ({spec.cores} cores), "
                f"{date.today().isoformat()}",
                fit_stats,
                band=band,
            ),
        )
        args.write_host.write_text(text)
        console.print(f"wrote {args.write_host}")


# --- users' networks: trained digits CNNs and hand-written everyday nets, on targets/host.toml ---


def users_mode(args: argparse.Namespace) -> None:
    """The shipped host profile (no refit) against networks neither the fit nor the held-out
    set contains: two CNNs trained on scikit-learn's digits (int8 calibrated on real digits)
    and benchmarks/everyday_nets.py's hand-written nets at 64x64."""
    from digits_models import TrainSettings, build_model, digits_split, train
    from everyday_nets import EVERYDAY_NETS

    from ran_edge.convert.export import export_float_tflite
    from ran_edge.convert.quantize import quantize_int8

    target = resolve_target("host")
    threads = sorted({1, target.cpu.cores})
    data = digits_split(seed=0)
    models: list[Model] = []
    with console.status("training two digits CNNs and building the everyday nets ..."):
        for name in ("plain_cnn", "tiny_mbnet"):
            model = build_model(name, seed=0)
            train(model, data.train_x, data.train_y, TrainSettings(epochs=4))
            with captured_output():
                float_model = export_float_tflite(model.eval(), (1, 1, 32, 32))
                calib = data.train_x[:64].transpose(0, 2, 3, 1).astype(np.float32)
                q = quantize_int8(float_model, calib)
            models.append((f"trained_{name}", q, tuple(read_op_costs(q))))
        for name, make in EVERYDAY_NETS.items():
            torch.manual_seed(0)
            module, shape = make(64)
            q = _cached(
                args.cache, f"everyday_{name}", lambda m=module, s=shape: build_int8(m.eval(), s)
            )
            models.append((name, q, tuple(read_op_costs(q))))
    with console.status(f"timing {len(models)} networks x {len(threads)} thread counts ..."):
        samples = measure_samples_here(models, threads, rounds=ROUNDS, min_seconds=MIN_SECONDS)
    table = Table(title="users' networks: targets/host.toml vs measured", title_justify="left")
    for col in ("network", "threads", "measured ms", "estimated ms", "error %"):
        table.add_column(col, justify="left" if col == "network" else "right")
    errors = []
    for s in samples:
        est = predict(s, target.cpu, target.cpu_model.params)
        errors.append(_err(est, s.measured_ms))
        table.add_row(
            s.name, str(s.threads), f"{s.measured_ms:.3f}", f"{est:.3f}", f"{errors[-1]:+.1f}"
        )
    console.print(table)
    console.print(
        f"within +-10%: {sum(abs(e) <= 10 for e in errors)}/{len(errors)}, mean error "
        f"{statistics.fmean(errors):+.1f}%, median |error| {statistics.median(map(abs, errors)):.1f}%"
    )


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
        ratios = [
            ms / estimate_ops(costs[m], target.cpu, params, t).latency_ms for m, t, ms in points
        ]
        band = board_band(ratios, board)
        source = f"fitted to published figures ({board}), benchmarks/cpu_estimator.py --boards"
        table_text = cpu_model_table(params, source, None, reference_clock=False, band=band)
        console.print(table_text, markup=False, highlight=False)


def board_band(ratios: list[float], board: str) -> UncertaintyBand:
    """A board's band: its fit's own scatter (2 parameters on a few published points) combined
    with the estimator's held-out error on the host (targets/host.toml's band), in log space.

    The published points are in-sample and only two networks, so they alone would flatter the
    fit; the host band says how far a network of another family strays."""
    from scipy.stats import t as student_t

    host = resolve_target("host").cpu_model.band
    if host is None:
        raise SystemExit("targets/host.toml has no band: run --write-host targets/host.toml first")
    logs = np.log(ratios)
    n = len(logs)
    own = student_t.ppf(0.95, n - 2) * logs.std(ddof=2) * math.sqrt(1 + 1 / n)
    host_half = math.log(host.high / host.low) / 2
    half = math.hypot(own, host_half)
    centre = float(logs.mean())
    return UncertaintyBand(
        round(math.exp(centre - half), 4),
        round(math.exp(centre + half), 4),
        0.9,
        n,
        f"transferred: {board}'s fit to {n} published timings (in-sample, 2 parameters) "
        f"combined with the host's held-out band ({host.low:.3f}-{host.high:.3f})",
    )


RATE_NAMES = (
    "conv_macs_per_cycle",
    "depthwise_macs_per_cycle",
    "fc_macs_per_cycle",
    "elementwise_elements_per_cycle",
    "pool_elements_per_cycle",
    "reduce_elements_per_cycle",
    "copy_bytes_per_cycle",
    "memory_bytes_per_cycle",
    "depthwise_large_macs_per_cycle",
    "cold_weight_bytes_per_cycle",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2,all", help="thread counts; all = every core")
    parser.add_argument("--write-host", type=Path, help="write the fitted host profile here")
    parser.add_argument("--boards", action="store_true", help="fit rpi3/4/5 to published figures")
    parser.add_argument("--per-op", action="store_true", help="also time every held-out op alone")
    parser.add_argument(
        "--cache", type=Path, help="keep built models here between runs (delete it after changes)"
    )
    parser.add_argument("--timings", type=Path, help="keep the timings here (JSON) between runs")
    parser.add_argument(
        "--repeat", action="store_true", help="time the held-out set twice: the machine's noise"
    )
    parser.add_argument(
        "--users",
        action="store_true",
        help="judge targets/host.toml on trained digits CNNs and the hand-written everyday nets",
    )
    args = parser.parse_args(argv)
    if args.users:
        users_mode(args)
        return 0
    if args.boards:
        boards_mode(args.cache)
        return 0
    host_mode(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
