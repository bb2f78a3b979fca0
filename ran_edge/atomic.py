"""Writes that never leave half a result: temp file or folder first, then one rename."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary sibling and rename, so a crash never leaves half a file.

    The sibling's name is unique, so writers of the same file in parallel (processes
    sharing a cache folder) never write into each other's temp file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        tmp.chmod(0o666 & ~_UMASK)  # mkstemp makes 0600; the result is an ordinary file
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_umask() -> int:
    """Read once, at import: os.umask can only be read by setting it, which for an instant
    would let another thread create world-writable files."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temp folder beside `final`, renamed onto it on success, removed on failure.

    A failure leaves any previous `final` untouched (and no empty parent we created).
    """
    created_parent = not final.parent.exists()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o777 & ~_UMASK)  # mkdtemp makes 0700; the result is an ordinary folder
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_parent:
            with contextlib.suppress(OSError):  # only if still empty
                final.parent.rmdir()
        raise
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def check_writable_folder(folder: Path, option: str = "--out") -> None:
    """Refuse an output folder we cannot write, before any work is done.

    The folder may not exist yet: its nearest existing ancestor must be a folder we can
    create files in (probed with a real temp file, since root passes `os.access` checks on
    folders a read-only mount will still refuse).
    """
    from ran_edge.errors import UsageError

    folder = Path(folder)
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == folder else f"lies under {probe}, which is a file"
        raise UsageError(f"{option} {folder} {what}; give a folder (it is created if missing).")
    try:
        fd, name = tempfile.mkstemp(prefix=".ran-edge-write-probe.", dir=probe)
    except OSError as exc:
        raise UsageError(
            f"{option} {folder} is not writable ({exc.strerror or exc}); give a folder you can "
            "write to."
        ) from None
    os.close(fd)
    os.unlink(name)
