"""The ingress's bearer-token check (`Authorization: Bearer <token>`).

The token comes from the environment variable named by `ingress.auth_token_env` (stripped); with no
`auth_token_env`, auth is off, and with one whose variable is missing or blank the ingress refuses to start
(fails closed). A wrong or missing key is a 401 OpenAI-style error (`invalid_api_key`); the key itself is never
logged. Every route but `GET /health` checks it (`services.api.build_fastapi_app`).
"""

from __future__ import annotations

import hmac
import logging
import os
from typing import Any

from fastapi import Request

from modelsat.errors import ConfigError
from services.protocol import ApiError

__all__ = ["auth_token", "check_bearer"]

log = logging.getLogger("modelsat.serving")


def auth_token(env: str | None) -> str | None:
    """The API key the ingress requires, read from the environment (fails closed).

    Args:
        env: name of the environment variable holding the key (`ingress.auth_token_env`), or None (auth off).
    Returns:
        The key with surrounding whitespace stripped (a Secret made with `kubectl create secret --from-file`
        ends in a newline), or None when `env` is None.
    Raises:
        ConfigError: `env` is set but the variable is missing or blank: the ingress refuses to start rather
            than serve without auth.
    """
    if not env:
        return None
    token = (os.environ.get(env) or "").strip()
    if not token:
        raise ConfigError(
            f"ingress.auth_token_env={env!r} but the variable is "
            f"{'missing' if env not in os.environ else 'empty'} in the ingress replica: refusing to serve "
            "without auth; set it (e.g. from a Secret), or unset ingress.auth_token_env to serve without auth"
        )
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
