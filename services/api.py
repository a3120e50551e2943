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
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from cluster.errors import original_error
from modelsat.serving_config import IngressSection
from services.metrics import IngressMetrics
from services.protocol import ApiError, GenerationResult
from services.serving import (
    ParsedRequest,
    chat_response,
    completion_response,
    parse_body,
    parse_request,
    stream_chunk,
)

__all__ = ["Ingress", "build_fastapi_app"]

log = logging.getLogger("modelsat.serving")

TITLE = "Model-SAT routed OpenAI-compatible API"


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status)


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
    app = FastAPI(title=TITLE)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_api_route("/health", ingress.health, methods=["GET"])
    app.add_api_route("/v1/models", ingress.models, methods=["GET"])
    app.add_api_route("/v1/chat/completions", ingress.chat_completions, methods=["POST"])
    app.add_api_route("/v1/completions", ingress.completions, methods=["POST"])
    return app


class Ingress:
    """Ingress deployment: validates, routes, fails over, and answers in the OpenAI wire format.

    Args:
        router: handle of the router deployment.
        settings: `IngressSection` as a dict.
        registry: model registry URI (context lengths), or None.
        metrics: the metrics to record (default: Ray's, `IngressMetrics.ray()`; tests pass in-memory ones).
    """

    def __init__(
        self,
        router: Any,
        settings: dict[str, Any],
        registry: str | None = None,
        metrics: IngressMetrics | None = None,
    ) -> None:
        self.router = router
        self.settings = IngressSection.model_validate(settings)
        self.registry_uri = registry
        self.apps: dict[str, str] = {}
        self.context: dict[str, int] = {}
        self._handles: dict[str, Any] = {}
        env = self.settings.auth_token_env
        self.token = os.environ.get(env) if env else None
        if env and not self.token:
            log.warning("ingress.auth_token_env=%s is set but the variable is empty: auth is off", env)
        m = metrics or IngressMetrics.ray()
        self.m_requests, self.m_router_ms, self.m_fallbacks, self.m_errors = (
            m.requests,
            m.router_ms,
            m.fallbacks,
            m.errors,
        )

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Set the served models: `{"models": {name: application name}}` (lightweight update)."""
        self.apps = dict(config.get("models", {}))
        self._handles = {n: h for n, h in self._handles.items() if n in self.apps}
        self.context = {}
        if self.registry_uri:
            from modelsat.registry import ModelRegistry

            for e in ModelRegistry(self.registry_uri).entries():
                if e.name in self.apps and e.card.context_length_tokens:
                    self.context[e.name] = e.card.context_length_tokens

    def served_models(self) -> list[str]:
        """The models this replica serves (deployment checks after a reconfigure)."""
        return list(self.apps)

    # ----------------------------------------------------------------------------------------- helpers
    def _auth(self, request: Request) -> None:
        if not self.token:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            self.m_errors.inc(tags={"type": "authentication_error"})
            raise ApiError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <token>'",
                type_="authentication_error",
                code="invalid_api_key",
            )

    def _handle(self, name: str) -> Any:
        if name not in self._handles:
            from ray import serve

            self._handles[name] = serve.get_app_handle(self.apps[name])
        return self._handles[name]

    async def _parse(self, request: Request, kind: str) -> ParsedRequest:
        self._auth(request)
        raw = await request.body()
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
                "request %s: ignored unknown fields %s",
                parsed.generation.request_id,
                ", ".join(parsed.ignored),
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

    async def _rank(self, parsed: ParsedRequest) -> tuple[list[str], dict[str, Any]]:
        if parsed.model != "auto":
            return [parsed.model], {}
        opts = parsed.router
        unknown = [c for c in opts.candidates or [] if c not in self.apps]
        if unknown:
            raise ApiError(
                404,
                f"router.candidates: {unknown[0]!r} is not served; models: {', '.join(self.apps)}",
                type_="not_found_error",
                code="model_not_found",
                param="router.candidates",
            )
        t0 = time.perf_counter()
        ranking = await self.router.rank.remote(
            {
                "instruction": parsed.generation.instruction,
                "prompt_tokens": parsed.prompt_tokens,
                "max_tokens": parsed.generation.max_tokens,
                "cost_weight": opts.cost_weight,
                "candidates": opts.candidates,
            }
        )
        ms = 1000 * (time.perf_counter() - t0)
        self.m_router_ms.observe(ms)
        if "error" in ranking:
            status = ranking.get("status", 400)
            raise ApiError(
                status,
                ranking["error"],
                type_="invalid_request_error" if status < 500 else "service_unavailable",
                code=ranking.get("code"),
                param="router.candidates",
            )
        fits = [
            m
            for m in ranking["ranked"]
            if parsed.prompt_tokens + parsed.generation.max_tokens <= self.context.get(m, 10**9)
        ]
        if not fits:
            raise ApiError(
                413,
                "the prompt plus max_tokens exceeds every candidate's context length",
                code="context_length_exceeded",
            )
        info = {"router_ms": ms, "ranking": ranking}
        return fits, info

    async def _first(self, parsed: ParsedRequest, ranked: list[str]) -> tuple[str, dict[str, Any], Any, int]:
        """Send the request down the ranking until a model produces its first output.

        Returns:
            (model, first item of its stream, the stream, number of models that failed before it).
        Raises:
            ApiError: a client error from the model (status < 500, no failover), or 503 when every model failed.
        """
        failures: list[str] = []
        for name in ranked:
            if (
                name not in self.apps
            ):  # the router's candidate set is updated apart from ours (hot-add/remove)
                failures.append(f"{name}: not served by this ingress")
                continue
            try:
                handle = self._handle(name)  # RayServeException while its application is still deploying
                gen = handle.options(stream=True).generate_stream.remote(parsed.generation)
                first = await asyncio.wait_for(gen.__anext__(), self.settings.first_chunk_timeout_s)
                return name, first, gen, len(failures)
            except Exception as e:  # noqa: BLE001 - classified below; nothing is swallowed
                orig = original_error(e)
                if isinstance(orig, ApiError) and orig.status < 500:
                    raise orig from e
                why = (
                    "no output within first_chunk_timeout_s" if isinstance(orig, TimeoutError) else str(orig)
                )
                failures.append(f"{name}: {type(orig).__name__}: {why.splitlines()[0] if why else ''}"[:300])
                self.m_fallbacks.inc(tags={"model": name})
                log.warning(
                    "request %s: model %s failed (%s); trying the next one",
                    parsed.generation.request_id,
                    name,
                    type(orig).__name__,
                )
        raise ApiError(
            503,
            f"no candidate model could answer ({len(failures)} tried): {'; '.join(failures)}",
            type_="service_unavailable",
            code="no_healthy_replica",
        )

    async def _collect(self, first: dict[str, Any], gen: Any) -> GenerationResult:
        """The whole answer of a stream (non-streaming requests), within `request_timeout_s`."""
        items = [first]

        async def rest() -> None:
            async for item in gen:
                items.append(item)

        await asyncio.wait_for(rest(), self.settings.request_timeout_s)
        text = "".join(i.get("text", "") for i in items)
        end = items[-1]
        return GenerationResult(
            text,
            end.get("finish_reason", "stop"),
            end.get("prompt_tokens", 0),
            end.get("completion_tokens", 0),
        )

    async def _answer(self, parsed: ParsedRequest, ranked: list[str]) -> tuple[str, GenerationResult, int]:
        """A whole non-streamed answer, failing over down the ranking.

        Nothing reaches the client before the answer is complete, so a model that dies after its first output
        (its replica killed mid-answer, a 5xx) is failed over like one that never answered. A model that runs
        past `request_timeout_s` is not: the request's time is spent.

        Returns:
            (model, its answer, number of models that failed before it).
        Raises:
            ApiError: a client error from the model; 503 when every model failed before its first output;
                502 when the last model tried failed mid-answer; 504 after `request_timeout_s`.
        """
        failed = 0
        while True:
            model, first, gen, skipped = await self._first(parsed, ranked)
            failed += skipped
            try:
                return model, await self._collect(first, gen), failed
            except Exception as e:  # noqa: BLE001 - classified below; nothing is swallowed
                orig = original_error(e)
                if isinstance(orig, ApiError) and orig.status < 500:
                    raise orig from e
                if isinstance(orig, TimeoutError):
                    raise ApiError(
                        504,
                        f"model {model!r} did not finish within request_timeout_s="
                        f"{self.settings.request_timeout_s:g}",
                        type_="server_error",
                        code="model_timeout",
                    ) from e
                ranked = ranked[ranked.index(model) + 1 :]
                if not ranked:
                    raise ApiError(
                        502,
                        f"model {model!r} failed while answering: {type(orig).__name__}",
                        type_="server_error",
                        code="model_failed",
                    ) from e
                failed += 1
                self.m_fallbacks.inc(tags={"model": model})
                log.warning(
                    "request %s: model %s failed mid-answer (%s); trying the next one",
                    parsed.generation.request_id,
                    model,
                    type(orig).__name__,
                )

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

    async def _complete(self, request: Request, kind: str) -> Any:
        try:
            parsed = await self._parse(request, kind)
            ranked, info = await self._rank(parsed)
            route = "auto" if info else "direct"
            rid = parsed.generation.request_id
            if parsed.stream:
                model, first, gen, fallbacks = await self._first(parsed, ranked)
            else:
                model, result, fallbacks = await self._answer(parsed, ranked)
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
            self._sse(kind, rid, model, first, gen), media_type="text/event-stream", headers=headers
        )

    async def _sse(
        self, kind: str, rid: str, model: str, first: dict[str, Any], gen: Any
    ) -> AsyncIterator[str]:
        yield stream_chunk(kind, rid, model, first.get("text", ""), first=True)
        finish = first.get("finish_reason")
        try:
            async for item in gen:
                if "text" in item:
                    yield stream_chunk(kind, rid, model, item["text"])
                finish = item.get("finish_reason", finish)
        except Exception as e:  # noqa: BLE001 - the stream has started: report in-band and end it
            orig = original_error(e)
            self.m_errors.inc(tags={"type": "stream_error"})
            log.error("request %s: stream from %s failed: %s", rid, model, type(orig).__name__)
            err = {
                "error": {
                    "message": f"model {model} failed mid-stream: {type(orig).__name__}",
                    "type": "server_error",
                }
            }
            yield f"data: {json.dumps(err)}\n\n"
            return
        yield stream_chunk(kind, rid, model, None, finish_reason=finish or "stop")
        yield "data: [DONE]\n\n"

    # ----------------------------------------------------------------------------------------- routes
    def __serve_build_asgi_app__(self) -> FastAPI:
        """Serve's late-bound ASGI app hook: the replica builds its own app (`build_fastapi_app`)."""
        return build_fastapi_app(self)

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "models": len(self.apps)}

    async def models(self, request: Request) -> dict[str, Any]:
        from openai.types import Model

        self._auth(request)
        now = int(time.time())
        data = [
            Model(id=m, created=now, object="model", owned_by="modelsat").model_dump()
            for m in ["auto", *self.apps]
        ]
        return {"object": "list", "data": data}

    async def chat_completions(self, request: Request) -> Any:
        return await self._complete(request, "chat")

    async def completions(self, request: Request) -> Any:
        return await self._complete(request, "completion")
