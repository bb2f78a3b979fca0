"""DepthShrinker on real labelled data: scikit-learn's digits, a TinyMBNet, CPU, ~1 minute.

    .venv/bin/python benchmarks/shrink_digits.py [--remove-ratio 0.5] [--epochs 5] [--json]

Trains `tiny_mbnet` (inverted residuals from ran_edge.blocks) on 1,400 digits upsampled
to 32x32, then: gate search (label-free: distilling the trained model), activations
removed, label-free recovery (distillation on the unlabelled training images; labels
are used only to score), collapse by the MAC cost, int8 through ran_edge.build.
Accuracy is on the 397 held-out digits at every stage; the int8 figure runs the int8
TFLite in LiteRT. MACs and params are those of each stage's deploy form (BN folded),
which is what ships. The collapsed model must give exactly the unmerged model's
predictions: the script asserts it. Then both deploy models go through Vela for
ethos-u55-128: cycles, and MAC utilisation of each collapsed block beside the block it
replaced. Everything is seeded; one intra-op thread (these tensors are small).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ran_edge.blocks import to_deploy
from ran_edge.build.convert import convert_model
from ran_edge.build.many import build_target
from ran_edge.calib import CalibrationData
from ran_edge.convert.fidelity import _run as run_tflite
from ran_edge.models import count_macs, create_model
from ran_edge.models.loading import LoadedModel
from ran_edge.shrink import (
    TrainConfig,
    accuracy,
    apply_plan,
    deploy_verified,
    plan_shrink,
    predict,
    resolve_cost,
    search_removal,
    shrinkable_blocks,
    train_student,
    vela_block_cost,
)
from ran_edge.shrink.depthshrink import ShrinkPlan, deploy_shrunk
from ran_edge.targets.loading import resolve_target

INPUT_SHAPE = (1, 1, 32, 32)
TARGET = "ethos-u55-128"


def digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, test x, test y): 1,400 / 397 digits, N x 1 x 32 x 32 in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] / 16.0
    x = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).numpy()
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    train, test = order[:1400], order[1400:]
    return x[train], y[train], x[test], y[test]


@dataclass(frozen=True)
class Row:
    stage: str
    accuracy_pct: float
    macs: int
    params: int


def params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def unmerged(shrunk: nn.Module, plan: ShrinkPlan) -> nn.Module:
    """The shrunk model deployed with no block collapsed (what it costs before merging)."""
    from dataclasses import replace

    blocks = tuple(replace(b, merged=False) for b in plan.blocks)
    return deploy_shrunk(shrunk, ShrinkPlan(blocks, plan.cost))


def int8_accuracy(deploy: nn.Module, name: str, calib_x, test_x, test_y):
    """Convert through the spine, run the int8 TFLite on the held-out digits."""
    calib = CalibrationData(calib_x, test_x[:32], "digits", "digits train split")
    converted = convert_model(LoadedModel(deploy, name, INPUT_SHAPE, "benchmark"), calib)
    logits = run_tflite(converted.int8_tflite, np.ascontiguousarray(test_x.transpose(0, 2, 3, 1)))
    return float((logits.argmax(1) == test_y).mean()), converted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remove-ratio", type=float, default=0.5)
    parser.add_argument("--train-epochs", type=int, default=8)
    parser.add_argument("--search-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5, help="recovery epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cost", choices=["macs", "vela"], default="macs", help="merge cost")
    parser.add_argument(
        "--no-cost-table",
        dest="cost_table",
        action="store_false",
        help="skip the per-block MACs-vs-Vela merge decisions (12 Vela compiles, ~20 s)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    train_x, train_y, test_x, test_y = digits(args.seed)

    model = create_model("tiny_mbnet")
    fit = TrainConfig(epochs=args.train_epochs, lr=3e-3, seed=args.seed)
    train_student(model, train_x, labels=train_y, config=fit, description="train")
    original = to_deploy(model)
    rows = [Row("float, original", 100 * accuracy(model, test_x, test_y), *cost(model, original))]

    search = search_removal(
        model,
        train_x,
        args.remove_ratio,
        config=TrainConfig(epochs=args.search_epochs, seed=args.seed),
    )
    plan = plan_shrink(
        model,
        search.removed,
        INPUT_SHAPE,
        cost=resolve_cost(args.cost, TARGET),
        cost_name=args.cost,
    )
    shrunk = apply_plan(model, plan)
    rows.append(
        Row(
            f"float, {len(plan.removed)} blocks' activations removed, no recovery",
            100 * accuracy(shrunk, test_x, test_y),
            *cost(shrunk, unmerged(shrunk, plan)),
        )
    )
    labelled = apply_plan(model, plan)
    train_student(
        shrunk,
        train_x,
        teacher=model,
        feature_paths=plan.removed,
        config=TrainConfig(epochs=args.epochs, seed=args.seed),
        description="recover (label-free)",
    )
    recovered = 100 * accuracy(shrunk, test_x, test_y)
    rows.append(
        Row(
            "float, label-free recovery (distillation)",
            recovered,
            *cost(shrunk, unmerged(shrunk, plan)),
        )
    )
    train_student(
        labelled,
        train_x,
        labels=train_y,
        config=TrainConfig(epochs=args.epochs, seed=args.seed),
        description="recover (labels)",
    )
    rows.append(
        Row(
            "float, recovery with labels (cross-entropy), for reference",
            100 * accuracy(labelled, test_x, test_y),
            *cost(labelled, unmerged(labelled, plan)),
        )
    )

    deploy, plan, check = deploy_verified(shrunk, plan, INPUT_SHAPE)
    merged = 100 * accuracy(deploy, test_x, test_y)
    same = torch.equal(predict(deploy, test_x).argmax(1), predict(shrunk, test_x).argmax(1))
    assert same and merged == recovered, (merged, recovered)
    assert check.equivalent, check
    rows.append(Row(f"float, {len(plan.merged)} blocks collapsed", merged, *cost(deploy, deploy)))

    original_int8, original_conv = int8_accuracy(
        original, "tiny_mbnet", train_x[:128], test_x, test_y
    )
    shrunk_int8, shrunk_conv = int8_accuracy(
        deploy, "tiny_mbnet_shrunk", train_x[:128], test_x, test_y
    )
    rows.append(Row("int8 (LiteRT), collapsed model", 100 * shrunk_int8, *cost(deploy, deploy)))
    rows.append(
        Row(
            "int8 (LiteRT), original model, for reference",
            100 * original_int8,
            *cost(original, original),
        )
    )

    npu = vela_comparison(original_conv, shrunk_conv, plan)
    decisions = cost_decisions(model) if args.cost_table else []
    result = {
        "cost_decisions": decisions,
        "removed": list(plan.removed),
        "merged": list(plan.merged),
        "plan": plan.to_dict(),
        "search_scores": search.scores,
        "rows": [asdict(r) for r in rows],
        "npu": npu,
        "deploy_vs_shrunk_max_rel_err": check.model.max_rel_err,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_result(result)


def cost(model: nn.Module, deploy: nn.Module) -> tuple[int, int]:
    """(MACs of `model`, counted at the aten level so the functional bias-aware padded
    depthwise conv counts too; params of its deploy form, BN folded)."""
    return count_macs(model, INPUT_SHAPE), params(deploy)


def vela_comparison(original, shrunk, plan: ShrinkPlan) -> dict:
    """Vela on TARGET for both models: totals, and each collapsed block before/after."""
    target = resolve_target(TARGET)
    with tempfile.TemporaryDirectory() as tmp:
        before = build_target(original, target, Path(tmp) / "a").report.to_dict()
        after = build_target(shrunk, target, Path(tmp) / "b").report.to_dict()
    rows_before = {r["path"]: r for r in before["modules"]["rows"]}
    rows_after = {r["path"]: r for r in after["modules"]["rows"]}
    blocks = [
        {
            "block": path,
            "cycles_before": rows_before[path]["cycles"],
            "cycles_after": rows_after[path]["cycles"],
            "mac_util_before_pct": round(rows_before[path]["mac_utilisation_pct"], 1),
            "mac_util_after_pct": round(rows_after[path]["mac_utilisation_pct"], 1),
        }
        for path in plan.merged
    ]
    totals = {
        key: (_metric(before, key), _metric(after, key))
        for key in ("cycles_total", "inferences_per_second", "mac_utilisation", "cpu_ops")
    }
    return {"target": TARGET, "totals": totals, "blocks": blocks}


def cost_decisions(model: nn.Module) -> list[dict]:
    """Every block removed, merge decided by MACs and by Vela cycles: where they disagree
    the hardware cost is the one that knows (a 5x5 collapse doubles MACs, runs faster)."""
    blocks = list(shrinkable_blocks(model))
    by_macs = plan_shrink(model, blocks, INPUT_SHAPE)
    by_vela = plan_shrink(
        model, blocks, INPUT_SHAPE, cost=vela_block_cost(TARGET), cost_name="cycles"
    )
    return [
        {
            "block": m.path,
            "macs": [m.cost_before, m.cost_after],
            "merge_by_macs": m.merged,
            "cycles": [v.cost_before, v.cost_after],
            "merge_by_vela": v.merged,
        }
        for m, v in zip(by_macs.blocks, by_vela.blocks, strict=True)
    ]


def _metric(report: dict, key: str):
    from ran_edge.report.metrics import metric_value

    return metric_value(report["metrics"], key)


def print_result(result: dict) -> None:
    print(f"removed: {', '.join(result['removed'])}; collapsed: {', '.join(result['merged'])}")
    for block in result["plan"]["blocks"]:
        print(f"  {block['path']}: {block['reason']}")
    print()
    print("| stage | held-out accuracy % | MACs | params |")
    print("|---|---:|---:|---:|")
    for row in result["rows"]:
        print(
            f"| {row['stage']} | {row['accuracy_pct']:.2f} | {row['macs']:,} | {row['params']:,} |"
        )
    npu = result["npu"]
    print(f"\n{npu['target']}: original -> shrunk")
    for key, (before, after) in npu["totals"].items():
        print(f"  {key}: {before:,.1f} -> {after:,.1f}")
    print("| collapsed block | cycles before | cycles after | MAC util % before | after |")
    print("|---|---:|---:|---:|---:|")
    for b in npu["blocks"]:
        print(
            f"| {b['block']} | {b['cycles_before']:,} | {b['cycles_after']:,} | "
            f"{b['mac_util_before_pct']} | {b['mac_util_after_pct']} |"
        )
    if result["cost_decisions"]:
        print(f"\nall blocks removed: collapse or not, by MACs and by Vela cycles ({TARGET})")
        print("| block | MACs chain -> merged | merge? | cycles chain -> merged | merge? |")
        print("|---|---:|---|---:|---|")
        for d in result["cost_decisions"]:
            (mb, ma), (cb, ca) = d["macs"], d["cycles"]
            by_macs, by_vela = ("yes" if d[k] else "no" for k in ("merge_by_macs", "merge_by_vela"))
            print(
                f"| {d['block']} | {mb:,.0f} -> {ma:,.0f} | {by_macs} | {cb:,.0f} -> {ca:,.0f} | {by_vela} |"
            )
    print(
        f"\ndeploy vs shrunk model max rel err {result['deploy_vs_shrunk_max_rel_err']:.1e}; "
        f"{result['seconds']} s"
    )


if __name__ == "__main__":
    main()
