"""Routed serving on Ray Serve with the real `openai` client (issue 5): a recorded mmlu_pro zoo of 24 real
models + a router trained on it, hot-add/remove under load, failover when a replica dies, bad input, a
vLLM-CPU model application.

One module over ~400 lines on purpose: its tests share one deployed zoo (a module fixture that takes
minutes to deploy), and splitting it would deploy it twice."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import ray

from cluster.local import free_port
from modelsat.aptitude import measure_profiles
from modelsat.data import load_routing_data
from modelsat.errors import ConfigError
from modelsat.evaluate import evaluate_pipeline, held_out_rows
from modelsat.pipeline import train_pipeline
from modelsat.registry import ModelCard, ModelRegistry, aptitude_fingerprint
from modelsat.runconfig import EvalSection, RunConfig
from modelsat.serving_config import ServedModel, ServingConfig, model_app_name
from services.deploy import add_model, deploy_serving_config, remove_model
from tests.conftest import mmlu_pro_slice

pytestmark = [
    pytest.mark.integration,
]

TOKEN = "test-token-123"
RAY_ENV_VARS = {
    "MODELSAT_TEST_TOKEN": TOKEN
}  # each ingress replica reads its bearer token (conftest.ray_local)
STRONG = "gemini-1.5-pro-002"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_bert):
    """A router (tiny BERT backbone, 40 steps) trained on a 1-in-14 slice of mmlu_pro, its eval report, a registry.

    The serving tests check mechanics and consistency with `evaluate_pipeline`, not routing quality, so a tiny
    backbone keeps the router fast; the main job's serving stage runs the real MiniLM router.
    """
    root = tmp_path_factory.mktemp("serving")
    zoo_dir = mmlu_pro_slice(root / "mmlu_pro_slice", every=14)
    cfg = RunConfig.from_dict(
        {
            "data": {"routing_data": str(zoo_dir), "unseen_models": ["Yi-6b-Chat"]},
            "aptitude": {"n_tasks": 8, "items_per_task": 8},
            "router": {"backbone": str(tiny_bert), "capability_encoder": str(tiny_bert)},
            "train": {"max_steps": 40, "eval_every": 20, "groups_per_step": 16},
        }
    )
    ckpt, _ = train_pipeline(cfg, root / "ckpt")
    report = evaluate_pipeline(ckpt, zoo_dir, "test", EvalSection(baselines=[]))
    zoo = load_routing_data(zoo_dir)
    registry = ModelRegistry(root / "registry")
    fp = aptitude_fingerprint(ckpt.aptitude)
    for name, prof in measure_profiles(ckpt.aptitude, zoo).items():
        registry.put(ModelCard(name=name, serve_application=model_app_name(name)), prof, {"test": fp})
    return {
        "root": root,
        "zoo_dir": zoo_dir,
        "ckpt": ckpt,
        "report": report,
        "registry": registry,
        "data": zoo,
    }


@pytest.fixture(scope="module")
def served(trained, ray_local):
    metrics_port = ray_local.metrics_port
    port = free_port()
    zoo = ServingConfig.model_validate(
        {
            "http_port": port,
            "ingress": {
                "auth_token_env": "MODELSAT_TEST_TOKEN",
                "max_body_bytes": 200_000,
                "max_tokens_limit": 2048,
                "context_length_tokens": 4096,
                "first_chunk_timeout_s": 2.0,
                "breaker_cooldown_s": 5.0,
            },
            "router": {
                "checkpoint": str(trained["ckpt"].path),
                "registry": str(trained["registry"].uri),
                "resources": {"num_cpus": 1},
            },
            "models": [_recorded(m, trained["zoo_dir"]) for m in trained["data"].models],
        }
    )
    deploy_serving_config(zoo)
    yield {"url": f"http://127.0.0.1:{port}/v1", "zoo_config": zoo, "metrics_port": metrics_port, **trained}
    from ray import serve

    serve.shutdown()


def _recorded(name: str, zoo_dir: Path) -> dict:
    return {
        "name": name,
        "engine": {"kind": "recorded", "routing_data": str(zoo_dir)},
        "resources": {"num_cpus": 0.1},
        "max_ongoing_requests": 64,
    }


def _client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served["url"], api_key=TOKEN, max_retries=0, timeout=60)


def _ask(client: openai.OpenAI, text: str, model: str = "auto", **kw):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=512, **kw
    )


def _replica_pids() -> dict[str, int]:
    from ray.util.state import list_actors

    return {
        a.class_name: a.pid
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        if a.class_name.startswith("ServeReplica:")
    }


def _metric(served, name: str) -> float:
    """Sum of a Model-SAT metric on Ray's Prometheus endpoint (Ray prefixes application metrics with `ray_`)."""
    import re

    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{served['metrics_port']}/metrics", timeout=10)
        .read()
        .decode()
    )
    pattern = re.compile(rf"^(ray_)?{name}(_total)?(\{{[^}}]*\}})? ([0-9.eE+-]+)$")
    return sum(float(m.group(4)) for line in text.splitlines() if (m := pattern.match(line)))


