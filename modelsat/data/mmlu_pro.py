"""Import (and fetch) the public MMLU-Pro per-model result archives as zoo outcomes.

Source: TIGER-AI-Lab/MMLU-Pro (https://github.com/TIGER-AI-Lab/MMLU-Pro, Apache-2.0), files
`eval_results/model_outputs_<model>_5shots.zip`. Each archive holds JSON files, each a list of records written by
MMLU-Pro's evaluation scripts (`evaluate_from_local.py`): `question_id`, `question`, `options`, `answer` (gold
letter), `answer_index`, `cot_content`, `category`, `src`, `pred` (the letter MMLU-Pro's regex extracted; null if
none) and the generation (`generated_text`, or `model_outputs` in some scripts).

Conversion, as for the shared `mmlu_pro` zoo (`../shared/data/README.md`): `question_id` = `mmlu_pro/<question_id>`,
`benchmark` = `mmlu_pro`, `task` = `src`, `category` = `category`, `prompt` = the question, then `A. ...` up to
`J. ...` (MMLU-Pro's "N/A" padding dropped; text kept exactly), `reference` = the gold letter, `score` = 1.0 iff
`pred == answer` (a null or missing `pred` is wrong; MMLU-Pro's own `compute_accuracy.py` guesses instead),
`response_tail` = the last 400 characters of the generation. Merging the models keeps the questions every archive
has with the same gold letter and the same text up to whitespace (`modelsat.data.merge`).
"""

from __future__ import annotations

import json
import re
import zipfile
import zlib
from pathlib import Path
from typing import Any

from modelsat.data.download import CachedFile, Manifest, fetch_file
from modelsat.data.merge import MergeReport, ModelOutcomes, Outcome, QuestionRecord
from modelsat.data.schema import LETTERS, render_multiple_choice
from modelsat.data.writer import import_outcomes
from modelsat.errors import DataError
from modelsat.paths import cache_dir as default_cache_dir
from modelsat.progress import NullProgress, Progress

__all__ = [
    "ARCHIVE_MODELS",
    "DEFAULT_BASE_URL",
    "MMLU_PRO_COMMIT",
    "SHARED_ZOO_MODELS",
    "archive_name",
    "check_zip",
    "fetch_mmlu_pro",
    "fetch_mmlu_pro_archives",
    "mmlu_pro_models",
    "read_mmlu_pro_archive",
]

MMLU_PRO_REPO = "TIGER-AI-Lab/MMLU-Pro"
MMLU_PRO_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
"""The commit the shared `mmlu_pro` zoo was built from (pinned, so the archives and their checksums are stable)."""
DEFAULT_BASE_URL = f"https://github.com/{MMLU_PRO_REPO}/raw/{MMLU_PRO_COMMIT}/eval_results"

SHARED_ZOO_MODELS = (
    "gemini-1.5-pro-002",
    "gemini-1.5-flash-002",
    "DeepSeek-Coder-V2",
    "Meta-Llama-3-70B",
    "Meta-Llama-3_1-70B",
    "jamba-1.5-large",
    "Qwen1.5-110B",
    "Meta-Llama-3_1-8B-Instruct",
    "Yi-34B",
    "Mixtral-8x7B-Instruct-v0.1",
    "Phi-3-mini-4k-instruct",
    "mathstral-7B",
    "Llama-2-70b-hf",
    "c4ai-command-r-v01",
    "Meta-Llama-3_1-8B",
    "Meta-Llama-3-8B",
    "gemma-7b",
    "Mistral-7B-Instruct-v0.2",
    "Mistral-7B-v0.2-hf",
    "Yi-6b-Chat",
    "Qwen1.5-7B-Chat",
    "Yi-6B",
    "Llama-2-13b-hf",
    "Llama-2-7b-hf",
)
"""The 24 models of the shared `mmlu_pro` zoo (the default of `modelsat data fetch mmlu-pro`)."""
ARCHIVE_MODELS = tuple(
    sorted(
        SHARED_ZOO_MODELS
        + (
            "Meta-Llama-3_1-70B-Instruct",
            "Mistral-7B-Instruct-v0.1",
            "Mistral-7B-v0.1",
            "Mixtral-8x7B-v0.1",
            "Qwen1.5-72B-Chat",
        ),
        key=str.lower,
    )
)
"""Every model with an archive in `eval_results/` at `MMLU_PRO_COMMIT` (29)."""

