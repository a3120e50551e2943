"""Aptitude test and capability profiles (paper §3).

The aptitude test is T tasks × K "distinguishing" items: per task, the K training questions whose mean
correctness over the *training* models is closest to 0.5 (paper §3: items that roughly half the zoo answers
correctly). A candidate model's **capability profile** is its accuracy on each task's items, rendered as the
paper's text (`accuracy 65.0% on the task of "<5 keywords>"`).

Scale. Items are chosen so that the training zoo averages about 50 % on them, so a profile is not on the scale
of a model's overall accuracy. Profiles stay comparable because the test is frozen in the router checkpoint:
every later model (unseen in training, or added through the registry) is measured on exactly the same items,
and the per-task reference statistics (mean and standard deviation of the training models' accuracies) are
stored with the test and used to standardise every profile the same way. The test is never re-selected when
models are added.

Zoos with fewer task labels than T use all their tasks with more items each (about T × K in total). No task
gives more than `max_item_share` of its training questions, so routing keeps data to learn from; when the zoo
cannot supply T × K items, `select_aptitude_test` fails and says how many it can supply.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from modelsat.config import BaseConfig
from modelsat.data import RoutingData
from modelsat.descriptions import describe_task, doc_freq
from modelsat.errors import ConfigError, DataError

__all__ = [
    "AptitudeConfig",
    "AptitudeTask",
    "AptitudeTest",
    "CapabilityProfile",
    "measure_profiles",
    "profile_from_scores",
    "select_aptitude_test",
]


class AptitudeConfig(BaseConfig):
    """How the aptitude test is drawn (paper §3: 50 tasks × 20 questions)."""

    n_tasks: int = Field(50, ge=1, le=1000, description="T: number of tasks (all tasks if the zoo has fewer)")
    items_per_task: int = Field(20, ge=1, le=10000, description="K: items per task; T×K items in total")
    max_item_share: float = Field(
        0.5, gt=0.0, le=1.0, description="Largest share of a task's training questions the test may take"
    )
    seed: int = Field(0, description="Seed for tie-breaks between equally distinguishing items")


@dataclass(frozen=True)
class AptitudeTask:
    """One task of the aptitude test.

    Attributes:
        name: the zoo's `task` label.
        description: 5 comma-separated keywords (paper §3), derived from the task name and its questions.
        question_ids: the task's items.
        reference_mean: mean accuracy of the training models on these items, in [0, 1].
        reference_std: their standard deviation (>= 0.05, to keep standardised values bounded).
    """

    name: str
    description: str
    question_ids: tuple[str, ...]
    reference_mean: float
    reference_std: float


@dataclass(frozen=True)
class AptitudeTest:
    """The frozen aptitude test of a router checkpoint.

    Attributes:
        zoo: name of the zoo the items come from.
        tasks: the T' tasks actually used (T' = min(T, tasks available)).
        seed: selection seed.
        requested: `(T, K)` as configured.
        training_models: models whose outcomes chose the items and set the reference statistics.
        notes: human-readable account of what was used (shown in reports).
    """

    zoo: str
    tasks: tuple[AptitudeTask, ...]
    seed: int
    requested: tuple[int, int]
    training_models: tuple[str, ...]
    notes: str = ""

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    @property
    def question_ids(self) -> list[str]:
        """All items, task by task."""
        return [q for t in self.tasks for q in t.question_ids]

    @property
    def n_items(self) -> int:
        return sum(len(t.question_ids) for t in self.tasks)

    def to_dict(self) -> dict:
        return {
            "zoo": self.zoo,
            "seed": self.seed,
            "requested": {"n_tasks": self.requested[0], "items_per_task": self.requested[1]},
            "training_models": list(self.training_models),
            "notes": self.notes,
            "tasks": [
                {
                    "name": t.name,
                    "description": t.description,
                    "reference_mean": t.reference_mean,
                    "reference_std": t.reference_std,
                    "question_ids": list(t.question_ids),
                }
                for t in self.tasks
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> AptitudeTest:
        return cls(
            zoo=d["zoo"],
            seed=int(d["seed"]),
            requested=(int(d["requested"]["n_tasks"]), int(d["requested"]["items_per_task"])),
            training_models=tuple(d["training_models"]),
            notes=d.get("notes", ""),
            tasks=tuple(
                AptitudeTask(
                    name=t["name"],
                    description=t["description"],
                    question_ids=tuple(t["question_ids"]),
                    reference_mean=float(t["reference_mean"]),
                    reference_std=float(t["reference_std"]),
                )
                for t in d["tasks"]
            ),
        )


@dataclass(frozen=True)
class CapabilityProfile:
    """A candidate model's accuracy per aptitude task (paper §3).

    Attributes:
        model: candidate model name.
        accuracies: [T'] accuracy per task, in [0, 1], in the order of the test's tasks.
        n_items: [T'] items graded per task.
        source: where the outcomes came from (e.g. `recorded outcomes, zoo mmlu_pro`).
    """

    model: str
    accuracies: np.ndarray
    n_items: np.ndarray
    source: str = ""
    extra: dict = field(default_factory=dict)

    def standardized(self, test: AptitudeTest) -> np.ndarray:
        """[T'] accuracies standardised with the test's frozen reference statistics (training-zoo scale)."""
        mean = np.array([t.reference_mean for t in test.tasks], dtype=np.float32)
        std = np.array([t.reference_std for t in test.tasks], dtype=np.float32)
        return (self.accuracies.astype(np.float32) - mean) / std

    def text(self, test: AptitudeTest, order: np.ndarray | None = None) -> str:
        """The paper's text form: `The model achieves accuracy 50.0% on the task of "...", accuracy ...`.

        Args:
            test: the aptitude test the profile was measured on (gives task descriptions).
            order: optional [T'] permutation of tasks (the paper shuffles order as augmentation).
        """
        idx = range(len(test.tasks)) if order is None else order
        parts = [
            f'accuracy {100.0 * float(self.accuracies[i]):.1f}% on the task of "{test.tasks[i].description}"'
            for i in idx
        ]
        return "The model achieves " + ", ".join(parts) + "."

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "accuracies": [round(float(a), 6) for a in self.accuracies],
            "n_items": [int(n) for n in self.n_items],
            "source": self.source,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> CapabilityProfile:
        return cls(
            model=d["model"],
            accuracies=np.asarray(d["accuracies"], dtype=np.float32),
            n_items=np.asarray(d["n_items"], dtype=np.int64),
            source=d.get("source", ""),
            extra=d.get("extra", {}),
        )


# ------------------------------------------------------------------------------------------------- selection
def _quotas(supply: dict[str, int], tasks: list[str], total: int) -> dict[str, int]:
    """Spread `total` items over `tasks` as evenly as their supply allows (water filling)."""
    quota = {t: 0 for t in tasks}
    remaining = total
    open_tasks = [t for t in tasks if supply[t] > 0]
    while remaining > 0 and open_tasks:
        share = max(remaining // len(open_tasks), 1)
        for t in list(open_tasks):
            give = min(share, supply[t] - quota[t], remaining)
            quota[t] += give
            remaining -= give
            if quota[t] >= supply[t]:
                open_tasks.remove(t)
            if remaining == 0:
                break
    return quota


def select_aptitude_test(
    zoo: RoutingData,
    pool_rows: np.ndarray,
    training_models: list[str] | tuple[str, ...],
    config: AptitudeConfig,
) -> AptitudeTest:
    """Choose the T × K distinguishing items from a zoo's training pool (paper §3).

    Tasks: if the zoo has at least T tasks, the T tasks with the most training questions (ties by name);
    otherwise all tasks, with about T × K / (tasks) items each. Items: per task, the questions whose mean
    correctness over `training_models` is closest to 0.5, ties broken by a seeded shuffle; at most one item per
    distinct instruction text.

    Args:
        zoo: the zoo.
        pool_rows: [r] rows the test may use (the training pool; never held-out rows).
        training_models: models whose outcomes define "distinguishing" and the reference statistics
            (never the unseen models).
        config: T, K, the largest share of a task's questions, and the seed.
    Returns:
        The `AptitudeTest`, with a note saying what was used.
    Raises:
        DataError: if the pool cannot supply T × K items; the message says how many it can supply.
        UnknownModelError: if a training model is not in the zoo.
    """
    cols = zoo.model_index(list(training_models))
    pool_rows = np.asarray(pool_rows, dtype=np.int64)
    hashes = zoo.prompt_hashes()
    # one row per distinct instruction text
    seen: set[str] = set()
    rows = []
    for r in pool_rows.tolist():
        if hashes[r] not in seen:
            seen.add(hashes[r])
            rows.append(r)
    rows_arr = np.array(rows, dtype=np.int64)
    tasks_of = zoo.tasks[rows_arr]
    n_pool_task = Counter(zoo.tasks[pool_rows].tolist())
    supply = {
        t: min(int(config.max_item_share * n_pool_task[t]), int((tasks_of == t).sum())) for t in n_pool_task
    }
    by_size = sorted(n_pool_task, key=lambda t: (-n_pool_task[t], t))
    T, K = config.n_tasks, config.items_per_task
    total = T * K
    chosen = by_size if len(by_size) <= T else [t for t in by_size if supply[t] > 0][:T]
    available = sum(supply[t] for t in chosen)
    if available < total:
        raise DataError(
            f"zoo {zoo.name!r} can supply {available} aptitude items from {len(chosen)} tasks "
            f"(at most max_item_share={config.max_item_share} of each task's training questions; "
            f"{len(pool_rows)} training questions in all), "
            f"but the test asks for n_tasks×items_per_task = {T}×{K} = {total}; "
            f"lower aptitude.n_tasks or aptitude.items_per_task to at most {available} items in total"
        )
    quota = _quotas(supply, chosen, total)

    rng = np.random.default_rng(config.seed)
    mean_correct = zoo.outcomes[np.ix_(rows_arr, cols)].mean(axis=1)
    tie = rng.random(len(rows_arr))
    all_prompts = zoo.prompts.tolist()
    background = doc_freq(all_prompts)
    tasks = []
    for t in chosen:
        if quota[t] == 0:
            continue
        idx = np.flatnonzero(tasks_of == t)
        order = np.lexsort((tie[idx], np.abs(mean_correct[idx] - 0.5)))
        pick = rows_arr[idx[order[: quota[t]]]]
        pick = np.sort(pick)
        acc = zoo.outcomes[np.ix_(pick, cols)].mean(axis=0)  # [m_train]
        task_prompts = zoo.prompts[zoo.tasks == t].tolist()
        tasks.append(
            AptitudeTask(
                name=t,
                description=describe_task(t, task_prompts, all_prompts, background=background),
                question_ids=tuple(zoo.question_ids[pick].tolist()),
                reference_mean=float(acc.mean()),
                reference_std=float(max(acc.std(), 0.05)),
            )
        )
    counts = [len(t.question_ids) for t in tasks]
    if len(by_size) < T:
        note = (
            f"zoo {zoo.name!r} has {len(by_size)} task labels (< n_tasks={T}): all tasks used, "
            f"{min(counts)}–{max(counts)} items each, {sum(counts)} items in total (asked {T}×{K}={total})"
        )
    else:
        note = f"{len(tasks)} of {len(by_size)} tasks (largest first), {min(counts)}–{max(counts)} items each, {sum(counts)} items"
    mean_all = float(np.mean([t.reference_mean for t in tasks]))
    note += f"; training models average {100 * mean_all:.1f}% on the items"
    return AptitudeTest(
        zoo=zoo.name,
        tasks=tuple(tasks),
        seed=config.seed,
        requested=(T, K),
        training_models=tuple(training_models),
        notes=note,
    )


def profile_from_scores(
    test: AptitudeTest, model: str, scores: dict[str, float], source: str = ""
) -> CapabilityProfile:
    """A capability profile from graded aptitude items.

    Args:
        test: the aptitude test.
        model: candidate model name.
        scores: question id -> score in [0, 1] for every item of the test.
        source: where the scores came from.
    Raises:
        DataError: naming how many items have no score (and one of them).
    """
    missing = [q for q in test.question_ids if q not in scores]
    if missing:
        raise DataError(
            f"model {model!r} has no outcome for {len(missing)} of the {test.n_items} aptitude items "
            f"(e.g. {missing[0]!r}); a profile needs every item of the checkpoint's aptitude test"
        )
    acc = np.array([np.mean([scores[q] for q in t.question_ids]) for t in test.tasks], dtype=np.float32)
    n = np.array([len(t.question_ids) for t in test.tasks], dtype=np.int64)
    return CapabilityProfile(model=model, accuracies=acc, n_items=n, source=source)


def measure_profiles(
    test: AptitudeTest, zoo: RoutingData, models: list[str] | tuple[str, ...] | None = None
) -> dict[str, CapabilityProfile]:
    """Profiles of `models` (default: all of the zoo's) from their recorded outcomes on the test's items.

    Raises:
        DataError: if the zoo lacks some aptitude items (e.g. a different zoo than the checkpoint's), with
            the count and an example id.
        UnknownModelError: if a model is not in the zoo.
    """
    names = list(zoo.models if models is None else models)
    cols = zoo.model_index(names)
    pos = {q: i for i, q in enumerate(zoo.question_ids.tolist())}
    missing = [q for q in test.question_ids if q not in pos]
    if missing:
        raise DataError(
            f"zoo {zoo.name!r} ({zoo.path}) lacks {len(missing)} of the {test.n_items} aptitude items of the "
            f"checkpoint (test drawn from zoo {test.zoo!r}; e.g. {missing[0]!r}); profiles of its models cannot be "
            "measured from recorded outcomes. Use a zoo that contains the aptitude items, or register profiles."
        )
    profiles = {}
    for name, c in zip(names, cols, strict=True):
        scores = {q: float(zoo.outcomes[pos[q], c]) for q in test.question_ids}
        profiles[name] = profile_from_scores(test, name, scores, source=f"recorded outcomes, zoo {zoo.name}")
    return profiles


def check_disjoint(test: AptitudeTest, question_ids: list[str] | np.ndarray, what: str) -> None:
    """Internal invariant: aptitude items are never used to train or evaluate routing."""
    overlap = set(test.question_ids) & set(np.asarray(question_ids).tolist())
    if overlap:
        raise ConfigError(
            f"{len(overlap)} aptitude items appear in the {what} set (e.g. {sorted(overlap)[0]!r})"
        )
