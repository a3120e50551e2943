"""Routing quality on the shared zoos: Model-SAT against oracle, best single model, random and learned baselines.

    python -m benchmarks.bench_routing_quality                       # every zoo (benchmarks/configs/*.yaml), 3 seeds
    python -m benchmarks.bench_routing_quality --seeds 0             # one training seed
    python -m benchmarks.bench_routing_quality --config benchmarks/configs/routerbench.yaml
    python -m benchmarks.bench_routing_quality --ablation            # objective / augmentation ablation on mmlu_pro

Each config is trained (once per training seed; the split and the unseen models stay fixed) and evaluated on its
held-out test split, with its unseen models included. Prints one Markdown table of mean ± sd over the seeds
(and, with --out, writes every report, plots and a JSON summary). Never asserts.
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
        "--seeds",
        default="0,1,2",
        help="training seeds, comma-separated (mean ± sd over them); default 0,1,2",
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
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    runs: dict[Path, list[dict]] = {}
    for path in configs:
        for seed in seeds:
            cfg = _patched(path, {"train.seed": seed})
            runs.setdefault(path, []).append(_run(cfg, args.out / path.stem / f"seed{seed}"))
    print(
        f"## Routing quality on held-out questions (commit {commit or '?'}, {device}, "
        f"training seeds {', '.join(map(str, seeds))}: mean ± sd)\n"
    )
    print(
        'Unseen models join through their capability profile only; "seen only" drops them from the candidates. '
        '"vs best single" is the accuracy difference on the same questions, mean over seeds ± the paired '
        "standard error (mean over seeds).\n"
    )
    print(
        "| zoo | method | accuracy % | vs best single (points) | seen only % | gap closed % | "
        "routed to unseen % (oracle) | share routed to each candidate (top 3, seed 0) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for reps in runs.values():
        first = reps[0]
        zoo = (
            f"{first['zoo']} ({first['n_questions']} q, {len(first['models'])} models, "
            f"{len(first['unseen_models'])} unseen)"
        )
        for name in [n for n in METHOD_ORDER if n in first["methods"]]:
            ms = [r["methods"][name] for r in reps]
            label = (f"**{method_label(name)}**" if name == "model_sat" else method_label(name)) + (
                f" ({ms[0]['model']})" if name == "best_single" else ""
            )
            vs = [m["vs_best_single"] for m in ms if "vs_best_single" in m]
            vs_txt = (
                f"{_pm([100 * v['diff'] for v in vs], signed=True)} (SE {100 * sum(v['se'] for v in vs) / len(vs):.1f})"
                if vs and name != "best_single"
                else "–"
            )
            so = [r.get("seen_only", {}).get("methods", {}).get(name, {}).get("accuracy") for r in reps]
            gc = [m.get("gap_closed") for m in ms]
            unseen = [r.get("unseen", {}).get(name) for r in reps]
            unseen_txt = (
                f"{_pm([100 * sum(v['routed_share'] for v in u.values()) for u in unseen])} "
                f"({100 * sum(v['oracle_share'] for v in unseen[0].values()):.1f})"
                if all(unseen)
                else "–"
            )
            print(
                f"| {zoo} | {label} | {_pm([100 * m['accuracy'] for m in ms])} | {vs_txt} | "
                f"{_pm([100 * x for x in so]) if None not in so else '–'} | "
                f"{_pm([100 * x for x in gc], 0) if None not in gc else '–'} | {unseen_txt} | "
                f"{'–' if name == 'random' else _share(ms[0])} |"
            )
            zoo = ""
    for path, reps in runs.items():
        if "cost_sweep" not in reps[0]:
            continue
        best = reps[0]["cost_sweep"]["best_single"]
        matches = [r["cost_sweep"]["cost_to_match_best_single_usd"] for r in reps]
        on_test = ", ".join(
            "never" if m is None else f"{100 * m / best['mean_cost_usd']:.0f}%" for m in matches
        )
        print(
            f"\n{reps[0]['zoo']}: best single model {100 * best['accuracy']:.1f}% at "
            f"${best['mean_cost_usd']:.6f}/query. Cost at which the test sweep first matches it (read off the test "
            f"curve, per seed): {on_test}. With λ chosen on validation, applied to test:"
        )
        print("\n| target (chosen on validation) | accuracy % | cost, % of the best single model's |")
        print("|---|---|---|")
        for target in ("match_best_single", "at_30pct_cost"):
            pts = [r["cost_sweep"].get("chosen_on_validation", {}).get(target) for r in reps]
            if None in pts:
                continue
            print(
                f"| {target} | {_pm([100 * p['accuracy'] for p in pts])} | "
                f"{_pm([100 * p['cost_share_of_best_single'] for p in pts], 0)} |"
            )
        print(f"\ncurves: `{args.out / path.stem}/seed*/report/cost_accuracy.png`")
    summary = {
        str(p): [
            {
                "seed": seed,
                "methods": {
                    k: {
                        kk: vv
                        for kk, vv in v.items()
                        if kk in ("accuracy", "gap_closed", "mean_cost_usd", "model", "vs_best_single")
                    }
                    for k, v in r["methods"].items()
                },
                "seen_only": r.get("seen_only"),
                "unseen": r.get("unseen"),
                "decision_rule": r.get("decision_rule"),
                "profile_prior": r["training_summary"].get("profile_prior"),
                "defer": r["training_summary"].get("defer"),
                "cost_sweep_chosen_on_validation": r.get("cost_sweep", {}).get("chosen_on_validation"),
                "wall_seconds": r["wall_seconds"],
            }
            for seed, r in zip(seeds, reps, strict=True)
        ]
        for p, reps in runs.items()
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


def _pm(values: list[float], digits: int = 1, signed: bool = False) -> str:
    """'mean ± sd' of per-seed figures (just the value for one seed); `signed`: with a + for gains."""
    import statistics

    sign = "+" if signed else ""
    if len(values) == 1:
        return f"{values[0]:{sign}.{digits}f}"
    return f"{statistics.fmean(values):{sign}.{digits}f} ± {statistics.stdev(values):.{digits}f}"


if __name__ == "__main__":
    main()
