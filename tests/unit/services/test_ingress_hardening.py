"""The ingress under faults, overload and bad input, with fake router and model handles (no Ray cluster).

Each behaviour of the serving-hardening issue has a test here: cancelled abandoned calls, backpressure, the
request deadline and the router's timeout, the stream idle timeout, the circuit breaker, client faults that
are not model faults, strict request bodies, OpenAI-style 404/405, auth that fails closed, and no docs routes.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from fastapi.testclient import TestClient

from modelsat.errors import ConfigError
from services.api import Ingress, build_fastapi_app
from services.failover import CircuitBreaker
from services.metrics import IngressMetrics
from services.protocol import ApiError
from services.serving import MAX_JSON_DEPTH, UNSUPPORTED_PARAMETERS, parse_request, read_body
from services.streaming import sse_events
from tests.unit.services.fakes import _Handle, _Router, _Stream

CHAT = "/v1/chat/completions"


class TemplateError(Exception):
    """Named like jinja2's: a chat template that rejects the conversation."""


class BackPressureError(Exception):
    """Named like Ray Serve's: the model's queue is full."""


def _ok(text="four"):
    return [
        {"text": text},
        {"text": "!", "finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 2},
    ]


def _ingress(scripts, router=None, **settings):
    base = {"request_timeout_s": 5.0, "first_chunk_timeout_s": 1.0}
    ing = Ingress(router=router, settings={**base, **settings}, metrics=IngressMetrics.recording())
    ing.reconfigure({"models": {m: f"zoo-{m}" for m in scripts}})
    handles = {m: _Handle(s) for m, s in scripts.items()}
    ing._handle = handles.__getitem__
    return ing, handles


def _parsed(**extra):
    body = {"model": "auto", "messages": [{"role": "user", "content": "What is 2+2?"}], **extra}
    return parse_request(body, "chat", 256, 1024, 4096)


def _chat(**extra):
    return {"model": "auto", "messages": [{"role": "user", "content": "What is 2+2?"}], **extra}


# ------------------------------------------------------------------------------ abandoned work is cancelled
def test_a_first_chunk_timeout_cancels_the_abandoned_generation():
    ing, h = _ingress({"a": ["stall"], "b": _ok()}, first_chunk_timeout_s=0.1)
    model, result, failed = asyncio.run(ing._answer(_parsed(), ["a", "b"]))
    assert (model, result.text, failed) == ("b", "four!", 1)
    assert h["a"].streams[0].cancelled and not h["b"].streams[0].cancelled


def test_a_mid_answer_failure_and_a_504_cancel_the_model_that_was_answering():
    ing, h = _ingress({"a": [{"text": "x"}, RuntimeError("replica died")], "b": _ok()})
    assert asyncio.run(ing._answer(_parsed(), ["a", "b"]))[0] == "b"
    assert h["a"].streams[0].cancelled
    ing, h = _ingress({"a": [{"text": "x"}, "stall"]}, request_timeout_s=0.3)
    with pytest.raises(ApiError) as e:
        asyncio.run(ing._answer(_parsed(), ["a"]))
    assert e.value.status == 504 and h["a"].streams[0].cancelled


def test_a_client_that_disconnects_cancels_the_downstream_call():
    ing, h = _ingress({"a": [{"text": "x"}, "stall"]})

    async def go():
        task = asyncio.ensure_future(ing._answer(_parsed(), ["a"]))
        await asyncio.sleep(0.1)
        task.cancel()  # what Serve does to the request's task when its HTTP client goes away
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    assert h["a"].streams[0].cancelled


def test_a_stream_closed_by_the_client_cancels_the_model():
    gen = _Stream([{"text": " more"}, "stall"])

    async def go():
        events = sse_events("chat", "r1", "a", {"text": "hi"}, gen, IngressMetrics.recording().errors)
        assert "hi" in await events.__anext__()
        assert "more" in await events.__anext__()
        await events.aclose()  # Starlette closes the body iterator when the client disconnects

    asyncio.run(go())
    assert gen.cancelled


def test_a_stream_that_stalls_after_its_first_chunk_ends_with_an_in_band_error():
    gen = _Stream(["stall"])
    metrics = IngressMetrics.recording()

    async def go():
        out = []
        async for line in sse_events(
            "chat", "r1", "a", {"text": "hi"}, gen, metrics.errors, idle_timeout_s=0.1
        ):
            out.append(line)
        return out

    lines = asyncio.run(go())
    assert len(lines) == 2 and "data: [DONE]" not in lines[-1]
    err = json.loads(lines[-1][len("data: ") :])["error"]
    assert err["code"] == "stream_timeout" and "stream_idle_timeout_s=0.1" in err["message"]
    assert gen.cancelled


# ------------------------------------------------------------------------------------------ backpressure
def test_a_full_queue_moves_the_request_to_the_next_model_and_none_with_room_is_a_503_with_retry_after():
    ing, h = _ingress({"a": BackPressureError("queue full"), "b": _ok()})
    assert asyncio.run(ing._answer(_parsed(), ["a", "b"]))[0] == "b"
    ing, _ = _ingress({"a": BackPressureError("q"), "b": BackPressureError("q")}, retry_after_s=3)
    client = TestClient(build_fastapi_app(ing))
    ing.router = _Router(["a", "b"])
    r = client.post(CHAT, json=_chat())
    assert r.status_code == 503 and r.headers["retry-after"] == "3"
    assert "a: its queue is full" in r.json()["error"]["message"]
    assert not ing.breaker.is_open("a")  # load is not a fault: the breaker does not count it


def test_max_queued_requests_reaches_every_model_deployment():
    from cluster.serve_config import serve_deploy_config
    from modelsat.serving_config import ServingConfig

    cfg = ServingConfig.from_dict(
        {
            "router": {"checkpoint": "/tmp/ckpt"},
            "models": [
                {
                    "name": "a",
                    "engine": {"kind": "recorded", "routing_data": "toy"},
                    "max_queued_requests": 5,
                },
                {"name": "b", "engine": {"kind": "recorded", "routing_data": "toy"}},
            ],
        }
    )
    apps = serve_deploy_config(cfg)["applications"]
    assert [a["deployments"][0]["max_queued_requests"] for a in apps[1:]] == [5, 32]
    assert apps[0]["deployments"][0]["max_queued_requests"] == 256  # the router's
    with pytest.raises(ConfigError, match="max_queued_requests=0; allowed: -1"):
        ServingConfig.from_dict(
            {
                "router": {"checkpoint": "/tmp/ckpt"},
                "models": [
                    {
                        "name": "a",
                        "engine": {"kind": "recorded", "routing_data": "t"},
                        "max_queued_requests": 0,
                    }
                ],
            }
        )


# ------------------------------------------------------------------------------ deadlines and the router
def test_a_router_that_does_not_answer_in_time_is_a_503_with_retry_after():
    ing, h = _ingress({"a": _ok()}, router=_Router(["a"], stall_s=5), router_timeout_s=0.2)
    r = TestClient(build_fastapi_app(ing)).post(CHAT, json=_chat())
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert (
        r.json()["error"]["code"] == "router_unavailable"
        and "router_timeout_s=0.2" in r.json()["error"]["message"]
    )
    assert h["a"].streams == []


def test_a_dead_router_is_a_503_naming_no_ray_internals_or_falls_back_to_the_best_model_by_profile():
    dead = RuntimeError("ActorDiedError: actor 7f3a on node 10.0.0.3:6379 died")
    ing, _ = _ingress({"a": _ok()}, router=_Router(["a"], error=dead))
    r = TestClient(build_fastapi_app(ing)).post(CHAT, json=_chat())
    assert r.status_code == 503 and "10.0.0.3" not in r.text and "router is not available" in r.text
    ing, h = _ingress(
        {"a": _ok("A"), "b": _ok("B")},
        router=_Router(["a"], error=dead),
        router_unavailable="best_by_profile",
    )
    ing._by_profile = (("a", "b"), ["b", "a"])  # what the registry's profiles say (read in `_profile_order`)
    r = TestClient(build_fastapi_app(ing)).post(CHAT, json=_chat())
    assert r.status_code == 200 and r.json()["model"] == "b"


def test_the_profile_order_reads_the_registry(monkeypatch):
    from types import SimpleNamespace

    import modelsat.registry

    entries = [
        SimpleNamespace(name=n, profile=SimpleNamespace(accuracies=acc))
        for n, acc in (("weak", [0.2, 0.3]), ("strong", [0.8, 0.9]), ("gone", [1.0, 1.0]))
    ]

    class Registry:
        def __init__(self, uri):
            assert uri == "mem://reg"

        def entries(self):
            return entries

    monkeypatch.setattr(modelsat.registry, "ModelRegistry", Registry)
    ing = Ingress(router=None, settings={}, registry="mem://reg", metrics=IngressMetrics.recording())
    monkeypatch.setattr(ing, "registry_uri", None)  # reconfigure reads context lengths: not under test here
    ing.reconfigure({"models": {"weak": "zoo-weak", "strong": "zoo-strong", "new": "zoo-new"}})
    ing.registry_uri = "mem://reg"
    assert ing._profile_order() == ["strong", "weak", "new"]  # unprofiled last; unserved ones left out


def test_the_request_deadline_covers_the_router_and_every_model():
    ing, h = _ingress({"a": ["stall"], "b": ["stall"]}, first_chunk_timeout_s=10, request_timeout_s=0.3)
    ing.router = _Router(["a", "b"])
    r = TestClient(build_fastapi_app(ing)).post(CHAT, json=_chat())
    assert r.status_code == 504 and r.json()["error"]["code"] == "model_timeout"
    assert h["a"].streams[0].cancelled and h["b"].streams == []


# -------------------------------------------------------------------------------------- circuit breaker
def test_the_circuit_breaker_skips_a_failing_model_for_its_cool_down():
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown_s=10, clock=lambda: now[0])
    ing, h = _ingress({"a": [RuntimeError("boom")], "b": _ok()})
    ing.breaker = breaker
    for _ in range(2):
        assert asyncio.run(ing._answer(_parsed(), ["a", "b"]))[0] == "b"
    assert breaker.is_open("a") and len(h["a"].streams) == 2
    assert asyncio.run(ing._answer(_parsed(), ["a", "b"]))[0] == "b" and len(h["a"].streams) == 2  # skipped
    with pytest.raises(ApiError) as e:  # named directly while open: a quick 503 with the cool-down left
        asyncio.run(ing._answer(_parsed(), ["a"]))
    assert e.value.status == 503 and e.value.retry_after_s >= 10 and "circuit breaker" in e.value.message
    now[0] = 11.0  # cooled down: tried again (and one more failure re-opens it)
    assert asyncio.run(ing._answer(_parsed(), ["a", "b"]))[0] == "b" and len(h["a"].streams) == 3
    breaker.record("a", ok=True)
    assert not breaker.is_open("a")


