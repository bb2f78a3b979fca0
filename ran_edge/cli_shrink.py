"""`ran-edge shrink`: DepthShrinker from the command line.

search gates (or take --remove) -> plan merges by a cost -> remove activations ->
recover (distillation on the calibration images, or cross-entropy with --labels-npz) ->
collapse -> verify -> write NAME.pt2 (+ .json, .state_dict.pt). Build the result with
`ran-edge build --model NAME.pt2`.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from ran_edge.cli_common import DEFAULT_TARGET, run_command
from ran_edge.errors import StageError, UsageError
from ran_edge.quiet import progress_stream

DEFAULT_CALIB_SAMPLES = 512
DEFAULT_HOLDOUT = 64


@click.command("shrink")
@click.argument("model_spec", metavar="MODEL")
@click.option("--weights", type=click.Path(path_type=Path), help="state_dict for MODEL.")
@click.option("--input-shape", help="N,C,H,W of the model input (default: the model's own).")
@click.option(
    "--remove-ratio",
    type=float,
    help="Fraction of shrinkable blocks whose activations to remove, chosen by a gate search.",
)
@click.option("--remove", "remove_list", help="Explicit blocks to remove, e.g. blocks.1,blocks.3.")
@click.option(
    "--calib",
    help="Unlabelled images for the search and the distillation: a calibration set name, "
    "folder, spec .toml or .npy/.npz (default: the built-in photos).",
)
@click.option(
    "--calib-samples",
    type=int,
    default=DEFAULT_CALIB_SAMPLES,
    show_default=True,
    help="Training images drawn from --calib.",
)
@click.option(
    "--holdout",
    type=click.IntRange(min=0),
    default=DEFAULT_HOLDOUT,
    show_default=True,
    help="Held-out images for the teacher-agreement figures.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Recovery epochs (0: no recovery).",
)
@click.option(
    "--search-epochs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Gate search epochs (with --remove-ratio).",
)
@click.option(
    "--labels-npz",
    type=click.Path(path_type=Path),
    help="Labelled data (.npz with x: N,C,H,W floats and y: N ints): search and recover "
    "with cross-entropy instead of distillation.",
)
@click.option(
    "--cost",
    "cost_name",
    type=click.Choice(["macs", "vela"]),
    default="macs",
    show_default=True,
    help="Merge a block only when this cost falls: MACs, or Vela cycles on --target.",
)
@click.option(
    "--target", default=DEFAULT_TARGET, show_default=True, help="Ethos-U target for --cost vela."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Output .pt2 (default: <model>_shrunk.pt2); .json and .state_dict.pt beside it.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data and training.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def shrink(
    model_spec,
    weights,
    input_shape,
    remove_ratio,
    remove_list,
    calib,
    calib_samples,
    holdout,
    epochs,
    search_epochs,
    labels_npz,
    cost_name,
    target,
    out,
    seed,
    as_json,
    quiet,
) -> None:
    """Remove activations from MODEL's inverted residuals and collapse them (DepthShrinker).

    \b
    Give either --remove-ratio R (a gate search picks the blocks) or --remove a.b,c.d.
    Each removed block is collapsed into one dense conv only when --cost says it is
    cheaper; the deploy model is verified against the trained shrunk model (borders
    included) and written as a .pt2 that `ran-edge build --model` accepts:
      ran-edge shrink tiny_mbnet --weights digits.pt --calib digits.npz --remove-ratio 0.5
      ran-edge build --model tiny_mbnet_shrunk.pt2 --calib digits.npz
    """

    def body() -> None:
        options = _Options.parse(
            remove_ratio, remove_list, calib_samples, input_shape, out, model_spec, seed
        )
        result = _run(
            options,
            model_spec,
            weights,
            calib,
            holdout,
            epochs,
            search_epochs,
            labels_npz,
            cost_name,
            target,
            quiet,
        )
        if as_json:
            click.echo(json.dumps(result, indent=2, allow_nan=False))
        else:
            _print_table(result)

    run_command(body)


class _Options:
    def __init__(self, ratio, remove, samples, shape, out, seed) -> None:
        self.ratio, self.remove, self.samples = ratio, remove, samples
        self.shape, self.out, self.seed = shape, out, seed

    @classmethod
    def parse(cls, ratio, remove_list, samples, shape_text, out, spec, seed) -> _Options:
        if (ratio is None) == (remove_list is None):
            raise UsageError(
                "give exactly one of --remove-ratio R (search which blocks to remove) or "
                "--remove a.b,c.d (remove these blocks)."
            )
        if ratio is not None and not 0.0 < ratio <= 1.0:
            raise UsageError(f"--remove-ratio must be in (0, 1], got {ratio}.")
        remove = None
        if remove_list is not None:
            remove = [p.strip() for p in remove_list.split(",") if p.strip()]
            if not remove:
                raise UsageError("--remove is empty; list module paths such as blocks.1,blocks.3.")
        if samples < 1:
            raise UsageError("--calib-samples must be at least 1.")
        if spec.endswith(".pt2"):
            raise UsageError(
                f"{spec} is an exported graph; shrinking needs the PyTorch module. Pass a zoo "
                "name or path/to/file.py:factory (with --weights)."
            )
        from ran_edge.model_files import spec_stem
        from ran_edge.shrink.artifacts import shrunk_paths

        out = Path(out) if out is not None else Path(f"{spec_stem(spec)}_shrunk.pt2")

        shrunk_paths(out)  # checks the suffix before any work
        return cls(ratio, remove, samples, _parse_shape(shape_text), out, seed)


def _parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(
            f"--input-shape {text!r} is not N,C,H,W integers (e.g. 1,3,224,224)."
        ) from None
    if len(shape) != 4 or min(shape) < 1 or shape[0] != 1:
        raise UsageError(f"--input-shape {text!r} must be 1,C,H,W with positive sizes.")
    return shape


def _load_labels(path: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise UsageError(f"labels file {path} does not exist.")
    try:
        data = np.load(path)
        x, y = np.asarray(data["x"], dtype=np.float32), np.asarray(data["y"])
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(
            f"cannot read {path} as labelled data ({type(exc).__name__}: {exc}); save it with "
            "np.savez(path, x=images_NCHW_float32, y=int_labels)."
        ) from None
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(shape[1:]):
        raise UsageError(
            f"{path}: x has shape {x.shape}, but the model takes N x {' x '.join(map(str, shape[1:]))}."
        )
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise UsageError(f"{path}: y must hold {len(x)} integer labels, got {y.shape} {y.dtype}.")
    return x, y.astype(np.int64)


@contextlib.contextmanager
def _stages(enabled: bool) -> Iterator:
    console = Console(file=progress_stream())

    @contextlib.contextmanager
    def stage(label: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        if enabled:
            console.print(
                f"[green]✓[/green] {label} [dim]({time.perf_counter() - start:.1f} s)[/dim]"
            )

    yield stage


def _run(
    opts: _Options,
    spec,
    weights,
    calib,
    holdout,
    epochs,
    search_epochs,
    labels_npz,
    cost_name,
    target,
    quiet,
) -> dict:
    from ran_edge.calib import load_calibration
    from ran_edge.models import count_params, load_model
    from ran_edge.shrink.adapt import to_shrinkable
    from ran_edge.shrink.artifacts import save_shrunk
    from ran_edge.shrink.cost import module_macs, resolve_cost
    from ran_edge.shrink.depthshrink import (
        apply_plan,
        check_removal,
        deploy_verified,
        plan_shrink,
        search_removal,
        shrinkable_blocks,
    )
    from ran_edge.shrink.distill import TrainConfig, agreement, train_student
    from ran_edge.shrink.gates import removal_count

    cost = resolve_cost(cost_name, target)  # validates the target before any work
    progress = not quiet
    with _stages(progress) as stage:
        with stage(f"load model {spec}"):
            loaded = load_model(spec, weights=weights, input_shape=opts.shape)
            shape = tuple(loaded.input_shape)
            teacher, converted = to_shrinkable(loaded.module)
            teacher.eval()
            candidates = shrinkable_blocks(teacher)
            if not candidates:
                raise UsageError(
                    f"{loaded.name} has no shrinkable blocks (ran_edge.blocks.InvertedResidual "
                    "with activations, or zoo MobileNetV2 / EfficientNet-Lite blocks)."
                )
        with stage("load calibration images"):
            data = load_calibration(
                calib, shape, num_samples=opts.samples, holdout=holdout, seed=opts.seed
            )
        x, y = (data.samples, None)
        if labels_npz is not None:
            x, y = _load_labels(Path(labels_npz), shape)
        config = TrainConfig(epochs=epochs, seed=opts.seed, progress=progress)
        search = None
        if opts.remove is not None:
            removed = check_removal(teacher, opts.remove)
        else:
            if removal_count(len(candidates), opts.ratio) == 0:
                raise UsageError(
                    f"--remove-ratio {opts.ratio} of {len(candidates)} shrinkable blocks removes "
                    f"none; use at least {1 / (2 * len(candidates)):.2f}."
                )
            search = search_removal(
                teacher,
                x,
                opts.ratio,
                labels=y,
                config=TrainConfig(epochs=search_epochs, seed=opts.seed, progress=progress),
            )
            removed = search.removed
            if progress:
                Console(file=progress_stream()).print(
                    f"[green]✓[/green] gate search: removing {', '.join(removed) or 'nothing'}"
                )
        with stage(f"plan merges by {cost_name}"):
            plan = plan_shrink(teacher, removed, shape, cost=cost, cost_name=cost_name)
        shrunk = apply_plan(teacher, plan)
        holdout_x = data.holdout
        before = agreement(shrunk, teacher, holdout_x) if len(holdout_x) else None
        recovery = None
        if epochs:
            recovery = train_student(
                shrunk,
                x,
                teacher=None if y is not None else teacher,
                labels=y,
                feature_paths=plan.removed if y is None else (),
                config=config,
                description="recover",
            )
        after = agreement(shrunk, teacher, holdout_x) if len(holdout_x) else None
        with stage("collapse + verify (borders included)"):
            deploy, plan, check = deploy_verified(shrunk, plan, shape)
            if not check.model.equivalent:
                raise StageError(
                    f"the deploy model differs from the shrunk model (max rel err "
                    f"{check.model.max_rel_err:.2e}); this is a bug, please report it."
                )
        result = {
            "model": loaded.name,
            "source": _source(spec, weights),
            "converted_blocks": converted,
            "plan": plan.to_dict(),
            "removed": list(plan.removed),
            "merged": list(plan.merged),
            "macs_before": module_macs(teacher, shape),
            "macs_after": module_macs(deploy, shape),
            "params_before": count_params(teacher),
            "params_after": count_params(deploy),
            "search_scores": search.scores if search is not None else None,
            "recovery": _recovery(recovery, y is not None),
            "holdout_agreement_before_recovery": _agreement(before),
            "holdout_agreement_after_recovery": _agreement(after),
            "verification": {
                "model_max_rel_err": check.model.max_rel_err,
                "blocks_max_rel_err": {p: e.max_rel_err for p, e in check.blocks.items()},
                "blocks_border_max_rel_err": {
                    p: e.border_max_rel_err for p, e in check.blocks.items()
                },
            },
        }
        with stage(f"write {opts.out}"):
            files = save_shrunk(deploy, shape, opts.out, result)
    result["files"] = {k: str(v) for k, v in vars(files).items()}
    return result


def _source(spec: str, weights: Path | None) -> dict:
    """The source model with absolute paths, so the saved .json rebuilds from anywhere."""
    path, sep, factory = spec.rpartition(":")
    if sep and path.endswith(".py"):
        spec = f"{Path(path).resolve()}:{factory}"
    return {"model": spec, "weights": str(Path(weights).resolve()) if weights else None}


def _recovery(train, labelled: bool) -> dict | None:
    if train is None:
        return None
    return {
        "loss": "cross-entropy" if labelled else "distillation (KL + feature MSE)",
        "epoch_losses": list(train.epoch_losses),
        "steps": train.steps,
        "device": train.device,
        "seconds": round(train.seconds, 2),
    }


def _agreement(value) -> dict | None:
    return None if value is None else {"kl": value.kl, "top1": value.top1_agreement}


def _print_table(result: dict) -> None:
    console = Console(width=None if sys.stdout.isatty() else 140)
    table = Table(
        title=f"shrink {result['model']} (cost: {result['plan']['cost']})", title_justify="left"
    )
    for column in ("block", "activations", "merged", "MACs before", "MACs after", "why"):
        table.add_column(column, justify="right" if column.startswith("MACs") else "left")
    for block in result["plan"]["blocks"]:
        table.add_row(
            block["path"],
            "removed" if block["removed"] else "kept",
            "yes" if block["merged"] else "no",
            f"{block['macs_before']:,}",
            f"{block['macs_after']:,}",
            block["reason"],
        )
    console.print(table)
    console.print(
        f"model MACs {result['macs_before']:,} -> {result['macs_after']:,}, params "
        f"{result['params_before']:,} -> {result['params_after']:,}"
    )
    for label, key in (
        ("before", "holdout_agreement_before_recovery"),
        ("after", "holdout_agreement_after_recovery"),
    ):
        value = result[key]
        if value is not None:
            console.print(
                f"held-out agreement with the original {label} recovery: top-1 "
                f"{100 * value['top1']:.1f}%, KL {value['kl']:.4f}"
            )
    check = result["verification"]
    blocks = check["blocks_border_max_rel_err"]
    worst_border = max(blocks.values()) if blocks else 0.0
    console.print(
        f"deploy vs shrunk model: max rel err {check['model_max_rel_err']:.1e}; collapsed "
        f"blocks on their border ring: {worst_border:.1e}"
    )
    files = result["files"]
    console.print(
        f"[dim]wrote {files['program']}, {files['description']}, {files['state_dict']}, "
        f"{files['factory']}\nbuild: ran-edge build --model {files['program']}  (or "
        f"--model {files['factory']}:make_model for per-module figures)[/dim]"
    )
