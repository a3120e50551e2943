"""Request validation, OpenAI response building and the Serve deploy config (no Ray started)."""

import json

import pytest

from cluster.serve_config import serve_deploy_config, serving_config_from_serve_config
from modelsat.serving_config import ServingConfig, model_app_name
from services.protocol import ApiError, GenerationResult
from services.serving import (
    chat_response,
    completion_response,
    estimate_tokens,
    parse_body,
    parse_request,
    stream_chunk,
)


def _chat(**kw):
    return {"model": "auto", "messages": [{"role": "user", "content": "What is 2+2?"}], **kw}


def test_a_valid_chat_request():
    p = parse_request(
        _chat(max_tokens=7, temperature=0.1, router={"return_scores": True, "cost_weight": 2.0}, foo=1),
        "chat",
        256,
        1024,
        4096,
    )
    assert p.model == "auto" and not p.stream and p.ignored == ["foo"]
    assert p.generation.instruction == "What is 2+2?" and p.generation.max_tokens == 7
    assert p.router.return_scores and p.router.cost_weight == 2.0
    assert p.prompt_tokens == estimate_tokens("What is 2+2?") == 3


def test_text_parts_system_turns_and_completions():
    body = {
        "model": "m",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hel"}, {"type": "text", "text": "lo"}]},
        ],
    }
    p = parse_request(body, "chat", 256, 1024, 4096)
    assert p.generation.instruction == "Hello" and p.generation.max_tokens == 256
    c = parse_request({"model": "auto", "prompt": ["Once upon"], "stream": True}, "completion", 16, 64, 4096)
    assert c.generation.prompt == "Once upon" and c.stream


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (
            {"model": "auto", "messages": [{"role": "assistant", "content": "hi"}]},
            400,
            "last message must be",
        ),
        (
            {
                "model": "auto",
                "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            },
            400,
            "only text parts",
        ),
        ({"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
        (_chat(max_tokens=True), 400, "max_tokens=True"),
        (_chat(temperature="hot"), 400, "temperature"),
        (_chat(router={"cost_weight": "x"}), 400, "cost_weight"),
        (_chat(router={"unknown": 1}), 400, "unknown"),
        (_chat(max_tokens=4095), 413, "exceeds the context length"),
    ],
)
def test_invalid_requests(body, status, fragment):
    with pytest.raises(ApiError) as e:
        parse_request(body, "chat", 256, 4096, 4096)
    assert e.value.status == status and fragment in e.value.message
    assert set(e.value.body()["error"]) == {"message", "type", "param", "code"}


def test_body_limits_and_json():
    assert parse_body(b'{"a": 1}', 100) == {"a": 1}
    for raw, status in ((b"x" * 101, 413), (b"[1]", 400), (b"{", 400)):
        with pytest.raises(ApiError) as e:
            parse_body(raw, 100)
        assert e.value.status == status


def test_responses_follow_the_openai_types():
    r = GenerationResult("4", "stop", 3, 1)
    body = chat_response("rid", "m1", r, {"router": {"ranked": ["m1"]}})
    assert (
        body["object"] == "chat.completion" and body["model"] == "m1" and body["usage"]["total_tokens"] == 4
    )
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "4"} and body["router"]
    assert completion_response("rid", "m1", r)["choices"][0]["text"] == "4"
    chunk = json.loads(stream_chunk("chat", "rid", "m1", "4", first=True)[len("data: ") :])
    assert chunk["choices"][0]["delta"] == {"role": "assistant", "content": "4"}
    done = json.loads(stream_chunk("completion", "rid", "m1", None, finish_reason=None)[len("data: ") :])
    assert done["choices"][0]["finish_reason"] is None


def test_serve_deploy_config_round_trips():
    """(Ray Serve's schema check of the same config: tests/unit/test_kuberay_validate.py.)"""
    zoo = ServingConfig.from_dict(
        {
            "router": {"checkpoint": "/ckpt", "registry": "/reg"},
            "models": [
                {"name": "org/m-1", "engine": {"kind": "recorded", "routing_data": "/z"}},
                {"name": "m2", "engine": {"kind": "vllm", "model_path": "/m2"}, "resources": {"num_gpus": 1}},
            ],
        }
    )
    cfg = serve_deploy_config(zoo)
    names = [a["name"] for a in cfg["applications"]]
    assert names == ["modelsat", "zoo-org-m-1", "zoo-m2"] and model_app_name("org/m-1") == "zoo-org-m-1"
    assert [a["route_prefix"] for a in cfg["applications"]] == ["/", None, None]
    router = cfg["applications"][0]["deployments"]
    assert router[0]["user_config"] == {"models": ["org/m-1", "m2"]}
    assert router[1]["user_config"] == {"models": {"org/m-1": "zoo-org-m-1", "m2": "zoo-m2"}}
    assert serving_config_from_serve_config(cfg) == zoo


_PLACEMENT_BASE = {
    "router": {"checkpoint": "/ckpt", "resources": {"num_cpus": 1000}},
    "models": [{"name": "m", "engine": {"kind": "recorded", "routing_data": "/z"}}],
}


def _placed(placement: str) -> ServingConfig:
    return ServingConfig.from_dict(
        {**_PLACEMENT_BASE, "router": {**_PLACEMENT_BASE["router"], "placement": placement}}
    )


