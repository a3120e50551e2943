"""Ray Data input pipeline of distributed capability instruction tuning (paper §3, Eq. 5).

One dataset per epoch, built lazily from the zoo's `outcomes.parquet`:

    read_parquet(outcomes) → keep router-training questions × training models
      ├─ groupby(model_idx).map_groups     → instruction groups (paper Eq. 5: 1 right, k−1 wrong, one model)
      ├─ groupby(question bucket).map_groups → model groups (one instruction: 1 model right, k−1 wrong)
      └─ map_batches                       → pointwise pairs (instruction, model, outcome)
    union → randomize_block_order → map_batches(InstructionFeaturizer) → ray.train.get_dataset_shard on
    each worker, which mixes rows with a local shuffle buffer

Each row is one training example: `kind` (0 instruction group, 1 model group, 2 pointwise), `question_ids`
[n_q] (k for instruction groups, 1 otherwise), `models` [k or 1] (indices into the training models), `target`
(the pointwise outcome); featurization replaces `question_ids` by `n_questions` and the features of the
instructions: `features` [n_q, d] ψ encodings when the router's
frozen encoder backbone is the capability encoder ψ (looked up in the on-disk encoding cache, computed on a
miss), else `input_ids` / `attention_mask` [n_q, s] tokens the worker's backbone reads. Negatives are drawn
with a generator seeded by (seed, epoch, group key), so an epoch is the same whichever worker builds it.

Docs: https://docs.ray.io/en/latest/data/api/doc/ray.data.grouped_data.GroupedData.map_groups.html,
https://docs.ray.io/en/latest/train/user-guides/data-loading-preprocessing.html
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import ray
import torch

from modelsat.encoding import EmbeddingCache, encode_with_cache, encoder_key
from modelsat.paths import cache_dir
from modelsat.router.build import SentenceEncoder, tokenize_instructions
from modelsat.router.configuration import RouterConfig
from modelsat.router.modeling import InstructionEncoding, RouterModel
from modelsat.training import TrainingBatch, instruction_groups

__all__ = [
    "KIND_INSTRUCTION",
    "KIND_MODEL",
    "KIND_POINTWISE",
    "FeatureMode",
    "InstructionFeaturizer",
    "collate",
    "epoch_dataset",
    "rows_per_epoch",
]

KIND_INSTRUCTION, KIND_MODEL, KIND_POINTWISE = 0, 1, 2
FeatureMode = Literal["embedding", "tokens"]


# --------------------------------------------------------------------------------------------- group building
def _keep_training_pairs(
    batch: pd.DataFrame, train_ids: frozenset[str], model_index: dict[str, int]
) -> pd.DataFrame:
    keep = batch["question_id"].isin(train_ids) & batch["model"].isin(list(model_index))
    rows = batch.loc[keep]
    return pd.DataFrame(
        {
            "question_id": rows["question_id"].astype(str).to_numpy(),
            "model_idx": rows["model"].map(model_index).astype(np.int64).to_numpy(),
            "score": rows["score"].astype(np.float32).to_numpy(),
        }
    )


def _examples(
    kind: int, qids: list[np.ndarray], models: list[np.ndarray], target: np.ndarray
) -> pd.DataFrame:
    # Python lists, so Arrow stores list<string> / list<int64> (numpy string arrays become fixed-width
    # binary tensors whose widths do not unify across blocks).
    return pd.DataFrame(
        {
            "kind": np.full(len(qids), kind, dtype=np.int8),
            "question_ids": [[str(q) for q in row] for row in qids],
            "models": [[int(m) for m in row] for row in models],
            "target": target.astype(np.float32),
        }
    )


def _instruction_groups(group: pd.DataFrame, k: int, seed: int, epoch: int) -> pd.DataFrame:
    group = group.sort_values("question_id")
    j = int(group["model_idx"].iloc[0])
    rng = np.random.default_rng([seed, epoch, KIND_INSTRUCTION, j])
    idx = instruction_groups(group["score"].to_numpy() >= 0.5, k, rng)  # positives already permuted
    qids = group["question_id"].to_numpy()[idx]
    return _examples(
        KIND_INSTRUCTION,
        list(qids),
        [np.full(k, j, dtype=np.int64)] * len(idx),
        np.ones(len(idx)),
    )


N_BUCKETS = 64
"""Model groups are built per bucket of questions (a stable hash of the id): a few large groups instead of one
Ray Data group per question, which is far cheaper to shuffle and call."""


def _with_bucket(batch: pd.DataFrame) -> pd.DataFrame:
    ids = batch["question_id"].astype(str)
    batch = batch.copy()
    batch["bucket"] = np.array([zlib.crc32(q.encode()) % N_BUCKETS for q in ids], dtype=np.int64)
    return batch


def _model_groups(bucket: pd.DataFrame, k: int, seed: int, epoch: int) -> pd.DataFrame:
    bucket = bucket.sort_values(["question_id", "model_idx"])
    rng = np.random.default_rng([seed, epoch, KIND_MODEL, int(bucket["bucket"].iloc[0])])
    qids, groups = [], []
    for qid, rows in bucket.groupby("question_id", sort=True):
        correct = rows["score"].to_numpy() >= 0.5
        models = rows["model_idx"].to_numpy()
        good, bad = models[correct], models[~correct]
        if len(good) == 0 or len(bad) == 0:
            continue
        negatives = bad[rng.integers(len(bad), size=(len(good), k - 1))]
        groups.extend(np.concatenate([good[:, None], negatives], 1))
        qids.extend([[qid]] * len(good))
    order = rng.permutation(len(qids))
    return _examples(KIND_MODEL, [qids[i] for i in order], [groups[i] for i in order], np.ones(len(qids)))


def _pointwise(batch: pd.DataFrame) -> pd.DataFrame:
    return _examples(
        KIND_POINTWISE,
        [np.array([q]) for q in batch["question_id"]],
        [np.array([m], dtype=np.int64) for m in batch["model_idx"]],
        batch["score"].to_numpy(),
    )


def rows_per_epoch(outcomes: np.ndarray) -> dict[str, int]:
    """Examples of each kind in one epoch of `epoch_dataset`.

    Args:
        outcomes: [n, m] router-training questions × training models, scores in [0, 1].
    Returns:
        {"instruction_groups", "model_groups", "pointwise", "total"}.
    """
    correct = outcomes >= 0.5
    mixed_models = correct.any(0) & (~correct).any(0)
    mixed_questions = correct.any(1) & (~correct).any(1)
    out = {
        "instruction_groups": int(correct[:, mixed_models].sum()),
        "model_groups": int(correct[mixed_questions].sum()),
        "pointwise": int(outcomes.size),
    }
    out["total"] = sum(out.values())
    return out


def epoch_dataset(
    outcomes_path: str | Path,
    train_ids: list[str],
    models: list[str],
    group_size: int,
    seed: int,
    epoch: int,
    featurizer_kwargs: dict[str, Any],
    featurizer_concurrency: int = 1,
    featurize_batch_rows: int = 256,
) -> ray.data.Dataset:
    """The lazy Ray Data pipeline of one epoch (see module docstring).

    Args:
        outcomes_path: the zoo's `outcomes.parquet` (local path or any pyarrow filesystem URI).
        train_ids: ids of the router-training questions (aptitude, validation and held-out ids excluded).
        models: the training models; `models` indices in rows refer to this order.
        group_size: k, instructions (or models) per group.
        seed, epoch: seed the negatives and the shuffle.
        featurizer_kwargs: constructor arguments of `InstructionFeaturizer`.
        featurizer_concurrency: featurizer actors.
        featurize_batch_rows: rows per featurizer call.
    Returns:
        A `ray.data.Dataset` of training examples with features.
    """
    index = {m: j for j, m in enumerate(models)}
    pairs = ray.data.read_parquet(str(outcomes_path), columns=["question_id", "model", "score"]).map_batches(
        _keep_training_pairs,
        batch_format="pandas",
        fn_kwargs={"train_ids": frozenset(train_ids), "model_index": index},
    )
    kw = {"k": group_size, "seed": seed, "epoch": epoch}
    inst = pairs.groupby("model_idx").map_groups(_instruction_groups, batch_format="pandas", fn_kwargs=kw)
    mgroups = (
        pairs.map_batches(_with_bucket, batch_format="pandas")
        .groupby("bucket")
        .map_groups(_model_groups, batch_format="pandas", fn_kwargs=kw)
    )
    point = pairs.map_batches(_pointwise, batch_format="pandas")
    # Streaming order: blocks in a seeded random order; workers mix rows with a local shuffle buffer
    # (`iter_batches(local_shuffle_buffer_size=...)`) instead of a global all-to-all shuffle.
    return (
        inst.union(mgroups, point)
        .randomize_block_order(seed=seed * 1_000 + epoch)
        .map_batches(
            InstructionFeaturizer,
            fn_constructor_kwargs=featurizer_kwargs,
            batch_size=featurize_batch_rows,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=featurizer_concurrency),
            num_cpus=1,
        )
    )


# --------------------------------------------------------------------------------------------- featurization
class InstructionFeaturizer:
    """`map_batches` callable (one per actor): adds the features of each example's instructions.

    Args:
        prompts: {question_id: instruction text} of the router-training questions (or an ObjectRef to it).
        mode: "embedding" (ψ encodings through the on-disk cache) or "tokens" (backbone token ids).
        encoder: ψ, local path or offline hub id (embedding mode).
        router_config: the router's `RouterConfig` as a dict (tokens mode: backbone and truncation).
        max_tokens: truncation length in tokens.
    """

    def __init__(
        self,
        prompts: dict[str, str] | ray.ObjectRef,
        mode: FeatureMode,
        encoder: str,
        router_config: dict[str, Any],
        max_tokens: int,
    ) -> None:
        self.prompts = ray.get(prompts) if isinstance(prompts, ray.ObjectRef) else prompts
        self.mode = mode
        torch.set_num_threads(1)
        if mode == "embedding":
            self.encoder = SentenceEncoder(encoder, max_tokens)
            self.cache = EmbeddingCache(cache_dir(), encoder_key(self.encoder.model, max_tokens))
        else:
            from transformers import AutoTokenizer

            from modelsat.encoding import resolve_pretrained

            self.config = RouterConfig.from_dict(router_config)
            self.tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(self.config.backbone_name))

    def featurize(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Features of texts: {"features": [n, d]} or {"input_ids", "attention_mask": [n, s]}."""
        if self.mode == "embedding":
            return {"features": encode_with_cache(texts, self.encoder, self.cache, batch_size=32)}
        t = tokenize_instructions(self.tokenizer, texts, self.config)
        return {k: v.numpy() for k, v in t.items()}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        qids = [np.asarray(q) for q in batch["question_ids"]]
        sizes = np.array([len(q) for q in qids])
        feats = self.featurize([self.prompts[str(q)] for q in np.concatenate(qids)])
        bounds = np.cumsum(sizes)[:-1]
        out = {k: v for k, v in batch.items() if k != "question_ids"}
        out["n_questions"] = sizes.astype(np.int64)
        out["models"] = _ragged([np.asarray(m, dtype=np.int64) for m in batch["models"]])
        for name, arr in feats.items():
            out[name] = _ragged(np.split(arr, bounds))
        return out


