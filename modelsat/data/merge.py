"""Building and extending zoo directories: per-model outcome sets, merging with checks, atomic writes.

Every importer (`modelsat.data.lmeval`, `modelsat.data.mmlu_pro`) turns its source into one `ModelOutcomes` per
candidate model; `import_outcomes` merges them with the zoo already at `--out` (if any) and writes the result in one
rename. Merging keeps only questions that every model has, whose gold answer agrees between sources and whose text
agrees up to whitespace; every dropped question is counted under one reason (`MergeReport`).
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from modelsat.data.schema import FILES, arrow_schema, fold_whitespace
from modelsat.data.validate import validate_zoo
from modelsat.errors import DataError
from modelsat.paths import atomic_output_dir

__all__ = [
    "DOC_DIFFERS",
    "GOLD_DIFFERS",
    "MISSING",
    "TEXT_DIFFERS",
    "MergeReport",
    "ModelOutcomes",
    "Outcome",
    "QuestionRecord",
    "import_outcomes",
    "merge_outcomes",
    "read_zoo_outcomes",
    "write_zoo",
]

MISSING = "missing for some model"
GOLD_DIFFERS = "gold answer differs between sources"
TEXT_DIFFERS = "question text differs between sources"
DOC_DIFFERS = "source document differs between sources (lm-eval doc_hash)"
_EXAMPLES = 3


@dataclass(frozen=True)
class QuestionRecord:
    """One question as one source presents it (a row of questions.parquet, plus a source fingerprint).

    Attributes:
        question_id, benchmark, task, prompt, reference, category, split: as in the schema.
        fingerprint: the source's own identity of the item (lm-eval `doc_hash`), compared between sources that
            give one; None otherwise.
    """

    question_id: str
    benchmark: str
    task: str
    prompt: str
    reference: str | None
    category: str | None = None
    split: str = "train"
    fingerprint: str | None = None


@dataclass(frozen=True)
class Outcome:
    """One model's outcome on one question: score in [0, 1], the response's last 400 characters, cost in USD."""

    score: float
    response_tail: str | None = None
    cost_usd: float | None = None


@dataclass
class ModelOutcomes:
    """One candidate model's outcomes from one source.

    Attributes:
        model: candidate model name.
        source: where the outcomes come from (models.parquet `source_repo`).
        questions: question_id -> the question as this source gives it (insertion order = source order).
        outcomes: question_id -> outcome (same keys as `questions`).
        dropped: reason -> questions the reader dropped inside this source (e.g. conflicting duplicates).
        info: optional models.parquet values (`params_b`, `price_per_mtok`).
    """

    model: str
    source: str
    questions: dict[str, QuestionRecord]
    outcomes: dict[str, Outcome]
    dropped: Counter[str] = field(default_factory=Counter)
    info: dict[str, float | None] = field(default_factory=dict)


@dataclass
class MergeReport:
    """What a merge kept and dropped, and why.

    Attributes:
        models: the zoo's models after the merge, in order. added / replaced: the imported models, split by whether
            they replaced a model of the existing zoo.
        n_questions: questions kept. n_before: questions of the existing zoo (0 for a new zoo).
        n_candidates: distinct question ids over all sources.
        dropped: reason -> questions dropped (each question counted once, under its first failing check:
            missing, then gold, then document, then text).
        missing_by_model: model -> candidate questions it has no outcome for.
        examples: reason -> a few dropped question ids (with the differing values for gold/text).
        source_dropped: model -> reason -> questions its reader dropped inside the source.
    """

    models: list[str]
    added: list[str]
    replaced: list[str]
    n_questions: int
    n_before: int
    n_candidates: int
    dropped: Counter[str]
    missing_by_model: dict[str, int]
    examples: dict[str, list[str]]
    source_dropped: dict[str, Counter[str]]

    def lines(self) -> list[str]:
        """Human-readable summary lines (what the CLI prints)."""
        out = [
            f"zoo: {self.n_questions:,} questions × {len(self.models)} models "
            f"(added {', '.join(self.added) or 'none'}"
            + (f"; replaced {', '.join(self.replaced)}" if self.replaced else "")
            + (f"; the existing zoo had {self.n_before:,} questions" if self.n_before else "")
            + ")"
        ]
        total = sum(self.dropped.values())
        out.append(f"dropped {total:,} of {self.n_candidates:,} candidate questions" + (":" if total else ""))
        for reason, n in self.dropped.most_common():
            detail = ""
            if reason == MISSING:
                worst = sorted(self.missing_by_model.items(), key=lambda kv: -kv[1])[:_EXAMPLES]
                detail = " (" + ", ".join(f"{m} lacks {k:,}" for m, k in worst if k) + ")"
            ex = "; ".join(self.examples.get(reason, []))
            out.append(f"  {n:,} {reason}{detail}" + (f", e.g. {ex}" if ex else ""))
        for model, reasons in self.source_dropped.items():
            for reason, n in reasons.most_common():
                out.append(f"  {model}: {n:,} records dropped in the source: {reason}")
        if len(self.models) < 2:
            out.append(
                f"note: the zoo has {len(self.models)} model; routing needs at least 2 (import more models)"
            )
        return out


def _pick_record(records: list[QuestionRecord], existing: QuestionRecord | None) -> QuestionRecord:
    """The existing zoo's record if any, else the most common exact text among sources (ties: first)."""
    if existing is not None:
        return existing
    counts = Counter(r.prompt for r in records)
    top = max(counts.values())
    return next(r for r in records if counts[r.prompt] == top)


