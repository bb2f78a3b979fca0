"""Charts for the HTML report, drawn with matplotlib and returned as embeddable images.

Every chart is rendered without pyplot (no global figure state, no GUI backend) under a
fixed rc context: fixed size and DPI, SVG hash salt and metadata pinned, so the same report
always yields the same bytes. Per-layer charts are PNG (their size does not grow with the
layer count); charts with a bounded number of bars are SVG (small and sharp at any zoom).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
BLUE, ORANGE, VERMILION, SKY, GREEN, GREY = (
    "#0072B2",
    "#E69F00",
    "#D55E00",
    "#56B4E9",
    "#009E73",
    "#8c8c8c",
)
TARGET_COLOURS = (BLUE, ORANGE, GREEN, VERMILION, SKY, "#CC79A7", "#F0E442", GREY)
STALL_ALPHA = 0.4

PNG_DPI = 110  # crisp enough on a laptop; keeps a per-layer chart near 100 KB
RC = {
    "svg.hashsalt": "ran-edge",
    # SVG text stays text (a quarter of the size of glyph paths); the browser draws it in
    # DejaVu Sans when installed, else a listed sans-serif of similar or narrower width than
    # the DejaVu metrics matplotlib laid it out with. PNGs always use the bundled DejaVu.
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Verdana", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.6,
    "legend.frameon": False,
    "figure.dpi": PNG_DPI,
    "savefig.dpi": PNG_DPI,
    "path.simplify": True,
}
METADATA = {
    "png": {"Software": None},
    "svg": {"Creator": None, "Date": None, "Format": None, "Type": None},
}


@dataclass(frozen=True)
class Chart:
    """One rendered image, ready to sit in an <img src> as a data URI."""

    mime: str
    data: bytes
    alt: str
    width: int  # CSS pixels at 100 % zoom
    height: int

    @property
    def uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


@dataclass(frozen=True)
class LayerBar:
    """The per-layer figures a chart needs, in network order."""

    index: int
    placement: str  # "NPU" or "CPU"
    cycles: int  # with memory-access stalls
    npu_cycles: int  # compute only
    macs: int
    mac_utilisation_pct: float
    memory_bound: bool
    module: str = ""


@dataclass(frozen=True)
class ModuleBar:
    path: str
    cycles: int
    cycle_share_pct: float
    mac_utilisation_pct: float
    macs: int


@dataclass(frozen=True)
class TargetBar:
    """One target's headline figures for the side-by-side chart (None: unavailable)."""

    name: str
    inferences_per_second: float | None
    mac_utilisation_pct: float | None
    latency_ms: float | None


def _new_figure(width_in: float, height_in: float, *, constrained: bool = False) -> Figure:
    fig = Figure(
        figsize=(width_in, height_in), dpi=PNG_DPI, layout="constrained" if constrained else None
    )
    FigureCanvasAgg(fig)  # Agg, whatever backend the caller's process selected
    return fig


def _render(fig: Figure, fmt: str, alt: str) -> Chart:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, metadata=METADATA[fmt])
    width_in, height_in = fig.get_size_inches()
    # Show at the figure's nominal size (96 CSS px per inch) so text reads at ~9 pt.
    return Chart(
        mime="image/png" if fmt == "png" else "image/svg+xml",
        data=buf.getvalue(),
        alt=alt,
        width=round(width_in * 96),
        height=round(height_in * 96),
    )


def _fmt_cycles(value: float, _pos=None) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:g}{suffix}"
    return f"{value:g}"


