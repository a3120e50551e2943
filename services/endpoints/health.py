"""`GET /health`: liveness of the ingress replica (no auth; Serve and load balancers probe it)."""

from __future__ import annotations

from typing import Any

from fastapi import Request


async def health(ingress: Any, request: Request) -> dict[str, Any]:
    """`{"status": "ok", "models": <number of model applications the ingress reaches>}`."""
    return {"status": "ok", "models": len(ingress.apps)}
