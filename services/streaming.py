"""Server-sent events of a streamed answer (`stream: true`), in the OpenAI chunk format.

The stream has already started when a model fails mid-answer, so the failure is reported in-band (one
`data: {"error": ...}` event, counted in `errors{type=stream_error}`) and the stream ends without `[DONE]`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from cluster.errors import original_error
from services.serving import stream_chunk

__all__ = ["sse_events"]

log = logging.getLogger("modelsat.serving")


async def sse_events(
    kind: str, rid: str, model: str, first: dict[str, Any], gen: Any, errors: Any
) -> AsyncIterator[str]:
    """The SSE lines of one answer: its chunks, a final chunk with the finish reason, then `[DONE]`.

    Args:
        kind: `chat` or `completion` (the chunk format).
        rid: the request id.
        model: the model that answers.
        first: the stream's first item (already received, see `services.failover.Failover.first`).
        gen: the rest of the model's stream (items with `text` and/or `finish_reason`).
        errors: the `errors{type}` counter.
    Returns:
        An async iterator of `data: ...\\n\\n` lines.
    """
    yield stream_chunk(kind, rid, model, first.get("text", ""), first=True)
    finish = first.get("finish_reason")
    try:
        async for item in gen:
            if "text" in item:
                yield stream_chunk(kind, rid, model, item["text"])
            finish = item.get("finish_reason", finish)
    except Exception as e:  # noqa: BLE001 - the stream has started: report in-band and end it
        orig = original_error(e)
        errors.inc(tags={"type": "stream_error"})
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