def layer_chart(layers: Sequence[LayerBar], *, target: str, mac_utilisation: float | None) -> Chart:
    """Cycles per layer (compute + memory stall, coloured by what bounds the layer) above
    MAC utilisation per layer, both in network order, so the two read against each other."""
    with matplotlib.rc_context(RC):
        fig = _new_figure(10.4, 5.2)
        ax_cyc, ax_util = fig.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2], "hspace": 0.08}
        )
        x = [layer.index for layer in layers]
        npu = [layer.placement == "NPU" for layer in layers]
        compute = [layer.npu_cycles if n else 0 for layer, n in zip(layers, npu, strict=True)]
        stall = [
            max(0, layer.cycles - layer.npu_cycles) if n else 0
            for layer, n in zip(layers, npu, strict=True)
        ]
        colours = [ORANGE if layer.memory_bound else BLUE for layer in layers]
        width = 0.8 if len(layers) < 400 else 1.0
        ax_cyc.bar(x, compute, width=width, color=colours, linewidth=0)
        ax_cyc.bar(
            x, stall, bottom=compute, width=width, color=colours, alpha=STALL_ALPHA, linewidth=0
        )
        cpu_x = [layer.index for layer, n in zip(layers, npu, strict=True) if not n]
        if cpu_x:
            ax_cyc.plot(cpu_x, [0] * len(cpu_x), "^", color=VERMILION, markersize=6, clip_on=False)
        ax_cyc.yaxis.set_major_formatter(_fmt_cycles)
        ax_cyc.set_ylabel("cycles")
        ax_cyc.set_title(f"{target}: cycles per layer, network order", loc="left", fontsize=10)
        ax_cyc.grid(axis="x", visible=False)
        legend = [
            Patch(color=BLUE, label="NPU compute-bound"),
            Patch(color=ORANGE, label="NPU memory-bound"),
            Patch(color=GREY, alpha=STALL_ALPHA, label="lighter: memory stall"),
        ]
        if cpu_x:
            legend.append(ax_cyc.plot([], [], "^", color=VERMILION, label="CPU op (not costed)")[0])
        # Above the plot, beside the title: never on top of a bar or a label.
        ax_cyc.legend(
            handles=legend,
            loc="lower right",
            bbox_to_anchor=(1.0, 1.0),
            ncol=len(legend),
            fontsize=7.5,
            borderaxespad=0.2,
            handlelength=1.2,
            columnspacing=1.2,
        )
        top = max([*(c + s for c, s in zip(compute, stall, strict=True)), 1]) * 1.12
        ax_cyc.set_ylim(top=top)
        _label_costliest(ax_cyc, layers, top)

        # Fused activations and other 0-MAC rows have no meaningful utilisation: leave gaps.
        util_layers = [layer for layer, n in zip(layers, npu, strict=True) if n and layer.macs]
        ax_util.bar(
            [layer.index for layer in util_layers],
            [layer.mac_utilisation_pct for layer in util_layers],
            width=width,
            color=[ORANGE if layer.memory_bound else BLUE for layer in util_layers],
            linewidth=0,
        )
        if mac_utilisation is not None:
            ax_util.axhline(mac_utilisation, color="#333333", linewidth=0.8, linestyle="--")
            ax_util.annotate(
                f"network {mac_utilisation:.1f} %",
                xy=(1.0, mac_utilisation),
                xycoords=("axes fraction", "data"),
                xytext=(-4, 3),
                textcoords="offset points",
                ha="right",
                fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1},
            )
        ax_util.set_ylim(0, 100)
        ax_util.set_ylabel("MAC utilisation %")
        ax_util.set_xlabel("layer index (Vela's per-layer rows; layers with no MACs left blank)")
        ax_util.grid(axis="x", visible=False)
        ax_util.xaxis.get_major_locator().set_params(integer=True)
        if x:
            ax_util.set_xlim(min(x) - 1, max(x) + 1)
        fig.subplots_adjust(left=0.07, right=0.99, top=0.93, bottom=0.1)
        return _render(
            fig,
            "png",
            f"{target}: cycles and MAC utilisation for each of {len(layers)} layers",
        )


