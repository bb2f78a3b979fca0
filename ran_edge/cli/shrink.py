"""`ran-edge shrink`: DepthShrinker and RMNet residual removal from the command line.

Flags -> a `ShrinkRequest` -> `ran_edge.shrink.run.run_shrink` (search gates or take
--remove, plan merges by a cost, remove activations, recover, collapse, verify, with
--remove-residuals carry identity shortcuts away, write NAME.pt2 + .json, .state_dict.pt,
.py) -> the plan table or the JSON. Build the result with `ran-edge build --model NAME.pt2`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.table import Table

from ran_edge.cli.common import (
    RichProgress,
    model_flags,
    output_flags,
    parse_input_shape,
    run_command,
    stdout,
)
from ran_edge.targets import DEFAULT_TARGET

if TYPE_CHECKING:
    from ran_edge.shrink.run import ShrinkResult

# The defaults of ran_edge.shrink.run.ShrinkRequest (not imported: it imports torch).
DEFAULT_CALIB_SAMPLES = 512
DEFAULT_HOLDOUT = 64


@click.command("shrink")
@model_flags
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
@click.option(
    "--remove-residuals",
    is_flag=True,
    help="RMNet: remove identity shortcuts exactly by carrying each block's input through "
    "extra channels (alone, or after --remove-ratio / --remove).",
)
@click.option(
    "--carry-min-scale",
    type=click.FloatRange(min=0.0),
    default=1.0,
    show_default=True,
    help="With --remove-residuals: keep the residual of a block whose carry must scale its "
    "input below this to fit a bounded activation (ReLU6); below 1 int8 loses the residual. "
    "0 removes every residual that can be exact.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data and training.")
@output_flags("the result")
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
    remove_residuals,
    carry_min_scale,
    seed,
    as_json,
    quiet,
) -> None:
    """Remove activations from MODEL's inverted residuals and collapse them (DepthShrinker);
    remove identity shortcuts exactly (RMNet, --remove-residuals).

    \b
    Give either --remove-ratio R (a gate search picks the blocks) or --remove a.b,c.d.
    Each removed block is collapsed into one dense conv only when --cost says it is
    cheaper; the deploy model is verified against the trained shrunk model (borders
    included) and written as a .pt2 that `ran-edge build --model` accepts:
      ran-edge shrink tiny_mbnet --weights digits.pt --calib digits.npz --remove-ratio 0.5
      ran-edge build --model tiny_mbnet_shrunk.pt2 --calib digits.npz
    --remove-residuals alone needs no data and no training (the function is unchanged):
      ran-edge shrink resnet18 --remove-residuals --out resnet18_plain.pt2
    """

    def body() -> None:
        from ran_edge.shrink.run import ShrinkRequest, run_shrink

        request = ShrinkRequest(
            model_spec=model_spec,
            weights=weights,
            input_shape=parse_input_shape(input_shape),
            remove_ratio=remove_ratio,
            remove=_parse_remove(remove_list),
            calib=calib,
            calib_samples=calib_samples,
            holdout=holdout,
            epochs=epochs,
            search_epochs=search_epochs,
            labels_npz=labels_npz,
            cost=cost_name,
            target=target,
            out=out,
            seed=seed,
            progress=not quiet,
            remove_residuals=remove_residuals,
            carry_min_scale=carry_min_scale,
        )
        result = run_shrink(request, RichProgress(not quiet))
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, allow_nan=False))
        else:
            _print_table(result)

    run_command(body)


def _parse_remove(text: str | None) -> tuple[str, ...] | None:
    """`blocks.1, blocks.3` -> the module paths (empty if only commas: the request says so)."""
    if text is None:
        return None
    return tuple(p.strip() for p in text.split(",") if p.strip())


def _print_table(result: ShrinkResult) -> None:
    console = stdout
    if result.plan.removed or result.residuals is None:
        _print_plan(result)
    if result.residuals is not None:
        _print_residuals(result)
    console.print(
        f"model MACs {result.macs_before:,} -> {result.macs_after:,}, params "
        f"{result.params_before:,} -> {result.params_after:,}"
    )
    for label, value in (("before", result.agreement_before), ("after", result.agreement_after)):
        if value is not None:
            console.print(
                f"held-out agreement with the original {label} recovery: top-1 "
                f"{100 * value.top1_agreement:.1f}%, KL {value.kl:.4f}"
            )
    check = result.verification
    worst_border = max((e.border_max_rel_err for e in check.blocks.values()), default=0.0)
    console.print(
        f"deploy vs shrunk model: max rel err {check.model.max_rel_err:.1e}; collapsed "
        f"blocks on their border ring: {worst_border:.1e}"
    )
    if result.residual_check is not None:
        console.print(
            f"residual-free vs deploy model: max rel err {result.residual_check.max_rel_err:.1e}"
        )
    files = result.files
    console.print(
        f"[dim]wrote {files.program}, {files.description}, {files.state_dict}, "
        f"{files.factory}\nbuild: ran-edge build --model {files.program}  (or "
        f"--model {files.factory}:make_model for per-module figures)[/dim]"
    )


def _print_residuals(result: ShrinkResult) -> None:
    assert result.residuals is not None
    table = Table(
        title=f"residuals removed from {result.model} (bounds {result.residuals.bounds})",
        title_justify="left",
    )
    for column in (
        "block",
        "kind",
        "removed",
        "extra channels",
        "input bound",
        "why / float64 err",
    ):
        table.add_column(column, justify="right" if column == "extra channels" else "left")
    for block in result.residuals.blocks:
        bound = _bound(block.input_bound)
        why = block.reason
        if block.max_abs_err is not None:
            why += f"; err {block.max_abs_err:.1e}"
        table.add_row(
            block.path,
            block.kind,
            "yes" if block.removed else "no",
            str(block.extra_channels),
            bound,
            why,
        )
    stdout.print(table)


def _bound(bound: tuple[float | None, float | None] | None) -> str:
    if bound is None:
        return ""
    lo, hi = bound
    return f"[{'-inf' if lo is None else f'{lo:.3g}'}, {'inf' if hi is None else f'{hi:.3g}'}]"


def _print_plan(result: ShrinkResult) -> None:
    console = stdout
    table = Table(title=f"shrink {result.model} (cost: {result.plan.cost})", title_justify="left")
    for column in ("block", "activations", "merged", "MACs before", "MACs after", "why"):
        table.add_column(column, justify="right" if column.startswith("MACs") else "left")
    for block in result.plan.blocks:
        table.add_row(
            block.path,
            "removed" if block.removed else "kept",
            "yes" if block.merged else "no",
            f"{block.macs_before:,}",
            f"{block.macs_after:,}",
            block.reason,
        )
    console.print(table)
