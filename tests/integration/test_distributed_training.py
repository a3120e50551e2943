"""Distributed router training (Ray Train + DeepSpeed ZeRO-2 on gloo, Ray Data input) on real shared data.

A slice of routerbench (real models and outcomes, real MiniLM weights), a local Ray cluster of 2 nodes, short
runs. Every run writes the same self-contained router directory as the single-process path.
"""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cluster import local_multinode_cluster
from jobs.launcher import DistributedOptions, train_distributed
from modelsat.cli import app
from modelsat.router import RouterCheckpoint, RouterModel, tokenize_instructions
from modelsat.runconfig import RunConfig
from tests.conftest import routerbench_slice

pytestmark = [
    pytest.mark.integration,
]
runner = CliRunner()
MAX_STEPS, EVERY = 12, 4


@pytest.fixture(scope="module")
def run_config(tmp_path_factory) -> RunConfig:
    zoo = routerbench_slice(tmp_path_factory.mktemp("zoo") / "routerbench_slice", per_benchmark=100)
    return RunConfig.from_dict(
        {
            "data": {"routing_data": str(zoo), "unseen_models": ["claude-v1"]},
            "aptitude": {"n_tasks": 3, "items_per_task": 15},
            "train": {"max_steps": MAX_STEPS, "eval_every": EVERY, "groups_per_step": 16, "seed": 3},
        },
        source="test",
    )


def _train(run_config: RunConfig, root: Path, **options):
    out = root / "router"
    opts = DistributedOptions(
        workers=options.pop("workers", 2),
        storage_path=str(root / "storage"),
        checkpoint_every=options.pop("checkpoint_every", EVERY),
        **options,
    )
    _, summary = train_distributed(run_config, out, opts)
    return out, summary, json.loads((out / "training.json").read_text())


@pytest.fixture(scope="module")
def two_node_run(run_config, tmp_path_factory):
    """2 workers, one per node of a 2-node local cluster (SPREAD placement), DeepSpeed ZeRO-2 on gloo."""
    root = tmp_path_factory.mktemp("two_nodes")
    with local_multinode_cluster([{"num_cpus": 2}, {"num_cpus": 2}]) as info:
        assert info.nodes == 2
        return _train(run_config, root, workers=2, address=info.address, placement_strategy="SPREAD")


def test_two_workers_on_two_nodes_train_and_the_checkpoint_scores(two_node_run):
    out, summary, training = two_node_run
    history = training["history"]
    assert [h["step"] for h in history] == [4, 8, 12]
    assert (
        training["distributed"]["workers"] == 2
        and training["distributed"]["deepspeed"]["zero_optimization"]["stage"] == 2
    )
    # The loss decreases: validation BCE (the whole validation split, not one noisy batch) falls.
    assert history[-1]["val_bce"] < history[0]["val_bce"], history
    model = RouterModel.from_pretrained(out).eval()
    ckpt = RouterCheckpoint.load(out)
    accs = torch.stack([torch.as_tensor(p.accuracies, dtype=torch.float32) for p in ckpt.profiles.values()])
    toks = tokenize_instructions(
        ckpt.tokenizer, ["Write a Python function that reverses a list."], model.config
    )
    with torch.no_grad():
        scores = model(toks["input_ids"], toks["attention_mask"], accs)
    assert scores.shape == (1, len(ckpt.profiles)) and torch.isfinite(scores).all()
    assert scores.std() > 0  # the candidates are told apart


def test_cli_routes_with_the_distributed_checkpoint(two_node_run):
    out, _, _ = two_node_run
    result = runner.invoke(
        app, ["route", "--router-checkpoint", str(out), "--json", "Which is heavier, a kilo of feathers?"]
    )
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)[0]
    assert decision["model_id"] in decision["scores"]