TAIL_CHARS = 400
MAX_MEMBER_BYTES = 256 << 20
"""Largest uncompressed size a member of an archive may declare, in bytes (256 MiB; MMLU-Pro's are a few MB)."""
MAX_ARCHIVE_BYTES = 2 << 30
"""Largest uncompressed size the JSON members of one archive may declare together, in bytes (2 GiB)."""
_ARCHIVE = re.compile(r"^model_outputs_(?P<model>.+)_5shots\.zip$")
_REQUIRED = ("question_id", "question", "options", "src")
_CONFLICTING = "conflicting duplicate records of one question"


def archive_name(model: str) -> str:
    """`model_outputs_<model>_5shots.zip`."""
    return f"model_outputs_{model}_5shots.zip"


def _records(path: Path) -> list[tuple[str, int, Any]]:
    """(member, index, record) of every result record in an archive (summary files are skipped).

    Raises:
        DataError: not a readable zip; a member that declares more than `MAX_MEMBER_BYTES` uncompressed (or
            members that declare more than `MAX_ARCHIVE_BYTES` together: a zip bomb); a member that is not UTF-8
            JSON (naming the member and line); no records.
    """
    out = []
    try:
        with zipfile.ZipFile(path) as z:
            members = [
                i
                for i in z.infolist()
                if i.filename.endswith(".json")
                and not i.filename.startswith("__MACOSX/")
                and not Path(i.filename).name.startswith("._")
            ]
            total = 0
            for info in members:
                total += info.file_size
                if info.file_size > MAX_MEMBER_BYTES or total > MAX_ARCHIVE_BYTES:
                    raise DataError(
                        f"{path.name}:{info.filename} declares {info.file_size:,} uncompressed bytes "
                        f"({total:,} for the archive so far); allowed: at most {MAX_MEMBER_BYTES:,} per member and "
                        f"{MAX_ARCHIVE_BYTES:,} per archive (a zip bomb, or not an MMLU-Pro result archive)"
                    )
                with z.open(
                    info
                ) as f:  # reads at most the declared size (zipfile stops there, checks the CRC)
                    raw = f.read(MAX_MEMBER_BYTES + 1)
                out += [
                    (info.filename, i, r)
                    for i, r in enumerate(_json_list(raw, f"{path.name}:{info.filename}"))
                ]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is not a readable zip archive ({e})") from e
    except (NotImplementedError, RuntimeError) as e:  # an unsupported compression method, an encrypted member
        raise DataError(f"{path} cannot be read: {e} (MMLU-Pro archives are plain deflate zips)") from e
    if not out:
        raise DataError(
            f"{path} holds no MMLU-Pro result records (JSON lists of records with "
            f"{', '.join(_REQUIRED)}, answer, pred)"
        )
    return out


def _json_list(raw: bytes, where: str) -> list[Any]:
    """The records of one member: a JSON list (anything else, e.g. a summary object, gives no records).

    Raises:
        DataError: the member is not UTF-8 or not JSON, naming `where` and the line.
    """
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(f"{where}:{line}: not UTF-8 text (byte {e.start:,}: {e.reason})") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{where}:{e.lineno}: not JSON ({e.msg}, column {e.colno})") from e
    return data if isinstance(data, list) else []


def check_zip(path: Path) -> None:
    """Raise `DataError` unless `path` is a whole zip archive (its central directory, at the end, reads).

    A download cut short loses the end of the file, so this tells a truncated archive from a complete one
    (`modelsat.data.download.fetch_file(check=...)`).
    """
    try:
        with zipfile.ZipFile(path) as z:
            z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{path.name} is not a whole zip archive ({e})") from e


