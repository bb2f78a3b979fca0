"""`ran-edge repnas`: RepNAS branch search from the command line.

Flags -> a `RepnasRequest` -> `ran_edge.shrink.repnas.run.run_repnas` (gated branch blocks
on every kxk conv, one-stage search on labelled data, top-k branches per layer, brief
fine-tune, exact merge checked in float64, NAME.pt2 + .json, .state_dict.pt, .py) -> the
per-layer table or the JSON. Build the result with `ran-edge build --model NAME.pt2`.
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
from ran_edge.errors import UsageError

if TYPE_CHECKING:
    from ran_edge.shrink.repnas.run import RepnasResult

# The defaults of ran_edge.shrink.repnas.run.RepnasRequest (not imported: it imports torch).
CANDIDATES = ("1x1", "kxk", "1x1_kxk", "1x1_avg", "1xk", "kx1", "identity")
DEFAULT_BUDGET = 2
DEFAULT_EPOCHS = 10
DEFAULT_FINETUNE_EPOCHS = 2
DEFAULT_LR = 1e-3
DEFAULT_ARCH_LR = 0.05
DEFAULT_NOISE = 0.0
DEFAULT_FADE = "0.3,0.7"
DEFAULT_BATCH_SIZE = 64
DEFAULT_HOLDOUT = 64


@click.command("repnas")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(path_type=Path),
    help="Labelled images: one .npz with x (N,C,H,W float32) and y (N int class indices).",
)
@click.option(
    "--budget",
    default=str(DEFAULT_BUDGET),
    show_default=True,
    help="Branches kept per kxk layer (the top-k by architecture weight), or 'all' (DBB).",
)
@click.option(
    "--candidates",
    "candidates_text",
    default=",".join(CANDIDATES),
    show_default=True,
    help="Candidate branches (identity only where in == out channels and stride 1).",
)
@model_flags
@click.option(
    "--epochs",
    type=click.IntRange(min=0),
    default=DEFAULT_EPOCHS,
    show_default=True,
    help="One-stage search epochs (weights and architecture weights together).",
)
@click.option(
    "--finetune-epochs",
    type=click.IntRange(min=0),
    default=DEFAULT_FINETUNE_EPOCHS,
    show_default=True,
    help="Epochs on the chosen branches only, after the search (0: none).",
)
@click.option("--lr", type=float, default=DEFAULT_LR, show_default=True, help="Weights' LR.")
@click.option(
    "--arch-lr",
    type=float,
    default=DEFAULT_ARCH_LR,
    show_default=True,
    help="Architecture weights' learning rate.",
)
@click.option(
    "--noise",
    type=click.FloatRange(min=0),
    default=DEFAULT_NOISE,
    show_default=True,
    help="Logistic noise on the architecture weights, annealed to 0 (RepNAS's code: 1).",
)
@click.option(
    "--fade",
    "fade_text",
    default=DEFAULT_FADE,
    show_default=True,
    help="START,END fractions of the search over which the branches outside each layer's "
    "top-k fade out (0,0: hard top-k from the first step, as in RepNAS's code).",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=DEFAULT_BATCH_SIZE, show_default=True
)
@click.option(
    "--holdout",
    type=click.IntRange(min=0),
    default=DEFAULT_HOLDOUT,
    show_default=True,
    help="Labelled images kept out of training to score the deploy model.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Output .pt2 (default: <model>_repnas.pt2); .json, .state_dict.pt and .py beside it.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for init and data order."
)
@output_flags("the result")
def repnas(
    model_spec,
    data,
    budget,
    candidates_text,
    weights,
    input_shape,
    epochs,
    finetune_epochs,
    lr,
    arch_lr,
    noise,
    fade_text,
    batch_size,
    holdout,
    out,
    seed,
    as_json,
    quiet,
) -> None:
    """Search the best re-parameterizable branches of each kxk conv (RepNAS), merge them.

    \b
    Every kxk conv (+BN) becomes a block of candidate branches (1x1, kxk, 1x1-kxk,
    1x1-avg, 1xk, kx1, identity) gated by architecture weights; weights and architecture
    train together on labelled data, the top --budget branches per layer are kept, then
    merged into one conv of the layer's own shape (checked in float64, borders included):
    the deploy model is the plain model's architecture, retrained.
      ran-edge repnas net.py:make_net --data digits.npz --budget 2 --out net_odbb.pt2
      ran-edge build --model net_odbb.pt2 --calib digits.npz
    """

    def body() -> None:
        from ran_edge.shrink.repnas.run import RepnasRequest, run_repnas

        request = RepnasRequest(
            model_spec=model_spec,
            data=data,
            budget=_parse_budget(budget),
            candidates=_parse_candidates(candidates_text),
            weights=weights,
            input_shape=parse_input_shape(input_shape),
            epochs=epochs,
            finetune_epochs=finetune_epochs,
            lr=lr,
            arch_lr=arch_lr,
            noise=noise,
            fade=_parse_fade(fade_text),
            batch_size=batch_size,
            holdout=holdout,
            out=out,
            seed=seed,
            progress=not quiet,
        )
        result = run_repnas(request, RichProgress(not quiet))
        if as_json:
            click.echo(json.dumps(result.to_json(), indent=2, allow_nan=False))
        else:
            _print_table(result)

    run_command(body)


def _parse_budget(text: str) -> int | None:
    """`all` -> None (every branch kept); otherwise a positive integer."""
    if text.strip().lower() == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise UsageError(
            f"--budget {text!r} is not a number of branches; use e.g. --budget 2 or --budget all."
        ) from None
    if value < 1:
        raise UsageError(f"--budget {value} keeps no branch; keep at least 1 per layer.")
    return value


def _parse_fade(text: str) -> tuple[float, float]:
    try:
        start, end = (float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--fade {text!r} is not START,END (e.g. 0.3,0.7).") from None
    return start, end


def _parse_candidates(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise UsageError(
            f"--candidates: unknown branch {', '.join(unknown)}; choose from {','.join(CANDIDATES)}."
        )
    if not names:
        raise UsageError(f"--candidates is empty; choose from {','.join(CANDIDATES)}.")
    return names


def _print_table(result: RepnasResult) -> None:
    budget = result.budget if result.budget is not None else "all (DBB)"
    table = Table(title=f"repnas {result.model} (budget {budget})", title_justify="left")
    for column in ("layer", "shape", "chosen", "architecture weights (chosen first)"):
        table.add_column(column)
    for layer in result.layers:
        s = layer.shape
        k = s.kernel_size
        shape = f"{s.in_channels}->{s.out_channels} {k}x{k} /{s.stride}"
        if s.groups > 1:
            shape += f" g{s.groups}"
        chosen = ", ".join(_name(n, k) for n in layer.chosen)
        ranked = sorted(layer.weights.items(), key=lambda item: -item[1])
        weights = ", ".join(f"{_name(n, k)} {w:+.2f}" for n, w in ranked) or "not searched"
        table.add_row(layer.path, shape, chosen, weights)
    stdout.print(table)
    plain, deploy = result.plain, result.deploy
    stdout.print(
        f"deploy convs {plain.convs} -> {deploy.convs}, MACs {plain.macs:,} -> {deploy.macs:,}, "
        f"params {plain.params:,} -> {deploy.params:,} (plain model vs searched, BN folded)"
    )
    if result.skipped:
        stdout.print(f"{len(result.skipped)} conv(s) left as they were (see --json 'skipped')")
    if result.holdout_accuracy is not None:
        stdout.print(f"held-out accuracy of the deploy model: {100 * result.holdout_accuracy:.2f}%")
    check = result.check
    worst = max((e.border_max_rel_err for e in check.blocks.values()), default=0.0)
    stdout.print(
        f"merge check: float64 max rel err {check.model_float64.max_rel_err:.1e} (blocks' border "
        f"ring {worst:.1e}), float32 {check.model_float32.max_rel_err:.1e}"
    )
    files = result.files
    if files is not None:
        stdout.print(
            f"[dim]wrote {files.program}, {files.description}, {files.state_dict}, "
            f"{files.factory}\nbuild: ran-edge build --model {files.program}[/dim]"
        )


def _name(name: str, kernel: int) -> str:
    return name.replace("k", str(kernel)).replace("_", "-")
