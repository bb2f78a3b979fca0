"""`ran-edge` command line: a thin click layer over ran_edge.pipeline.

Human tables go to stdout by default; `--json` prints machine-readable JSON instead.
Progress goes to stderr so `--json` output stays clean. Errors print one message and
exit 2 (bad usage or input) or 1 (a stage failed), never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path

import click
from rich.table import Table

from ran_edge import __version__
from ran_edge.atomic import check_writable_folder
from ran_edge.cli_advise import advise as advise_command
from ran_edge.cli_check import check as check_command
from ran_edge.cli_common import (
    DEFAULT_TARGET,
    parse_input_shape,
    run_command,
    stage_printer,
    stderr,
    stdout,
)
from ran_edge.cli_report import report as report_command
from ran_edge.cli_search import search as search_command
from ran_edge.cli_shrink import shrink as shrink_command
from ran_edge.errors import StageError, UsageError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="ran-edge")
def main() -> None:
    """Take PyTorch CNNs to fully int8, NPU-mapped Arm Ethos-U artifacts, and profile them
    on Ethos-U NPUs and on Cortex-A CPUs (Raspberry Pi boards, this host).

    \b
    Typical use:
      ran-edge targets                                  # what hardware is described
      ran-edge build --target ethos-u55-128             # built-in MobileNetV2 + photos
      ran-edge build --model net.py:make_net --input-shape 1,3,96,96 \\
                     --calib my_images/ --target ethos-u55-256 --target ethos-u65-256
      ran-edge build --target ethos-u55-128 --target rpi4 --target host   # one comparison
      ran-edge profile model_int8.tflite --target ethos-u55-64
      ran-edge profile model_int8.tflite --target host --measure        # time it here
      ran-edge profile model_int8.tflite --target rpi4 --remote pi@raspberrypi.local
      ran-edge calibrate-target --target host --out my-host.toml

    Outputs land in build/<model>/<target>/: float and int8 .tflite, the Vela-compiled
    model, Vela's CSVs and report.json (schema: docs/report-schema.md).
    """


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def targets(as_json: bool) -> None:
    """List every target profile (shipped ones and those in $RAN_EDGE_TARGET_PATH).

    A profile is a TOML file (see targets/README.md); aliases such as `ethos-u55`
    resolve to a documented default configuration. Two kinds: `ethos-u` NPUs (Vela) and
    `cortex-a` CPUs (LiteRT + XNNPACK: Raspberry Pi boards, generic Cortex-A cores, `host`).
    """

    def body() -> None:
        from ran_edge.hw.targets import list_targets

        found = list_targets()
        if as_json:
            click.echo(json.dumps([_target_row(t) for t in found], indent=2))
            return
        table = Table(title="target profiles", title_justify="left")
        for col in ("name", "aliases", "kind", "compute", "clock MHz", "config", "memory"):
            table.add_column(
                col,
                justify="right" if col == "clock MHz" else "left",
                no_wrap=col in ("name", "config"),  # names and Vela sections stay greppable
            )
        for t in found:
            table.add_row(t.name, ", ".join(t.aliases), t.kind, *_target_cells(t))
        stdout.print(table)
        stdout.print(
            "[dim]ethos-u: compiled with Vela (config = system config, memory = memory mode); "
            "cortex-a: LiteRT + XNNPACK on the CPU, `host` = this machine.[/dim]"
        )

    run_command(body)


def _size(value: int | None) -> str:
    if not value:
        return "?"
    return f"{value // 1024**2} MiB" if value >= 1024**2 else f"{value // 1024} KiB"


def _target_cells(t) -> tuple[str, str, str, str]:
    """compute, clock MHz, config, memory columns of `ran-edge targets` for either kind."""
    if t.is_cpu:
        cpu = t.cpu
        clock = f"{cpu.clock_hz / 1e6:.0f}" if cpu.clock_hz else "-"
        parts = [f"L2 {_size(cpu.l2_bytes)}"] if cpu.l2_bytes else []
        parts += [f"L3 {_size(cpu.l3_bytes)}"] if cpu.l3_bytes else []
        bandwidth = cpu.memory_bandwidth_bytes_per_s
        parts += [f"{bandwidth / 1e9:.1f} GB/s"] if bandwidth else []
        memory = ", ".join(parts) or "-"
        return (f"{cpu.cores} x {cpu.core}", clock, ", ".join(cpu.simd) or "-", memory)
    return (
        f"{t.npu.macs_per_cycle} MACs/cycle",
        f"{t.npu.clock_hz / 1e6:.0f}",
        t.vela.system_config,
        t.vela.memory_mode,
    )


def _target_row(t) -> dict:
    """One `targets --json` row; Ethos-U fields are null for CPU profiles and vice versa."""
    row = {"name": t.name, "aliases": list(t.aliases), "kind": t.kind}
    if t.is_cpu:
        cpu, model = t.cpu, t.cpu_model
        row |= {
            "core": cpu.core,
            "cores": cpu.cores,
            "clock_hz": cpu.clock_hz,
            "simd": list(cpu.simd),
            "threads": cpu.default_threads,
            "l1d_bytes": cpu.l1d_bytes,
            "l1i_bytes": cpu.l1i_bytes,
            "l2_bytes": cpu.l2_bytes,
            "l3_bytes": cpu.l3_bytes,
            "memory": cpu.memory,
            "memory_bandwidth_bytes_per_s": cpu.memory_bandwidth_bytes_per_s,
            "cpu_model_source": model.source,
            "cpu_model_fitted": model.fitted,
            "accelerator": None,
            "macs_per_cycle": None,
            "system_config": None,
            "memory_mode": None,
        }
    else:
        row |= {
            "accelerator": t.npu.accelerator,
            "macs_per_cycle": t.npu.macs_per_cycle,
            "clock_hz": t.npu.clock_hz,
            "system_config": t.vela.system_config,
            "memory_mode": t.vela.memory_mode,
            "optimise": t.vela.optimise,
            "arena_cache_size": t.vela.arena_cache_size,
            "host_cpu": t.host_cpu.core,
            "host_cpu_clock_hz": t.host_cpu.clock_hz,
        }
    return row | {"description": t.description, "file": str(t.source)}


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

    run_command(body)


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


def _parse_bytes(value: str | None, option: str) -> int | None:
    """`512KiB`, `2MiB`, `1048576` -> bytes."""
    if value is None:
        return None
    units = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
    match = re.fullmatch(r"([0-9.]+)\s*([a-z]*)", value.strip().lower())
    if match is None or match[2] not in units:
        raise UsageError(f"{option} {value!r} is not a size; write e.g. 512KiB, 2MiB or 1048576.")
    result = int(float(match[1]) * units[match[2]])
    if result <= 0:
        raise UsageError(f"{option} must be positive, got {value!r}.")
    return result


def _firmware_flags(fn):
    """Options shared by `firmware` and `build --firmware`."""
    options = [
        click.option(
            "--section",
            default=".nn_model",
            show_default=True,
            help="Linker section for the model array.",
        ),
        click.option("--symbol", help="C symbol of the model array (default: <model>_model)."),
        click.option(
            "--labels",
            type=click.Path(path_type=Path),
            help="Class labels, one per line, for model_io.h.",
        ),
        click.option(
            "--sram-budget", help="SRAM budget, e.g. 512KiB (default: the target profile's)."
        ),
        click.option(
            "--flash-budget", help="Flash budget, e.g. 4MiB (default: the target profile's)."
        ),
        click.option("--dram-budget", help="DRAM budget (Dedicated_Sram targets)."),
        click.option(
            "--compile-check/--no-compile-check",
            default=None,
            help="Compile with arm-none-eabi-gcc -mcpu=cortex-m55 and check the section "
            "(default: when the toolchain is installed).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _firmware_options(
    section, symbol, labels, sram_budget, flash_budget, dram_budget, compile_check
):
    from ran_edge.firmware.generate import FirmwareOptions
    from ran_edge.hw.targets import MemoryBudget

    label_list: tuple[str, ...] = ()
    if labels is not None:
        if not labels.is_file():
            raise UsageError(f"labels file {labels} does not exist.")
        label_list = tuple(line.strip() for line in labels.read_text().splitlines() if line.strip())
    budgets = {
        "sram_bytes": _parse_bytes(sram_budget, "--sram-budget"),
        "flash_bytes": _parse_bytes(flash_budget, "--flash-budget"),
        "dram_bytes": _parse_bytes(dram_budget, "--dram-budget"),
    }
    source = "command line" if any(budgets.values()) else ""
    return FirmwareOptions(
        section=section,
        symbol=symbol,
        labels=label_list,
        budget=MemoryBudget(**budgets, source=source),
        compile_check=compile_check,
    )


def _firmware_for(folder: Path, target, options):
    from ran_edge.firmware.generate import generate_firmware

    result = generate_firmware(folder, options, target.memory)
    if result.up_to_date:
        stderr.print(f"[green]✓[/green] {result.folder}: up to date (same inputs)")
    return result


def _write_html(builds, stage) -> None:
    from ran_edge.report.html import write_report_for

    with stage("HTML report"):
        written = write_report_for(builds[0].out_dir.parent)
    stderr.print(f"[dim]report: {written.path}[/dim]")


def _cpu_flags(fn):
    """Options shared by `build` and `profile` for CPU (cortex-a) targets."""
    options = [
        click.option(
            "--threads",
            type=click.IntRange(min=1),
            help="CPU targets: threads for LiteRT/XNNPACK (default: the profile's, capped at "
            "its cores).",
        ),
        click.option(
            "--runs",
            type=click.IntRange(min=1),
            default=50,
            show_default=True,
            help="CPU targets, when measuring: timed runs (median and p90 are reported).",
        ),
        click.option(
            "--warmup",
            type=click.IntRange(min=0),
            default=5,
            show_default=True,
            help="CPU targets, when measuring: untimed runs first.",
        ),
        click.option(
            "--remote",
            metavar="USER@HOST[:PORT]",
            help="Measure the CPU target on a board over SSH (key login, BatchMode): the model "
            "and ran_edge/hw/measure.py are copied to a temp folder there and run with its "
            "python3, which needs numpy and ai-edge-litert.",
        ),
        click.option(
            "--identity",
            type=click.Path(path_type=Path),
            help="--remote: the SSH private key to log in with (ssh -i).",
        ),
        click.option(
            "--remote-python",
            default="python3",
            show_default=True,
            help="--remote: the interpreter to run on the board (e.g. a venv's bin/python).",
        ),
        click.option(
            "--ssh-option",
            "ssh_options",
            multiple=True,
            metavar="KEY=VALUE",
            help="--remote: extra ssh_config option, repeatable (e.g. "
            "UserKnownHostsFile=~/.ssh/boards_known_hosts).",
        ),
        click.option(
            "--connect-timeout",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="--remote: seconds to wait for the SSH connection.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _cpu_plan(targets_, *, measure_all: bool, **cpu_args):
    """Which CPU targets are measured and how (UsageError on a bad --remote before any work)."""
    from ran_edge.hw.cpu_profile import MeasureOptions
    from ran_edge.hw.remote import parse_remote
    from ran_edge.pipeline import plan_cpu

    remote = None
    if cpu_args["remote"]:
        remote = parse_remote(
            cpu_args["remote"],
            identity=cpu_args["identity"],
            python=cpu_args["remote_python"],
            options=tuple(cpu_args["ssh_options"]),
            connect_timeout_s=cpu_args["connect_timeout"],
        )
    elif cpu_args["identity"] or cpu_args["ssh_options"]:
        raise UsageError("--identity and --ssh-option only apply with --remote USER@HOST.")
    options = MeasureOptions(
        threads=cpu_args["threads"],
        runs=cpu_args["runs"],
        warmup=cpu_args["warmup"],
        remote=remote,
    )
    return plan_cpu(targets_, measure_all=measure_all, options=options)


@contextlib.contextmanager
def _measure_stage(label: str, enabled: bool):
    """A progress bar over the timed runs (the measurement reports each run as it goes)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    start = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr,
        transient=True,
    ) as progress:
        task = progress.add_task(f"{label} (starting)", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=label)

        yield update
    stderr.print(f"[green]✓[/green] {label} [dim]({time.perf_counter() - start:.1f} s)[/dim]")


