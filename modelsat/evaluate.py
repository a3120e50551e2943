"""Evaluation of a router checkpoint against the baselines on a zoo's held-out questions.

Held-out questions = the zoo's `split == "test"` rows if it has any, else all rows, minus every question the
checkpoint used and every question whose instruction text equals a used one. Models of the zoo that the
checkpoint does not know join through profiles measured on the checkpoint's aptitude items. Metric
definitions: `modelsat.metrics`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from modelsat.aptitude import CapabilityProfile, measure_profiles
from modelsat.baselines import BaselineData
from modelsat.data import RoutingData, load_routing_data
from modelsat.errors import ConfigError, DataError
from modelsat.methods import METHODS, HeldOut, Method
from modelsat.metrics import (
    choose_lambda,
    cost_sweep,
    cost_to_match,
    gap_closed,
    paired_difference,
    reliability,
    route_at_lambda,
    summarize_choice,
    summarize_random,
)
from modelsat.paths import cache_dir
from modelsat.pipeline import sentence_encodings
from modelsat.progress import NullProgress, Progress
from modelsat.router.build import SentenceEncoder
from modelsat.router.checkpoint import RouterCheckpoint
from modelsat.router.decision import anchor_column
from modelsat.router.routing import Router
from modelsat.runconfig import EvalSection

__all__ = ["evaluate_pipeline", "held_out_rows", "candidate_profiles"]


def held_out_rows(ckpt: RouterCheckpoint, zoo: RoutingData, split: str) -> np.ndarray:
    """Rows of `zoo` to evaluate on.

    Args:
        split: `test` (questions the checkpoint never used) or `validation` (the checkpoint's validation split,
            for diagnostics).
    Raises:
        ConfigError: unknown split name. DataError: nothing left to evaluate.
    """
    if split == "validation":
        ids = [q for q in ckpt.training.get("validation_ids", []) if q in set(zoo.question_ids.tolist())]
        rows = zoo.index_of_questions(ids) if ids else np.array([], dtype=np.int64)
    elif split == "test":
        used_ids = ckpt.used_question_ids
        used_hashes = set(ckpt.training.get("used_prompt_hashes", []))
        base = zoo.splits == "test" if (zoo.splits == "test").any() else np.ones(zoo.n_questions, dtype=bool)
        hashes = zoo.prompt_hashes()
        keep = base & ~np.isin(zoo.question_ids, list(used_ids)) & ~np.isin(hashes, list(used_hashes))
        rows = np.flatnonzero(keep)
    else:
        raise ConfigError(f"--split {split!r}; allowed: test, validation")
    if len(rows) == 0:
        raise DataError(
            f"zoo {zoo.name!r} has no {split} questions left for this checkpoint (all were used in training)"
        )
    return rows


def candidate_profiles(ckpt: RouterCheckpoint, zoo: RoutingData) -> dict[str, CapabilityProfile]:
    """Profiles of the zoo's models: the checkpoint's where it knows the model, else measured on its items."""
    unknown = [m for m in zoo.models if m not in ckpt.profiles]
    measured = measure_profiles(ckpt.aptitude, zoo, unknown) if unknown else {}
    return {m: ckpt.profiles[m] if m in ckpt.profiles else measured[m] for m in zoo.models}


def evaluate_pipeline(
    checkpoint: str | Path | RouterCheckpoint,
    zoo_dir: str | Path,
    split: str = "test",
    config: EvalSection | None = None,
    progress: Progress | None = None,
    profiles: dict[str, CapabilityProfile] | None = None,
    models: list[str] | None = None,
) -> dict[str, Any]:
    """Evaluate a router checkpoint and the baselines on a zoo's held-out questions.

    Args:
        models: the candidate models, a subset of the zoo's (the run config's `data.models`); default all.
        profiles: the candidate models and their capability profiles (e.g. from the model registry); every
            one must be a model of the zoo (its outcomes grade the routing). Default: every model of the zoo,
            with the checkpoint's profiles or profiles measured on its aptitude items.

    Returns:
        The report dict (see `modelsat.report`), with `n_questions`, `models`, `unseen_models` and `methods`
        (`model_sat`, `best_single`, `oracle`, `random`, and the learned baselines), each with `accuracy`.
    Raises:
        CheckpointError, DataError, ConfigError: bad inputs (nothing is written by this function).
        UnknownModelError: a model of `profiles` is not in the zoo.
    """
    progress = progress or NullProgress()
    config = config or EvalSection()
    ckpt = checkpoint if isinstance(checkpoint, RouterCheckpoint) else RouterCheckpoint.load(checkpoint)
    zoo = load_routing_data(zoo_dir)
    if models is not None:
        zoo = zoo.subset(models=models)
    rows = held_out_rows(ckpt, zoo, split)
    zoo, profiles = _candidates(ckpt, zoo, profiles)
    models = list(zoo.models)
    training_models = set(ckpt.training.get("training_models", ckpt.profiles))
    unseen = [m for m in models if m not in training_models]
    progress.log(
        f"evaluating on {len(rows)} {split} questions of {zoo.name} × {len(models)} models "
        f"({len(unseen)} unseen in training: {', '.join(unseen) or 'none'})"
    )
    y = zoo.outcomes[rows]
    costs = None if zoo.costs is None else zoo.costs[rows]
    bench, cat = zoo.benchmarks[rows], zoo.categories[rows]

    router = Router(ckpt, profiles, cache_root=cache_dir())
    t0 = time.monotonic()
    with progress.task("encoding held-out instructions", total=len(rows)) as advance:
        enc = router.encode(zoo.prompts[rows].tolist(), progress=advance)
    t1 = time.monotonic()
    scores = router.score_encoded(enc)
    t2 = time.monotonic()

    # training pool of this zoo, as the checkpoint saw it
    pool_rows = np.flatnonzero(np.isin(zoo.question_ids, list(ckpt.used_question_ids)))
    notes: list[str] = []
    if len(pool_rows):
        preference = zoo.outcomes[pool_rows].mean(0)
    else:
        preference = y.mean(0)
        notes.append(
            "the zoo has none of the checkpoint's training questions: the best single model is chosen "
            "on the evaluation questions themselves (in hindsight)"
        )
    pool_known = _known_pool_outcomes(ckpt, zoo, pool_rows, unseen)
    data = HeldOut(
        models=models,
        y=y,
        costs=costs,
        preference=preference,
        router_scores=scores,
        router_p=router.probabilities(scores),
        router_anchor=np.array([router.estimated_accuracy[m] for m in models]),
        defer_margin=float(ckpt.model.config.defer_margin),
        categories=cat,
        pool_outcomes=pool_known if len(pool_rows) else None,
        pool_categories=zoo.categories[pool_rows] if len(pool_rows) else None,
        baseline_inputs=(
            (lambda: _baseline_inputs(ckpt, zoo, pool_rows, rows, unseen, config, progress, notes))
            if len(pool_rows)
            else None
        ),
    )
    if config.baselines and not len(pool_rows):
        notes.append(
            f"zoo {zoo.name!r} shares no training questions with the checkpoint: learned baselines skipped"
        )
    names = [n for n, m in METHODS.items() if not m.learned or (n in config.baselines and len(pool_rows))]
    fitted = _fit_methods(names, data, progress)
    methods, choices = _run_methods(fitted, data, list(range(len(models))), bench, cat)
    seen_cols = [j for j, m in enumerate(models) if m not in unseen]
    seen_only: dict[str, Any] = {}
    if unseen and seen_cols:  # the same comparison with the unseen models removed from the candidate set
        seen_only = {"models": [models[j] for j in seen_cols], "methods": _seen_only(fitted, data, seen_cols)}
    report: dict[str, Any] = {
        "zoo": zoo.name,
        "zoo_path": str(zoo.path),
        "split": split,
        "checkpoint": str(ckpt.path) if ckpt.path else None,
        "n_questions": int(len(rows)),
        "models": models,
        "unseen_models": unseen,
        "aptitude": {
            "n_items": ckpt.aptitude.n_items,
            "n_tasks": len(ckpt.aptitude.tasks),
            "notes": ckpt.aptitude.notes,
        },
        "methods": methods,
        "seen_only": seen_only,
        "unseen": {
            n: _unseen_stats(choices[n], choices["oracle"], y, models, unseen)
            for n in names
            if n == "model_sat" or METHODS[n].learned
        }
        if unseen
        else {},
        "decision_rule": {
            "defer_margin": float(ckpt.model.config.defer_margin),
            "anchor": models[anchor_column(data.router_anchor)],
        },
        "calibration": _calibration(router.probabilities(scores), y, models, unseen),
        "profiles": {m: profiles[m].to_dict() for m in models},
        "timing": {
            "encode_seconds": t1 - t0,
            "score_seconds": t2 - t1,
            "score_ms_per_instruction": 1000 * (t2 - t1) / len(rows),
        },
        "notes": notes,
    }
    if costs is not None:
        report["cost_sweep"] = _cost_sweep(
            ckpt, zoo, rows, pool_rows, unseen, router.probabilities(scores), methods, config
        )
        report["cost_sweep"]["chosen_on_validation"] = _cost_targets(
            ckpt, zoo, router, report["cost_sweep"], router.probabilities(scores), rows, preference, notes
        )
    return report


def _candidates(
    ckpt: RouterCheckpoint, zoo: RoutingData, profiles: dict[str, CapabilityProfile] | None
) -> tuple[RoutingData, dict[str, CapabilityProfile]]:
    """The routing data restricted to the candidate models (zoo order), and their profiles in that order."""
    if profiles is None:
        return zoo, candidate_profiles(ckpt, zoo)
    zoo.model_index(list(profiles))  # every candidate must have outcomes in the zoo
    zoo = zoo.subset(models=[m for m in zoo.models if m in profiles])  # zoo order: same baselines
    return zoo, {m: profiles[m] for m in zoo.models}  # router columns follow the zoo's model order


def _fit_methods(names: list[str], data: HeldOut, progress: Progress) -> dict[str, Method]:
    """The methods of `names`, the learned ones fitted on the training pool (`HeldOut.baseline_inputs`)."""
    fitted: dict[str, Method] = {}
    for name in names:
        method = METHODS[name]()
        if method.learned:
            with progress.task(f"baseline {name}", total=None):
                method.fit(data)
        fitted[name] = method
    return fitted


def _run_methods(
    fitted: dict[str, Method], data: HeldOut, cols: list[int], bench: np.ndarray, cat: np.ndarray
) -> tuple[dict[str, dict], dict[str, np.ndarray]]:
    """Each method's summary (accuracy, cost, per-benchmark and per-category figures, `gap_closed`) and
    choices (one column index per held-out question; none for expectation-only methods)."""
    y, costs = data.y, data.costs
    methods: dict[str, dict] = {}
    choices: dict[str, np.ndarray] = {}
    for name, method in fitted.items():
        if method.expectation:
            methods[name] = summarize_random(y, costs, bench, cat)
        else:
            choices[name] = method.choose(data, cols)
            methods[name] = {
                **method.describe(data, cols),
                **summarize_choice(choices[name], y, data.models, costs, bench, cat),
            }
    best_acc, oracle_acc = methods["best_single"]["accuracy"], methods["oracle"]["accuracy"]
    for res in methods.values():
        res["gap_closed"] = gap_closed(res["accuracy"], best_acc, oracle_acc)
    for name, choice in choices.items():
        methods[name]["vs_best_single"] = paired_difference(choice, choices["best_single"], y)
    return methods, choices


def _seen_only(fitted: dict[str, Method], data: HeldOut, seen_cols: list[int]) -> dict[str, dict]:
    """Each fitted method's accuracy when only the models seen in training are candidates."""
    ys = data.y[:, seen_cols]
    out: dict[str, dict] = {}
    for name, method in fitted.items():
        if method.expectation:
            acc = ys.mean()
        else:
            acc = ys[np.arange(len(ys)), method.choose(data, seen_cols)].mean()
        out[name] = {**method.describe(data, seen_cols), "accuracy": float(acc)}
    return out


