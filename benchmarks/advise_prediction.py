"""How well `ran-edge advise` predicts the rewritten network: its FPS against Vela's.

    .venv/bin/python benchmarks/advise_prediction.py [--models mobilenet_v2,efficientnet_lite0]
        [--targets ethos-u55-128,ethos-u65-256] [--json]

For each zoo model and Ethos-U target: `advise --in-context` with the default
thresholds, then `--apply --epochs 0` (no recovery: the check is about cycles, which do
not depend on the weights), which builds the rewritten network through the normal
pipeline. Printed: the blocks flagged and replaced, the network's Vela FPS, the two
predictions (report total minus the cost table's savings; minus the savings measured by
compiling the network with each replacement alone) and Vela's FPS on the rewritten
network, with the error of each prediction. First run: about a minute of table fill per (model, target) on 2 cores, plus
one build per rewritten network; cached afterwards (build/cost-cache, build/advise_bench).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ran_edge.advise.request import AdviseRequest
from ran_edge.advise.run import run_advise
from ran_edge.cli.common import RichProgress

OUT = Path("build/advise_bench")


@dataclass(frozen=True)
class Row:
    model: str
    target: str
    flagged: list[str]
    replaced: list[str]
    fps_now: float
    fps_table: float
    fps_in_context: float
    fps_vela_after: float | None

    def error_pct(self, predicted: float) -> float | None:
        if self.fps_vela_after is None:
            return None
        return 100.0 * (predicted - self.fps_vela_after) / self.fps_vela_after


def measure(model: str, target: str, progress: bool) -> Row:
    request = AdviseRequest(
        model_spec=model,
        target=target,
        holdout=0,
        out=OUT,
        apply=True,
        apply_out=OUT / f"{model}_{target}" / f"{model}_{target}_advised.pt2",
        epochs=0,
        in_context=True,
        progress=progress,
    )
    result = run_advise(request, RichProgress(progress))
    advice = result.advice
    applied = result.applied
    return Row(
        model=model,
        target=target,
        flagged=[b.site.path for b in advice.blocks if b.wasteful],
        replaced=[f"{b.site.path}->{b.best.form.label()}" for b in advice.recommended if b.best],
        fps_now=advice.fps,
        fps_table=advice.table_predicted_fps,
        fps_in_context=advice.predicted_fps,
        fps_vela_after=None if applied is None else applied.fps,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    parser.add_argument("--targets", default="ethos-u55-128,ethos-u65-256")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args()
    rows = [
        measure(m, t, not args.quiet)
        for m in args.models.split(",")
        for t in args.targets.split(",")
    ]
    if args.json:
        errors = [
            {
                "table_error_pct": r.error_pct(r.fps_table),
                "in_context_error_pct": r.error_pct(r.fps_in_context),
            }
            for r in rows
        ]
        print(json.dumps([{**asdict(r), **e} for r, e in zip(rows, errors, strict=True)], indent=2))
        return
    table = Table(title="advise: predicted FPS of the rewritten network (error vs Vela on it)")
    left = ("model", "target", "flagged", "replaced")
    for col in (*left, "now", "table", "in context", "Vela after"):
        table.add_column(col, justify="left" if col in left else "right")

    def predicted(r: Row, fps: float) -> str:
        error = r.error_pct(fps)
        return f"{fps:,.1f} ({fps / r.fps_now:.2f}x)" + (
            "" if error is None else f"\n{error:+.1f}%"
        )

    for r in rows:
        after = "-" if r.fps_vela_after is None else f"{r.fps_vela_after:,.1f}"
        table.add_row(
            r.model,
            r.target,
            ", ".join(r.flagged) or "-",
            "\n".join(r.replaced) or "-",
            f"{r.fps_now:,.1f}",
            predicted(r, r.fps_table),
            predicted(r, r.fps_in_context),
            after,
        )
    with contextlib.suppress(BrokenPipeError):
        Console(width=160).print(table)


if __name__ == "__main__":
    main()
