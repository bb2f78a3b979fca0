"""Prove the generated sources build for a Cortex-M55 and put the model where we said.

Compiles model_data.cc with arm-none-eabi-gcc into an object file, then reads the section
table back with arm-none-eabi-readelf: the named section must exist, be 16-byte aligned and
hold exactly the model's bytes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ran_edge.errors import StageError

GCC = "arm-none-eabi-gcc"
READELF = "arm-none-eabi-readelf"
CPU = "cortex-m55"


@dataclass(frozen=True)
class CompileCheck:
    compiler: str
    object_file: Path
    section: str
    section_bytes: int
    section_align: int


def toolchain_available() -> bool:
    return shutil.which(GCC) is not None and shutil.which(READELF) is not None


def compiler_version() -> str:
    out = subprocess.run([GCC, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


def compile_model_data(folder: Path, section: str) -> CompileCheck:
    if not toolchain_available():
        raise StageError(
            f"{GCC} not found: install Debian's gcc-arm-none-eabi (`make setup` does) "
            "or drop --compile-check."
        )
    obj = folder / "model_data.o"
    cmd = [
        GCC,
        f"-mcpu={CPU}",
        "-mthumb",
        "-O2",
        "-std=c++17",
        "-c",
        "model_data.cc",
        "-o",
        obj.name,
    ]
    proc = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise StageError(f"{GCC} failed on model_data.cc:\n{proc.stderr.strip()[-800:]}")
    table = subprocess.run(
        [READELF, "-S", "-W", obj.name], cwd=folder, capture_output=True, text=True, check=True
    ).stdout
    # [Nr] Name Type Addr Off Size ES Flg Lk Inf Al
    row = re.compile(
        r"\]\s+(?P<name>\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+(?P<size>[0-9a-f]+)\s+[0-9a-f]+\s+\S*\s+\d+\s+\d+\s+(?P<align>\d+)"
    )
    for match in row.finditer(table):
        if match["name"] == section:
            return CompileCheck(
                compiler=compiler_version(),
                object_file=obj,
                section=section,
                section_bytes=int(match["size"], 16),
                section_align=int(match["align"]),
            )
    raise StageError(f"section {section} not found in {obj.name}:\n{table}")
