"""`ran-edge` command line: a thin click layer over ran_edge.pipeline.

Human tables go to stdout by default; `--json` prints machine-readable JSON instead.
Progress goes to stderr so `--json` output stays clean. Errors print one message and
exit 2 (bad usage or input) or 1 (a stage failed), never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from ran_edge import __version__
from ran_edge.errors import RanEdgeError, UsageError
from ran_edge.quiet import progress_stream

# Tables are wide; when output goes to a file or CI log, do not squeeze them to 80 columns.
stdout = Console(width=None if sys.stdout.isatty() else 140)
stderr = Console(file=progress_stream())

DEFAULT_TARGET = "ethos-u55-128"


def _parse_shape(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        shape = tuple(int(v) for v in value.replace("x", ",").split(","))
    except ValueError:
        raise UsageError(
            f"--input-shape {value!r} is not a list of integers; write it as N,C,H,W (e.g. 1,3,224,224)."
        ) from None
    if len(shape) != 4 or min(shape) < 1:
        raise UsageError(
            f"--input-shape {value!r} must be four positive integers N,C,H,W (e.g. 1,3,224,224)."
        )
    if shape[0] != 1:
        raise UsageError(f"--input-shape batch must be 1 for an embedded model, got {shape[0]}.")
    return shape


@contextlib.contextmanager
def _stage_printer(enabled: bool):
    """A stage reporter: a spinner while a stage runs, a tick and its time when done."""

    @contextlib.contextmanager
    def stage(label: str) -> Iterator[None]:
        if not enabled:
            yield
            return
        start = time.perf_counter()
        with stderr.status(f"{label} ..."):
            yield
        stderr.print(f"[green]✓[/green] {label} [dim]({time.perf_counter() - start:.1f} s)[/dim]")

    yield stage


def _run(fn):
    """Run a command body, turning RanEdgeError into one message and its exit code."""
    try:
        fn()
    except RanEdgeError as exc:
        # click.echo to the *current* stderr, unwrapped, so paths in messages stay pasteable.
        click.echo(click.style(f"error: {exc}", fg="red", bold=True), err=True)
        sys.exit(exc.exit_code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ran-edge")
def main() -> None:
    """Take PyTorch CNNs to fully int8, NPU-mapped Arm Ethos-U artifacts, and profile them.

    \b
    Typical use:
      ran-edge targets                                  # what hardware is described
      ran-edge build --target ethos-u55-128             # built-in MobileNetV2 + photos
      ran-edge build --model net.py:make_net --input-shape 1,3,96,96 \\
                     --calib my_images/ --target ethos-u55-256 --target ethos-u65-256
      ran-edge profile model_int8.tflite --target ethos-u55-64

    Outputs land in build/<model>/<target>/: float and int8 .tflite, the Vela-compiled
    model, Vela's CSVs and report.json (schema: docs/report-schema.md).
    """


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def targets(as_json: bool) -> None:
    """List every target profile (shipped ones and those in $RAN_EDGE_TARGET_PATH).

    A profile is a TOML file (see targets/README.md); aliases such as `ethos-u55`
    resolve to a documented default configuration.
    """

    def body() -> None:
        from ran_edge.hw.targets import list_targets

        found = list_targets()
        if as_json:
            rows = [
                {
                    "name": t.name,
                    "aliases": list(t.aliases),
                    "kind": t.kind,
                    "accelerator": t.npu.accelerator,
                    "macs_per_cycle": t.npu.macs_per_cycle,
                    "clock_hz": t.npu.clock_hz,
                    "system_config": t.vela.system_config,
                    "memory_mode": t.vela.memory_mode,
                    "optimise": t.vela.optimise,
                    "arena_cache_size": t.vela.arena_cache_size,
                    "description": t.description,
                    "file": str(t.source),
                }
                for t in found
            ]
            click.echo(json.dumps(rows, indent=2))
            return
        table = Table(title="target profiles", title_justify="left")
        for col in ("name", "aliases", "MACs/cycle", "clock MHz", "system config", "memory mode"):
            table.add_column(col)
        for t in found:
            table.add_row(
                t.name,
                ", ".join(t.aliases),
                str(t.npu.macs_per_cycle),
                f"{t.npu.clock_hz / 1e6:.0f}",
                t.vela.system_config,
                t.vela.memory_mode,
            )
        stdout.print(table)

    _run(body)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def models(as_json: bool) -> None:
    """List the built-in model zoo (use a name with `build --model`)."""

    def body() -> None:
        from ran_edge.models import list_models

        entries = list_models()
        if as_json:
            rows = [
                {
                    "name": e.name,
                    "family": e.family,
                    "input_shape": list(e.input_shape),
                    "description": e.description,
                }
                for e in entries
            ]
            click.echo(json.dumps(rows, indent=2))
            return
        table = Table(title="model zoo", title_justify="left")
        for col in ("name", "family", "input", "description"):
            table.add_column(col)
        for e in entries:
            table.add_row(e.name, e.family, "x".join(map(str, e.input_shape)), e.description)
        stdout.print(table)

    _run(body)


def _print_builds(builds, as_json: bool, layers: bool) -> None:
    from ran_edge.report.console import comparison_table, print_report

    reports = [b.report for b in builds]
    if as_json:
        payload = reports[0] if len(reports) == 1 else {"reports": reports}
        click.echo(json.dumps(payload, indent=2, allow_nan=False))
        return
    for build in builds:
        print_report(stdout, build.report, layers=layers)
        stdout.print(f"[dim]outputs: {build.out_dir}[/dim]")
    if len(reports) > 1:
        stdout.print(comparison_table(reports))


_TARGET_HELP = (
    "Target profile name, alias or .toml path; repeat for several "
    f"(default: {DEFAULT_TARGET}). `ran-edge targets` lists them."
)


@main.command()
@click.option("--target", "-t", "target_names", multiple=True, help=_TARGET_HELP)
@click.option(
    "--model",
    "-m",
    "model_spec",
    default="mobilenet_v2",
    show_default=True,
    help="A zoo name (`ran-edge models`), `file.py:factory` (runs that file), or a torch.export `.pt2`.",
)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    help="A state_dict saved with torch.save; loaded with weights_only=True.",
)
@click.option("--input-shape", help="N,C,H,W of the model input (default: the model's own).")
@click.option(
    "--calib",
    help="Calibration set: a name under calibration/, a spec .toml, a folder of images, "
    "or .npy/.npz arrays (default: the built-in `photos` set).",
)
@click.option(
    "--calib-samples", type=int, help="Number of calibration samples (default: the set's own)."
)
@click.option(
    "--holdout",
    type=click.IntRange(min=0),
    default=16,
    show_default=True,
    help="Held-out samples for measuring int8 vs float fidelity.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build"),
    show_default=True,
    help="Output root; results go to <out>/<model>/<target>/.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for calibration sampling."
)
@click.option(
    "--allow-cpu-fallback",
    is_flag=True,
    help="Write the build even if ops stay on the CPU (default: fail and name them).",
)
@click.option("--layers", is_flag=True, help="Also print the per-layer table.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print report.json content instead of tables."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def build(
    target_names,
    model_spec,
    weights,
    input_shape,
    calib,
    calib_samples,
    holdout,
    out,
    seed,
    allow_cpu_fallback,
    layers,
    as_json,
    quiet,
) -> None:
    """Convert a PyTorch model to int8 TFLite, compile it with Vela and profile it per target.

    \b
    Stages: load model -> export float TFLite (litert-torch, NHWC input)
            -> static int8 quantization calibrated on --calib (ai-edge-quantizer)
            -> int8 vs float fidelity on held-out samples (LiteRT)
            -> Vela per --target -> report.json + tables.
    The build fails (exit 1) if any op would stay on the CPU, naming each op and
    Vela's reason, unless --allow-cpu-fallback is given.
    """

    def body() -> None:
        from ran_edge.calib import load_calibration
        from ran_edge.models import count_macs, load_model
        from ran_edge.pipeline import build_target, convert_model, resolve_targets

        targets_ = resolve_targets(target_names or (DEFAULT_TARGET,))
        shape = _parse_shape(input_shape)
        if calib_samples is not None and calib_samples < 1:
            raise UsageError("--calib-samples must be at least 1.")
        with _stage_printer(not quiet) as stage:
            with stage(f"load model {model_spec}"):
                loaded = load_model(model_spec, weights=weights, input_shape=shape)
                macs = count_macs(loaded.module, loaded.input_shape)
            with stage("load calibration set"):
                data = load_calibration(
                    calib,
                    loaded.input_shape,
                    num_samples=calib_samples,
                    holdout=holdout,
                    seed=seed,
                )
            converted = convert_model(loaded, data, stage=stage, macs=macs, weights=weights)
            builds = []
            for target in targets_:
                with stage(f"Vela for {target.name}"):
                    builds.append(
                        build_target(converted, target, out, allow_cpu_fallback=allow_cpu_fallback)
                    )
        _print_builds(builds, as_json, layers)

    _run(body)


@main.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--target", "-t", "target_names", multiple=True, help=_TARGET_HELP)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build"),
    show_default=True,
    help="Output root; results go to <out>/<model stem>/<target>/.",
)
@click.option("--layers", is_flag=True, help="Also print the per-layer table.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print report.json content instead of tables."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def profile(model: Path, target_names, out: Path, layers: bool, as_json: bool, quiet: bool) -> None:
    """Profile an int8 .tflite made elsewhere on one or more Ethos-U targets.

    CPU-fallback ops are reported with Vela's reason (not an error here). Per-module
    attribution works when op names carry the torch module path (litert-torch does).
    """

    def body() -> None:
        from ran_edge.pipeline import profile_tflite, resolve_targets

        targets_ = resolve_targets(target_names or (DEFAULT_TARGET,))
        builds = []
        with _stage_printer(not quiet) as stage:
            for target in targets_:
                with stage(f"Vela for {target.name}"):
                    builds.append(profile_tflite(model, target, out))
        _print_builds(builds, as_json, layers)

    _run(body)


if __name__ == "__main__":
    main()
