"""Summary figures of a zoo: models, benchmarks, per-model accuracy, best single model, oracle, random expectation.

Definitions (n questions, m candidate models, outcomes y [n, m] in [0, 1]), as in `modelsat.metrics` but over the
whole zoo rather than a held-out split:

- accuracy of a model: mean_i y[i, j];
- best single model: the model with the highest accuracy;
- oracle: mean_i max_j y[i, j] (the best candidate per question, in hindsight);
- random: mean_i mean_j y[i, j] (expectation of a uniformly random candidate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelsat.data._routing_data import RoutingData
from modelsat.metrics import summarize_random

__all__ = ["stats_markdown", "routing_data_stats"]


def _figures(y: np.ndarray, models: tuple[str, ...]) -> dict[str, Any]:
    acc = y.mean(0)
    best = int(acc.argmax())
    return {
        "n_questions": int(y.shape[0]),
        "best_single_model": models[best],
        "best_single": float(acc[best]),
        "oracle": float(y.max(1).mean()),
        "random": summarize_random(y)["accuracy"],
    }


def routing_data_stats(zoo: RoutingData) -> dict[str, Any]:
    """Models, benchmarks, accuracies, best single model, oracle and random expectation of a zoo.

    Args:
        zoo: a loaded zoo (`load_routing_data`).
    Returns:
        {"zoo", "n_questions", "n_models", "n_outcomes", "benchmarks": {benchmark: n_questions},
        "overall": figures, "per_benchmark": {benchmark: figures},
        "models": [{"model", "accuracy", "per_benchmark": {benchmark: accuracy}, "mean_cost_usd"}]} with
        figures = {"n_questions", "best_single_model", "best_single", "oracle", "random"}; accuracies are
        mean scores in [0, 1], costs USD per query (None without cost data). Models sorted by accuracy, best first.
    """
    y = zoo.outcomes.astype(np.float64)
    benchmarks = sorted(set(zoo.benchmarks.tolist()))
    masks = {b: zoo.benchmarks == b for b in benchmarks}
    models = []
    for j, name in enumerate(zoo.models):
        models.append(
            {
                "model": name,
                "accuracy": float(y[:, j].mean()),
                "per_benchmark": {b: float(y[mask, j].mean()) for b, mask in masks.items()},
                "mean_cost_usd": None if zoo.costs is None else float(zoo.costs[:, j].mean()),
            }
        )
    models.sort(key=lambda r: -r["accuracy"])
    return {
        "zoo": zoo.name,
        "n_questions": zoo.n_questions,
        "n_models": zoo.n_models,
        "n_outcomes": int(y.size),
        "benchmarks": {b: int(mask.sum()) for b, mask in masks.items()},
        "overall": _figures(y, zoo.models),
        "per_benchmark": {b: _figures(y[mask], zoo.models) for b, mask in masks.items()},
        "models": models,
    }


def stats_markdown(stats: dict[str, Any]) -> str:
    """The `routing_data_stats` result as Markdown: a heading, a benchmark table and a model table (percentages)."""
    lines = [
        f"## zoo {stats['zoo']}: {stats['n_questions']:,} questions × {stats['n_models']} models "
        f"({stats['n_outcomes']:,} outcomes)",
        "",
        "| benchmark | questions | best single model | best single % | oracle % | random % |",
        "|---|---|---|---|---|---|",
    ]
    rows = [("all", stats["overall"])]
    if len(stats["per_benchmark"]) > 1:
        rows += list(stats["per_benchmark"].items())
    for name, f in rows:
        lines.append(
            f"| {name} | {f['n_questions']:,} | {f['best_single_model']} | {100 * f['best_single']:.1f} | "
            f"{100 * f['oracle']:.1f} | {100 * f['random']:.1f} |"
        )
    benches = list(stats["benchmarks"]) if len(stats["benchmarks"]) > 1 else []
    has_cost = any(r["mean_cost_usd"] is not None for r in stats["models"])
    header = ["model", "accuracy %", *(f"{b} %" for b in benches)] + (["mean $/query"] if has_cost else [])
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in stats["models"]:
        cells = [r["model"], f"{100 * r['accuracy']:.1f}"]
        cells += [f"{100 * r['per_benchmark'][b]:.1f}" for b in benches]
        if has_cost:
            cells.append("–" if r["mean_cost_usd"] is None else f"{r['mean_cost_usd']:.6f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
