"""The `openai` model server: a model served elsewhere behind an OpenAI-compatible API, proxied.

It forwards to the endpoint (the registry card's `base_url`, e.g. a vLLM server or a hosted API) through the
`openai` async client, streaming; the endpoint's 4xx are client errors, its 5xx and connection errors fail over.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.protocol import ApiError, GenerationRequest
from services.serving import estimate_tokens

__all__ = ["OpenAIProxyModel"]


class OpenAIProxyModel:
    """A model served behind an OpenAI-compatible endpoint, reached through the `openai` async client.

    Args:
        name: the candidate model name it is served under.
        base_url: the endpoint (e.g. http://host:8000/v1).
        model: the model name at the endpoint (default: `name`).
        api_key_env: environment variable with the endpoint's key (None: no key).
        timeout_s: timeout of one request, in seconds.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        model: str | None = None,
        api_key_env: str | None = None,
        timeout_s: float = 120.0,
    ) -> None:
        import os

        import openai

        self.name = name
        self.model = model or name
        key = os.environ.get(api_key_env) if api_key_env else None
        self.client = openai.AsyncOpenAI(
            base_url=base_url, api_key=key or "none", timeout=timeout_s, max_retries=1
        )

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
        except openai.APIStatusError as e:
            raise ApiError(
                e.status_code if e.status_code < 500 else 502,
                f"model {self.name!r} at its endpoint answered HTTP {e.status_code}: {e.message}",
                type_="invalid_request_error" if e.status_code < 500 else "server_error",
                code="upstream_error",
            ) from e
        except (openai.APIConnectionError, openai.APITimeoutError) as e:
            raise ApiError(
                502,
                f"model {self.name!r}: its endpoint is unreachable ({type(e).__name__})",
                type_="server_error",
                code="upstream_unreachable",
            ) from e
        yield {
            "finish_reason": "length" if finish == "length" else "stop",
            "prompt_tokens": estimate_tokens(request.instruction),
            "completion_tokens": n_out,
        }

    @classmethod
    def actor_env(cls, served: Any) -> dict[str, str] | None:
        """Environment variables of its replicas (none)."""
        return None
