"""What every ran-edge command shares: one readable error line and the right exit code, the
progress display (a rich `BuildProgress`), the option groups several commands take and how
they become typed options, and the view of finished builds. Light: no torch at import."""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console

from ran_edge.build.requests import DEFAULT_TARGET, CpuRunOptions, QuantizeOptions
from ran_edge.errors import RanEdgeError, UsageError
from ran_edge.quiet import progress_stream

if TYPE_CHECKING:
    from ran_edge.targets.cortex_a.remote import RemoteHost

stderr = Console(file=progress_stream())
# Tables are wide; when output goes to a file or CI log, do not squeeze them to 80 columns.
stdout = Console(width=None if sys.stdout.isatty() else 140)
TARGET_HELP = (
    "Target profile name, alias or .toml path; repeat for several "
    f"(default: {DEFAULT_TARGET}). Ethos-U and CPU targets mix freely. "
    "`ran-edge targets` lists them."
)


def run_command(body: Callable[[], None]) -> None:
    """Run a command body; a RanEdgeError prints `error: ...` to stderr and exits with its code.

    click.echo writes to the *current* stderr, unwrapped, so paths in messages stay pasteable.
    """
    try:
        body()
    except RanEdgeError as exc:
        click.echo(click.style(f"error: {exc}", fg="red", bold=True), err=True)
        sys.exit(exc.exit_code)


def parse_input_shape(value: str | None) -> tuple[int, ...] | None:
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