# ---------------------------------------------------------------------- client faults are not model faults
@pytest.mark.parametrize(
    "error", [TemplateError("Conversation roles must alternate"), OverflowError("int too big")]
)
def test_a_request_the_model_rejects_is_a_400_without_failover(error):
    ing, h = _ingress({"a": [error], "b": _ok()})
    with pytest.raises(ApiError) as e:
        asyncio.run(ing._answer(_parsed(), ["a", "b"]))
    assert e.value.status == 400 and type(error).__name__ in e.value.message and h["b"].streams == []


def test_503_messages_name_models_not_ray_internals():
    leak = RuntimeError("RayActorError: The actor died unexpectedly; node_ip 10.1.2.3, worker_id abc123")
    ing, _ = _ingress({"a": [leak], "b": [leak]})
    with pytest.raises(ApiError) as e:
        asyncio.run(ing._answer(_parsed(), ["a", "b"]))
    assert e.value.status == 503 and "a: failed (RuntimeError)" in e.value.message
    assert "10.1.2.3" not in e.value.message and "abc123" not in e.value.message


# -------------------------------------------------------------------------------------------- bad input
def _client(**settings):
    ing, _ = _ingress({"a": _ok()}, router=_Router(["a"]), **settings)
    return TestClient(build_fastapi_app(ing))


