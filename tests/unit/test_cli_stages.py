"""Commands with several stages keep each stage's work (issue 15; the serving stage's case needs Ray Serve:
tests/integration/test_main_job.py); commands that need an optional extra say which `setup.sh` profile
installs it, before writing anything."""

import importlib.util
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from modelsat.cli import app
from tests.conftest import toy_run

runner = CliRunner()


@pytest.fixture
def toy_run_config(toy_data, tiny_bert, tmp_path):
    p = tmp_path / "toy.yaml"
    p.write_text(yaml.safe_dump(toy_run(toy_data, tiny_bert)))
    return p


def _without(monkeypatch, *modules):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in modules else real(name, *a)
    )


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["train", "--workers", "2"], "modelsat train --workers needs Ray Train, Ray Data and DeepSpeed"),
        (["registry", "add", "m1", "--engine", "recorded"], "modelsat registry add .* needs Ray Data"),
    ],
)
def test_a_missing_extra_is_one_line_naming_the_profile(
    args, pattern, toy_data, tiny_checkpoint, tmp_path, monkeypatch
):
    _without(monkeypatch, "pandas")
    out, registry = tmp_path / "ck", tmp_path / "registry"
    extra = ["--data", str(toy_data)]
    extra += (
        ["--out", str(out)]
        if args[0] == "train"
        else ["--router-checkpoint", str(tiny_checkpoint), "--registry", str(registry)]
    )
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(pattern, lines[0]) and "missing module: pandas" in lines[0]
    assert "bash scripts/setup.sh all" in lines[0]
    assert not out.exists() and not registry.exists()


def test_serving_commands_name_the_serve_profile(monkeypatch, tmp_path):
    _without(monkeypatch, "fastapi")
    cfg = tmp_path / "zoo.yaml"
    cfg.write_text("models: []\n")
    for args in (["serve", "--config", str(cfg)], ["serve", "remove-model", "m1"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert (
            "needs Ray Serve and the openai client (missing module: fastapi): bash scripts/setup.sh serve"
            in result.stderr
        )


def test_a_failed_upload_keeps_the_trained_checkpoint(toy_run_config, monkeypatch):
    import modelsat.storage
    from modelsat.errors import ModelSATError

    def refuse(local, uri):
        raise ModelSATError(f"copying {local} to {uri!r}: access denied")

    monkeypatch.setattr(modelsat.storage, "upload_dir", refuse)
    result = runner.invoke(
        app, ["train", "--config", str(toy_run_config), "--out", "s3://bucket/routers/toy"]
    )
    assert result.exit_code == 2, result.output
    err = result.stderr.strip().splitlines()[-1]
    assert (
        "training finished but the upload to s3://bucket/routers/toy failed" in err and "access denied" in err
    )
    kept = re.search(r"the checkpoint is kept at (\S+) ", err).group(1)
    assert (Path(kept) / "config.json").is_file()
    shutil.rmtree(Path(kept).parent)
