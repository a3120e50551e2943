"""The Model-SAT router: architecture, checkpoint format, calibration, routing decisions."""

from modelsat.router.build import RouterSpec, SentenceEncoder, new_router, tokenize_instructions
from modelsat.router.checkpoint import REQUIRED_FILES, RouterCheckpoint
from modelsat.router.configuration import BACKBONE_TYPES, DEFAULT_INQUIRY, ROUTER_FORMAT, RouterConfig
from modelsat.router.encodings import InstructionEncoding
from modelsat.router.modeling import RouterModel
from modelsat.router.routing import Router, RoutingDecision

__all__ = [
    "BACKBONE_TYPES",
    "DEFAULT_INQUIRY",
    "REQUIRED_FILES",
    "ROUTER_FORMAT",
    "InstructionEncoding",
    "Router",
    "RouterCheckpoint",
    "RouterConfig",
    "RouterModel",
    "RouterSpec",
    "RoutingDecision",
    "SentenceEncoder",
    "new_router",
    "tokenize_instructions",
]
