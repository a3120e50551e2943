"""Router latency per routing decision for 5, 10, 24 and 50 candidate models on one CPU thread (or on CUDA).

A decision = encode one instruction (backbone pass) + score every candidate (capability tokens cached). The
naive design the issue rules out runs the backbone once per (instruction, candidate) pair; it is measured
directly (m backbone passes + the head) on a subset of instructions, and the table gives the ratio.

    python -m benchmarks.bench_router_latency --router-checkpoint runs/mmlu_pro/checkpoint [--data mmlu_pro] [--out r.json]
    python -m benchmarks.bench_router_latency --router-checkpoint A --router-checkpoint B   # two encoders side by side
    python -m benchmarks.bench_router_latency --router-checkpoint A --device cuda --dtype bfloat16   # the GPU path

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


def _distinct(zoo, n_rows: int, per_row: int, seed: int = 0) -> list[list[str]]:
    """`n_rows` disjoint lists of `per_row` instructions of the zoo (every decision reads a new instruction)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(zoo.n_questions, n_rows * per_row, replace=False)
    texts = [str(t) for t in zoo.prompts[idx]]
    return [texts[i * per_row : (i + 1) * per_row] for i in range(n_rows)]


def _long(texts: list[str], min_chars: int = 2400) -> list[str]:
    """Each instruction extended with the next ones until it has `min_chars` characters (≥ 256 tokens, so the
    router reads exactly `max_instruction_tokens` = 256 of it)."""
    out = []
    for i, x in enumerate(texts):
        j = i + 1
        while len(x) < min_chars:
            x = x + "\n\n" + texts[j % len(texts)]
            j += 1
        out.append(x)
    return out