def test_a_body_over_the_limit_is_refused_by_content_length_before_it_is_read():
    class Request:
        headers = {"content-length": str(10**9)}

        def stream(self):
            raise AssertionError("the body must not be read")

    with pytest.raises(ApiError) as e:
        asyncio.run(read_body(Request(), 2048))
    assert e.value.status == 413 and e.value.code == "body_too_large" and str(10**9) in e.value.message
    r = _client(max_body_bytes=2048).post(CHAT, content=b" " * 4096)
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_a_chunked_body_is_cut_at_the_limit():
    read = []

    class Request:
        headers: dict[str, str] = {}

        async def stream(self):
            for _ in range(1000):
                read.append(1024)
                yield b"x" * 1024

    with pytest.raises(ApiError) as e:
        asyncio.run(read_body(Request(), 4096))
    assert e.value.status == 413 and sum(read) <= 4096 + 1024


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "auto", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"model": "auto", "x": ' + b"[" * (MAX_JSON_DEPTH + 5) + b"]" * (MAX_JSON_DEPTH + 5) + b"}",
    ],
    ids=["100000-deep", "just-over-the-limit"],
)
def test_deeply_nested_json_is_a_400(raw):
    r = _client(max_body_bytes=1_000_000).post(CHAT, content=raw)
    assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model": "auto", "temperature": NaN, "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "auto", "top_p": Infinity, "messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "auto", "router": {"cost_weight": 1e999, "return_scores": true}, '
        b'"messages": [{"role": "user", "content": "x"}]}',
        b'{"model": "auto", "seed": -Infinity, "messages": [{"role": "user", "content": "x"}]}',
    ],
    ids=["NaN", "Infinity", "1e999-cost-weight", "-Infinity"],
)
def test_non_finite_numbers_anywhere_are_a_400(raw):
    r = _client().post(CHAT, content=raw)
    assert r.status_code == 400 and "numbers must be finite" in r.json()["error"]["message"]


