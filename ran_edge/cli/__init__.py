"""`ran-edge` command line: one module per command, each options -> a typed request -> one
library call -> a view (a console table, or JSON with --json).

Human tables go to stdout; progress goes to stderr so `--json` output stays clean. Errors
print one message and exit 2 (bad usage or input) or 1 (a stage failed), never a traceback.
Commands load lazily: `ran-edge --help`, `--version`, `targets` or `report` never import
torch or the converter.
"""

from __future__ import annotations

import importlib

import click

from ran_edge import __version__

# Each name is a module under ran_edge.cli holding a click command of the same name. The
# modules are light (click, the request dataclasses), so listing them for --help is cheap;
# what a command needs is imported when it runs.
COMMANDS = (
    "targets",
    "models",
    "build",
    "profile",
    "check",
    "firmware",
    "report",
    "regress",
    "advise",
    "shrink",
    "repnas",
    "search",
    "calibrate-target",
)


class LazyGroup(click.Group):
    """A group whose command modules are imported on demand, in a fixed order."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"ran_edge.cli.{name.replace('-', '_')}")
        return getattr(module, name.replace("-", "_"))

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Each command's first sentence, whole (click would cut it at ~45 characters)."""
        rows = [
            (name, self.get_command(ctx, name).get_short_help_str(limit=200)) for name in COMMANDS
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
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
