"""Routed serving under load, faults and bad input: nothing lost, nothing answered twice, nothing orphaned.

Deploys a serving config (default: the 24 recorded mmlu_pro models behind the main job's router) on the embedded
local cluster, bound to 127.0.0.1, and runs bounded loops of `openai` clients against it:

- **load**: 1, 8, 32 and 64 concurrent clients, a fixed number of requests each: errors, p50/p95/p99 latency,
  requests/s;
- **faults under load** (16 clients): kill the top model's replica; kill the router replica; stall the top model
  before its first chunk, and after it; make every model fail; fill the top model's queue; disconnect streaming
  clients after their first chunk. Faults are injected into the recorded models (`RecordedModel.set_fault`) and
  replicas are killed with `ray.kill`. Per row: requests sent, answered, failed (by status), **answered twice**
  (a request id that some model answered to the end more than once, or that two models answered), **orphaned**
  (generations still running on any model replica 2 s after every client got its reply), **lost** (no answer, or a
  5xx while some model could still answer it: in the every-model-fails row a 503 within the request deadline is
  the right answer), and the time to recover (a killed model or router answers again);
- **bad input**: every refused-input case of the serving issue, with the status and error code it got.

Prints three Markdown tables; never asserts (the tests assert the behaviours).

    .venv/bin/python -m benchmarks.bench_faults                  # needs the main job's runs/mmlu_pro checkpoint
    .venv/bin/python -m benchmarks.bench_faults --requests 64 --out runs/bench_faults.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, git_commit
from modelsat.data import load_routing_data
from modelsat.serving_config import ServingConfig, model_app_name

TOKEN_ENV = "MODELSAT_BENCH_TOKEN"
TOKEN = "bench-token"
# Bench-sized timeouts (seconds), so a fault row takes seconds; the rest of the config is the one given.
INGRESS = {
    "auth_token_env": TOKEN_ENV,
    "first_chunk_timeout_s": 2.0,
    "stream_idle_timeout_s": 2.0,
    "request_timeout_s": 20.0,
    "router_timeout_s": 5.0,
    "router_unavailable": "best_by_profile",
    "breaker_failures": 5,
    "breaker_cooldown_s": 5.0,
    "retry_after_s": 1,
}
STALL_S = 30.0  # far past every timeout: a stalled generation that is not cancelled stays running
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def _http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP request with the standard library (the serve profile has no httpx): (status, headers, body)."""
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _json(raw: bytes) -> dict[str, Any]:
    try:
        out = json.loads(raw)
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def _one(url: str, prompt: str, model: str = "auto", timeout: float = 60.0) -> dict[str, Any]:
    """One non-streamed chat request: {"status", "model", "id", "ms"} (status 0: no answer)."""
    t = time.perf_counter()
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": 512}
    try:
        status, headers, raw = _http(
            "POST", f"{url}/chat/completions", json.dumps(body).encode(), AUTH, timeout
        )
    except Exception as e:  # noqa: BLE001 - no answer at all: counted as lost
        return {
            "status": 0,
            "model": None,
            "id": None,
            "ms": 1000 * (time.perf_counter() - t),
            "why": type(e).__name__,
        }
    out: dict[str, Any] = {
        "status": status,
        "ms": 1000 * (time.perf_counter() - t),
        "model": None,
        "id": None,
        "headers": headers,
    }
    j = _json(raw)
    if status == 200:
        out["model"], out["id"] = j["model"], j["id"].removeprefix("chatcmpl-")
    else:
        out["code"] = (j.get("error") or {}).get("code")
    return out


