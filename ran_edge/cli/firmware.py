"""`ran-edge firmware`: C sources for the Vela-compiled model of a build folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ran_edge.cli.common import firmware_flags, firmware_options, run_command, stderr, stdout


@click.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@firmware_flags
@click.option("--json", "as_json", is_flag=True, help="Print the firmware manifest as JSON.")
def firmware(build_dir: Path, as_json: bool, **firmware_args) -> None:
    """Write C sources for the Vela-compiled model in BUILD_DIR (build/<model>/<target>).

    \b
    Writes BUILD_DIR/firmware/:
      model_data.h/.cc  the *_vela.tflite bytes as a 16-byte-aligned const array in
                        --section, its length, and the tensor arena size to reserve
      model_io.h        input/output shapes, int8 scale and zero-point, labels, and the
                        TFLM ops to register when some ops stayed on the CPU
      memory_map.md     flash/SRAM/DRAM needed against the target's budget
      manifest.json     all of the above, machine-readable
    Fails (exit 1) when the model does not fit a declared budget. Running it again with
    the same inputs does nothing; a changed model regenerates.
    """

    def body() -> None:
        from ran_edge.firmware.generate import firmware_for_build

        options = firmware_options(**firmware_args)
        result = firmware_for_build(build_dir, options)
        if result.up_to_date:
            stderr.print(f"[green]✓[/green] {result.folder}: up to date (same inputs)")
        if as_json:
            click.echo(json.dumps(result.manifest, indent=2))
            return
        m = result.manifest
        from rich.table import Table

        table = Table(
            title=f"firmware for {m['model']} on {m['target']}",
            title_justify="left",
            show_header=False,
        )
        table.add_column("item", style="bold")
        table.add_column("value")
        table.add_row("folder", str(result.folder))
        table.add_row("model array", f"{m['symbol']} ({m['model_bytes']:,} B) in {m['section']}")
        table.add_row(
            "tensor arena",
            f"{m['tensor_arena_bytes']:,} B (TFLM margin {m['tflm_margin_bytes']:,} B)",
        )
        if m["fast_memory_bytes"]:
            table.add_row("fast memory", f"{m['fast_memory_bytes']:,} B")
        for r in m["memory"]:
            budget = "not declared" if r["budget_bytes"] is None else f"{r['budget_bytes']:,} B"
            verdict = (
                "not checked" if r["fits"] is None else ("fits" if r["fits"] else "DOES NOT FIT")
            )
            table.add_row(r["memory"], f"{r['needed_bytes']:,} B of {budget}: {verdict}")
        table.add_row("CPU ops to register", ", ".join(m["cpu_ops"]) or "none (all on the NPU)")
        cc = m["compile_check"]
        table.add_row(
            "compile check",
            "skipped (no arm-none-eabi-gcc)"
            if cc is None
            else f"{cc['compiler']}: section {m['section']} {cc['section_bytes']:,} B, align {cc['section_align']}",
        )
        tflm = m.get("tflm_reference") or {}
        if tflm:
            table.add_row(
                "TFLM vs LiteRT",
                f"bit-exact on {tflm['samples']} samples"
                if tflm["bit_exact"]
                else f"{tflm['mismatched_samples']} of {tflm['samples']} samples differ",
            )
        stdout.print(table)

    run_command(body)
