"""Routed serving latency and throughput with 1, 8 and 32 concurrent `openai` clients.

Deploys a serving config (default: the 24 recorded mmlu_pro models behind the main job's router) on the embedded
local cluster and measures, with the same instructions and in the same run:

- `auto`: `model="auto"` through the HTTP API (ingress + router + model application);
- `named`: the model that `auto` chose most often, named explicitly (ingress + model application, no router);
- `handle`: that model's application called directly through a Serve `DeploymentHandle` (no HTTP, no ingress,
  no router), the floor.

The table gives p50/p95 latency (ms) and requests/s per mode and concurrency, and the overhead of ingress +
router versus calling the model application directly (p50 ratio auto/handle).

    .venv/bin/python -m benchmarks.bench_serving --config modelsat/configs/serving_recorded_mmlu_pro.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, git_commit
from modelsat.data import load_routing_data
from modelsat.serving_config import ServingConfig, model_app_name


def _http(
    url: str, model: str, prompts: list[str], concurrency: int, max_tokens: int
) -> tuple[list[float], float, list[str]]:
    import openai

    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)

    def one(p: str) -> tuple[float, str]:
        t = time.perf_counter()
        out = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": p}], max_tokens=max_tokens
        )
        return 1000 * (time.perf_counter() - t), out.model

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        res = list(pool.map(one, prompts))
    return [r[0] for r in res], len(prompts) / (time.perf_counter() - t0), [r[1] for r in res]


def _handle(app: str, prompts: list[str], concurrency: int, max_tokens: int) -> tuple[list[float], float]:
    from ray import serve

    from services.protocol import GenerationRequest

    handle = serve.get_app_handle(app)

    async def one(p: str, sem: asyncio.Semaphore) -> float:
        async with sem:
            t = time.perf_counter()
            req = GenerationRequest(
                request_id="bench",
                kind="chat",
                instruction=p,
                max_tokens=max_tokens,
                messages=[{"role": "user", "content": p}],
            )
            async for _ in handle.options(stream=True).generate_stream.remote(req):
                pass
            return 1000 * (time.perf_counter() - t)

    async def run() -> list[float]:
        sem = asyncio.Semaphore(concurrency)
        return await asyncio.gather(*(one(p, sem) for p in prompts))

    t0 = time.perf_counter()
    lat = asyncio.run(run())
    return list(lat), len(prompts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "modelsat/configs/serving_recorded_mmlu_pro.yaml"))
    ap.add_argument("--zoo", default="mmlu_pro", help="zoo whose instructions are sent")
    ap.add_argument("--requests", type=int, default=256, help="requests per (mode, concurrency)")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    import ray

    from services.deploy import deploy_serving_config, embedded_cpus

    zoo_cfg = ServingConfig.from_yaml(args.config)
    raw = zoo_cfg.model_dump(mode="json")
    for key in ("checkpoint", "registry"):
        if raw["router"].get(key) and "://" not in raw["router"][key]:
            raw["router"][key] = str(Path(raw["router"][key]).resolve())
    zoo_cfg = ServingConfig.model_validate(raw)
    prompts_all = [str(p) for p in load_routing_data(args.zoo).prompts]
    rng = np.random.default_rng(0)
    prompts = [prompts_all[i] for i in rng.choice(len(prompts_all), size=args.requests, replace=False)]
    ray.init(num_cpus=embedded_cpus(zoo_cfg), include_dashboard=False, namespace="modelsat")
    t0 = time.monotonic()
    deploy_serving_config(zoo_cfg)
    deploy_s = time.monotonic() - t0
    url = f"http://127.0.0.1:{zoo_cfg.http_port}{zoo_cfg.ingress.route_prefix.rstrip('/')}/v1"
    _http(url, "auto", prompts[:16], 4, args.max_tokens)  # warm-up
    rows = []
    named = None
    for c in [int(x) for x in args.concurrency.split(",")]:
        lat, rps, chosen = _http(url, "auto", prompts, c, args.max_tokens)
        rows.append({"mode": "auto (ingress + router + model)", "concurrency": c, "lat": lat, "rps": rps})
        named = named or Counter(chosen).most_common(1)[0][0]
        lat, rps, _ = _http(url, named, prompts, c, args.max_tokens)
        rows.append({"mode": f"named `{named}` (ingress + model)", "concurrency": c, "lat": lat, "rps": rps})
        lat, rps = _handle(model_app_name(named), prompts, c, args.max_tokens)
        rows.append({"mode": "model application handle (no HTTP)", "concurrency": c, "lat": lat, "rps": rps})
    from ray import serve

    serve.shutdown()
    ray.shutdown()

    print(
        f"## Routed serving (commit {git_commit()}, CPU ({os.cpu_count()} cores, {platform.machine()}), config "
        f"`{args.config}`, {len(zoo_cfg.models)} models, {args.requests} requests per row, deploy {deploy_s:.0f}s)\n"
    )
    print("| mode | clients | p50 ms | p95 ms | requests/s | p50 / handle p50 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        base = next(
            x
            for x in rows
            if x["concurrency"] == r["concurrency"] and x["mode"].startswith("model application")
        )
        p50 = float(np.percentile(r["lat"], 50))
        print(
            f"| {r['mode']} | {r['concurrency']} | {p50:.1f} | {np.percentile(r['lat'], 95):.1f} | {r['rps']:.1f} | "
            f"{p50 / float(np.percentile(base['lat'], 50)):.1f}× |"
        )
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                [
                    {
                        "mode": r["mode"],
                        "concurrency": r["concurrency"],
                        "p50_ms": float(np.percentile(r["lat"], 50)),
                        "p95_ms": float(np.percentile(r["lat"], 95)),
                        "requests_per_s": r["rps"],
                    }
                    for r in rows
                ],
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
