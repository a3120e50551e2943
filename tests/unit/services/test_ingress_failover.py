"""The ingress's failover down the ranking, with fake model handles (no Ray cluster started)."""

import asyncio

import pytest

from services.api import Ingress
from services.metrics import IngressMetrics
from services.protocol import ApiError
from services.serving import parse_request
from tests.unit.services.fakes import _Handle


def _ingress(scripts, request_timeout_s=5.0):
    ing = Ingress(
        router=None,
        settings={"request_timeout_s": request_timeout_s, "first_chunk_timeout_s": 2},
        metrics=IngressMetrics.recording(),
    )
    ing.reconfigure({"models": {m: f"zoo-{m}" for m in scripts}})
    handles = {m: _Handle(s) for m, s in scripts.items()}
    ing._handle = handles.__getitem__
    return ing, handles


def _parsed():
    body = {"model": "auto", "messages": [{"role": "user", "content": "What is 2+2?"}]}
    return parse_request(body, "chat", 256, 1024, 4096)


def _ok(text):
    return [
        {"text": text},
        {"text": "!", "finish_reason": "stop", "prompt_tokens": 3, "completion_tokens": 2},
    ]


def test_a_model_dying_mid_answer_fails_over_to_the_next_one():
    died = RuntimeError("ActorDiedError: the replica was killed")
    ing, handles = _ingress({"a": [{"text": "par"}, died], "b": _ok("four"), "c": _ok("never")})
    model, result, failed = asyncio.run(ing._answer(_parsed(), ["a", "b", "c"]))
    assert (model, result.text, result.finish_reason, failed) == ("b", "four!", "stop", 1)
    assert [h.calls for h in handles.values()] == [1, 1, 0]


def test_failures_before_and_after_the_first_output_are_counted_together():
    ing, _ = _ingress(
        {"a": [RuntimeError("no replica")], "b": [{"text": "x"}, RuntimeError("died")], "c": _ok("ok")}
    )
    model, _, failed = asyncio.run(ing._answer(_parsed(), ["a", "b", "c"]))
    assert (model, failed) == ("c", 2)


def test_the_last_model_dying_mid_answer_is_a_502():
    ing, _ = _ingress({"a": [{"text": "x"}, RuntimeError("died")]})
    with pytest.raises(ApiError) as e:
        asyncio.run(ing._answer(_parsed(), ["a"]))
    assert e.value.status == 502 and e.value.code == "model_failed" and "'a'" in e.value.message


def test_a_client_error_mid_answer_does_not_fail_over():
    ing, handles = _ingress({"a": [{"text": "x"}, ApiError(400, "bad stop sequence")], "b": _ok("ok")})
    with pytest.raises(ApiError) as e:
        asyncio.run(ing._answer(_parsed(), ["a", "b"]))
    assert e.value.status == 400 and handles["b"].calls == 0


def test_running_past_the_request_timeout_is_a_504_without_failover():
    ing, handles = _ingress({"a": [{"text": "x"}, "stall"], "b": _ok("ok")}, request_timeout_s=0.2)
    with pytest.raises(ApiError) as e:
        asyncio.run(ing._answer(_parsed(), ["a", "b"]))
    assert e.value.status == 504 and "request_timeout_s=0.2" in e.value.message and handles["b"].calls == 0
