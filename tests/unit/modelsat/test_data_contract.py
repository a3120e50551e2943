"""The zoo schema as a contract: `validate_routing_data` reports every problem, `routing_data_stats` the figures, and a newcomer
without a data root is told how to get data."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelsat.cli import app
from modelsat.data import load_routing_data, routing_data_stats, stats_markdown, validate_routing_data
from modelsat.data.schema import COLUMNS, FILES, arrow_schema, render_multiple_choice
from modelsat.errors import DataError
from tests.conftest import SHARED_DATA

runner = CliRunner()


def _rewrite(path: Path, fn) -> None:
    pq.write_table(pa.Table.from_pylist(fn(pq.read_table(path).to_pylist())), path)


def _consistent_models(zoo: Path) -> None:
    """Give the toy zoo's models.parquet the true accuracies (the fixture writes 0.5 for every model)."""
    z = load_routing_data(zoo)
    acc = dict(zip(z.models, z.outcomes.mean(0).tolist(), strict=True))
    _rewrite(zoo / "models.parquet", lambda rows: [{**r, "accuracy": acc[r["model"]]} for r in rows])


def test_contract_covers_every_file_and_documents_every_column():
    assert {c.file for c in COLUMNS} == set(FILES)
    for f in FILES:
        assert len(arrow_schema(f)) == sum(c.file == f for c in COLUMNS)
    assert all(c.meaning for c in COLUMNS)
    assert render_multiple_choice("Q?", ["x", " y "]) == "Q?\nA. x\nB.  y "
    with pytest.raises(ValueError, match="unknown zoo file 'x.parquet'; allowed: questions.parquet"):
        arrow_schema("x.parquet")


def test_valid_zoo_has_no_problems(toy_data):
    _consistent_models(toy_data)
    assert validate_routing_data(toy_data) == []


def test_every_problem_is_reported_at_once(toy_data):
    def questions(rows):
        rows[1]["question_id"] = rows[0]["question_id"]  # duplicate id (and toy/algebra/1 loses its question)
        rows[2]["split"] = "dev"
        rows[3]["prompt"] = ""
        return rows

    def outcomes(rows):
        rows[7]["score"] = 1.5
        rows.append({**rows[0], "model": "zeta"})
        return [r for r in rows if not (r["model"] == "beta" and r["question_id"] == "toy/law/3")]

    _rewrite(toy_data / "questions.parquet", questions)
    _rewrite(toy_data / "outcomes.parquet", outcomes)
    problems = [str(p) for p in validate_routing_data(toy_data)]
    expected = [
        r"questions\.parquet: column 'prompt' is empty in 1 rows",
        r"questions\.parquet: duplicated question_id: 1 ids \('toy/algebra/0'\)",
        r"questions\.parquet: column 'split' has values 'dev'; allowed: train, test",
        r"outcomes\.parquet: column 'score' is outside \[0, 1\] or missing in 1 rows \(1\.5 for ",
        r"outcomes\.parquet: 1 question_ids are not in questions\.parquet \('toy/algebra/1'\)",
        r"outcomes\.parquet: models 'zeta' are not listed in models\.parquet",
        r"outcomes\.parquet: model 'beta' is missing outcomes for 1 of 160 questions \('toy/law/3'\)",
        r"models\.parquet: model 'alpha': accuracy is 0\.500000 but the mean score",
    ]
    import re

    for pattern in expected:
        assert any(re.search(pattern, p) for p in problems), (pattern, problems)


def test_missing_files_columns_and_types(tmp_path, toy_data):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert [str(p) for p in validate_routing_data(empty)] == [
        f"{f}: missing (a routing data directory holds questions.parquet, outcomes.parquet, models.parquet)"
        for f in FILES
    ]
    _rewrite(
        toy_data / "questions.parquet",
        lambda rows: [{**{k: v for k, v in r.items() if k != "task"}, "prompt": 7} for r in rows],
    )
    (toy_data / "models.parquet").write_text("not parquet")
    problems = [str(p) for p in validate_routing_data(toy_data)]
    assert any("missing column 'task' (required: question_id, benchmark, task, prompt" in p for p in problems)
    assert "questions.parquet: column 'prompt' has type int64; allowed: string" in problems
    assert any(p.startswith("models.parquet: not a readable parquet file") for p in problems)


@pytest.mark.parametrize("name", ["routerbench", "zeroeval", "llmrouter"])
def test_shared_zoos_are_valid(name):
    if not (SHARED_DATA / name).is_dir():
        pytest.skip("shared data absent")
    assert validate_routing_data(SHARED_DATA / name) == []


