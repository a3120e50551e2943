"""The `recorded` model server: a candidate model's recorded responses from a routing data directory.

It answers instructions of the routing data with the model's recorded `response_tail`, matched by exact
instruction text; anything else is a 404 `instruction_not_recorded` (a client error: no failover). Real data,
no GPU: the main job's serving stage and the tests serve the shared datasets this way.
"""

from __future__ import annotations

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

        The recorded text is cut to `max_tokens` words (a word counts as a token here).
        """
        text = self._lookup(request)
        words = text.split(" ")
        cut = len(words) > request.max_tokens
        words = words[: request.max_tokens]
        for i in range(0, len(words), 8):
            yield {"text": (" " if i else "") + " ".join(words[i : i + 8])}
        yield {
            "finish_reason": "length" if cut else "stop",
            "prompt_tokens": estimate_tokens(request.instruction),
            "completion_tokens": len(words),
        }

    def check_health(self) -> None:
        """Serve health check: the recorded responses are loaded."""
        if not self.responses:
            raise RuntimeError(f"recorded model {self.name!r} has no responses")

    @classmethod
    def actor_env(cls, served: Any) -> dict[str, str] | None:
        """Environment variables of its replicas (none)."""
        return None