def _ragged(parts: list[np.ndarray]) -> np.ndarray:
    arr = np.empty(len(parts), dtype=object)
    arr[:] = parts
    return arr


# --------------------------------------------------------------------------------------------- worker side
@dataclass
class Features:
    """Instruction features of one worker batch: `pooled` [u, d], or `input_ids`/`attention_mask` [u, s]."""

    pooled: np.ndarray | None = None
    input_ids: np.ndarray | None = None
    attention_mask: np.ndarray | None = None

    def encode(self, model: RouterModel, device: torch.device) -> InstructionEncoding:
        """`InstructionEncoding` for `model` (a backbone pass in tokens mode; gradient flows if trainable)."""
        if self.pooled is not None:
            return InstructionEncoding(pooled=torch.as_tensor(self.pooled, device=device))
        assert self.input_ids is not None and self.attention_mask is not None
        ids = torch.as_tensor(self.input_ids, device=device)
        mask = torch.as_tensor(self.attention_mask, device=device)
        if model.backbone_frozen:
            with torch.no_grad():
                return model.encode_instructions(ids, mask)
        return model.encode_instructions(ids, mask)


def _pad(parts: list[np.ndarray], left: bool, value: int) -> np.ndarray:
    width = max(p.shape[1] for p in parts)
    out = []
    for p in parts:
        fill = np.full((p.shape[0], width - p.shape[1]), value, dtype=p.dtype)
        out.append(np.concatenate([fill, p] if left else [p, fill], 1))
    return np.concatenate(out)


