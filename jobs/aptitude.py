"""The aptitude job on Ray Data: candidate models take a router checkpoint's aptitude test (paper §3).

Pipeline, per candidate model: `ray.data.from_items(items)` → `map_batches(AptitudeWorker)` (an actor pool
of `workers` engines: batched generation or recorded lookup, then answer extraction and grading) → the
datasets of all candidates are unioned and run together; the driver streams the graded rows, shows a progress
bar per model, and turns each model's item scores into its `CapabilityProfile` (per-task accuracy).

Nothing is written here: `modelsat registry add` registers the results only when every item of every model was
graded (`modelsat.registry`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from pydantic import Field

from cluster import connect, disconnect, original_error, root_cause
from jobs.engines import EngineConfig, build_engine, engine_class, preflight
from modelsat.aptitude import AptitudeTest, CapabilityProfile, profile_from_scores
from modelsat.config import BaseConfig
from modelsat.data import load_routing_data
from modelsat.errors import DataError, EngineError, ModelSATError, RegistryError
from modelsat.grading import (
    AptitudeItem,
    check_gradable,
    format_prompt,
    grade_response,
    items_from_routing_data,
)
from modelsat.progress import NullProgress, Progress
from modelsat.registry import ModelCard, ModelRegistry, RegistryEntry, aptitude_fingerprint
from modelsat.router.checkpoint import RouterCheckpoint

__all__ = [
    "AptitudeJobConfig",
    "AptitudeResult",
    "AptitudeWorker",
    "add_models",
    "checkpoint_items",
    "run_aptitude_job",
]

log = logging.getLogger("modelsat.aptitude")


class AptitudeJobConfig(BaseConfig):
    """An aptitude-test run: which engine, and how much parallelism."""

    engine: EngineConfig = Field(description="How the candidate models answer (vllm, openai or recorded)")
    workers: int = Field(
        1,
        ge=1,
        le=1024,
        description="Ray Data workers (actors); each builds one engine per model it answers for",
    )
    batch_size: int = Field(32, ge=1, le=4096, description="Items per batch sent to an engine")
    cpus_per_worker: float = Field(1.0, gt=0.0, description="Logical CPUs reserved by each worker")


@dataclass
class AptitudeResult:
    """One candidate model's aptitude test.

    Attributes:
        model: candidate model name.
        profile: its capability profile ([T'] accuracies in [0, 1]).
        items: question id -> {"score": 0..1, "answer": extracted answer or None}.
        n_unparsed: responses without an extractable answer (counted wrong).
        seconds: wall time of the job (shared by the models that ran together).
        engine: engine settings (no secrets).
    """

    model: str
    profile: CapabilityProfile
    items: dict[str, dict[str, Any]]
    n_unparsed: int
    seconds: float
    engine: dict[str, Any] = field(default_factory=dict)

    def registry_record(self, test: AptitudeTest) -> dict[str, Any]:
        """The `aptitude` part of a registry entry."""
        return {
            "test": aptitude_fingerprint(test),
            "zoo": test.zoo,
            "tasks": test.task_names,
            "engine": self.engine,
            "n_items": len(self.items),
            "n_unparsed": self.n_unparsed,
            "seconds": round(self.seconds, 3),
            "items": self.items,
        }


def checkpoint_items(ckpt: RouterCheckpoint, zoo: str | Path | None = None) -> list[AptitudeItem]:
    """The aptitude items of a checkpoint: stored in it, else read from `zoo` (default: its training zoo).

    Raises:
        DataError: neither the checkpoint nor the zoo has the items.
    """
    if ckpt.items is not None and zoo is None:
        return ckpt.items
    source = zoo or ckpt.training.get("zoo_path")
    if source is None:
        raise DataError(
            f"router checkpoint {str(ckpt.path)!r} does not store its aptitude items and names no training zoo; "
            "pass --data ZOO_DIR (the zoo its aptitude test was drawn from)"
        )
    return items_from_routing_data(ckpt.aptitude, load_routing_data(source))


class AptitudeWorker:
    """Ray Data callable class: answers and grades batches of (item, candidate model) rows.

    One engine per candidate model, built on the first batch that needs it and kept for the actor's life
    (a vLLM engine loads its weights once; a recorded engine reads its zoo once).

    Args:
        engine: engine config as a dict (validated here).
    """

    def __init__(self, engine: dict[str, Any]) -> None:
        from pydantic import TypeAdapter

        self.config = TypeAdapter(EngineConfig).validate_python(engine)
        self.engines: dict[str, Any] = {}
        self.unparsed = ray.util.metrics.Counter(
            "modelsat_aptitude_unparsed_responses_total",
            description="Aptitude responses without an extractable answer (graded wrong)",
            tag_keys=("model",),
        )

    def _engine(self, candidate: str) -> Any:
        if candidate not in self.engines:
            self.engines[candidate] = build_engine(self.config, candidate)
        return self.engines[candidate]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        models = [str(m) for m in batch["model"]]
        items = [
            AptitudeItem(str(q), str(t), str(b), str(p), str(r) if r else None)
            for q, t, b, p, r in zip(
                batch["question_id"],
                batch["task"],
                batch["benchmark"],
                batch["prompt"],
                batch["reference"],
                strict=True,
            )
        ]
        kinds = [str(k) for k in batch["kind"]]
        scores = np.zeros(len(items), dtype=np.float64)
        answers = [""] * len(items)
        parsed = np.ones(len(items), dtype=bool)
        for candidate in dict.fromkeys(models):
            idx = [i for i, m in enumerate(models) if m == candidate]
            its = [items[i] for i in idx]
            prompts = [format_prompt(items[i], kinds[i]) if kinds[i] else items[i].prompt for i in idx]
            responses = self._engine(candidate).respond(its, prompts)
            if len(responses) != len(idx):
                raise EngineError(
                    f"engine returned {len(responses)} responses for {len(idx)} items of {candidate!r}"
                )
            for i, resp in zip(idx, responses, strict=True):
                if resp.score is not None:
                    scores[i] = float(resp.score)
                    continue
                g = grade_response(items[i], kinds[i], resp.text)
                scores[i], answers[i], parsed[i] = g.score, g.answer or "", g.parsed
                if not g.parsed:
                    self.unparsed.inc(1.0, tags={"model": candidate})
                    log.info("no extractable answer: model=%s item=%s", candidate, items[i].question_id)
        return {
            "model": models,
            "question_id": [it.question_id for it in items],
            "score": scores,
            "answer": answers,
            "parsed": parsed,
        }


def run_aptitude_job(
    test: AptitudeTest,
    items: list[AptitudeItem],
    candidates: list[str],
    config: AptitudeJobConfig,
    progress: Progress | None = None,
    address: str | None = None,
) -> dict[str, AptitudeResult]:
    """Run the aptitude test of `test` for every candidate model on Ray Data and build their profiles.

    Args:
        test: the checkpoint's aptitude test (T' tasks, n items).
        items: the n items' text and gold answers (`checkpoint_items`).
        candidates: candidate model names (one or more).
        config: engine and parallelism.
        progress: progress sink (a bar per model).
        address: Ray cluster (None = `$RAY_ADDRESS` or the embedded local cluster).
    Returns:
        candidate -> `AptitudeResult`, for every candidate.
    Raises:
        DataError: `items` do not match the test, or a live engine is given items it cannot grade.
        EngineError: an engine failed (the root cause is named); nothing partial is returned.
        ClusterError: the Ray cluster cannot be reached.
    """
    progress = progress or NullProgress()
    if not candidates:
        raise DataError("no candidate models given")
    if len(set(candidates)) != len(candidates):
        raise DataError(f"candidate models repeat: {', '.join(candidates)}")
    by_id = {it.question_id: it for it in items}
    missing = [q for q in test.question_ids if q not in by_id]
    if missing:
        raise DataError(
            f"{len(missing)} of the {test.n_items} aptitude items have no text (e.g. {missing[0]!r}); "
            "give the zoo the test was drawn from"
        )
    ordered = [by_id[q] for q in test.question_ids]
    live = engine_class(config.engine.kind).generates
    kinds = check_gradable(ordered) if live else {}
    preflight(config.engine, candidates)
    rows = [
        {
            "model": c,
            "question_id": it.question_id,
            "task": it.task,
            "benchmark": it.benchmark,
            "prompt": it.prompt,
            "reference": it.reference or "",
            "kind": kinds.get(it.question_id, ""),
        }
        for c in candidates
        for it in ordered
    ]
    engine_dict = config.engine.model_dump(mode="json")
    remote: dict[str, Any] = {
        "num_cpus": config.cpus_per_worker,
        **engine_class(config.engine.kind).ray_options(config.engine),
    }

    owns_ray = not ray.is_initialized()  # leave a Ray session the caller started running
    info = connect(address, num_cpus=max(os.cpu_count() or 1, 4))
    t0 = time.monotonic()
    data_ctx = ray.data.DataContext.get_current()
    bars = data_ctx.enable_progress_bars
    data_ctx.enable_progress_bars = False  # our own bar per model instead of Ray Data's operator bars
    scores: dict[str, dict[str, float]] = {c: {} for c in candidates}
    answers: dict[str, dict[str, str | None]] = {c: {} for c in candidates}
    unparsed = dict.fromkeys(candidates, 0)
    try:
        progress.log(
            f"aptitude test: {test.n_items} items × {len(candidates)} model(s), engine {config.engine.kind}, "
            f"{config.workers} Ray Data worker(s) on Ray cluster {info.address}"
        )
        ds = ray.data.from_items(
            rows, override_num_blocks=max(1, -(-len(rows) // config.batch_size))
        ).map_batches(
            AptitudeWorker,
            fn_constructor_kwargs={"engine": engine_dict},
            batch_size=config.batch_size,
            compute=ray.data.ActorPoolStrategy(size=config.workers),
            **remote,
        )
        with progress.tasks({c: test.n_items for c in candidates}) as advance:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                done: dict[str, int] = {}
                for m, q, s, a, ok in zip(
                    batch["model"],
                    batch["question_id"],
                    batch["score"],
                    batch["answer"],
                    batch["parsed"],
                    strict=True,
                ):
                    m = str(m)
                    scores[m][str(q)] = float(s)
                    answers[m][str(q)] = str(a) or None
                    unparsed[m] += int(not ok)
                    done[m] = done.get(m, 0) + 1
                for m, n in done.items():
                    advance(m, n, unparsed=unparsed[m])
    except ModelSATError:
        raise
    except Exception as e:  # Ray wraps the worker's exception: re-raise ours as is, else name the root cause
        orig = original_error(e)
        if isinstance(orig, ModelSATError):
            raise orig from e
        raise EngineError(f"aptitude job failed: {root_cause(e)}") from e
    finally:
        data_ctx.enable_progress_bars = bars
        if owns_ray:
            disconnect()
    seconds = time.monotonic() - t0
    safe_engine = {k: v for k, v in engine_dict.items() if "key" not in k or k == "api_key_env"}
    results = {}
    for c in candidates:
        if len(scores[c]) != test.n_items:
            raise EngineError(
                f"aptitude job graded {len(scores[c])} of {test.n_items} items of {c!r}; nothing registered"
            )
        source = f"aptitude test, engine {config.engine.kind}"
        results[c] = AptitudeResult(
            model=c,
            profile=profile_from_scores(test, c, scores[c], source=source),
            items={q: {"score": scores[c][q], "answer": answers[c][q]} for q in test.question_ids},
            n_unparsed=unparsed[c],
            seconds=seconds,
            engine=safe_engine,
        )
    return results


def add_models(
    router: str | Path,
    cards: list[ModelCard],
    config: AptitudeJobConfig,
    registry: ModelRegistry,
    replace: bool = False,
    data: str | Path | None = None,
    progress: Progress | None = None,
    address: str | None = None,
) -> list[RegistryEntry]:
    """`modelsat registry add`: run the aptitude test of a router checkpoint and register the models (no retraining).

    Order: registry checks (names, writability) → checkpoint and items → the Ray Data job → one registry write
    per model. Any failure before the writes leaves the registry byte-for-byte unchanged.

    Args:
        router: router checkpoint directory (its aptitude test is what the models take).
        cards: one card per candidate model to add.
        config: engine and parallelism.
        registry: where to register.
        replace: allow replacing registered models.
        data: zoo with the items' text (and, for `recorded`, the outcomes) when the checkpoint lacks them.
    Returns:
        The new registry entries.
    Raises:
        RegistryError: a name is registered and `replace` is False, or the registry is not writable.
        CheckpointError, DataError, EngineError, ClusterError: from the checkpoint, items, engine or cluster.
    """
    progress = progress or NullProgress()
    names = [c.name for c in cards]
    if not replace:
        taken = [n for n in names if n in set(registry.names())]
        if taken:
            raise RegistryError(
                f"model {taken[0]!r} is already in registry {registry.uri!r}; pass --replace to register a new "
                "version"
            )
    registry.check_writable()
    ckpt = RouterCheckpoint.load(router)
    items_zoo = data if (data is not None and ckpt.items is None) else None
    items = checkpoint_items(ckpt, items_zoo)
    results = run_aptitude_job(ckpt.aptitude, items, names, config, progress, address)
    entries = []
    for card in cards:
        res = results[card.name]
        entries.append(registry.put(card, res.profile, res.registry_record(ckpt.aptitude), replace=replace))
        progress.log(
            f"registered {card.name} (version {entries[-1].version}): mean aptitude accuracy "
            f"{100 * float(np.mean(res.profile.accuracies)):.1f}% over {len(res.items)} items, "
            f"{res.n_unparsed} without an extractable answer"
        )
    return entries
