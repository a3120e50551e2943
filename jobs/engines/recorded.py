"""The `recorded` aptitude engine: a real model's recorded outcomes in a routing data directory.

It rebuilds a model's capability profile offline, with no model running (the shared datasets hold the outcome
of every model on every question). The answer is the recorded score; nothing is generated or graded.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from jobs.engines.base import AptitudeEngine, Response
from modelsat.errors import EngineError
from modelsat.grading import AptitudeItem
from modelsat.serving_config import RecordedModelEngine

__all__ = ["RecordedEngine", "RecordedEngineConfig"]


RecordedEngineConfig = RecordedModelEngine
"""The recorded engine's config: the same as a recorded model application's (`modelsat.serving_config`), so a
candidate model's recorded outcomes and its recorded responses are named the same way in both places."""


@functools.lru_cache(maxsize=4)
def _routing_data(path: str) -> Any:
    """Routing data read once per process (a worker serves many recorded models from the same data)."""
    from modelsat.data import load_routing_data

    return load_routing_data(path)


class RecordedEngine(AptitudeEngine):
    """Answers with the recorded outcomes (scores in [0, 1]) of one model."""

    config_class = RecordedEngineConfig
    generates = False
    # `--data` is also where `modelsat registry add` reads the items when the checkpoint lacks them
    cli_flags: ClassVar[dict[str, str]] = {"routing_data": "--data", "model": "--recorded-model"}

    def __init__(self, config: RecordedEngineConfig, candidate: str) -> None:
        data = _routing_data(config.routing_data)
        name = config.model or candidate
        col = int(data.model_index([name])[0])
        self._pos = {q: i for i, q in enumerate(data.question_ids.tolist())}
        self._scores = data.outcomes[:, col]
        self._data_name = data.name
        self._name = name

    def respond(self, items: list[AptitudeItem], prompts: list[str]) -> list[Response]:
        missing = [it.question_id for it in items if it.question_id not in self._pos]
        if missing:
            raise EngineError(
                f"routing data {self._data_name!r} has no recorded outcome of {self._name!r} for "
                f"{len(missing)} item(s), e.g. {missing[0]!r}; use the routing data the router's aptitude test "
                "was drawn from"
            )
        return [Response("", float(self._scores[self._pos[it.question_id]])) for it in items]

    @classmethod
    def preflight(cls, config: RecordedEngineConfig, candidates: list[str]) -> None:
        """The routing data can be read and holds every candidate.

        Raises:
            UnknownModelError: a candidate is missing (lists the models there). DataError: unreadable data.
        """
        from modelsat.data import load_routing_data

        load_routing_data(config.routing_data).model_index([config.model or c for c in candidates])

    @classmethod
    def check_candidates(cls, config: RecordedEngineConfig, candidates: list[str]) -> None:
        if config.model and len(candidates) != 1:
            from modelsat.errors import ConfigError

            raise ConfigError("--recorded-model applies to one candidate model; give one name")
