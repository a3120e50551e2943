"""Model applications: one Serve application per candidate model (plain classes; `services.app` deploys).

Both engines answer a `GenerationRequest` with a stream (`generate_stream`): text deltas `{"text": ...}`, then
one `{"finish_reason", "prompt_tokens", "completion_tokens"}`. The ingress turns it into an OpenAI response
or server-sent events; waiting for the first item with a short timeout is how it notices an unavailable
model and fails over.

- `VLLMModel`: vLLM's async engine (`vllm.AsyncLLMEngine`, the V1 `AsyncLLM`) on a local path or hub id;
  chat requests use the tokenizer's chat template when it has one, else `role: content` lines.
- `OpenAIProxyModel`: forwards to a model served elsewhere behind an OpenAI-compatible API (the registry
  card's `base_url`), streaming; the endpoint's 4xx are client errors, its 5xx and connection errors fail over.
- `RecordedModel`: answers instructions of a shared zoo with the model's recorded `response_tail`, matched
  by exact instruction text; anything else is a 404 `instruction_not_recorded` (a client error: no failover).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from services.protocol import ApiError, GenerationRequest
from services.serving import estimate_tokens

__all__ = ["OpenAIProxyModel", "RecordedModel", "VLLMModel"]

log = logging.getLogger("modelsat.serving")


class RecordedModel:
    """Replays one model's recorded responses from a routing data directory.

    Args:
        name: the candidate model name it is served under.
        routing_data: routing data directory, or a name under $MODELSAT_DATA.
        model: the model's name in the zoo (default: `name`).
    Raises:
        DataError: the zoo cannot be read. UnknownModelError: the zoo has no such model.
    """

    def __init__(self, name: str, routing_data: str, model: str | None = None) -> None:
        from modelsat.data import recorded_responses
        from modelsat.paths import resolve_zoo_dir

        self.responses: dict[str, str] = recorded_responses(routing_data, model or name)
        self.name = name
        self.data_name = resolve_zoo_dir(routing_data).name

    def _lookup(self, request: GenerationRequest) -> str:
        text = self.responses.get(request.instruction)
        if text is None:
            raise ApiError(
                404,
                f"model {self.name!r} is a recorded model of the routing data {self.data_name!r} and has no recorded response to this "
                "instruction (recorded models answer only the zoo's instructions, matched exactly)",
                type_="not_found_error",
                code="instruction_not_recorded",
            )
        return text

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[dict[str, Any]]:
        """Text deltas (`{"text"}`), then `{"finish_reason", "prompt_tokens", "completion_tokens"}`.

        The recorded text is cut to `max_tokens` words (a word counts as a token here).
        """
        text = self._lookup(request)
        words = text.split(" ")
        cut = len(words) > request.max_tokens
        words = words[: request.max_tokens]
        for i in range(0, len(words), 8):
            yield {"text": (" " if i else "") + " ".join(words[i : i + 8])}
        yield {
            "finish_reason": "length" if cut else "stop",
            "prompt_tokens": estimate_tokens(request.instruction),
            "completion_tokens": len(words),
        }

    def check_health(self) -> None:
        """Serve health check: the recorded responses are loaded."""
        if not self.responses:
            raise RuntimeError(f"recorded model {self.name!r} has no responses")


class VLLMModel:
    """A model served by vLLM's async engine.

    Args:
        name: the candidate model name it is served under.
        model_path: local model directory or hub id.
        engine_args: `vllm.AsyncEngineArgs` fields (dtype, max_model_len, tensor_parallel_size, ...).
    """

    def __init__(self, name: str, model_path: str, engine_args: dict[str, Any] | None = None) -> None:
        from vllm import AsyncEngineArgs, AsyncLLMEngine

        self.name = name
        args = AsyncEngineArgs(model=model_path, served_model_name=name, **(engine_args or {}))
        self.engine = AsyncLLMEngine.from_engine_args(args)
        self._tokenizer: Any = None

    async def _prompt(self, request: GenerationRequest) -> str:
        if request.kind == "completion":
            return request.prompt
        if self._tokenizer is None:
            tok = self.engine.get_tokenizer()
            self._tokenizer = await tok if inspect.isawaitable(tok) else tok
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(
                request.messages, tokenize=False, add_generation_prompt=True
            )
        return "\n".join(f"{m['role']}: {m['content']}" for m in request.messages) + "\nassistant:"

    def _params(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams

        kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "stop": request.stop or None}
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.seed is not None:
            kwargs["seed"] = request.seed
        return SamplingParams(**kwargs)

    async def _run(self, request: GenerationRequest) -> AsyncIterator[Any]:
        try:
            prompt = await self._prompt(request)
            async for out in self.engine.generate(prompt, self._params(request), request.request_id):
                yield out
        except ValueError as e:  # vLLM rejects e.g. prompts longer than max_model_len: the client's fault
            raise ApiError(
                400, f"model {self.name!r} rejected the request: {e}", code="invalid_request"
            ) from e

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[dict[str, Any]]:
        """Text deltas (`{"text"}`), then `{"finish_reason", "prompt_tokens", "completion_tokens"}`."""
        sent, final = 0, None
        async for out in self._run(request):
            final = out
            text = out.outputs[0].text if out.outputs else ""
            if len(text) > sent:
                yield {"text": text[sent:]}
                sent = len(text)
        if final is None or not final.outputs:
            raise ApiError(500, f"model {self.name!r} produced no output", type_="server_error")
        o = final.outputs[0]
        yield {
            "finish_reason": "length" if o.finish_reason == "length" else "stop",
            "prompt_tokens": len(final.prompt_token_ids or []),
            "completion_tokens": len(o.token_ids),
        }

    async def check_health(self) -> None:
        """Serve health check: vLLM's engine is alive."""
        await self.engine.check_health()


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
