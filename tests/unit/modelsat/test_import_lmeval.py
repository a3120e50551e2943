"""Importing lm-evaluation-harness `--log_samples` logs (hand-written in the harness's layout) into a zoo."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelsat.cli import app
from modelsat.data import import_outcomes, lm_eval_models, load_routing_data, validate_routing_data
from modelsat.data.merge import DOC_DIFFERS, GOLD_DIFFERS, MISSING, TEXT_DIFFERS
from modelsat.errors import DataError
from tests.lmeval_logs import MODELS, docs, sanitize_model_name, write_lm_eval_logs

runner = CliRunner()
METRICS = ("acc", "exact_match")


@pytest.fixture
def logs(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "results"
    return root, write_lm_eval_logs(root)


def _import(paths, out, **kw):
    kw.setdefault("metrics", METRICS)
    kw.setdefault("filter_name", "strict-match")
    replace = kw.pop("replace", False)
    return import_outcomes(lm_eval_models([Path(p) for p in paths], **kw), out, replace)


def _edit(path: Path, fn) -> None:
    """Rewrite a samples file line by line (fn(sample) -> sample)."""
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(fn(s)) + "\n" for s in lines))


def _samples(root: Path, model: str, task: str) -> Path:
    return next((root / sanitize_model_name(model)).glob(f"samples_{task}_*.jsonl"))


def test_three_models_become_a_zoo_in_the_shared_format(logs, tmp_path):
    root, written = logs
    report = _import([root], tmp_path / "zoo")
    zoo = load_routing_data(tmp_path / "zoo")
    assert zoo.models == ("gamma", "org/alpha-7b", "org/beta-13b")  # model_name from results_*.json
    assert zoo.n_questions == 100 and report.n_questions == 100 and not report.dropped
    assert validate_routing_data(tmp_path / "zoo") == []
    for i, qid in enumerate(zoo.question_ids.tolist()):
        _, task, doc_id = qid.split("/")
        _, _, reference, options = docs(task, int(doc_id))
        doc = docs(task, int(doc_id))[0]
        question = doc.get("question", doc.get("sentence"))
        expected = question + "".join(f"\n{'ABCD'[k]}. {o}" for k, o in enumerate(options or []))
        assert zoo.prompts[i] == expected and zoo.references[i] == reference
        assert zoo.benchmarks[i] == ("mmlu" if task == "mmlu_anatomy" else task) and zoo.tasks[i] == task
        for j, m in enumerate(zoo.models):
            assert zoo.outcomes[i, j] == written[m][(task, int(doc_id))]
    o = pq.read_table(tmp_path / "zoo" / "outcomes.parquet").to_pylist()
    tails = {r["question_id"].split("/")[1]: r["response_tail"] for r in o}
    assert tails["gsm8k"].startswith(" He ends up with") and tails["arc_easy"] is None
    m = pq.read_table(tmp_path / "zoo" / "models.parquet").to_pylist()
    assert m[1]["source_repo"] == f"lm-eval:{(root / 'org__alpha-7b').resolve()}"
    assert m[1]["accuracy"] == pytest.approx(zoo.outcomes[:, 1].mean())


def test_extending_one_model_at_a_time_keeps_only_shared_questions(logs, tmp_path):
    root, _ = logs
    out = tmp_path / "zoo"
    first = _import([root / "org__alpha-7b"], out)
    assert first.models == ["org/alpha-7b"] and "routing needs at least 2" in first.lines()[-1]
    (_samples(root, "org/beta-13b", "gsm8k")).unlink()  # beta was not run on gsm8k
    second = _import([root / "org__beta-13b"], out)
    assert second.n_before == 100 and second.n_questions == 75
    assert second.dropped == {MISSING: 25} and second.missing_by_model == {
        "org/alpha-7b": 0,
        "org/beta-13b": 25,
    }
    assert any("25 missing for some model (org/beta-13b lacks 25)" in line for line in second.lines())
    third = _import([root / "gamma"], out, model="gamma-renamed")
    zoo = load_routing_data(out)
    assert zoo.models == ("org/alpha-7b", "org/beta-13b", "gamma-renamed") and zoo.n_questions == 75
    assert third.added == ["gamma-renamed"] and "gsm8k" not in set(zoo.tasks.tolist())


def test_same_model_twice_needs_replace(logs, tmp_path):
    root, written = logs
    out = tmp_path / "zoo"
    _import([root], out)
    _edit(_samples(root, "gamma", "arc_easy"), lambda s: {**s, "acc": 1.0})
    with pytest.raises(DataError, match=r"model 'gamma' is already in .*zoo.*; pass --replace to replace it"):
        _import([root / "gamma"], out)
    report = _import([root / "gamma"], out, replace=True)
    assert report.replaced == ["gamma"] and report.added == []
    zoo = load_routing_data(out)
    assert zoo.models == ("gamma", "org/alpha-7b", "org/beta-13b")  # a replaced model keeps its place
    arc = zoo.tasks == "arc_easy"
    assert zoo.outcomes[arc, 0].min() == 1.0 and zoo.n_questions == 100


def test_disagreeing_sources_are_dropped_and_counted(logs, tmp_path):
    root, _ = logs

    def gold(s):  # beta's copy of arc_easy doc 3 has another answer key (a revised dataset)
        if s["doc_id"] == 3:
            s["doc"]["answerKey"] = "A" if s["doc"]["answerKey"] != "A" else "B"
            s["doc_hash"] = "changed"
        return s

    def text(s):  # gamma's copy of mmlu doc 4 has another question; doc 5 only different whitespace
        if s["doc_id"] in (4, 5):
            s.pop("doc_hash")
            s["doc"]["question"] = (
                "A different question?" if s["doc_id"] == 4 else s["doc"]["question"].replace(" ", "  \n ")
            )
        return s

    def doc(s):  # alpha's copy of winogrande doc 6 differs in a field the prompt does not show
        if s["doc_id"] == 6:
            s["doc_hash"] = "other"
        return s

    _edit(_samples(root, "org/beta-13b", "arc_easy"), gold)
    _edit(_samples(root, "gamma", "mmlu_anatomy"), text)
    _edit(_samples(root, "org/alpha-7b", "winogrande"), doc)
    report = _import([root], tmp_path / "zoo")
    assert report.dropped == {GOLD_DIFFERS: 1, TEXT_DIFFERS: 1, DOC_DIFFERS: 1}
    assert report.n_questions == 97
    lines = "\n".join(report.lines())
    assert "dropped 3 of 100 candidate questions" in lines
    assert "1 gold answer differs between sources, e.g. lm_eval/arc_easy/3 ('A' vs 'D')" in lines
    kept = set(load_routing_data(tmp_path / "zoo").question_ids.tolist())
    assert "lm_eval/mmlu_anatomy/5" in kept and "lm_eval/mmlu_anatomy/4" not in kept


def test_failed_import_leaves_the_zoo_byte_for_byte(logs, tmp_path, monkeypatch):
    root, _ = logs
    out = tmp_path / "zoo"
    _import([root / "gamma", root / "org__alpha-7b"], out)
    (out / "NOTES.md").write_text("kept across imports")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with open(_samples(root, "org/beta-13b", "winogrande"), "a") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"samples_winogrande_.*\.jsonl:26: not a JSON line"):
        _import([root / "org__beta-13b"], out)
    _samples(root, "org/beta-13b", "winogrande").unlink()
    import pyarrow.parquet

    real = pyarrow.parquet.write_table
    calls = []

    def failing(table, where, **kw):  # the disk fills up after the first file
        calls.append(where)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(pyarrow.parquet, "write_table", failing)
    with pytest.raises(OSError, match="No space left"):
        _import([root / "org__beta-13b"], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "zoo"]  # no temporary directory left
    monkeypatch.setattr(pyarrow.parquet, "write_table", real)
    _import([root / "org__beta-13b"], out)
    assert (out / "NOTES.md").read_text() == "kept across imports" and load_routing_data(out).n_models == 3


def test_bad_logs_give_errors_naming_the_value(logs, tmp_path):
    root, _ = logs
    alpha = root / "org__alpha-7b"
    with pytest.raises(
        DataError, match=r"task 'gsm8k' logs 2 filters \(flexible-extract, strict-match\); pass --filter"
    ):
        lm_eval_models([alpha], metrics=METRICS)
    with pytest.raises(
        DataError, match=r"no metric 'acc' in the sample; its metrics: exact_match \(pass --metric"
    ):
        lm_eval_models([alpha], filter_name="strict-match")
    _edit(_samples(root, "org/alpha-7b", "arc_easy"), lambda s: {**s, "acc": 2.5})
    with pytest.raises(DataError, match=r"metric 'acc' has value 2\.5; allowed: a number in \[0, 1\]"):
        lm_eval_models([alpha], metrics=METRICS, filter_name="strict-match")
    with pytest.raises(
        DataError, match=r"holds no lm-eval sample logs \(samples_<task>_<timestamp>\.jsonl\)"
    ):
        lm_eval_models([tmp_path])
    with pytest.raises(DataError, match=r"does not exist"):
        lm_eval_models([tmp_path / "nope"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("x")
    with pytest.raises(DataError, match=r"exists and is not a routing data directory"):
        _import([root / "gamma"], tmp_path / "other")


def test_unknown_document_layout_and_prompt_field(tmp_path):
    run = tmp_path / "m1"
    run.mkdir()
    doc = {"passage": "Cats are mammals.", "idx": 0, "label": 1}
    line = {"doc_id": 0, "doc": doc, "target": "1", "filter": "none", "metrics": ["acc"], "acc": 1.0}
    (run / "samples_boolq_2024-01-01T00-00-00.000000.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(
        DataError,
        match=r"task 'boolq': cannot tell which document field holds the question .*"
        r"fields found: passage, idx, label\); pass --prompt-field FIELD or --prompt-field boolq=",
    ):
        lm_eval_models([run])
    [s] = lm_eval_models([run], prompt_fields={"boolq": "passage"})
    [q] = s.questions.values()
    assert (q.prompt, q.reference, s.model, q.benchmark) == ("Cats are mammals.", "1", "m1", "boolq")
    with pytest.raises(
        DataError, match=r"--prompt-field 'nope' is not a text field .*text fields found: passage"
    ):
        lm_eval_models([run], prompt_fields={"*": "nope"})


def test_cli_import_lm_eval(logs, tmp_path):
    root, _ = logs
    args = ["data", "import", "lm-eval", str(root), "--out", str(tmp_path / "zoo")]
    bad = runner.invoke(app, args)
    assert bad.exit_code == 2 and not (tmp_path / "zoo").exists()
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {root}/") and "/samples_gsm8k_" in last  # the file's whole path
    ok = runner.invoke(app, [*args, "--metric", "acc", "--metric", "exact_match", "--filter", "strict-match"])
    assert ok.exit_code == 0, ok.output
    assert "zoo: 100 questions × 3 models (added gamma, org/alpha-7b, org/beta-13b)" in ok.stdout
    assert "dropped 0 of 100 candidate questions" in ok.stdout
    again = runner.invoke(app, [*args, "--metric", "acc,exact_match", "--filter", "strict-match"])
    assert again.exit_code == 2 and "pass --replace" in again.stderr
    assert MODELS == ("org/alpha-7b", "org/beta-13b", "gamma")


def test_a_model_without_cost_joining_a_zoo_with_cost_drops_the_cost(tmp_path):
    from modelsat.data import ModelOutcomes, Outcome
    from modelsat.data.writer import read_routing_data_outcomes
    from tests.conftest import write_toy_data

    zoo = write_toy_data(tmp_path / "costly", with_cost=True)
    questions = read_routing_data_outcomes(zoo)[0].questions
    newbie = ModelOutcomes("newbie", "hand-made", questions, {q: Outcome(1.0) for q in questions})
    report = import_outcomes([newbie], zoo)
    assert report.notes == [
        "cost_usd dropped: no cost for newbie (a zoo has costs for every outcome or for none)"
    ]
    assert "note: cost_usd dropped: no cost for newbie" in "\n".join(report.lines())
    z = load_routing_data(zoo)
    assert z.costs is None and z.models[-1] == "newbie" and z.n_questions == 160
    assert validate_routing_data(zoo) == []  # the fixture's made-up accuracies were recomputed


@pytest.mark.parametrize(
    "line, fragment",
    [
        (b"[1, 2]\n", r":26: a JSON list, not an object \(an lm-eval --log_samples line is an object"),
        (b"null\n", r":26: a JSON NoneType, not an object"),
        (b"7\n", r":26: a JSON int, not an object"),
        (b'{"doc_id": 99, "doc": {"sentence": "caf\xe9"}}\n', r":26: not UTF-8 text \(byte 39 of the line"),
    ],
)
def test_a_bad_samples_line_is_a_data_error_naming_file_and_line(logs, tmp_path, line, fragment):
    root, _ = logs
    out = tmp_path / "zoo"
    _import([root / "gamma", root / "org__alpha-7b"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with open(_samples(root, "org/beta-13b", "winogrande"), "ab") as f:
        f.write(line)
    with pytest.raises(DataError, match=r"samples_winogrande_.*\.jsonl" + fragment):
        _import([root / "org__beta-13b"], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "zoo"]


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"[]", r"results_.*\.json is a JSON list; an lm-eval results file is an object"),
        (
            b'{"model_name": "\xff"}',
            r"results_.*\.json is not a readable lm-eval results file: 'utf-8' codec",
        ),
        (b'{"model_name": 3}', r"results_.*\.json: 'model_name' is 3; allowed: text"),
        (
            b'{"group_subtasks": ["mmlu"]}',
            r"'group_subtasks' must be an object of group -> list of task names",
        ),
    ],
)
def test_a_bad_results_file_is_a_data_error_naming_it(logs, tmp_path, content, fragment):
    root, _ = logs
    next((root / "gamma").glob("results_*.json")).write_bytes(content)
    with pytest.raises(DataError, match=fragment):
        _import([root / "gamma"], tmp_path / "zoo")
    assert not (tmp_path / "zoo").exists()
