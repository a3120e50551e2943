"""Importing MMLU-Pro result archives (TIGER-AI-Lab/MMLU-Pro `eval_results/model_outputs_<model>_5shots.zip`)."""

import json
import zipfile

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelsat.cli import app
from modelsat.data import import_outcomes, load_routing_data, mmlu_pro_models, validate_routing_data
from modelsat.data.merge import GOLD_DIFFERS, MISSING, TEXT_DIFFERS
from modelsat.data.mmlu_pro import ARCHIVE_MODELS, SHARED_ZOO_MODELS, read_mmlu_pro_archive
from modelsat.errors import DataError
from tests.conftest import SHARED_DATA
from tests.mmlu_pro_archives import archives_from_shared, shared_rows, split_prompt, write_archive

runner = CliRunner()
MMLU_PRO = SHARED_DATA / "mmlu_pro"


def _rec(qid, question="What is 2 + 2?", options=("3", "4", "5"), answer="B", pred="B", **kw):
    return {
        "question_id": qid,
        "question": question,
        "options": list(options),
        "answer": answer,
        "answer_index": "ABCDEFGHIJ".index(answer),
        "cot_content": "",
        "category": "math",
        "src": "ori_mmlu-elementary_mathematics",
        "pred": pred,
        "generated_text": "Let's think step by step. " * 30 + f"The answer is ({pred}).",
        **kw,
    }


def test_archives_built_from_shared_rows_convert_back_to_the_same_rows(tmp_path):
    prompts = pq.read_table(MMLU_PRO / "questions.parquet", columns=["question_id", "prompt"]).to_pylist()
    ids = [r["question_id"] for r in prompts[::80]]  # 103 questions
    ids += [r["question_id"] for r in prompts if "\n\n" in r["prompt"]][:3]  # options spanning lines
    models = list(SHARED_ZOO_MODELS[:6])
    archives = archives_from_shared(MMLU_PRO, tmp_path / "archives", ids, models, members=14, tails=False)
    report = import_outcomes(mmlu_pro_models(list(archives.values())), tmp_path / "zoo")
    assert report.n_questions == len(set(ids)) and not report.dropped
    questions, outcomes = shared_rows(MMLU_PRO, ids, models, tails=False)
    want = sorted(questions, key=lambda r: int(r["question_id"].split("/")[1]))
    assert pq.read_table(tmp_path / "zoo" / "questions.parquet").to_pylist() == want  # prompt, reference, ...
    got = pq.read_table(tmp_path / "zoo" / "outcomes.parquet").to_pylist()
    assert len(got) == len(outcomes) == len(ids) * len(models)
    for r in got:
        w = outcomes[(r["question_id"], r["model"])]
        assert (r["score"], r["response_tail"]) == (w["score"], w["response_tail"][-400:])
    m = pq.read_table(tmp_path / "zoo" / "models.parquet").to_pylist()
    assert [x["model"] for x in m] == models
    assert m[0]["source_repo"] == f"TIGER-AI-Lab/MMLU-Pro:model_outputs_{models[0]}_5shots.zip"
    assert validate_routing_data(tmp_path / "zoo") == []


def test_split_prompt_inverts_rendering():
    assert split_prompt("Q\nline 2\nA. x\nB. y\ncontinued\nC. z") == ("Q\nline 2", ["x", "y\ncontinued", "z"])


