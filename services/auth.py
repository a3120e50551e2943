"""The ingress's bearer-token check (`Authorization: Bearer <token>`).

The token comes from the environment variable named by `ingress.auth_token_env`; with no token, auth is off.
A wrong or missing key is a 401 OpenAI-style error (`invalid_api_key`); the key itself is never logged.
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

from fastapi import Request

from services.protocol import ApiError

__all__ = ["auth_token", "check_bearer"]

log = logging.getLogger("modelsat.serving")


def auth_token(env: str | None) -> str | None:
    """The API key the ingress requires, read from the environment.

    Args:
        env: name of the environment variable holding the key (`ingress.auth_token_env`), or None.
    Returns:
        The key, or None (auth off) when `env` is unset or the variable is empty (logged as a warning).
    """
    token = os.environ.get(env) if env else None
    if env and not token:
        log.warning("ingress.auth_token_env=%s is set but the variable is empty: auth is off", env)
    return token


def check_bearer(request: Request, token: str | None, errors: Any) -> None:
    """Check the request's `Authorization: Bearer <token>` header (constant-time compare).

    Args:
        request: the incoming request.
        token: the required key, or None (auth off: every request passes).
        errors: the `errors{type}` counter, incremented with `type=authentication_error` on a rejection.
    Raises:
        ApiError: 401 `invalid_api_key` when the header is missing or its key differs.
    """
    if not token:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        errors.inc(tags={"type": "authentication_error"})
        raise ApiError(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <token>'",
            type_="authentication_error",
            code="invalid_api_key",
        )
