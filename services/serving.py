"""Request validation and response building of the routed API (no Ray; unit-tested directly).

Validation uses the `openai` package's request types (see `services.protocol`); on top of them the API
enforces what routing needs: a non-empty conversation whose last turn is the user's instruction, text content
only, `max_tokens` in [1, limit], `n` = 1, and prompt + `max_tokens` within the context length (413 above).
Bodies are strict JSON (finite numbers, nested at most `MAX_JSON_DEPTH`), refused by Content-Length before they
are read. Known OpenAI fields the API does not implement (`UNSUPPORTED_PARAMETERS`: tools, response_format,
logprobs, stream_options, ...) are a 400 `unsupported_parameter`; unknown fields are ignored and logged (their
count and the first names only, never values).
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
    "MAX_JSON_DEPTH",
    "UNSUPPORTED_PARAMETERS",
    "ignored_summary",
    "parse_body",
    "parse_request",
    "read_body",
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


MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a request body may have (OpenAI requests need about 6)."""

UNSUPPORTED_PARAMETERS = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "parallel_tool_calls",
    "response_format",
    "logprobs",
    "top_logprobs",
    "stream_options",
    "logit_bias",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "echo",
    "best_of",
    "suffix",
    "frequency_penalty",
    "presence_penalty",
    "reasoning_effort",
    "verbosity",
    "moderation",
)
"""Known OpenAI request fields the routed API does not implement: a request that sets one (to anything but
null, false or empty) is refused with 400 `unsupported_parameter` instead of being answered without it."""


def _too_large(size: int, limit: int) -> ApiError:
    return ApiError(413, f"request body is {size} bytes; the limit is {limit}", code="body_too_large")


async def read_body(request: Any, max_body_bytes: int) -> bytes:
    """The request body, refused before reading when its Content-Length is over the limit, and cut off at the
    limit when it arrives without one (chunked).

    Args:
        request: a Starlette request. max_body_bytes: the limit, in bytes.
    Raises:
        ApiError: 413 body too large; 400 a Content-Length that is not a non-negative integer.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(
                400, f"Content-Length={declared[:40]!r} is not a byte count", code="invalid_request"
            )
        if int(declared) > max_body_bytes:
            raise _too_large(int(declared), max_body_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise _too_large(size, max_body_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (iterative: a deep value cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if d > MAX_JSON_DEPTH:
                return d
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def parse_body(raw: bytes, max_body_bytes: int) -> dict[str, Any]:
    """The JSON object of a request body: strict JSON (no NaN, Infinity or numbers out of float range), nested
    at most `MAX_JSON_DEPTH` deep.

    Raises:
        ApiError: 413 body too large; 400 not JSON, not an object, a non-finite number, or nested too deep.
    """
    if len(raw) > max_body_bytes:
        raise _too_large(len(raw), max_body_bytes)
    try:
        body = json.loads(raw, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError as e:
        raise ApiError(
            400,
            f"request body is nested too deeply; the limit is {MAX_JSON_DEPTH} levels",
            code="invalid_json",
        ) from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"request body is not valid JSON: {e}", code="invalid_json") from e
    except ValueError as e:  # NaN, Infinity, 1e999
        raise ApiError(
            400, f"request body is not valid JSON: {e}; numbers must be finite", code="invalid_json"
        ) from e
    if not isinstance(body, dict):
        raise ApiError(
            400, f"request body must be a JSON object, got {type(body).__name__}", code="invalid_json"
        )
    if _depth(body) > MAX_JSON_DEPTH:
        raise ApiError(
            400,
            f"request body is nested too deeply; the limit is {MAX_JSON_DEPTH} levels",
            code="invalid_json",
        )
    return body


def ignored_summary(ignored: list[str], limit: int = 10) -> str:
    """A bounded description of ignored field names for the log: the count and the first `limit` names, each
    cut at 40 characters."""
    shown = ", ".join(repr(k[:40]) for k in ignored[:limit])
    return f"{len(ignored)} unknown field(s): {shown}" + (", ..." if len(ignored) > limit else "")


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
    unsupported = [k for k in UNSUPPORTED_PARAMETERS if body.get(k) not in (None, False, [], {})]
    if unsupported:
        raise ApiError(
            400,
            f"{unsupported[0]} is not supported by the routed API (answers are plain text); supported: "
            "model, messages/prompt, max_tokens, max_completion_tokens, temperature, top_p, stop, seed, n=1, "
            "stream, router",
            code="unsupported_parameter",
            param=unsupported[0],
        )
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
