"""The OpenAI-compatible endpoints of the ingress: one module per endpoint, registered in `ENDPOINTS`.

Each endpoint is an `async def handler(ingress, request)` that answers with what FastAPI accepts (a dict, a
`JSONResponse`, a `StreamingResponse`) or raises `services.protocol.ApiError` (an OpenAI-style error body).
`services.api.build_fastapi_app` binds every entry to the replica's `Ingress`. A new endpoint is one module here
(wire types in `services.protocol`, logic in `services.serving`) plus one line in `ENDPOINTS`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.endpoints.chat_completions import chat_completions
from services.endpoints.completions import completions
from services.endpoints.health import health
from services.endpoints.models import list_models

__all__ = ["ENDPOINTS", "Endpoint"]


@dataclass(frozen=True)
class Endpoint:
    """One HTTP route of the ingress: `path`, its HTTP `methods`, and the handler `(ingress, request)`."""

    path: str
    methods: tuple[str, ...]
    handler: Callable[[Any, Any], Awaitable[Any]]


ENDPOINTS: list[Endpoint] = [
    Endpoint("/health", ("GET",), health),
    Endpoint("/v1/models", ("GET",), list_models),
    Endpoint("/v1/chat/completions", ("POST",), chat_completions),
    Endpoint("/v1/completions", ("POST",), completions),
]
"""Every route of the ingress, in the order FastAPI matches them."""
