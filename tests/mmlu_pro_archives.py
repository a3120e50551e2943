"""MMLU-Pro result archives built from rows of the shared `mmlu_pro` zoo (for import round-trip tests).

An archive `model_outputs_<model>_5shots.zip` holds a JSON list of MMLU-Pro records (question_id, question,
options, answer, answer_index, cot_content, category, src, pred, generated_text), as TIGER-AI-Lab/MMLU-Pro's
`eval_results/` archives do. The question and options are recovered by parsing the zoo's `prompt` (question,
then `A. ...` lines; an option may span several lines); `pred` is the gold letter when the recorded score is 1,
else another letter or None; `generated_text` is the recorded response tail.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

LETTERS = "ABCDEFGHIJ"


def split_prompt(prompt: str) -> tuple[str, list[str]]:
    """(question, options) of a rendered multiple-choice prompt: the last `A. ` line that starts a run of option
    lines `A. `, `B. `, ... to the end (lines not starting the next letter continue the previous option)."""
    lines = prompt.split("\n")
    for start in range(len(lines) - 1, -1, -1):
        if not lines[start].startswith("A. ") or start == 0:
            continue
        options = [lines[start][3:]]
        for line in lines[start + 1 :]:
            nxt = LETTERS[len(options)] if len(options) < len(LETTERS) else None
            if nxt and line.startswith(f"{nxt}. "):
                options.append(line[3:])
            else:
                options[-1] += "\n" + line
        return "\n".join(lines[:start]), options
    raise ValueError(f"no options in {prompt[-200:]!r}")


def shared_rows(shared: Path, question_ids: list[str] | None, models: list[str], tails: bool = True):
    """(questions, outcomes by (question_id, model)) of the shared zoo, restricted to ids / models if given.

    Without `tails`, `response_tail` is not read (it is most of the file) and each outcome gets a made-up one.
    """
    q = pq.read_table(shared / "questions.parquet")
    cols = ["question_id", "model", "score"] + (["response_tail"] if tails else [])
    filters = [("model", "in", models)]
    if question_ids is not None:
        q = q.filter(pc.is_in(q["question_id"], pa.array(question_ids)))
        filters.append(("question_id", "in", question_ids))
    o = pq.read_table(shared / "outcomes.parquet", columns=cols, filters=filters)
    outcomes = {}
    for r in o.to_pylist():
        r.setdefault("response_tail", f"{r['model']} thinks about {r['question_id']}. " * 12)
        outcomes[(r["question_id"], r["model"])] = r
    return q.to_pylist(), outcomes


def record(question: dict, outcome: dict | None, wrong_pred: str | None = "wrong") -> dict:
    """One MMLU-Pro record for a shared question and one model's recorded outcome."""
    text, options = split_prompt(question["prompt"])
    gold = question["reference"]
    k = LETTERS.index(gold)
    if outcome is None or outcome["score"] == 1.0:
        pred = gold
    else:
        pred = None if wrong_pred is None else LETTERS[(k + 1) % len(options)]
    return {
        "question_id": int(question["question_id"].split("/")[1]),
        "question": text,
        "options": options,
        "answer": gold,
        "answer_index": k,
        "cot_content": "",
        "category": question["category"],
        "src": question["task"],
        "pred": pred,
        "generated_text": None if outcome is None else outcome["response_tail"],
    }


def write_archive(path: Path, records: list[dict], members: int = 1) -> Path:
    """A zip of `records` as `members` JSON lists (by category when > 1), plus a summary JSON that is skipped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        if members == 1:
            z.writestr(f"{path.stem}/results.json", json.dumps(records))
        else:
            by_cat: dict[str, list[dict]] = {}
            for r in records:
                by_cat.setdefault(r["category"], []).append(r)
            for cat, rows in by_cat.items():
                z.writestr(f"{path.stem}/{cat}_result.json", json.dumps(rows))
        z.writestr(f"{path.stem}/summary.json", json.dumps({"total": {"accu": 0.5}}))
    return path


def archives_from_shared(
    shared: Path,
    out_dir: Path,
    question_ids: list[str] | None,
    models: list[str],
    members: int = 1,
    tails: bool = True,
) -> dict[str, Path]:
    """One archive per model, in `out_dir`, rebuilt from the shared zoo's rows (see `shared_rows`)."""
    questions, outcomes = shared_rows(shared, question_ids, models, tails)
    out = {}
    for i, m in enumerate(models):
        recs = [
            record(q, outcomes[(q["question_id"], m)], wrong_pred=None if (i + j) % 3 == 0 else "x")
            for j, q in enumerate(questions)
        ]
        out[m] = write_archive(out_dir / f"model_outputs_{m}_5shots.zip", recs, members)
    return out
