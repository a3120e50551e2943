"""Check a routing data directory against the contract (`modelsat.data.schema`) and report every problem, not just the first.

`load_routing_data` stops at the first problem (it is on the hot path of every command); `validate_routing_data` is the full check
behind `modelsat data validate DIR`, also run on an existing zoo before an import extends it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelsat.data._routing_data import SPLITS, missing_routing_data_error
from modelsat.data.schema import FILES, ColumnSpec, columns_of
from modelsat.paths import resolve_routing_data_dir

__all__ = ["Problem", "validate_routing_data"]

_EXAMPLES = 3
_ACCURACY_TOLERANCE = 1e-4  # models.parquet accuracy vs mean score (scores are float32)


@dataclass(frozen=True)
class Problem:
    """One problem of a routing data directory.

    Attributes:
        file: the file it concerns (`questions.parquet`, ...), or "" for the directory itself.
        message: what is wrong, naming the column, the bad value(s) and what is allowed.
    """

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}" if self.file else self.message


def _examples(values: list) -> str:
    shown = ", ".join(repr(v) for v in values[:_EXAMPLES])
    return shown + (", ..." if len(values) > _EXAMPLES else "")


def _type_ok(spec: ColumnSpec, t: pa.DataType) -> bool:
    if pa.types.is_null(t):
        return spec.nullable
    if spec.kind == "string":
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if spec.kind == "int":
        return pa.types.is_integer(t)
    return pa.types.is_floating(t) or pa.types.is_integer(t)


def _read(path: Path, problems: list[Problem]) -> tuple[int, dict[str, pa.ChunkedArray]] | None:
    """(rows, the file's columns that exist and have the contract's type); problems for the others."""
    name = path.name
    if not path.is_file():
        problems.append(Problem(name, f"missing (a routing data directory holds {', '.join(FILES)})"))
        return None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a corrupt file
        problems.append(Problem(name, f"not a readable parquet file ({e})"))
        return None
    cols: dict[str, pa.ChunkedArray] = {}
    for spec in columns_of(name):
        if spec.name not in table.column_names:
            if spec.required:
                problems.append(
                    Problem(
                        name,
                        f"missing column {spec.name!r} (required: "
                        f"{', '.join(c.name for c in columns_of(name) if c.required)}; found: "
                        f"{', '.join(table.column_names) or 'none'})",
                    )
                )
            continue
        col = table.column(spec.name)
        if not _type_ok(spec, col.type):
            problems.append(Problem(name, f"column {spec.name!r} has type {col.type}; allowed: {spec.kind}"))
            continue
        if not spec.nullable and col.null_count:
            problems.append(Problem(name, f"column {spec.name!r} is null in {col.null_count} rows"))
        if spec.kind == "string" and not spec.nullable:
            empty = int(pc.sum(pc.equal(col, "")).as_py() or 0)
            if empty:
                problems.append(Problem(name, f"column {spec.name!r} is empty in {empty} rows"))
        cols[spec.name] = col
    return table.num_rows, cols


def _duplicates(values: list) -> list:
    return sorted((v for v, n in Counter(values).items() if n > 1), key=str)


def validate_routing_data(zoo: str | Path, min_models: int = 2, check_summary: bool = True) -> list[Problem]:
    """Every problem of a routing data directory (empty list = valid).

    Checks: the three files exist and are readable; required columns exist; every column has the contract's type;
    no nulls or empty strings where not allowed; unique `question_id`, unique `(question_id, model)`, unique
    `model`; `split` values in `SPLITS`; scores in [0, 1] (no NaN); outcomes only for known questions and models;
    a complete outcome matrix (every model has one outcome per question); `cost_usd` all-or-none and >= 0; at
    least `min_models` models; `models.parquet` `n_questions` and `accuracy` agree with the outcomes.

    Args:
        zoo: directory path, or a zoo name under the data root (`modelsat.paths.resolve_routing_data_dir`).
        min_models: fewest models allowed (routing needs 2; an import may build a zoo one model at a time).
        check_summary: check `models.parquet` `n_questions` and `accuracy` (an import recomputes them).
    Returns:
        The problems, in file order; each names the file, the column and the bad values with examples.
    """
    path = resolve_routing_data_dir(zoo)
    if not path.is_dir():
        return [Problem("", str(missing_routing_data_error(zoo)))]
    problems: list[Problem] = []
    qf = _read(path / "questions.parquet", problems)
    of = _read(path / "outcomes.parquet", problems)
    mf = _read(path / "models.parquet", problems)
    q, o, m = (None if f is None else f[1] for f in (qf, of, mf))

    qids: list[str] | None = None
    if q is not None:
        if "question_id" in q:
            qids = [x for x in q["question_id"].to_pylist() if x]
            dup = _duplicates(qids)
            if dup:
                problems.append(
                    Problem("questions.parquet", f"duplicated question_id: {len(dup)} ids ({_examples(dup)})")
                )
        if qf is not None and qf[0] == 0:
            problems.append(Problem("questions.parquet", "has no questions"))
        if "split" in q:
            bad = sorted({s for s in q["split"].to_pylist() if s is not None and s not in SPLITS})
            if bad:
                problems.append(
                    Problem(
                        "questions.parquet",
                        f"column 'split' has values {_examples(bad)}; allowed: {', '.join(SPLITS)}",
                    )
                )

    models: list[str] | None = None
    if m is not None and "model" in m:
        models = [x for x in m["model"].to_pylist() if x]
        dup = _duplicates(models)
        if dup:
            problems.append(Problem("models.parquet", f"duplicated model: {_examples(dup)}"))
        if len(set(models)) < min_models:
            problems.append(
                Problem(
                    "models.parquet",
                    f"{len(set(models))} model(s) ({', '.join(models) or 'none'}); routing needs at least "
                    f"{min_models}: import more models",
                )
            )

    if o is not None and "question_id" in o and "model" in o:
        _check_outcomes(o, qids, models, m if check_summary else None, problems)
    return problems


def _check_outcomes(
    o: dict[str, pa.ChunkedArray],
    qids: list[str] | None,
    models: list[str] | None,
    m: dict[str, pa.ChunkedArray] | None,
    problems: list[Problem],
) -> None:
    """Outcome-level checks: scores, duplicates, unknown ids, matrix completeness, costs, models.parquet columns."""
    name = "outcomes.parquet"
    oq = o["question_id"].to_pylist()
    om = o["model"].to_pylist()
    scores = None
    if "score" in o:
        scores = pc.cast(o["score"], pa.float64()).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~((scores >= 0.0) & (scores <= 1.0)))  # also NaN / null
        if len(bad):
            ex = [f"{float(scores[i])!r} for ({oq[i]!r}, {om[i]!r})" for i in bad[:_EXAMPLES]]
            problems.append(
                Problem(
                    name,
                    f"column 'score' is outside [0, 1] or missing in {len(bad)} rows "
                    f"({'; '.join(ex)}); allowed: a number in [0, 1]",
                )
            )
    pairs = list(zip(oq, om, strict=True))
    dup = _duplicates(pairs)
    if dup:
        problems.append(
            Problem(name, f"duplicated (question_id, model): {len(dup)} pairs ({_examples(dup)})")
        )
    if qids is not None:
        known = set(qids)
        unknown = sorted({x for x in oq if x not in known and x is not None})
        if unknown:
            problems.append(
                Problem(
                    name, f"{len(unknown)} question_ids are not in questions.parquet ({_examples(unknown)})"
                )
            )
    if models is not None:
        unknown_m = sorted({x for x in om if x not in set(models) and x is not None})
        if unknown_m:
            problems.append(
                Problem(
                    name,
                    f"models {_examples(unknown_m)} are not listed in models.parquet (listed: {', '.join(models)})",
                )
            )
    if qids is not None and models is not None:
        have: dict[str, set[str]] = {mm: set() for mm in models}
        for qid, mm in pairs:
            if mm in have:
                have[mm].add(qid)
        for mm in models:
            missing = [x for x in qids if x not in have[mm]]
            if missing:
                problems.append(
                    Problem(
                        name,
                        f"model {mm!r} is missing outcomes for {len(missing)} of {len(qids)} questions "
                        f"({_examples(missing)}); every model needs one outcome per question",
                    )
                )
    if "cost_usd" in o and 0 < o["cost_usd"].null_count < len(oq):
        problems.append(
            Problem(
                name,
                f"column 'cost_usd' is null in {o['cost_usd'].null_count} of {len(oq)} rows; give all or none",
            )
        )
    if "cost_usd" in o:
        costs = pc.cast(o["cost_usd"], pa.float64()).to_numpy(zero_copy_only=False)
        neg = int(np.sum(costs < 0))
        if neg:
            problems.append(Problem(name, f"column 'cost_usd' is negative in {neg} rows; allowed: >= 0"))
    if m is None or models is None or scores is None:
        return
    _check_models_columns(m, models, om, scores, problems)


def _check_models_columns(
    m: dict[str, pa.ChunkedArray], models: list[str], om: list, scores: np.ndarray, problems: list[Problem]
) -> None:
    """models.parquet `n_questions` and `accuracy` against the outcomes."""
    per_model: dict[str, list[float]] = {mm: [] for mm in models}
    for mm, s in zip(om, scores.tolist(), strict=True):
        if mm in per_model:
            per_model[mm].append(s)
    rows = m["model"].to_pylist()
    if "n_questions" in m:
        for mm, n in zip(rows, m["n_questions"].to_pylist(), strict=True):
            if mm in per_model and n is not None and n != len(per_model[mm]):
                problems.append(
                    Problem(
                        "models.parquet",
                        f"model {mm!r}: n_questions is {n} but outcomes.parquet has {len(per_model[mm])} outcomes",
                    )
                )
    if "accuracy" in m:
        for mm, acc in zip(rows, m["accuracy"].to_pylist(), strict=True):
            vals = per_model.get(mm)
            if not vals or acc is None:
                continue
            mean = float(np.mean(vals))
            if abs(mean - acc) > _ACCURACY_TOLERANCE:
                problems.append(
                    Problem(
                        "models.parquet",
                        f"model {mm!r}: accuracy is {acc:.6f} but the mean score in outcomes.parquet is {mean:.6f}",
                    )
                )