@pytest.mark.parametrize("field", UNSUPPORTED_PARAMETERS)
def test_known_but_unsupported_fields_are_a_400_unsupported_parameter(field):
    value = {"include_usage": True} if field == "stream_options" else [1] if field == "tools" else 1
    r = _client().post(CHAT, json=_chat(**{field: value}))
    err = r.json()["error"]
    assert r.status_code == 400 and err["code"] == "unsupported_parameter" and err["param"] == field


def test_unsupported_fields_set_to_their_off_value_are_accepted():
    r = _client().post(CHAT, json=_chat(logprobs=False, tools=[], presence_penalty=0))
    assert r.status_code == 200, r.text


def test_ten_thousand_messages_and_fifty_thousand_unknown_keys_are_answered_or_refused_and_the_log_is_bounded(
    caplog,
):
    client = _client(context_length_tokens=1_000_000)
    msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": "hi"} for i in range(9_999)]
    r = client.post(CHAT, json={"model": "auto", "messages": msgs}, headers={})
    assert r.status_code in (200, 400, 413)
    body = _chat(**{f"unknown_{i}": i for i in range(50_000)})
    with caplog.at_level(logging.WARNING, logger="modelsat.serving"):
        r = _client(max_body_bytes=5_000_000).post(CHAT, json=body)
    assert r.status_code == 200
    assert max(len(rec.getMessage()) for rec in caplog.records) < 1000
    assert any("50000 unknown field(s)" in rec.getMessage() for rec in caplog.records)


