"""The main job's path on real data: real MiniLM weights, a slice of the shared routerbench zoo, the CLI."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modelsat.cli import app
from tests.conftest import routerbench_slice, toy_run

pytestmark = [
    pytest.mark.integration,
]
runner = CliRunner()


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """120 questions per benchmark of routerbench (11 real models, with cost)."""
    return routerbench_slice(tmp_path_factory.mktemp("zoo") / "routerbench_small", per_benchmark=120)


@pytest.fixture(scope="module")
def config(tmp_path_factory, small_data) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "small.yaml"
    p.write_text(
        f"data: {{routing_data: {small_data}, unseen_models: [claude-v1]}}\n"
        "aptitude: {n_tasks: 3, items_per_task: 15}\n"
        "train: {max_steps: 60, eval_every: 20, groups_per_step: 16}\n"
    )
    return p


@pytest.fixture(scope="module")
def main_job(tmp_path_factory, config) -> Path:
    out = tmp_path_factory.mktemp("run") / "small"
    result = runner.invoke(app, ["run", "--config", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| Model-SAT |" in result.stdout and "best single model" in result.stdout
    return out


def test_main_job_writes_checkpoint_report_and_plots(main_job):
    report = json.loads((main_job / "report" / "report.json").read_text())
    assert report["unseen_models"] == ["claude-v1"] and len(report["models"]) == 11
    assert {"model_sat", "best_single", "oracle", "random", "knn", "mlp", "mf"} <= set(report["methods"])
    share = report["methods"]["model_sat"]["choice_share"]
    assert sum(share.values()) == pytest.approx(1.0) and set(share) <= set(report["models"])
    assert "cost_sweep" in report and report["cost_sweep"]["model_sat"][0]["lambda"] == 0.0
    names = {p.name for p in (main_job / "report").iterdir()}
    assert {"report.json", "report.md", "accuracy.png", "choice_share.png", "cost_accuracy.png"} <= names
    training = json.loads((main_job / "checkpoint" / "training.json").read_text())
    assert report["n_questions"] == len(training["held_out_ids"])


def test_eval_later_reproduces_the_same_held_out_result(main_job, small_data, tmp_path):
    first = json.loads((main_job / "report" / "report.json").read_text())
    result = runner.invoke(
        app,
        [
            "eval",
            "--router-checkpoint",
            str(main_job / "checkpoint"),
            "--data",
            str(small_data),
            "--out",
            str(tmp_path / "again"),
        ],
    )
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["n_questions"] == first["n_questions"]
    for name in ("model_sat", "best_single", "oracle", "random"):
        assert again["methods"][name]["accuracy"] == pytest.approx(first["methods"][name]["accuracy"])


def test_checkpoint_loads_alone_and_routes(main_job):
    import torch

    from modelsat.router import RouterModel, tokenize_instructions
    from modelsat.router.checkpoint import RouterCheckpoint

    model = RouterModel.from_pretrained(main_job / "checkpoint")
    ckpt = RouterCheckpoint.load(main_job / "checkpoint")
    acc = torch.as_tensor(np.stack([p.accuracies for p in ckpt.profiles.values()]))
    t = tokenize_instructions(
        ckpt.tokenizer, ["Which gas do plants absorb?\nA. Oxygen\nB. Carbon dioxide"], model.config
    )
    with torch.no_grad():
        assert model(**t, accuracies=acc).shape == (1, 10)  # 10 training models
    result = runner.invoke(
        app,
        ["route", "--router-checkpoint", str(main_job / "checkpoint"), "Write a function to reverse a list."],
    )
    assert result.exit_code == 0, result.output
    assert "chosen model:" in result.stdout and result.stdout.count("| ") >= 10


@pytest.fixture
def toy_run_config(toy_data, tiny_bert, tmp_path):
    import yaml

    p = tmp_path / "toy.yaml"
    p.write_text(yaml.safe_dump(toy_run(toy_data, tiny_bert)))
    return p


def test_a_failed_serving_stage_keeps_checkpoint_report_and_registry(toy_run_config, tmp_path, monkeypatch):
    out = tmp_path / "run"
    seen = {}

    def broken_stage(checkpoint, zoo, registry_dir, progress, **_):
        seen["report_before_serving"] = json.loads((out / "report" / "report.json").read_text())
        registry_dir.mkdir(parents=True)
        (registry_dir / "entry.json").write_text("{}")
        raise RuntimeError("the proxy did not start\nsecond line of detail")

    import services.stage

    monkeypatch.setattr(services.stage, "serve_held_out", broken_stage)
    result = runner.invoke(app, ["run", "--config", str(toy_run_config), "--out", str(out), "--serve"])
    assert result.exit_code == 1, result.output
    assert "serving" not in seen["report_before_serving"]  # the evaluation was on disk before serving began
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "serving stage failed: RuntimeError: the proxy did not start" in errors[0]
    log = out / "logs" / "serving.log"
    assert str(log) in errors[0] and "second line of detail" in log.read_text()
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["serving"] == {"error": "RuntimeError: the proxy did not start", "log": str(log)}
    assert report["methods"]["model_sat"] == seen["report_before_serving"]["methods"]["model_sat"]
    assert "**Failed**: RuntimeError" in (out / "report" / "report.md").read_text()
    assert (out / "checkpoint" / "config.json").is_file() and (out / "registry" / "entry.json").is_file()