# --------------------------------------------------------------------------------------------------- tests
def test_openai_client_auto_routes_to_the_top_choice_and_names_bypass_the_router(served):
    client = _client(served)
    zoo = served["zoo_config"]
    ids = [m.id for m in client.models.list()]
    assert ids[0] == "auto" and set(ids[1:]) == {m.name for m in zoo.models}
    prompt = str(served["data"].prompts[3])
    raw = _ask(client, prompt, extra_body={"router": {"return_scores": True}})
    body = json.loads(raw.text)
    top = body["router"]["ranked"][0]
    assert body["model"] == top == raw.headers["x-modelsat-model"]
    assert float(raw.headers["x-modelsat-router-ms"]) > 0
    assert len(body["router"]["scores"]) == len(zoo.models)
    assert raw.parse().choices[0].message.content  # the recorded response of the chosen model

    chunks = list(
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": prompt}], stream=True, max_tokens=512
        )
    )
    assert {c.model for c in chunks} == {top}
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == raw.parse().choices[0].message.content

    comp = client.completions.with_raw_response.create(model="auto", prompt=prompt, max_tokens=512)
    assert comp.parse().model == top

    other = next(m.name for m in zoo.models if m.name != top)
    direct = _ask(client, prompt, model=other)
    assert direct.parse().model == other == direct.headers["x-modelsat-model"]
    assert "x-modelsat-router-ms" not in direct.headers  # explicit names bypass the router


def test_accuracy_through_http_equals_eval(served):
    """Every held-out question through the API (model auto): answers graded by the zoo's recorded outcomes."""
    zoo = served["data"]
    ckpt, report = served["ckpt"], served["report"]
    rows = held_out_rows(ckpt, zoo, "test")
    client = _client(served)
    col = {m: j for j, m in enumerate(zoo.models)}

    def answer(r: int) -> str:
        return _ask(client, str(zoo.prompts[r])).parse().model

    with ThreadPoolExecutor(8) as pool:
        chosen = list(pool.map(answer, rows.tolist()))
    acc = float(np.mean([zoo.outcomes[r, col[m]] for r, m in zip(rows.tolist(), chosen, strict=True)]))
    assert acc == pytest.approx(
        report["methods"]["model_sat"]["accuracy"], abs=0.5 / len(rows)
    )  # float32 mean
    shares = {m: c / len(chosen) for m, c in Counter(chosen).items()}
    assert shares == pytest.approx(report["methods"]["model_sat"]["choice_share"])


def _load(served, stop: threading.Event, results: list, prompts: list[str]) -> None:
    client = _client(served)
    i = 0
    while not stop.is_set():
        try:
            r = _ask(client, prompts[i % len(prompts)])
            results.append((r.parse().model, int(r.headers["x-modelsat-fallbacks"])))
        except Exception as e:  # noqa: BLE001 - every failure is recorded and asserted on
            results.append(("FAILED", repr(e)))
        i += 1


def _routed_to(served, model: str, wanted: int = 8) -> list[str]:
    """Up to `wanted` of the zoo's prompts that `model: auto` routes to `model` now (the router is deterministic)."""
    client = _client(served)
    found = []
    for p in served["data"].prompts[:200]:
        if _ask(client, str(p)).parse().model == model:
            found.append(str(p))
            if len(found) == wanted:
                break
    return found


