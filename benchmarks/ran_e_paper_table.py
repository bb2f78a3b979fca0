"""The RAN-e paper's hardware table, reproduced with ran-edge's own pipeline.

    .venv/bin/python benchmarks/ran_e_paper_table.py [--u55 ethos-u55-128] [--u65 ethos-u65-256]

Vela inferences/s of each network relative to EfficientNet-Lite0 on an Ethos-U55 and an
Ethos-U65 target, printed beside the ratios the RAN-e paper reports. Figures come from
random-init weights with measured BN statistics (weights change Vela's weight compression
a little), int8 through litert-torch + ai-edge-quantizer, and the targets' system config
and memory mode; see docs/ran-e.md for why our column can differ from theirs.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ran_edge.build.convert import convert_model
from ran_edge.build.many import build_target
from ran_edge.calib import load_calibration
from ran_edge.models import count_macs, count_params, load_model
from ran_edge.targets.loading import resolve_target

BASELINE = "efficientnet_lite0"
# RAN-e paper, FPS relative to EfficientNet-Lite0: (Ethos-U55, Ethos-U65).
PAPER = {
    "ran_e_gt": (1.16, 1.49),
    "ran_e_c": (1.06, 1.28),
    "resnet18": (0.46, 0.48),
    "repvgg_a0": (0.72, 0.69),
}


def measure(name: str, targets, out: Path, reports: dict | None = None) -> dict:
    """Params, MACs and (Vela FPS, MAC utilisation) per target; each target's Report goes
    into `reports` when given."""
    loaded = load_model(name)
    calib = load_calibration(None, loaded.input_shape, num_samples=16, holdout=0)
    converted = convert_model(loaded, calib)
    row = {
        "params": count_params(loaded.module),
        "macs": count_macs(loaded.module, loaded.input_shape),
    }
    for target in targets:
        report = build_target(converted, target, out).report
        row[target.name] = (
            report.value("inferences_per_second"),
            report.value("mac_utilisation"),
        )
        if reports is not None:
            reports[target.name] = report
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--u55", default="ethos-u55-128")
    parser.add_argument("--u65", default="ethos-u65-256")
    args = parser.parse_args()
    targets = [resolve_target(args.u55), resolve_target(args.u65)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in (BASELINE, *PAPER):
            rows[name] = measure(name, targets, Path(tmp))
    u55, u65 = (t.name for t in targets)
    table = Table(title=f"FPS relative to EfficientNet-Lite0 ({u55}, {u65}; Vela 5.2)")
    for col in ("model", "params M", "GMACs", f"{u55} inf/s", "ours", "paper",
                f"{u65} inf/s", "ours", "paper", "MAC util % (U55/U65)"):  # fmt: skip
        table.add_column(col, justify="left" if col == "model" else "right")
    base = rows[BASELINE]
    for name, row in rows.items():
        paper = PAPER.get(name, (1.0, 1.0))
        table.add_row(
            name,
            f"{row['params'] / 1e6:.2f}",
            f"{row['macs'] / 1e9:.3f}",
            f"{row[u55][0]:.1f}",
            f"{row[u55][0] / base[u55][0]:.2f}x",
            f"{paper[0]:.2f}x",
            f"{row[u65][0]:.1f}",
            f"{row[u65][0] / base[u65][0]:.2f}x",
            f"{paper[1]:.2f}x",
            f"{row[u55][1]:.0f} / {row[u65][1]:.0f}",
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