def test_drops_are_counted_by_reason_and_scoring_is_strict(tmp_path):
    a = [
        _rec(1),
        _rec(2),
        _rec(3, answer="B"),
        _rec(4),
        _rec(5, question="What  is 2 + 2?\n"),
        _rec(6, options=("3", "4", "5", "N/A", "N/A"), pred=None),
    ]
    b = [
        _rec(1, pred="C"),
        _rec(3, answer="C", pred="C"),  # a revised gold letter
        _rec(4, question="What is 3 + 1?"),  # another question under the same id
        _rec(5),  # whitespace differs only: kept
        _rec(6),
        _rec(7),  # only in b
    ]
    paths = [
        write_archive(tmp_path / "model_outputs_m-a_5shots.zip", a),
        write_archive(tmp_path / "model_outputs_m-b_5shots.zip", b, members=1),
    ]
    report = import_outcomes(mmlu_pro_models(paths), tmp_path / "zoo")
    assert report.dropped == {MISSING: 2, GOLD_DIFFERS: 1, TEXT_DIFFERS: 1}
    assert report.missing_by_model == {"m-a": 1, "m-b": 1}
    zoo = load_routing_data(tmp_path / "zoo")
    assert zoo.question_ids.tolist() == ["mmlu_pro/1", "mmlu_pro/5", "mmlu_pro/6"]
    assert zoo.prompts[0] == "What is 2 + 2?\nA. 3\nB. 4\nC. 5" and zoo.references.tolist() == ["B"] * 3
    assert zoo.prompts[2] == "What is 2 + 2?\nA. 3\nB. 4\nC. 5"  # "N/A" padding dropped
    assert zoo.outcomes.tolist() == [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]  # a null pred is wrong
    assert zoo.tasks[0] == "ori_mmlu-elementary_mathematics" and zoo.categories[0] == "math"
    tail = pq.read_table(tmp_path / "zoo" / "outcomes.parquet")["response_tail"][0].as_py()
    assert len(tail) == 400 and tail.endswith("The answer is (B).")
    lines = "\n".join(report.lines())
    assert "2 missing for some model" in lines and "mmlu_pro/3 ('B' vs 'C')" in lines


def test_bad_archives_are_named(tmp_path):
    (tmp_path / "model_outputs_x_5shots.zip").write_text("not a zip")
    with pytest.raises(DataError, match=r"model_outputs_x_5shots\.zip is not a readable zip archive"):
        read_mmlu_pro_archive(tmp_path / "model_outputs_x_5shots.zip")
    with zipfile.ZipFile(tmp_path / "model_outputs_y_5shots.zip", "w") as z:
        z.writestr("summary.json", json.dumps({"acc": 1}))
    with pytest.raises(DataError, match=r"holds no MMLU-Pro result records"):
        read_mmlu_pro_archive(tmp_path / "model_outputs_y_5shots.zip")
    bad = _rec(1)
    del bad["options"]
    write_archive(tmp_path / "model_outputs_z_5shots.zip", [_rec(0), bad])
    with pytest.raises(DataError, match=r"results\.json record 1: missing 'options' \(MMLU-Pro records have"):
        read_mmlu_pro_archive(tmp_path / "model_outputs_z_5shots.zip")
    write_archive(tmp_path / "model_outputs_w_5shots.zip", [_rec(0, answer="E")])
    with pytest.raises(
        DataError, match=r"gold answer 'E' \(answer_index 4\) is not one of the 3 option letters ABC"
    ):
        read_mmlu_pro_archive(tmp_path / "model_outputs_w_5shots.zip")
    write_archive(tmp_path / "results.zip", [_rec(0)])
    with pytest.raises(DataError, match=r"cannot tell the model of 'results\.zip' .*pass --model NAME"):
        read_mmlu_pro_archive(tmp_path / "results.zip")
    assert read_mmlu_pro_archive(tmp_path / "results.zip", model="mine").model == "mine"
    write_archive(tmp_path / "model_outputs_d_5shots.zip", [_rec(0), _rec(0, pred="A"), _rec(1), _rec(1)])
    dup = read_mmlu_pro_archive(tmp_path / "model_outputs_d_5shots.zip")
    assert list(dup.questions) == ["mmlu_pro/1"] and sum(dup.dropped.values()) == 1


def test_known_archive_models():
    assert len(ARCHIVE_MODELS) == 29 and set(SHARED_ZOO_MODELS) < set(ARCHIVE_MODELS)
    if MMLU_PRO.is_dir():
        assert set(SHARED_ZOO_MODELS) == set(pq.read_table(MMLU_PRO / "models.parquet")["model"].to_pylist())


