"""Request validation and response building of the routed API (no Ray; unit-tested directly).

Validation uses the `openai` package's request types (see `services.protocol`); on top of them the API
enforces what routing needs: a non-empty conversation whose last turn is the user's instruction, text content
only, `max_tokens` in [1, limit], `n` = 1, and prompt + `max_tokens` within the context length (413 above).
Unknown fields are ignored and logged (names only, never values).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from typing import Any

from pydantic import TypeAdapter, ValidationError

from modelsat.errors import ConfigError
from services.protocol import ROLES, ApiError, GenerationRequest, GenerationResult, RouterOptions

__all__ = [
    "ParsedRequest",
    "chat_response",
    "completion_response",
    "estimate_tokens",
    "parse_body",
    "parse_request",
    "stream_chunk",
]

log = logging.getLogger("modelsat.serving")


def _adapters() -> tuple[TypeAdapter, TypeAdapter, set[str], set[str]]:
    from openai.types import completion_create_params as completion_params
    from openai.types.chat import completion_create_params as chat_params

    chat, completion = chat_params.CompletionCreateParamsBase, completion_params.CompletionCreateParamsBase
    ours = {"stream", "router"}
    return (
        TypeAdapter(chat),
        TypeAdapter(completion),
        set(chat.__required_keys__ | chat.__optional_keys__) | ours,
        set(completion.__required_keys__ | completion.__optional_keys__) | ours,
    )


_CHAT, _COMPLETION, _CHAT_KEYS, _COMPLETION_KEYS = _adapters()


def estimate_tokens(text: str) -> int:
    """Token estimate of a text for limits and expected cost: ceil(characters / 4), at least 1.

    The ingress does not hold every model's tokenizer; 4 characters per token is the usual estimate for
    English with BPE tokenizers (OpenAI's guidance). Model applications report exact counts in `usage`.
    """
    return max(1, math.ceil(len(text) / 4))


class ParsedRequest:
    """A validated request.

    Attributes:
        model: the requested model (`auto` = routed).
        stream: server-sent events wanted.
        router: routing options (`RouterOptions`).
        generation: what the model application receives.
        prompt_tokens: estimated prompt tokens.
        ignored: names of unknown fields that were ignored.
    """

    def __init__(
        self,
        model: str,
        stream: bool,
        router: RouterOptions,
        generation: GenerationRequest,
        prompt_tokens: int,
        ignored: list[str],
    ) -> None:
        self.model = model
        self.stream = stream
        self.router = router
        self.generation = generation
        self.prompt_tokens = prompt_tokens
        self.ignored = ignored


def parse_body(raw: bytes, max_body_bytes: int) -> dict[str, Any]:
    """The JSON object of a request body.

    Raises:
        ApiError: 413 body too large; 400 not JSON or not an object.
    """
    if len(raw) > max_body_bytes:
        raise ApiError(
            413, f"request body is {len(raw)} bytes; the limit is {max_body_bytes}", code="body_too_large"
        )
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}", code="invalid_json") from e
    if not isinstance(body, dict):
        raise ApiError(
            400, f"request body must be a JSON object, got {type(body).__name__}", code="invalid_json"
        )
    return body


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p)[:1].isupper()) or "body"
    return f"{loc}: {err['msg']} (got {err.get('input')!r:.80})"


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(isinstance(p, dict) for p in content):
        parts = []
        for j, p in enumerate(content):
            if p.get("type") != "text" or not isinstance(p.get("text"), str):
                raise ApiError(
                    400,
                    f"{where}.content[{j}] has type {p.get('type')!r}; only text parts are supported",
                    param=f"{where}.content",
                )
            parts.append(p["text"])
        return "".join(parts)
    raise ApiError(
        400,
        f"{where}.content must be a string or a list of text parts, got {type(content).__name__}",
        param=f"{where}.content",
    )


def parse_request(
    body: dict[str, Any], kind: str, default_max_tokens: int, max_tokens_limit: int, context_length: int
) -> ParsedRequest:
    """Validate a chat-completions (`kind="chat"`) or completions (`kind="completion"`) request.

    Raises:
        ApiError: 400 for every invalid field (naming it, its value and what is allowed); 413 when the prompt
            plus `max_tokens` exceeds `context_length`.
    """
    adapter, known = (_CHAT, _CHAT_KEYS) if kind == "chat" else (_COMPLETION, _COMPLETION_KEYS)
    if kind == "chat":
        msgs = body.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise ApiError(
                400, "messages must be a non-empty list of {role, content} objects", param="messages"
            )
        for i, m in enumerate(msgs):
            if not isinstance(m, dict):
                raise ApiError(
                    400, f"messages[{i}] must be an object, got {type(m).__name__}", param="messages"
                )
            if m.get("role") not in ROLES:
                raise ApiError(
                    400,
                    f"messages[{i}].role={m.get('role')!r}; allowed: {', '.join(ROLES)}",
                    param="messages",
                )
    try:
        adapter.validate_python(body)
    except ValidationError as e:
        raise ApiError(400, f"invalid request: {_first_error(e)}") from e
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model must be a non-empty string (a zoo model name, or 'auto')", param="model")
    ignored = sorted(k for k in body if k not in known)
    if body.get("n") not in (None, 1):
        raise ApiError(400, f"n={body.get('n')!r}; only n=1 is supported", param="n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    max_tokens = default_max_tokens if max_tokens is None else max_tokens
    if (
        not isinstance(max_tokens, int)
        or isinstance(max_tokens, bool)
        or not 1 <= max_tokens <= max_tokens_limit
    ):
        raise ApiError(
            400,
            f"max_tokens={max_tokens!r}; allowed: an integer in [1, {max_tokens_limit}]",
            param="max_tokens",
        )
    try:
        router = RouterOptions.from_dict(body.get("router") or {}, source="router")
    except ConfigError as e:
        raise ApiError(400, str(e), param="router") from e
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else list(stop)
    common = {
        "request_id": f"req-{uuid.uuid4().hex[:16]}",
        "max_tokens": max_tokens,
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "stop": stop,
        "seed": body.get("seed"),
    }
    if kind == "chat":
        messages = [
            {"role": m["role"], "content": _text(m.get("content"), f"messages[{i}]")}
            for i, m in enumerate(body["messages"])
        ]
        if messages[-1]["role"] != "user" or not messages[-1]["content"].strip():
            raise ApiError(
                400,
                "the last message must be a non-empty user message (the instruction to route)",
                param="messages",
            )
        instruction = messages[-1]["content"]
        generation = GenerationRequest(kind="chat", instruction=instruction, messages=messages, **common)
        text = "".join(m["content"] for m in messages)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt.strip():
            raise ApiError(400, "prompt must be one non-empty string", param="prompt")
        generation = GenerationRequest(kind="completion", instruction=prompt, prompt=prompt, **common)
        text = prompt
    prompt_tokens = estimate_tokens(text)
    if prompt_tokens + max_tokens > context_length:
        raise ApiError(
            413,
            f"prompt (~{prompt_tokens} tokens) + max_tokens ({max_tokens}) exceeds the context length "
            f"({context_length} tokens)",
            code="context_length_exceeded",
            param="messages" if kind == "chat" else "prompt",
        )
    return ParsedRequest(model, bool(body.get("stream")), router, generation, prompt_tokens, ignored)


def _usage(result: GenerationResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def chat_response(
    request_id: str, model: str, result: GenerationResult, extra: dict[str, Any] | None = None
) -> dict:
    """An OpenAI `ChatCompletion` (validated with the openai package's model) as JSON-ready dict."""
    from openai.types.chat import ChatCompletion

    out = ChatCompletion.model_validate(
        {
            "id": f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                }
            ],
            "usage": _usage(result),
        }
    ).model_dump(mode="json", exclude_none=True)
    return {**out, **(extra or {})}


