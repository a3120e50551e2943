"""Aptitude items on live models: prompts, answer extraction and grading.

A live candidate model (vLLM, an OpenAI-compatible endpoint) answers each aptitude item from the text the
router checkpoint stores for it. The prompt follows the benchmark's format: the instruction exactly as in
the routing data (question, then one `A. ...` line per option for multiple choice), followed by a clear answer
instruction in MMLU-Pro's style (`The answer is (X)`; MMLU-Pro `evaluate_from_api.py`, Wang et al. 2024).

Grading kinds:

| kind | when | extraction (first rule that matches wins) | correct iff |
|---|---|---|---|
| `choice` | reference is one letter and the instruction has lettered option lines | `answer is (C)` / `answer is C` (last one), `Answer: C`, a bare letter, `\\boxed{C}` | letter == reference |
| `number` | the reference contains a number | `answer is N` (last one), `Answer: N`, `\\boxed{N}`, else the last number in the response | first number of the reference == N (ZeroEval's first-number rule; `3/4` = 0.75, commas and `$` ignored) |

Anything else (no reference, code, free text) cannot be graded: live engines refuse such items before any
generation (recorded outcomes need no grading). A response with no extractable answer is wrong and counted.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from modelsat.aptitude import AptitudeTest
from modelsat.data import RoutingData
from modelsat.errors import DataError

__all__ = [
    "GRADING_KINDS",
    "AptitudeItem",
    "Graded",
    "extract_answer",
    "format_prompt",
    "grade_response",
    "check_gradable",
    "grading_kind",
    "items_from_routing_data",
]

GRADING_KINDS = ("choice", "number")

_OPTION_LINE = re.compile(r"^([A-Z])\. ", re.MULTILINE)
_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?|-?\$?\.\d+"
_CHOICE_RULES = (
    re.compile(r"answer is:?\s*\(?\s*\**\s*([A-Z])\b", re.IGNORECASE),
    re.compile(r"answer\s*:\s*\**\s*\(?\s*([A-Z])\b", re.IGNORECASE),
    re.compile(r"^\s*\(?\s*([A-Z])\s*\)?\s*[.:)]?\s*$"),
    re.compile(r"\\boxed\{\s*\(?([A-Z])\)?\s*\}"),
)
_NUMBER_RULES = (
    re.compile(rf"answer is:?\s*\**\s*({_NUMBER})", re.IGNORECASE),
    re.compile(rf"answer\s*:\s*\**\s*({_NUMBER})", re.IGNORECASE),
    re.compile(rf"\\boxed\{{\s*({_NUMBER})\s*\}}"),
)
_ANY_NUMBER = re.compile(_NUMBER)

_INSTRUCTIONS = {
    "choice": (
        "Answer the multiple-choice question above. Think step by step if it helps, then finish with "
        '"The answer is (X)" where X is the letter of the correct option.'
    ),
    "number": (
        "Solve the problem above. Think step by step if it helps, then finish with "
        '"The answer is N" where N is the final number only.'
    ),
}


@dataclass(frozen=True)
class AptitudeItem:
    """One aptitude item as a live model sees it.

    Attributes:
        question_id: the routing data's question id.
        task: the aptitude task it belongs to.
        benchmark: source benchmark (e.g. `mmlu_pro`, `gsm8k`).
        prompt: the instruction text, exactly as in the routing data.
        reference: gold answer (option letter, number, answer string) or None when the source has none.
    """

    question_id: str
    task: str
    benchmark: str
    prompt: str
    reference: str | None

    def to_dict(self) -> dict:
        return {
            "question_id": self.question_id,
            "task": self.task,
            "benchmark": self.benchmark,
            "prompt": self.prompt,
            "reference": self.reference,
        }

    @classmethod
    def from_dict(cls, d: dict) -> AptitudeItem:
        return cls(
            question_id=str(d["question_id"]),
            task=str(d["task"]),
            benchmark=str(d["benchmark"]),
            prompt=str(d["prompt"]),
            reference=None if d.get("reference") is None else str(d["reference"]),
        )


@dataclass(frozen=True)
class Graded:
    """A graded response.

    Attributes:
        score: 1.0 correct, 0.0 wrong (also when nothing could be extracted).
        answer: the extracted answer (a letter or the number's text), None when none was found.
    """

    score: float
    answer: str | None

    @property
    def parsed(self) -> bool:
        return self.answer is not None


def _options(prompt: str) -> list[str]:
    """Letters of the option lines (`A. ...`) at the end of a multiple-choice instruction."""
    return _OPTION_LINE.findall(prompt)


def _to_float(text: str) -> float | None:
    t = text.replace("$", "").replace(",", "").replace(" ", "")
    try:
        if "/" in t:
            num, den = t.split("/", 1)
            return float(num) / float(den) if float(den) != 0 else None
        return float(t)
    except ValueError:
        return None


def grading_kind(item: AptitudeItem) -> str | None:
    """`choice`, `number`, or None when the item cannot be graded automatically (see the module table)."""
    ref = (item.reference or "").strip()
    if not ref:
        return None
    if re.fullmatch(r"[A-Z]", ref) and ref in _options(item.prompt):
        return "choice"
    m = _ANY_NUMBER.search(ref)
    if m and _to_float(m.group(0)) is not None:
        return "number"
    return None


def check_gradable(items: list[AptitudeItem]) -> dict[str, str]:
    """Grading kind per item.

    Returns:
        question id -> kind.
    Raises:
        DataError: naming how many items cannot be graded, with examples and the reason (nothing is run).
    """
    kinds = {it.question_id: grading_kind(it) for it in items}
    bad = [it for it in items if kinds[it.question_id] is None]
    if bad:
        examples = ", ".join(f"{it.question_id!r} (reference {it.reference!r})" for it in bad[:3])
        raise DataError(
            f"{len(bad)} of {len(items)} aptitude items cannot be graded on a live model, e.g. {examples}: "
            f"gradable kinds are {', '.join(GRADING_KINDS)} (a letter reference with lettered options, or a "
            "numeric reference). Use --engine recorded for such zoos, or a router trained on gradable items."
        )
    return {q: k for q, k in kinds.items() if k is not None}


def format_prompt(item: AptitudeItem, kind: str) -> str:
    """The user message a live model receives: the instruction, a blank line, the answer instruction.

    Raises:
        ValueError: unknown kind (allowed: `GRADING_KINDS`).
    """
    if kind not in _INSTRUCTIONS:
        raise ValueError(f"grading kind {kind!r}; allowed: {', '.join(GRADING_KINDS)}")
    return f"{item.prompt.rstrip()}\n\n{_INSTRUCTIONS[kind]}"


def extract_answer(response: str, kind: str, letters: str | list[str] | None = None) -> str | None:
    """The answer in a model's response, by the rules of the module table.

    Args:
        response: generated text.
        kind: `choice` or `number`.
        letters: allowed option letters for `choice` (default A–Z).
    Returns:
        The letter, the number's text, or None when nothing could be extracted.
    """
    text = response or ""
    if kind == "choice":
        allowed = set(letters) if letters else None
        for rule in _CHOICE_RULES:
            found = [m.upper() for m in rule.findall(text) if allowed is None or m.upper() in allowed]
            if found:
                return found[-1]
        return None
    if kind == "number":
        for rule in _NUMBER_RULES:
            found = [m for m in rule.findall(text) if _to_float(m) is not None]
            if found:
                return found[-1].strip()
        found = [m for m in _ANY_NUMBER.findall(text) if _to_float(m) is not None]
        return found[-1].strip() if found else None
    raise ValueError(f"grading kind {kind!r}; allowed: {', '.join(GRADING_KINDS)}")


def grade_response(item: AptitudeItem, kind: str, response: str) -> Graded:
    """Grade one response against the item's reference (rules in the module table)."""
    if kind == "choice":
        answer = extract_answer(response, kind, _options(item.prompt))
        ref = (item.reference or "").strip()
        return Graded(float(answer is not None and answer == ref), answer)
    answer = extract_answer(response, kind)
    ref_num = _ANY_NUMBER.search(item.reference or "")
    gold = _to_float(ref_num.group(0)) if ref_num else None
    got = _to_float(answer) if answer is not None else None
    ok = gold is not None and got is not None and math.isclose(got, gold, rel_tol=1e-6, abs_tol=1e-9)
    return Graded(float(ok), answer)


def items_from_routing_data(test: AptitudeTest, zoo: RoutingData) -> list[AptitudeItem]:
    """The aptitude items' text and gold answers from the zoo the test was drawn from, task by task.

    Raises:
        DataError: the zoo lacks some items (names one; e.g. it is not the checkpoint's zoo).
    """
    rows = zoo.index_of_questions(test.question_ids)
    task_of = {q: t.name for t in test.tasks for q in t.question_ids}
    return [
        AptitudeItem(
            question_id=str(zoo.question_ids[r]),
            task=task_of[str(zoo.question_ids[r])],
            benchmark=str(zoo.benchmarks[r]),
            prompt=str(zoo.prompts[r]),
            reference=None if zoo.references[r] is None else str(zoo.references[r]),
        )
        for r in rows.tolist()
    ]
