"""Distributed router training throughput: samples/s and time per epoch for 1 and 2 (or more) workers.

Runs the Ray Train + DeepSpeed recipe (`jobs.launcher.train_distributed`) on the embedded local cluster
for each worker count and reads the throughput every worker group reports at its checkpoints (training
examples per second over all workers, report barriers excluded). The first interval (worker start, pipeline
warm-up, DeepSpeed init) is reported separately as start-up time.

    .venv/bin/python -m benchmarks.bench_training --config benchmarks/configs/routerbench.yaml --workers 1,2
    .venv/bin/python -m benchmarks.bench_training --use-gpu --workers 1,2,4,8     # on a GPU cluster
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, git_commit
from jobs.launcher import DistributedOptions, train_distributed
from modelsat.runconfig import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "benchmarks/configs/routerbench.yaml"))
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--checkpoint-every", type=int, default=20)
    ap.add_argument("--use-gpu", action="store_true")
    ap.add_argument("--address", default=None)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args()

    raw = RunConfig.from_yaml(args.config).model_dump(mode="json")
    raw["train"]["max_steps"], raw["train"]["max_time_s"] = args.max_steps, None
    config = RunConfig.from_dict(raw, source=args.config)
    rows = []
    for n in [int(x) for x in args.workers.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            opts = DistributedOptions(
                workers=n,
                use_gpu=args.use_gpu,
                address=args.address,
                storage_path=str(Path(tmp) / "storage"),
                checkpoint_every=args.checkpoint_every,
            )
            _, summary = train_distributed(config, Path(tmp) / "router", opts)
            wall = time.monotonic() - t0
            history = json.loads((Path(tmp) / "router" / "training.json").read_text())["history"]
        steady = [h for h in history[1:] if "samples_per_s" in h]
        rate = sum(h["samples_per_s"] * h["interval_s"] for h in steady) / max(
            sum(h["interval_s"] for h in steady), 1e-9
        )
        per_step = summary["distributed"]["rows_per_worker_step"] * n
        epoch_rows = summary["distributed"]["examples_per_epoch"]
        rows.append(
            {
                "workers": n,
                "samples_per_s": rate,
                "steps_per_s": rate / per_step,
                "epoch_s": epoch_rows / rate if rate else float("nan"),
                "examples_per_epoch": epoch_rows,
                "startup_s": history[0]["interval_s"] if history else float("nan"),
                "wall_s": wall,
                "steps": summary["steps_done"],
                "best_val_routing_accuracy": summary["best_validation"].get("routing_accuracy", float("nan")),
                "val_bce": history[-1].get("val_bce", float("nan")) if history else float("nan"),
            }
        )
    device = "GPU" if args.use_gpu else f"CPU ({os.cpu_count()} cores, {platform.machine()})"
    print(
        f"## Distributed router training throughput (commit {git_commit()}, {device}, config `{args.config}`)\n"
    )
    print(
        f"{args.max_steps} steps, DeepSpeed ZeRO-2, {rows[0]['examples_per_epoch']} training examples per epoch\n"
    )
    print(
        "| workers | samples/s | steps/s | time per epoch s | start-up s | wall s | val BCE | val routing acc % |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workers']} | {r['samples_per_s']:.0f} | {r['steps_per_s']:.2f} | {r['epoch_s']:.0f} | "
            f"{r['startup_s']:.0f} | {r['wall_s']:.0f} | {r['val_bce']:.3f} | {100 * r['best_val_routing_accuracy']:.1f} |"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
