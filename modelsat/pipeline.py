"""The main job's stages: train a router on a zoo (`train_pipeline`) and evaluate a checkpoint (`evaluate_pipeline`).

Training (paper §3): split the zoo (held-out test, training pool) → select the aptitude test from the pool with
the training models only → split the rest into validation and router-training questions → encode instructions
once (cached on disk) → measure capability profiles → capability instruction tuning → Platt calibration on the
validation split → save a self-contained checkpoint that records the seed and every question id it used.

Evaluation: held-out questions = the zoo's `split == "test"` rows if it has any, else all rows, minus every
question the checkpoint used and every question whose instruction text equals a used one. Models of the zoo
that the checkpoint does not know join through profiles measured on the checkpoint's aptitude items.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, field_validator

from modelsat.aptitude import (
    AptitudeConfig,
    CapabilityProfile,
    check_disjoint,
    measure_profiles,
    select_aptitude_test,
)
from modelsat.baselines import BASELINES, BaselineData
from modelsat.config import BaseConfig
from modelsat.data import Zoo, load_zoo
from modelsat.encoding import EmbeddingCache, encode_with_cache, encoder_key
from modelsat.errors import ConfigError, DataError, UnknownModelError
from modelsat.evaluate import (
    cost_sweep,
    cost_to_match,
    gap_closed,
    oracle_choice,
    summarize_choice,
    summarize_random,
)
from modelsat.paths import cache_dir
from modelsat.progress import NullProgress, Progress
from modelsat.router.build import RouterSpec, SentenceEncoder, new_router, tokenize_instructions
from modelsat.router.checkpoint import RouterCheckpoint
from modelsat.router.modeling import InstructionEncoding, RouterModel
from modelsat.router.routing import Router
from modelsat.split import split_zoo, stratified_sample
from modelsat.training import TrainConfig, fit_calibration, train_router

__all__ = ["DataSection", "EvalSection", "RunConfig", "SplitSection", "evaluate_pipeline", "train_pipeline"]


class DataSection(BaseConfig):
    """Which zoo to train on and which of its models to keep out of training."""

    zoo: str | None = Field(
        None, description="Zoo directory, or a zoo name under the data root ($MODELSAT_DATA)"
    )
    unseen_models: list[str] = Field(
        default_factory=list,
        description="Models kept out of router training; they join at evaluation via profiles",
    )


class SplitSection(BaseConfig):
    """How the zoo is split (see `modelsat.split`)."""

    seed: int = Field(0, description="Seed of the held-out split and the validation split")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of each task held out for testing")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the non-aptitude training pool used for validation"
    )


class EvalSection(BaseConfig):
    """Evaluation settings."""

    baselines: list[str] = Field(
        default_factory=lambda: ["knn", "mlp", "mf"], description="Learned baselines to run"
    )
    cost_sweep_points: int = Field(40, ge=2, le=1000, description="λ values in the accuracy–cost sweep")
    seed: int = Field(0, description="Seed of the learned baselines")

    @field_validator("baselines")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        bad = [b for b in v if b not in BASELINES]
        if bad:
            raise ValueError(f"unknown baseline {bad[0]!r}; allowed: {', '.join(BASELINES)}")
        return v


class RunConfig(BaseConfig):
    """A training + evaluation run (the main job's config, `modelsat/configs/*.yaml`)."""

    data: DataSection = Field(default_factory=DataSection, description="Zoo and unseen models")
    split: SplitSection = Field(default_factory=SplitSection, description="Held-out and validation split")
    aptitude: AptitudeConfig = Field(default_factory=AptitudeConfig, description="Aptitude test (paper §3)")
    router: RouterSpec = Field(default_factory=RouterSpec, description="Router architecture")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop")
    eval: EvalSection = Field(default_factory=EvalSection, description="Evaluation")


# --------------------------------------------------------------------------------------------------- helpers
def _sentence_encodings(
    encoder: SentenceEncoder, texts: list[str], progress: Progress, what: str
) -> np.ndarray:
    cache = EmbeddingCache(cache_dir(), encoder_key(encoder.model, encoder.max_tokens))
    with progress.task(f"encoding {what}", total=len(texts)) as advance:
        return encode_with_cache(texts, encoder, cache, batch_size=32, progress=advance)


def _task_embeddings(
    encoder: SentenceEncoder, zoo: Zoo, aptitude, item_vectors: dict[str, np.ndarray]
) -> np.ndarray:
    """[T', 2d]: ψ(task description) ‖ centroid of ψ(aptitude items of the task)."""
    desc = encoder([t.description for t in aptitude.tasks])
    cent = np.stack([np.mean([item_vectors[q] for q in t.question_ids], axis=0) for t in aptitude.tasks])
    cent = cent / np.linalg.norm(cent, axis=1, keepdims=True).clip(1e-9)
    return np.concatenate([desc, cent], axis=1).astype(np.float32)


def _check_unseen(zoo: Zoo, unseen: list[str]) -> list[str]:
    bad = [m for m in unseen if m not in zoo.models]
    if bad:
        raise UnknownModelError(
            f"unknown model {bad[0]!r} in --unseen-models; allowed: {', '.join(zoo.models)}"
        )
    seen = [m for m in zoo.models if m not in unseen]
    if len(seen) < 2:
        raise ConfigError(
            f"only {len(seen)} model(s) left for training after --unseen-models; keep at least 2"
        )
    return seen


# --------------------------------------------------------------------------------------------------- training
def train_pipeline(
    config: RunConfig, out_dir: str | Path, progress: Progress | None = None
) -> tuple[RouterCheckpoint, dict[str, Any]]:
    """Train a router on `config.data.zoo` and save the checkpoint to `out_dir` (atomically).

    Returns:
        (checkpoint, summary) where summary holds split sizes, aptitude notes, timings and the training result.
    Raises:
        ConfigError / DataError / UnknownModelError: bad zoo, unseen model names, or an impossible aptitude test;
            nothing is written then.
    """
    progress = progress or NullProgress()
    t_start = time.monotonic()
    if config.data.zoo is None:
        raise ConfigError("no zoo given: pass --data ZOO_DIR or set data.zoo in the config")
    zoo = load_zoo(config.data.zoo)
    unseen = list(config.data.unseen_models)
    seen = _check_unseen(zoo, unseen)
    progress.log(f"zoo {zoo.name}: {zoo.n_questions} questions × {zoo.n_models} models ({zoo.path})")
    if unseen:
        progress.log(f"unseen models (kept out of training): {', '.join(unseen)}")

    split = split_zoo(zoo, config.split.seed, config.split.test_fraction)
    aptitude = select_aptitude_test(zoo, split.pool, seen, config.aptitude)
    apt_rows = zoo.index_of_questions(aptitude.question_ids)
    rest = np.setdiff1d(split.pool, apt_rows)
    hashes = zoo.prompt_hashes()
    val_rows, train_rows = stratified_sample(
        rest, zoo.tasks[rest], hashes[rest], config.split.validation_fraction, config.split.seed + 1
    )
    check_disjoint(aptitude, zoo.question_ids[train_rows], "router-training")
    check_disjoint(aptitude, zoo.question_ids[split.test], "held-out")
    progress.log(
        f"split: {len(split.test)} held-out, {len(apt_rows)} aptitude items, {len(val_rows)} validation, "
        f"{len(train_rows)} router-training questions"
    )
    progress.log(f"aptitude test: {aptitude.notes}")

    # Encode the training pool once with ψ (cached on disk, shared with the baselines and later runs).
    t_enc = time.monotonic()
    psi = SentenceEncoder(config.router.capability_encoder, config.router.max_instruction_tokens)
    pool_vecs = _sentence_encodings(psi, zoo.prompts[split.pool].tolist(), progress, "training instructions")
    vec_of = {int(r): v for r, v in zip(split.pool, pool_vecs, strict=True)}
    item_vecs = {q: vec_of[int(r)] for q, r in zip(aptitude.question_ids, apt_rows, strict=True)}
    task_emb = _task_embeddings(psi, zoo, aptitude, item_vecs)
    model, tokenizer = new_router(
        config.router,
        task_emb,
        np.array([t.reference_mean for t in aptitude.tasks]),
        np.array([t.reference_std for t in aptitude.tasks]),
    )
    shares_psi = (
        not model.is_causal
        and model.backbone_frozen
        and encoder_key(model.backbone, model.config.max_instruction_tokens)
        == encoder_key(psi.model, psi.max_tokens)
    )
    encode_seconds = time.monotonic() - t_enc

    def encode(rows: np.ndarray) -> InstructionEncoding:
        if shares_psi:
            return InstructionEncoding(pooled=torch.as_tensor(np.stack([vec_of[int(r)] for r in rows])))
        t = tokenize_instructions(tokenizer, zoo.prompts[rows].tolist(), model.config)
        return model.encode_instructions(**t)

    profiles = measure_profiles(aptitude, zoo, zoo.models)
    seen_cols = zoo.model_index(seen)
    acc = np.stack([profiles[m].accuracies for m in seen])
    items = np.array([len(t.question_ids) for t in aptitude.tasks])
    y_train = zoo.outcomes[np.ix_(train_rows, seen_cols)]
    y_val = zoo.outcomes[np.ix_(val_rows, seen_cols)]
    caps_acc = torch.as_tensor(acc, dtype=torch.float32)

    def val_scores(m: RouterModel) -> np.ndarray:
        out = []
        caps = m.encode_profiles(caps_acc)
        for chunk in np.array_split(val_rows, max(1, len(val_rows) // 256)):
            out.append(m.score(encode(chunk), caps))
        return torch.cat(out).numpy()

    def validate(m: RouterModel) -> dict[str, float]:
        s = val_scores(m)
        routed = float(y_val[np.arange(len(y_val)), s.argmax(1)].mean())
        bce = float(
            torch.nn.functional.binary_cross_entropy_with_logits(torch.as_tensor(s), torch.as_tensor(y_val))
        )
        return {"routing_accuracy": routed, "bce": bce}

    t_train = time.monotonic()
    with progress.task("training router", total=config.train.max_steps) as advance:
        result = train_router(
            model,
            lambda rows: encode(train_rows[rows]),
            y_train,
            acc,
            items,
            validate,
            config.train,
            on_step=lambda step, metrics: advance(1, loss=metrics.get("loss", float("nan"))),
        )
    with torch.no_grad():
        s_val = val_scores(model)
    scale, bias = fit_calibration(s_val.ravel(), y_val.ravel())
    model.config.score_scale, model.config.score_bias = scale, bias
    train_seconds = time.monotonic() - t_train
    progress.log(
        f"trained {result.steps_done} steps in {train_seconds:.0f}s; best validation routing accuracy "
        f"{100 * result.best_validation['routing_accuracy']:.1f}% at step {result.best_step}"
    )

    used = np.concatenate([train_rows, val_rows, apt_rows])
    summary = {
        "zoo": zoo.name,
        "n_questions": zoo.n_questions,
        "n_held_out": int(len(split.test)),
        "n_aptitude_items": int(len(apt_rows)),
        "n_validation": int(len(val_rows)),
        "n_train": int(len(train_rows)),
        "aptitude_notes": aptitude.notes,
        "encode_seconds": encode_seconds,
        "train_seconds": train_seconds,
        "total_seconds": time.monotonic() - t_start,
        "steps_done": result.steps_done,
        "best_step": result.best_step,
        "best_validation": result.best_validation,
        "calibration": {"scale": scale, "bias": bias},
    }
    training = {
        "seed": config.split.seed,
        "zoo": zoo.name,
        "zoo_path": str(zoo.path),
        "zoo_fingerprint": zoo.fingerprint(),
        "unseen_models": unseen,
        "training_models": seen,
        "capability_encoder": config.router.capability_encoder,
        "train_ids": zoo.question_ids[train_rows].tolist(),
        "validation_ids": zoo.question_ids[val_rows].tolist(),
        "held_out_ids": zoo.question_ids[split.test].tolist(),
        "used_prompt_hashes": sorted(set(hashes[used].tolist())),
        "config": config.model_dump(mode="json"),
        "summary": summary,
        "history": result.history,
    }
    ckpt = RouterCheckpoint(
        model=model,
        tokenizer=tokenizer,
        aptitude=aptitude,
        profiles={m: profiles[m] for m in seen},
        training=training,
    )
    ckpt.save(out_dir)
    progress.log(f"checkpoint written to {out_dir}")
    return ckpt, summary


# --------------------------------------------------------------------------------------------------- evaluation
def held_out_rows(ckpt: RouterCheckpoint, zoo: Zoo, split: str) -> np.ndarray:
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


def zoo_profiles(ckpt: RouterCheckpoint, zoo: Zoo) -> dict[str, CapabilityProfile]:
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
) -> dict[str, Any]:
    """Evaluate a router checkpoint and the baselines on a zoo's held-out questions.

    Returns:
        The report dict (see `modelsat.report`), with `n_questions`, `models`, `unseen_models` and `methods`
        (`model_sat`, `best_single`, `oracle`, `random`, and the learned baselines), each with `accuracy`.
    Raises:
        CheckpointError, DataError, ConfigError: bad inputs (nothing is written by this function).
    """
    progress = progress or NullProgress()
    config = config or EvalSection()
    ckpt = checkpoint if isinstance(checkpoint, RouterCheckpoint) else RouterCheckpoint.load(checkpoint)
    zoo = load_zoo(zoo_dir)
    rows = held_out_rows(ckpt, zoo, split)
    profiles = zoo_profiles(ckpt, zoo)
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

    router = Router(ckpt, profiles, cache=EmbeddingCache(cache_dir(), "pending"))
    router.cache = EmbeddingCache(cache_dir(), router.encoder_key()) if router.cacheable else None
    t0 = time.monotonic()
    with progress.task("encoding held-out instructions", total=len(rows)) as advance:
        enc = router.encode(zoo.prompts[rows].tolist(), progress=advance)
    t1 = time.monotonic()
    scores = router.score_encoded(enc)
    t2 = time.monotonic()
    p = router.probabilities(scores)

    # training pool of this zoo, as the checkpoint saw it
    used_ids = ckpt.used_question_ids
    in_pool = np.isin(zoo.question_ids, list(used_ids))
    pool_rows = np.flatnonzero(in_pool)
    val_ids = set(ckpt.training.get("validation_ids", []))
    apt_ids = set(ckpt.aptitude.question_ids)
    preference = zoo.outcomes[pool_rows].mean(0) if len(pool_rows) else zoo.outcomes.mean(0)
    best_idx = int(np.argmax(preference))

    methods: dict[str, dict] = {}
    model_sat_choice = scores.argmax(1)
    methods["model_sat"] = summarize_choice(model_sat_choice, y, models, costs, bench, cat)
    methods["best_single"] = {
        "model": models[best_idx],
        **summarize_choice(np.full(len(rows), best_idx), y, models, costs, bench, cat),
    }
    oracle = oracle_choice(y, costs, preference)
    methods["oracle"] = summarize_choice(oracle, y, models, costs, bench, cat)
    methods["random"] = summarize_random(y, costs, bench, cat)

    # learned baselines on the same instruction embeddings; unseen models known only on aptitude items
    baseline_scores: dict[str, np.ndarray] = {}
    notes: list[str] = []
    if config.baselines and len(pool_rows):
        psi = SentenceEncoder(
            ckpt.training.get("capability_encoder", ckpt.model.config.backbone_name),
            ckpt.model.config.max_instruction_tokens,
        )
        x_pool = _sentence_encodings(
            psi, zoo.prompts[pool_rows].tolist(), progress, "training pool for baselines"
        )
        x_eval = (
            enc.pooled.numpy()
            if (enc.pooled is not None and encoder_key(psi.model, psi.max_tokens) == router.encoder_key())
            else _sentence_encodings(psi, zoo.prompts[rows].tolist(), progress, "held-out for baselines")
        )
        y_known = zoo.outcomes[pool_rows].astype(np.float32).copy()
        is_apt = np.isin(zoo.question_ids[pool_rows], list(apt_ids))
        for j, m in enumerate(models):
            if m in unseen:
                y_known[~is_apt, j] = np.nan
        is_val = np.isin(zoo.question_ids[pool_rows], list(val_ids))
        fit_rows = ~is_val if is_val.any() else np.ones(len(pool_rows), dtype=bool)
        data = BaselineData(
            x=x_pool[fit_rows],
            y=y_known[fit_rows],
            x_val=x_pool[is_val] if is_val.any() else x_pool[:0],
            y_val=y_known[is_val] if is_val.any() else y_known[:0],
            seed=config.seed,
        )
        if not is_val.any():
            notes.append(
                "the zoo lacks the checkpoint's validation questions: baselines use default settings"
            )
        for name in config.baselines:
            with progress.task(f"baseline {name}", total=None):
                if data.x_val.shape[0] == 0:
                    data.x_val, data.y_val = data.x[:200], data.y[:200]
                b = BASELINES[name]().fit(data)
                baseline_scores[name] = b.predict(x_eval)
            methods[name] = summarize_choice(baseline_scores[name].argmax(1), y, models, costs, bench, cat)
    elif config.baselines:
        notes.append(
            f"zoo {zoo.name!r} shares no training questions with the checkpoint: learned baselines skipped"
        )

    best_acc, oracle_acc = methods["best_single"]["accuracy"], methods["oracle"]["accuracy"]
    for res in methods.values():
        res["gap_closed"] = gap_closed(res["accuracy"], best_acc, oracle_acc)

    # the same comparison with the unseen models removed from the candidate set
    seen_cols = [j for j, m in enumerate(models) if m not in unseen]
    seen_only: dict[str, Any] = {}
    if unseen and len(seen_cols) >= 1:
        ys = y[:, seen_cols]
        sub = [models[j] for j in seen_cols]
        pref_s = preference[seen_cols]
        seen_only = {
            "models": sub,
            "methods": {
                "model_sat": {
                    "accuracy": float(ys[np.arange(len(ys)), scores[:, seen_cols].argmax(1)].mean())
                },
                "best_single": {
                    "model": sub[int(np.argmax(pref_s))],
                    "accuracy": float(ys[:, int(np.argmax(pref_s))].mean()),
                },
                "oracle": {"accuracy": float(ys.max(1).mean())},
                "random": {"accuracy": float(ys.mean())},
                **{
                    n: {"accuracy": float(ys[np.arange(len(ys)), s[:, seen_cols].argmax(1)].mean())}
                    for n, s in baseline_scores.items()
                },
            },
        }

    def unseen_stats(choice: np.ndarray) -> dict[str, dict[str, float | None]]:
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
            "model_sat": unseen_stats(model_sat_choice),
            **{n: unseen_stats(s.argmax(1)) for n, s in baseline_scores.items()},
        }
        if unseen
        else {},
        "profiles": {m: profiles[m].to_dict() for m in models},
        "timing": {
            "encode_seconds": t1 - t0,
            "score_seconds": t2 - t1,
            "score_ms_per_instruction": 1000 * (t2 - t1) / len(rows),
        },
        "notes": notes,
    }
    if costs is not None:
        cost_rows = pool_rows if len(pool_rows) else rows
        cost_src = zoo.costs[cost_rows]
        expected = cost_src.mean(0)
        if unseen:
            apt_sel = np.isin(zoo.question_ids[cost_rows], list(apt_ids))
            for m in unseen:  # unseen models: what their aptitude test cost
                j = models.index(m)
                if apt_sel.any():
                    expected[j] = cost_src[apt_sel, j].mean()
        curve = cost_sweep(p, expected, y, costs, config.cost_sweep_points)
        report["cost_sweep"] = {
            "expected_cost_usd": {m: float(c) for m, c in zip(models, expected, strict=True)},
            "model_sat": curve,
            "single_models": {
                m: {"accuracy": float(y[:, j].mean()), "mean_cost_usd": float(costs[:, j].mean())}
                for j, m in enumerate(models)
            },
            "best_single": {"accuracy": best_acc, "mean_cost_usd": methods["best_single"]["mean_cost_usd"]},
            "cost_to_match_best_single_usd": cost_to_match(curve, best_acc),
        }
    return report