def _gold(r: dict[str, Any], n_options: int) -> str | None:
    ans = r.get("answer")
    if isinstance(ans, str) and len(ans.strip()) == 1 and ans.strip() in LETTERS[:n_options]:
        return ans.strip()
    idx = r.get("answer_index")
    if isinstance(idx, int) and not isinstance(idx, bool) and 0 <= idx < n_options:
        return LETTERS[idx]
    return None


def read_mmlu_pro_archive(path: str | Path, model: str | None = None) -> ModelOutcomes:
    """One MMLU-Pro result archive as a model's outcomes.

    Args:
        path: `model_outputs_<model>_5shots.zip` (or any zip of MMLU-Pro result records).
        model: model name; default: from the file name.
    Returns:
        The model's outcomes, questions ordered by numeric question id; `source` =
        `TIGER-AI-Lab/MMLU-Pro:<archive name>`.
    Raises:
        DataError: an unreadable archive; no model name; a record lacking a required field, with options that are
            not a list of strings, or whose gold letter is missing or outside its options (naming archive, member
            and record).
    """
    path = Path(path)
    m = _ARCHIVE.match(path.name)
    name = model or (m.group("model") if m else None)
    if not name:
        raise DataError(
            f"cannot tell the model of {path.name!r} (expected model_outputs_<model>_5shots.zip); pass --model NAME"
        )
    entries: dict[str, tuple[QuestionRecord, Outcome]] = {}
    conflicting: set[str] = set()
    for member, i, r in _records(path):
        where = f"{path.name}:{member} record {i}"
        if not isinstance(r, dict):
            raise DataError(f"{where}: is a {type(r).__name__}, expected an object")
        missing = [k for k in _REQUIRED if k not in r]
        if missing:
            raise DataError(
                f"{where}: missing {', '.join(map(repr, missing))} (MMLU-Pro records have question_id, question, "
                f"options, answer, answer_index, category, src, pred; found: {', '.join(r)})"
            )
        options = r["options"]
        if not isinstance(options, list) or not all(isinstance(o, str) for o in options):
            raise DataError(f"{where}: 'options' must be a list of strings, got {options!r:.80}")
        options = list(options)
        while options and options[-1] == "N/A":  # MMLU-Pro pads to 10 options with "N/A"
            options.pop()
        gold = _gold(r, len(options))
        if gold is None:
            raise DataError(
                f"{where}: gold answer {r.get('answer')!r} (answer_index {r.get('answer_index')!r}) is not one of "
                f"the {len(options)} option letters {LETTERS[: len(options)]}"
            )
        if not isinstance(r["question"], str):
            raise DataError(f"{where}: 'question' must be a string, got {type(r['question']).__name__}")
        qid = f"mmlu_pro/{r['question_id']}"
        text = r.get("generated_text", r.get("model_outputs"))
        category = r.get("category")
        record = QuestionRecord(
            question_id=qid,
            benchmark="mmlu_pro",
            task=str(r["src"]),
            prompt=render_multiple_choice(r["question"], options),
            reference=gold,
            category=category if isinstance(category, str) else None,
        )
        pred = r.get("pred")
        outcome = Outcome(
            score=1.0 if pred == gold else 0.0,
            response_tail=text[-TAIL_CHARS:] if isinstance(text, str) else None,
        )
        prev = entries.setdefault(qid, (record, outcome))
        if prev[0] != record or prev[1].score != outcome.score:
            conflicting.add(qid)

    def order(qid: str) -> tuple[int, str]:
        tail = qid.rsplit("/", 1)[1]
        return (int(tail), "") if tail.isdigit() else (1 << 62, tail)

    out = ModelOutcomes(model=name, source=f"{MMLU_PRO_REPO}:{path.name}", questions={}, outcomes={})
    for qid in sorted(entries, key=order):
        if qid not in conflicting:
            out.questions[qid], out.outcomes[qid] = entries[qid]
    if conflicting:
        out.dropped[_CONFLICTING] = len(conflicting)
    return out