def merge_outcomes(
    new: list[ModelOutcomes],
    existing: list[ModelOutcomes] | None = None,
    replace: bool = False,
    where: str = "the zoo",
) -> tuple[list[QuestionRecord], list[ModelOutcomes], MergeReport]:
    """Merge imported models with an existing zoo's models; keep the questions every model has and agrees on.

    Args:
        new: imported models (one set per model; a model may appear once).
        existing: the existing zoo's models (`read_zoo_outcomes`), or None for a new zoo.
        replace: replace existing models of the same name (else that is an error).
        where: how to name the existing zoo in messages (its path).
    Returns:
        (kept questions in order: existing zoo order, then first-seen order of the imports; the model sets in
        zoo order: existing models, a replaced one in its old place, then new ones; the report).
    Raises:
        DataError: a model imported twice; a model already in the zoo without `replace`; no question left.
    """
    existing = existing or []
    seen: dict[str, str] = {}
    for s in new:
        if s.model in seen:
            raise DataError(
                f"model {s.model!r} is imported twice (from {seen[s.model]} and {s.source}); give each model once"
            )
        seen[s.model] = s.source
    old_names = [s.model for s in existing]
    clash = [s.model for s in new if s.model in old_names]
    if clash and not replace:
        raise DataError(
            f"model {clash[0]!r} is already in {where} (models: {', '.join(old_names)}); "
            "pass --replace to replace it"
        )
    by_name = {s.model: s for s in new}
    sets = [by_name.pop(s.model, s) for s in existing] + list(by_name.values())
    existing_q: dict[str, QuestionRecord] = {}
    for s in existing:
        if s.model not in seen:
            for qid, rec in s.questions.items():
                existing_q.setdefault(qid, rec)
    n_before = len(existing[0].questions) if existing else 0

    order: dict[str, None] = dict.fromkeys(existing_q)
    for s in sets:
        order.update(dict.fromkeys(s.questions))
    dropped: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    missing_by_model = {s.model: 0 for s in sets}
    kept: list[QuestionRecord] = []

    def drop(reason: str, example: str) -> None:
        dropped[reason] += 1
        if len(examples.setdefault(reason, [])) < _EXAMPLES:
            examples[reason].append(example)

    for qid in order:
        lacking = [s.model for s in sets if qid not in s.questions]
        if lacking:
            for mname in lacking:
                missing_by_model[mname] += 1
            drop(MISSING, f"{qid} (not in {lacking[0]})")
            continue
        records = [s.questions[qid] for s in sets]
        golds = {r.reference.strip() for r in records if r.reference is not None and r.reference.strip()}
        if len(golds) > 1:
            drop(GOLD_DIFFERS, f"{qid} ({' vs '.join(sorted(map(repr, golds)))})")
            continue
        prints = {r.fingerprint for r in records if r.fingerprint is not None}
        if len(prints) > 1:
            drop(DOC_DIFFERS, qid)
            continue
        if len({fold_whitespace(r.prompt) for r in records}) > 1:
            drop(TEXT_DIFFERS, qid)
            continue
        kept.append(_pick_record(records, existing_q.get(qid)))
    if not kept:
        raise DataError(
            f"no question is shared by every model ({', '.join(s.model for s in sets)}) with the same gold answer "
            f"and text: {dict(dropped)}; import logs of the same tasks for every model"
        )
    report = MergeReport(
        models=[s.model for s in sets],
        added=[s.model for s in new if s.model not in old_names],
        replaced=[s.model for s in new if s.model in old_names],
        n_questions=len(kept),
        n_before=n_before,
        n_candidates=len(order),
        dropped=dropped,
        missing_by_model=missing_by_model,
        examples=examples,
        source_dropped={s.model: s.dropped for s in new if s.dropped},
    )
    return kept, sets, report


def write_zoo(out: str | Path, questions: list[QuestionRecord], sets: list[ModelOutcomes]) -> Path:
    """Write a zoo directory atomically (a temporary sibling renamed over `out`; `out` unchanged on failure).

    Files other than the three zoo files already in `out` are carried over.

    Args:
        out: the zoo directory.
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


def read_zoo_outcomes(path: str | Path) -> list[ModelOutcomes]:
    """An existing zoo directory as one `ModelOutcomes` per model (empty list when `path` is absent or empty).

    Raises:
        DataError: `path` holds files but is not a zoo directory, or the zoo fails `validate_zoo` (a zoo of one
            model is accepted: imports may build a zoo one model at a time).
    """
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return []
    if not path.is_dir() or not any((path / f).exists() for f in FILES):
        raise DataError(
            f"--out {str(path)!r} exists and is not a zoo directory (no {', '.join(FILES)}); "
            "give a new or empty directory, or an existing zoo to extend"
        )
    problems = validate_zoo(path, min_models=1)
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
        out: zoo directory to build or extend.
        replace: replace models already in the zoo.
    Returns:
        The merge report (kept and dropped questions, per reason).
    Raises:
        DataError: see `merge_outcomes` and `read_zoo_outcomes`; nothing is written then.
    """
    if not new:
        raise DataError("nothing to import: no model outcomes were read")
    existing = read_zoo_outcomes(out)
    questions, sets, report = merge_outcomes(new, existing, replace, where=str(out))
    write_zoo(out, questions, sets)
    return report