def _unseen_stats(
    choice: np.ndarray, oracle: np.ndarray, y: np.ndarray, models: list[str], unseen: list[str]
) -> dict[str, dict[str, float | None]]:
    """Per unseen model: share of questions routed to it, accuracy there, the oracle's share, its accuracy."""
    out = {}
    for m in unseen:
        j = models.index(m)
        sel = choice == j
        out[m] = {
            "routed_share": float(sel.mean()),
            "accuracy_when_routed": float(y[sel, j].mean()) if sel.any() else None,
            "oracle_share": float((oracle == j).mean()),
            "accuracy": float(y[:, j].mean()),
        }
    return out


def _cost_sweep(
    ckpt: RouterCheckpoint,
    zoo: RoutingData,
    rows: np.ndarray,
    pool_rows: np.ndarray,
    unseen: list[str],
    p: np.ndarray,
    methods: dict[str, dict],
    config: EvalSection,
) -> dict[str, Any]:
    """The accuracy-cost sweep of `score - λ·expected cost` (`modelsat.metrics.cost_sweep`).

    A model's expected cost is its mean cost on the training pool (unseen models: on their aptitude items).
    """
    y, costs = zoo.outcomes[rows], zoo.costs[rows]
    models = list(zoo.models)
    cost_rows = pool_rows if len(pool_rows) else rows
    cost_src = zoo.costs[cost_rows]
    expected = cost_src.mean(0)
    if unseen:
        apt_sel = np.isin(zoo.question_ids[cost_rows], list(ckpt.aptitude.question_ids))
        for m in unseen:  # unseen models: what their aptitude test cost
            j = models.index(m)
            if apt_sel.any():
                expected[j] = cost_src[apt_sel, j].mean()
    best_acc = methods["best_single"]["accuracy"]
    curve = cost_sweep(p, expected, y, costs, config.cost_sweep_points)
    return {
        "expected_cost_usd": {m: float(c) for m, c in zip(models, expected, strict=True)},
        "model_sat": curve,
        "single_models": {
            m: {"accuracy": float(y[:, j].mean()), "mean_cost_usd": float(costs[:, j].mean())}
            for j, m in enumerate(models)
        },
        "best_single": {"accuracy": best_acc, "mean_cost_usd": methods["best_single"]["mean_cost_usd"]},
        "cost_to_match_best_single_usd": cost_to_match(curve, best_acc),
    }


