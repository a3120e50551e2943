"""Server-sent events of a streamed answer (`stream: true`), in the OpenAI chunk format.

The stream has already started when a model fails mid-answer, so the failure is reported in-band (one
`data: {"error": ...}` event, counted in `errors{type=stream_error}`, or `stream_timeout` for a stall past
`ingress.stream_idle_timeout_s`) and the stream ends without `[DONE]`; the model's call is cancelled then, and
when the client disconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from cluster.errors import original_error
from services.failover import cancel_quietly
from services.serving import stream_chunk

__all__ = ["sse_events"]

log = logging.getLogger("modelsat.serving")


async def sse_events(
    kind: str,
    rid: str,
    model: str,
    first: dict[str, Any],
    gen: Any,
    errors: Any,
    idle_timeout_s: float | None = None,
    deadline: float | None = None,
) -> AsyncIterator[str]:
    """The SSE lines of one answer: its chunks, a final chunk with the finish reason, then `[DONE]`.

    Args:
        kind: `chat` or `completion` (the chunk format).
        rid: the request id.
        model: the model that answers.
        first: the stream's first item (already received, see `services.failover.Failover.first`).
        gen: the rest of the model's stream (items with `text` and/or `finish_reason`).
        errors: the `errors{type}` counter.
        idle_timeout_s: longest wait for the next item, in seconds (`ingress.stream_idle_timeout_s`); None = no
            limit.
        deadline: `time.monotonic()` by which the stream must end (`ingress.request_timeout_s`); None = none.
    Returns:
        An async iterator of `data: ...\n\n` lines. A failure, a stall past `idle_timeout_s` or the deadline
        ends it with one in-band error event and without `[DONE]`; the model's call is then cancelled, as it
        is when the client disconnects (the iterator is closed or cancelled).
    """
    yield stream_chunk(kind, rid, model, first.get("text", ""), first=True)
    finish = first.get("finish_reason")
    done = False
    try:
        while True:
            wait = idle_timeout_s
            if deadline is not None:
                left = max(deadline - time.monotonic(), 0.0)
                wait = left if wait is None else min(wait, left)
            try:
                item = await asyncio.wait_for(gen.__anext__(), wait)
            except StopAsyncIteration:
                break
            if "text" in item:
                yield stream_chunk(kind, rid, model, item["text"])
            finish = item.get("finish_reason", finish)
        done = True
    except Exception as e:  # noqa: BLE001 - the stream has started: report in-band and end it
        orig = original_error(e)
        stalled = isinstance(orig, TimeoutError)
        errors.inc(tags={"type": "stream_timeout" if stalled else "stream_error"})
        log.error("request %s: stream from %s failed: %s", rid, model, type(orig).__name__)
        what = (
            f"model {model} sent nothing for stream_idle_timeout_s={idle_timeout_s:g} s or ran past the "
            "request deadline"
            if stalled
            else f"model {model} failed mid-stream: {type(orig).__name__}"
        )
        err = {
            "error": {"message": what, "type": "server_error", "code": "stream_timeout" if stalled else None}
        }
        yield f"data: {json.dumps(err)}\n\n"
        return
    finally:
        if not done:  # failed, stalled, or the client went away (GeneratorExit / CancelledError)
            cancel_quietly(gen)
    yield stream_chunk(kind, rid, model, None, finish_reason=finish or "stop")
    yield "data: [DONE]\n\n"
