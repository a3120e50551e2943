"""The training examples of capability instruction tuning (paper §3, Eq. 5): one builder for both training paths.

Three kinds of example, in the proportion 1 : 1 : 4 (per step G instruction groups, G model groups, 4G pairs):

- **instruction group** (paper Eq. 5): one model, drawn uniformly among the models with both outcomes; one
  instruction it answered correctly and k−1 it answered wrongly, each drawn uniformly (`instruction_group`);
- **model group**: one instruction, drawn uniformly among those with both outcomes; one model that answered it
  correctly and k−1 that did not (`model_group`);
- **pointwise pair**: one (instruction, model) pair drawn uniformly, with its outcome as target.

The single-process path draws a step at a time (`modelsat.objective.GroupSampler`); the Ray Data path builds
an epoch per group key (`jobs.groups`: instruction groups per model, model groups per question bucket, pairs
per block) with the counts of `epoch_plan`, so both optimise the same objective. Numpy only on purpose: the
Ray Data workers that build examples import this module without paying for torch and transformers.
`modelsat.objective` re-exports the builders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["EpochPlan", "epoch_plan", "instruction_group", "instruction_groups", "model_group"]


def instruction_group(pos: np.ndarray, neg: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """One paper Eq. 5 group of one model: a positive drawn from `pos`, k−1 negatives drawn from `neg`.

    Args:
        pos, neg: instruction indices the model answered correctly / wrongly (both non-empty).
        k: group size, >= 2.
    Returns:
        [k] instruction indices, the positive first (draws with replacement).
    """
    out = np.empty(k, dtype=np.int64)
    out[0] = pos[rng.integers(len(pos))]
    out[1:] = neg[rng.integers(len(neg), size=k - 1)]
    return out


def instruction_groups(
    correct: np.ndarray, k: int, rng: np.random.Generator, n: int | None = None
) -> np.ndarray:
    """Paper Eq. 5 groups of one model.

    Args:
        correct: [n_q] bool, the model's outcomes on n_q instructions (True = correct).
        k: group size, >= 2.
        rng: random generator (negatives are drawn with replacement).
        n: groups to draw, each with `instruction_group` (positives uniform, with replacement); None = each
            correct instruction once, in random order.
    Returns:
        [groups, k] instruction indices, the positive in column 0; [0, k] if the model has no correct or no
        wrong answer (nothing to contrast).
    """
    pos, neg = np.flatnonzero(correct), np.flatnonzero(~correct)
    if len(pos) == 0 or len(neg) == 0:
        return np.zeros((0, k), dtype=np.int64)
    if n is not None:
        groups = [instruction_group(pos, neg, k, rng) for _ in range(n)]
        return np.stack(groups) if groups else np.zeros((0, k), dtype=np.int64)
    out = np.empty((len(pos), k), dtype=np.int64)
    out[:, 0] = rng.permutation(pos)
    out[:, 1:] = neg[rng.integers(len(neg), size=(len(pos), k - 1))]
    return out


def model_group(correct: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A model group of one instruction: one model that answered it correctly and k−1 that did not.

    Args:
        correct: [m] bool outcomes of the m training models on the instruction (needs both values).
    Returns:
        [k] model indices, the positive first.
    """
    good, bad = np.flatnonzero(correct), np.flatnonzero(~correct)
    return np.concatenate([good[rng.integers(len(good), size=1)], bad[rng.integers(len(bad), size=k - 1)]])


@dataclass(frozen=True)
class EpochPlan:
    """How many examples of each kind one epoch holds (the 1 : 1 : 4 proportion of a step).

    Attributes:
        model_groups: one per instruction with both outcomes.
        models: training models with both outcomes (those instruction groups are drawn for).
        instruction_groups_per_model: groups per such model (as many instruction groups as model groups, models
            drawn uniformly).
        pointwise_fraction: share of all (instruction, model) pairs kept as pointwise examples, in (0, 1].
        pointwise: expected pointwise examples (4 per model group, or every pair when there are fewer).
    """

    model_groups: int
    models: int
    instruction_groups_per_model: int
    pointwise_fraction: float
    pointwise: int

    @property
    def instruction_groups(self) -> int:
        """Instruction groups of the epoch."""
        return self.models * self.instruction_groups_per_model

    @property
    def total(self) -> int:
        """Expected examples of the epoch, all kinds."""
        return self.model_groups + self.instruction_groups + self.pointwise


def epoch_plan(outcomes: np.ndarray) -> EpochPlan:
    """The epoch of the router-training outcomes (both training paths draw this proportion).

    Args:
        outcomes: [n, m] router-training instructions × training models, scores in [0, 1] (>= 0.5 = correct).
    Returns:
        The counts.
    Raises:
        ValueError: no instruction or no model has both outcomes (nothing to contrast).
    """
    correct = outcomes >= 0.5
    mixed_q = int((correct.any(1) & (~correct).any(1)).sum())
    models_ok = int((correct.any(0) & (~correct).any(0)).sum())
    if mixed_q == 0 or models_ok == 0:
        raise ValueError("no training model has both correct and wrong answers; nothing to contrast")
    fraction = min(1.0, 4 * mixed_q / outcomes.size)
    return EpochPlan(
        model_groups=mixed_q,
        models=models_ok,
        instruction_groups_per_model=max(1, math.ceil(mixed_q / models_ok)),
        pointwise_fraction=fraction,
        pointwise=int(round(fraction * outcomes.size)),
    )
