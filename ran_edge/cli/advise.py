"""`ran-edge advise`: which blocks or convs of a network cost the most for what they do on a
target, and what to put there instead (Ethos-U: Vela's costs; Cortex-A / host: the CPU
estimator's, a GOS-style operator search).

Loaded by the main group in ran_edge/cli/__init__.py. Builds MODEL for the target (or reuses
an up-to-date build), reads its per-module figures, costs the flagged sites'
replacements with the cost table, and prints the advice; `--apply` rewrites the sites,
recovers by distillation, saves the model and builds it again to check the prediction.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ran_edge.advise.request import (
    CONV_FORMS,
    DEFAULT_MAX_UTILISATION_PCT,
    DEFAULT_MIN_GAIN_PCT,
    DEFAULT_MIN_SHARE_PCT,
    SITE_KINDS,
    AdviseRequest,
    Thresholds,
)
from ran_edge.cli.common import (
    RichProgress,
    model_flags,
    output_flags,
    parse_input_shape,
    ray_option,
    run_command,
)
from ran_edge.targets import DEFAULT_TARGET


@click.command("advise")
@click.option(
    "--target",
    "-t",
    default=DEFAULT_TARGET,
    show_default=True,
    help="Target name, alias or .toml path: Ethos-U (Vela's costs) or a CPU such as rpi3, "
    "rpi4, cortex-a76, host (the CPU estimator's costs).",
)
@model_flags
@click.option(
    "--calib",
    help="Images for quantization and, with --apply, distillation: a calibration set name, "
    "folder, spec .toml or .npy/.npz (default: the built-in photos).",
)
@click.option("--calib-samples", type=click.IntRange(min=1), help="Samples drawn from --calib.")
@click.option(
    "--holdout",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Held-out samples (int8 fidelity; teacher agreement with --apply).",
)
@click.option(
    "--max-utilisation",
    type=click.FloatRange(0, 100),
    default=DEFAULT_MAX_UTILISATION_PCT,
    show_default=True,
    help="Ethos-U: flag blocks whose MAC utilisation (%) is below this...",
)
@click.option(
    "--min-share",
    type=click.FloatRange(0, 100),
    default=DEFAULT_MIN_SHARE_PCT,
    show_default=True,
    help="...and that take at least this % of the network's cycles (a CPU: this alone).",
)
@click.option(
    "--min-gain",
    type=click.FloatRange(0, 100),
    default=DEFAULT_MIN_GAIN_PCT,
    show_default=True,
    help="Recommend a replacement only if it saves this % of the block's cycles.",
)
@click.option(
    "--allow-smaller",
    is_flag=True,
    help="Also consider inverted residuals with a smaller kernel or expansion than now.",
)
@click.option(
    "--sites",
    type=click.Choice(SITE_KINDS),
    help="What to consider replacing: inverted residual blocks, dense kxk convs, or both "
    "(default: blocks on Ethos-U, all on a CPU).",
)
@click.option(
    "--forms",
    default=",".join(CONV_FORMS),
    show_default=True,
    help="Comma-separated stand-ins a dense conv may become: separable (depthwise + 1x1), "
    "grouped (2 or 4 groups), lowrank (kx1 + 1xk at 1/2 or 1/4 rank), ghost (half dense, "
    "half cheap depthwise features).",
)
@click.option(
    "--all", "cost_all", is_flag=True, help="Cost replacements for every site, not just flagged."
)
@click.option(
    "--in-context",
    is_flag=True,
    help="Check each recommendation by compiling the whole network with it (one compile "
    "per recommendation, plus one): savings measured in context, not from the table.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build"),
    show_default=True,
    help="Build root: the model's report goes to <out>/<model>/<target>/.",
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=Path("build/cost-cache"),
    show_default=True,
    help="Cost table cache (shared with `ran-edge search`).",
)
@click.option("--workers", type=click.IntRange(min=1), help="Compile processes (default: cores).")
@ray_option("the replacement and --in-context compiles")
@click.option("--apply", "apply_", is_flag=True, help="Rewrite the recommended blocks and recover.")
@click.option(
    "--apply-out",
    type=click.Path(path_type=Path),
    help="With --apply: output .pt2 (default: <out>/<model>_advised/<model>_advised.pt2); "
    ".json, .state_dict.pt and .py:make_model beside it.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="With --apply: distillation epochs over the calibration samples (0: new blocks "
    "stay untrained). More samples and epochs recover more; the agreement is printed.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for data and training.")
@output_flags("the advice")
def advise(
    model_spec,
    target,
    weights,
    input_shape,
    calib,
    calib_samples,
    holdout,
    max_utilisation,
    min_share,
    min_gain,
    allow_smaller,
    sites,
    forms,
    cost_all,
    in_context,
    out,
    cache_dir,
    workers,
    ray_address,
    apply_,
    apply_out,
    epochs,
    seed,
    as_json,
    quiet,
) -> None:
    """List the blocks or convs of MODEL that cost the most on TARGET and what the cost
    table would put there instead, with the estimated gain; --apply rewrites them.

    \b
    One mechanism for every target, with the target's own costs: on Ethos-U, Vela's; on
    a CPU (rpi3, rpi4, cortex-a76, host, ...), the CPU estimator's (a GOS-style operator
    search: cheaper operators in place of dense convs).
    \b
    Sites: inverted residuals (ran_edge.blocks.InvertedResidual, zoo MobileNetV2 /
    EfficientNet-Lite blocks) and dense kxk convs (--sites). On Ethos-U a block is
    flagged when its MAC utilisation (from MODEL's own report, per module) is below
    --max-utilisation while it takes at least --min-share of the cycles; on a CPU the
    share alone flags it. A flagged block's replacements are a collapsed dense 3x3 or an
    inverted residual of kernel 3/5/7 and expansion 2/4/6 no smaller than now; a
    flagged conv's are the --forms stand-ins. Each is compiled alone in the same 1x1-conv
    sandwich as the site's current form (cached in --cache-dir); the fastest saving at
    least --min-gain is recommended; --in-context then measures each recommendation's
    saving in the whole network (exact on U65, where the table alone misses cache effects
    on neighbouring layers).
    \b
      ran-edge advise mobilenet_v2 --target ethos-u55-128
      ran-edge advise resnet18 --target rpi3
      ran-edge advise net.py:make_net --weights net.pt --calib images/ --apply
      ran-edge build --model build/make_net_advised/make_net_advised.py:make_model
    \b
    --apply: new blocks start from a seeded init (a conv's stand-in from the closest fit
    to the conv's weights), BN statistics are measured on the calibration images, and
    the network is distilled from the original on them (KL + feature loss at each
    replaced block); the
    model is saved (.pt2 + .py:make_model) and built again, and its FPS (Vela's, or the
    CPU estimator's) is printed beside the prediction.
    """

    def body() -> None:
        from ran_edge.advise.run import run_advise
        from ran_edge.advise.views import advice_json, print_advice

        conv_forms = tuple(f.strip() for f in forms.split(",") if f.strip())
        thresholds = Thresholds(max_utilisation, min_share, min_gain, allow_smaller, conv_forms)
        request = AdviseRequest(
            model_spec=model_spec,
            target=target,
            weights=weights,
            input_shape=parse_input_shape(input_shape),
            calib=calib,
            calib_samples=calib_samples,
            holdout=holdout,
            thresholds=thresholds,
            cost_all=cost_all,
            sites=sites,
            in_context=in_context,
            out=out,
            cache_dir=cache_dir,
            workers=workers,
            ray_address=ray_address,
            apply=apply_,
            apply_out=apply_out,
            epochs=epochs,
            seed=seed,
            progress=not quiet,
        )
        result = run_advise(request, RichProgress(not quiet))
        if as_json:
            click.echo(json.dumps(advice_json(result), indent=2, allow_nan=False))
        else:
            print_advice(result)

    run_command(body)
