"""Routing quality on the shared zoos: Model-SAT against oracle, best single model, random and learned baselines.

    python -m benchmarks.bench_routing_quality                       # all four zoos (benchmarks/configs/*.yaml)
    python -m benchmarks.bench_routing_quality --config benchmarks/configs/routerbench.yaml
    python -m benchmarks.bench_routing_quality --ablation            # objective / augmentation ablation on mmlu_pro

Each config is trained and evaluated on its held-out test split, with its unseen models included. Prints one
Markdown table (and, with --out, writes every report, plots and a JSON summary). Never asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS = {
    "paper objective only (instruction groups, Eq. 5)": {
        "train.model_group_weight": 0.0,
        "train.pointwise_weight": 0.0,
        "train.instruction_group_weight": 1.0,
    },
    "+ model groups": {"train.pointwise_weight": 0.0},
    "+ model groups + pointwise (default)": {},
    "default without profile augmentation": {"train.profile_noise": False, "train.task_dropout": 0.0},
    "IRT score only (residual_bound 0)": {"router.residual_bound": 0.0},
    "unbounded residual (residual_bound null)": {"router.residual_bound": None},
}


def _patched(path: Path, patch: dict):
    from modelsat.runconfig import RunConfig

    return RunConfig.from_yaml(path).with_overrides(patch, source=str(path))


def _run(cfg, out: Path) -> dict:
    from modelsat.evaluate import evaluate_pipeline
    from modelsat.pipeline import train_pipeline
    from modelsat.report import write_report

    t0 = time.monotonic()
    ckpt, summary = train_pipeline(cfg, out / "checkpoint")
    report = evaluate_pipeline(ckpt, cfg.data.routing_data, "test", cfg.eval, models=cfg.data.models)
    report["training_summary"] = summary
    report["wall_seconds"] = time.monotonic() - t0
    write_report(report, out / "report")
    return report


def _share(m: dict) -> str:
    top = sorted(m.get("choice_share", {}).items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{k.split('/')[-1]} {100 * v:.0f}%" for k, v in top) or "uniform"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config", action="append", type=Path, help="run config(s); default: benchmarks/configs/*.yaml"
    )
    ap.add_argument(
        "--ablation", action="store_true", help="objective/augmentation ablation (default config: mmlu_pro)"
    )
    ap.add_argument(
        "--out", type=Path, default=ROOT / "runs" / "bench_routing_quality", help="where reports go"
    )
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as hf_logging

    from modelsat.methods import METHOD_ORDER, method_label

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    import torch

    device = f"CPU ({os.cpu_count()} cores, torch {torch.__version__})"
    results = []
    if args.ablation:
        path = (args.config or [ROOT / "benchmarks" / "configs" / "mmlu_pro.yaml"])[0]
        for name, patch in ABLATIONS.items():
            slug = "".join(c if c.isalnum() else "_" for c in name)[:40]
            rep = _run(_patched(path, patch), args.out / "ablation" / slug)
            results.append((name, rep))
        print(
            f"## Model-SAT objective ablation (commit {commit or '?'}, {device}, config `{path.relative_to(ROOT)}`)\n"
        )
        print(
            "| variant | accuracy % (all models) | accuracy % (seen only) | gap closed % | routed to unseen % | best step |"
        )
        print("|---|---|---|---|---|---|")
        for name, rep in results:
            ms = rep["methods"]["model_sat"]
            so = rep.get("seen_only", {}).get("methods", {}).get("model_sat", {}).get("accuracy")
            unseen = sum(v["routed_share"] for v in rep.get("unseen", {}).get("model_sat", {}).values())
            gc = ms.get("gap_closed")
            print(
                f"| {name} | {100 * ms['accuracy']:.1f} | {'–' if so is None else f'{100 * so:.1f}'} | "
                f"{'–' if gc is None else f'{100 * gc:.1f}'} | {100 * unseen:.1f} | {rep['training_summary']['best_step']} |"
            )
        return

    configs = args.config or sorted((ROOT / "benchmarks" / "configs").glob("*.yaml"))
    for path in configs:
        from modelsat.runconfig import RunConfig

        cfg = RunConfig.from_yaml(path)
        rep = _run(cfg, args.out / path.stem)
        results.append((path, rep))
    print(f"## Routing quality on held-out questions (commit {commit or '?'}, {device})\n")
    print(
        'Unseen models join through their capability profile only; "seen only" drops them from the candidates.\n'
    )
    print(
        "| zoo | method | accuracy % | seen only % | gap closed % | mean cost $/query | share routed to each candidate (top 3) |"
    )
    print("|---|---|---|---|---|---|---|")
    for _path, rep in results:
        zoo = f"{rep['zoo']} ({rep['n_questions']} q, {len(rep['models'])} models, {len(rep['unseen_models'])} unseen)"
        so = rep.get("seen_only", {}).get("methods", {})
        for name in [n for n in METHOD_ORDER if n in rep["methods"]]:
            m = rep["methods"][name]
            label = (f"**{method_label(name)}**" if name == "model_sat" else method_label(name)) + (
                f" ({m['model']})" if name == "best_single" else ""
            )
            cost = m.get("mean_cost_usd")
            gc = m.get("gap_closed")
            s = so.get(name, {}).get("accuracy")
            print(
                f"| {zoo} | {label} | {100 * m['accuracy']:.1f} | {'–' if s is None else f'{100 * s:.1f}'} | "
                f"{'–' if gc is None else f'{100 * gc:.0f}'} | {'–' if cost is None else f'{cost:.6f}'} | "
                f"{'–' if name == 'random' else _share(m)} |"
            )
            zoo = ""
    for path, rep in results:
        if "cost_sweep" in rep:
            cs = rep["cost_sweep"]
            match = cs["cost_to_match_best_single_usd"]
            best = cs["best_single"]
            print(
                f"\n{rep['zoo']}: Model-SAT matches the best single model ({100 * best['accuracy']:.1f}% at "
                f"${best['mean_cost_usd']:.6f}/query) at "
                + (
                    f"${match:.6f}/query ({100 * match / best['mean_cost_usd']:.0f}% of its cost)"
                    if match is not None
                    else "no point of the sweep"
                )
                + f"; curve: `{(args.out / path.stem / 'report' / 'cost_accuracy.png').relative_to(ROOT) if (args.out / path.stem).is_relative_to(ROOT) else args.out / path.stem}`"
            )
    summary = {
        str(p): {
            "methods": {
                k: {
                    kk: vv
                    for kk, vv in v.items()
                    if kk in ("accuracy", "gap_closed", "mean_cost_usd", "model")
                }
                for k, v in r["methods"].items()
            },
            "seen_only": r.get("seen_only"),
            "wall_seconds": r["wall_seconds"],
        }
        for p, r in results
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
