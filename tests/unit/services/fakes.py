"""Fakes of Serve handles for the ingress tests (no Ray cluster): model streams, model handles, the router."""

from __future__ import annotations

import asyncio

__all__ = ["_Handle", "_Router", "_Stream"]


class _Stream:
    """A fake `DeploymentResponseGenerator`: scripted chunks, records `cancel()`."""

    def __init__(self, script):
        self.script = list(script)
        self.cancelled = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        if not self.script:
            raise StopAsyncIteration
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if item == "stall":
            await asyncio.sleep(30)
        return item

    def cancel(self):
        self.cancelled = True


class _Handle:
    def __init__(self, script):
        self.script = script
        self.generate_stream = self
        self.streams: list[_Stream] = []

    @property
    def calls(self) -> int:
        return len(self.streams)

    def options(self, **_):
        return self

    def remote(self, _generation):
        if isinstance(self.script, BaseException):  # refused before any stream (e.g. a full queue)
            raise self.script
        s = _Stream(self.script)
        self.streams.append(s)
        return s


class _Router:
    """A fake router handle: `rank.remote(request)` returns an awaitable ranking (or raises / stalls)."""

    def __init__(self, ranked=None, stall_s=0.0, error=None):
        self.ranked, self.stall_s, self.error = ranked, stall_s, error
        self.rank = self
        self.calls = []

    def remote(self, request):
        self.calls.append(request)

        async def answer():
            if self.stall_s:
                await asyncio.sleep(self.stall_s)
            if self.error is not None:
                raise self.error
            names = self.ranked
            return {
                "ranked": names,
                "scores": dict.fromkeys(names, 0.0),
                "p_correct": dict.fromkeys(names, 0.5),
                "expected_cost_usd": dict.fromkeys(names, 0.0),
            }

        return answer()
