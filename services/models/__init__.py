"""Model servers: one Serve application per candidate model, one module per serving engine (`MODEL_SERVERS`).

Every model server answers a `GenerationRequest` with a stream (`generate_stream`): text deltas `{"text": ...}`,
then one `{"finish_reason", "prompt_tokens", "completion_tokens"}`. The ingress turns it into an OpenAI
response or server-sent events; waiting for the first item with a short timeout is how it notices an
unavailable model and fails over.

| kind | module | class | what it serves |
|---|---|---|---|
| `vllm` | `services.models.vllm` | `VLLMModel` | vLLM's async engine on a local path or hub id |
| `openai` | `services.models.openai_proxy` | `OpenAIProxyModel` | a model behind an OpenAI-compatible endpoint, proxied |
| `recorded` | `services.models.recorded` | `RecordedModel` | a model's recorded responses from a routing data directory |

A model server is a plain class (STYLE.md §4) built with the candidate's `name` and the fields of its engine
config (`modelsat.serving_config.MODEL_ENGINES[kind]`) as keyword arguments; `actor_env(served)` gives the
environment variables its replicas need. A new serving engine is its config in `modelsat.serving_config`, one
module here, and one line in each registry.
"""

from __future__ import annotations

from services.models.openai_proxy import OpenAIProxyModel
from services.models.recorded import RecordedModel
from services.models.vllm import VLLMModel

__all__ = ["MODEL_SERVERS", "OpenAIProxyModel", "RecordedModel", "VLLMModel", "model_server"]

MODEL_SERVERS: dict[str, type] = {
    "vllm": VLLMModel,
    "recorded": RecordedModel,
    "openai": OpenAIProxyModel,
}
"""Serving engine kind → model server class (keys as in `modelsat.serving_config.MODEL_ENGINES`)."""


def model_server(kind: str) -> type:
    """The model server class of a serving engine kind.

    Raises:
        ConfigError: unknown kind (lists the registered ones).
    """
    from modelsat.errors import ConfigError

    if kind not in MODEL_SERVERS:
        raise ConfigError(f"unknown serving engine {kind!r}; allowed: {', '.join(MODEL_SERVERS)}")
    return MODEL_SERVERS[kind]
