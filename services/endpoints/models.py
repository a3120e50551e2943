"""`GET /v1/models`: the served candidate models plus the router's virtual model `auto` (OpenAI "List models")."""

from __future__ import annotations

import time
from typing import Any

from fastapi import Request


async def list_models(ingress: Any, request: Request) -> dict[str, Any]:
    """`{"object": "list", "data": [Model, ...]}` in the `openai.types.Model` shape; needs the bearer token.

    Raises:
        ApiError: 401 without a valid token (when auth is on).
    """
    from openai.types import Model

    ingress._auth(request)
    now = int(time.time())
    data = [
        Model(id=m, created=now, object="model", owned_by="modelsat").model_dump()
        for m in ["auto", *ingress.apps]
    ]
    return {"object": "list", "data": data}
