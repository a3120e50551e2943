"""Training examples of one epoch, built by Ray Data `map_batches` / `map_groups` workers (paper §3, Eq. 5).

The row functions of `jobs.data.epoch_dataset` before featurization: keep the router-training pairs, build
instruction groups per model, model groups per question bucket, and pointwise pairs, with the builders and the
epoch counts of `modelsat.groups` (`epoch_plan`: as many instruction groups as model groups, models drawn
uniformly, four pairs per model group), so an epoch holds the distribution the single-process sampler draws
from. Only numpy and pandas: the Ray Data worker processes that run them do not import torch or transformers.

Each row is one training example: `kind` (0 instruction group, 1 model group, 2 pointwise), `question_ids`
[n_q], `models` [k or 1] (indices into the training models), `target` (the pointwise outcome). Negatives are
drawn with a generator seeded by (seed, epoch, kind, group key), so an epoch is the same whichever worker builds
it.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from modelsat.groups import EpochPlan, epoch_plan, instruction_groups, model_group

__all__ = [
    "KIND_INSTRUCTION",
    "KIND_MODEL",
    "KIND_POINTWISE",
    "N_BUCKETS",
    "instruction_groups_of_model",
    "keep_training_pairs",
    "model_groups_of_bucket",
    "pointwise_pairs",
    "rows_per_epoch",
    "with_bucket",
]

KIND_INSTRUCTION, KIND_MODEL, KIND_POINTWISE = 0, 1, 2


def keep_training_pairs(
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


def instruction_groups_of_model(
    group: pd.DataFrame, k: int, seed: int, epoch: int, per_model: int
) -> pd.DataFrame:
    """`per_model` instruction groups of one model (`EpochPlan.instruction_groups_per_model`)."""
    group = group.sort_values("question_id")
    j = int(group["model_idx"].iloc[0])
    rng = np.random.default_rng([seed, epoch, KIND_INSTRUCTION, j])
    idx = instruction_groups(group["score"].to_numpy() >= 0.5, k, rng, n=per_model)
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


def with_bucket(batch: pd.DataFrame) -> pd.DataFrame:
    ids = batch["question_id"].astype(str)
    batch = batch.copy()
    batch["bucket"] = np.array([zlib.crc32(q.encode()) % N_BUCKETS for q in ids], dtype=np.int64)
    return batch


def model_groups_of_bucket(bucket: pd.DataFrame, k: int, seed: int, epoch: int) -> pd.DataFrame:
    """One model group per question of the bucket with both outcomes (`modelsat.groups.model_group`)."""
    bucket = bucket.sort_values(["question_id", "model_idx"])
    rng = np.random.default_rng([seed, epoch, KIND_MODEL, int(bucket["bucket"].iloc[0])])
    qids, groups = [], []
    for qid, rows in bucket.groupby("question_id", sort=True):
        correct = rows["score"].to_numpy() >= 0.5
        if correct.all() or not correct.any():
            continue
        groups.append(rows["model_idx"].to_numpy()[model_group(correct, k, rng)])
        qids.append([qid])
    order = rng.permutation(len(qids))
    return _examples(KIND_MODEL, [qids[i] for i in order], [groups[i] for i in order], np.ones(len(qids)))


def pointwise_pairs(batch: pd.DataFrame, fraction: float, seed: int, epoch: int) -> pd.DataFrame:
    """The pairs of the batch kept as pointwise examples: each with probability `fraction`
    (`EpochPlan.pointwise_fraction`), decided by a hash of (seed, epoch, question, model), so the choice does
    not depend on how Ray Data cuts blocks."""
    if fraction < 1.0:
        keys = zip(batch["question_id"].astype(str), batch["model_idx"], strict=True)
        u = np.array([zlib.crc32(f"{seed}:{epoch}:{q}:{m}".encode()) / 2**32 for q, m in keys])
        batch = batch.loc[u < fraction] if len(batch) else batch
    return _examples(
        KIND_POINTWISE,
        [np.array([q]) for q in batch["question_id"]],
        [np.array([m], dtype=np.int64) for m in batch["model_idx"]],
        batch["score"].to_numpy(),
    )


def rows_per_epoch(outcomes: np.ndarray) -> dict[str, int]:
    """Examples of each kind in one epoch of `epoch_dataset` (`modelsat.groups.epoch_plan`; pairs: expected).

    Args:
        outcomes: [n, m] router-training questions × training models, scores in [0, 1].
    Returns:
        {"instruction_groups", "model_groups", "pointwise", "total"}.
    Raises:
        ValueError: nothing to contrast (see `epoch_plan`).
    """
    plan: EpochPlan = epoch_plan(outcomes)
    return {
        "instruction_groups": plan.instruction_groups,
        "model_groups": plan.model_groups,
        "pointwise": plan.pointwise,
        "total": plan.total,
    }