def test_a_router_placed_in_the_ingress_has_no_deployment_of_its_own():
    from modelsat.errors import ConfigError

    inside = _placed("ingress")
    deployments = serve_deploy_config(inside)["applications"][0]["deployments"]
    assert [d["name"] for d in deployments] == ["Ingress"]
    assert serving_config_from_serve_config(serve_deploy_config(inside)) == inside
    assert [
        d["name"] for d in serve_deploy_config(_placed("deployment"))["applications"][0]["deployments"]
    ] == [
        "RouterDeployment",
        "Ingress",
    ]
    with pytest.raises(ConfigError, match="router.placement=ingress runs the router on the ingress replicas"):
        ServingConfig.from_dict(
            {
                **_PLACEMENT_BASE,
                "router": {"checkpoint": "/c", "placement": "ingress", "resources": {"num_gpus": 1}},
            }
        )


def test_a_router_placed_in_the_ingress_needs_no_cpus_of_its_own():
    pytest.importorskip("ray")  # services.deploy talks to Ray
    from services.deploy import embedded_cpus

    assert embedded_cpus(_placed("deployment")) >= 1000 > embedded_cpus(_placed("ingress"))


# ---------------------------------------------------------------- one bad registry entry (issue 18)
def _registry_with_one_bad_entry(root):
    """Models a (context 4096, 1 USD/Mtok) and b (0.5 USD/Mtok), and c whose entry file is truncated JSON."""
    import numpy as np

    from modelsat.aptitude import AptitudeTask, AptitudeTest, CapabilityProfile
    from modelsat.registry import ModelCard, ModelRegistry, aptitude_fingerprint

    test = AptitudeTest(
        zoo="toy",
        tasks=(AptitudeTask("algebra", "a, b", ("toy/algebra/1",), 0.5, 0.2),),
        seed=0,
        requested=(1, 1),
        training_models=("a",),
    )
    reg = ModelRegistry(root)
    cards = {
        "a": ModelCard(name="a", usd_per_mtok=1.0, context_length_tokens=4096),
        "b": ModelCard(name="b", usd_per_mtok=0.5),
        "c": ModelCard(name="c", usd_per_mtok=2.0, context_length_tokens=8192),
    }
    for name, card in cards.items():
        profile = CapabilityProfile(name, np.array([0.5], dtype=np.float32), np.array([1]))
        reg.put(card, profile, {"test": aptitude_fingerprint(test)})
    bad = root / "models" / "c" / "v000001.json"
    bad.write_text(bad.read_text()[:40])
    return reg, test, bad


def test_the_router_routes_over_every_other_model_when_one_entry_is_bad(tmp_path, caplog):
    from services.candidates import read_candidates

    reg, test, bad = _registry_with_one_bad_entry(tmp_path / "reg")
    with caplog.at_level("WARNING"):
        found = read_candidates(reg, test, {}, ["a", "b", "c"], pending=["b"])
    assert list(found.profiles) == ["a", "b"] and found.prices == {"a": 1.0, "b": 0.5}
    assert found.pending == ["c"]  # served by name only until its entry is registered again
    assert found.newly == ["b"] and found.source == f"registry {reg.uri}"
    assert any(
        f"skipping registry entry {bad}: it is not valid JSON" in r.getMessage() for r in caplog.records
    )


def test_without_a_registry_the_router_routes_over_the_checkpoint_profiles():
    from services.candidates import read_candidates

    found = read_candidates(None, None, {"a": "profile-a", "z": "profile-z"}, ["z", "a", "n"])
    assert found.profiles == {"z": "profile-z", "a": "profile-a"} and found.prices == {"z": 0.0, "a": 0.0}
    assert found.pending == ["n"] and found.newly == [] and found.source == "the checkpoint"


def test_the_ingress_keeps_every_other_context_length_when_one_entry_is_bad(tmp_path):
    from modelsat.errors import RegistryError
    from services.api import Ingress
    from services.metrics import IngressMetrics

    reg, _, _ = _registry_with_one_bad_entry(tmp_path / "reg")
    ing = Ingress(
        router=None, settings={}, registry=str(tmp_path / "reg"), metrics=IngressMetrics.recording()
    )
    models = {"a": "zoo-a", "b": "zoo-b", "c": "zoo-c"}
    ing.reconfigure({"models": models})
    assert ing.apps == models and ing.context == {"a": 4096}
    # a registry that cannot be listed at all fails the reconfigure and changes nothing
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "models").write_text("not a directory")
    ing.registry_uri = str(tmp_path / "broken")
    with pytest.raises(RegistryError, match="cannot be read"):
        ing.reconfigure({"models": {"d": "zoo-d"}})
    assert ing.apps == models and ing.context == {"a": 4096}


def test_a_recorded_model_stalls_or_fails_on_demand_and_counts_its_running_generations(toy_data):
    import asyncio

    import pyarrow.parquet as pq

    from services.models.recorded import RecordedModel
    from services.protocol import GenerationRequest

    model = RecordedModel("alpha", str(toy_data))
    prompt = pq.read_table(toy_data / "questions.parquet")["prompt"][0].as_py()
    req = GenerationRequest(
        request_id="r1", kind="completion", instruction=prompt, max_tokens=8, prompt=prompt
    )

    async def drain():
        return [x async for x in model.generate_stream(req)]

    assert asyncio.run(drain())[-1]["finish_reason"] == "stop" and model.stats() == {
        "active": 0,
        "completed": ["r1"],
    }
    model.set_fault("stall_first", 30)

    async def abandoned():
        task = asyncio.ensure_future(drain())
        await asyncio.sleep(0.05)
        assert model.stats()["active"] == 1
        task.cancel()  # what cancelling the Serve call does to the replica's generator
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(abandoned())
    assert model.stats() == {"active": 0, "completed": ["r1"]}  # not running, not answered
    model.set_fault("fail")
    with pytest.raises(RuntimeError, match="injected failure"):
        asyncio.run(drain())
    with pytest.raises(ValueError, match="fault 'melt'"):
        model.set_fault("melt")
