"""Model zoo and model loading: zoo names, `file.py:factory` and `.pt2` specs to nn.Modules.

Importing this package registers every zoo model (the family modules register on import).
"""

# The family modules register their models on import.
from ran_edge.models import (  # noqa: F401
    convnext_bn,
    efficientnet_lite,
    mobilenet_v2,
    ran_e,
    reference_nets,
    tiny_mbnet,
)
from ran_edge.models.complexity import count_macs, count_params
from ran_edge.models.loading import LoadedModel, load_model
from ran_edge.models.registry import (
    ModelEntry,
    create_model,
    get_entry,
    list_models,
    register_model,
)

__all__ = [
    "LoadedModel",
    "ModelEntry",
    "count_macs",
    "count_params",
    "create_model",
    "get_entry",
    "list_models",
    "load_model",
    "register_model",
]
