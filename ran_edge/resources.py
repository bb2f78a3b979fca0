"""Where the shipped data folders (`targets/`, `calibration/`) live.

In a source checkout (editable install) they are the repository's top-level folders;
in a wheel they are packaged under `ran_edge/_builtin/`. Code asks here, never guesses.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """Return the shipped data folder `name` ("targets" or "calibration")."""
    checkout = _PACKAGE_DIR.parent / name
    if checkout.is_dir():
        return checkout
    return _PACKAGE_DIR / "_builtin" / name
