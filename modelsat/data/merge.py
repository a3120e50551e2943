"""Building and extending routing data directories: per-model outcome sets, merging with checks, atomic writes.

Every importer (`modelsat.data.lmeval`, `modelsat.data.mmlu_pro`) turns its source into one `ModelOutcomes` per
candidate model; `import_outcomes` merges them with the zoo already at `--out` (if any) and writes the result in one
rename. Merging keeps only questions that every model has, whose gold answer agrees between sources and whose text
agrees up to whitespace; every dropped question is counted under one reason (`MergeReport`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from modelsat.data.schema import fold_whitespace
from modelsat.errors import DataError

__all__ = [
    "DOC_DIFFERS",
    "GOLD_DIFFERS",
    "MISSING",
    "TEXT_DIFFERS",
    "MergeReport",
    "ModelOutcomes",
    "Outcome",
    "QuestionRecord",
    "merge_outcomes",
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
        notes: other changes made while merging (e.g. costs dropped because some models have none).
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
    notes: list[str] = field(default_factory=list)

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
        out += [f"note: {n}" for n in self.notes]
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


def _without_cost(s: ModelOutcomes) -> ModelOutcomes:
    outcomes = {q: Outcome(o.score, o.response_tail, None) for q, o in s.outcomes.items()}
    return ModelOutcomes(s.model, s.source, s.questions, outcomes, s.dropped, s.info)


def merge_outcomes(
    new: list[ModelOutcomes],
    existing: list[ModelOutcomes] | None = None,
    replace: bool = False,
    where: str = "the zoo",
) -> tuple[list[QuestionRecord], list[ModelOutcomes], MergeReport]:
    """Merge imported models with an existing zoo's models; keep the questions every model has and agrees on.

    Args:
        new: imported models (one set per model; a model may appear once).
        existing: the existing zoo's models (`modelsat.data.writer.read_routing_data_outcomes`), or None for a new zoo.
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
    notes = []
    qids = [r.question_id for r in kept]
    with_cost = [s.model for s in sets if all(s.outcomes[q].cost_usd is not None for q in qids)]
    if with_cost and len(with_cost) < len(sets):
        notes.append(
            f"cost_usd dropped: no cost for {', '.join(s.model for s in sets if s.model not in with_cost)} "
            "(a zoo has costs for every outcome or for none)"
        )
        sets = [_without_cost(s) for s in sets]
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
        notes=notes,
    )
    return kept, sets, report