def collate(
    batch: dict[str, np.ndarray], pad_token_id: int = 0, left_pad: bool = False
) -> tuple[Features, TrainingBatch]:
    """A worker batch of examples → (instruction features, `TrainingBatch` over local instruction indices).

    Args:
        batch: rows of `epoch_dataset` in numpy format.
        pad_token_id: padding id of the backbone tokenizer (tokens mode).
        left_pad: left-pad token rows (causal_lm backbone).
    Returns:
        (`Features` of the u instructions in row order, `TrainingBatch` whose indices point into them).
    """
    kinds = np.asarray(batch["kind"])
    models = [np.asarray(m, dtype=np.int64) for m in batch["models"]]
    sizes = np.asarray(batch["n_questions"], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    inst = np.flatnonzero(kinds == KIND_INSTRUCTION)
    mgrp = np.flatnonzero(kinds == KIND_MODEL)
    point = np.flatnonzero(kinds == KIND_POINTWISE)
    k = int(sizes[inst[0]]) if len(inst) else (len(models[mgrp[0]]) if len(mgrp) else 2)
    tb = TrainingBatch(
        questions=np.arange(int(sizes.sum())),
        inst_q=(start[inst][:, None] + np.arange(k)[None, :]).reshape(len(inst), k),
        inst_m=np.array([models[i][0] for i in inst], dtype=np.int64),
        model_q=start[mgrp],
        model_m=np.stack([models[i] for i in mgrp]).astype(np.int64)
        if len(mgrp)
        else np.zeros((0, k), np.int64),
        point_q=start[point],
        point_m=np.array([models[i][0] for i in point], dtype=np.int64),
        point_y=np.asarray(batch["target"], dtype=np.float32)[point],
    )
    if "features" in batch:
        feats = Features(pooled=np.concatenate(list(batch["features"])).astype(np.float32))
    else:
        feats = Features(
            input_ids=_pad(list(batch["input_ids"]), left_pad, pad_token_id),
            attention_mask=_pad(list(batch["attention_mask"]), left_pad, 0),
        )
    return feats, tb
