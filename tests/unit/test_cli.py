"""Bad input on the command line (issue 2): one-line error naming the bad value and the allowed ones, exit
code 2, and nothing partial written."""

import json
import re
import shutil

from typer.testing import CliRunner

from modelsat.cli import app

runner = CliRunner()


def _fails(args, pattern, *must_not_exist):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr  # progress lines may come before it
    err = errors[0]
    assert re.search(pattern, err), err
    for p in must_not_exist:
        assert not p.exists(), f"{p} was written"
    return err


def test_unknown_unseen_model(toy_data, tmp_path):
    _fails(
        ["train", "--data", str(toy_data), "--out", str(tmp_path / "ck"), "--unseen-models", "beta,zeta"],
        r"unknown model 'zeta' in --unseen-models; allowed: alpha, beta, gamma, delta, epsilon",
        tmp_path / "ck",
    )


def test_empty_zoo_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(
        ["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "ck")],
        r"empty/questions\.parquet is missing",
        tmp_path / "ck",
    )


def test_malformed_zoo(toy_data, tmp_path):
    (toy_data / "outcomes.parquet").write_text("not parquet")
    _fails(
        ["aptitude", "--data", str(toy_data), "--out", str(tmp_path / "apt")],
        r"outcomes\.parquet is not a readable parquet file",
        tmp_path / "apt",
    )


def test_aptitude_test_impossible(toy_data, tmp_path):
    _fails(
        ["aptitude", "--data", str(toy_data), "--out", str(tmp_path / "apt")],
        r"zoo 'toy' can supply \d+ aptitude items from 4 tasks .* asks for .* = 1000",
        tmp_path / "apt",
    )
    _fails(
        ["train", "--data", str(toy_data), "--out", str(tmp_path / "ck")],
        r"can supply \d+ aptitude items",
        tmp_path / "ck",
    )


def test_checkpoint_missing(toy_data, tmp_path):
    _fails(
        [
            "eval",
            "--router-checkpoint",
            str(tmp_path / "nope"),
            "--data",
            str(toy_data),
            "--out",
            str(tmp_path / "rep"),
        ],
        r"router checkpoint '.*nope' does not exist",
        tmp_path / "rep",
    )
    _fails(["route", "--router-checkpoint", str(tmp_path / "nope"), "hello"], r"does not exist")


def test_checkpoint_incomplete(tiny_checkpoint, toy_data, tmp_path):
    (tiny_checkpoint / "aptitude_test.json").unlink()
    _fails(
        [
            "eval",
            "--router-checkpoint",
            str(tiny_checkpoint),
            "--data",
            str(toy_data),
            "--out",
            str(tmp_path / "rep"),
        ],
        r"is incomplete: missing aptitude_test\.json",
        tmp_path / "rep",
    )


def test_checkpoint_incompatible_version(tiny_checkpoint):
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    cfg["modelsat_format"] = 0
    (tiny_checkpoint / "config.json").write_text(json.dumps(cfg))
    _fails(
        ["route", "--router-checkpoint", str(tiny_checkpoint), "hi"],
        r"modelsat_format=0; this version of modelsat reads format 1",
    )


def test_empty_instruction(tiny_checkpoint):
    _fails(
        ["route", "--router-checkpoint", str(tiny_checkpoint), "ok", "  "],
        r"instruction 1 is empty \('  '\); give non-empty text",
    )


def test_unknown_candidate(tiny_checkpoint):
    _fails(
        ["route", "--router-checkpoint", str(tiny_checkpoint), "--candidates", "alpha,omega", "hi"],
        r"unknown candidate model 'omega'; known: alpha, beta",
    )


def test_route_prints_choice_and_every_score(tiny_checkpoint):
    result = runner.invoke(
        app, ["route", "--router-checkpoint", str(tiny_checkpoint), "--json", "Solve for x: 2x = 4"]
    )
    assert result.exit_code == 0, result.output
    [decision] = json.loads(result.stdout)
    assert decision["model_id"] in decision["scores"] and len(decision["scores"]) == 5


def test_failed_eval_keeps_previous_report(tiny_checkpoint, toy_data, tmp_path):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.json").write_text('{"old": true}')
    shutil.rmtree(toy_data)
    _fails(
        ["eval", "--router-checkpoint", str(tiny_checkpoint), "--data", str(toy_data), "--out", str(out)],
        r"does not exist",
    )
    assert json.loads((out / "report.json").read_text()) == {"old": True}
