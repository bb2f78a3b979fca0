"""Hardware-aware search support: per-block Vela cost tables and a whole-network predictor.

See docs/search.md for how blocks are measured and how accurate the predictor is.
"""

from ran_edge.search.compiler import BlockCompiler, LiteRtCompiler
from ran_edge.search.cost import BlockCost
from ran_edge.search.predictor import LinearCorrection, Predictor, summed_cost
from ran_edge.search.space import (
    ALL_BLOCK_CANDIDATES,
    COLLAPSED,
    Arch,
    Candidate,
    Slot,
    ran_e_slots,
    random_arch,
)
from ran_edge.search.table import CostTable

__all__ = [
    "ALL_BLOCK_CANDIDATES",
    "COLLAPSED",
    "Arch",
    "BlockCompiler",
    "BlockCost",
    "Candidate",
    "CostTable",
    "LinearCorrection",
    "LiteRtCompiler",
    "Predictor",
    "Slot",
    "random_arch",
    "ran_e_slots",
    "summed_cost",
]
