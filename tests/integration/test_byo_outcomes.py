"""Bring your own outcomes: hand-written lm-eval logs of 3 models → `modelsat data import lm-eval` → `modelsat
train` → `modelsat eval` (a tiny router, seconds of training)."""

import json

import pytest
from typer.testing import CliRunner

from modelsat.cli import app
from tests.lmeval_logs import write_lm_eval_logs

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_imported_lm_eval_zoo_trains_and_evaluates(tmp_path, tiny_bert):
    logs = tmp_path / "lm-eval-results"
    write_lm_eval_logs(logs, n_per_task=30)  # 4 tasks × 30 documents × 3 models
    zoo = tmp_path / "data" / "my_zoo"
    imported = runner.invoke(
        app,
        ["data", "import", "lm-eval", str(logs), "--out", str(zoo), "--metric", "acc,exact_match"]
        + ["--filter", "strict-match"],
    )
    assert imported.exit_code == 0, imported.output
    assert "zoo: 120 questions × 3 models" in imported.stdout
    valid = runner.invoke(app, ["data", "validate", str(zoo)])
    assert valid.exit_code == 0 and valid.stdout.startswith("ok: "), valid.output
    stats = runner.invoke(app, ["data", "stats", str(zoo)])
    assert stats.exit_code == 0 and "| gsm8k | 30 | org/beta-13b |" in stats.stdout, stats.output

    config = tmp_path / "tiny.yaml"
    config.write_text(
        "aptitude: {n_tasks: 4, items_per_task: 4}\n"
        f"router: {{backbone: {tiny_bert}, capability_encoder: {tiny_bert}, router_hidden_size: 16, num_heads: 2}}\n"
        "train: {max_steps: 40, eval_every: 10, groups_per_step: 8}\n"
        "eval: {baselines: [knn, mf]}\n"
    )
    ckpt = tmp_path / "ckpt"
    trained = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(zoo),
            "--out",
            str(ckpt),
            "--config",
            str(config),
            "--unseen-models",
            "gamma",
        ],
    )
    assert trained.exit_code == 0, trained.output
    training = json.loads((ckpt / "training.json").read_text())
    assert training["training_models"] == ["org/alpha-7b", "org/beta-13b"]
    assert all(q.startswith("lm_eval/") for q in training["held_out_ids"])

    evaluated = runner.invoke(
        app,
        [
            "eval",
            "--router-checkpoint",
            str(ckpt),
            "--data",
            str(zoo),
            "--out",
            str(tmp_path / "report"),
            "--config",
            str(config),
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["n_questions"] == len(training["held_out_ids"]) and report["unseen_models"] == ["gamma"]
    assert set(report["models"]) == {"gamma", "org/alpha-7b", "org/beta-13b"}
    assert {"model_sat", "best_single", "oracle", "random", "knn", "mf"} <= set(report["methods"])
    oracle = report["methods"]["oracle"]["accuracy"]
    assert all(0.0 <= m["accuracy"] <= oracle + 1e-9 for m in report["methods"].values())
    assert set(report["methods"]["model_sat"]["per_benchmark"]) <= {"arc_easy", "gsm8k", "mmlu", "winogrande"}
    assert "| Model-SAT |" in evaluated.stdout
