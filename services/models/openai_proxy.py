"""The `openai` model server: a model served elsewhere behind an OpenAI-compatible API, proxied.

It forwards to the endpoint (the registry card's `base_url`, e.g. a vLLM server or a hosted API) through the
`openai` async client, streaming, without retries of its own (`max_retries=0`: the ingress fails over). The
endpoint's 400/413/422 are the client's errors (no failover); its 401/403/404/429, 5xx and connection errors
are this model's failures (the ingress tries the next model). The endpoint's error text is never passed on
(OpenAI's 401 message quotes part of the key); the status is. A replica with `api_key_env` set but the
variable missing refuses to start, and its health check pings the endpoint (`GET /models`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from modelsat.errors import ConfigError
from services.protocol import ApiError, GenerationRequest
from services.serving import estimate_tokens

__all__ = ["CLIENT_STATUSES", "OpenAIProxyModel"]

CLIENT_STATUSES = (400, 413, 422)
"""Upstream statuses that are the request's fault: passed to the client as they are (no failover)."""

_NO_KEY = "no-key"  # the openai client needs a credential; endpoints without auth ignore it


class OpenAIProxyModel:
    """A model served behind an OpenAI-compatible endpoint, reached through the `openai` async client.

    Args:
        name: the candidate model name it is served under.
        base_url: the endpoint (e.g. http://host:8000/v1).
        model: the model name at the endpoint (default: `name`).
        api_key_env: environment variable with the endpoint's key (None: the endpoint needs none).
        timeout_s: timeout of one request, in seconds.
        allow_insecure_http: checked by the config (`OpenAIModelEngine`); accepted here for its fields.
        health_check_interval_s: the health check pings the endpoint at most this often, in seconds.
    Raises:
        ConfigError: `api_key_env` is set but the variable is missing or blank in the replica.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
        allow_insecure_http: bool = False,
        health_check_interval_s: float = 30.0,
    ) -> None:
        import os

        import openai

        self.name = name
        self.model = model or name
        key = (os.environ.get(api_key_env) or "").strip() if api_key_env else _NO_KEY
        if not key:
            raise ConfigError(
                f"model {name!r}: api_key_env={api_key_env!r} but the variable is missing or empty in the "
                "replica; set it (e.g. from a Secret), or unset api_key_env for an endpoint without auth"
            )
        self.client = openai.AsyncOpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=0)
        self.health_check_interval_s = health_check_interval_s
        self._checked_at = float("-inf")

    def _upstream_error(self, status: int) -> ApiError:
        """The error of an upstream HTTP status, without the upstream's text."""
        if status in CLIENT_STATUSES:
            return ApiError(
                status,
                f"model {self.name!r}: its endpoint refused the request as invalid (HTTP {status})",
                code="upstream_rejected",
            )
        return ApiError(
            502,
            f"model {self.name!r}: its endpoint answered HTTP {status}",
            type_="server_error",
            code="upstream_error",
        )

    def _unreachable(self, e: Exception) -> ApiError:
        return ApiError(
            502,
            f"model {self.name!r}: its endpoint is unreachable ({type(e).__name__})",
            type_="server_error",
            code="upstream_unreachable",
        )

    async def check_health(self) -> None:
        """Serve health check: the endpoint answers `GET /models` (at most every `health_check_interval_s`;
        a 404 counts as reachable: not every endpoint lists models).

        Raises:
            ApiError: the endpoint is unreachable, refuses the key (401/403) or answers 5xx.
        """
        import openai

        if time.monotonic() - self._checked_at < self.health_check_interval_s:
            return
        try:
            await self.client.models.list()
        except openai.NotFoundError:
            pass
        except openai.APIStatusError as e:
            raise self._upstream_error(e.status_code) from None
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise self._unreachable(e) from None
        self._checked_at = time.monotonic()

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[dict[str, Any]]:
        """Text deltas (`{"text"}`), then `{"finish_reason", "prompt_tokens", "completion_tokens"}`."""
        import openai

        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": request.max_tokens, "stream": True}
        for key in ("temperature", "top_p", "seed"):
            if getattr(request, key) is not None:
                kwargs[key] = getattr(request, key)
        if request.stop:
            kwargs["stop"] = request.stop
        finish, n_out = "stop", 0
        try:
            if request.kind == "chat":
                stream = await self.client.chat.completions.create(messages=request.messages, **kwargs)
                async for chunk in stream:
                    if chunk.choices:
                        c = chunk.choices[0]
                        if c.delta and c.delta.content:
                            n_out += 1
                            yield {"text": c.delta.content}
                        finish = c.finish_reason or finish
            else:
                stream = await self.client.completions.create(prompt=request.prompt, **kwargs)
                async for chunk in stream:
                    if chunk.choices:
                        c = chunk.choices[0]
                        if c.text:
                            n_out += 1
                            yield {"text": c.text}
                        finish = c.finish_reason or finish
        except openai.APIStatusError as e:  # `from None`: the upstream's text must not travel with it
            raise self._upstream_error(e.status_code) from None
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise self._unreachable(e) from None
        yield {
            "finish_reason": "length" if finish == "length" else "stop",
            "prompt_tokens": estimate_tokens(request.instruction),
            "completion_tokens": n_out,
        }

    @classmethod
    def actor_env(cls, served: Any) -> dict[str, str] | None:
        """Environment variables of its replicas (none)."""
        return None
