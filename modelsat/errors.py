"""Error hierarchy of Model-SAT (STYLE.md §6).

Every message names the bad value and what is allowed. The CLI turns a `ModelSATError` into a one-line
message and exit code 2; the serving ingress turns it into an OpenAI-style JSON error.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ClusterError",
    "ConfigError",
    "DataError",
    "EngineError",
    "ModelSATError",
    "RegistryError",
    "RoutingError",
    "UnknownModelError",
]


class ModelSATError(Exception):
    """Base class of every error Model-SAT raises on purpose."""


class ConfigError(ModelSATError, ValueError):
    """A configuration value or command-line option is invalid."""


class DataError(ModelSATError, ValueError):
    """A routing data directory (routing data) is missing, malformed or inconsistent."""


class CheckpointError(ModelSATError, ValueError):
    """A router checkpoint directory is missing, incomplete or from an incompatible version."""


class UnknownModelError(ModelSATError, KeyError):
    """A candidate model name is not known to the zoo, the checkpoint or the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ClusterError(ModelSATError, RuntimeError):
    """A Ray cluster cannot be reached, or cannot place what a job asks for."""


class RoutingError(ModelSATError, ValueError):
    """A routing request cannot be served (e.g. empty instruction, no candidate models)."""


class RegistryError(ModelSATError, RuntimeError):
    """The model registry cannot be read or written, or an entry conflicts (e.g. exists without --replace)."""


class EngineError(ModelSATError, RuntimeError):
    """A candidate model's engine failed: unreachable endpoint, rejected request, or a generation error."""
