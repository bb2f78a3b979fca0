"""What a user gets when Vela itself crashes: the cause, an alternative, a working repro.

A crash (a signal such as a segfault, or an exit with no output) is a compiler fault, not
a problem the user can fix in the model or the profile. We say so in one line, check
whether one other accelerator family compiles the same model (one more compile: cheap next
to the conversion already done), and keep the int8 model in `<out>/<model>/failed/<target>/`
so the printed command reproduces the crash after the failed build is cleaned away.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

from ran_edge.errors import StageError
from ran_edge.targets.ethos_u.vela import VELA_LOG, VelaCrash, run_vela, vela_command
from ran_edge.targets.loading import Target, resolve_target

FAILED_DIR = "failed"
ALTERNATIVE_TIMEOUT_S = 300.0


def alternative_target(target: Target) -> str:
    """One target of another Ethos-U generation: U85 for U55/U65, U55 for U85."""
    return "ethos-u55-128" if "U85" in target.npu.accelerator.upper() else "ethos-u85-256"


def _try_alternative(int8_path: Path, target: Target) -> str:
    name = alternative_target(target)
    other = resolve_target(name)
    with tempfile.TemporaryDirectory(prefix="ran-edge-vela-alt-") as tmp:
        try:
            run_vela(int8_path, other, Path(tmp) / "vela", timeout_s=ALTERNATIVE_TIMEOUT_S)
        except VelaCrash:
            return f"{name} crashes too"
        except StageError as exc:
            return f"{name} fails too ({str(exc).splitlines()[0][:120]})"
        except subprocess.TimeoutExpired:
            return f"{name} did not finish in {ALTERNATIVE_TIMEOUT_S:.0f} s"
    return f"it compiles for {name} (`--target {name}`)"


def keep_failed_model(int8_path: Path, final: Path) -> Path:
    """Copy the model Vela crashed on (and Vela's log) to `<model dir>/failed/<target>/`."""
    folder = final.parent / FAILED_DIR / final.name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(int8_path, folder / int8_path.name)
    log = int8_path.parent / VELA_LOG
    if log.is_file():
        shutil.copyfile(log, folder / VELA_LOG)
    return folder


def crash_report(crash: VelaCrash, int8_path: Path, target: Target, final: Path) -> str:
    """The message a build or profile prints for a Vela crash (kept model + repro command)."""
    folder = keep_failed_model(int8_path, final)
    alternative = _try_alternative(folder / int8_path.name, target)
    command = " ".join(
        shlex.quote(a) for a in ["vela", *vela_command(Path(int8_path.name), target)[3:]]
    )
    return (
        f"{crash}; {alternative}. Report it to Vela's maintainers with the model.\n"
        f"To reproduce: cd {shlex.quote(str(folder))} && {command}"
    )