def test_hot_remove_and_add_under_load_restart_nothing_else(served):
    zoo = served["data"]
    to_strong = _routed_to(served, STRONG)
    assert to_strong, f"the router sends none of 200 prompts to {STRONG}"
    others = [str(p) for p in zoo.prompts[:40] if str(p) not in to_strong]
    # every other request is one the router sent to STRONG, so its return is seen within a few requests
    prompts = [p for pair in zip(to_strong * 4, others, strict=False) for p in pair]
    before = _replica_pids()
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_load, args=(served, stop, results, prompts)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        remove_model(STRONG)
        n_removed = len(results)
        time.sleep(2)
        assert STRONG not in [m.id for m in _client(served).models.list()]
        adding_at = len(results)
        add_model(ServedModel.model_validate(_recorded(STRONG, served["zoo_dir"])))
        added_at = len(results)
        time.sleep(4)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [r for r in results if r[0] == "FAILED"]
    assert not failed, failed[:3]
    assert STRONG in [m.id for m in _client(served).models.list()]
    assert any(m == STRONG for m, _ in results[added_at:]), "the re-added model receives routed traffic"
    assert {_ask(_client(served), p).parse().model for p in to_strong} == {STRONG}  # routed as before removal
    assert all(m != STRONG for m, _ in results[n_removed + 8 : adding_at])
    after = _replica_pids()
    keep = [k for k in before if f":{model_app_name(STRONG)}:" not in k]
    assert {k: after.get(k) for k in keep} == {k: before[k] for k in keep}  # router, ingress, other models