def completion_response(
    request_id: str, model: str, result: GenerationResult, extra: dict[str, Any] | None = None
) -> dict:
    """An OpenAI `Completion` as JSON-ready dict."""
    from openai.types import Completion

    out = Completion.model_validate(
        {
            "id": f"cmpl-{request_id}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "text": result.text, "finish_reason": result.finish_reason}],
            "usage": _usage(result),
        }
    ).model_dump(mode="json", exclude_none=True)
    return {**out, **(extra or {})}


def stream_chunk(
    kind: str,
    request_id: str,
    model: str,
    delta: str | None,
    finish_reason: str | None = None,
    first: bool = False,
) -> str:
    """One server-sent event (`data: {...}\\n\\n`) of a streamed chat completion or completion."""
    if kind == "chat":
        from openai.types.chat import ChatCompletionChunk

        d: dict[str, Any] = {}
        if first:
            d["role"] = "assistant"
        if delta is not None:
            d["content"] = delta
        chunk = ChatCompletionChunk.model_validate(
            {
                "id": f"chatcmpl-{request_id}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": d, "finish_reason": finish_reason}],
            }
        ).model_dump(mode="json", exclude_none=True)
    else:
        from openai.types import Completion

        chunk = Completion.model_validate(
            {
                "id": f"cmpl-{request_id}",
                "object": "text_completion",
                "created": int(time.time()),
                "model": model,
                # the type requires a finish reason; streamed chunks carry null until the last one (as OpenAI's)
                "choices": [{"index": 0, "text": delta or "", "finish_reason": finish_reason or "stop"}],
            }
        ).model_dump(mode="json", exclude_none=True)
        chunk["choices"][0]["finish_reason"] = finish_reason
    return f"data: {json.dumps(chunk)}\n\n"
