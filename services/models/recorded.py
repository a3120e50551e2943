"""The `recorded` model server: a candidate model's recorded responses from a routing data directory.

It answers instructions of the routing data with the model's recorded `response_tail`, matched by exact
instruction text; anything else is a 404 `instruction_not_recorded` (a client error: no failover). Real data,
no GPU: the main job's serving stage and the tests serve the shared datasets this way. For the fault harness it
can stall or fail on demand (`set_fault`) and reports the generations running and completed (`stats`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from services.protocol import ApiError, GenerationRequest
from services.serving import estimate_tokens

__all__ = ["RecordedModel"]


class RecordedModel:
    """Replays one model's recorded responses from a routing data directory.

    Args:
        name: the candidate model name it is served under.
        routing_data: routing data directory, or a name under $MODELSAT_DATA.
        model: the model's name in the zoo (default: `name`).
    Raises:
        DataError: the zoo cannot be read. UnknownModelError: the zoo has no such model.
    """

    def __init__(self, name: str, routing_data: str, model: str | None = None) -> None:
        from modelsat.data import recorded_responses
        from modelsat.paths import resolve_routing_data_dir

        self.responses: dict[str, str] = recorded_responses(routing_data, model or name)
        self.name = name
        self.data_name = resolve_routing_data_dir(routing_data).name
        self._active = 0
        self._completed: list[str] = []
        self._fault_kind, self._fault_seconds = "none", 0.0

    def _lookup(self, request: GenerationRequest) -> str:
        text = self.responses.get(request.instruction)
        if text is None:
            raise ApiError(
                404,
                f"model {self.name!r} is a recorded model of the routing data {self.data_name!r} and has no recorded response to this "
                "instruction (recorded models answer only the zoo's instructions, matched exactly)",
                type_="not_found_error",
                code="instruction_not_recorded",
            )
        return text

    async def generate_stream(self, request: GenerationRequest) -> AsyncIterator[dict[str, Any]]:
        """Text deltas (`{"text"}`), then `{"finish_reason", "prompt_tokens", "completion_tokens"}`.

        The recorded text is cut to `max_tokens` words (a word counts as a token here). A fault set with
        `set_fault` applies first.
        """
        self._active += 1
        try:
            text = self._lookup(request)
            words = text.split(" ")
            cut = len(words) > request.max_tokens
            words = words[: request.max_tokens]
            await self._fault("stall_first")
            for i in range(0, len(words), 8):
                yield {"text": (" " if i else "") + " ".join(words[i : i + 8])}
                if i == 0:
                    await self._fault("stall_after_first")
            self._completed.append(request.request_id)
            del self._completed[: -self.MAX_COMPLETED]
            yield {
                "finish_reason": "length" if cut else "stop",
                "prompt_tokens": estimate_tokens(request.instruction),
                "completion_tokens": len(words),
            }
        finally:  # also when the call is cancelled: an abandoned generation is not counted as running
            self._active -= 1

    # ------------------------------------------------------------------------------ fault injection
    MAX_COMPLETED = 100_000
    FAULTS = ("none", "stall_first", "stall_after_first", "fail")

    async def _fault(self, where: str) -> None:
        kind, seconds = self._fault_kind, self._fault_seconds
        if kind == "fail":
            raise RuntimeError(f"recorded model {self.name!r}: injected failure")
        if kind == where:
            await asyncio.sleep(seconds)

    def set_fault(self, kind: str = "none", seconds: float = 0.0) -> None:
        """Inject a fault into this replica's answers, for the fault harness (`benchmarks/bench_faults.py`)
        and tests: `stall_first` (sleep `seconds` before the first chunk), `stall_after_first` (after it),
        `fail` (raise, a 5xx at the ingress), `none` (clear).

        Raises:
            ValueError: an unknown kind, or seconds < 0.
        """
        if kind not in self.FAULTS or seconds < 0:
            raise ValueError(
                f"fault {kind!r} for {seconds!r} s; allowed kinds: {', '.join(self.FAULTS)}, seconds >= 0"
            )
        self._fault_kind, self._fault_seconds = kind, float(seconds)

    def stats(self) -> dict[str, Any]:
        """`{"active": generations running now, "completed": request ids answered to the end, oldest first}`."""
        return {"active": self._active, "completed": list(self._completed)}

    def check_health(self) -> None:
        """Serve health check: the recorded responses are loaded."""
        if not self.responses:
            raise RuntimeError(f"recorded model {self.name!r} has no responses")

    @classmethod
    def actor_env(cls, served: Any) -> dict[str, str] | None:
        """Environment variables of its replicas (none)."""
        return None
