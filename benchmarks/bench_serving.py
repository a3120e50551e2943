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
    .venv/bin/python -m benchmarks.bench_serving --router-checkpoint A --router-checkpoint B   # encoders side by side

Every row sends its own instructions (none sent before in the run), so no encoding cache can answer from memory;
the targets table gives the routed path's overhead at one client, its throughput against the named model's at the
highest concurrency, and the router replica's resident memory.
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


def _replica_rss_mib(deployment: str) -> list[float]:
    """Resident memory (MiB) of each running replica of `deployment`: Ray titles a replica's worker process
    `ray::ServeReplica:<app>:<deployment>`; read from /proc (Linux; empty elsewhere)."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "ServeReplica:" in title and f":{deployment}" in title:
                out.append(int((proc / "statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20)
        except (OSError, ValueError, IndexError):
            continue
    return out


def _measure(zoo_cfg: ServingConfig, prompts: list[list[str]], args: argparse.Namespace) -> dict:
    """Deploy `zoo_cfg`, run every (concurrency, mode) row on its own instructions, shut down."""
    import ray
    from ray import serve

    from services.deploy import deploy_serving_config, embedded_cpus

    ray.init(num_cpus=embedded_cpus(zoo_cfg), include_dashboard=False, namespace="modelsat")
    try:
        t0 = time.monotonic()
        deploy_serving_config(zoo_cfg)
        deploy_s = time.monotonic() - t0
        url = f"http://127.0.0.1:{zoo_cfg.http_port}{zoo_cfg.ingress.route_prefix.rstrip('/')}/v1"
        _http(url, "auto", prompts[-1][:16], 4, args.max_tokens)  # warm-up on instructions no row sends
        rows = []
        named = None
        sets = iter(prompts)
        for c in [int(x) for x in args.concurrency.split(",")]:
            # each row sends instructions no earlier row sent: no cache anywhere can answer from memory
            lat, rps, chosen = _http(url, "auto", next(sets), c, args.max_tokens)
            rows.append({"mode": "auto (ingress + router + model)", "concurrency": c, "lat": lat, "rps": rps})
            named = named or Counter(chosen).most_common(1)[0][0]
            lat, rps, _ = _http(url, named, next(sets), c, args.max_tokens)
            rows.append(
                {"mode": f"named `{named}` (ingress + model)", "concurrency": c, "lat": lat, "rps": rps}
            )
            lat, rps = _handle(model_app_name(named), next(sets), c, args.max_tokens)
            rows.append(
                {"mode": "model application handle (no HTTP)", "concurrency": c, "lat": lat, "rps": rps}
            )
        rss = {d: _replica_rss_mib(d) for d in ("Ingress", "RouterDeployment")}
    finally:
        serve.shutdown()
        ray.shutdown()
    return {"deploy_s": deploy_s, "rows": rows, "router_rss_mib": rss}


def _p50(r: dict) -> float:
    return float(np.percentile(r["lat"], 50))


def _row(res: dict, prefix: str, c: int) -> dict:
    return next(r for r in res["rows"] if r["concurrency"] == c and r["mode"].startswith(prefix))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "modelsat/configs/serving_recorded_mmlu_pro.yaml"))
    ap.add_argument(
        "--router-checkpoint",
        action="append",
        default=None,
        help="router checkpoint to serve instead of the config's; repeat it to compare encoders in one run",
    )
    ap.add_argument(
        "--placement",
        default="auto",
        choices=["auto", "config", "deployment", "ingress"],
        help="router.placement for every checkpoint; auto: ingress for a static router, else deployment; "
        "config: as the config says",
    )
    ap.add_argument("--zoo", default="mmlu_pro", help="zoo whose instructions are sent")
    ap.add_argument("--requests", type=int, default=256, help="requests per (mode, concurrency)")
    ap.add_argument("--concurrency", default="1,8,32")
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    base = ServingConfig.from_yaml(args.config)
    raw = base.model_dump(mode="json")
    for key in ("checkpoint", "registry"):
        if raw["router"].get(key) and "://" not in raw["router"][key]:
            raw["router"][key] = str(Path(raw["router"][key]).resolve())
    checkpoints = args.router_checkpoint or [raw["router"]["checkpoint"]]
    reg = raw["router"].get("registry")
    if reg and "://" not in reg and not Path(reg).exists():
        print(f"(no registry at {reg}: the router routes among the checkpoint's own profiles)")
        raw["router"]["registry"] = None
    concurrency = [int(x) for x in args.concurrency.split(",")]
    prompts_all = [str(p) for p in load_routing_data(args.zoo).prompts]
    n_sets = 3 * len(concurrency) + 1
    if n_sets * args.requests > len(prompts_all):
        raise SystemExit(
            f"--requests {args.requests}: {n_sets} rows need {n_sets * args.requests} distinct instructions; "
            f"{args.zoo} has {len(prompts_all)}"
        )
    rng = np.random.default_rng(0)
    order = rng.choice(len(prompts_all), size=n_sets * args.requests, replace=False)
    prompts = [
        [prompts_all[i] for i in order[k * args.requests : (k + 1) * args.requests]] for k in range(n_sets)
    ]
    results = []
    for ckpt in checkpoints:
        raw["router"]["checkpoint"] = str(Path(ckpt).resolve()) if "://" not in ckpt else ckpt
        cfg = ServingConfig.model_validate(raw)
        from modelsat.router import RouterCheckpoint

        rc = RouterCheckpoint.load(cfg.router.checkpoint).model.config
        if (
            args.placement != "config"
        ):  # auto: a static router ranks in the ingress, as the serving stage does
            placement = args.placement
            if placement == "auto":
                placement = "ingress" if rc.backbone_type == "static" else "deployment"
            cfg = ServingConfig.model_validate({**raw, "router": {**raw["router"], "placement": placement}})
        res = _measure(cfg, prompts, args)
        res["checkpoint"] = ckpt
        res["encoder"] = (
            f"{rc.backbone_type} {rc.backbone_name}, router in the {'ingress' if cfg.router.placement == 'ingress' else 'router deployment'}"
        )
        results.append(res)

    print(
        f"## Routed serving (commit {git_commit()}, CPU ({os.cpu_count()} cores, {platform.machine()}), config "
        f"`{args.config}`, {len(base.models)} models, {args.requests} distinct instructions per row, router "
        f"batch ≤ {base.router.max_batch_size}, wait {1000 * base.router.batch_wait_timeout_s:g} ms)\n"
    )
    for res in results:
        print(f"### router `{res['checkpoint']}`: {res['encoder']} (deploy {res['deploy_s']:.0f}s)\n")
        print("| mode | clients | p50 ms | p95 ms | requests/s | p50 / handle p50 |")
        print("|---|---|---|---|---|---|")
        for r in res["rows"]:
            floor = _row(res, "model application", r["concurrency"])
            print(
                f"| {r['mode']} | {r['concurrency']} | {_p50(r):.1f} | {np.percentile(r['lat'], 95):.1f} | "
                f"{r['rps']:.1f} | {_p50(r) / _p50(floor):.1f}× |"
            )
        print()
    lo, hi = min(concurrency), max(concurrency)
    print("### Targets (issue 19), same run\n")
    print("| measure | " + " | ".join(r["encoder"] for r in results) + " | target |")
    print("|---|" + "---|" * len(results) + "---|")
    cells = [f"{_p50(_row(r, 'auto', lo)) - _p50(_row(r, 'named', lo)):.1f}" for r in results]
    print(f"| serving overhead ms, auto − named p50, {lo} client(s) | " + " | ".join(cells) + " | ≤ 10 |")
    cells = []
    for r in results:
        auto, named = _row(r, "auto", hi)["rps"], _row(r, "named", hi)["rps"]
        cells.append(f"{auto:.1f} vs {named:.1f} ({100 * auto / named:.0f} %)")
    print(f"| routed vs named requests/s, {hi} clients | " + " | ".join(cells) + " | ≥ 80 % |")
    for dep, what in (("Ingress", "ingress replica"), ("RouterDeployment", "router deployment replica")):
        cells = [", ".join(f"{x:.0f}" for x in r["router_rss_mib"][dep]) or "–" for r in results]
        print(f"| {what} resident memory MiB (each replica) | " + " | ".join(cells) + " | report |")
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                [
                    {
                        "checkpoint": res["checkpoint"],
                        "encoder": res["encoder"],
                        "router_rss_mib": res["router_rss_mib"],
                        "rows": [
                            {
                                "mode": r["mode"],
                                "concurrency": r["concurrency"],
                                "p50_ms": _p50(r),
                                "p95_ms": float(np.percentile(r["lat"], 95)),
                                "requests_per_s": r["rps"],
                            }
                            for r in res["rows"]
                        ],
                    }
                    for res in results
                ],
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