class RichProgress:
    """The library's BuildProgress on a terminal: a spinner per stage, a bar per measurement."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @contextlib.contextmanager
    def stage(self, label: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        start = time.perf_counter()
        with stderr.status(f"{label} ..."):
            yield
        stderr.print(f"[green]✓[/green] {label} [dim]({time.perf_counter() - start:.1f} s)[/dim]")

    @contextlib.contextmanager
    def measure(self, label: str):
        """A progress bar over the timed runs (the measurement reports each run as it goes)."""
        if not self.enabled:
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

    def note(self, message: str) -> None:
        if self.enabled:
            stderr.print(f"[green]✓[/green] {message}")


def ray_option(what: str):
    """--ray ADDRESS (or RAY_ADDRESS): run `what` as Ray tasks on a cluster."""
    return click.option(
        "--ray",
        "ray_address",
        metavar="ADDRESS",
        envvar="RAY_ADDRESS",
        show_envvar=True,
        help=f"Run {what} as tasks on the Ray cluster at ADDRESS (HOST:PORT that `ray start "
        "--head` prints, or 'auto'); same results as a local run. Every node needs the same "
        "ran-edge and tools: pip install 'ran-edge[ray]'. See docs/search.md.",
    )


def with_options(fn, options: list):
    """Apply a group of click options to a command, in the order they are listed."""
    for option in reversed(options):
        fn = option(fn)
    return fn


def model_flags(fn):
    """MODEL and how to load it: `check`, `advise`, `shrink` and `repnas` take a PyTorch model."""
    options = [
        click.argument("model_spec", metavar="MODEL"),
        click.option("--weights", type=click.Path(path_type=Path), help="state_dict for MODEL."),
        click.option(
            "--input-shape", help="N,C,H,W of the model input (default: the model's own)."
        ),
    ]
    return with_options(fn, options)


def output_flags(what: str):
    """--json (print `what` as JSON instead of tables) and --quiet (no progress output)."""
    options = [
        click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON."),
        click.option("--quiet", "-q", is_flag=True, help="No progress output."),
    ]
    return lambda fn: with_options(fn, options)


def print_builds(builds, as_json: bool, layers: bool) -> None:
    """The view of finished builds: report.json content, or the tables (and a comparison)."""
    if as_json:
        reports = [b.report.to_dict() for b in builds]
        payload = reports[0] if len(reports) == 1 else {"reports": reports}
        click.echo(json.dumps(payload, indent=2, allow_nan=False))
        return
    from ran_edge.report.console import comparison_table, print_report

    for build in builds:
        print_report(stdout, build.report, layers=layers)
        stdout.print(f"[dim]outputs: {build.out_dir}[/dim]")
    if len(builds) > 1:
        stdout.print(comparison_table([b.report for b in builds]))


def parse_bytes(value: str | None, option: str) -> int | None:
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


def firmware_flags(fn):
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
    return with_options(fn, options)


def firmware_options(
    section, symbol, labels, sram_budget, flash_budget, dram_budget, compile_check
):
    from ran_edge.firmware.generate import FirmwareOptions
    from ran_edge.targets.loading import MemoryBudget

    label_list: tuple[str, ...] = ()
    if labels is not None:
        if not labels.is_file():
            raise UsageError(f"labels file {labels} does not exist.")
        label_list = tuple(line.strip() for line in labels.read_text().splitlines() if line.strip())
    budgets = {
        "sram_bytes": parse_bytes(sram_budget, "--sram-budget"),
        "flash_bytes": parse_bytes(flash_budget, "--flash-budget"),
        "dram_bytes": parse_bytes(dram_budget, "--dram-budget"),
    }
    source = "command line" if any(budgets.values()) else ""
    return FirmwareOptions(
        section=section,
        symbol=symbol,
        labels=label_list,
        budget=MemoryBudget(**budgets, source=source),
        compile_check=compile_check,
    )


REMOTE_HELP = (
    "Measure the CPU target on a board over SSH (key login, BatchMode): the model "
    "and ran_edge/targets/cortex_a/measure.py are copied to a temp folder there and run with its "
    "python3, which needs numpy and ai-edge-litert."
)


def remote_options(remote_help: str = REMOTE_HELP) -> list:
    """--remote and how to log in there: `build`, `profile` and `calibrate-target` share them."""
    return [
        click.option("--remote", metavar="USER@HOST[:PORT]", help=remote_help),
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


def remote_flags(remote_help: str = REMOTE_HELP):
    """Decorator adding the remote options alone (for commands without the other CPU flags)."""
    return lambda fn: with_options(fn, remote_options(remote_help))


def cpu_flags(fn):
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
        *remote_options(),
    ]
    return with_options(fn, options)


def remote_host(
    *, remote, identity, remote_python, ssh_options, connect_timeout
) -> RemoteHost | None:
    """The RemoteHost the remote flags name, or None without --remote (UsageError if bad)."""
    from ran_edge.targets.cortex_a.remote import parse_remote

    if remote:
        return parse_remote(
            remote,
            identity=identity,
            python=remote_python,
            options=tuple(ssh_options),
            connect_timeout_s=connect_timeout,
        )
    if identity or ssh_options:
        raise UsageError("--identity and --ssh-option only apply with --remote USER@HOST.")
    return None


def cpu_run_options(*, measure_all: bool, **cpu_args) -> CpuRunOptions:
    """How CPU targets are run, from the shared flags (UsageError on a bad --remote first)."""
    from ran_edge.targets.cortex_a.profile import MeasureOptions

    remote = remote_host(**{k: cpu_args[k] for k in REMOTE_FLAGS})
    measure = MeasureOptions(
        threads=cpu_args["threads"],
        runs=cpu_args["runs"],
        warmup=cpu_args["warmup"],
        remote=remote,
    )
    return CpuRunOptions(measure=measure, measure_all=measure_all)


def quantize_flags(fn):
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
    return with_options(fn, options)


def quantize_options(
    *,
    calib_method,
    int16_activations,
    auto_mixed_precision,
    target_sqnr,
    target_agreement,
    max_extra_cycles,
    no_rewrites,
) -> QuantizeOptions:
    """QuantizeOptions from the quantize flags (the library picks the Vela target for --auto)."""
    goal = None
    if auto_mixed_precision:
        from ran_edge.build.mixed_precision import AutoGoal

        goal = AutoGoal(
            sqnr_db=target_sqnr,
            top1_agreement=target_agreement,
            max_extra_cycles_pct=max_extra_cycles,
        )
    return QuantizeOptions(
        method=calib_method,
        int16_modules=tuple(int16_activations),
        auto=goal,
        rewrites=not no_rewrites,
    )


# The keyword arguments each shared flag group adds to a click command.
QUANTIZE_FLAGS = (
    "calib_method",
    "int16_activations",
    "auto_mixed_precision",
    "target_sqnr",
    "target_agreement",
    "max_extra_cycles",
    "no_rewrites",
)
REMOTE_FLAGS = ("remote", "identity", "remote_python", "ssh_options", "connect_timeout")
CPU_FLAGS = ("threads", "runs", "warmup", *REMOTE_FLAGS)
