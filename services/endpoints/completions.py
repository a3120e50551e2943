"""`POST /v1/completions` (OpenAI "Create completion", legacy prompt form; `stream: true` as server-sent events)."""

from __future__ import annotations

from typing import Any

from fastapi import Request


async def completions(ingress: Any, request: Request) -> Any:
    """Validated, routed (`model: "auto"`) or sent to the named model, failed over (`Ingress.complete`)."""
    return await ingress.complete(request, "completion")
