"""The instruction and gold answer of an lm-evaluation-harness document (`doc` of a `--log_samples` line).

lm-eval logs the task's dataset row as `doc` and the rendered gold as `target` (a string; for multiple-choice tasks
usually the gold option's index). Task YAMLs render prompts with few-shot templates; here the instruction is
rebuilt from the document alone, in the shared format: the question, then one `A. ...` line per option.

Document families recognised (field names as in the harness's task datasets):

- options as a list: `choices` (MMLU, ...), `options` (MMLU-Pro; "N/A" padding dropped), `endings` (HellaSwag);
- options as `{text: [...], label: [...]}` (ARC, OpenBookQA, CommonsenseQA), or `mc1_targets` (TruthfulQA);
- two options as `option1`/`option2` (Winogrande, gold `answer` "1"/"2") or `sol1`/`sol2` (PIQA, gold `label`);
- four options as `choice1`..`choice4` (GPQA);
- generative tasks: the question text alone, reference = the target (after `####` for GSM8K-style answers).

The question text is the first of `QUESTION_FIELDS` present, or the field the user names.
"""

from __future__ import annotations

import re
from typing import Any

from modelsat.data.schema import LETTERS, render_multiple_choice
from modelsat.errors import DataError

QUESTION_FIELDS = (
    "question",
    "question_stem",
    "query",
    "goal",
    "sentence",
    "Question",
    "problem",
    "ctx",
    "prompt",
    "text",
    "input",
    "instruction",
)
"""Document fields tried, in order, for the question text."""


def _options(doc: dict[str, Any]) -> tuple[list[str], list[str] | None, str | None]:
    """(options, their source labels or None, family) of a multiple-choice document; ([], None, None) if none."""
    for key in ("choices", "options", "endings"):
        v = doc.get(key)
        if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
            opts = list(v)
            while key == "options" and opts and opts[-1] == "N/A":  # MMLU-Pro pads options with "N/A"
                opts.pop()
            return opts, None, key
        if isinstance(v, dict) and isinstance(v.get("text"), list):
            labels = v.get("label")
            return (
                [str(x) for x in v["text"]],
                [str(x) for x in labels] if isinstance(labels, list) else None,
                key,
            )
    mc = doc.get("mc1_targets")
    if isinstance(mc, dict) and isinstance(mc.get("choices"), list):
        return [str(x) for x in mc["choices"]], None, "mc1_targets"
    if isinstance(doc.get("option1"), str) and isinstance(doc.get("option2"), str):
        return [doc["option1"], doc["option2"]], None, "option1"
    if isinstance(doc.get("sol1"), str) and isinstance(doc.get("sol2"), str):
        return [doc["sol1"], doc["sol2"]], None, "sol1"
    if all(isinstance(doc.get(f"choice{i}"), str) for i in range(1, 5)):
        return [doc[f"choice{i}"] for i in range(1, 5)], None, "choice1"
    return [], None, None


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return None


def _letter_index(v: Any) -> int | None:
    if isinstance(v, str):
        m = re.fullmatch(r"\(?([A-Z])\)?", v.strip())
        if m:
            return LETTERS.index(m.group(1))
    return None


def _gold_index(
    doc: dict[str, Any], options: list[str], labels: list[str] | None, family: str, target: str
) -> int:
    """Index of the gold option, from the document's answer field, else from `target`."""
    if family == "option1":  # Winogrande: answer is "1" or "2"
        i = _as_int(doc.get("answer"))
        return i - 1 if i is not None else -1
    if family == "mc1_targets":
        flags = doc["mc1_targets"].get("labels") or []
        return flags.index(1) if 1 in flags else -1
    if "answerKey" in doc:
        key = str(doc["answerKey"]).strip()
        if labels and key in labels:
            return labels.index(key)
        i = _letter_index(key)
        if i is not None:
            return i
    for key in ("answer_index", "gold", "label"):
        i = _as_int(doc.get(key))
        if i is not None:
            return i
    if "answer" in doc:
        i = _as_int(doc["answer"])
        if i is None:
            i = _letter_index(doc["answer"])
        if i is not None:
            return i
    t = target.strip()
    i = _as_int(t)
    if i is None:
        i = _letter_index(t)
    if i is None and t in [o.strip() for o in options]:
        i = [o.strip() for o in options].index(t)
    return -1 if i is None else i


def _generative_reference(target: str) -> str | None:
    t = target.strip()
    if "####" in t:  # GSM8K-style solutions end with "#### <final answer>"
        t = t.rsplit("####", 1)[1].strip()
    return t or None


def render_doc(
    task: str, doc: dict[str, Any], target: str, prompt_field: str | None
) -> tuple[str, str | None]:
    """The instruction text and gold answer of one lm-eval document.

    Args:
        task: the lm-eval task name (for messages).
        doc: the logged document.
        target: the logged `target` (a string).
        prompt_field: the document field holding the question text, or None to try `QUESTION_FIELDS`.
    Returns:
        (prompt, reference): multiple choice → question + `A. ...` lines and the gold letter; otherwise the question
        text and the target (None if empty).
    Raises:
        DataError: no question field (naming the task and the fields found); a gold option that cannot be
            determined or is out of range.
    """
    if not isinstance(doc, dict):
        raise DataError(f"task {task!r}: 'doc' is a {type(doc).__name__}, expected an object of fields")
    if prompt_field is not None:
        if not isinstance(doc.get(prompt_field), str):
            raise DataError(
                f"task {task!r}: --prompt-field {prompt_field!r} is not a text field of the documents; "
                f"text fields found: {', '.join(k for k, v in doc.items() if isinstance(v, str)) or 'none'}"
            )
        question = doc[prompt_field]
    else:
        key = next((k for k in QUESTION_FIELDS if isinstance(doc.get(k), str) and doc[k].strip()), None)
        if key is None:
            raise DataError(
                f"task {task!r}: cannot tell which document field holds the question (tried "
                f"{', '.join(QUESTION_FIELDS)}; fields found: {', '.join(doc) or 'none'}); pass "
                f"--prompt-field FIELD or --prompt-field {task}=FIELD"
            )
        question = doc[key]
    options, labels, family = _options(doc)
    if not options or family is None:
        return question, _generative_reference(target)
    gold = _gold_index(doc, options, labels, family, target)
    if not 0 <= gold < len(options):
        raise DataError(
            f"task {task!r}: cannot determine the gold option of a document with {len(options)} options "
            f"(target {target!r}; answer fields: "
            f"{ {k: doc[k] for k in ('answer', 'answerKey', 'label', 'gold', 'answer_index') if k in doc} })"
        )
    try:
        return render_multiple_choice(question, options), LETTERS[gold]
    except ValueError as e:
        raise DataError(f"task {task!r}: {e}") from e
