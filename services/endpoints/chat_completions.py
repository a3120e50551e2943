"""`POST /v1/chat/completions` (OpenAI "Create chat completion"; `stream: true` answers with server-sent events)."""

from __future__ import annotations

from typing import Any

from fastapi import Request


async def chat_completions(ingress: Any, request: Request) -> Any:
    """Validated, routed (`model: "auto"`) or sent to the named model, failed over (`Ingress.complete`)."""
    return await ingress.complete(request, "chat")
