"""The `openai` aptitude engine: an OpenAI-compatible chat-completions endpoint (our Serve app, any vLLM server).

Requests go through the `openai` client: a thread pool bounds concurrent requests, the client times out and
retries 408/409/429/5xx and connection errors with exponential backoff (openai-python README, "Retries").
The generated text is graded by `modelsat.grading`.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Literal

from pydantic import Field

from jobs.engines.base import AptitudeEngine, Response
from modelsat.config import BaseConfig
from modelsat.errors import ConfigError, EngineError, UnknownModelError
from modelsat.grading import AptitudeItem

__all__ = ["OpenAIEngine", "OpenAIEngineConfig"]

log = logging.getLogger("modelsat.aptitude")


class OpenAIEngineConfig(BaseConfig):
    """An OpenAI-compatible chat-completions endpoint."""

    kind: Literal["openai"] = "openai"
    base_url: str = Field(pattern=r"^https?://\S+$", description="Endpoint, e.g. http://127.0.0.1:8000/v1")
    model: str | None = Field(None, description="Model name at the endpoint (default: the candidate's name)")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (the key is never stored)"
    )
    max_concurrency: int = Field(8, ge=1, le=1024, description="Requests in flight per Ray Data worker")
    timeout_s: float = Field(120.0, gt=0.0, description="Timeout of one request, in seconds")
    max_retries: int = Field(3, ge=0, le=20, description="Retries of a failed request (5xx, 429, timeouts)")
    max_tokens: int = Field(512, ge=1, le=32768, description="Generated tokens per item at most")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature; 0 = greedy")
    wait_s: float = Field(
        0.0,
        ge=0.0,
        le=86400.0,
        description="Seconds to wait until the endpoint lists every candidate and answers a 1-token request "
        "(a deployment that is still starting, e.g. a RayJob beside its RayService); 0 = check once",
    )


class OpenAIEngine(AptitudeEngine):
    """Chat completions from an OpenAI-compatible endpoint, `max_concurrency` requests at a time.

    Args:
        config: endpoint settings.
        candidate: the candidate model (the endpoint's model name unless `config.model` is set).
        client: an `openai.OpenAI` client (tests); default: one built from the config.
    """

    config_class = OpenAIEngineConfig
    cli_flags: ClassVar[dict[str, str]] = {"model": "--served-model-name"}

    def __init__(self, config: OpenAIEngineConfig, candidate: str, client: Any = None) -> None:
        import openai

        self.config = config
        self.model = config.model or candidate
        self.client = client or openai.OpenAI(
            base_url=config.base_url,
            api_key=os.environ.get(config.api_key_env) or "EMPTY",
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )
        self._pool = ThreadPoolExecutor(max_workers=config.max_concurrency)

    def _one(self, prompt: str) -> str:
        import openai

        try:
            out = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=self.config.max_tokens,
                temperature=self.config.temperature,
            )
        except openai.APIStatusError as e:
            raise EngineError(
                f"endpoint {self.config.base_url} answered HTTP {e.status_code} for model {self.model!r} "
                f"(after {self.config.max_retries} retries where retryable): {e.message}"
            ) from e
        except openai.APITimeoutError as e:
            raise EngineError(
                f"endpoint {self.config.base_url} timed out after {self.config.timeout_s:g}s for model "
                f"{self.model!r} ({self.config.max_retries} retries); raise --timeout-s or lower --max-concurrency"
            ) from e
        except openai.APIConnectionError as e:
            raise EngineError(
                f"endpoint {self.config.base_url} is unreachable ({e}) after {self.config.max_retries} retries"
            ) from e
        if not out.choices:
            return ""
        return out.choices[0].message.content or ""

    def respond(self, items: list[AptitudeItem], prompts: list[str]) -> list[Response]:
        return [Response(t) for t in self._pool.map(self._one, prompts)]

    @classmethod
    def preflight(cls, config: OpenAIEngineConfig, candidates: list[str]) -> None:
        """The endpoint lists every candidate (waiting up to `wait_s` for it, probing each with 1 token).

        Raises:
            EngineError: the endpoint is unreachable or a model does not answer. UnknownModelError: the endpoint
                does not serve a candidate (lists what it serves).
        """
        deadline = time.monotonic() + config.wait_s
        while True:
            try:
                _check_endpoint(config, candidates, probe=config.wait_s > 0)
                return
            except (EngineError, UnknownModelError) as e:
                if time.monotonic() + 5.0 > deadline:
                    raise
                log.info("waiting for %s: %s", config.base_url, e)
                time.sleep(5.0)

    @classmethod
    def check_candidates(cls, config: OpenAIEngineConfig, candidates: list[str]) -> None:
        if config.model and len(candidates) != 1:
            raise ConfigError("--served-model-name applies to one model; give one name")

    @classmethod
    def card_fields(cls, config: OpenAIEngineConfig) -> dict[str, Any]:
        """The card reaches the model at the endpoint: `base_url` and `served_model_name`."""
        return {"base_url": config.base_url, "served_model_name": config.model}


def _check_endpoint(config: OpenAIEngineConfig, candidates: list[str], probe: bool) -> None:
    """The endpoint lists every candidate; with `probe`, each answers a 1-token chat completion too."""
    import openai

    client = openai.OpenAI(
        base_url=config.base_url,
        api_key=os.environ.get(config.api_key_env) or "EMPTY",
        timeout=min(config.timeout_s, 10.0),
        max_retries=1,
    )
    try:
        served = [m.id for m in client.models.list()]
    except openai.APIConnectionError as e:
        raise EngineError(
            f"endpoint {config.base_url} is unreachable: {e} (is the server running? check --base-url)"
        ) from e
    except openai.APIStatusError as e:
        raise EngineError(
            f"endpoint {config.base_url} answered HTTP {e.status_code} to GET /models: {e.message}"
        ) from e
    wanted = [config.model] if config.model else candidates
    missing = [m for m in wanted if m not in served]
    if missing:
        raise UnknownModelError(
            f"endpoint {config.base_url} does not serve model {missing[0]!r}; it serves: {', '.join(served) or 'none'}"
        )
    for name in wanted if probe else []:
        try:
            client.chat.completions.create(
                model=name, messages=[{"role": "user", "content": "Say OK."}], max_tokens=1
            )
        except openai.OpenAIError as e:
            raise EngineError(f"model {name!r} at {config.base_url} does not answer yet: {e}") from e