def test_killing_the_top_models_replica_fails_over_without_errors(served):
    zoo = served["data"]
    prompts = [str(p) for p in zoo.prompts[40:80]]
    fallbacks_before = _metric(served, "modelsat_fallbacks_total")
    stop, results = threading.Event(), []
    threads = [threading.Thread(target=_load, args=(served, stop, results, prompts)) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(2)
        top = Counter(m for m, _ in results).most_common(1)[0][0]
        from ray.util.state import list_actors

        victim = next(
            a
            for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
            if a.class_name == f"ServeReplica:{model_app_name(top)}:ModelServer"
        )
        ray.kill(ray.get_actor(victim.name, namespace=victim.ray_namespace or "serve"))
        time.sleep(6)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [r for r in results if r[0] == "FAILED"]
    assert not failed, failed[:3]
    assert sum(f for _, f in results) > 0, "some requests failed over to the next model"
    deadline = time.monotonic() + 60
    while _metric(served, "modelsat_fallbacks_total") <= fallbacks_before and time.monotonic() < deadline:
        time.sleep(2)
    assert _metric(served, "modelsat_fallbacks_total") > fallbacks_before
    # Serve restarts the replica and the breaker closes after its cooldown: the model answers by name again
    # (later tests name it)
    deadline, answered = time.monotonic() + 90, None
    while answered is None and time.monotonic() < deadline:
        try:
            answered = _ask(_client(served), prompts[0], model=top).parse().model
        except openai.APIStatusError:
            time.sleep(1)
    assert answered == top, f"{top} did not answer by name within 90 s of its replica being killed"


@pytest.mark.parametrize(
    "body, status, fragment",
    [
        (b"{not json", 400, "not valid JSON"),
        ({"model": "auto"}, 400, "messages must be a non-empty list"),
        ({"model": "auto", "messages": []}, 400, "messages must be a non-empty list"),
        ({"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]}, 400, "role='wizard'"),
        ({"model": "auto", "messages": [{"role": "user", "content": 5}]}, 400, "content"),
        ({"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}, 404, "is not served"),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
            400,
            "max_tokens=0",
        ),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 99999},
            400,
            "[1, 2048]",
        ),
        ({"model": "auto", "messages": [{"role": "user", "content": "x " * 9000}]}, 413, "context length"),
        ({"model": "auto", "messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "only n=1"),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "y" * 300_000}]},
            413,
            "the limit is 200000",
        ),
        (
            {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "router": {"cost_weight": -1}},
            400,
            "cost_weight",
        ),
    ],
)
def test_bad_input_gets_openai_style_errors(served, body, status, fragment):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(
        f"{served['url']}/chat/completions",
        content=data,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert fragment in err["message"] and err["type"]
    assert httpx.get(f"{served['url'].removesuffix('/v1')}/health", timeout=30).json()["status"] == "ok"


@pytest.mark.parametrize(
    "method, path, body, status, code",
    [
        ("POST", "/chat/completions", b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json"),
        (
            "POST",
            "/chat/completions",
            b'{"model": "auto", "router": {"cost_weight": 1e999, "return_scores": true}, '
            b'"messages": [{"role": "user", "content": "hi"}]}',
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/chat/completions",
            {
                "model": "auto",
                "tools": [{"type": "function"}],
                "messages": [{"role": "user", "content": "hi"}],
            },
            400,
            "unsupported_parameter",
        ),
        ("POST", "/chat/completions", b" " * 250_000, 413, "body_too_large"),
        ("GET", "/nope", None, 404, "unknown_url"),
        ("GET", "/chat/completions", None, 405, "method_not_allowed"),
    ],
    ids=["deep-json", "1e999", "tools", "content-length", "unknown-route", "wrong-method"],
)
def test_hardened_bad_input_through_the_serve_proxy(served, method, path, body, status, code):
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    r = httpx.request(
        method,
        f"{served['url']}{path}",
        content=data,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        timeout=60,
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["type"]
    assert httpx.get(f"{served['url'].removesuffix('/v1')}/openapi.json", timeout=30).status_code == 404


def test_a_stalled_model_is_failed_over_and_its_generation_cancelled(served):
    from ray import serve

    zoo = served["data"]
    prompt = str(zoo.prompts[90])
    first = _ask(_client(served), prompt)
    top = first.headers["x-modelsat-model"]
    handle = serve.get_app_handle(model_app_name(top))
    handle.set_fault.remote("stall_first", 60.0).result(timeout_s=30)
    try:
        before = handle.stats.remote().result(timeout_s=30)
        r = _ask(_client(served), prompt)  # no first chunk within 2 s: the next model answers
        assert r.headers["x-modelsat-model"] != top and int(r.headers["x-modelsat-fallbacks"]) >= 1
        deadline = time.monotonic() + 20
        while handle.stats.remote().result(timeout_s=30)["active"] and time.monotonic() < deadline:
            time.sleep(0.25)
        after = handle.stats.remote().result(timeout_s=30)
        assert after["active"] == 0, "the abandoned generation was cancelled, not left running for 60 s"
        assert after["completed"] == before["completed"], "the stalled model did not answer it too"
    finally:
        handle.set_fault.remote("none").result(timeout_s=30)


def test_auth_unknown_fields_and_unrecorded_instructions(served):
    zoo = served["data"]
    url = f"{served['url']}/chat/completions"
    body = {"model": "auto", "messages": [{"role": "user", "content": str(zoo.prompts[0])}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.post(url, json=body, headers=headers, timeout=60)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    ok = httpx.post(
        url, json={**body, "frobnicate": True}, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )
    assert ok.status_code == 200  # unknown fields are ignored (and logged by name)
    with pytest.raises(openai.NotFoundError, match="instruction_not_recorded|no recorded response"):
        _client(served).chat.completions.create(
            model=zoo.models[0], messages=[{"role": "user", "content": "an instruction nobody recorded"}]
        )


def test_a_vllm_cpu_model_application_answers_through_the_graph(served, tiny_vllm_model):
    """Hot-adds a vLLM-CPU application (the tiny test model always answers "A") and asks it by name."""
    registry = served["registry"]
    tiny = {
        "name": "tiny-vllm",
        "engine": {
            "kind": "vllm",
            "model_path": str(tiny_vllm_model),
            "engine_args": {"dtype": "float32", "max_model_len": 1024, "enforce_eager": True},
        },
        "resources": {"num_cpus": 1},
    }
    with pytest.raises(ConfigError, match="is not in the router's registry"):  # nothing is deployed
        add_model(ServedModel.model_validate(tiny))
    weakest = min(registry.entries(), key=lambda e: float(e.profile.accuracies.mean()))
    prof = type(weakest.profile)("tiny-vllm", weakest.profile.accuracies * 0, weakest.profile.n_items, "test")
    registry.put(
        ModelCard(name="tiny-vllm", serve_application=model_app_name("tiny-vllm")),
        prof,
        {"test": aptitude_fingerprint(served["ckpt"].aptitude)},
    )
    add_model(ServedModel.model_validate(tiny), wait_s=600)
    client = _client(served)
    out = client.chat.completions.create(
        model="tiny-vllm", messages=[{"role": "user", "content": "Pick one."}], max_tokens=4
    )
    assert out.model == "tiny-vllm" and out.choices[0].message.content == "AAAA"
    assert out.usage.completion_tokens == 4 and out.usage.prompt_tokens > 0
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="tiny-vllm", messages=[{"role": "user", "content": "Pick one."}], max_tokens=3, stream=True
        )
    )
    assert text == "AAA"
    remove_model("tiny-vllm")


def test_a_registered_model_at_an_openai_url_joins_through_the_registry(served, tmp_path):
    """`serve add-model --from-registry`: a card with a base_url becomes a proxied application, routed to."""
    from typer.testing import CliRunner

    from modelsat.cli import app
    from tests.conftest import OpenAIStub

    stub = OpenAIStub()
    stub.default_reply = "The answer is (B)."
    try:
        registry = served["registry"]
        best = max(registry.entries(), key=lambda e: float(e.profile.accuracies.mean()))
        prof = type(best.profile)(
            "remote-model", best.profile.accuracies * 0 + 1.0, best.profile.n_items, "test"
        )
        registry.put(
            ModelCard(
                name="remote-model", base_url=stub.url, served_model_name="stub-model", usd_per_mtok=0.1
            ),
            prof,
            {"test": aptitude_fingerprint(served["ckpt"].aptitude)},
        )
        r = CliRunner().invoke(
            app, ["serve", "add-model", "--from-registry", "remote-model", "--registry", str(registry.uri)]
        )
        assert r.exit_code == 0, r.output
        client = _client(served)
        assert "remote-model" in [m.id for m in client.models.list()]
        out = _ask(client, str(served["data"].prompts[5])).parse()
        assert out.model == "remote-model" and out.choices[0].message.content == "The answer is (B)."
        assert stub.stream_requests >= 1
        stub.always_status[None] = 503  # the endpoint fails: the request fails over to the next model
        out = _ask(client, str(served["data"].prompts[6])).parse()
        assert out.model != "remote-model"
        bad = CliRunner().invoke(
            app, ["serve", "add-model", "--from-registry", STRONG, "--registry", str(registry.uri)]
        )
        assert bad.exit_code == 2 and "has no base_url" in bad.output
    finally:
        remove_model("remote-model")
        stub.close()


def test_modelsat_serve_cli_applies_a_zoo_config(served, tmp_path):
    """`modelsat serve --config ZOO.yaml --detach` on the running cluster: the same config is a no-op update."""
    from typer.testing import CliRunner

    from modelsat.cli import app

    zoo = served["zoo_config"]
    apps = {zoo.name} | {model_app_name(m.name) for m in zoo.models}
    before = {k: pid for k, pid in _replica_pids().items() if k.split(":")[1] in apps}
    cfg = tmp_path / "zoo.yaml"
    cfg.write_text(zoo.to_yaml())
    r = CliRunner().invoke(app, ["serve", "--config", str(cfg), "--detach"])
    assert r.exit_code == 0, r.output
    assert f"serving {len(zoo.models)} models + auto at {served['url']}" in r.output
    assert _replica_pids() == before  # nothing restarted, and nothing outside the config is left running
    bad = tmp_path / "bad.yaml"
    bad.write_text(served["zoo_config"].to_yaml().replace("min_replicas: 1", "min_replicas: 5", 1))
    r = CliRunner().invoke(app, ["serve", "--config", str(bad), "--detach"])
    assert r.exit_code == 2 and "min_replicas=5 is above max_replicas=1" in r.output


def test_a_router_placed_in_the_ingress_ranks_as_the_deployment_did_and_follows_hot_removal(served):
    """`router.placement: ingress`: no router deployment, the same top choices, the served set followed."""
    from ray import serve

    client = _client(served)
    prompts = [str(p) for p in served["data"].prompts[:12]]
    before = [_ask(client, p).parse().model for p in prompts]
    zoo = served["zoo_config"]
    raw = zoo.model_dump(mode="json")
    raw["router"]["placement"] = "ingress"
    inside = ServingConfig.model_validate(raw)
    try:
        deploy_serving_config(inside)
        assert "RouterDeployment" not in serve.status().applications[zoo.name].deployments
        answers = [_ask(client, p) for p in prompts]
        assert [a.parse().model for a in answers] == before
        assert all(float(a.headers["x-modelsat-router-ms"]) > 0 for a in answers)
        top = before[0]
        remove_model(top)
        assert _ask(client, prompts[0]).parse().model != top  # the in-process router dropped it
        add_model(ServedModel.model_validate(_recorded(top, served["zoo_dir"])))
        assert _ask(client, prompts[0]).parse().model == top
    finally:
        deploy_serving_config(zoo)  # back to the module's graph
    assert "RouterDeployment" in serve.status().applications[zoo.name].deployments
