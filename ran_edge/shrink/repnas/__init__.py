"""RepNAS (Zhang et al., 2021): search each kxk layer's re-parameterizable branch set.

Each kxk conv (+BN) becomes a `RepBranchBlock` of candidate branches (`branches`), gated
by architecture weights with a per-layer top-k branch budget (`block`); weights and
architecture weights train in one stage (`search`); the chosen branches (an optimal
diverse branch block, ODBB) merge exactly into one conv of the layer's own shape, checked
in float64 before saving (`verify`, `artifacts`). `run` is the `repnas` command.
Docs: docs/repnas.md.
"""

from ran_edge.shrink.repnas.block import LayerShape, RepBranchBlock
from ran_edge.shrink.repnas.branches import (
    CANDIDATES,
    PaddedChain,
    available_candidates,
    make_branch,
)
from ran_edge.shrink.repnas.convert import (
    Site,
    Sites,
    branch_blocks,
    check_budget,
    find_sites,
    to_searchable,
)
from ran_edge.shrink.repnas.search import (
    BranchSearch,
    LayerChoice,
    SearchOutcome,
    search_branches,
)
from ran_edge.shrink.repnas.verify import MergeCheck, check_merge, deploy_verified

__all__ = [
    "CANDIDATES",
    "BranchSearch",
    "LayerChoice",
    "LayerShape",
    "MergeCheck",
    "PaddedChain",
    "RepBranchBlock",
    "SearchOutcome",
    "Site",
    "Sites",
    "available_candidates",
    "branch_blocks",
    "check_budget",
    "check_merge",
    "deploy_verified",
    "find_sites",
    "make_branch",
    "search_branches",
    "to_searchable",
]
