"""The aptitude job on Ray Data with the three engines, the registry, and `modelsat registry` (issue 4).

Just over 400 lines: its tests share one local Ray (`ray_local`) and the OpenAI stub server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from jobs.aptitude import AptitudeJobConfig, add_models, run_aptitude_job
from jobs.engines import OpenAIEngineConfig, RecordedEngineConfig, VLLMEngineConfig
from modelsat.aptitude import (
    AptitudeConfig,
    AptitudeTask,
    AptitudeTest,
    measure_profiles,
    select_aptitude_test,
)
from modelsat.cli import app
from modelsat.data import load_routing_data
from modelsat.errors import DataError, EngineError, UnknownModelError
from modelsat.evaluate import evaluate_pipeline
from modelsat.grading import AptitudeItem, items_from_routing_data
from modelsat.registry import ModelCard, ModelRegistry
from modelsat.runconfig import EvalSection
from modelsat.split import split_routing_data
from tests.conftest import SHARED_DATA, OpenAIStub, write_toy_data

pytestmark = pytest.mark.integration


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------ recorded engine
def test_recorded_engine_rebuilds_the_mmlu_pro_profiles(ray_local):
    zoo = load_routing_data(SHARED_DATA / "mmlu_pro")
    split = split_routing_data(zoo, 0, 0.2)
    test = select_aptitude_test(zoo, split.pool, zoo.models[:20], AptitudeConfig())
    items = items_from_routing_data(test, zoo)
    job = AptitudeJobConfig(
        engine=RecordedEngineConfig(routing_data=str(zoo.path)), workers=2, batch_size=500
    )
    results = run_aptitude_job(test, items, list(zoo.models), job)
    expected = measure_profiles(test, zoo)
    assert set(results) == set(zoo.models) and test.n_items == 1000
    for m, res in results.items():
        np.testing.assert_array_equal(res.profile.accuracies, expected[m].accuracies)
        np.testing.assert_array_equal(res.profile.n_items, expected[m].n_items)
        assert res.n_unparsed == 0 and len(res.items) == 1000


# ------------------------------------------------------------------------------------------ vLLM engine
def _mc(qid: str, ref: str) -> AptitudeItem:
    return AptitudeItem(qid, "mc", "toy", f"Question {qid}?\nA. one\nB. two\nC. three\nD. four", ref)


def test_vllm_engine_runs_through_ray_data(ray_local, tiny_vllm_model):
    refs = ["A", "B", "A", "C", "A", "D"]
    items = [_mc(f"mc/{i}", r) for i, r in enumerate(refs)] + [
        AptitudeItem(f"num/{i}", "num", "gsm8k", f"What is {i} + 16?", str(i + 16)) for i in range(3)
    ]
    test = AptitudeTest(
        zoo="handmade",
        tasks=(
            AptitudeTask("mc", "k", tuple(f"mc/{i}" for i in range(6)), 0.5, 0.2),
            AptitudeTask("num", "k", tuple(f"num/{i}" for i in range(3)), 0.5, 0.2),
        ),
        seed=0,
        requested=(2, 6),
        training_models=("x",),
    )
    engine = VLLMEngineConfig(
        model_path=str(tiny_vllm_model),
        max_tokens=1,
        chat="never",
        engine_args={"dtype": "float32", "max_model_len": 512, "enforce_eager": True},
    )
    res = run_aptitude_job(test, items, ["tiny"], AptitudeJobConfig(engine=engine, batch_size=4))["tiny"]
    # the tiny model always answers "A": right on the three "A" items, nothing extractable for numbers
    np.testing.assert_allclose(res.profile.accuracies, [3 / 6, 0.0])
    assert res.profile.n_items.tolist() == [6, 3]
    assert res.n_unparsed == 3
    assert {q: r["answer"] for q, r in res.items.items() if q.startswith("mc/")} == {
        f"mc/{i}": "A" for i in range(6)
    }
    assert all(res.items[f"num/{i}"] == {"score": 0.0, "answer": None} for i in range(3))
    assert res.engine["kind"] == "vllm"


# ------------------------------------------------------------------------------------------ OpenAI engine
@pytest.fixture
def stub():
    s = OpenAIStub()
    yield s
    s.close()


def _stub_test(stub: OpenAIStub) -> tuple[AptitudeTest, list[AptitudeItem]]:
    items = [_mc(f"mc/{i}", r) for i, r in enumerate("ABCD")] + [
        AptitudeItem("num/0", "num", "gsm8k", "Question num/0: 3 + 15?", "18")
    ]
    stub.replies.update(
        {
            "mc/0?": "Let me think... The answer is (A).",  # right
            "mc/1?": "Answer: C",  # wrong
            "mc/2?": "C",  # right, bare letter
            "mc/3?": "I cannot decide.",  # nothing extractable
            "num/0": "3 + 15 = 18. The answer is 18.",  # right
        }
    )
    test = AptitudeTest(
        zoo="handmade",
        tasks=(
            AptitudeTask("mc", "k", tuple(f"mc/{i}" for i in range(4)), 0.5, 0.2),
            AptitudeTask("num", "k", ("num/0",), 0.5, 0.2),
        ),
        seed=0,
        requested=(2, 4),
        training_models=("x",),
    )
    return test, items


def test_openai_engine_grades_retries_and_times_out(ray_local, stub):
    test, items = _stub_test(stub)
    stub.fail_first.add("mc/1?")
    stub.slow_first.add("mc/2?")
    engine = OpenAIEngineConfig(base_url=stub.url, model="stub-model", timeout_s=1.0, max_retries=2)
    res = run_aptitude_job(test, items, ["stub"], AptitudeJobConfig(engine=engine, batch_size=2))["stub"]
    np.testing.assert_allclose(res.profile.accuracies, [2 / 4, 1.0])
    assert res.n_unparsed == 1
    assert [res.items[f"mc/{i}"]["answer"] for i in range(4)] == ["A", "C", "C", None]
    assert stub.attempts["mc/1?"] == 2  # retried after the 500
    assert stub.attempts["mc/2?"] == 2  # retried after the timeout
    assert stub.attempts["mc/0?"] == 1

    stub.always_status["mc/3?"] = 503
    with pytest.raises(EngineError, match=r"HTTP 503 .*'stub-model'"):
        run_aptitude_job(test, items, ["stub"], AptitudeJobConfig(engine=engine, batch_size=2))
    del stub.always_status["mc/3?"]
    stub.slow_first.add("mc/0?")
    stub.attempts.clear()
    never_fast = engine.model_copy(update={"timeout_s": 0.5, "max_retries": 0})
    with pytest.raises(EngineError, match="timed out after 0.5s"):
        run_aptitude_job(test, items, ["stub"], AptitudeJobConfig(engine=never_fast))


def test_failed_zoo_add_leaves_the_registry_byte_for_byte_unchanged(
    ray_local, stub, tiny_checkpoint, tmp_path
):
    """An engine error midway (a 400 on one item) registers nothing and changes no byte of the registry."""
    from modelsat.router import RouterCheckpoint

    ckpt = RouterCheckpoint.load(tiny_checkpoint)
    reg = ModelRegistry(tmp_path / "registry")
    reg.put(ModelCard(name="alpha"), ckpt.profiles["alpha"], {"test": "x"})
    before = _snapshot(tmp_path / "registry")
    items = _items_of(ckpt, tiny_checkpoint)
    for it in items:  # the toy zoo's items are "A"/"B" questions with reference "A"
        stub.replies[it.prompt.splitlines()[0]] = "The answer is (A)"
    stub.always_status[items[len(items) // 2].prompt.splitlines()[0]] = 400
    engine = OpenAIEngineConfig(base_url=stub.url, model="stub-model", max_retries=0)
    with pytest.raises(EngineError, match="HTTP 400"):
        add_models(
            tiny_checkpoint,
            [ModelCard(name="newcomer"), ModelCard(name="alpha")],
            AptitudeJobConfig(engine=engine, batch_size=3),
            reg,
            replace=True,
            data=tiny_checkpoint.parent / "toy",
        )
    assert _snapshot(tmp_path / "registry") == before
    assert reg.names() == ["alpha"]


def _items_of(ckpt, ckpt_dir: Path) -> list[AptitudeItem]:
    from jobs.aptitude import checkpoint_items

    return checkpoint_items(ckpt, ckpt_dir.parent / "toy")


# ------------------------------------------------------------------------------------------ CLI and routing
def _cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_registry_add_recorded_routes_a_new_model_without_retraining(ray_local, tiny_checkpoint, tmp_path):
    toy6 = write_toy_data(tmp_path / "toy6", models=("alpha", "beta", "gamma", "delta", "epsilon", "zeta"))
    reg = tmp_path / "registry"
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    r = _cli(
        "registry",
        "add",
        *names,
        "--router-checkpoint",
        tiny_checkpoint,
        "--engine",
        "recorded",
        "--data",
        tiny_checkpoint.parent / "toy",
        "--registry",
        reg,
    )
    assert r.exit_code == 0, r.output
    # the registry's profiles equal those the checkpoint computed from the same outcomes
    from modelsat.router import RouterCheckpoint

    ckpt = RouterCheckpoint.load(tiny_checkpoint)
    profiles = ModelRegistry(reg).profiles_for(ckpt.aptitude)
    for m in names:
        np.testing.assert_array_equal(profiles[m].accuracies, ckpt.profiles[m].accuracies)

    # evaluation over the registered models equals evaluation over the zoo's models
    ev = EvalSection(baselines=[])
    plain = evaluate_pipeline(ckpt, tiny_checkpoint.parent / "toy", "test", ev)
    via_registry = evaluate_pipeline(ckpt, tiny_checkpoint.parent / "toy", "test", ev, profiles=profiles)
    for method in ("model_sat", "best_single", "oracle"):
        assert via_registry["methods"][method]["accuracy"] == plain["methods"][method]["accuracy"]
    assert (
        via_registry["methods"]["model_sat"]["choice_share"] == plain["methods"]["model_sat"]["choice_share"]
    )

    # a model the checkpoint never saw joins through its aptitude test alone
    r = _cli(
        "registry",
        "add",
        "zeta",
        "--router-checkpoint",
        tiny_checkpoint,
        "--engine",
        "recorded",
        "--data",
        toy6,
        "--registry",
        reg,
        "--usd-per-mtok",
        "0.25",
    )
    assert r.exit_code == 0, r.output
    assert "zeta" not in ckpt.profiles
    r = _cli(
        "route",
        "--router-checkpoint",
        tiny_checkpoint,
        "--registry",
        reg,
        "--json",
        "Solve for x: 2x + 1 = 5.",
    )
    assert r.exit_code == 0, r.output
    decision = json.loads(r.stdout[r.stdout.index("[") :])[0]
    assert sorted(decision["scores"]) == sorted([*names, "zeta"])

    listing = _cli("registry", "list", "--registry", reg).stdout
    assert "| zeta | 1 | recorded | 20 | 0 |" in listing and "| 0.25 |" in listing
    assert "versions: 1" in _cli("registry", "show", "zeta", "--registry", reg).stdout
    assert _cli("registry", "remove", "zeta", "--registry", reg).exit_code == 0
    assert "zeta" not in _cli("registry", "list", "--registry", reg).stdout


def test_registry_add_bad_input_registers_nothing(tiny_checkpoint, tmp_path, stub):
    reg_dir = tmp_path / "registry"
    toy = tiny_checkpoint.parent / "toy"
    base = [
        "registry",
        "add",
        "alpha",
        "--router-checkpoint",
        tiny_checkpoint,
        "--registry",
        reg_dir,
        "--data",
        toy,
    ]
    assert _cli(*base, "--engine", "recorded").exit_code == 0
    before = _snapshot(reg_dir)

    def fails(*extra: str, match: str) -> None:
        r = _invoke(*base, *extra)
        assert r.exit_code == 2, r.output
        assert match in r.output, r.output
        assert _snapshot(reg_dir) == before

    fails("--engine", "tgi", match="unknown engine 'tgi'; allowed: vllm, openai, recorded")
    fails("--engine", "recorded", match="already in registry")
    fails("--engine", "recorded", "--base-url", stub.url, match="--base-url do not apply")
    fails("--engine", "openai", "--base-url", "http://127.0.0.1:9/v1", "--replace", match="is unreachable")
    fails(
        "--engine",
        "openai",
        "--base-url",
        stub.url,
        "--replace",
        match="does not serve model 'alpha'; it serves: stub-model",
    )
    fails("--engine", "vllm", "--model-path", str(tmp_path / "nope"), "--replace", match="is not a directory")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = _invoke(
        "registry",
        "add",
        "beta",
        "--router-checkpoint",
        tiny_checkpoint,
        "--engine",
        "recorded",
        "--data",
        toy,
        "--registry",
        blocker / "reg",
    )
    assert r.exit_code == 2 and "is not writable" in r.output, r.output

    # items without a gradable answer (here: no reference) are refused before any generation
    ungradable = tmp_path / "ckpt-ungradable"
    shutil.copytree(tiny_checkpoint, ungradable)
    items = [dict(it.to_dict(), reference=None) for it in _toy_items(tiny_checkpoint)]
    (ungradable / "aptitude_items.json").write_text(json.dumps(items))
    r = _invoke(
        "registry",
        "add",
        "beta",
        "--router-checkpoint",
        ungradable,
        "--engine",
        "openai",
        "--base-url",
        stub.url,
        "--registry",
        reg_dir,
    )
    assert r.exit_code == 2 and "cannot be graded" in r.output, r.output
    assert _snapshot(reg_dir) == before and sum(stub.attempts.values()) == 0


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _toy_items(ckpt_dir: Path) -> list[AptitudeItem]:
    from modelsat.router import RouterCheckpoint

    return _items_of(RouterCheckpoint.load(ckpt_dir), ckpt_dir)


def test_recorded_engine_names_unknown_models(ray_local, tiny_checkpoint):
    from modelsat.router import RouterCheckpoint

    ckpt = RouterCheckpoint.load(tiny_checkpoint)
    job = AptitudeJobConfig(engine=RecordedEngineConfig(routing_data=str(tiny_checkpoint.parent / "toy")))
    with pytest.raises(UnknownModelError, match="unknown model 'omega'"):
        run_aptitude_job(ckpt.aptitude, _items_of(ckpt, tiny_checkpoint), ["omega"], job)
    with pytest.raises(DataError, match="have no text"):
        run_aptitude_job(ckpt.aptitude, [], ["alpha"], job)


def test_openai_preflight_waits_for_a_starting_endpoint(stub):
    """`--wait-s` (the aptitude RayJob beside its RayService): wait until the model answers, else a clear error."""
    import threading

    from jobs.engines import engine_config, preflight

    stub.replies["Say OK."] = "OK"
    stub.always_status["Say OK."] = 503  # the model's replica is still starting
    config = engine_config("openai", {"base_url": stub.url, "model": "stub-model", "wait_s": 7.0})
    with pytest.raises(EngineError, match=r"model 'stub-model' at .* does not answer yet"):
        preflight(config, ["stub-model"])
    attempts = stub.attempts["Say OK."]
    assert attempts >= 2  # probed again after waiting
    threading.Timer(2.0, lambda: stub.always_status.pop("Say OK.")).start()  # ready after 2 s
    preflight(
        engine_config("openai", {"base_url": stub.url, "model": "stub-model", "wait_s": 60.0}), ["stub-model"]
    )
    assert stub.attempts["Say OK."] > attempts + 1


def test_registry_add_skip_registered_tests_only_new_names(tiny_checkpoint, toy_data, tmp_path):
    from modelsat.aptitude import measure_profiles
    from modelsat.data import load_routing_data
    from modelsat.registry import ModelCard, ModelRegistry, aptitude_fingerprint
    from modelsat.router import RouterCheckpoint

    ckpt = RouterCheckpoint.load(tiny_checkpoint)
    registry = ModelRegistry(tmp_path / "registry")
    profiles = measure_profiles(ckpt.aptitude, load_routing_data(toy_data))
    registry.put(ModelCard(name="alpha"), profiles["alpha"], {"test": aptitude_fingerprint(ckpt.aptitude)})
    args = ["registry", "add", "alpha", "--router-checkpoint", str(tiny_checkpoint), "--engine", "recorded"]
    args += ["--data", str(toy_data), "--registry", str(tmp_path / "registry")]
    result = CliRunner().invoke(app, [*args, "--skip-registered"])
    assert result.exit_code == 0, result.output
    assert "skipped alpha: already in" in result.output and "nothing to test" in result.output
    for bad, message in (
        (["--skip-registered", "--replace"], "--skip-registered and --replace contradict"),
        (["--wait-s", "5"], "--wait-s do not apply to --engine recorded"),
    ):
        r = CliRunner().invoke(app, [*args, *bad])
        assert r.exit_code == 2 and message in r.stderr, r.output
    assert registry.history("alpha") and len(registry.history("alpha")) == 1
