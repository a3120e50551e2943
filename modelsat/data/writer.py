"""Reading and writing routing data directories for imports: atomic writes, extending an existing zoo.

`import_outcomes` is what every importer ends with: read the zoo already at `--out` (if any), merge
(`modelsat.data.merge`), and write the result to a temporary sibling directory renamed into place, so a failed
import leaves an existing zoo byte-for-byte unchanged.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelsat.data.merge import MergeReport, ModelOutcomes, Outcome, QuestionRecord, merge_outcomes
from modelsat.data.schema import FILES, arrow_schema
from modelsat.data.validate import validate_routing_data
from modelsat.errors import DataError
from modelsat.paths import atomic_output_dir

__all__ = ["import_outcomes", "read_routing_data_outcomes", "write_routing_data"]


def write_routing_data(out: str | Path, questions: list[QuestionRecord], sets: list[ModelOutcomes]) -> Path:
    """Write a routing data directory atomically (a temporary sibling renamed over `out`; `out` unchanged on failure).

    Files other than the three zoo files already in `out` are carried over.

    Args:
        out: the routing data directory.
        questions: the zoo's questions, in order; every set in `sets` has an outcome for each.
        sets: the models, in order.
    Returns:
        `out` as a Path.
    """
    out = Path(out)
    qids = [r.question_id for r in questions]
    q_rows = [
        {
            "question_id": r.question_id,
            "benchmark": r.benchmark,
            "task": r.task,
            "category": r.category,
            "prompt": r.prompt,
            "reference": r.reference,
            "split": r.split,
        }
        for r in questions
    ]
    o_rows, m_rows = [], []
    for s in sets:
        got = [s.outcomes[q] for q in qids]
        o_rows += [
            {
                "question_id": q,
                "model": s.model,
                "score": o.score,
                "response_tail": o.response_tail,
                "cost_usd": o.cost_usd,
            }
            for q, o in zip(qids, got, strict=True)
        ]
        costs = [o.cost_usd for o in got]
        m_rows.append(
            {
                "model": s.model,
                "n_questions": len(qids),
                "accuracy": float(
                    np.mean(np.array([o.score for o in got], dtype=np.float32), dtype=np.float64)
                ),
                "source_repo": s.source,
                "params_b": s.info.get("params_b"),
                "price_per_mtok": s.info.get("price_per_mtok"),
                "mean_cost_usd": None if any(c is None for c in costs) else float(np.mean(costs)),
            }
        )
    tables = {
        "questions.parquet": q_rows,
        "outcomes.parquet": o_rows,
        "models.parquet": m_rows,
    }
    extras = [p for p in out.iterdir() if p.name not in FILES] if out.is_dir() else []
    with atomic_output_dir(out) as tmp:
        for name, rows in tables.items():
            pq.write_table(
                pa.Table.from_pylist(rows, schema=arrow_schema(name)), tmp / name, compression="zstd"
            )
        for p in extras:
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp / p.name)
    return out


def read_routing_data_outcomes(path: str | Path) -> list[ModelOutcomes]:
    """An existing routing data directory as one `ModelOutcomes` per model (empty list when `path` is absent or empty).

    Raises:
        DataError: `path` holds files but is not a routing data directory, or the zoo fails `validate_routing_data` (a zoo of one
            model is accepted: imports may build a zoo one model at a time; stale `n_questions` / `accuracy` in
            models.parquet are too, since the import rewrites them).
    """
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return []
    if not path.is_dir() or not any((path / f).exists() for f in FILES):
        raise DataError(
            f"--out {str(path)!r} exists and is not a routing data directory (no {', '.join(FILES)}); "
            "give a new or empty directory, or an existing zoo to extend"
        )
    problems = validate_routing_data(
        path, min_models=1, check_summary=False
    )  # n_questions, accuracy are rewritten
    if problems:
        raise DataError(
            f"the existing zoo {str(path)!r} is invalid ({len(problems)} problems, first: {problems[0]}); "
            f"see `modelsat data validate {path}`"
        )
    q = pq.read_table(path / "questions.parquet").to_pylist()
    questions = {
        r["question_id"]: QuestionRecord(
            question_id=r["question_id"],
            benchmark=r["benchmark"],
            task=r["task"],
            prompt=r["prompt"],
            reference=r.get("reference"),
            category=r.get("category"),
            split=r.get("split") or "train",
        )
        for r in q
    }
    m = pq.read_table(path / "models.parquet").to_pylist()
    sets = {
        r["model"]: ModelOutcomes(
            model=r["model"],
            source=r.get("source_repo") or str(path),
            questions=questions,
            outcomes={},
            info={k: r.get(k) for k in ("params_b", "price_per_mtok") if r.get(k) is not None},
        )
        for r in m
    }
    for r in pq.read_table(path / "outcomes.parquet").to_pylist():
        sets[r["model"]].outcomes[r["question_id"]] = Outcome(
            score=float(r["score"]), response_tail=r.get("response_tail"), cost_usd=r.get("cost_usd")
        )
    return list(sets.values())


def import_outcomes(new: list[ModelOutcomes], out: str | Path, replace: bool = False) -> MergeReport:
    """Merge imported models into the zoo at `out` (created if absent) and write it atomically.

    Args:
        new: the imported models.
        out: routing data directory to build or extend.
        replace: replace models already in the zoo.
    Returns:
        The merge report (kept and dropped questions, per reason).
    Raises:
        DataError: see `merge_outcomes` and `read_routing_data_outcomes`; nothing is written then.
    """
    if not new:
        raise DataError("nothing to import: no model outcomes were read")
    existing = read_routing_data_outcomes(out)
    questions, sets, report = merge_outcomes(new, existing, replace, where=str(out))
    write_routing_data(out, questions, sets)
    return report