def _short_path(path: str, limit: int = 38) -> str:
    """The tail of a module path that fits, cut at a dot: `…stage4.block32.conv1`."""
    if len(path) <= limit:
        return path
    parts = path.split(".")
    tail = parts[-1]
    for part in reversed(parts[:-1]):
        if len(part) + len(tail) + 2 > limit:
            break
        tail = f"{part}.{tail}"
    return "…" + tail[-(limit - 1) :]


def _label_costliest(
    ax, layers: Sequence[LayerBar], top: float, *, count: int = 3, candidates: int = 6
) -> None:
    """Name the module of the tallest bars, so the chart says *what* is expensive. Only the
    `candidates` costliest layers qualify; a label that would overlap one already placed
    is dropped (its extent estimated from the text length at 7 pt)."""
    if not layers:
        return
    first, last = layers[0].index - 1, layers[-1].index + 1
    char_w = 0.0065  # axis fraction per character at 7 pt on the 10.4 in layer chart
    placed: list[tuple[float, float, float]] = []  # x from, x to, y (axis fractions)
    for layer in sorted(layers, key=lambda lay: (-lay.cycles, lay.index))[:candidates]:
        if len(placed) == count or layer.cycles <= 0 or not layer.module:
            continue
        text = _short_path(layer.module, 28)
        width = len(text) * char_w
        x = (layer.index - first) / (last - first)
        ha = "right" if x > 0.85 else "left" if x < 0.15 else "center"
        x0 = {"right": x - width, "left": x, "center": x - width / 2}[ha]
        y = layer.cycles / top
        if any(x0 < b and a < x0 + width and abs(y - yb) < 0.08 for a, b, yb in placed):
            continue
        placed.append((x0, x0 + width, y))
        ax.annotate(
            text,
            xy=(layer.index, layer.cycles),
            xytext=(0, 2),
            textcoords="offset points",
            ha=ha,
            va="bottom",
            fontsize=7,
            color="#333333",
        )


