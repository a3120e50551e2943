"""Failover: sending one request down a ranking of candidate models until one answers, within its deadline.

A model that errors or is unavailable (a Ray actor error, no replica, a full queue, a 5xx from the model, no
first output within `first_chunk_timeout_s`) hands the request to the next one. A streamed request can fail
over until its first chunk (`Failover.first`), a non-streamed one until its answer is complete
(`Failover.answer`). Every call that is abandoned (a timeout, a failure mid-answer, the deadline, the client
gone) is cancelled (`DeploymentResponseGenerator.cancel`, Ray Serve "Cancel requests"), so one request never
becomes several generations. A client error from a model (status < 500, a chat template that rejects the
conversation, an `OverflowError` on its numbers) is raised as a 400 without failover. A model that fails
`breaker_failures` times in a row is skipped by this ingress replica for `breaker_cooldown_s`
(`CircuitBreaker`). Each failover increments `fallbacks{model}`. Error messages name models and what happened
to them, never the remote exception's text (which can carry node addresses); the log has the type.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import original_error
from modelsat.serving_config import IngressSection
from services.protocol import ApiError, GenerationResult
from services.serving import ParsedRequest

__all__ = ["CLIENT_FAULTS", "CircuitBreaker", "Failover", "ModelStalled", "cancel_quietly", "client_fault"]

log = logging.getLogger("modelsat.serving")

CLIENT_FAULTS = ("TemplateError", "TemplateSyntaxError", "UndefinedError", "SecurityError", "OverflowError")
"""Exception types (by name: jinja2's and Python's) a model raises because of the request, not itself: a chat
template that rejects the role order, numbers out of range. They are a 400, never a failover."""


def client_fault(orig: BaseException) -> ApiError | None:
    """The 400 of an exception that is the client's fault (an `ApiError` < 500 or one of `CLIENT_FAULTS`),
    else None."""
    if isinstance(orig, ApiError):
        return orig if orig.status < 500 else None
    for klass in type(orig).__mro__:
        if klass.__name__ in CLIENT_FAULTS:
            return ApiError(
                400,
                f"the model rejected the request ({type(orig).__name__}): check the role order of messages "
                "and the range of numeric fields",
                code="invalid_request",
            )
    return None


def cancel_quietly(call: Any) -> None:
    """Cancel an abandoned Serve call (a `DeploymentResponse(Generator)`); best effort, never raises."""
    cancel = getattr(call, "cancel", None)
    if cancel is None:
        return
    try:
        cancel()
    except Exception:  # noqa: BLE001 - cancelling is best effort; the call is abandoned either way
        log.debug("cancelling an abandoned call failed", exc_info=True)


def _reason(orig: BaseException) -> str:
    """What happened to a model, for the client: never the remote exception's text."""
    name = type(orig).__name__
    if isinstance(orig, TimeoutError):
        return "no output within first_chunk_timeout_s"
    if isinstance(orig, ModelStalled):
        return "it stalled mid-answer (stream_idle_timeout_s)"
    if name == "BackPressureError":
        return "its queue is full (max_queued_requests)"
    if name in ("DeploymentUnavailableError", "RayServeException"):
        return "not available (no running replica)"
    if name in ("ActorDiedError", "RayActorError", "ActorUnavailableError"):
        return "its replica died"
    if isinstance(orig, ApiError):
        return f"answered {orig.status}" + (f" ({orig.code})" if orig.code else "")
    return f"failed ({name})"


class ModelStalled(RuntimeError):
    """A model stopped sending output mid-answer for `stream_idle_timeout_s` (a model fault: failed over)."""


@dataclass
class CircuitBreaker:
    """Per-model circuit breaker of one ingress replica: after `failures` consecutive failures a model is
    skipped for `cooldown_s` seconds, then tried again (half-open: one more failure re-opens it).

    Attributes:
        failures: consecutive failures that open the breaker, >= 1.
        cooldown_s: seconds an open breaker skips its model, > 0.
        clock: monotonic seconds (tests pass a fake).
    """

    failures: int
    cooldown_s: float
    clock: Callable[[], float] = time.monotonic
    _count: dict[str, int] = field(default_factory=dict)
    _open_until: dict[str, float] = field(default_factory=dict)

    def is_open(self, name: str) -> bool:
        """Whether `name` is skipped now."""
        return self._open_until.get(name, 0.0) > self.clock()

    def retry_after_s(self) -> float:
        """Seconds until the first open breaker closes (0 when none is open)."""
        now = self.clock()
        return max([0.0, *(t - now for t in self._open_until.values() if t > now)])

    def record(self, name: str, ok: bool) -> None:
        """Count one outcome of `name` (a success closes its breaker)."""
        if ok:
            self._count.pop(name, None)
            self._open_until.pop(name, None)
            return
        n = self._count.get(name, 0) + 1
        self._count[name] = n
        if n >= self.failures:
            self._open_until[name] = self.clock() + self.cooldown_s
            log.warning("model %s failed %d times in a row: skipped for %gs", name, n, self.cooldown_s)


