"""Zoo models at 224 on the reference targets: our Vela figures beside the published ones.

    .venv/bin/python benchmarks/reference_figures.py

Reference: Vela 5.2, random weights, default configs (issue #2): MobileNetV2-1.0 ~63 inf/s
on U55-128, ~83 on U55-256, ~200 on U65-256 (Dedicated_Sram); EfficientNet-Lite0 ~50 on
U55-128, ~66 on U55-256; MAC utilisation around 30-40%.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ran_edge.build.convert import convert_model
from ran_edge.build.many import build_target
from ran_edge.calib import load_calibration
from ran_edge.models import load_model
from ran_edge.targets.loading import resolve_target

REFERENCE = {
    ("mobilenet_v2", "ethos-u55-128"): 63,
    ("mobilenet_v2", "ethos-u55-256"): 83,
    ("mobilenet_v2", "ethos-u65-256"): 200,
    ("efficientnet_lite0", "ethos-u55-128"): 50,
    ("efficientnet_lite0", "ethos-u55-256"): 66,
}


def main() -> None:
    table = Table(title="zoo at 224: ran-edge (Vela 5.2) vs reference figures")
    for col in ("model", "target", "inf/s", "reference", "ratio", "MAC util %", "SRAM KiB",
                "off-chip KiB", "NPU ops"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("model", "target") else "right")
    models = sorted({m for m, _ in REFERENCE})
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:
            loaded = load_model(name)
            calib = load_calibration(None, loaded.input_shape, num_samples=32, holdout=0)
            converted = convert_model(loaded, calib)
            for (model, target_name), ref in REFERENCE.items():
                if model != name:
                    continue
                report = build_target(converted, resolve_target(target_name), Path(tmp)).report
                ips = report.value("inferences_per_second")
                offchip = (report.value("off_chip_flash_used") or 0) + (
                    report.value("dram_used") or 0
                )
                table.add_row(
                    name, target_name, f"{ips:.1f}", str(ref), f"{ips / ref:.2f}",
                    f"{report.value('mac_utilisation'):.1f}",
                    f"{report.value('sram_used'):.0f}", f"{offchip:.0f}",
                    f"{report.value('npu_ops')}/{report.value('npu_ops') + report.value('cpu_ops')}",
                )  # fmt: skip
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