def test_stats_figures(toy_data):
    z = load_routing_data(toy_data)
    s = routing_data_stats(z)
    y = z.outcomes.astype(np.float64)
    assert s["overall"]["best_single"] == pytest.approx(y.mean(0).max())
    assert s["overall"]["best_single_model"] == z.models[int(y.mean(0).argmax())]
    assert s["overall"]["oracle"] == pytest.approx(y.max(1).mean())
    assert s["overall"]["random"] == pytest.approx(y.mean())
    assert s["benchmarks"] == {"toy": 160} and s["n_outcomes"] == 800
    assert [m["accuracy"] for m in s["models"]] == sorted((m["accuracy"] for m in s["models"]), reverse=True)
    md = stats_markdown(s)
    assert md.startswith("## zoo toy: 160 questions × 5 models (800 outcomes)")
    assert f"| all | 160 | {s['overall']['best_single_model']} |" in md


def test_stats_of_shared_routerbench_match_its_readme():
    if not (SHARED_DATA / "routerbench").is_dir():
        pytest.skip("shared data absent")
    s = routing_data_stats(load_routing_data(SHARED_DATA / "routerbench"))
    o = s["overall"]
    assert o["best_single_model"] == "gpt-4-1106-preview"
    assert (round(100 * o["best_single"], 1), round(100 * o["oracle"], 1), round(100 * o["random"], 1)) == (
        88.4,
        97.7,
        67.9,
    )
    assert s["benchmarks"] == {"arc_c": 1165, "mbpp": 342, "winogrande": 1014}


def test_cli_validate_and_stats(toy_data):
    _consistent_models(toy_data)
    ok = runner.invoke(app, ["data", "validate", str(toy_data)])
    assert ok.exit_code == 0, ok.output
    assert (
        ok.stdout.startswith("ok: ")
        and "160 questions × 5 models (800 outcomes); benchmarks: toy 160" in ok.stdout
    )
    stats = runner.invoke(app, ["data", "stats", str(toy_data)])
    assert stats.exit_code == 0 and "| model | accuracy % |" in stats.stdout
    _rewrite(toy_data / "questions.parquet", lambda rows: [{**r, "split": "dev"} for r in rows])
    _rewrite(toy_data / "outcomes.parquet", lambda rows: [{**r, "score": 2.0} for r in rows])
    bad = runner.invoke(app, ["data", "validate", str(toy_data)])
    assert bad.exit_code == 2
    assert bad.stdout.count("\n- ") + bad.stdout.startswith("- ") >= 3  # split, score, accuracy mismatch ...
    assert bad.stderr.strip().splitlines() == [
        f"error: {toy_data}: {bad.stdout.count('- ')} problem(s), listed above"
    ]
    missing = runner.invoke(app, ["data", "stats", str(toy_data / "nope")])
    assert missing.exit_code == 2 and "does not exist" in missing.stderr


@pytest.fixture
def newcomer(tmp_path, monkeypatch):
    """A checkout with no ../shared/data, no data/ and no $MODELSAT_DATA."""
    import modelsat.paths

    repo = tmp_path / "checkout" / "model-sat"
    repo.mkdir(parents=True)
    monkeypatch.delenv("MODELSAT_DATA", raising=False)
    monkeypatch.setattr(modelsat.paths, "repo_root", lambda: repo)
    monkeypatch.chdir(tmp_path)
    return repo


def test_newcomer_is_told_how_to_get_data(newcomer):
    from modelsat.paths import data_root, data_root_found

    assert not data_root_found() and data_root() == newcomer / "data"
    with pytest.raises(DataError) as e:
        load_routing_data("mmlu_pro")
    msg = str(e.value)
    assert "no data root ($MODELSAT_DATA is unset and neither" in msg and "\n" not in msg
    assert f"modelsat data fetch mmlu-pro --out {newcomer / 'data' / 'mmlu_pro'}" in msg
    assert "modelsat run --fetch-data" in msg and "modelsat data import lm-eval RESULTS_DIR" in msg
    result = runner.invoke(app, ["run", "--out", str(newcomer / "runs")])  # the main job, bundled config
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: zoo 'mmlu_pro' not found: no data root")
    assert not (newcomer / "runs").exists()


def test_local_data_dir_is_the_fallback_data_root(newcomer, toy_data):
    import shutil

    shutil.copytree(toy_data, newcomer / "data" / "mine")
    assert load_routing_data("mine").n_models == 5
    with pytest.raises(DataError, match=r"zoo name under the data root .*/data: mine\)"):
        load_routing_data("mmlu_pro")


def test_run_fetch_data_only_fetches_the_public_zoo(toy_data, tmp_path):
    result = runner.invoke(
        app, ["run", "--data", str(toy_data), "--fetch-data", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "--fetch-data fetches the public mmlu_pro zoo; data.routing_data is" in result.stderr


def test_readme_documents_every_column():
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    section = readme[readme.index("## Routing data") : readme.index("### Bring your own outcomes")]
    for c in COLUMNS:
        assert f"| `{c.name}` |" in section and c.meaning in section, c.name