def _baseline_inputs(
    ckpt: RouterCheckpoint,
    zoo: RoutingData,
    pool_rows: np.ndarray,
    rows: np.ndarray,
    unseen: list[str],
    config: EvalSection,
    progress: Progress,
    notes: list[str],
) -> tuple[BaselineData, np.ndarray]:
    """The learned baselines' training data from the checkpoint's training pool of `zoo`, and the held-out
    `rows`' instruction embeddings.

    The baselines get what Model-SAT gets: every outcome of the training models on the pool, and for unseen
    models only their outcomes on the aptitude items. Their instruction embeddings come from the checkpoint's
    capability encoder ψ (the same vectors the frozen router backbone computes, read from the disk cache).

    Returns:
        (training data, [len(rows), d] held-out embeddings); a note is appended to `notes` when the zoo lacks
        the checkpoint's validation questions.
    """
    name = ckpt.training.get("capability_encoder", ckpt.model.config.backbone_name)
    max_tokens = ckpt.model.config.max_instruction_tokens
    if ckpt.model.config.backbone_type == "static":  # ψ is the checkpoint's own table
        psi = SentenceEncoder.static_backbone(ckpt.model.backbone, ckpt.tokenizer, name, max_tokens)
    else:
        psi = SentenceEncoder(name, max_tokens)
    x_pool = sentence_encodings(psi, zoo.prompts[pool_rows].tolist(), progress, "training pool for baselines")
    x_eval = sentence_encodings(
        psi, zoo.prompts[rows].tolist(), progress, "held-out instructions for baselines"
    )
    y_known = _known_pool_outcomes(ckpt, zoo, pool_rows, unseen)
    is_val = np.isin(zoo.question_ids[pool_rows], list(ckpt.training.get("validation_ids", [])))
    if not is_val.any():
        notes.append("the zoo lacks the checkpoint's validation questions: baselines tune on 10% of the pool")
        is_val = np.random.default_rng(config.seed).random(len(pool_rows)) < 0.1
    data = BaselineData(
        x=x_pool[~is_val], y=y_known[~is_val], x_val=x_pool[is_val], y_val=y_known[is_val], seed=config.seed
    )
    return data, x_eval


