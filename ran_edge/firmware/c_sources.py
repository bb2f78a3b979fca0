"""C sources for the firmware, rendered from jinja2 templates."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

import ran_edge

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    autoescape=False,  # C, not HTML
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)
BYTES_PER_ROW = 16


def c_identifier(text: str) -> str:
    ident = re.sub(r"\W", "_", text)
    return ident if ident and not ident[0].isdigit() else f"m_{ident}"


def c_string(text: str) -> str:
    """Escape for a C string literal."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_TEMPLATES.filters["c_string"] = c_string


@dataclass(frozen=True)
class IoTensor:
    role: str
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float
    zero_point: int
    macro: str

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _hex_rows(data: bytes) -> list[str]:
    return [
        ", ".join(f"0x{b:02x}" for b in data[i : i + BYTES_PER_ROW]) + ","
        for i in range(0, len(data), BYTES_PER_ROW)
    ]


def render_model_data(
    data: bytes,
    *,
    symbol: str,
    section: str,
    vela_file: str,
    model_name: str,
    target_name: str,
    accelerator: str,
    arena: int,
    fast: int,
    scratch: int,
    margin: int,
) -> tuple[str, str]:
    """(model_data.h, model_data.cc): the bytes as a 16-byte-aligned array in `section`."""
    common = {
        "version": ran_edge.__version__,
        "symbol": symbol,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "vela_file": vela_file,
    }
    header = _TEMPLATES.get_template("model_data.h.j2").render(
        **common,
        guard=f"{symbol.upper()}_DATA_H",
        prefix=symbol.upper(),
        model_name=model_name,
        target_name=target_name,
        accelerator=accelerator,
        arena=arena,
        fast=fast,
        scratch=scratch,
        margin=margin,
    )
    source = _TEMPLATES.get_template("model_data.cc.j2").render(
        **common, section=section, rows=_hex_rows(data)
    )
    return header, source


def render_model_io(
    tensors: list[IoTensor], *, symbol: str, model_name: str, labels: list[str], cpu_ops: list[str]
) -> str:
    return _TEMPLATES.get_template("model_io.h.j2").render(
        version=ran_edge.__version__,
        guard=f"{symbol.upper()}_IO_H",
        prefix=symbol.upper(),
        model_name=model_name,
        tensors=tensors,
        labels=[c_string(label) for label in labels],
        cpu_ops=cpu_ops,
    )
