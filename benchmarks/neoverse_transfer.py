"""Derive the Neoverse N1 / V1 [cpu_model] tables from rpi5's fitted one, by stated factors.

    .venv/bin/python benchmarks/neoverse_transfer.py        # prints both tables

Why a transfer and not a fit: no published LiteRT + XNNPACK int8 latencies on Graviton2/3
were found to fit to, and no Neoverse machine is at hand to run `calibrate-target` on. So,
as `cortex-a76.toml` takes rpi5's per-cycle rates for the same core and `rpi-zero2.toml`
takes rpi3's, these profiles take rpi5's (Cortex-A76) per-cycle rates and scale them by the
factors below, each one tied to a documented difference between the cores (the sources are
in targets/neoverse-n1.toml and neoverse-v1.toml). Everything not named keeps rpi5's value.

The band is rpi5's transferred band widened, in log space, by a stated transfer factor:
the scaling factors are themselves unverified, so the band must say so.
"""

from __future__ import annotations

import sys

from ran_edge.targets.cortex_a.calibrate import cpu_model_table
from ran_edge.targets.cortex_a.transfer import transferred_band, transferred_params
from ran_edge.targets.loading import resolve_target

# Per target: factor on rpi5's per-cycle rates, by group, and the transfer factor of the band.
# N1 is the A76's server derivative with the same 2 x 128-bit NEON pipes: 1.0 throughout.
# V1: MAC rates x 2 (4 x 128-bit NEON pipes against 2), other per-cycle rates x 1.5 (Arm's
# +50% IPC over N1), cold weights x 1.5 (8 x DDR5-4800 against 8 x DDR4-3200: 307.2 / 204.8).
FACTORS: dict[str, dict[str, float]] = {
    "neoverse-n1": {"mac": 1.0, "data": 1.0, "cold": 1.0, "band": 1.15},
    "neoverse-v1": {"mac": 2.0, "data": 1.5, "cold": 1.5, "band": 1.30},
}
BASE = "rpi5"


def main() -> int:
    base = resolve_target(BASE).cpu_model
    if base.band is None:
        raise SystemExit(f"targets/{BASE}.toml has no band to transfer")
    for name, factors in FACTORS.items():
        params = transferred_params(base.params, factors)
        band_source = (
            f"transferred: {BASE}'s band ({base.band.low:.4g}-{base.band.high:.4g}) widened in "
            f"log space by an assumed x/{factors['band']:g} for the A76 -> {name} transfer (no "
            "Neoverse timing)"
        )
        band = transferred_band(base.band, factors["band"], band_source)
        source = (
            f"ESTIMATE: the {BASE} fitted per-cycle rates x stated factors (MAC "
            f"{factors['mac']:g}, data {factors['data']:g}, cold weights {factors['cold']:g}); "
            "benchmarks/neoverse_transfer.py"
        )
        print(f"# {name}")
        print(cpu_model_table(params, source, None, reference_clock=False, band=band))
    return 0


if __name__ == "__main__":
    sys.exit(main())
