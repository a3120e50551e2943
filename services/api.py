"""The OpenAI-compatible ingress (FastAPI, built per replica; plain class, deployed by `services.app`).

Routes: `POST /v1/chat/completions` (and `stream: true` as server-sent events), `POST /v1/completions`,
`GET /v1/models` (the zoo plus the virtual model `auto`), `GET /health`.

`model: "auto"` asks the router deployment for a ranking and sends the request to the best candidate; if its
application errors or is unavailable (a Ray actor error, no replica, a 5xx from the model, a timeout) the
request goes to the next one (failover; a streamed request can fail over until its first chunk, a
non-streamed one until its answer is complete). A named
model goes straight to that model's application. The response's `model` names the model that answered;
headers `x-modelsat-model`, `x-modelsat-router-ms` and `x-modelsat-fallbacks` expose the decision.
Errors are OpenAI-style JSON (`{"error": {...}}`, STYLE.md §6); prompts and keys are never logged unless
`ingress.log_prompts` is on.

Metrics (`ray.util.metrics`, exported on Ray's Prometheus endpoint): `modelsat_requests_total{model,route}`,
`modelsat_router_latency_ms` (histogram), `modelsat_fallbacks_total{model}`, `modelsat_errors_total{type}`.

This module holds the FastAPI app and the `Ingress` class (request parsing, response building). The rest
lives apart: one module per endpoint in `services.endpoints` (registry `ENDPOINTS`), the bearer-token check in
`services.auth`, the router's ranking and its fallback when the router is unavailable in `services.ranking`
(`Ranker`), trying the ranked models in `services.failover`, server-sent events in `services.streaming`, the
metrics in `services.metrics`, validation and response bodies in `services.serving`, wire types in
`services.protocol`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from modelsat.serving_config import IngressSection
from services.auth import auth_token, check_bearer
from services.failover import CircuitBreaker, Failover
from services.metrics import IngressMetrics
from services.protocol import ApiError, GenerationResult, error_body
from services.ranking import Ranker
from services.serving import (
    ParsedRequest,
    chat_response,
    completion_response,
    ignored_summary,
    parse_body,
    parse_request,
    read_body,
)
from services.streaming import sse_events

__all__ = ["Ingress", "build_fastapi_app"]

log = logging.getLogger("modelsat.serving")

TITLE = "Model-SAT routed OpenAI-compatible API"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method) as OpenAI-style JSON."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        message, code = f"unknown route {request.method} {request.url.path[:200]}", "unknown_url"
    elif exc.status_code == 405:
        message, code = (
            f"method {request.method} is not allowed on {request.url.path[:200]}",
            "method_not_allowed",
        )
    else:
        message, code = str(exc.detail)[:200], None
    body = error_body(message, "invalid_request_error", code)
    return JSONResponse(body, status_code=exc.status_code, headers=dict(exc.headers or {}))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {
            "error": {
                "message": f"internal error: {type(exc).__name__}",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        },
        status_code=500,
    )


def build_fastapi_app(ingress: Ingress) -> FastAPI:
    """The ingress's FastAPI app, its routes bound to this `Ingress` object.

    Called in each replica (Serve's late-bound `__serve_build_asgi_app__`), so FastAPI analyses the routes
    where they run: nothing is pickled from the driver, and no route signature carries `self` (a
    module-level app pickled into the replica broke with newer FastAPI: every request a 422 for `self`).
    Tests call it in-process with `fastapi.testclient.TestClient`.

    Args:
        ingress: the replica's `Ingress`.
    Returns:
        The app: `GET /health`, `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`.

    Source: Ray Serve `serve.ingress` (late-bound app, https://docs.ray.io/en/latest/serve/http-guide.html).
    """
    app = FastAPI(title=TITLE, docs_url=None, redoc_url=None, openapi_url=None)  # no unauthenticated docs
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    from services.endpoints import ENDPOINTS

    for ep in ENDPOINTS:
        app.add_api_route(ep.path, _bound(ep.handler, ingress), methods=list(ep.methods))
    return app


def _bound(handler: Any, ingress: Ingress) -> Any:
    """The route function FastAPI analyses: `(request)` only, the handler's `ingress` bound here."""

    async def endpoint(request: Request) -> Any:
        return await handler(ingress, request)

    endpoint.__name__ = handler.__name__
    endpoint.__doc__ = handler.__doc__
    return endpoint


class Ingress:
    """Ingress deployment: validates, routes, fails over, and answers in the OpenAI wire format.

    Args:
        router: handle of the router deployment.
        settings: `IngressSection` as a dict.
        registry: model registry URI (context lengths, the router's fallback order), or None.
        metrics: the metrics to record (default: Ray's, `IngressMetrics.ray()`; tests pass in-memory ones).
        in_process_router: `router.placement: ingress`: the router's arguments; this replica then loads the
            router itself (`services.router.InProcessRouter`) and `router` is None.

    Attributes:
        ranker: the `Ranker` of this replica (holds `router`, `registry_uri` and the cached fallback order,
            exposed here as properties).
    """

    def __init__(
        self,
        router: Any,
        settings: dict[str, Any],
        registry: str | None = None,
        metrics: IngressMetrics | None = None,
        in_process_router: dict[str, Any] | None = None,
    ) -> None:
        self.settings = IngressSection.model_validate(settings)
        self.in_process = None
        if in_process_router is not None:
            from services.router import InProcessRouter

            router = self.in_process = InProcessRouter(**in_process_router)
        self.apps: dict[str, str] = {}
        self.context: dict[str, int] = {}
        self._handles: dict[str, Any] = {}
        self.token = auth_token(
            self.settings.auth_token_env
        )  # fails closed: a missing token stops the replica
        self.breaker = CircuitBreaker(self.settings.breaker_failures, self.settings.breaker_cooldown_s)
        m = metrics or IngressMetrics.ray()
        self.m_requests, self.m_router_ms, self.m_fallbacks, self.m_errors = (
            m.requests,
            m.router_ms,
            m.fallbacks,
            m.errors,
        )
        self.ranker = Ranker(
            router,
            self.settings,
            m,
            served=lambda: self.apps,
            context_lengths=lambda: self.context,
            registry=registry,
        )

    @property
    def router(self) -> Any:
        """Handle of the router deployment (held by `self.ranker`)."""
        return self.ranker.router

    @router.setter
    def router(self, handle: Any) -> None:
        self.ranker.router = handle

    @property
    def registry_uri(self) -> str | None:
        """Model registry URI (context lengths, the fallback order), or None (held by `self.ranker`)."""
        return self.ranker.registry_uri

    @registry_uri.setter
    def registry_uri(self, uri: str | None) -> None:
        self.ranker.registry_uri = uri

    @property
    def _by_profile(self) -> tuple[tuple[str, ...], list[str]] | None:
        """The ranker's cached fallback order: (served model names, their order by profile), or None."""
        return self.ranker.by_profile

    @_by_profile.setter
    def _by_profile(self, value: tuple[tuple[str, ...], list[str]] | None) -> None:
        self.ranker.by_profile = value

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Set the served models: `{"models": {name: application name}}` (lightweight update).

        Context lengths come from the registry's cards; an unusable registry entry is skipped (and logged once
        by the registry), so every other model keeps its context length.

        Raises:
            RegistryError: the registry cannot be listed; the served models and context lengths are then left
                as they were.
        """
        apps = dict(config.get("models", {}))
        context: dict[str, int] = {}
        if self.registry_uri:
            from modelsat.registry import ModelRegistry

            for e in ModelRegistry(self.registry_uri).entries():
                if e.name in apps and e.card.context_length_tokens:
                    context[e.name] = e.card.context_length_tokens
        if self.in_process is not None:  # raises before anything changes (RegistryError)
            self.in_process.reconfigure(list(apps))
        for name in set(apps) ^ set(
            self.apps
        ):  # added or removed: a redeployed model starts with a closed breaker
            self.breaker.record(name, ok=True)
        self.apps, self.context = apps, context
        self._handles = {n: h for n, h in self._handles.items() if n in apps}

    def served_models(self) -> list[str]:
        """The models this replica serves (deployment checks after a reconfigure)."""
        return list(self.apps)

    def router_served_models(self) -> list[str]:
        """The models this replica's in-process router serves (`router.placement: ingress`), else []."""
        return self.in_process.served_models() if self.in_process is not None else []

    # ----------------------------------------------------------------------------------------- helpers
    def _auth(self, request: Request) -> None:
        check_bearer(request, self.token, self.m_errors)

    def _handle(self, name: str) -> Any:
        if name not in self._handles:
            from ray import serve

            self._handles[name] = serve.get_app_handle(self.apps[name])
        return self._handles[name]

    async def _parse(self, request: Request, kind: str) -> ParsedRequest:
        self._auth(request)
        raw = await read_body(request, self.settings.max_body_bytes)
        body = parse_body(raw, self.settings.max_body_bytes)
        model = body.get("model")
        limit = (
            self.context.get(model, self.settings.context_length_tokens)
            if isinstance(model, str)
            else self.settings.context_length_tokens
        )
        parsed = parse_request(
            body, kind, self.settings.default_max_tokens, self.settings.max_tokens_limit, limit
        )
        if parsed.ignored:
            log.warning(
                "request %s: ignored %s", parsed.generation.request_id, ignored_summary(parsed.ignored)
            )
        if parsed.model != "auto" and parsed.model not in self.apps:
            raise ApiError(
                404,
                f"model {parsed.model!r} is not served; models: auto, {', '.join(self.apps)}",
                type_="not_found_error",
                code="model_not_found",
                param="model",
            )
        if self.settings.log_prompts:
            log.info(
                "request %s instruction: %s", parsed.generation.request_id, parsed.generation.instruction
            )
        return parsed

    async def _rank(self, parsed: ParsedRequest, deadline: float) -> tuple[list[str], dict[str, Any]]:
        """`Ranker.rank`: the models to try for a request, best first, and what the router said."""
        return await self.ranker.rank(parsed, deadline)

    def _profile_order(self) -> list[str]:
        """`Ranker.profile_order`: the served models by capability profile, the router's fallback order."""
        return self.ranker.profile_order()

    def _failover(self, deadline: float) -> Failover:
        """Failover over the models this replica serves now (`self.apps` is read at each try)."""
        return Failover(
            serves=lambda name: name in self.apps,
            handle=self._handle,
            settings=self.settings,
            fallbacks=self.m_fallbacks,
            breaker=self.breaker,
            deadline=deadline,
        )

    async def _first(
        self, parsed: ParsedRequest, ranked: list[str], deadline: float | None = None
    ) -> tuple[str, dict[str, Any], Any, int]:
        """`Failover.first` over this replica's models (deadline: default `request_timeout_s` from now)."""
        deadline = deadline or time.monotonic() + self.settings.request_timeout_s
        return await self._failover(deadline).first(parsed, ranked)

    async def _answer(
        self, parsed: ParsedRequest, ranked: list[str], deadline: float | None = None
    ) -> tuple[str, GenerationResult, int]:
        """`Failover.answer` over this replica's models (deadline: default `request_timeout_s` from now)."""
        deadline = deadline or time.monotonic() + self.settings.request_timeout_s
        return await self._failover(deadline).answer(parsed, ranked)

    def _headers(self, model: str, info: dict[str, Any], fallbacks: int) -> dict[str, str]:
        h = {"x-modelsat-model": model, "x-modelsat-fallbacks": str(fallbacks)}
        if info:
            h["x-modelsat-router-ms"] = f"{info['router_ms']:.2f}"
        return h

    def _extra(
        self, parsed: ParsedRequest, info: dict[str, Any], model: str, fallbacks: int
    ) -> dict[str, Any]:
        if not info or not parsed.router.return_scores:
            return {}
        r = info["ranking"]
        return {
            "router": {
                "model_id": model,
                "ranked": r["ranked"],
                "scores": r["scores"],
                "p_correct": r["p_correct"],
                "expected_cost_usd": r["expected_cost_usd"],
                "cost_weight": parsed.router.cost_weight,
                "fallbacks": fallbacks,
                "router_ms": info["router_ms"],
            }
        }

    async def complete(self, request: Request, kind: str) -> Any:
        """Answer a chat (`kind="chat"`) or completion request: parse, rank, fail over, respond."""
        deadline = time.monotonic() + self.settings.request_timeout_s  # one deadline for the whole request
        try:
            parsed = await self._parse(request, kind)
            ranked, info = await self._rank(parsed, deadline)
            route = "auto" if info or parsed.model == "auto" else "direct"
            rid = parsed.generation.request_id
            if parsed.stream:
                model, first, gen, fallbacks = await self._first(parsed, ranked, deadline)
            else:
                model, result, fallbacks = await self._answer(parsed, ranked, deadline)
            headers = self._headers(model, info, fallbacks)
        except ApiError as e:
            self.m_errors.inc(tags={"type": e.type})
            raise
        self.m_requests.inc(tags={"model": model, "route": route})
        if not parsed.stream:
            build = chat_response if kind == "chat" else completion_response
            body = build(rid, model, result, self._extra(parsed, info, model, fallbacks))
            return JSONResponse(body, headers=headers)
        return StreamingResponse(
            sse_events(
                kind,
                rid,
                model,
                first,
                gen,
                self.m_errors,
                idle_timeout_s=self.settings.stream_idle_timeout_s,
                deadline=deadline,
            ),
            media_type="text/event-stream",
            headers=headers,
        )

    # ----------------------------------------------------------------------------------------- routes
    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve's late-bound ASGI app hook: the replica builds its own app (`build_fastapi_app`)."""
        return build_fastapi_app(self)