def _run_target(stage, quiet: bool, target, plan, work):
    """Run `work(plan)` for one target under a spinner, or a progress bar when it measures."""
    from dataclasses import replace

    if target.is_cpu and plan.for_target(target):
        with _measure_stage(f"{target.name}: {plan.describe(target)}", not quiet) as update:
            return work(replace(plan, progress=update))
    label = f"Vela for {target.name}" if target.is_npu else f"{target.name}: estimated"
    with stage(label):
        return work(plan)


def _quantize_flags(fn):
    """Options of `build` that choose how the model is quantized."""
    from ran_edge.convert.ranges import CALIBRATION_METHODS

    options = [
        click.option(
            "--calib-method",
            type=click.Choice(CALIBRATION_METHODS),
            default="minmax",
            show_default=True,
            help="Activation ranges: minmax = the true range over the whole calibration set; "
            "percentile / mse = outlier-robust (need >= 16 samples). See docs/quantization.md.",
        ),
        click.option(
            "--int16-activations",
            multiple=True,
            metavar="MODULE",
            help="Give the ops of this PyTorch module int16 activations (int8 weights, a16w8; "
            "Ethos-U runs them). Repeat for several; paths as the module table shows them.",
        ),
        click.option(
            "--auto-mixed-precision",
            is_flag=True,
            help="Raise the least faithful layers to int16 activations until --target-sqnr or "
            "--target-agreement is met, costing each choice with Vela (docs/mixed-precision.md).",
        ),
        click.option(
            "--target-sqnr",
            type=float,
            default=38.0,
            show_default=True,
            help="--auto-mixed-precision: logit SQNR goal in dB.",
        ),
        click.option(
            "--target-agreement",
            type=click.FloatRange(0, 100),
            help="--auto-mixed-precision: also stop at this top-1 agreement with float (%).",
        ),
        click.option(
            "--max-extra-cycles",
            type=click.FloatRange(min=0),
            default=10.0,
            show_default=True,
            help="--auto-mixed-precision: drop a choice costing more than this % of Vela cycles "
            "over the all-int8 model.",
        ),
        click.option(
            "--no-rewrites",
            is_flag=True,
            help="Convert the graph exactly as written: skip the rewrites that put common "
            "patterns (x.mean((2, 3)), LeakyReLU, ...) on the NPU (docs/npu-coverage.md).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _quantize_options(
    targets_,
    *,
    calib_method,
    int16_activations,
    auto,
    target_sqnr,
    target_agreement,
    max_extra_cycles,
    rewrites,
):
    """QuantizeOptions from the flags; a UsageError for combinations that cannot work."""
    from ran_edge.convert.mixed_precision import AutoGoal
    from ran_edge.pipeline import QuantizeOptions

    goal, auto_target = None, None
    if auto:
        if int16_activations:
            raise UsageError(
                "give either --int16-activations (your choice of layers) or "
                "--auto-mixed-precision (ran-edge's), not both."
            )
        npu = [t for t in targets_ if t.is_npu]
        if not npu:
            raise UsageError(
                "--auto-mixed-precision costs each choice with Vela: add an Ethos-U --target."
            )
        goal = AutoGoal(
            sqnr_db=target_sqnr,
            top1_agreement=target_agreement,
            max_extra_cycles_pct=max_extra_cycles,
        )
        auto_target = npu[0]
    return QuantizeOptions(
        method=calib_method,
        int16_modules=tuple(int16_activations),
        auto=goal,
        auto_target=auto_target,
        rewrites=rewrites,
    )


_TARGET_HELP = (
    "Target profile name, alias or .toml path; repeat for several "
    f"(default: {DEFAULT_TARGET}). Ethos-U and CPU targets mix freely. "
    "`ran-edge targets` lists them."
)


@main.command()
@click.option("--target", "-t", "target_names", multiple=True, help=_TARGET_HELP)
@click.option(
    "--model",
    "--arch",
    "-m",
    "model_spec",
    default="mobilenet_v2",
    show_default=True,
    help="A zoo name (`ran-edge models`), `file.py:factory` (runs that file), a torch.export "
    "`.pt2`, or an architecture `.json` written by `ran-edge search` (--arch is an alias).",
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
@_quantize_flags
@click.option(
    "--allow-cpu-fallback",
    is_flag=True,
    help="Write the build even if ops stay on the CPU (default: fail and name them).",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Skip targets whose report.json was built from exactly the same inputs.",
)
@click.option(
    "--firmware", is_flag=True, help="Also write firmware/ sources (see `ran-edge firmware`)."
)
@_firmware_flags
@_cpu_flags
@click.option("--html", is_flag=True, help="Also write <out>/<model>/report.html (see `report`).")
@click.option("--layers", is_flag=True, help="Also print the per-layer table.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print report.json content instead of tables."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def build(
    target_names,
    model_spec,
    calib_method,
    int16_activations,
    auto_mixed_precision,
    target_sqnr,
    target_agreement,
    max_extra_cycles,
    no_rewrites,
    weights,
    input_shape,
    calib,
    calib_samples,
    holdout,
    out,
    seed,
    allow_cpu_fallback,
    incremental,
    firmware,
    html,
    layers,
    as_json,
    quiet,
    threads,
    runs,
    warmup,
    remote,
    identity,
    remote_python,
    ssh_options,
    connect_timeout,
    **firmware_args,
) -> None:
    """Convert a PyTorch model to int8 TFLite and profile it on each target: compiled with
    Vela for Ethos-U, run or estimated on LiteRT + XNNPACK for CPU targets.

    \b
    Stages: load model -> export float TFLite (litert-torch, NHWC input)
            -> static int8 quantization calibrated on --calib (ai-edge-quantizer)
            -> int8 vs float fidelity on held-out samples (LiteRT)
            -> per --target: Vela (ethos-u) | measured or estimated (cortex-a)
            -> report.json + tables, and one comparison table for several targets.
    \b
    CPU targets: `host` is measured on this machine; the others (rpi4, rpi5, ...) are
    estimated from their profile's [cpu_model], or measured on the board with --remote.
    The build fails (exit 1) if any op would stay on an Ethos-U's CPU, naming each op and
    Vela's reason, unless --allow-cpu-fallback is given; then the Cortex-M time of those
    ops is estimated and added (system latency = NPU + CPU).
    """

    def body() -> None:
        from ran_edge.calib import load_calibration
        from ran_edge.models import count_macs, load_model
        from ran_edge.pipeline import (
            build_target,
            convert_model,
            inputs_fingerprint,
            resolve_targets,
            reuse_if_up_to_date,
        )

        targets_ = resolve_targets(target_names or (DEFAULT_TARGET,))
        check_writable_folder(out)
        plan = _cpu_plan(
            targets_,
            measure_all=False,
            threads=threads,
            runs=runs,
            warmup=warmup,
            remote=remote,
            identity=identity,
            remote_python=remote_python,
            ssh_options=ssh_options,
            connect_timeout=connect_timeout,
        )
        shape = parse_input_shape(input_shape)
        if calib_samples is not None and calib_samples < 1:
            raise UsageError("--calib-samples must be at least 1.")
        cpu_targets = [t for t in targets_ if t.is_cpu]
        if firmware and cpu_targets:
            raise UsageError(
                f"--firmware writes Ethos-U firmware sources; {cpu_targets[0].name} is a CPU "
                "target. Build CPU targets without --firmware."
            )
        firmware_options = _firmware_options(**firmware_args) if firmware else None
        quantize = _quantize_options(
            targets_,
            calib_method=calib_method,
            int16_activations=int16_activations,
            auto=auto_mixed_precision,
            target_sqnr=target_sqnr,
            target_agreement=target_agreement,
            max_extra_cycles=max_extra_cycles,
            rewrites=not no_rewrites,
        )
        with stage_printer(not quiet) as stage:
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
            fingerprints = {
                t.name: inputs_fingerprint(
                    loaded,
                    data,
                    t,
                    allow_cpu_fallback=allow_cpu_fallback,
                    cpu=plan.describe(t) if t.is_cpu else "",
                    quantize=quantize,
                )
                for t in targets_
            }
            reused = (
                {
                    t.name: reuse_if_up_to_date(out, loaded.name, t, fingerprints[t.name])
                    for t in targets_
                }
                if incremental
                else {}
            )
            converted = None
            builds = []
            for target in targets_:
                if reused.get(target.name) is not None:
                    stderr.print(f"[green]✓[/green] {target.name}: up to date (same inputs)")
                    builds.append(reused[target.name])
                    continue
                if converted is None:
                    converted = convert_model(
                        loaded, data, stage=stage, macs=macs, weights=weights, options=quantize
                    )
                builds.append(
                    _run_target(
                        stage,
                        quiet,
                        target,
                        plan,
                        lambda p, t=target, c=converted: build_target(
                            c,
                            t,
                            out,
                            allow_cpu_fallback=allow_cpu_fallback,
                            fingerprint=fingerprints[t.name],
                            cpu=p,
                        ),
                    )
                )
            if firmware_options is not None:
                for b in builds:
                    with stage(f"firmware for {b.target.name}"):
                        _firmware_for(b.out_dir, b.target, firmware_options)
            if html:
                _write_html(builds, stage)
        _print_builds(builds, as_json, layers)

    run_command(body)


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
@click.option(
    "--measure",
    is_flag=True,
    help="CPU targets: run the model (LiteRT + XNNPACK) and report measured figures, here "
    "or on --remote, instead of estimating them.",
)
@click.option(
    "--float",
    "float_model",
    type=click.Path(path_type=Path),
    help="The float .tflite MODEL was quantized from: with --samples, report int8 fidelity "
    "and per-op sensitivity (where the int8 error comes from).",
)
@click.option(
    "--samples",
    type=click.Path(path_type=Path),
    help="With --float: held-out inputs (.npy/.npz, NHWC or NCHW float32) to compare on.",
)
@_cpu_flags
@click.option("--html", is_flag=True, help="Also write <out>/<model>/report.html.")
@click.option("--layers", is_flag=True, help="Also print the per-layer table.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print report.json content instead of tables."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def profile(
    model: Path,
    target_names,
    out: Path,
    measure: bool,
    float_model: Path | None,
    samples: Path | None,
    html: bool,
    layers: bool,
    as_json: bool,
    quiet: bool,
    **cpu_args,
) -> None:
    """Profile an int8 .tflite made elsewhere on Ethos-U and/or CPU targets.

    \b
    Ethos-U: Vela's figures, plus the estimated Cortex-M time of any op left on the CPU
    (reported with Vela's reason; not an error here).
    CPU targets: estimated from the profile's [cpu_model] unless --measure (or --remote):
      ran-edge profile m.tflite --target host --measure --threads 2 --runs 100
      ran-edge profile m.tflite --target rpi4 --remote pi@raspberrypi.local:22
    A measurement reports the median and p90 of --runs timed invokes after --warmup, and
    the peak resident-memory growth of a fresh process loading and running the model.
    Per-module attribution works when op names carry the torch module path (litert-torch
    does).
    """

    def body() -> None:
        from ran_edge.convert.tflite_info import read_tflite
        from ran_edge.pipeline import measure_against_float, profile_tflite, resolve_targets

        targets_ = resolve_targets(target_names or (DEFAULT_TARGET,))
        check_writable_folder(out)
        if (float_model is None) != (samples is None):
            raise UsageError(
                "--float and --samples go together: the float model and the inputs to compare "
                "the int8 model with it on."
            )
        reference = None
        if float_model is not None:
            with stage_printer(not quiet) as stage, stage("int8 vs float, per op"):
                reference = measure_against_float(read_tflite(model), float_model, samples)
        plan = _cpu_plan(targets_, measure_all=measure, **cpu_args)
        if measure and not any(t.is_cpu for t in targets_):
            raise UsageError(
                "--measure runs the model on a CPU target; add --target host (this machine) "
                "or a board's profile with --remote. Ethos-U targets are compiled, not run."
            )
        builds = []
        with stage_printer(not quiet) as stage:
            for target in targets_:
                builds.append(
                    _run_target(
                        stage,
                        quiet,
                        target,
                        plan,
                        lambda p, t=target: profile_tflite(
                            model, t, out, cpu=p, reference=reference
                        ),
                    )
                )
            if html:
                _write_html(builds, stage)
        _print_builds(builds, as_json, layers)

    run_command(body)


@main.command()
@click.argument("build_dir", type=click.Path(path_type=Path))
@_firmware_flags
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
        from ran_edge.hw.targets import resolve_target

        options = _firmware_options(**firmware_args)
        report_path = build_dir / "report.json"
        if not report_path.is_file():
            raise UsageError(
                f"{build_dir} is not a ran-edge build folder (no report.json); "
                "give build/<model>/<target> as written by `ran-edge build`."
            )
        target = resolve_target(json.loads(report_path.read_text())["target"]["name"])
        if not target.is_npu:
            raise UsageError(
                f"{build_dir} is a build for {target.name}, a CPU target: firmware sources are "
                "for Ethos-U builds (give build/<model>/<ethos-u target>)."
            )
        result = _firmware_for(build_dir, target, options)
        if as_json:
            click.echo(json.dumps(result.manifest, indent=2))
            return
        m = result.manifest
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


@main.command()
@click.option(
    "--baseline",
    type=click.Path(path_type=Path),
    default=Path("ci/baselines.json"),
    show_default=True,
    help="The committed baseline JSON.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=Path("ci/regress.toml"),
    show_default=True,
    help="Models, targets and per-metric tolerances (TOML).",
)
@click.option(
    "--reports",
    type=click.Path(path_type=Path),
    help="Read <dir>/<model>/<target>/report.json instead of building.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("build/regress"),
    show_default=True,
    help="Where builds go (reused when their inputs are unchanged).",
)
@click.option("--update", is_flag=True, help="Rewrite the baseline from the current figures.")
@click.option("--junit", type=click.Path(path_type=Path), help="Also write JUnit XML here.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def regress(baseline, config_path, reports, out, update, junit, as_json, quiet) -> None:
    """Gate CI on Vela estimates: compare cycles, inferences/s, memory and NPU-op share
    of each model x target against a committed baseline; with `holdout = N` in the config,
    also int8 fidelity (logit SQNR, top-1 agreement), against the baseline and against
    absolute [floors].

    \b
    Exit 0: nothing worse than its tolerance (better, same, new or missing entries are
    listed). Exit 1: at least one metric regressed beyond its tolerance; the table names
    it. --update rewrites the baseline (sorted, stable formatting) and exits 0.
    Docs and a GitHub Actions example: docs/ci-regression-gate.md.
    """

    def body() -> None:
        from ran_edge.regress.baseline import read_baseline, write_baseline
        from ran_edge.regress.compare import compare, floor_violations
        from ran_edge.regress.config import load_config
        from ran_edge.regress.junit import write_junit
        from ran_edge.regress.measure import build_reports, read_reports
        from ran_edge.report.json_report import tool_versions

        config = load_config(config_path)
        old, _tools = ({}, {}) if update else read_baseline(baseline)
        with stage_printer(not quiet) as stage:
            current = (
                read_reports(config, reports) if reports else build_reports(config, out, stage)
            )
        if update:
            write_baseline(baseline, current, tool_versions())
            stderr.print(f"[green]✓[/green] wrote {baseline} ({len(current)} entries)")
            return
        deltas = compare(old, current, config.tolerance) + floor_violations(current, config.floors)
        if junit:
            write_junit(junit, deltas)
        regressions = [d for d in deltas if d.regression]
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "regressions": len(regressions),
                        "deltas": [vars(d) | {"regression": d.regression} for d in deltas],
                    },
                    indent=2,
                    default=str,
                )
            )
        else:
            _print_deltas(deltas)
        if regressions:
            names = ", ".join(sorted({f"{d.entry} {d.metric}" for d in regressions}))
            raise StageError(
                f"{len(regressions)} metric(s) worse than their tolerance or floor: {names}. "
                "If the change is intended, run `ran-edge regress --update` and commit the "
                "baseline (floors are set in the config's [floors])."
            )

    run_command(body)


def _print_deltas(deltas) -> None:
    styles = {
        "worse": "bold red",
        "better": "green",
        "new": "cyan",
        "missing": "yellow",
        "same": "dim",
        "below floor": "bold red",
    }
    table = Table(title="Vela estimates and int8 fidelity vs baseline", title_justify="left")
    for col in ("model@target", "metric", "baseline", "current", "change", "tolerance", "verdict"):
        table.add_column(
            col,
            justify="right" if col in ("baseline", "current", "change", "tolerance") else "left",
        )
    for d in deltas:
        table.add_row(
            d.entry,
            d.metric,
            "-" if d.baseline is None else f"{d.baseline:,.6g}",
            "-" if d.current is None else f"{d.current:,.6g}",
            "-" if d.change_pct is None else f"{d.change_pct:+.2f}%",
            "floor" if d.verdict == "below floor" else f"{d.tolerance_pct:g}%",
            f"[{styles[d.verdict]}]{d.verdict}[/]",
        )
    stdout.print(table)
    counts = {v: sum(d.verdict == v for d in deltas) for v in styles}
    stdout.print(", ".join(f"{n} {v}" for v, n in counts.items() if n))


@main.command("calibrate-target")
@click.option("--target", "-t", "target_name", required=True, help="The CPU profile to fit.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Where to write the calibrated profile (default: ./<target>.calibrated.toml).",
)
@click.option(
    "--quick",
    is_flag=True,
    help="A quarter of the micro-benchmarks, fewer passes: seconds instead of minutes, a "
    "coarser fit.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the fit as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
def calibrate_target(target_name, out, quick, as_json, quiet) -> None:
    """Fit a CPU profile's [cpu_model] to this machine: run it on the board you profile.

    \b
    Builds ran-edge's micro-benchmarks (int8 convs of several shapes, depthwise, FC, add,
    pooling, op chains, one reference-kernel op) through its own export + quantisation,
    times each in LiteRT + XNNPACK here at 1 thread and at the profile's threads, and fits
    the estimator's parameters (docs/cpu-targets.md). Writes the profile with its
    [cpu_model] replaced, comments kept: commit it, then use it with
      ran-edge profile m.tflite --target ./rpi4.calibrated.toml
    or put it in a folder named by $RAN_EDGE_TARGET_PATH (it shadows the shipped profile).
    """

    def body() -> None:
        from ran_edge.atomic import write_atomic
        from ran_edge.hw.calibrate import calibrate_target as run_calibration
        from ran_edge.hw.calibrate import calibration_source, cpu_model_table, with_cpu_model
        from ran_edge.hw.targets import resolve_target

        target = resolve_target(target_name)
        if not target.is_cpu:
            raise UsageError(
                f"{target.name} is an {target.kind} target: its figures come from Vela, not from "
                "a fitted model. calibrate-target fits CPU (cortex-a) profiles such as host or rpi4."
            )
        path = out or Path(f"{target.name}.calibrated.toml")
        if path.is_dir():
            raise UsageError(f"--out {path} is a folder; give a .toml file path.")
        start = time.perf_counter()
        with _measure_stage("build + time micro-benchmarks", not quiet) as update:
            result = run_calibration(
                target.cpu, target.cpu_model.params, quick=quick, progress=update
            )
        where = f"{_machine_label()} ({target.cpu.cores} cores)"
        table_text = cpu_model_table(
            result.params,
            calibration_source(where),
            result.fit,
            reference_clock=target.cpu.clock_hz is None,
        )
        write_atomic(path, with_cpu_model(target.source.read_text(), table_text).encode())
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "target": target.name,
                        "out": str(path),
                        "threads": list(result.threads),
                        "fit": vars(result.fit),
                        "params": vars(result.params),
                        "timings": [
                            {"model": s.name, "threads": s.threads, "measured_ms": s.measured_ms}
                            for s in result.samples
                        ],
                        "seconds": time.perf_counter() - start,
                    },
                    indent=2,
                )
            )
            return
        table = Table(title=f"calibrated {target.name}", title_justify="left", show_header=False)
        table.add_column("item", style="bold")
        table.add_column("value")
        table.add_row("written", str(path))
        table.add_row("timings", f"{result.fit.samples} (threads {list(result.threads)})")
        table.add_row("median abs error (in-sample)", f"{result.fit.median_abs_pct_error:.1f} %")
        table.add_row("Spearman (in-sample)", f"{result.fit.spearman:.3f}")
        for name, value in vars(result.params).items():
            table.add_row(name, f"{value:.6g}")
        stdout.print(table)

    run_command(body)


def _machine_label() -> str:
    import platform

    from ran_edge.hw.measure import cpu_model_name

    return f"{platform.node()}, {cpu_model_name()}"


main.add_command(advise_command)
main.add_command(check_command)
main.add_command(report_command)
main.add_command(shrink_command)
main.add_command(search_command)


if __name__ == "__main__":
    main()
