"""Model-SAT: capability instruction tuning for LLM routing (Zhang, Zhan, Ye, AAAI 2025, arXiv 2502.17282).

The core library: routing data (`data`, `split`), aptitude tests and capability profiles (`aptitude`), the router
(`router`), training (`training`), baselines and evaluation (`baselines`, `evaluate`, `report`), and the main
job's stages (`pipeline`). It never imports Ray (STYLE.md §1).
"""

from modelsat.aptitude import AptitudeConfig, AptitudeTest, CapabilityProfile
from modelsat.data import Zoo, load_zoo
from modelsat.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelSATError,
    RoutingError,
    UnknownModelError,
)
from modelsat.router import Router, RouterCheckpoint, RouterConfig, RouterModel, RoutingDecision

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
    "Zoo",
    "__version__",
    "load_zoo",
]
