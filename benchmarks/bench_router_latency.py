"""Router latency per routing decision for 5, 10, 24 and 50 candidate models on one CPU thread.

A decision = encode one instruction (backbone pass) + score every candidate (capability tokens cached). The
naive design the issue rules out runs the backbone once per (instruction, candidate) pair; it is measured
directly (m backbone passes + the head) on a subset of instructions, and the table gives the ratio.

    python -m benchmarks.bench_router_latency --router-checkpoint runs/mmlu_pro/checkpoint [--data mmlu_pro] [--out r.json]

Candidates beyond the checkpoint's own are synthetic profiles: Binomial(K, a)/K resamples of real profiles,
so they have realistic accuracy patterns. Prints one Markdown table; never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import numpy as np
import torch

from modelsat.aptitude import CapabilityProfile
from modelsat.data import load_routing_data
from modelsat.router import Router, RouterCheckpoint
from modelsat.router.build import tokenize_instructions
from modelsat.router.encodings import InstructionEncoding


def _profiles(ckpt: RouterCheckpoint, m: int, seed: int = 0) -> dict[str, CapabilityProfile]:
    rng = np.random.default_rng(seed)
    real = list(ckpt.profiles.values())
    out = {}
    for i in range(m):
        base = real[i % len(real)]
        if i < len(real):
            out[base.model] = base
            continue
        k = np.maximum(base.n_items, 1)
        acc = rng.binomial(k, base.accuracies) / k
        out[f"synthetic-{i}"] = CapabilityProfile(
            f"synthetic-{i}", acc.astype(np.float32), base.n_items, "synthetic"
        )
    return out


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--router-checkpoint", required=True, help="router checkpoint directory")
    ap.add_argument(
        "--data", default=None, help="zoo whose instructions are routed (default: the checkpoint's)"
    )
    ap.add_argument("--instructions", type=int, default=60, help="instructions per candidate count")
    ap.add_argument(
        "--naive-instructions", type=int, default=5, help="instructions for the naive per-pair design"
    )
    ap.add_argument("--candidates", default="5,10,24,50")
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    ckpt = RouterCheckpoint.load(args.router_checkpoint)
    zoo = load_routing_data(args.data or ckpt.training.get("zoo_path") or ckpt.training["zoo"])
    rng = np.random.default_rng(0)
    texts = zoo.prompts[rng.choice(zoo.n_questions, args.instructions, replace=False)].tolist()
    model = ckpt.model
    rows = []
    cfg = model.config
    trained = {"prior_weight": cfg.prior_weight, "defer_margin": cfg.defer_margin}
    plain = {"prior_weight": 0.0, "defer_margin": 0.0}
    variants = [("as trained", trained)] + ([("plain argmax, no prior", plain)] if trained != plain else [])
    for m, (variant, settings) in [(int(c), v) for c in args.candidates.split(",") for v in variants]:
        for key, value in settings.items():
            setattr(cfg, key, value)
        router = Router(ckpt, _profiles(ckpt, m))
        router.route(texts[:3])  # warm-up
        full, score_only = [], []
        for x in texts:
            t0 = time.perf_counter()
            enc = router.encode([x])
            t1 = time.perf_counter()
            router.decide(router.score_encoded(enc))
            t2 = time.perf_counter()
            full.append(1000 * (t2 - t0))
            score_only.append(1000 * (t2 - t1))
        row = {
            "candidates": m,
            "variant": variant,
            "p50_ms": _pct(full, 50),
            "p95_ms": _pct(full, 95),
            "score_p50_ms": _pct(score_only, 50),
            "score_p95_ms": _pct(score_only, 95),
        }
        rows.append(row)
        if variant != variants[0][0]:  # the naive design is measured once per candidate count
            continue
        # naive: one backbone pass per (instruction, candidate) pair, then the head for that pair
        naive = []
        with torch.no_grad():
            caps = model.encode_profiles(
                torch.as_tensor(np.stack([p.accuracies for p in _profiles(ckpt, m).values()]))
            )
            for x in texts[: args.naive_instructions]:
                t0 = time.perf_counter()
                for j in range(m):
                    t = tokenize_instructions(router.tokenizer, [x], model.config)
                    enc = model.encode_instructions(**t)
                    model.score(
                        InstructionEncoding(
                            pooled=enc.pooled, past=enc.past, attention_mask=enc.attention_mask
                        ),
                        caps.select([j]),
                    )
                naive.append(1000 * (time.perf_counter() - t0))
        row["naive_p50_ms"] = _pct(naive, 50)
        row["speedup_vs_naive"] = _pct(naive, 50) / _pct(full, 50)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(
        f"## Router latency per decision (commit {commit or '?'}, CPU, 1 thread, torch {torch.__version__})"
    )
    print(
        f"checkpoint `{args.router_checkpoint}` ({model.config.backbone_type} backbone {model.config.backbone_name}, "
        f"{len(ckpt.aptitude.tasks)} aptitude tasks); {args.instructions} {zoo.name} instructions per row\n"
    )
    print(
        f"as trained: profile prior β = {trained['prior_weight']:g}, anchor-and-defer δ = {trained['defer_margin']:g}; "
        "the plain rows turn both off on the same checkpoint and instructions\n"
    )
    print(
        "| candidates | decision rule | decision p50 ms | decision p95 ms | scoring only p50 ms | scoring only p95 ms | naive per-pair p50 ms | naive / ours |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        naive = f"{r['naive_p50_ms']:.0f} | {r['speedup_vs_naive']:.1f}×" if "naive_p50_ms" in r else "– | –"
        print(
            f"| {r['candidates']} | {r['variant']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['score_p50_ms']:.2f} | "
            f"{r['score_p95_ms']:.2f} | {naive} |"
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"commit": commit, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
