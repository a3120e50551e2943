"""Loading a routing data directory (questions, per-model outcomes, optional cost) in the shared schema.

A routing data directory holds `questions.parquet`, `outcomes.parquet` and `models.parquet` in the schema of the shared
routing datasets (`../shared/data/README.md`; the contract: `modelsat.data.schema` and this project's README,
"Routing data"). `load_routing_data` validates it and returns a `RoutingData` with an outcome matrix `[n_questions, n_models]` and,
where every outcome has `cost_usd`, a cost matrix of the same shape.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelsat.errors import DataError, UnknownModelError
from modelsat.paths import (
    DATA_ENV,
    data_root,
    data_root_found,
    local_data_dir,
    resolve_routing_data_dir,
    shared_data_dir,
)

__all__ = [
    "QUESTION_COLUMNS",
    "OUTCOME_COLUMNS",
    "SPLITS",
    "RoutingData",
    "load_routing_data",
    "missing_routing_data_error",
    "recorded_responses",
    "prompt_hash",
]

QUESTION_COLUMNS = ("question_id", "benchmark", "task", "prompt")
"""Required columns of questions.parquet (`category`, `reference`, `split` are optional)."""
OUTCOME_COLUMNS = ("question_id", "model", "score")
"""Required columns of outcomes.parquet (`response_tail`, `cost_usd` are optional)."""
SPLITS = ("train", "test")
"""Allowed values of the `split` column."""


def prompt_hash(prompt: str) -> str:
    """Stable 16-hex-digit hash of an instruction, after folding whitespace (used to keep duplicates together)."""
    return hashlib.sha256(" ".join(prompt.split()).encode()).hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class RoutingData:
    """A validated zoo: n questions answered by m candidate models.

    Attributes:
        name: zoo name (the directory name).
        path: the routing data directory.
        question_ids: [n] globally unique ids.
        benchmarks, tasks, prompts: [n] strings; categories, references: [n] strings or None.
        splits: [n] values from `SPLITS`.
        models: [m] candidate model names, in models.parquet order.
        outcomes: [n, m] float32 scores in [0, 1] (1 = correct).
        costs: [n, m] float64 USD per query, or None when the zoo has no cost.
        model_info: per model, the optional models.parquet columns (`params_b`, `price_per_mtok`, ...).
    """

    name: str
    path: Path
    question_ids: np.ndarray
    benchmarks: np.ndarray
    tasks: np.ndarray
    categories: np.ndarray
    prompts: np.ndarray
    references: np.ndarray
    splits: np.ndarray
    models: tuple[str, ...]
    outcomes: np.ndarray
    costs: np.ndarray | None
    model_info: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def n_questions(self) -> int:
        return len(self.question_ids)

    @property
    def n_models(self) -> int:
        return len(self.models)

    def fingerprint(self) -> str:
        """Hash of the question ids, models and outcomes (identifies the data a checkpoint was trained on)."""
        h = hashlib.sha256()
        h.update("\n".join(self.question_ids.tolist()).encode())
        h.update("\n".join(self.models).encode())
        h.update(np.ascontiguousarray(self.outcomes).tobytes())
        return h.hexdigest()[:16]

    def prompt_hashes(self) -> np.ndarray:
        """[n] `prompt_hash` of every instruction."""
        return np.array([prompt_hash(p) for p in self.prompts], dtype=object)

    def index_of_questions(self, question_ids: list[str] | np.ndarray) -> np.ndarray:
        """Row indices of the given question ids.

        Raises:
            DataError: naming the first id that is not in the zoo.
        """
        pos = {q: i for i, q in enumerate(self.question_ids.tolist())}
        out = np.empty(len(question_ids), dtype=np.int64)
        for j, q in enumerate(question_ids):
            if q not in pos:
                raise DataError(f"question id {q!r} is not in zoo {self.name!r} ({self.path})")
            out[j] = pos[q]
        return out

    def model_index(self, names: list[str] | tuple[str, ...]) -> np.ndarray:
        """Column indices of the given models.

        Raises:
            UnknownModelError: naming the unknown model and listing the zoo's models.
        """
        pos = {m: i for i, m in enumerate(self.models)}
        bad = [n for n in names if n not in pos]
        if bad:
            raise UnknownModelError(
                f"unknown model {bad[0]!r} in zoo {self.name!r}; allowed: {', '.join(self.models)}"
            )
        return np.array([pos[n] for n in names], dtype=np.int64)

    def subset(
        self, rows: np.ndarray | None = None, models: list[str] | tuple[str, ...] | None = None
    ) -> RoutingData:
        """A new RoutingData restricted to the given question rows and/or models (order as given)."""
        r = np.arange(self.n_questions) if rows is None else np.asarray(rows, dtype=np.int64)
        names = tuple(self.models) if models is None else tuple(models)
        c = self.model_index(names)
        return RoutingData(
            name=self.name,
            path=self.path,
            question_ids=self.question_ids[r],
            benchmarks=self.benchmarks[r],
            tasks=self.tasks[r],
            categories=self.categories[r],
            prompts=self.prompts[r],
            references=self.references[r],
            splits=self.splits[r],
            models=names,
            outcomes=self.outcomes[np.ix_(r, c)],
            costs=None if self.costs is None else self.costs[np.ix_(r, c)],
            model_info={m: self.model_info.get(m, {}) for m in names},
        )


def missing_routing_data_error(zoo: str | Path) -> DataError:
    """The error for a zoo that does not exist; for a bare name without a data root, how to get data.

    A newcomer has no `../shared/data`: the message says how to fetch the public MMLU-Pro outcomes in one command
    and how to import one's own lm-eval logs (README, "Bring your own outcomes").
    """
    path = resolve_routing_data_dir(zoo)
    p = Path(zoo).expanduser()
    if p.is_absolute() or len(p.parts) > 1:
        return DataError(
            f"routing data directory {str(path)!r} does not exist (give a routing data directory or a zoo name)"
        )
    if not data_root_found():
        env = os.environ.get(DATA_ENV)
        where = (
            f"${DATA_ENV}={env} does not exist"
            if env
            else f"${DATA_ENV} is unset and neither {shared_data_dir()} nor {local_data_dir()} exists"
        )
        target = Path(env).expanduser() if env else local_data_dir()
        return DataError(
            f"zoo {str(zoo)!r} not found: no data root ({where}). Get the public MMLU-Pro outcomes of 24 LLMs in "
            f"one command: `modelsat data fetch mmlu-pro --out {target / 'mmlu_pro'}` (or `modelsat run "
            f"--fetch-data`); or import your own lm-eval logs: `modelsat data import lm-eval RESULTS_DIR --out "
            f'{target / "my_zoo"}` and pass --data my_zoo (README: "Bring your own outcomes")'
        )
    root = data_root()
    available = sorted(d.name for d in root.iterdir() if (d / "questions.parquet").is_file())
    return DataError(
        f"routing data directory {str(path)!r} does not exist (give a routing data directory or a zoo name under the data root "
        f"{root}: {', '.join(available) or 'none there'})"
    )


def _read(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> pa.Table:
    if not path.is_file():
        raise DataError(
            f"{path} is missing: a routing data directory holds questions.parquet, outcomes.parquet and models.parquet"
        )
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        raise DataError(f"{path} is not a readable parquet file: {e}") from e
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise DataError(
            f"{path}: missing column {missing[0]!r} (required columns: {', '.join(required)}; "
            f"found: {', '.join(schema.names)})"
        )
    cols = list(required) + [c for c in optional if c in schema.names]
    try:
        return pq.read_table(path, columns=cols)
    except Exception as e:
        raise DataError(f"{path} could not be read: {e}") from e


def _strings(table: pa.Table, column: str, path: Path, nullable: bool) -> np.ndarray:
    col = table.column(column)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_null(col.type)):
        raise DataError(f"{path}: column {column!r} must hold strings, found type {col.type}")
    values = np.array(col.to_pylist(), dtype=object)
    if not nullable:
        bad = [i for i, v in enumerate(values) if v is None or v == ""]
        if bad:
            raise DataError(f"{path}: column {column!r} is empty or null in row {bad[0]} ({len(bad)} rows)")
    return values


def load_routing_data(zoo: str | Path) -> RoutingData:
    """Load and validate a routing data directory (or a zoo name under the data root, see `modelsat.paths`).

    Args:
        zoo: directory path, or a name such as `mmlu_pro` resolved under `$MODELSAT_DATA` / `../shared/data`.
    Returns:
        The validated `RoutingData` (questions in questions.parquet order, models in models.parquet order).
    Raises:
        DataError: naming the file, the column and the bad value, for: a missing directory, file or column;
            a duplicated `question_id` or `(question_id, model)`; a score outside [0, 1]; an outcome for an
            unknown question; a model missing outcomes; a split value outside `SPLITS`; fewer than 2 models.
    """
    path = resolve_routing_data_dir(zoo)
    if not path.is_dir():
        raise missing_routing_data_error(zoo)
    qpath, opath, mpath = path / "questions.parquet", path / "outcomes.parquet", path / "models.parquet"
    qt = _read(qpath, QUESTION_COLUMNS, ("category", "reference", "split"))
    ot = _read(opath, OUTCOME_COLUMNS, ("cost_usd",))
    mt = _read(mpath, ("model",), ("params_b", "price_per_mtok", "mean_cost_usd"))
    if qt.num_rows == 0:
        raise DataError(f"{qpath}: has no questions")

    qids = _strings(qt, "question_id", qpath, nullable=False)
    uniq, counts = np.unique(qids.astype(str), return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{qpath}: duplicated question_id {uniq[counts > 1][0]!r}")
    n = len(qids)
    optional = {
        c: _strings(qt, c, qpath, nullable=True) if c in qt.column_names else np.full(n, None, dtype=object)
        for c in ("category", "reference")
    }
    splits = (
        _strings(qt, "split", qpath, nullable=False)
        if "split" in qt.column_names
        else np.full(n, "train", dtype=object)
    )
    bad_split = sorted({s for s in splits.tolist() if s not in SPLITS})
    if bad_split:
        raise DataError(f"{qpath}: column 'split' has value {bad_split[0]!r}; allowed: {', '.join(SPLITS)}")

    models = _strings(mt, "model", mpath, nullable=False).tolist()
    if len(set(models)) != len(models):
        dup = next(m for m in models if models.count(m) > 1)
        raise DataError(f"{mpath}: duplicated model {dup!r}")
    if len(models) < 2:
        raise DataError(
            f"{mpath}: routing needs at least 2 models, found {len(models)} ({', '.join(models) or 'none'})"
        )

    oq = _strings(ot, "question_id", opath, nullable=False)
    om = _strings(ot, "model", opath, nullable=False)
    score_col = ot.column("score")
    if not pa.types.is_floating(score_col.type) and not pa.types.is_integer(score_col.type):
        raise DataError(f"{opath}: column 'score' must be numeric, found type {score_col.type}")
    scores = pc.cast(score_col, pa.float64()).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(~((scores >= 0.0) & (scores <= 1.0)))  # also catches NaN / null
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"{opath}: column 'score' has value {float(scores[i])!r} for ({oq[i]!r}, {om[i]!r}); allowed: a number in [0, 1]"
        )

    qpos = {q: i for i, q in enumerate(qids.tolist())}
    mpos = {m: j for j, m in enumerate(models)}
    unknown_m = sorted(set(om.tolist()) - set(models))
    if unknown_m:
        raise DataError(
            f"{opath}: model {unknown_m[0]!r} is not listed in {mpath.name} (listed: {', '.join(models)})"
        )
    try:
        rows = np.fromiter((qpos[q] for q in oq), dtype=np.int64, count=len(oq))
    except KeyError as e:
        raise DataError(f"{opath}: question_id {e.args[0]!r} is not in {qpath.name}") from None
    cols = np.fromiter((mpos[m] for m in om), dtype=np.int64, count=len(om))
    flat = rows * len(models) + cols
    uflat, ucounts = np.unique(flat, return_counts=True)
    if (ucounts > 1).any():
        f = int(uflat[ucounts > 1][0])
        raise DataError(
            f"{opath}: duplicated (question_id, model) = ({qids[f // len(models)]!r}, {models[f % len(models)]!r})"
        )
    outcomes = np.full((n, len(models)), np.nan, dtype=np.float32)
    outcomes[rows, cols] = scores.astype(np.float32)
    missing = np.isnan(outcomes)
    if missing.any():
        j = int(np.flatnonzero(missing.any(axis=0))[0])
        qs = np.flatnonzero(missing[:, j])
        raise DataError(
            f"{opath}: model {models[j]!r} is missing outcomes for {len(qs)} of {n} questions "
            f"(e.g. question_id {qids[qs[0]]!r}); every model needs one outcome per question"
        )

    costs = None
    if "cost_usd" in ot.column_names and ot.column("cost_usd").null_count < ot.num_rows:
        cost_vals = pc.cast(ot.column("cost_usd"), pa.float64()).to_numpy(zero_copy_only=False)
        if np.isnan(cost_vals).any():
            i = int(np.flatnonzero(np.isnan(cost_vals))[0])
            raise DataError(
                f"{opath}: column 'cost_usd' is null for ({oq[i]!r}, {om[i]!r}) but set elsewhere; give all or none"
            )
        if (cost_vals < 0).any():
            i = int(np.flatnonzero(cost_vals < 0)[0])
            raise DataError(
                f"{opath}: column 'cost_usd' has value {float(cost_vals[i])!r}; allowed: a number >= 0"
            )
        costs = np.zeros((n, len(models)), dtype=np.float64)
        costs[rows, cols] = cost_vals

    info: dict[str, dict[str, float | None]] = {m: {} for m in models}
    for c in ("params_b", "price_per_mtok", "mean_cost_usd"):
        if c in mt.column_names:
            for m, v in zip(models, mt.column(c).to_pylist(), strict=True):
                info[m][c] = None if v is None else float(v)

    return RoutingData(
        name=path.name,
        path=path,
        question_ids=qids,
        benchmarks=_strings(qt, "benchmark", qpath, nullable=False),
        tasks=_strings(qt, "task", qpath, nullable=False),
        categories=optional["category"],
        prompts=_strings(qt, "prompt", qpath, nullable=False),
        references=optional["reference"],
        splits=splits,
        models=tuple(models),
        outcomes=outcomes,
        costs=costs,
        model_info=info,
    )


def recorded_responses(source: str | Path, model: str) -> dict[str, str]:
    """One model's recorded responses, keyed by instruction text (what a recorded model application serves).

    Reads only `question_id, model, response_tail` of outcomes.parquet and `question_id, prompt` of
    questions.parquet (a replica per model must stay light); the first question of a repeated instruction text
    wins, and a null tail is an empty answer.

    Args:
        source: routing data directory, or a name under the data root.
        model: the model's name in the routing data.
    Returns:
        {instruction text: the last 400 characters of the model's response}.
    Raises:
        DataError: the directory or its files cannot be read, or it has no `response_tail` column.
        UnknownModelError: the routing data has no such model (the message lists the models).
    """
    path = resolve_routing_data_dir(source)
    try:
        outcomes = pq.read_table(path / "outcomes.parquet", columns=["question_id", "model", "response_tail"])
        questions = pq.read_table(path / "questions.parquet", columns=["question_id", "prompt"])
    except (OSError, pa.ArrowInvalid, KeyError) as e:
        raise DataError(f"routing data {str(path)!r}: cannot read its recorded responses: {e}") from e
    mine = outcomes.filter(pc.equal(outcomes["model"], model))
    if mine.num_rows == 0:
        known = sorted(set(outcomes["model"].to_pylist()))
        raise UnknownModelError(
            f"routing data {str(path)!r} has no model {model!r}; models: {', '.join(known)}"
        )
    tails = dict(zip(mine["question_id"].to_pylist(), mine["response_tail"].to_pylist(), strict=True))
    responses: dict[str, str] = {}
    for qid, prompt in zip(
        questions["question_id"].to_pylist(), questions["prompt"].to_pylist(), strict=True
    ):
        if qid in tails and prompt not in responses:
            responses[prompt] = tails[qid] or ""
    return responses
