"""Hand-written lm-evaluation-harness `--log_samples` output, in the harness's layout, for import tests.

Layout (lm_eval/loggers/evaluation_tracker.py): `<output_path>/<model_name_sanitized>/results_<ts>.json` and one
`samples_<task>_<ts>.jsonl` per task; each line holds doc_id, doc, target (a string), arguments, resps,
filtered_resps, filter, metrics, doc_hash, prompt_hash, target_hash and the per-sample metric values.

Four tasks of `N_PER_TASK` documents: `arc_easy` (ARC: choices {text, label}, answerKey), `mmlu_anatomy` (MMLU:
choices list, answer index; group mmlu → mmlu_stem → mmlu_anatomy), `winogrande` (option1/option2, answer "1"/"2",
target = the partial sentence) and `gsm8k` (generative, target "... #### n", two filters). Each model's chance of
being right depends on the task (`SKILL`), so routing by task pays off.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

N_PER_TASK = 25
STAMP = "2024-06-01T12-00-00.000001"
MODELS = ("org/alpha-7b", "org/beta-13b", "gamma")
SKILL = {  # P(correct) per model and task
    "org/alpha-7b": {"arc_easy": 0.95, "mmlu_anatomy": 0.3, "winogrande": 0.5, "gsm8k": 0.1},
    "org/beta-13b": {"arc_easy": 0.4, "mmlu_anatomy": 0.35, "winogrande": 0.6, "gsm8k": 0.9},
    "gamma": {"arc_easy": 0.5, "mmlu_anatomy": 0.9, "winogrande": 0.55, "gsm8k": 0.3},
}
GROUPS = {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_anatomy"], "arc_easy": [], "winogrande": [], "gsm8k": []}


def sanitize_model_name(name: str) -> str:
    """As lm_eval.utils.sanitize_model_name."""
    return re.sub(r"[\"<>:/|\\?*\[\]]+", "__", name)


def _hash(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def docs(task: str, i: int) -> tuple[dict, str, str | None, list[str] | None]:
    """(doc, target string, expected reference, expected option texts or None) of document i of a task."""
    if task == "arc_easy":
        labels = ["A", "B", "C", "D"]
        texts = [f"stone {i}", f"water {i}", f"sunlight {i}", f"air {i}"]
        key = labels[i % 4]
        doc = {
            "id": f"Mercury_{1000 + i}",
            "question": f"Which resource does plant number {i} need most?",
            "choices": {"text": texts, "label": labels},
            "answerKey": key,
        }
        return doc, str(labels.index(key)), key, texts
    if task == "mmlu_anatomy":
        texts = [f"bone {i}", f"muscle {i}", f"nerve {i}", f"skin {i}"]
        doc = {
            "question": f"Which tissue forms structure {i} of the arm?",
            "subject": "anatomy",
            "choices": texts,
        }
        doc["answer"] = (i * 3) % 4
        return doc, str(doc["answer"]), "ABCD"[doc["answer"]], texts
    if task == "winogrande":
        doc = {
            "sentence": f"Sam gave Alex book {i} because _ had finished reading it.",
            "option1": "Sam",
            "option2": "Alex",
            "answer": "1" if i % 3 else "2",
        }
        return doc, " had finished reading it.", "A" if i % 3 else "B", ["Sam", "Alex"]
    if task == "gsm8k":
        n = 3 * i + 4
        doc = {"question": f"Tom has {i} apples and buys {2 * i + 4} more. How many apples does he have?"}
        doc["answer"] = f"He has {i} + {2 * i + 4} = {n} apples.\n#### {n}"
        return doc, doc["answer"], str(n), None
    raise ValueError(task)


def _sample(task: str, i: int, correct: bool, filter_name: str = "none") -> dict:
    doc, target, _, texts = docs(task, i)
    context = f"Question: {doc.get('question', doc.get('sentence'))}\nAnswer:"
    base = {"doc_id": i, "doc": doc, "target": target}
    if task == "gsm8k":
        n = int(target.rsplit("####", 1)[1])
        text = f" He ends up with {n if correct else n + 1} apples. The answer is {n if correct else n + 1}."
        base.update(
            arguments={
                "gen_args_0": {"arg_0": context, "arg_1": {"until": ["Question:"], "do_sample": False}}
            },
            resps=[[text]],
            filtered_resps=[str(n if correct else n + 1)],
            filter=filter_name,
            metrics=["exact_match"],
            exact_match=1.0 if correct else 0.0,
        )
    else:
        base.update(
            arguments={f"gen_args_{k}": {"arg_0": context, "arg_1": f" {t}"} for k, t in enumerate(texts)},
            resps=[[[f"{-1.5 - k}", "False"]] for k in range(len(texts))],
            filtered_resps=[[f"{-1.5 - k}", "False"] for k in range(len(texts))],
            filter="none",
            metrics=["acc", "acc_norm"],
            acc=1.0 if correct else 0.0,
            acc_norm=1.0 if correct else 0.0,
        )
    base.update(
        doc_hash=_hash(json.dumps(doc, indent=2, ensure_ascii=False)),
        prompt_hash=_hash(context),
        target_hash=_hash(target),
    )
    return base


def write_lm_eval_logs(
    root: Path,
    models: tuple[str, ...] = MODELS,
    tasks: tuple[str, ...] = ("arc_easy", "mmlu_anatomy", "winogrande", "gsm8k"),
    n_per_task: int = N_PER_TASK,
    seed: int = 0,
) -> dict[str, dict[tuple[str, int], float]]:
    """Write `<root>/<model_sanitized>/{results,samples_<task>}_<ts>.json[l]` for each model.

    Returns:
        model -> (task, doc_id) -> score written (gsm8k: the strict-match score; flexible-extract is always 1).
    """
    rng = np.random.default_rng(seed)
    written: dict[str, dict[tuple[str, int], float]] = {}
    for model in models:
        d = root / sanitize_model_name(model)
        d.mkdir(parents=True, exist_ok=True)
        written[model] = {}
        for task in tasks:
            lines = []
            for i in range(n_per_task):
                correct = bool(rng.random() < SKILL.get(model, {}).get(task, 0.5))
                written[model][(task, i)] = float(correct)
                if task == "gsm8k":
                    lines.append(_sample(task, i, correct, "strict-match"))
                    lines.append(_sample(task, i, True, "flexible-extract"))
                else:
                    lines.append(_sample(task, i, correct))
            (d / f"samples_{task}_{STAMP}.jsonl").write_text(
                "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in lines)
            )
        results = {
            "results": {t: {"alias": t} for t in tasks},
            "group_subtasks": {g: c for g, c in GROUPS.items() if g in tasks or g.startswith("mmlu")},
            "model_name": model,
            "model_name_sanitized": sanitize_model_name(model),
        }
        (d / f"results_{STAMP}.json").write_text(json.dumps(results, indent=2))
    return written