def test_a_failed_worker_resumes_from_the_last_checkpoint(run_config, tmp_path, monkeypatch):
    from jobs.launcher import TEST_FAIL_AT_STEP_ENV

    monkeypatch.setenv(TEST_FAIL_AT_STEP_ENV, "6")  # a test hook, not an option of DistributedOptions
    out, summary, training = _train(run_config, tmp_path, workers=2, max_failures=1)
    assert list((tmp_path / "storage").rglob(".fail-once-6")), "the test hook did not fire"
    # Restarted once, from the step-4 checkpoint: steps 1–4 were not repeated (only 5–6, never checkpointed).
    assert training["distributed"]["resumed_from"] == [4]
    assert [h["step"] for h in training["history"]] == [4, 8, 12]
    assert summary["steps_done"] == MAX_STEPS and (out / "model.safetensors").is_file()


def test_one_and_two_workers_reach_a_comparable_validation_loss(run_config, tmp_path, two_node_run):
    # Same seed, data and global batch; 2 workers average two half-batch gradients, 1 worker takes the full
    # batch, and the local shuffle orders rows differently. After 12 steps the validation BCE of both is
    # ~0.4–0.6 nats; 0.1 nats is several times the spread we measured between the two (and between seeds).
    _, _, one = _train(run_config, tmp_path, workers=1, checkpoint_every=MAX_STEPS)
    _, _, two = two_node_run
    # one checkpoint (the end), yet a validation point every eval_every steps, as on the single-process path
    assert [h["step"] for h in one["history"]] == [4, 8, 12]
    a, b = one["history"][-1]["val_bce"], two["history"][-1]["val_bce"]
    assert abs(a - b) < 0.1, (a, b)


# ------------------------------------------------------------------------------------------------ bad input
def _cli(*args: str):
    return runner.invoke(app, ["train", *args])


def test_invalid_deepspeed_config_is_refused_before_any_worker_starts(run_config, tmp_path):
    bad = tmp_path / "ds.json"
    bad.write_text(json.dumps({"zero_optimization": {"stage": 7}}))
    out = tmp_path / "router"
    r = _cli(
        "--data",
        run_config.data.routing_data,
        "--out",
        str(out),
        "--workers",
        "2",
        "--deepspeed-config",
        str(bad),
    )
    assert r.exit_code == 2 and "zero_optimization.stage = 7" in r.output and "0, 1, 2, 3" in r.output
    bad.write_text("{not json")
    r = _cli(
        "--data",
        run_config.data.routing_data,
        "--out",
        str(out),
        "--workers",
        "2",
        "--deepspeed-config",
        str(bad),
    )
    assert r.exit_code == 2 and "not valid JSON" in r.output
    assert not out.exists()


def test_more_workers_than_the_cluster_can_place_fails_fast(run_config, tmp_path):
    out = tmp_path / "router"
    r = _cli("--data", run_config.data.routing_data, "--out", str(out), "--workers", "64")
    assert r.exit_code == 2, r.output
    assert "cannot place 64 workers" in r.output and "CPU" in r.output
    assert not out.exists()


def test_unreachable_address_is_a_clear_error(run_config, tmp_path):
    out = tmp_path / "router"
    r = _cli(
        "--data",
        run_config.data.routing_data,
        "--out",
        str(out),
        "--workers",
        "2",
        "--address",
        "127.0.0.1:9",
    )
    assert r.exit_code == 2 and "cannot reach a Ray cluster at '127.0.0.1:9'" in r.output
    assert not out.exists()


def test_unwritable_storage_path_is_refused(run_config, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = tmp_path / "router"
    r = _cli(
        "--data",
        run_config.data.routing_data,
        "--out",
        str(out),
        "--workers",
        "2",
        "--storage-path",
        str(blocker / "sub"),
    )
    assert r.exit_code == 2 and "is not writable" in r.output and str(blocker / "sub") in r.output
    assert not out.exists()


def test_distributed_flags_need_workers(run_config, tmp_path):
    r = _cli("--data", run_config.data.routing_data, "--out", str(tmp_path / "r"), "--use-gpu")
    assert r.exit_code == 2 and "--workers N" in r.output
