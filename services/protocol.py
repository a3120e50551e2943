"""Wire types of the routed OpenAI-compatible API.

Requests are validated with the `openai` package's published request types (`CompletionCreateParamsBase` of
chat completions and completions, as pydantic `TypeAdapter`s over its TypedDicts) and responses are built with
its response models (`ChatCompletion`, `ChatCompletionChunk`, `Completion`, `Model`). `ray.serve.llm`'s
`openai_api_models` would also import without the `ray[llm]` extra, but it pulls vLLM into every process that
touches it (about 660 MB and 18 s here), which the ingress and the light recorded-model replicas cannot afford.

Model-SAT's own extras are here: the `router` request field (`RouterOptions`), the routing info returned with
`return_scores`, and the engine-level `GenerationRequest` / `GenerationResult` exchanged between the ingress
and the model applications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from modelsat.config import BaseConfig

__all__ = [
    "ROLES",
    "ApiError",
    "GenerationRequest",
    "GenerationResult",
    "RouterOptions",
    "error_body",
]

#: Message roles the API accepts (OpenAI chat completions).
ROLES = ("system", "developer", "user", "assistant", "tool")


class RouterOptions(BaseConfig):
    """The `router` request field: per-request routing settings (Model-SAT extension)."""

    return_scores: bool = Field(False, description="Return every candidate's router score and p(correct)")
    cost_weight: float = Field(
        0.0, ge=0.0, description="λ in 1/USD: route by p(correct) − λ·expected cost of this request"
    )
    candidates: list[str] | None = Field(None, description="Route among these candidate models only")


@dataclass(frozen=True)
class GenerationRequest:
    """What the ingress sends a model application (engine level, after validation).

    Attributes:
        request_id: the ingress request id (logs).
        kind: `chat` (messages) or `completion` (prompt).
        messages: [{"role", "content"}] with text content (chat).
        prompt: the prompt text (completion).
        instruction: the last user turn (chat) or the prompt (completion): what the router read.
        max_tokens: generated tokens at most, >= 1.
        temperature, top_p: sampling (None = engine default).
        stop: stop strings.
        seed: sampling seed (None = engine default).
    """

    request_id: str
    kind: Literal["chat", "completion"]
    instruction: str
    max_tokens: int
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str = ""
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass(frozen=True)
class GenerationResult:
    """A model application's answer: text, why it stopped, and token counts (usage)."""

    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int


class ApiError(Exception):
    """An error with an HTTP status and an OpenAI error body; raised by model applications and the ingress.

    Status < 500 is the client's fault (no failover); >= 500 is the model's (the ingress tries the next model).

    Args:
        status: HTTP status.
        message: what went wrong, naming the bad value and what is allowed.
        type_: OpenAI error type (`invalid_request_error`, `authentication_error`, `not_found_error`, ...).
        code: machine-readable code (e.g. `instruction_not_recorded`, `context_length_exceeded`).
        param: the offending request field, if any.
        retry_after_s: seconds after which a retry may succeed (the `Retry-After` header of a 503), or None.
    """

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    def __reduce__(self) -> tuple[Any, ...]:  # keep every field across Ray's pickling
        return (ApiError, (self.status, self.message, self.type, self.code, self.param, self.retry_after_s))

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)

    def headers(self) -> dict[str, str]:
        """HTTP headers of the error response (`Retry-After` when set)."""
        return {} if self.retry_after_s is None else {"Retry-After": str(int(self.retry_after_s))}


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI-style error JSON: `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