def mmlu_pro_models(
    paths: list[Path], model: str | None = None, progress: Progress | None = None
) -> list[ModelOutcomes]:
    """Several archives as models' outcomes (`model` names the model of a single archive).

    Raises:
        DataError: `model` with more than one archive; see `read_mmlu_pro_archive`.
    """
    if model is not None and len(paths) != 1:
        raise DataError(f"--model names the model of one archive; {len(paths)} archives were given")
    progress = progress or NullProgress()
    out = []
    with progress.task("reading MMLU-Pro archives", total=len(paths)) as advance:
        for p in paths:
            out.append(read_mmlu_pro_archive(p, model))
            advance(1, model=out[-1].model)
    return out


def fetch_mmlu_pro_archives(
    models: list[str] | tuple[str, ...] = SHARED_ZOO_MODELS,
    cache_dir: str | Path = ".",
    base_url: str = DEFAULT_BASE_URL,
    progress: Progress | None = None,
) -> list[CachedFile]:
    """Download (or reuse, verified) the MMLU-Pro archives of `models` into `cache_dir`.

    Args:
        models: model names from `ARCHIVE_MODELS`.
        cache_dir: directory for the archives and `manifest.json` (their SHA-256 checksums).
        base_url: URL of the `eval_results` folder (default: the GitHub repository at `MMLU_PRO_COMMIT`).
        progress: log lines and a byte progress bar per download.
    Returns:
        The verified archives, in the order of `models`.
    Raises:
        DataError: an unknown model (listing the known ones); see `modelsat.data.download.fetch_file`.
    """
    unknown = [m for m in models if m not in ARCHIVE_MODELS]
    if unknown:
        raise DataError(f"unknown MMLU-Pro model {unknown[0]!r}; allowed: {', '.join(ARCHIVE_MODELS)}")
    progress = progress or NullProgress()
    cache = Path(cache_dir)
    manifest = Manifest(cache)
    out = []
    for m in models:
        url = f"{base_url.rstrip('/')}/{archive_name(m)}"
        got = fetch_file(url, cache / archive_name(m), manifest, progress, label=m, check=check_zip)
        progress.log(f"{got.path.name}: {got.how}, {got.bytes / 1e6:.1f} MB, sha256 {got.sha256[:12]}…")
        out.append(got)
    return out


def fetch_mmlu_pro(
    out: str | Path,
    models: list[str] | tuple[str, ...] = SHARED_ZOO_MODELS,
    cache_dir: str | Path | None = None,
    base_url: str = DEFAULT_BASE_URL,
    replace: bool = False,
    progress: Progress | None = None,
) -> MergeReport:
    """Fetch the MMLU-Pro archives of `models` and import them into the zoo at `out` (the public demo data).

    Args:
        out: routing data directory to build or extend (written atomically).
        models: model names from `ARCHIVE_MODELS` (default: the 24 of the shared `mmlu_pro` zoo).
        cache_dir: where the archives are kept (default: `<modelsat cache>/mmlu-pro-archives`).
        base_url: URL of the `eval_results` folder.
        replace: replace models already in the zoo.
        progress: log lines and progress bars.
    Returns:
        The merge report.
    Raises:
        DataError: see `fetch_mmlu_pro_archives`, `read_mmlu_pro_archive` and `modelsat.data.import_outcomes`.
    """
    progress = progress or NullProgress()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "mmlu-pro-archives"
    progress.log(f"MMLU-Pro archives of {len(models)} models from {base_url} (cache {cache})")
    files = fetch_mmlu_pro_archives(models, cache, base_url, progress)
    return import_outcomes(mmlu_pro_models([f.path for f in files], progress=progress), out, replace)
