"""Hardware-aware search: per-block Vela cost tables, a whole-network predictor, the search.

See docs/search.md for how blocks are measured and how accurate the predictor is.
"""

from ran_edge.models.ran_e_space import (
    ALL_BLOCK_CANDIDATES,
    COLLAPSED,
    Arch,
    Candidate,
    Slot,
    ran_e_slots,
    random_arch,
)
from ran_edge.search.compiler import BlockCompiler, LiteRtCompiler
from ran_edge.search.cost import BlockCost
from ran_edge.search.predictor import LinearCorrection, Predictor, summed_cost
from ran_edge.search.search import Constraints, Point, SearchResult, Space, pareto_front
from ran_edge.search.table import CostTable

__all__ = [
    "ALL_BLOCK_CANDIDATES",
    "COLLAPSED",
    "Arch",
    "Constraints",
    "BlockCompiler",
    "BlockCost",
    "Candidate",
    "Point",
    "CostTable",
    "LinearCorrection",
    "LiteRtCompiler",
    "Predictor",
    "SearchResult",
    "Slot",
    "Space",
    "pareto_front",
    "random_arch",
    "ran_e_slots",
    "summed_cost",
]
