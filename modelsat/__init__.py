"""Model-SAT: capability instruction tuning for LLM routing (Zhang, Zhan, Ye, AAAI 2025, arXiv 2502.17282).

The core library: routing data (`data`, `split`), aptitude tests and capability profiles (`aptitude`), the router
(`router`), training (`training`), baselines and evaluation (`baselines`, `evaluate`, `report`), and the main
job's stages (`pipeline`). It never imports Ray (STYLE.md §1).

Names are loaded on first use: light processes (a recorded-model replica, a Ray Data worker reading a zoo)
import `modelsat.data` or `modelsat.registry` without paying for torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "AptitudeConfig",
    "AptitudeTest",
    "CapabilityProfile",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelSATError",
    "Router",
    "RouterCheckpoint",
    "RouterConfig",
    "RouterModel",
    "RoutingDecision",
    "RoutingError",
    "UnknownModelError",
    "RoutingData",
    "__version__",
    "load_routing_data",
]

_WHERE = {
    "AptitudeConfig": "modelsat.aptitude",
    "AptitudeTest": "modelsat.aptitude",
    "CapabilityProfile": "modelsat.aptitude",
    "CheckpointError": "modelsat.errors",
    "ConfigError": "modelsat.errors",
    "DataError": "modelsat.errors",
    "ModelSATError": "modelsat.errors",
    "RoutingError": "modelsat.errors",
    "UnknownModelError": "modelsat.errors",
    "Router": "modelsat.router",
    "RouterCheckpoint": "modelsat.router",
    "RouterConfig": "modelsat.router",
    "RouterModel": "modelsat.router",
    "RoutingDecision": "modelsat.router",
    "RoutingData": "modelsat.data",
    "load_routing_data": "modelsat.data",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'modelsat' has no attribute {name!r}; allowed: {', '.join(__all__)}")
    return getattr(importlib.import_module(_WHERE[name]), name)
