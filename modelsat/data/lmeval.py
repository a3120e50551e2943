"""Import lm-evaluation-harness per-sample logs (`lm_eval ... --output_path DIR --log_samples`) as zoo outcomes.

Layout written by the harness (EleutherAI/lm-evaluation-harness, `lm_eval/loggers/evaluation_tracker.py`; docs:
https://github.com/EleutherAI/lm-evaluation-harness/blob/main/docs/interface.md, `--log_samples`):

    <output_path>/<model_name_sanitized>/results_<timestamp>.json
    <output_path>/<model_name_sanitized>/samples_<task>_<timestamp>.jsonl     one file per task

Each line of a samples file is one (document, filter) pair: `doc_id`, `doc` (the dataset row), `target` (gold, as a
string), `arguments`, `resps`, `filtered_resps`, `filter`, `metrics` (names of the per-sample metrics), `doc_hash`,
`prompt_hash`, `target_hash`, and one key per metric (`acc`, `acc_norm`, `exact_match`, ...). The results file
carries `model_name` and `group_subtasks` (task groups, e.g. `mmlu` → `mmlu_stem` → `mmlu_anatomy`).

Conversion: `question_id` = `lm_eval/<task>/<doc_id>` (stable across models; models are joined on it and checked
through `doc_hash`), `benchmark` = the task's top-level group (else the task), `task` = the task, `category` = the
document's `category` field if any, `prompt`/`reference` rebuilt from the document (`_lmeval_docs.render_doc`),
`score` = the named metric (in [0, 1]), `response_tail` = the last 400 characters of a generated response (null for
log-likelihood tasks).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from modelsat.data._lmeval_docs import render_doc
from modelsat.data.merge import ModelOutcomes, Outcome, QuestionRecord
from modelsat.errors import DataError

__all__ = [
    "DEFAULT_METRICS",
    "find_lm_eval_runs",
    "lm_eval_models",
    "parse_prompt_fields",
    "read_lm_eval_run",
]

DEFAULT_METRICS = ("acc",)
"""Per-sample metric(s) used as the score unless `--metric` names others (first present wins)."""
TAIL_CHARS = 400
_SAMPLES = re.compile(r"^samples_(?P<task>.+)_(?P<stamp>[^_]+)\.jsonl$")
_CONFLICTING = "conflicting duplicate lines for one document"


def find_lm_eval_runs(paths: list[Path]) -> list[Path]:
    """The model directories (holding `samples_<task>_<timestamp>.jsonl`) under the given paths.

    A path is a model directory itself, or an `--output_path` whose subdirectories are model directories.

    Raises:
        DataError: a path that does not exist, or holds no sample logs (naming the expected layout).
    """
    runs: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise DataError(f"lm-eval log directory {str(p)!r} does not exist")
        if any(_SAMPLES.match(f.name) for f in p.iterdir() if f.is_file()):
            runs.append(p)
            continue
        subs = sorted(
            d for d in p.iterdir() if d.is_dir() and any(_SAMPLES.match(f.name) for f in d.iterdir())
        )
        if not subs:
            raise DataError(
                f"{str(p)!r} holds no lm-eval sample logs (samples_<task>_<timestamp>.jsonl), nor do its "
                "subdirectories; run lm_eval with --output_path DIR --log_samples"
            )
        runs += subs
    return runs


def _latest_results(run: Path) -> dict[str, Any]:
    """The newest `results_<timestamp>.json` of a model directory (`{}` if none), checked.

    Raises:
        DataError: the file is unreadable, not UTF-8 JSON, not an object, or has a `model_name` that is not
            text or `group_subtasks` that is not an object of task lists (naming the file).
    """
    files = sorted(run.glob("results_*.json"))
    if not files:
        return {}
    try:
        raw = json.loads(files[-1].read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{files[-1]} is not a readable lm-eval results file: {e}") from e
    if not isinstance(raw, dict):
        raise DataError(f"{files[-1]} is a JSON {type(raw).__name__}; an lm-eval results file is an object")
    name = raw.get("model_name")
    if name is not None and not isinstance(name, str):
        raise DataError(f"{files[-1]}: 'model_name' is {name!r}; allowed: text")
    groups = raw.get("group_subtasks")
    if groups is not None and not (
        isinstance(groups, dict) and all(isinstance(v, list) for v in groups.values())
    ):
        raise DataError(f"{files[-1]}: 'group_subtasks' must be an object of group -> list of task names")
    return raw


def _benchmark_of(task: str, groups: dict[str, list[str]]) -> str:
    """The top-level group holding `task` (lm-eval `group_subtasks`), else the task itself."""
    parent = {child: g for g, children in groups.items() for child in children if child != g}
    seen = {task}
    while task in parent and parent[task] not in seen:
        task = parent[task]
        seen.add(task)
    return task


def _score(sample: dict[str, Any], metrics: tuple[str, ...], where: str) -> float:
    name = next((m for m in metrics if m in sample), None)
    if name is None:
        found = sample.get("metrics") or [
            k for k, v in sample.items() if isinstance(v, int | float) and k not in ("doc_id",)
        ]
        raise DataError(
            f"{where}: no metric {' or '.join(map(repr, metrics))} in the sample; its metrics: "
            f"{', '.join(map(str, found)) or 'none'} (pass --metric NAME)"
        )
    v = sample[name]
    if isinstance(v, bool):
        return float(v)
    if not isinstance(v, int | float) or not 0.0 <= float(v) <= 1.0:
        raise DataError(
            f"{where}: metric {name!r} has value {v!r}; allowed: a number in [0, 1] per sample "
            "(corpus-level metrics such as bleu cannot score a single question)"
        )
    return float(v)


def _tail(sample: dict[str, Any]) -> str | None:
    """The last characters of a generated response (generate_until tasks), else None."""
    resps = sample.get("resps")
    if isinstance(resps, list) and resps and isinstance(resps[0], list) and resps[0]:
        first = resps[0][0]
        if isinstance(first, str):
            return first[-TAIL_CHARS:]
    return None


def _prompt_field(task: str, fields: dict[str, str]) -> str | None:
    return fields.get(task, fields.get("*"))


def _read_samples(path: Path, task: str, filter_name: str | None) -> list[tuple[int, dict[str, Any]]]:
    """(line number, sample) for the chosen filter of one samples file."""
    rows = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{n}: not UTF-8 text (byte {e.start} of the line: {e.reason})") from e
            if not line.strip():
                continue
            try:
                s = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not a JSON line ({e.msg})") from e
            if not isinstance(s, dict):
                raise DataError(
                    f"{path}:{n}: a JSON {type(s).__name__}, not an object (an lm-eval --log_samples line is an "
                    "object with doc_id, doc, target, resps, filter, metrics)"
                )
            missing = [k for k in ("doc_id", "doc", "target") if k not in s]
            if missing:
                raise DataError(
                    f"{path}:{n}: missing {', '.join(missing)} (an lm-eval --log_samples line has doc_id, doc, "
                    f"target, resps, filter, metrics; found: {', '.join(s)})"
                )
            rows.append((n, s))
    filters = sorted({str(s.get("filter", "none")) for _, s in rows})
    if len(filters) > 1:
        if filter_name is None or filter_name not in filters:
            given = "" if filter_name is None else f"; --filter {filter_name!r} is not one of them"
            raise DataError(
                f"{path}: task {task!r} logs {len(filters)} filters ({', '.join(filters)}); pass --filter "
                f"NAME to choose one{given}"
            )
        rows = [(n, s) for n, s in rows if str(s.get("filter", "none")) == filter_name]
    return rows


def read_lm_eval_run(
    run: Path,
    model: str | None = None,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    filter_name: str | None = None,
    prompt_fields: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> ModelOutcomes:
    """One model directory of lm-eval sample logs as a model's outcomes.

    Args:
        run: the model directory (`<output_path>/<model_name_sanitized>`).
        model: model name; default the results file's `model_name`, else the directory name.
        metrics: per-sample metric names; the first present in a sample is its score (must be in [0, 1]).
        filter_name: the lm-eval filter to use where a task logs several (e.g. `strict-match` for GSM8K).
        prompt_fields: task -> document field with the question text (`*` for every task); others are guessed.
        notes: receives lines about choices made (older logs of a task ignored).
    Returns:
        The model's outcomes; `source` = `lm-eval:<run directory>`.
    Raises:
        DataError: naming the file and line for malformed logs, a missing or out-of-range metric, a task whose
            documents cannot be rendered, or several filters without `filter_name`.
    """
    results = _latest_results(run)
    name = model or results.get("model_name") or run.name
    groups = results.get("group_subtasks") or {}
    by_task: dict[str, list[Path]] = {}
    for f in sorted(run.iterdir()):
        m = _SAMPLES.match(f.name)
        if m and f.is_file():
            by_task.setdefault(m.group("task"), []).append(f)
    entries: dict[str, tuple[QuestionRecord, Outcome]] = {}
    conflicting: set[str] = set()
    for task, files in by_task.items():
        latest = max(files, key=lambda f: _SAMPLES.match(f.name).group("stamp"))
        if len(files) > 1 and notes is not None:
            notes.append(f"{name}: task {task}: using {latest.name}, ignoring {len(files) - 1} older log(s)")
        field = _prompt_field(task, prompt_fields or {})
        benchmark = _benchmark_of(task, groups)
        for n, s in _read_samples(latest, task, filter_name):
            where = f"{latest}:{n}"
            qid = f"lm_eval/{task}/{s['doc_id']}"
            try:
                prompt, reference = render_doc(task, s["doc"], str(s["target"]), field)
            except DataError as e:
                raise DataError(f"{where}: {e}") from e
            category = s["doc"].get("category")
            record = QuestionRecord(
                question_id=qid,
                benchmark=benchmark,
                task=task,
                prompt=prompt,
                reference=reference,
                category=category if isinstance(category, str) else None,
                fingerprint=s.get("doc_hash"),
            )
            outcome = Outcome(score=_score(s, metrics, where), response_tail=_tail(s))
            prev = entries.setdefault(qid, (record, outcome))
            if prev[0] != record or prev[1].score != outcome.score:
                conflicting.add(qid)
    out = ModelOutcomes(model=name, source=f"lm-eval:{run.resolve()}", questions={}, outcomes={})
    for qid, (record, outcome) in entries.items():
        if qid not in conflicting:
            out.questions[qid] = record
            out.outcomes[qid] = outcome
    if conflicting:
        out.dropped[_CONFLICTING] = len(conflicting)
    return out


def parse_prompt_fields(values: list[str] | None) -> dict[str, str]:
    """`--prompt-field` values (`FIELD` for every task, or `TASK=FIELD`) as task -> field (`*` = every task).

    Raises:
        DataError: an empty field name.
    """
    out: dict[str, str] = {}
    for v in values or []:
        task, sep, field = v.partition("=")
        if not sep:
            task, field = "*", task
        if not field.strip() or not task.strip():
            raise DataError(
                f"--prompt-field {v!r}: expected FIELD or TASK=FIELD (e.g. question or boolq=passage)"
            )
        out[task.strip()] = field.strip()
    return out


def lm_eval_models(
    paths: list[Path],
    model: str | None = None,
    metrics: tuple[str, ...] = DEFAULT_METRICS,
    filter_name: str | None = None,
    prompt_fields: dict[str, str] | None = None,
    notes: list[str] | None = None,
) -> list[ModelOutcomes]:
    """Every model found under `paths` (see `find_lm_eval_runs`), read with `read_lm_eval_run`.

    With `model`, all the paths' logs belong to that one model (the per-task logs of several runs are combined).

    Raises:
        DataError: see `find_lm_eval_runs` and `read_lm_eval_run`; one task logged twice for the named model.
    """
    runs = find_lm_eval_runs(paths)
    sets = [read_lm_eval_run(r, model, metrics, filter_name, prompt_fields, notes) for r in runs]
    if model is None or len(sets) == 1:
        return sets
    merged = sets[0]
    merged.source = "lm-eval:" + ",".join(str(r.resolve()) for r in runs)
    for s in sets[1:]:
        clash = sorted({q.task for q in s.questions.values()} & {q.task for q in merged.questions.values()})
        if clash:
            raise DataError(
                f"--model {model!r}: task {clash[0]!r} is logged in more than one of the given directories; "
                "give each task once per model"
            )
        merged.questions.update(s.questions)
        merged.outcomes.update(s.outcomes)
        merged.dropped.update(s.dropped)
    return [merged]