def _tensor_mib(model: torch.nn.Module) -> float:
    """MiB of the model's parameters and buffers (what a router replica holds besides the Python runtime)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _rss_mib() -> float:
    """Resident memory of this process in MiB (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def _decisions(router: Router, texts: list[str], device: str) -> tuple[list[float], list[float], float]:
    """Per-instruction decision and scoring-only latency (ms), and the mean tokens the router read."""
    full, score_only, tokens = [], [], []
    for x in texts:
        t0 = time.perf_counter()
        enc = router.encode([x])
        if device == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        router.decide(router.score_encoded(enc))
        if device == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        full.append(1000 * (t2 - t0))
        score_only.append(1000 * (t2 - t1))
        t = tokenize_instructions(router.tokenizer, [x], router.model.config)
        tokens.append(float(t["attention_mask"].sum()))
    return full, score_only, float(np.mean(tokens))


def _naive(router: Router, ckpt: RouterCheckpoint, texts: list[str], m: int) -> list[float]:
    """The ruled-out design: one backbone pass per (instruction, candidate) pair, then the head for that pair."""
    model = ckpt.model
    out = []
    with torch.no_grad():
        caps = model.encode_profiles(
            torch.as_tensor(np.stack([p.accuracies for p in _profiles(ckpt, m).values()])).to(
                model.task_embeddings.device
            )
        )
        for x in texts:
            t0 = time.perf_counter()
            for j in range(m):
                t = tokenize_instructions(router.tokenizer, [x], model.config)
                enc = model.encode_instructions(**{k: v.to(model.device) for k, v in t.items()})
                model.score(
                    InstructionEncoding(pooled=enc.pooled, past=enc.past, attention_mask=enc.attention_mask),
                    caps.select([j]),
                )
            out.append(1000 * (time.perf_counter() - t0))
    return out


def _measure(path: str, zoo, args: argparse.Namespace) -> dict:
    """Every row for one checkpoint: candidate counts × decision rules, plus the 256-token row."""
    rss0 = _rss_mib()
    ckpt = RouterCheckpoint.load(path, device=args.device)
    model = ckpt.model.to(dtype=getattr(torch, args.dtype))
    cfg = model.config
    trained = {"prior_weight": cfg.prior_weight, "defer_margin": cfg.defer_margin}
    plain = {"prior_weight": 0.0, "defer_margin": 0.0}
    variants = [("as trained", trained)] + ([("plain argmax, no prior", plain)] if trained != plain else [])
    counts = [int(c) for c in args.candidates.split(",")]
    plan = [(m, "MMLU-Pro length", v) for m in counts for v in variants]
    plan.append((args.target_candidates, "256 tokens", variants[0]))
    sets = _distinct(zoo, len(plan) + 2, args.instructions, seed=args.seed)
    warm = sets[-1][:3]
    naive_texts = sets[-2][: args.naive_instructions]
    rows = []
    for (m, length, (variant, settings)), texts in zip(plan, sets, strict=False):
        for key, value in settings.items():
            setattr(cfg, key, value)
        router = Router(ckpt, _profiles(ckpt, m))  # no encoding cache: every instruction is new
        router.route(warm)  # warm-up on instructions no row reads
        if length == "256 tokens":
            texts = _long(texts)
        full, score_only, tokens = _decisions(router, texts, args.device)
        row = {
            "candidates": m,
            "length": length,
            "tokens": tokens,
            "variant": variant,
            "p50_ms": _pct(full, 50),
            "p95_ms": _pct(full, 95),
            "score_p50_ms": _pct(score_only, 50),
            "score_p95_ms": _pct(score_only, 95),
        }
        if variant == variants[0][0] and length == "MMLU-Pro length" and args.naive_instructions > 0:
            naive = _naive(router, ckpt, naive_texts, m)
            row["naive_p50_ms"] = _pct(naive, 50)
            row["speedup_vs_naive"] = _pct(naive, 50) / _pct(full, 50)
        rows.append(row)
    for key, value in trained.items():
        setattr(cfg, key, value)
    return {
        "checkpoint": path,
        "encoder": f"{cfg.backbone_type} {cfg.backbone_name}",
        "tasks": len(ckpt.aptitude.tasks),
        "tensor_mib": _tensor_mib(model),
        "rss_growth_mib": _rss_mib() - rss0,
        "trained": trained,
        "rows": rows,
    }


def _target_row(result: dict, length: str, m: int) -> dict | None:
    return next(
        (
            r
            for r in result["rows"]
            if r["candidates"] == m and r["length"] == length and r["variant"] == "as trained"
        ),
        None,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--router-checkpoint",
        required=True,
        action="append",
        help="router checkpoint directory; repeat it to compare encoders side by side in one run",
    )
    ap.add_argument(
        "--data", default=None, help="zoo whose instructions are routed (default: the first checkpoint's)"
    )
    ap.add_argument("--instructions", type=int, default=60, help="distinct instructions per row")
    ap.add_argument(
        "--naive-instructions",
        type=int,
        default=5,
        help="instructions for the naive per-pair design (0: skip)",
    )
    ap.add_argument("--candidates", default="5,10,24,50")
    ap.add_argument("--target-candidates", type=int, default=24, help="candidates of the 256-token row")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the router runs")
    ap.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="router weights (bfloat16 on a GPU)",
    )
    ap.add_argument("--seed", type=int, default=0, help="which instructions are drawn")
    ap.add_argument("--out", default=None, help="also write the results as JSON")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    first = RouterCheckpoint.load(args.router_checkpoint[0])
    zoo = load_routing_data(args.data or first.training.get("zoo_path") or first.training["zoo"])
    del first
    results = [_measure(p, zoo, args) for p in args.router_checkpoint]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    threads = "1 thread" if args.device == "cpu" else "CUDA"
    print(
        f"## Router latency per decision (commit {commit or '?'}, {args.device}, {threads}, {args.dtype}, "
        f"torch {torch.__version__})"
    )
    print(
        f"{args.instructions} distinct {zoo.name} instructions per row, none seen before by the router (no encoding "
        "cache); the 256-token row joins instructions until the router reads its full 256 tokens\n"
    )
    for res in results:
        tr = res["trained"]
        print(
            f"### `{res['checkpoint']}`: {res['encoder']} ({res['tasks']} aptitude tasks; as trained: profile prior "
            f"β = {tr['prior_weight']:g}, anchor-and-defer δ = {tr['defer_margin']:g}; plain rows turn both off)\n"
        )
        print(
            "| candidates | instructions (mean tokens read) | decision rule | decision p50 ms | decision p95 ms | "
            "scoring only p50 ms | scoring only p95 ms | naive per-pair p50 ms | naive / ours |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for r in res["rows"]:
            naive = (
                f"{r['naive_p50_ms']:.0f} | {r['speedup_vs_naive']:.1f}×" if "naive_p50_ms" in r else "– | –"
            )
            print(
                f"| {r['candidates']} | {r['length']} ({r['tokens']:.0f}) | {r['variant']} | {r['p50_ms']:.1f} | "
                f"{r['p95_ms']:.1f} | {r['score_p50_ms']:.2f} | {r['score_p95_ms']:.2f} | {naive} |"
            )
        print()
    m = args.target_candidates
    print(f"### Targets (issue 19), {m} candidates, same run\n")
    print("| measure | " + " | ".join(r["encoder"] for r in results) + " | target |")
    print("|---|" + "---|" * len(results) + "---|")
    for length in ("MMLU-Pro length", "256 tokens"):
        cells = []
        for res in results:
            row = _target_row(res, length, m)
            cells.append("–" if row is None else f"{row['p50_ms']:.1f}")
        print(f"| decision p50 ms, {length}, {threads} | " + " | ".join(cells) + " | ≤ 5 |")
    print(
        "| router tensors MiB (parameters + buffers) | "
        + " | ".join(f"{r['tensor_mib']:.0f}" for r in results)
        + " | report |"
    )
    print(
        "| process memory growth on load MiB | "
        + " | ".join(f"{r['rss_growth_mib']:.0f}" for r in results)
        + " | report |"
    )
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"commit": commit, "device": args.device, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
