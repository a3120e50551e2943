"""Training a router on a zoo (`train_pipeline`), the first stage of the main job (evaluation: `modelsat.evaluate`).

Training (paper §3): split the zoo (held-out test, training pool) → select the aptitude test from the pool with
the training models only → split the rest into validation and router-training questions → encode instructions
once (cached on disk) → measure capability profiles → capability instruction tuning → Platt calibration on the
validation split → save a self-contained checkpoint that records the seed and every question id it used.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from modelsat.aptitude import (
    AptitudeTest,
    CapabilityProfile,
    check_disjoint,
    measure_profiles,
    select_aptitude_test,
)
from modelsat.data import RoutingData, load_routing_data
from modelsat.encoding import EmbeddingCache, encode_with_cache, encoder_key
from modelsat.errors import ConfigError, UnknownModelError
from modelsat.grading import items_from_routing_data
from modelsat.paths import cache_dir
from modelsat.progress import NullProgress, Progress
from modelsat.router.build import SentenceEncoder, new_router, tokenize_instructions
from modelsat.router.calibration import fit_calibration, platt_probabilities
from modelsat.router.checkpoint import RouterCheckpoint
from modelsat.router.decision import anchor_column, fit_defer_margin
from modelsat.router.encodings import InstructionEncoding
from modelsat.router.modeling import RouterModel
from modelsat.router.prior import TaskAccuracies, fit_prior
from modelsat.router.static import fit_static_table, is_static_model_dir
from modelsat.runconfig import RunConfig
from modelsat.split import split_routing_data, stratified_sample
from modelsat.training import (
    TrainResult,
    train_router,
    validation_metrics,
    validation_scores,
)

__all__ = [
    "TrainingPlan",
    "check_unseen",
    "finalize_training",
    "prepare_training",
    "sentence_encodings",
    "train_pipeline",
]


# --------------------------------------------------------------------------------------------------- helpers
def sentence_encodings(
    encoder: SentenceEncoder, texts: list[str], progress: Progress, what: str
) -> np.ndarray:
    """[n, d] encodings of `texts` by a sentence encoder, through the on-disk cache, with a progress bar."""
    cache = EmbeddingCache(cache_dir(), encoder_key(encoder.model, encoder.max_tokens))
    with progress.task(f"encoding {what}", total=len(texts)) as advance:
        return encode_with_cache(texts, encoder, cache, batch_size=32, progress=advance)


def fit_static_psi(
    psi: SentenceEncoder, config: RunConfig, texts: list[str], progress: Progress
) -> tuple[SentenceEncoder, dict[str, float | int | str]]:
    """ψ of a static backbone fitted to the sentence encoder it was distilled from (`router.static_fit`).

    Args:
        psi: the distilled static encoder (`SentenceEncoder.for_router`).
        texts: the router-training pool's instructions (router-training questions and aptitude items; never
            validation or held-out ones).
    Returns:
        (the fitted ψ, the fit's summary from `modelsat.router.static.fit_static_table`).
    Raises:
        ConfigError: `router.backbone` is a model2vec directory (no sentence encoder to fit to).
    """
    spec = config.router
    if is_static_model_dir(spec.backbone):
        raise ConfigError(
            f"router.static_fit={spec.static_fit!r} fits the table to the sentence encoder it is distilled from, "
            f"but router.backbone={spec.backbone!r} is a model2vec directory; allowed: static_fit none, or a "
            "sentence encoder as router.backbone"
        )
    source = SentenceEncoder(spec.backbone, spec.max_instruction_tokens)
    targets = sentence_encodings(source, texts, progress, "instructions with the source encoder (static fit)")
    t0 = time.monotonic()
    backbone, info = fit_static_table(
        psi.model, psi.tokenizer, texts, targets, spec.max_instruction_tokens, config.train.seed
    )
    info["seconds"] = round(time.monotonic() - t0, 1)
    progress.log(
        f"static table fitted to {spec.backbone} ({info['mode']}, {info['texts']} instructions): cosine to its "
        f"vectors on held-out instructions {info['held_out_cosine']:.3f}"
    )
    fitted = SentenceEncoder.static_backbone(backbone, psi.tokenizer, psi.name, psi.max_tokens)
    return fitted, info


def _task_embeddings(
    encoder: SentenceEncoder, zoo: RoutingData, aptitude, item_vectors: dict[str, np.ndarray]
) -> np.ndarray:
    """[T', 2d]: ψ(task description) ‖ centroid of ψ(aptitude items of the task)."""
    desc = encoder([t.description for t in aptitude.tasks])
    cent = np.stack([np.mean([item_vectors[q] for q in t.question_ids], axis=0) for t in aptitude.tasks])
    cent = cent / np.linalg.norm(cent, axis=1, keepdims=True).clip(1e-9)
    return np.concatenate([desc, cent], axis=1).astype(np.float32)


def check_unseen(zoo: RoutingData, unseen: list[str]) -> list[str]:
    """The training models: the zoo's models minus `unseen`.

    Raises:
        UnknownModelError: an unseen name that is not in the zoo (the message lists the zoo's models).
        ConfigError: fewer than 2 training models left.
    """
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
@dataclass
class TrainingPlan:
    """Everything a training run needs, prepared once (by the driver in distributed training).

    Attributes:
        config: the run config.
        zoo: the zoo. seen / unseen: training models and models kept out of training.
        validation_unseen: models kept out of training that join the validation split's candidates.
        aptitude: the frozen aptitude test (chosen with the training models only).
        held_out, apt_rows, val_rows, train_rows: disjoint row indices of the zoo.
        profiles: capability profiles of every model of the zoo, measured on the aptitude items.
        model, tokenizer: the freshly built router (backbone weights loaded, task embeddings set).
        pool_vectors: ψ encodings of the training pool by zoo row (aptitude and validation rows only when
            prepared with `encode_training_rows=False`).
        shares_psi: whether the router's instruction encodings equal ψ's (frozen encoder backbone = ψ), so the
            cached ψ encodings can stand in for running the backbone.
        encode_seconds: time spent encoding the pool (with the static fit, if any).
        static_fit: summary of the static table's fit to its sentence encoder (`fit_static_psi`), or None.
    """

    config: RunConfig
    zoo: RoutingData
    seen: list[str]
    unseen: list[str]
    validation_unseen: list[str]
    aptitude: AptitudeTest
    held_out: np.ndarray
    apt_rows: np.ndarray
    val_rows: np.ndarray
    train_rows: np.ndarray
    profiles: dict[str, CapabilityProfile]
    model: RouterModel
    tokenizer: PreTrainedTokenizerBase
    pool_vectors: dict[int, np.ndarray]
    shares_psi: bool
    encode_seconds: float
    static_fit: dict[str, Any] | None = None

    @property
    def seen_columns(self) -> np.ndarray:
        return self.zoo.model_index(self.seen)

    @property
    def accuracies(self) -> np.ndarray:
        """[m_seen, T'] capability profiles of the training models."""
        return np.stack([self.profiles[m].accuracies for m in self.seen])

    @property
    def validation_models(self) -> list[str]:
        """The validation split's candidates: the training models, then the validation newcomers."""
        return self.seen + self.validation_unseen

    @property
    def validation_accuracies(self) -> np.ndarray:
        """[m_val, T'] capability profiles of `validation_models`."""
        return np.stack([self.profiles[m].accuracies for m in self.validation_models])

    def validation_outcomes(self) -> np.ndarray:
        """[n_val, m_val] outcomes of `validation_models` on the validation split."""
        return self.zoo.outcomes[np.ix_(self.val_rows, self.zoo.model_index(self.validation_models))]

    @property
    def items_per_task(self) -> np.ndarray:
        return np.array([len(t.question_ids) for t in self.aptitude.tasks])

    def outcomes(self, rows: np.ndarray) -> np.ndarray:
        """[len(rows), m_seen] outcomes of the training models."""
        return self.zoo.outcomes[np.ix_(rows, self.seen_columns)]

    def encode(self, rows: np.ndarray, model: RouterModel | None = None) -> InstructionEncoding:
        """Encodings of zoo rows for `model` (default: the plan's): cached ψ vectors, or a backbone pass."""
        model = model or self.model
        if self.shares_psi:
            return InstructionEncoding(
                pooled=torch.as_tensor(np.stack([self.pool_vectors[int(r)] for r in rows]))
            )
        t = tokenize_instructions(self.tokenizer, self.zoo.prompts[rows].tolist(), model.config)
        return model.encode_instructions(**t)

    @torch.no_grad()
    def validation_scores(self, model: RouterModel, tasks: TaskAccuracies | None = None) -> np.ndarray:
        """[n_val, m_val] router scores on the validation split, for `validation_models` (`tasks`: the
        profile prior's per-task table, when the model uses the prior)."""
        chunks = np.array_split(self.val_rows, max(1, len(self.val_rows) // 256))
        encodings = (self.encode(c, model) for c in chunks)
        acc = torch.as_tensor(self.validation_accuracies, dtype=torch.float32)
        prior = None
        if tasks is not None and model.config.prior_source == "pool":
            prior = torch.as_tensor(tasks.for_candidates(self.validation_models, self.validation_accuracies))
        return validation_scores(model, encodings, acc, prior)

    def validate(self, model: RouterModel) -> dict[str, float]:
        """Validation routing accuracy among `validation_models` (training models and validation newcomers),
        and the pointwise BCE of the scores."""
        return validation_metrics(self.validation_scores(model), self.validation_outcomes())


def prepare_training(
    config: RunConfig, progress: Progress | None = None, encode_training_rows: bool = True
) -> TrainingPlan:
    """Load and split the zoo, select the aptitude test, encode the pool (cached) and build a fresh router.

    Args:
        config: the run config.
        progress: progress display.
        encode_training_rows: encode the router-training instructions here too (single process); False when
            a distributed input pipeline encodes them (only aptitude items and validation rows are encoded).

    Raises:
        ConfigError / DataError / UnknownModelError: bad zoo, unseen model names, or an impossible aptitude test.
    """
    progress = progress or NullProgress()
    if config.data.routing_data is None:
        raise ConfigError("no zoo given: pass --data ZOO_DIR or set data.routing_data in the config")
    zoo = load_routing_data(config.data.routing_data)
    if config.data.models is not None:
        zoo = zoo.subset(models=config.data.models)  # names checked: UnknownModelError lists the zoo's
    unseen = list(config.data.unseen_models)
    val_unseen = list(config.data.validation_unseen_models)
    both = sorted(set(unseen) & set(val_unseen))
    if both:
        raise ConfigError(
            f"{both[0]!r} is in both data.unseen_models and data.validation_unseen_models; a model is one or the other"
        )
    bad = [m for m in val_unseen if m not in zoo.models]
    if bad:
        raise UnknownModelError(
            f"unknown model {bad[0]!r} in data.validation_unseen_models; allowed: {', '.join(zoo.models)}"
        )
    seen = check_unseen(zoo, unseen + val_unseen)
    progress.log(f"zoo {zoo.name}: {zoo.n_questions} questions × {zoo.n_models} models ({zoo.path})")
    if unseen:
        progress.log(f"unseen models (kept out of training): {', '.join(unseen)}")
    if val_unseen:
        progress.log(
            f"validation newcomers (kept out of training, used for selection): {', '.join(val_unseen)}"
        )

    split = split_routing_data(zoo, config.split.seed, config.split.test_fraction)
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
    psi = SentenceEncoder.for_router(config.router)
    static_fit = None
    if psi.static and config.router.static_fit != "none":
        psi, static_fit = fit_static_psi(
            psi, config, zoo.prompts[np.concatenate([train_rows, apt_rows])].tolist(), progress
        )
    rows = split.pool if encode_training_rows else np.concatenate([apt_rows, val_rows])
    pool_vecs = sentence_encodings(psi, zoo.prompts[rows].tolist(), progress, "training instructions")
    vec_of = {int(r): v for r, v in zip(rows, pool_vecs, strict=True)}
    item_vecs = {q: vec_of[int(r)] for q, r in zip(aptitude.question_ids, apt_rows, strict=True)}
    task_emb = _task_embeddings(psi, zoo, aptitude, item_vecs)
    model, tokenizer = new_router(
        config.router,
        task_emb,
        np.array([t.reference_mean for t in aptitude.tasks]),
        np.array([t.reference_std for t in aptitude.tasks]),
        static_encoder=psi if psi.static else None,
    )
    shares_psi = (
        not model.is_causal
        and model.backbone_frozen
        and encoder_key(model.backbone, model.config.max_instruction_tokens)
        == encoder_key(psi.model, psi.max_tokens)
    )
    return TrainingPlan(
        config=config,
        zoo=zoo,
        seen=seen,
        unseen=unseen,
        validation_unseen=val_unseen,
        aptitude=aptitude,
        held_out=split.test,
        apt_rows=apt_rows,
        val_rows=val_rows,
        train_rows=train_rows,
        profiles=measure_profiles(aptitude, zoo, zoo.models),
        model=model,
        tokenizer=tokenizer,
        pool_vectors=vec_of,
        shares_psi=shares_psi,
        encode_seconds=time.monotonic() - t_enc,
        static_fit=static_fit,
    )


def task_accuracies(plan: TrainingPlan) -> TaskAccuracies:
    """The training models' accuracy on each aptitude task's training-pool questions (router-training questions
    and aptitude items of the task; never validation or held-out ones), with the per-task profile → pool line
    that places newcomers on that scale (`modelsat.router.prior.TaskAccuracies`)."""
    rows = np.concatenate([plan.train_rows, plan.apt_rows])
    y, tasks = plan.outcomes(rows), plan.zoo.tasks[rows]
    pool = np.stack([y[tasks == t.name].mean(0) for t in plan.aptitude.tasks], axis=1)  # [m_seen, T']
    return TaskAccuracies.fit(pool, plan.accuracies, plan.seen)


@torch.no_grad()
def _fit_profile_prior(plan: TrainingPlan, model: RouterModel, tasks: TaskAccuracies) -> dict[str, float]:
    """Choose the profile prior's source (profiles, or training-pool accuracies with linked newcomers), β and τ
    on the validation split (`modelsat.router.prior.fit_prior`) and set them in `model.config`; β = 0 where the
    router does not read ψ(x) (`shares_psi` false) or where no prior beats the router alone.

    Returns:
        {"weight", "temperature", "source", "validation_routing_accuracy" (with the prior), "without"}.
    """
    model.config.prior_weight = 0.0
    y = plan.validation_outcomes()
    raw = plan.validation_scores(model)
    rows = np.arange(len(y))
    without = float(y[rows, raw.argmax(1)].mean())
    if not plan.shares_psi or model.is_causal:
        return {
            "weight": 0.0,
            "temperature": model.config.prior_temperature,
            "source": model.config.prior_source,
            "validation_routing_accuracy": without,
            "without": without,
        }
    pooled = torch.as_tensor(np.stack([plan.pool_vectors[int(r)] for r in plan.val_rows]))
    caps = model.encode_profiles(torch.as_tensor(plan.validation_accuracies, dtype=torch.float32))
    pool = torch.as_tensor(tasks.for_candidates(plan.validation_models, plan.validation_accuracies))
    best = (without, 0.0, model.config.prior_temperature, "profile")
    for source, prior_acc in (("profile", None), ("pool", pool)):
        caps.prior_accuracies = prior_acc
        w, t, a = fit_prior(raw, lambda tau: model.profile_prior(pooled, caps, tau).numpy(), y)
        if w > 0 and a > best[0] + 1e-12:
            best = (a, w, t, source)
    acc, weight, tau, source = best
    model.config.prior_weight, model.config.prior_temperature, model.config.prior_source = weight, tau, source
    return {
        "weight": weight,
        "temperature": tau,
        "source": source,
        "validation_routing_accuracy": acc,
        "without": without,
    }


@torch.no_grad()
def _fit_defer_margin(plan: TrainingPlan, model: RouterModel, tasks: TaskAccuracies) -> dict[str, Any]:
    """Choose δ of the anchor-and-defer rule on the validation split (its newcomers included) and set
    `model.config.defer_margin` (`modelsat.router.decision.fit_defer_margin`); needs the calibration fitted.

    Returns:
        {"margin", "anchor" (the validation candidates' anchor), "validation_routing_accuracy" (at δ),
        "without" (δ = 0), "curve" ({δ: validation routing accuracy})}.
    """
    p = platt_probabilities(
        plan.validation_scores(model, tasks), model.config.score_scale, model.config.score_bias
    )
    estimated = tasks.for_candidates(plan.validation_models, plan.validation_accuracies).mean(1)
    margin, acc, curve = fit_defer_margin(p, plan.validation_outcomes(), estimated)
    model.config.defer_margin = margin
    return {
        "margin": margin,
        "anchor": plan.validation_models[anchor_column(estimated)],
        "validation_routing_accuracy": acc,
        "without": curve[0.0],
        "curve": {str(k): v for k, v in curve.items()},
    }


def finalize_training(
    plan: TrainingPlan,
    out_dir: str | Path,
    result: TrainResult,
    progress: Progress | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[RouterCheckpoint, dict[str, Any]]:
    """Fit the profile prior and the Platt calibration on the validation split, and save the checkpoint atomically.

    Args:
        plan: the prepared plan; `plan.model` holds the trained weights.
        out_dir: checkpoint directory.
        result: the training result (steps, best step, history, seconds).
        extra: more entries for `training.json` (e.g. the distributed run's settings).
    Returns:
        (checkpoint, summary).
    """
    progress = progress or NullProgress()
    model, zoo = plan.model.eval(), plan.zoo
    tasks = task_accuracies(plan)
    prior = _fit_profile_prior(plan, model, tasks)
    scale, bias = fit_calibration(
        plan.validation_scores(model, tasks).ravel(), plan.validation_outcomes().ravel()
    )
    model.config.score_scale, model.config.score_bias = scale, bias
    defer = _fit_defer_margin(plan, model, tasks)
    progress.log(
        f"trained {result.steps_done} steps in {result.seconds:.0f}s; best validation routing accuracy "
        f"{100 * result.best_validation['routing_accuracy']:.1f}% at step {result.best_step}"
    )
    used = np.concatenate([plan.train_rows, plan.val_rows, plan.apt_rows])
    summary = {
        "zoo": zoo.name,
        "n_questions": zoo.n_questions,
        "n_held_out": int(len(plan.held_out)),
        "n_aptitude_items": int(len(plan.apt_rows)),
        "n_validation": int(len(plan.val_rows)),
        "n_train": int(len(plan.train_rows)),
        "aptitude_notes": plan.aptitude.notes,
        "encode_seconds": plan.encode_seconds,
        "static_fit": plan.static_fit,
        "train_seconds": result.seconds,
        "steps_done": result.steps_done,
        "best_step": result.best_step,
        "best_validation": result.best_validation,
        "calibration": {"scale": scale, "bias": bias},
        "profile_prior": prior,
        "defer": defer,
    }
    training = {
        "seed": plan.config.split.seed,
        "zoo": zoo.name,
        "zoo_path": str(zoo.path),
        "zoo_fingerprint": zoo.fingerprint(),
        "unseen_models": plan.unseen,
        "validation_unseen_models": plan.validation_unseen,
        "task_accuracies": tasks.to_dict(),
        "training_models": plan.seen,
        "capability_encoder": plan.config.router.capability_encoder,
        "train_ids": zoo.question_ids[plan.train_rows].tolist(),
        "validation_ids": zoo.question_ids[plan.val_rows].tolist(),
        "held_out_ids": zoo.question_ids[plan.held_out].tolist(),
        "used_prompt_hashes": sorted(set(zoo.prompt_hashes()[used].tolist())),
        "config": plan.config.model_dump(mode="json"),
        "summary": summary,
        "history": result.history,
        **(extra or {}),
    }
    ckpt = RouterCheckpoint(
        model=model,
        tokenizer=plan.tokenizer,
        aptitude=plan.aptitude,
        profiles={m: plan.profiles[m] for m in plan.seen},
        training=training,
        items=items_from_routing_data(plan.aptitude, zoo),
    )
    ckpt.save(out_dir)
    progress.log(f"checkpoint written to {out_dir}")
    return ckpt, summary


def train_pipeline(
    config: RunConfig, out_dir: str | Path, progress: Progress | None = None
) -> tuple[RouterCheckpoint, dict[str, Any]]:
    """Train a router on `config.data.routing_data` in this process and save the checkpoint to `out_dir` (atomically).

    Returns:
        (checkpoint, summary) where summary holds split sizes, aptitude notes, timings and the training result.
    Raises:
        ConfigError / DataError / UnknownModelError: bad zoo, unseen model names, or an impossible aptitude test;
            nothing is written then.
    """
    progress = progress or NullProgress()
    t_start = time.monotonic()
    plan = prepare_training(config, progress)
    with progress.task("training router", total=config.train.max_steps) as advance:
        result = train_router(
            plan.model,
            lambda rows: plan.encode(plan.train_rows[rows]),
            plan.outcomes(plan.train_rows),
            plan.accuracies,
            plan.items_per_task,
            plan.validate,
            config.train,
            on_step=lambda step, metrics: advance(1, loss=metrics.get("loss", float("nan"))),
        )
    ckpt, summary = finalize_training(plan, out_dir, result, progress)
    summary["total_seconds"] = time.monotonic() - t_start
    return ckpt, summary
