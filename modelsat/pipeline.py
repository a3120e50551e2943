"""Training a router on a zoo (`train_pipeline`), the first stage of the main job (evaluation: `modelsat.evaluate`).

Training (paper §3): split the zoo (held-out test, training pool) → select the aptitude test from the pool with
the training models only → split the rest into validation and router-training questions → encode instructions
once (cached on disk) → measure capability profiles → capability instruction tuning → Platt calibration on the
validation split → save a self-contained checkpoint that records the seed and every question id it used.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelsat.aptitude import (
    check_disjoint,
    measure_profiles,
    select_aptitude_test,
)
from modelsat.data import Zoo, load_zoo
from modelsat.encoding import EmbeddingCache, encode_with_cache, encoder_key
from modelsat.errors import ConfigError, UnknownModelError
from modelsat.paths import cache_dir
from modelsat.progress import NullProgress, Progress
from modelsat.router.build import SentenceEncoder, new_router, tokenize_instructions
from modelsat.router.checkpoint import RouterCheckpoint
from modelsat.router.modeling import InstructionEncoding, RouterModel
from modelsat.runconfig import RunConfig
from modelsat.split import split_zoo, stratified_sample
from modelsat.training import fit_calibration, train_router

__all__ = ["check_unseen", "sentence_encodings", "train_pipeline"]


# --------------------------------------------------------------------------------------------------- helpers
def sentence_encodings(
    encoder: SentenceEncoder, texts: list[str], progress: Progress, what: str
) -> np.ndarray:
    """[n, d] encodings of `texts` by a sentence encoder, through the on-disk cache, with a progress bar."""
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


def check_unseen(zoo: Zoo, unseen: list[str]) -> list[str]:
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
    seen = check_unseen(zoo, unseen)
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
    pool_vecs = sentence_encodings(psi, zoo.prompts[split.pool].tolist(), progress, "training instructions")
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
