"""The ingress's FastAPI app is built per replica (Serve's late-bound `__serve_build_asgi_app__`), with its
routes bound to the replica's `Ingress`: no route takes `self` (issue 15: a module-level app pickled into the
replica answered every request with 422 `{"loc": ["query", "self"]}` under newer FastAPI)."""

from fastapi.testclient import TestClient

from services.api import Ingress, build_fastapi_app
from services.metrics import IngressMetrics


def _ingress() -> Ingress:
    ing = Ingress(router=None, settings={}, metrics=IngressMetrics.recording())
    ing.reconfigure({"models": {"m1": "zoo-m1", "m2": "zoo-m2"}})
    return ing


def test_the_replica_builds_its_own_app_with_bound_routes():
    ing = _ingress()
    app = ing.__serve_build_asgi_app__()
    assert app is not ing.__serve_build_asgi_app__()  # a new app per call: nothing shared between replicas
    client = TestClient(app)
    assert client.get("/health").json() == {"status": "ok", "models": 2}
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["auto", "m1", "m2"]
    spec = app.openapi()  # built in-process: the route is off (no unauthenticated docs)
    params = [
        p["name"] for path in spec["paths"].values() for op in path.values() for p in op.get("parameters", [])
    ]
    assert "self" not in params


def test_errors_are_openai_style_through_the_built_app():
    client = TestClient(build_fastapi_app(_ingress()))
    r = client.post("/v1/chat/completions", content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = client.post(
        "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_an_endpoint_is_one_handler_and_one_registry_line(monkeypatch):
    from services import endpoints

    async def echo(ingress, request):
        return {"models": sorted(ingress.apps), "q": request.query_params.get("q")}

    monkeypatch.setattr(
        endpoints, "ENDPOINTS", [*endpoints.ENDPOINTS, endpoints.Endpoint("/v1/echo", ("GET",), echo)]
    )
    client = TestClient(build_fastapi_app(_ingress()))
    assert client.get("/v1/echo?q=hi").json() == {"models": ["m1", "m2"], "q": "hi"}
    assert client.get("/health").json()["status"] == "ok"  # the registered ones are still there
    spec = client.app.openapi()
    assert {"/health", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/echo"} <= set(
        spec["paths"]
    )