@dataclass(frozen=True)
class Failover:
    """Tries the ranked models of one ingress replica in order, within one request deadline.

    Attributes:
        serves: whether the ingress serves a model now (asked at each try: models are hot-added/removed).
        handle: the Serve handle of a served model's application (raises while it is still deploying).
        settings: the ingress settings (`first_chunk_timeout_s`, `retry_after_s`, in seconds).
        fallbacks: the `fallbacks{model}` counter.
        breaker: the replica's circuit breaker.
        deadline: `time.monotonic()` by which the request must be answered (`request_timeout_s` from its start).
    """

    serves: Callable[[str], bool]
    handle: Callable[[str], Any]
    settings: IngressSection
    fallbacks: Any
    breaker: CircuitBreaker
    deadline: float

    def remaining(self) -> float:
        """Seconds left before the deadline (<= 0 when it has passed)."""
        return self.deadline - time.monotonic()

    def _deadline_error(self, model: str | None) -> ApiError:
        return ApiError(
            504,
            (f"model {model!r} did not finish" if model else "no model answered")
            + f" within request_timeout_s={self.settings.request_timeout_s:g}",
            type_="server_error",
            code="model_timeout",
        )

    async def first(self, parsed: ParsedRequest, ranked: list[str]) -> tuple[str, dict[str, Any], Any, int]:
        """Send the request down the ranking until a model produces its first output.

        Args:
            parsed: the validated request.
            ranked: candidate model names, best first.
        Returns:
            (model, first item of its stream, the stream, number of models that failed before it).
        Raises:
            ApiError: a client error (400, no failover); 503 with Retry-After when every model failed or was
                skipped; 504 when the deadline passed.
        """
        failures: list[str] = []
        skipped = [n for n in ranked if self.breaker.is_open(n)]
        for name in [n for n in ranked if n not in skipped]:
            if not self.serves(
                name
            ):  # the router's candidate set is updated apart from ours (hot-add/remove)
                failures.append(f"{name}: not served by this ingress")
                continue
            if self.remaining() <= 0:
                raise self._deadline_error(None)
            gen = None
            try:
                handle = self.handle(name)  # RayServeException while its application is still deploying
                gen = handle.options(stream=True).generate_stream.remote(parsed.generation)
                wait = min(self.settings.first_chunk_timeout_s, self.remaining())
                first = await asyncio.wait_for(gen.__anext__(), wait)
                self.breaker.record(name, ok=True)
                return name, first, gen, len(failures)
            except asyncio.CancelledError:  # the client is gone: stop the model too
                cancel_quietly(gen)
                raise
            except Exception as e:  # noqa: BLE001 - classified below; nothing is swallowed
                cancel_quietly(gen)
                orig = original_error(e)
                fault = client_fault(orig)
                if fault is not None:
                    raise fault from e
                failures.append(f"{name}: {_reason(orig)}")
                if type(orig).__name__ != "BackPressureError":  # a full queue is load, not a fault
                    self.breaker.record(name, ok=False)
                self.fallbacks.inc(tags={"model": name})
                log.warning(
                    "request %s: model %s failed (%s); trying the next one",
                    parsed.generation.request_id,
                    name,
                    type(orig).__name__,
                )
        if skipped:
            failures.append(f"{', '.join(skipped)}: skipped after repeated failures (circuit breaker)")
        retry = max(self.settings.retry_after_s, int(self.breaker.retry_after_s() + 0.999) if skipped else 0)
        raise ApiError(
            503,
            f"no candidate model could answer ({len(ranked)} tried or skipped): {'; '.join(failures)}",
            type_="service_unavailable",
            code="no_healthy_replica",
            retry_after_s=retry,
        )

    async def collect(self, first: dict[str, Any], gen: Any) -> GenerationResult:
        """The whole answer of a stream (non-streaming requests), before the deadline.

        Args:
            first: the stream's first item (`Failover.first`).
            gen: the rest of the stream.
        Returns:
            The joined text, with the last item's finish reason and token counts.
        Raises:
            TimeoutError: the stream ran past the deadline.
            ModelStalled: no new output for `stream_idle_timeout_s` (the model is failed over).
        """
        items = [first]
        idle = self.settings.stream_idle_timeout_s
        while True:
            left = self.remaining()
            if left <= 0:
                raise TimeoutError("the request deadline passed")
            try:
                items.append(await asyncio.wait_for(gen.__anext__(), min(idle, left)))
            except StopAsyncIteration:
                break
            except TimeoutError:
                if self.remaining() <= 0:
                    raise
                raise ModelStalled(f"no output for stream_idle_timeout_s={idle:g}") from None
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
        (its replica killed mid-answer, a 5xx, no new output for `stream_idle_timeout_s`) is failed over like
        one that never answered. A model that runs past the deadline is not: the request's time is spent (it
        is cancelled, and the request is a 504).

        Args:
            parsed: the validated request.
            ranked: candidate model names, best first.
        Returns:
            (model, its answer, number of models that failed before it).
        Raises:
            ApiError: a client error from the model; 503 when every model failed before its first output;
                502 when the last model tried failed mid-answer; 504 past the deadline.
        """
        failed = 0
        while True:
            model, first, gen, skipped = await self.first(parsed, ranked)
            failed += skipped
            try:
                return model, await self.collect(first, gen), failed
            except asyncio.CancelledError:
                cancel_quietly(gen)
                raise
            except Exception as e:  # noqa: BLE001 - classified below; nothing is swallowed
                cancel_quietly(gen)
                orig = original_error(e)
                fault = client_fault(orig)
                if fault is not None:
                    raise fault from e
                if isinstance(orig, TimeoutError):
                    raise self._deadline_error(model) from e
                self.breaker.record(model, ok=False)
                ranked = ranked[ranked.index(model) + 1 :]
                if not ranked:
                    raise ApiError(
                        502,
                        f"model {model!r} failed while answering: {_reason(orig)}",
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
