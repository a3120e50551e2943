"""Ray Data input pipeline of distributed capability instruction tuning (paper §3, Eq. 5).

One dataset per epoch, built lazily from the zoo's `outcomes.parquet`:

    read_parquet(outcomes) → keep router-training questions × training models
      ├─ groupby(model_idx).map_groups     → instruction groups (paper Eq. 5: 1 right, k−1 wrong, one model)
      ├─ groupby(question bucket).map_groups → model groups (one instruction: 1 model right, k−1 wrong)
      └─ map_batches                       → pointwise pairs (instruction, model, outcome)
    (the row functions are in `jobs.groups`, which imports neither torch nor transformers)
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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import ray
import torch
from ray.data.context import DataContext

from jobs.groups import (
    KIND_INSTRUCTION,
    KIND_MODEL,
    KIND_POINTWISE,
    N_BUCKETS,
    instruction_groups_of_model,
    keep_training_pairs,
    model_groups_of_bucket,
    pointwise_pairs,
    rows_per_epoch,
    with_bucket,
)
from modelsat.encoding import EmbeddingCache, encode_with_cache, encoder_key
from modelsat.groups import epoch_plan
from modelsat.objective import TrainingBatch
from modelsat.paths import cache_dir
from modelsat.router.build import SentenceEncoder, tokenize_instructions
from modelsat.router.configuration import RouterConfig
from modelsat.router.encodings import InstructionEncoding
from modelsat.router.modeling import RouterModel

__all__ = [
    "KIND_INSTRUCTION",
    "KIND_MODEL",
    "KIND_POINTWISE",
    "FeatureMode",
    "InstructionFeaturizer",
    "collate",
    "epoch_dataset",
    "rows_per_epoch",
    "shuffle_partitions",
]

FeatureMode = Literal["embedding", "tokens"]


def shuffle_partitions(n_keys: int) -> int:
    """Hash-shuffle partitions of a `groupby` over `n_keys` distinct keys: at most one per key, at most one per
    CPU of the connected Ray cluster.

    Ray Data's default (`DataContext.default_hash_shuffle_parallelism`, 200) leaves most partitions empty here
    (the keys are the training models, or `N_BUCKETS` question buckets), each with its own tasks.

    Raises:
        ValueError: `n_keys` < 1.
    """
    if n_keys < 1:
        raise ValueError(f"n_keys={n_keys}: a groupby needs at least one key")
    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return max(1, min(n_keys, cpus))


@contextmanager
def _light_data_context() -> Iterator[None]:
    """Datasets created inside read `outcomes.parquet` with Ray Data's V1 parquet datasource (a dataset copies
    the current `DataContext` when it is created; the process's context is restored on exit).

    The V2 reader (the default) indexes files with a pool of 32 `FooterReader` actors, one process each, per
    read; the input here is a single file, read three times (one per kind of example). Beside Ray Train
    workers holding most CPUs, starting those processes delayed the first batch by about a minute on a
    4-CPU, 2-node local cluster.
    """
    ctx = DataContext.get_current()
    saved = ctx.use_datasource_v2
    ctx.use_datasource_v2 = False
    try:
        yield
    finally:
        ctx.use_datasource_v2 = saved


def epoch_dataset(
    outcomes_path: str | Path,
    outcomes: np.ndarray,
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
        outcomes: [len(train_ids), len(models)] the same outcomes as a matrix (the epoch's counts,
            `modelsat.groups.epoch_plan`; the driver holds it already).
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
    kw = {"k": group_size, "seed": seed, "epoch": epoch}
    plan = epoch_plan(outcomes)
    with _light_data_context():
        pairs = ray.data.read_parquet(
            str(outcomes_path), columns=["question_id", "model", "score"]
        ).map_batches(
            keep_training_pairs,
            batch_format="pandas",
            fn_kwargs={"train_ids": frozenset(train_ids), "model_index": index},
        )
        inst = pairs.groupby("model_idx", num_partitions=shuffle_partitions(len(models))).map_groups(
            instruction_groups_of_model,
            batch_format="pandas",
            fn_kwargs={**kw, "per_model": plan.instruction_groups_per_model},
        )
        mgroups = (
            pairs.map_batches(with_bucket, batch_format="pandas")
            .groupby("bucket", num_partitions=shuffle_partitions(N_BUCKETS))
            .map_groups(model_groups_of_bucket, batch_format="pandas", fn_kwargs=kw)
        )
    point = pairs.map_batches(
        pointwise_pairs,
        batch_format="pandas",
        fn_kwargs={"fraction": plan.pointwise_fraction, "seed": seed, "epoch": epoch},
    )
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
        static_encoder: ψ of a static backbone, the run's (distilled and fitted) table itself as a
            `SentenceEncoder` or an ObjectRef to one (a worker neither distils nor fits); None: `encoder`.
    """

    def __init__(
        self,
        prompts: dict[str, str] | ray.ObjectRef,
        mode: FeatureMode,
        encoder: str,
        router_config: dict[str, Any],
        max_tokens: int,
        static_encoder: SentenceEncoder | ray.ObjectRef | None = None,
    ) -> None:
        self.prompts = ray.get(prompts) if isinstance(prompts, ray.ObjectRef) else prompts
        self.mode = mode
        torch.set_num_threads(1)
        if mode == "embedding":
            if isinstance(static_encoder, ray.ObjectRef):
                static_encoder = ray.get(static_encoder)
            self.encoder = static_encoder or SentenceEncoder(encoder, max_tokens)
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
