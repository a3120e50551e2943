"""Failover: sending one request down a ranking of candidate models until one answers.

A model that errors or is unavailable (a Ray actor error, no replica, a 5xx from the model, no first output
within `first_chunk_timeout_s`) hands the request to the next one. A streamed request can fail over until its
first chunk (`Failover.first`), a non-streamed one until its answer is complete (`Failover.answer`). A client
error from a model (status < 500) is raised as is, without failover. Each failover increments
`fallbacks{model}`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cluster.errors import original_error
from modelsat.serving_config import IngressSection
from services.protocol import ApiError, GenerationResult
from services.serving import ParsedRequest

__all__ = ["Failover"]

log = logging.getLogger("modelsat.serving")


@dataclass(frozen=True)
class Failover:
    """Tries the ranked models of one ingress replica in order.

    Attributes:
        serves: whether the ingress serves a model now (asked at each try: models are hot-added/removed).
        handle: the Serve handle of a served model's application (raises while it is still deploying).
        settings: the ingress settings (`first_chunk_timeout_s`, `request_timeout_s`, in seconds, > 0).
        fallbacks: the `fallbacks{model}` counter.
    """

    serves: Callable[[str], bool]
    handle: Callable[[str], Any]
    settings: IngressSection
    fallbacks: Any

    async def first(self, parsed: ParsedRequest, ranked: list[str]) -> tuple[str, dict[str, Any], Any, int]:
        """Send the request down the ranking until a model produces its first output.

        Args:
            parsed: the validated request.
            ranked: candidate model names, best first.
        Returns:
            (model, first item of its stream, the stream, number of models that failed before it).
        Raises:
            ApiError: a client error from the model (status < 500, no failover), or 503 when every model failed.
        """
        failures: list[str] = []
        for name in ranked:
            if not self.serves(
                name
            ):  # the router's candidate set is updated apart from ours (hot-add/remove)
                failures.append(f"{name}: not served by this ingress")
                continue
            try:
                handle = self.handle(name)  # RayServeException while its application is still deploying
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
                self.fallbacks.inc(tags={"model": name})
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

    async def collect(self, first: dict[str, Any], gen: Any) -> GenerationResult:
        """The whole answer of a stream (non-streaming requests), within `request_timeout_s`.

        Args:
            first: the stream's first item (`Failover.first`).
            gen: the rest of the stream.
        Returns:
            The joined text, with the last item's finish reason and token counts.
        Raises:
            TimeoutError: the stream ran past `request_timeout_s`.
        """
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

    async def answer(self, parsed: ParsedRequest, ranked: list[str]) -> tuple[str, GenerationResult, int]:
        """A whole non-streamed answer, failing over down the ranking.

        Nothing reaches the client before the answer is complete, so a model that dies after its first output
        (its replica killed mid-answer, a 5xx) is failed over like one that never answered. A model that runs
        past `request_timeout_s` is not: the request's time is spent.

        Args:
            parsed: the validated request.
            ranked: candidate model names, best first.
        Returns:
            (model, its answer, number of models that failed before it).
        Raises:
            ApiError: a client error from the model; 503 when every model failed before its first output;
                502 when the last model tried failed mid-answer; 504 after `request_timeout_s`.
        """
        failed = 0
        while True:
            model, first, gen, skipped = await self.first(parsed, ranked)
            failed += skipped
            try:
                return model, await self.collect(first, gen), failed
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
                self.fallbacks.inc(tags={"model": model})
                log.warning(
                    "request %s: model %s failed mid-answer (%s); trying the next one",
                    parsed.generation.request_id,
                    model,
                    type(orig).__name__,
                )
