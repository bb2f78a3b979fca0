"""Targets: hardware profiles as TOML data (`loading`), and one backend per kind that costs a
model on them (`ethos_u`: Vela + the Cortex-M host; `cortex_a`: LiteRT + XNNPACK, measured or
estimated). The build only talks to a backend through `backend.TargetBackend`, found by the
profile's `kind`; each kind parses its own TOML tables (`<kind>/spec.py`)."""

DEFAULT_TARGET = "ethos-u55-128"  # what commands use when no --target is given