def _disconnecting(url: str, prompt: str) -> dict[str, Any]:
    """A streamed request whose client reads the first chunk, then hangs up."""
    import urllib.request

    t = time.perf_counter()
    body = {
        "model": "auto",
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 512,
    }
    req = urllib.request.Request(
        f"{url}/chat/completions", data=json.dumps(body).encode(), method="POST", headers=AUTH
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, model = r.status, r.headers.get("x-modelsat-model")
            for line in r:
                if line.startswith(b"data: "):
                    break  # the first chunk arrived: hang up
        return {"status": status, "ms": 1000 * (time.perf_counter() - t), "model": model, "id": None}
    except Exception as e:  # noqa: BLE001
        return {
            "status": getattr(e, "code", 0),
            "model": None,
            "id": None,
            "ms": 1000 * (time.perf_counter() - t),
            "why": type(e).__name__,
        }


def _run(fn: Any, prompts: list[str], clients: int, during: Any = None) -> tuple[list[dict], float, Any]:
    """Send every prompt with `clients` concurrent clients; `during()` runs in a thread once load is on."""
    side: dict[str, Any] = {}
    if during is not None:

        def side_job() -> None:
            time.sleep(1.0)
            side["result"] = during()

        th = threading.Thread(target=side_job)
        th.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        res = list(pool.map(fn, prompts))
    secs = time.perf_counter() - t0
    if during is not None:
        th.join()
    return res, secs, side.get("result")


def _apps(serving: ServingConfig) -> list[str]:
    return [model_app_name(m.name) for m in serving.models]


def _model_call(app: str, method: str, *args: Any) -> list[Any]:
    """Call `method` on every replica of a model application (best effort: each call reaches one replica; repeat
    to reach all, which is enough for the one-replica apps of the recorded configs)."""
    from ray import serve

    handle = serve.get_app_handle(app)
    return [getattr(handle, method).remote(*args).result(timeout_s=30)]


def _stats(serving: ServingConfig) -> dict[str, dict[str, Any]]:
    return {a: _model_call(a, "stats")[0] for a in _apps(serving)}


def _set_fault(apps: list[str], kind: str, seconds: float = 0.0) -> None:
    for a in apps:
        _model_call(a, "set_fault", kind, seconds)


def _replica(class_suffix: str) -> Any:
    from ray.util.state import list_actors

    return next(
        a
        for a in list_actors(filters=[("state", "=", "ALIVE")], limit=2000)
        if a.class_name.endswith(class_suffix)
    )


def _kill(class_suffix: str) -> None:
    import ray

    victim = _replica(class_suffix)
    ray.kill(ray.get_actor(victim.name, namespace=victim.ray_namespace or "serve"))


def _time_to(ok: Any, timeout_s: float = 120.0) -> float | None:
    """Seconds until `ok()` is true (polled every 0.25 s), or None."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if ok():
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001, S110 - not yet
            pass
        time.sleep(0.25)
    return None


def _row(
    name: str,
    res: list[dict],
    before: dict,
    after: dict,
    every_model_fails: bool = False,
    recover_s: float | None = None,
    disconnect: bool = False,
) -> dict[str, Any]:
    done = Counter()
    for app in after:
        old = Counter(before.get(app, {}).get("completed", []))
        new = Counter(after[app]["completed"])
        done.update(new - old)
    twice = sum(1 for c in done.values() if c > 1)
    orphaned = sum(s["active"] for s in after.values())
    statuses = Counter(r["status"] for r in res)
    answered = statuses.get(200, 0)
    if every_model_fails:
        lost = sum(1 for r in res if r["status"] != 503)
    elif disconnect:
        lost = sum(1 for r in res if r["status"] != 200)  # the first chunk must arrive before the hang-up
    else:
        lost = sum(1 for r in res if r["status"] == 0 or r["status"] >= 500)
    failed = ", ".join(f"{s or 'no answer'}: {n}" for s, n in sorted(statuses.items()) if s != 200) or "0"
    return {
        "row": name,
        "sent": len(res),
        "answered": answered,
        "failed": failed,
        "twice": twice,
        "orphaned": orphaned,
        "lost": lost,
        "recover_s": recover_s,
        "p50_ms": float(np.percentile([r["ms"] for r in res], 50)),
    }


BAD_INPUT: list[tuple[str, str, str, Any, dict[str, str], int, str | None]] = [
    # (case, method, path, body (bytes or JSON), extra headers, expected status, expected error code)
    (
        "body over max_body_bytes (Content-Length)",
        "POST",
        "/chat/completions",
        b" " * 1_100_000,
        {},
        413,
        "body_too_large",
    ),
    (
        "JSON nested 100,000 deep",
        "POST",
        "/chat/completions",
        b'{"model": "auto", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        {},
        400,
        "invalid_json",
    ),
    (
        "NaN",
        "POST",
        "/chat/completions",
        b'{"model": "auto", "temperature": NaN, "messages": [{"role": "user", "content": "hi"}]}',
        {},
        400,
        "invalid_json",
    ),
    (
        "router.cost_weight 1e999 with return_scores",
        "POST",
        "/chat/completions",
        b'{"model": "auto", "router": {"cost_weight": 1e999, "return_scores": true}, "messages": [{"role": "user", "content": "hi"}]}',
        {},
        400,
        "invalid_json",
    ),
    (
        "tools",
        "POST",
        "/chat/completions",
        {
            "model": "auto",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "messages": [{"role": "user", "content": "hi"}],
        },
        {},
        400,
        "unsupported_parameter",
    ),
    (
        "response_format",
        "POST",
        "/chat/completions",
        {
            "model": "auto",
            "response_format": {"type": "json_object"},
            "messages": [{"role": "user", "content": "hi"}],
        },
        {},
        400,
        "unsupported_parameter",
    ),
    (
        "logprobs",
        "POST",
        "/chat/completions",
        {"model": "auto", "logprobs": True, "messages": [{"role": "user", "content": "hi"}]},
        {},
        400,
        "unsupported_parameter",
    ),
    (
        "stream_options",
        "POST",
        "/chat/completions",
        {
            "model": "auto",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}],
        },
        {},
        400,
        "unsupported_parameter",
    ),
    # answered or refused with a 4xx (recorded models know no instruction "hi": 404 after routing)
    (
        "10,000 messages",
        "POST",
        "/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}] * 10_000},
        {},
        404,
        "instruction_not_recorded",
    ),
    (
        "50,000 unknown keys",
        "POST",
        "/chat/completions",
        {
            "model": "auto",
            "messages": [{"role": "user", "content": "hi"}],
            **{f"k{i}": i for i in range(50_000)},
        },
        {},
        404,
        "instruction_not_recorded",
    ),
    ("unknown route", "GET", "/nope", None, {}, 404, "unknown_url"),
    ("wrong method", "GET", "/chat/completions", None, {}, 405, "method_not_allowed"),
    (
        "no token",
        "POST",
        "/chat/completions",
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
        {"Authorization": ""},
        401,
        "invalid_api_key",
    ),
    ("no token on /v1/models", "GET", "/models", None, {"Authorization": ""}, 401, "invalid_api_key"),
    ("/openapi.json", "GET", "/../openapi.json", None, {}, 404, "unknown_url"),
    (
        "bad role",
        "POST",
        "/chat/completions",
        {"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]},
        {},
        400,
        None,
    ),
]


def _bad_input(url: str) -> list[dict[str, Any]]:
    out = []
    for case, method, path, body, headers, want, code in BAD_INPUT:
        h = {k: v for k, v in {**AUTH, **headers}.items() if v}
        content = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        target = f"{url.removesuffix('/v1')}/openapi.json" if path == "/../openapi.json" else f"{url}{path}"
        try:
            got, _, raw = _http(method, target, content, h)
            err = _json(raw).get("error") or {}
            got_code, openai_style = err.get("code"), "message" in err and "type" in err
        except Exception as e:  # noqa: BLE001
            got, got_code, openai_style = 0, type(e).__name__, False
        ok = got == want and (code is None or code == got_code) and openai_style
        out.append({"case": case, "want": want, "want_code": code, "status": got, "code": got_code, "ok": ok})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "modelsat/configs/serving_recorded_mmlu_pro.yaml"))
    ap.add_argument("--zoo", default="mmlu_pro", help="routing data whose instructions are sent")
    ap.add_argument("--requests", type=int, default=128, help="requests per load row")
    ap.add_argument("--fault-requests", type=int, default=64, help="requests per fault row")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()

    import ray

    from services.deploy import deploy_serving_config, embedded_cpus

    raw = ServingConfig.from_yaml(args.config).model_dump(mode="json")
    for key in ("checkpoint", "registry"):
        if raw["router"].get(key) and "://" not in raw["router"][key]:
            raw["router"][key] = str(Path(raw["router"][key]).resolve())
    raw["http_host"] = "127.0.0.1"
    raw["ingress"] = {**raw["ingress"], **INGRESS}
    serving = ServingConfig.model_validate(raw)
    prompts_all = [str(p) for p in load_routing_data(args.zoo).prompts]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(prompts_all))
    take = iter(order.tolist())

    def fresh(n: int) -> list[str]:  # distinct instructions per row
        return [prompts_all[next(take)] for _ in range(n)]

    os.environ[TOKEN_ENV] = TOKEN
    ray.init(
        num_cpus=embedded_cpus(serving),
        include_dashboard=False,
        namespace="modelsat",
        runtime_env={"env_vars": {TOKEN_ENV: TOKEN}},
    )
    t0 = time.monotonic()
    deploy_serving_config(serving)
    deploy_s = time.monotonic() - t0
    url = f"http://127.0.0.1:{serving.http_port}{serving.ingress.route_prefix.rstrip('/')}/v1"
    apps = _apps(serving)
    warm, _, _ = _run(lambda p: _one(url, p), fresh(32), 4)
    top = Counter(r["model"] for r in warm if r["model"]).most_common(1)[0][0]
    top_app = model_app_name(top)

    load_rows = []
    for clients in (1, 8, 32, 64):
        res, secs, _ = _run(lambda p: _one(url, p), fresh(args.requests), clients)
        lat = [r["ms"] for r in res]
        load_rows.append(
            {
                "clients": clients,
                "sent": len(res),
                "errors": sum(r["status"] != 200 for r in res),
                "p50_ms": float(np.percentile(lat, 50)),
                "p95_ms": float(np.percentile(lat, 95)),
                "p99_ms": float(np.percentile(lat, 99)),
                "rps": len(res) / secs,
            }
        )

    def fault_row(
        name: str,
        fn: Any = None,
        during: Any = None,
        before_fault: Any = None,
        after_fault: Any = None,
        **kw: Any,
    ) -> dict:
        if before_fault:
            before_fault()
        before = _stats(serving)
        res, _, recover = _run(fn or (lambda p: _one(url, p)), fresh(args.fault_requests), 16, during)
        time.sleep(2.0)  # cancellations reach the replicas
        after = _stats(serving)
        if after_fault:
            after_fault()
        time.sleep(serving.ingress.breaker_cooldown_s + 1)  # open breakers close before the next row
        return _row(name, res, before, after, recover_s=recover, **kw)

    faults = []
    faults.append(
        fault_row(
            f"kill the top model's replica ({top})",
            during=lambda: (
                _kill(f"{top_app}:ModelServer"),
                _time_to(lambda: _one(url, fresh(1)[0], model=top)["status"] in (200, 404)),
            )[1],
        )
    )
    faults.append(
        fault_row(
            "kill the router replica",
            during=lambda: (_kill(":RouterDeployment"), _time_to(lambda: _router_answers(url, fresh(1)[0])))[
                1
            ],
        )
    )
    faults.append(
        fault_row(
            f"stall {top} before its first chunk ({STALL_S:g} s)",
            before_fault=lambda: _set_fault([top_app], "stall_first", STALL_S),
            after_fault=lambda: _set_fault([top_app], "none"),
        )
    )
    faults.append(
        fault_row(
            f"stall {top} after its first chunk ({STALL_S:g} s)",
            before_fault=lambda: _set_fault([top_app], "stall_after_first", STALL_S),
            after_fault=lambda: _set_fault([top_app], "none"),
        )
    )
    faults.append(
        fault_row(
            "every model fails",
            before_fault=lambda: _set_fault(apps, "fail"),
            after_fault=lambda: _set_fault(apps, "none"),
            every_model_fails=True,
        )
    )
    faults.append(_queue_row(serving, top, url, fresh, args.fault_requests))
    faults.append(
        fault_row(
            "clients disconnect mid-stream (every model stalls after its first chunk)",
            fn=lambda p: _disconnecting(url, p),
            before_fault=lambda: _set_fault(apps, "stall_after_first", STALL_S),
            after_fault=lambda: _set_fault(apps, "none"),
            disconnect=True,
        )
    )
    bad = _bad_input(url)
    from ray import serve

    serve.shutdown()
    ray.shutdown()

    head = f"commit {git_commit()}, CPU ({os.cpu_count()} cores, {platform.machine()}), config `{args.config}`, {len(serving.models)} models, deploy {deploy_s:.0f} s"
    print(f"## Serving under load ({head})\n")
    print("| clients | requests | errors | p50 ms | p95 ms | p99 ms | requests/s |")
    print("|---|---|---|---|---|---|---|")
    for r in load_rows:
        print(
            f"| {r['clients']} | {r['sent']} | {r['errors']} | {r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['rps']:.1f} |"
        )
    print(
        f"\n## Faults under load (16 clients, {args.fault_requests} requests per row; timeouts: {json.dumps({k: v for k, v in INGRESS.items() if k.endswith('_s')})})\n"
    )
    print(
        "| fault | sent | answered | failed (status: n) | answered twice | orphaned | lost | recovered in s | p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in faults:
        rec = "–" if r["recover_s"] is None else f"{r['recover_s']:.1f}"
        print(
            f"| {r['row']} | {r['sent']} | {r['answered']} | {r['failed']} | {r['twice']} | {r['orphaned']} | {r['lost']} | {rec} | {r['p50_ms']:.0f} |"
        )
    print("\n## Bad input\n")
    print("| case | expected | got | OpenAI-style body, as expected |")
    print("|---|---|---|---|")
    for b in bad:
        print(
            f"| {b['case']} | {b['want']} {b['want_code'] or ''} | {b['status']} {b['code'] or ''} | {'yes' if b['ok'] else '**no**'} |"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps({"load": load_rows, "faults": faults, "bad_input": bad}, indent=1)
        )


def _router_answers(url: str, prompt: str) -> bool:
    """Whether an `auto` request is ranked by the router again (not by the profile fallback)."""
    r = _one(url, prompt, timeout=30)
    return r["status"] == 200 and "x-modelsat-router-ms" in r.get("headers", {})


def _queue_row(serving: ServingConfig, top: str, url: str, fresh: Any, n: int) -> dict[str, Any]:
    """Fill the top model's queue: redeploy it with one request in flight and one queued, each answer slowed by
    0.5 s, and send 16 clients at once; the overflow must go to the next-ranked models."""
    from services.deploy import deploy_serving_config

    raw = serving.model_dump(mode="json")
    for m in raw["models"]:
        if m["name"] == top:
            m["max_ongoing_requests"], m["max_queued_requests"] = 1, 1
    small = ServingConfig.model_validate(raw)
    deploy_serving_config(small)
    app = model_app_name(top)
    _set_fault([app], "stall_first", 0.5)
    before = _stats(small)
    res, _, _ = _run(lambda p: _one(url, p), fresh(n), 16)
    time.sleep(2.0)
    after = _stats(small)
    _set_fault([app], "none")
    row = _row(f"fill {top}'s queue (max_ongoing 1, max_queued 1, 0.5 s per answer)", res, before, after)
    row["answered_by_top"] = sum(r["model"] == top for r in res)
    deploy_serving_config(serving)
    return row


if __name__ == "__main__":
    main()
