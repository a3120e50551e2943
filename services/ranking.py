"""Ranking the served models for one request: the router deployment's ranking, or a fallback without it.

A named model is its own ranking. `model: "auto"` asks the router deployment (`services.router`) for a ranking,
waiting at most `ingress.router_timeout_s` and never past the request's deadline, and keeps the candidates whose
context length fits the prompt plus `max_tokens` (413 if none does). A router error answer (e.g. no candidate
has a capability profile yet) becomes an `ApiError` with its status. When the router cannot answer (a Ray actor
error, no replica, a full queue, a timeout), `ingress.router_unavailable` decides: `best_by_profile` sends the
request down the served models ordered by the mean accuracy of their registered capability profiles, `error`
answers 503 with Retry-After. Messages never carry the remote exception's text (it can name node addresses).

`services.api.Ingress` holds one `Ranker` per replica and delegates to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from cluster.errors import original_error
from modelsat.serving_config import IngressSection
from services.failover import cancel_quietly
from services.metrics import IngressMetrics
from services.protocol import ApiError
from services.serving import ParsedRequest

__all__ = ["Ranker"]

log = logging.getLogger("modelsat.serving")


async def _awaited(call: Any) -> Any:
    """Await a Serve call (a `DeploymentResponse`), so `asyncio.wait_for` can bound it."""
    return await call


class Ranker:
    """Ranks the models one ingress replica serves, for one request at a time.

    Args:
        router: handle of the router deployment (`router.rank.remote(request)` answers the ranking).
        settings: the ingress settings (`router_timeout_s`, `router_unavailable`, `retry_after_s`).
        metrics: where router latency (`router_ms`, ms) and errors (`errors{type}`) are recorded.
        served: the served models now (name -> Serve application, in configured order), read at each call.
        context_lengths: the served models' context lengths in tokens now (models without one: unbounded),
            read at each call.
        registry: model registry URI (capability profiles for the fallback order), or None.

    Attributes:
        router, registry_uri: as given; the ingress may replace them.
        by_profile: the cached fallback order, `(served model names it was computed for, the order)`, or None.
    """

    def __init__(
        self,
        router: Any,
        settings: IngressSection,
        metrics: IngressMetrics,
        served: Callable[[], Mapping[str, str]],
        context_lengths: Callable[[], Mapping[str, int]],
        registry: str | None = None,
    ) -> None:
        self.router = router
        self.settings = settings
        self.registry_uri = registry
        self.by_profile: tuple[tuple[str, ...], list[str]] | None = None
        self._served, self._context = served, context_lengths
        self._router_ms, self._errors = metrics.router_ms, metrics.errors

    async def rank(self, parsed: ParsedRequest, deadline: float) -> tuple[list[str], dict[str, Any]]:
        """The models to try for a request, best first, and what the router said.

        Args:
            parsed: the validated request.
            deadline: `time.monotonic()` time the whole request must end by, in seconds.
        Returns:
            (served model names, best first; `{"router_ms": ms, "ranking": the router's answer}`, or `{}` for a
            named model or a fallback order).
        Raises:
            ApiError: 404 a `router.candidates` entry is not served; the router's error answer with its status
                (400 default); 413 the prompt plus `max_tokens` fits no ranked model's context length; 503 the
                router is unavailable and there is no fallback order.
        """
        if parsed.model != "auto":
            return [parsed.model], {}
        opts = parsed.router
        served = self._served()
        unknown = [c for c in opts.candidates or [] if c not in served]
        if unknown:
            raise ApiError(
                404,
                f"router.candidates: {unknown[0]!r} is not served; models: {', '.join(served)}",
                type_="not_found_error",
                code="model_not_found",
                param="router.candidates",
            )
        t0 = time.perf_counter()
        call = None
        try:
            call = self.router.rank.remote(
                {
                    "instruction": parsed.generation.instruction,
                    "prompt_tokens": parsed.prompt_tokens,
                    "max_tokens": parsed.generation.max_tokens,
                    "cost_weight": opts.cost_weight,
                    "candidates": opts.candidates,
                }
            )
            wait = max(min(self.settings.router_timeout_s, deadline - time.monotonic()), 0.0)
            ranking = await asyncio.wait_for(_awaited(call), wait)
        except asyncio.CancelledError:
            cancel_quietly(call)
            raise
        except Exception as e:  # noqa: BLE001 - any router failure: the router is unavailable for this request
            cancel_quietly(call)
            return self.unavailable(parsed, e)
        ms = 1000 * (time.perf_counter() - t0)
        self._router_ms.observe(ms)
        if "error" in ranking:
            status = ranking.get("status", 400)
            raise ApiError(
                status,
                ranking["error"],
                type_="invalid_request_error" if status < 500 else "service_unavailable",
                code=ranking.get("code"),
                param="router.candidates",
                retry_after_s=self.settings.retry_after_s if status >= 500 else None,
            )
        context = self._context()
        fits = [
            m
            for m in ranking["ranked"]
            if parsed.prompt_tokens + parsed.generation.max_tokens <= context.get(m, 10**9)
        ]
        if not fits:
            raise ApiError(
                413,
                "the prompt plus max_tokens exceeds every candidate's context length",
                code="context_length_exceeded",
            )
        info = {"router_ms": ms, "ranking": ranking}
        return fits, info

    def unavailable(self, parsed: ParsedRequest, e: Exception) -> tuple[list[str], dict[str, Any]]:
        """The ranking when the router cannot answer in time: the served models by profile
        (`ingress.router_unavailable: best_by_profile`), else a 503 with Retry-After.

        Raises:
            ApiError: 503 `router_unavailable` (naming the timeout, an overload or an unavailable router).
        """
        orig = original_error(e)
        self._errors.inc(tags={"type": "router_unavailable"})
        log.warning(
            "request %s: the router is unavailable (%s)", parsed.generation.request_id, type(orig).__name__
        )
        if self.settings.router_unavailable == "best_by_profile":
            order = self.profile_order()
            if parsed.router.candidates:
                order = [m for m in order if m in parsed.router.candidates]
            if order:
                return order, {}
        what = (
            f"did not answer within router_timeout_s={self.settings.router_timeout_s:g}"
            if isinstance(orig, TimeoutError)
            else ("is overloaded" if type(orig).__name__ == "BackPressureError" else "is not available")
        )
        raise ApiError(
            503,
            f"the router {what}; retry, or name a model instead of 'auto'",
            type_="service_unavailable",
            code="router_unavailable",
            retry_after_s=self.settings.retry_after_s,
        ) from e

    def profile_order(self) -> list[str]:
        """The served models by the mean accuracy of their registered capability profile, best first (models
        without a profile, or every model without a registry, keep their configured order after them).

        Cached in `by_profile` until the served models change; a registry that cannot be read is logged and
        leaves the configured order.
        """
        served = self._served()
        key = tuple(served)
        if self.by_profile is not None and self.by_profile[0] == key:
            return self.by_profile[1]
        means: dict[str, float] = {}
        if self.registry_uri:
            from modelsat.registry import ModelRegistry

            try:
                for e in ModelRegistry(self.registry_uri).entries():
                    if e.name in served:
                        means[e.name] = sum(e.profile.accuracies) / max(len(e.profile.accuracies), 1)
            except Exception:  # noqa: BLE001 - the fallback must not fail on a registry outage
                log.exception("reading the registry %s for the fallback order failed", self.registry_uri)
        order = sorted(served, key=lambda m: (m not in means, -means.get(m, 0.0)))
        self.by_profile = (key, order)
        return order
