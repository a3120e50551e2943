"""Routing metrics: routed accuracy, share of the best-single→oracle gap closed, choice shares, breakdowns and
the cost-aware sweep.

Definitions (n held-out instructions, m candidate models, outcomes y [n, m] in [0, 1]):

- routed accuracy of a choice c [n]: mean_i y[i, c_i];
- best single model: the candidate with the highest mean outcome on the training pool (chosen on training data);
- oracle: the best candidate per instruction in hindsight; ties go to the cheapest candidate when costs are
  known, else to the candidate with the best training accuracy;
- random: the expectation of a uniformly random candidate, mean_i mean_j y[i, j];
- gap closed: (acc − acc_best_single) / (acc_oracle − acc_best_single);
- cost-aware routing: argmax_j p_ij − λ·ĉ_ij with p the calibrated router probability, ĉ the expected cost in USD
  (here: the candidate's mean cost per query on the training pool) and λ in 1/USD; the realised cost is the
  recorded `cost_usd` of the chosen candidate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "cost_sweep",
    "choose_lambda",
    "cost_to_match",
    "gap_closed",
    "oracle_choice",
    "paired_difference",
    "reliability",
    "route_at_lambda",
    "summarize_choice",
    "summarize_random",
]


def _breakdown(labels: np.ndarray | None, values: np.ndarray) -> dict[str, float]:
    if labels is None:
        return {}
    out = {}
    for lab in sorted({x for x in labels.tolist() if x is not None}):
        sel = labels == lab
        out[str(lab)] = float(values[sel].mean())
    return out


def summarize_choice(
    choice: np.ndarray,
    y: np.ndarray,
    models: Sequence[str],
    costs: np.ndarray | None = None,
    benchmarks: np.ndarray | None = None,
    categories: np.ndarray | None = None,
) -> dict:
    """Metrics of a routing choice.

    Args:
        choice: [n] chosen model index per instruction.
        y: [n, m] outcomes. models: the m names. costs: optional [n, m] recorded USD per query.
        benchmarks, categories: optional [n] labels for breakdowns (None entries are skipped).
    Returns:
        {"accuracy", "choice_share": {model: share}, "per_benchmark", "per_category"[, "mean_cost_usd"]}.
    """
    n = len(choice)
    got = y[np.arange(n), choice]
    counts = np.bincount(choice, minlength=len(models))
    out = {
        "accuracy": float(got.mean()),
        "choice_share": {m: float(c / n) for m, c in zip(models, counts, strict=True) if c},
        "per_benchmark": _breakdown(benchmarks, got),
        "per_category": _breakdown(categories, got),
    }
    if costs is not None:
        out["mean_cost_usd"] = float(costs[np.arange(n), choice].mean())
    return out


def summarize_random(
    y: np.ndarray,
    costs: np.ndarray | None = None,
    benchmarks: np.ndarray | None = None,
    categories: np.ndarray | None = None,
) -> dict:
    """Expected metrics of a uniformly random choice (no sampling noise)."""
    got = y.mean(1)
    out = {
        "accuracy": float(got.mean()),
        "per_benchmark": _breakdown(benchmarks, got),
        "per_category": _breakdown(categories, got),
    }
    if costs is not None:
        out["mean_cost_usd"] = float(costs.mean())
    return out


def oracle_choice(y: np.ndarray, costs: np.ndarray | None, preference: np.ndarray) -> np.ndarray:
    """[n] per-instruction best model; ties to the cheapest (if costs) or the most preferred model.

    Args:
        y: [n, m] outcomes. costs: optional [n, m] USD. preference: [m] tie-break score (higher wins).
    """
    best = y.max(1, keepdims=True)
    tie = np.broadcast_to(-costs if costs is not None else preference[None, :], y.shape)
    masked = np.where(y >= best, tie, -np.inf)
    return masked.argmax(1)


def gap_closed(accuracy: float, best_single: float, oracle: float) -> float | None:
    """Share of the best-single→oracle accuracy gap closed (1 = oracle, 0 = best single, < 0 = worse)."""
    if oracle - best_single <= 1e-12:
        return None
    return float((accuracy - best_single) / (oracle - best_single))


def cost_sweep(
    p: np.ndarray,
    expected_cost: np.ndarray,
    y: np.ndarray,
    costs: np.ndarray,
    points: int = 40,
) -> list[dict[str, float]]:
    """Accuracy–cost curve of cost-aware routing, argmax p − λ·ĉ over a log grid of λ (plus λ = 0).

    Args:
        p: [n, m] calibrated p(correct). expected_cost: [n, m] or [m] expected USD per query.
        y: [n, m] outcomes. costs: [n, m] realised USD per query.
        points: grid size, >= 2.
    Returns:
        [{"lambda": λ (1/USD), "accuracy", "mean_cost_usd"}], by increasing λ.
    """
    ec = np.broadcast_to(np.asarray(expected_cost, dtype=np.float64), p.shape)
    pos = ec[ec > 0]
    lo = 1e-3 / max(float(pos.max()), 1e-12) if pos.size else 1.0
    hi = 1e2 / max(float(pos.min()), 1e-12) if pos.size else 1.0
    lambdas = [0.0, *np.geomspace(lo, hi, points - 1).tolist()]
    out = []
    idx = np.arange(len(y))
    for lam in lambdas:
        choice = (p - lam * ec).argmax(1)
        out.append(
            {
                "lambda": float(lam),
                "accuracy": float(y[idx, choice].mean()),
                "mean_cost_usd": float(costs[idx, choice].mean()),
            }
        )
    return out


def cost_to_match(curve: list[dict[str, float]], accuracy: float) -> float | None:
    """Lowest mean cost on the curve whose accuracy reaches `accuracy` (None if never reached)."""
    ok = [pt["mean_cost_usd"] for pt in curve if pt["accuracy"] >= accuracy - 1e-12]
    return min(ok) if ok else None


def choose_lambda(
    curve: list[dict[str, float]], min_accuracy: float | None = None, max_cost_usd: float | None = None
) -> float:
    """λ of a (validation) cost sweep for a target: the cheapest point reaching `min_accuracy`, or the most
    accurate point costing at most `max_cost_usd`; λ = the curve's first point when nothing qualifies.

    Args:
        curve: `cost_sweep` output. Give exactly one of `min_accuracy`, `max_cost_usd`.
    Returns:
        λ in 1/USD.
    Raises:
        ValueError: neither or both targets given.
    """
    if (min_accuracy is None) == (max_cost_usd is None):
        raise ValueError("give exactly one of min_accuracy and max_cost_usd")
    if min_accuracy is not None:
        ok = [pt for pt in curve if pt["accuracy"] >= min_accuracy - 1e-12]
        return min(ok, key=lambda pt: pt["mean_cost_usd"])["lambda"] if ok else curve[0]["lambda"]
    ok = [pt for pt in curve if pt["mean_cost_usd"] <= max_cost_usd + 1e-18]
    return (
        max(ok, key=lambda pt: (pt["accuracy"], -pt["mean_cost_usd"]))["lambda"]
        if ok
        else curve[-1]["lambda"]
    )


def route_at_lambda(
    p: np.ndarray, expected_cost: np.ndarray, y: np.ndarray, costs: np.ndarray, lam: float
) -> dict[str, float]:
    """Accuracy and mean realised cost (USD per query) of argmax p − λ·ĉ (shapes as in `cost_sweep`)."""
    ec = np.broadcast_to(np.asarray(expected_cost, dtype=np.float64), p.shape)
    choice = (p - lam * ec).argmax(1)
    idx = np.arange(len(y))
    return {
        "lambda": float(lam),
        "accuracy": float(y[idx, choice].mean()),
        "mean_cost_usd": float(costs[idx, choice].mean()),
    }


def paired_difference(choice: np.ndarray, reference: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy difference of two routings on the same questions, with its paired standard error.

    Args:
        choice, reference: [n] chosen column per question of the method and of the reference (e.g. the best
            single model).
        y: [n, m] outcomes in [0, 1].
    Returns:
        {"diff": mean of y[choice] − y[reference], "se": its standard error over the n paired questions
        (sample sd / √n; 0 when n < 2)} in accuracy units (0.01 = one point).
    """
    rows = np.arange(len(y))
    d = y[rows, choice].astype(np.float64) - y[rows, reference].astype(np.float64)
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return {"diff": float(d.mean()) if len(d) else 0.0, "se": se}


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Reliability curve and expected calibration error of predicted p(correct) against outcomes.

    Args:
        p: [n] predicted probabilities in [0, 1] (e.g. calibrated router scores of (instruction, model) pairs).
        y: [n] outcomes in [0, 1].
        bins: equal-width probability bins.
    Returns:
        {"ece": Σ_b (n_b/n)·|mean p_b − mean y_b| in [0, 1], "n": n, "bins": [{"p_mean", "y_mean", "n"}] per
        non-empty bin} (Guo et al. 2017, "On Calibration of Modern Neural Networks", §2).
    """
    p, y = np.asarray(p, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    idx = np.minimum((p * bins).astype(int), bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            pm, ym, n = float(p[sel].mean()), float(y[sel].mean()), int(sel.sum())
            out.append({"p_mean": pm, "y_mean": ym, "n": n})
            ece += n / len(p) * abs(pm - ym)
    return {"ece": ece, "n": int(len(p)), "bins": out}