def test_cli_import_mmlu_pro(tmp_path):
    paths = [
        write_archive(tmp_path / "model_outputs_m-a_5shots.zip", [_rec(1), _rec(2, pred=None)]),
        write_archive(tmp_path / "model_outputs_m-b_5shots.zip", [_rec(1, pred="A"), _rec(2)]),
    ]
    out = tmp_path / "zoo"
    ok = runner.invoke(app, ["data", "import", "mmlu-pro", *map(str, paths), "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    assert "zoo: 2 questions × 2 models (added m-a, m-b)" in ok.stdout
    again = runner.invoke(app, ["data", "import", "mmlu-pro", str(paths[0]), "--out", str(out)])
    assert again.exit_code == 2 and "model 'm-a' is already in" in again.stderr
    one = runner.invoke(
        app, ["data", "import", "mmlu-pro", *map(str, paths), "--model", "x", "--out", str(out)]
    )
    assert (
        one.exit_code == 2 and "--model names the model of one archive; 2 archives were given" in one.stderr
    )


def _zoo_snapshot(root):
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


def test_a_zip_bomb_is_refused_before_it_is_inflated_and_nothing_is_written(tmp_path, monkeypatch):
    import modelsat.data.mmlu_pro as mp

    out = tmp_path / "zoo"
    good = [
        write_archive(tmp_path / "model_outputs_m-a_5shots.zip", [_rec(1), _rec(2)]),
        write_archive(tmp_path / "model_outputs_m-b_5shots.zip", [_rec(1), _rec(2, pred="A")]),
    ]
    import_outcomes(mmlu_pro_models(good), out)
    before = _zoo_snapshot(out)
    monkeypatch.setattr(mp, "MAX_MEMBER_BYTES", 50_000)
    bomb = tmp_path / "model_outputs_m-c_5shots.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("m-c/results.json", json.dumps([_rec(1)]))
        z.writestr("m-c/huge.json", b"[" + b" " * 60_000 + b"]")  # 60 kB inflated from a few hundred bytes
    assert bomb.stat().st_size < 2_000
    with pytest.raises(
        DataError,
        match=r"model_outputs_m-c_5shots\.zip:m-c/huge\.json declares 60,002 uncompressed bytes .*allowed: at "
        r"most 50,000 per member and [\d,]+ per archive \(a zip bomb",
    ):
        import_outcomes(mmlu_pro_models([bomb]), out)
    monkeypatch.setattr(mp, "MAX_MEMBER_BYTES", 1 << 20)
    monkeypatch.setattr(mp, "MAX_ARCHIVE_BYTES", 60_000)  # the members together
    with pytest.raises(
        DataError, match=r"declares 60,002 uncompressed bytes \([\d,]+ for the archive so far\)"
    ):
        read_mmlu_pro_archive(bomb)
    assert _zoo_snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary zoo


@pytest.mark.parametrize(
    "member, fragment",
    [
        (b'[{"question_id": 1,\n "question": "\xff\xfe"}]', r"results\.json:2: not UTF-8 text"),
        (b'[{"question_id": 1},\n {"question_id": 2,', r"results\.json:2: not JSON \("),
        (b"[[1, 2]]", r"results\.json record 0: is a list, expected an object"),
    ],
)
def test_a_bad_member_is_a_data_error_naming_file_and_line(tmp_path, member, fragment):
    out = tmp_path / "zoo"
    import_outcomes(
        mmlu_pro_models([write_archive(tmp_path / "model_outputs_m-a_5shots.zip", [_rec(1)])]), out
    )
    before = _zoo_snapshot(out)
    bad = tmp_path / "model_outputs_m-b_5shots.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("results.json", member)
    with pytest.raises(DataError, match=r"model_outputs_m-b_5shots\.zip:" + fragment):
        import_outcomes(mmlu_pro_models([bad]), out)
    assert _zoo_snapshot(out) == before