def _known_pool_outcomes(
    ckpt: RouterCheckpoint, zoo: RoutingData, pool_rows: np.ndarray, unseen: list[str]
) -> np.ndarray:
    """[p, m] training-pool outcomes as the checkpoint knew them: NaN for an unseen model outside its aptitude
    items (the same evidence Model-SAT gets)."""
    y_known = zoo.outcomes[pool_rows].astype(np.float32).copy()
    is_apt = np.isin(zoo.question_ids[pool_rows], list(ckpt.aptitude.question_ids))
    for j, m in enumerate(zoo.models):
        if m in unseen:
            y_known[~is_apt, j] = np.nan
    return y_known


def _calibration(p: np.ndarray, y: np.ndarray, models: list[str], unseen: list[str]) -> dict[str, Any]:
    """Reliability of the router's calibrated p(correct) on the held-out pairs, seen and unseen models apart."""
    cols = {"seen": [j for j, m in enumerate(models) if m not in unseen]}
    if unseen:
        cols["unseen"] = [j for j, m in enumerate(models) if m in unseen]
    return {k: reliability(p[:, c], y[:, c]) for k, c in cols.items() if c}


def _cost_targets(
    ckpt: RouterCheckpoint,
    zoo: RoutingData,
    router: Router,
    sweep: dict[str, Any],
    p: np.ndarray,
    rows: np.ndarray,
    preference: np.ndarray,
    notes: list[str],
) -> dict[str, Any]:
    """Cost-aware routing with λ chosen on the checkpoint's validation split, then applied to these questions:
    the cheapest λ that reaches the best single model's validation accuracy, and the most accurate λ within
    30 % of its validation cost. Empty (with a note) when the zoo lacks the validation questions.
    """
    try:
        val_rows = held_out_rows(ckpt, zoo, "validation")
    except DataError:
        notes.append("the zoo lacks the checkpoint's validation questions: no validation-chosen λ")
        return {}
    expected = np.array([sweep["expected_cost_usd"][m] for m in zoo.models])
    pv = router.probabilities(router.score_encoded(router.encode(zoo.prompts[val_rows].tolist())))
    yv, cv = zoo.outcomes[val_rows], zoo.costs[val_rows]
    curve_val = cost_sweep(pv, expected, yv, cv, len(sweep["model_sat"]))
    best = int(np.argmax(preference))
    y, costs = zoo.outcomes[rows], zoo.costs[rows]
    best_cost = float(costs[:, best].mean())
    out: dict[str, Any] = {"n_validation": int(len(val_rows)), "best_single_cost_usd": best_cost}
    targets = {
        "match_best_single": {"min_accuracy": float(yv[:, best].mean())},
        "at_30pct_cost": {"max_cost_usd": 0.3 * float(cv[:, best].mean())},
    }
    for name, target in targets.items():
        lam = choose_lambda(curve_val, **target)
        point = route_at_lambda(p, expected, y, costs, lam)
        out[name] = {**point, "cost_share_of_best_single": point["mean_cost_usd"] / max(best_cost, 1e-18)}
    return out
