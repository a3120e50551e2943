"""The main job's serving stage: the held-out instructions through the routed HTTP API, graded.

Deploys the zoo's models as recorded-engine applications (each answers with its recorded response) behind the
router checkpoint the main job trained, sends every held-out instruction to `model: "auto"` with the `openai`
client, and grades each answer by the recorded outcome of the model that answered. That accuracy must equal
what `modelsat eval` computed for the same questions: the served routing decisions are the evaluated ones.
It also re-grades the answer text against the gold `reference` with `modelsat.grading` (the tails are the last
400 characters of each response, so this second figure can differ a little).
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from cluster.local import free_port
from modelsat.data import load_routing_data
from modelsat.evaluate import candidate_profiles, held_out_rows
from modelsat.grading import AptitudeItem, grade_response, grading_kind
from modelsat.progress import NullProgress, Progress
from modelsat.registry import ModelCard, ModelRegistry, aptitude_fingerprint
from modelsat.router import RouterCheckpoint
from modelsat.serving_config import ServingConfig, model_app_name

__all__ = ["serve_held_out"]


def serve_held_out(
    checkpoint: str | Path,
    zoo_dir: str | Path,
    registry_dir: str | Path,
    progress: Progress | None = None,
    concurrency: int = 8,
    expected_accuracy: float | None = None,
) -> dict[str, Any]:
    """Serve the zoo behind the router and answer every held-out instruction through the HTTP API.

    Args:
        checkpoint: router checkpoint directory.
        zoo_dir: the zoo (recorded responses and outcomes).
        registry_dir: where the models' cards and profiles are registered (created or updated).
        concurrency: concurrent `openai` clients.
        expected_accuracy: `modelsat eval`'s Model-SAT accuracy on the same questions, to compare.
    Returns:
        {"n_questions", "accuracy" (by recorded outcomes, in [0, 1]), "accuracy_regraded" (answer text vs
        reference), "matches_eval", "choice_share", "requests_per_s", "latency_ms_p50", "latency_ms_p95",
        "deploy_seconds"}.
    """
    import openai
    import ray
    from ray import serve

    from services.deploy import deploy_serving_config

    progress = progress or NullProgress()
    ckpt = RouterCheckpoint.load(checkpoint)
    zoo = load_routing_data(zoo_dir)
    rows = held_out_rows(ckpt, zoo, "test")
    registry = ModelRegistry(Path(registry_dir).resolve())
    fp = aptitude_fingerprint(ckpt.aptitude)
    for name, prof in candidate_profiles(ckpt, zoo).items():
        card = ModelCard(name=name, serve_application=model_app_name(name))
        registry.put(card, prof, {"test": fp, "zoo": zoo.name, "engine": {"kind": "recorded"}}, replace=True)
    port = free_port()
    cfg = ServingConfig.from_dict(
        {
            "http_port": port,
            "ingress": {"max_tokens_limit": 4096, "first_chunk_timeout_s": 30},
            "router": {
                "checkpoint": str(Path(checkpoint).resolve()),
                "registry": str(registry.uri),
                # a static router ranks inside the ingress (no hop); a transformer router gets its own replicas
                "placement": "ingress" if ckpt.model.config.backbone_type == "static" else "deployment",
            },
            "models": [
                {
                    "name": m,
                    "engine": {"kind": "recorded", "routing_data": str(Path(zoo.path).resolve())},
                    "resources": {"num_cpus": 0.1},
                    "max_ongoing_requests": 64,
                }
                for m in zoo.models
            ],
        },
        source="serving stage",
    )
    owns_ray = not ray.is_initialized()
    t0 = time.monotonic()
    progress.log(f"serving stage: deploying the router and {len(zoo.models)} recorded model applications")
    try:
        deploy_serving_config(cfg)
        deploy_s = time.monotonic() - t0
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=2, timeout=120
        )
        col = {m: j for j, m in enumerate(zoo.models)}

        def ask(r: int) -> tuple[str, str, float]:
            t = time.perf_counter()
            out = client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": str(zoo.prompts[r])}], max_tokens=4096
            )
            return out.model, out.choices[0].message.content or "", 1000 * (time.perf_counter() - t)

        answers: list[tuple[str, str, float]] = []
        t1 = time.monotonic()
        with progress.task("held-out instructions through the API", total=len(rows)) as advance:
            with ThreadPoolExecutor(concurrency) as pool:
                for a in pool.map(ask, rows.tolist()):
                    answers.append(a)
                    advance()
        wall = time.monotonic() - t1
    finally:
        if ray.is_initialized():
            serve.shutdown()
        if owns_ray:
            ray.shutdown()
    scores, regraded = [], []
    for r, (model, text, _) in zip(rows.tolist(), answers, strict=True):
        scores.append(float(zoo.outcomes[r, col[model]]))
        item = AptitudeItem(
            str(zoo.question_ids[r]),
            str(zoo.tasks[r]),
            str(zoo.benchmarks[r]),
            str(zoo.prompts[r]),
            zoo.references[r],
        )
        kind = grading_kind(item)
        if kind is not None:
            regraded.append(grade_response(item, kind, text).score)
    accuracy = float(np.mean(scores))
    latencies = np.array([a[2] for a in answers])
    chosen = Counter(a[0] for a in answers)
    return {
        "n_questions": len(rows),
        "accuracy": accuracy,
        "accuracy_regraded": float(np.mean(regraded)) if regraded else None,
        "n_regraded": len(regraded),
        # eval averages in float32: equal means within half a question
        "matches_eval": None
        if expected_accuracy is None
        else bool(abs(accuracy - expected_accuracy) < 0.5 / len(rows)),
        "choice_share": {m: c / len(answers) for m, c in chosen.most_common()},
        "requests_per_s": len(answers) / wall,
        "latency_ms_p50": float(np.percentile(latencies, 50)),
        "latency_ms_p95": float(np.percentile(latencies, 95)),
        "deploy_seconds": deploy_s,
        "concurrency": concurrency,
    }
