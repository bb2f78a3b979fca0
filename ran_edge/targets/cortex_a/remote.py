"""Measure on a board over SSH: copy the model and the measurement script, run, read the JSON.

Plain OpenSSH clients (`ssh`, `scp`) as subprocesses, never a password prompt
(BatchMode=yes), with a connect timeout. The board needs python3 with numpy and
ai-edge-litert; ran-edge ships `ran_edge/targets/cortex_a/measure.py` (standard library + those two)
alongside the model, so nothing of ran-edge has to be installed there. The remote folder is
a fresh `mktemp -d`, removed again whatever happens.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ran_edge.errors import UsageError

DEFAULT_CONNECT_TIMEOUT_S = 10
_SPEC = re.compile(
    r"^(?:(?P<user>[^@\s:/]+)@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^@\s:/]+)(?::(?P<port>\d+))?$"
)
_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*=\S.*$")
SSH_UNREACHABLE = 255  # ssh's exit status for a connection or authentication failure


@dataclass(frozen=True)
class RemoteHost:
    """Where to measure: `user@host[:port]`, how to log in, which python to run there."""

    host: str
    user: str | None = None
    port: int | None = None
    identity: Path | None = None
    python: str = "python3"
    connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S
    options: tuple[str, ...] = ()  # extra `-o KEY=VALUE` for ssh and scp

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        return self.destination + (f":{self.port}" if self.port else "")

    def _common(self) -> list[str]:
        args = [
            "-o",
            "BatchMode=yes",
            "-o",
            f"ConnectTimeout={self.connect_timeout_s}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "ServerAliveInterval=15",
        ]
        for option in self.options:
            args += ["-o", option]
        if self.identity is not None:
            args += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return args

    def ssh(self, remote_command: str) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *self._common(), *port, self.destination, remote_command]

    def scp(self, files: list[Path], remote_dir: str) -> list[str]:
        port = ["-P", str(self.port)] if self.port else []
        target = f"{self.destination}:{remote_dir}/"
        return ["scp", "-q", *self._common(), *port, *(str(f) for f in files), target]


def parse_remote(
    spec: str,
    *,
    identity: Path | None = None,
    python: str = "python3",
    options: tuple[str, ...] = (),
    connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
) -> RemoteHost:
    """`user@host`, `host`, `user@host:2222`, `user@[::1]:2222` -> RemoteHost (UsageError if not)."""
    match = _SPEC.match(spec.strip())
    if match is None:
        raise UsageError(
            f"--remote {spec!r} is not user@host[:port]; e.g. --remote pi@raspberrypi.local "
            "or --remote pi@192.168.1.20:2222."
        )
    port = int(match["port"]) if match["port"] else None
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"--remote {spec!r}: port {port} is not in 1..65535.")
    if identity is not None and not identity.is_file():
        raise UsageError(f"--identity {identity} does not exist; give the private key file.")
    for option in options:
        if not _OPTION.match(option):
            raise UsageError(
                f"--ssh-option {option!r} is not KEY=VALUE (an ssh_config option, "
                "e.g. UserKnownHostsFile=/tmp/known_hosts)."
            )
    for tool in ("ssh", "scp"):
        if shutil.which(tool) is None:
            raise UsageError(
                f"`{tool}` is not installed here; install the OpenSSH client "
                "(e.g. `apt-get install openssh-client`) to measure on a board."
            )
    host = match["host"].strip("[]")
    return RemoteHost(host, match["user"], port, identity, python, connect_timeout_s, options)


def _unreachable(remote: RemoteHost, reason: str) -> UsageError:
    return UsageError(
        f"cannot reach {remote.label} over SSH: {reason}. Check the address and port, that "
        "sshd runs there, and that key login works without a password "
        f"(`ssh{' -p ' + str(remote.port) if remote.port else ''} {remote.destination} true`); "
        "pass --identity KEY for a specific key."
    )


def make_remote_dir(remote: RemoteHost) -> str:
    """A fresh folder on the board (mktemp -d), or a UsageError saying why it is unreachable."""
    command = remote.ssh('mktemp -d "${TMPDIR:-/tmp}/ran-edge.XXXXXX"')
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    if proc.returncode == SSH_UNREACHABLE:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise _unreachable(remote, lines[-1] if lines else "no answer")
    folder = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if proc.returncode != 0 or not folder.startswith("/"):
        raise UsageError(
            f"{remote.label} did not create a temporary folder (`mktemp -d` exit "
            f"{proc.returncode}: {proc.stderr.strip()[:200] or 'no output'}); ran-edge needs "
            "a POSIX shell and a writable $TMPDIR or /tmp there."
        )
    return folder


def copy_to(remote: RemoteHost, files: list[Path], folder: str) -> None:
    proc = subprocess.run(remote.scp(files, folder), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        remove_remote_dir(remote, folder)
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        raise _unreachable(remote, f"scp failed: {lines[-1] if lines else 'no output'}")


def remove_remote_dir(remote: RemoteHost, folder: str) -> None:
    subprocess.run(
        remote.ssh(f"rm -rf {shlex.quote(folder)}"), capture_output=True, text=True, check=False
    )


def run_in(remote: RemoteHost, folder: str, argv: list[str]) -> str:
    """The shell command that runs `argv` in `folder` and removes the folder afterwards."""
    quoted = " ".join(shlex.quote(a) for a in argv)
    q = shlex.quote(folder)
    return f"cd {q} && {quoted}; status=$?; cd / && rm -rf {q}; exit $status"
