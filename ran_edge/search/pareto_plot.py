"""The search's Pareto front as a PNG: predicted FPS vs MACs, same style as the HTML report.

Drawn without pyplot (Agg canvas) under the report's fixed rc context and with PNG metadata
pinned, so the same search writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ran_edge.errors import UsageError

MAX_CLOUD = 4000  # evaluated feasible points drawn behind the front (evenly subsampled)


@dataclass(frozen=True)
class Marker:
    """A named network on the plot; `source` is 'predicted' or 'measured'."""

    name: str
    macs: float
    fps: float
    source: str


def baseline_from_report(path: Path) -> Marker:
    """FPS (Vela inferences per second) and MACs of a `ran-edge build` report.json."""
    from ran_edge.report.model import load_report

    try:
        report = load_report(path)
    except UsageError as exc:
        raise UsageError(f"--baseline-report: {exc}") from None
    fps, macs = report.value("inferences_per_second"), report.value("macs")
    if not fps or not macs:
        raise UsageError(f"--baseline-report {path} has no FPS/MACs figures (a CPU target?).")
    return Marker(f"{report.model.name} ({report.target.name})", float(macs), float(fps), "Vela")


def write_pareto_png(
    path: Path,
    front: Sequence[tuple[float, float]],
    cloud: Sequence[tuple[float, float]],
    best: tuple[float, float],
    markers: Sequence[Marker],
    title: str,
) -> Path:
    """front/cloud/best are (macs, fps)."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ran_edge.report.plots import BLUE, GREY, METADATA, ORANGE, RC, TARGET_COLOURS, VERMILION

    if len(cloud) > MAX_CLOUD:
        step = len(cloud) / MAX_CLOUD
        cloud = [cloud[int(i * step)] for i in range(MAX_CLOUD)]
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(7.0, 4.6))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        m = 1e6
        if cloud:
            ax.scatter(
                [c[0] / m for c in cloud],
                [c[1] for c in cloud],
                s=4,
                color=GREY,
                alpha=0.25,
                linewidths=0,
                label="evaluated (feasible)",
            )
        xs, ys = [p[0] / m for p in front], [p[1] for p in front]
        ax.step(xs, ys, where="post", color=BLUE, linewidth=1.2)
        ax.scatter(xs, ys, s=14, color=BLUE, zorder=3, label="Pareto front (predicted)")
        ax.scatter(
            [best[0] / m],
            [best[1]],
            s=90,
            marker="*",
            color=VERMILION,
            zorder=4,
            label="chosen (max FPS)",
        )
        others = [c for c in TARGET_COLOURS if c not in (BLUE, GREY, VERMILION)]
        for i, mk in enumerate(markers):
            ax.scatter(
                [mk.macs / m],
                [mk.fps],
                s=40,
                marker="D" if mk.source != "predicted" else "s",
                color=others[i % len(others)] if i else ORANGE,
                zorder=5,
                label=f"{mk.name} ({mk.source})",
            )
        ax.set_xlabel("MACs (millions)")
        ax.set_ylabel("FPS (clock / total cycles)")
        ax.set_title(title)
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", metadata=METADATA["png"])
    return path
