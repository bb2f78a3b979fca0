"""Firmware artifacts: the Vela-compiled model as C sources, its I/O contract, arena size and
memory budget, plus the TFLM reference check they rely on."""
