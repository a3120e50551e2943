"""The `openai` model server against a local fake endpoint (127.0.0.1 only): statuses mapped to client errors or
failover, the upstream's text never passed on, no retries of its own, keys required where configured."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from modelsat.errors import ConfigError
from services.models.openai_proxy import OpenAIProxyModel
from services.protocol import ApiError, GenerationRequest

LEAK = "Incorrect API key provided: sk-abc1***************************xyz9"


@pytest.fixture
def endpoint():
    """A fake OpenAI endpoint answering every request with the status in `state["status"]`."""
    state = {"status": 200, "posts": 0, "auth": []}

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status, body):
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):  # GET /v1/models
            self._send(
                state["status"],
                {"object": "list", "data": []} if state["status"] == 200 else {"error": {"message": LEAK}},
            )

        def do_POST(self):
            state["posts"] += 1
            state["auth"].append(self.headers.get("authorization"))
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self._send(state["status"], {"error": {"message": LEAK, "type": "invalid_request_error"}})

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/v1", state
    srv.shutdown()


def _request():
    return GenerationRequest(
        request_id="r1",
        kind="chat",
        instruction="hi",
        max_tokens=8,
        messages=[{"role": "user", "content": "hi"}],
    )


async def _drain(model):
    return [x async for x in model.generate_stream(_request())]


@pytest.mark.parametrize(
    ("upstream", "status", "failover"),
    [
        (400, 400, False),
        (413, 413, False),
        (422, 422, False),
        (401, 502, True),
        (403, 502, True),
        (404, 502, True),
        (429, 502, True),
        (500, 502, True),
        (503, 502, True),
    ],
)
def test_upstream_statuses_are_client_errors_or_failovers_and_never_echo_the_upstream(
    endpoint, upstream, status, failover
):
    url, state = endpoint
    state["status"] = upstream
    model = OpenAIProxyModel("m", url)
    with pytest.raises(ApiError) as e:
        asyncio.run(_drain(model))
    assert e.value.status == status and (e.value.status >= 500) == failover
    assert "sk-abc1" not in e.value.message and "Incorrect API key" not in e.value.message
    assert f"HTTP {upstream}" in e.value.message
    assert e.value.__cause__ is None  # the upstream exception (with its text) does not travel along
    assert state["posts"] == 1  # max_retries=0: the ingress fails over, the client does not retry


def test_a_missing_key_variable_fails_at_start_and_the_key_is_sent(endpoint, monkeypatch):
    url, state = endpoint
    monkeypatch.delenv("UPSTREAM_KEY", raising=False)
    with pytest.raises(ConfigError, match="api_key_env='UPSTREAM_KEY' but the variable is missing or empty"):
        OpenAIProxyModel("m", url, api_key_env="UPSTREAM_KEY")
    monkeypatch.setenv("UPSTREAM_KEY", "k-123\n")
    model = OpenAIProxyModel("m", url, api_key_env="UPSTREAM_KEY")
    state["status"] = 400
    with pytest.raises(ApiError):
        asyncio.run(_drain(model))
    assert state["auth"] == ["Bearer k-123"]


def test_plain_http_with_a_key_is_refused_unless_allowed():
    from modelsat.serving_config import OpenAIModelEngine

    with pytest.raises(
        ValueError, match="plain http:// and api_key_env='K' would send its key in clear text"
    ):
        OpenAIModelEngine(base_url="http://api.example.com/v1", api_key_env="K")
    OpenAIModelEngine(base_url="http://api.example.com/v1", api_key_env="K", allow_insecure_http=True)
    OpenAIModelEngine(base_url="https://api.example.com/v1", api_key_env="K")
    OpenAIModelEngine(base_url="http://127.0.0.1:8000/v1", api_key_env="K")  # loopback
    OpenAIModelEngine(base_url="http://api.example.com/v1")  # no key to leak


def test_the_health_check_pings_the_endpoint(endpoint):
    url, state = endpoint
    model = OpenAIProxyModel("m", url, health_check_interval_s=0)
    asyncio.run(model.check_health())
    state["status"] = 404  # an endpoint that lists no models is still reachable
    asyncio.run(model.check_health())
    for bad in (401, 500):
        state["status"] = bad
        with pytest.raises(ApiError, match=f"HTTP {bad}"):
            asyncio.run(model.check_health())
    unreachable = OpenAIProxyModel("m", "http://127.0.0.1:9/v1", timeout_s=2, health_check_interval_s=0)
    with pytest.raises(ApiError, match="unreachable"):
        asyncio.run(unreachable.check_health())