def module_chart(modules: Sequence[ModuleBar], *, target: str, depth: int) -> Chart:
    """The costliest PyTorch modules as sorted horizontal bars: length is cycles, colour is
    MAC utilisation, so a long, dark bar is a block that costs much and uses the NPU poorly."""
    cmap = matplotlib.colormaps["viridis"]
    rows = list(modules)
    # Utilisation is mostly well under 50 %: a square-root scale keeps 1 % and 20 % apart
    # while every target's chart shares the same 0-100 scale.
    norm = matplotlib.colors.PowerNorm(0.5, vmin=0.0, vmax=100.0)
    with matplotlib.rc_context(RC):
        fig = _new_figure(10.4, 0.9 + 0.26 * max(len(rows), 1), constrained=True)
        ax = fig.add_subplot()
        y = list(range(len(rows)))[::-1]  # costliest at the top
        colours = [cmap(norm(r.mac_utilisation_pct)) for r in rows]
        ax.barh(y, [r.cycles for r in rows], color=colours, height=0.72, linewidth=0)
        ax.set_yticks(y, [_short_path(r.path) for r in rows], fontsize=8)
        ax.tick_params(axis="y", length=0)
        ax.xaxis.set_major_formatter(_fmt_cycles)
        ax.set_xlabel("cycles (with memory stalls)")
        ax.grid(axis="y", visible=False)
        top = max([r.cycles for r in rows] + [1])
        ax.set_xlim(0, top * 1.32)
        for yi, r in zip(y, rows, strict=True):
            ax.annotate(
                f"{r.cycle_share_pct:.1f} % of cycles · {r.mac_utilisation_pct:.1f} % MAC util",
                xy=(r.cycles, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=7.5,
                color="#333333",
            )
        mappable = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
        bar = fig.colorbar(mappable, ax=ax, fraction=0.025, pad=0.01)
        bar.set_label("MAC utilisation %", fontsize=8)
        bar.set_ticks([0, 5, 20, 50, 100])
        bar.ax.tick_params(labelsize=7)
        ax.set_title(
            f"{target}: top {len(rows)} PyTorch modules by cycles (depth {depth})",
            loc="left",
            fontsize=10,
        )
        return _render(fig, "svg", f"{target}: cycles of the top {len(rows)} PyTorch modules")


def comparison_chart(targets: Sequence[TargetBar]) -> Chart:
    """Inferences/s and MAC utilisation per target side by side; a missing figure is
    labelled n/a rather than drawn as a zero-height bar that reads as 'zero'."""
    with matplotlib.rc_context(RC):
        fig = _new_figure(10.4, 0.9 + 0.34 * max(len(targets), 2), constrained=True)
        axes = fig.subplots(1, 3, sharey=True)
        names = [t.name for t in targets]
        y = list(range(len(targets)))[::-1]
        colours = [TARGET_COLOURS[i % len(TARGET_COLOURS)] for i in range(len(targets))]
        panels = (
            ("inferences / s", [t.inferences_per_second for t in targets], ",.1f"),
            ("latency ms", [t.latency_ms for t in targets], ",.2f"),
            ("MAC utilisation %", [t.mac_utilisation_pct for t in targets], ".1f"),
        )
        for ax, (label, values, spec) in zip(axes, panels, strict=True):
            drawn = [v if v is not None else 0 for v in values]
            ax.barh(y, drawn, color=colours, height=0.66, linewidth=0)
            top = max(drawn + [1e-9])
            ax.set_xlim(0, top * 1.3)
            for yi, v in zip(y, values, strict=True):
                text = "n/a" if v is None else format(v, spec)
                ax.annotate(
                    text,
                    xy=(0 if v is None else v, yi),
                    xytext=(3, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=8,
                )
            ax.set_title(label, loc="left", fontsize=9)
            ax.grid(axis="y", visible=False)
            ax.tick_params(axis="x", labelsize=7)
            ax.tick_params(axis="y", length=0)
        axes[0].set_yticks(y, names, fontsize=8)
        return _render(fig, "svg", "inferences per second, latency and MAC utilisation per target")


@dataclass(frozen=True)
class SensitivityPoint:
    """One scored op of the quantized model, in network order."""

    index: int
    op: str
    module: str
    dtype: str  # int8 or int16 activations
    sqnr_db: float
    exact: bool


def sensitivity_chart(points: Sequence[SensitivityPoint], *, label_worst: int = 5) -> Chart:
    """SQNR of each op's quantized output against float, along the network: where the int8
    error comes from. int16 ops are marked apart; the worst few are named by module."""
    shown = [p for p in points if not p.exact]
    with matplotlib.rc_context(RC):
        fig = _new_figure(10.4, 3.0, constrained=True)
        ax = fig.add_subplot()
        for dtype, colour, marker in (("int8", BLUE, "o"), ("int16", ORANGE, "s")):
            chosen = [p for p in shown if p.dtype == dtype]
            if chosen:
                ax.plot(
                    [p.index for p in chosen],
                    [p.sqnr_db for p in chosen],
                    linestyle="none",
                    marker=marker,
                    markersize=4,
                    color=colour,
                    label=f"{dtype} activations",
                )
        if shown:
            ax.plot([p.index for p in shown], [p.sqnr_db for p in shown], color=GREY, linewidth=0.6)
        for p in sorted(shown, key=lambda p: (p.sqnr_db, p.index))[:label_worst]:
            ax.annotate(
                _short_path(p.module, 28),
                xy=(p.index, p.sqnr_db),
                xytext=(3, -10),
                textcoords="offset points",
                fontsize=7,
                color=VERMILION,
            )
        ax.set_xlabel("op index (network order)")
        ax.set_ylabel("SQNR vs float (dB)")
        if shown:
            ax.legend(loc="upper right", fontsize=8)
        ax.set_title(
            "quantization error along the network (cumulative: each op carries its inputs' error)",
            loc="left",
            fontsize=10,
        )
        return _render(fig, "png", "SQNR of each op's quantized output against the float model")