def test_unknown_routes_and_wrong_methods_are_openai_style_404_and_405():
    client = _client()
    r = client.get("/v1/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_url" and "detail" not in r.json()
    r = client.get(CHAT)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in r.headers.get("allow", "")


def test_no_docs_routes():
    client = _client()
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404


# ------------------------------------------------------------------------------------------------ auth
def test_auth_fails_closed_when_the_token_variable_is_missing_or_blank(monkeypatch):
    monkeypatch.delenv("MODELSAT_T", raising=False)
    with pytest.raises(ConfigError, match="auth_token_env='MODELSAT_T' but the variable is missing"):
        Ingress(router=None, settings={"auth_token_env": "MODELSAT_T"}, metrics=IngressMetrics.recording())
    monkeypatch.setenv("MODELSAT_T", "  \n")
    with pytest.raises(ConfigError, match="is empty"):
        Ingress(router=None, settings={"auth_token_env": "MODELSAT_T"}, metrics=IngressMetrics.recording())


def test_the_token_is_stripped_and_every_route_but_health_needs_it(monkeypatch):
    from services.endpoints import ENDPOINTS

    monkeypatch.setenv("MODELSAT_T", "s3cret\n")  # a Secret made with --from-file ends in a newline
    client = _client(auth_token_env="MODELSAT_T")
    ok = {"Authorization": "Bearer s3cret"}
    for ep in ENDPOINTS:
        method = ep.methods[0]
        body = {"model": "auto", "prompt": "What is 2+2?"} if ep.path == "/v1/completions" else _chat()
        kw = {"json": body} if method == "POST" else {}
        r = client.request(method, ep.path, **kw)
        if ep.path == "/health":
            assert r.status_code == 200
        else:
            assert r.status_code == 401, ep.path
            assert client.request(method, ep.path, headers=ok, **kw).status_code == 200, ep.path


def test_listening_beyond_loopback_without_auth_needs_allow_unauthenticated():
    from modelsat.serving_config import ServingConfig

    base = {
        "router": {"checkpoint": "/tmp/c"},
        "models": [{"name": "a", "engine": {"kind": "recorded", "routing_data": "t"}}],
    }
    with pytest.raises(ConfigError, match="http_host='0.0.0.0' listens beyond loopback"):
        ServingConfig.from_dict({**base, "http_host": "0.0.0.0"})
    ServingConfig.from_dict({**base, "http_host": "0.0.0.0", "ingress": {"allow_unauthenticated": True}})
    ServingConfig.from_dict({**base, "http_host": "0.0.0.0", "ingress": {"auth_token_env": "K"}})
    ServingConfig.from_dict(base)  # 127.0.0.1: local only


def test_a_non_streamed_answer_that_stalls_mid_way_fails_over_after_the_idle_timeout():
    ing, h = _ingress({"a": [{"text": "x"}, "stall"], "b": _ok()}, stream_idle_timeout_s=0.2)
    model, result, failed = asyncio.run(ing._answer(_parsed(), ["a", "b"]))
    assert (model, result.text, failed) == ("b", "four!", 1) and h["a"].streams[0].cancelled


def test_a_model_removed_and_added_again_starts_with_a_closed_breaker():
    ing, _ = _ingress({"a": _ok(), "b": _ok()})
    for _ in range(ing.settings.breaker_failures):
        ing.breaker.record("a", ok=False)  # failures while its replicas were shutting down
    assert ing.breaker.is_open("a")
    ing.reconfigure({"models": {"b": "zoo-b"}})
    ing.reconfigure({"models": {"a": "zoo-a", "b": "zoo-b"}})
    assert not ing.breaker.is_open("a")
