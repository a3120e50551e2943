"""Training groups of capability instruction tuning (paper §3, Eq. 5), numpy only.

Light on purpose: Ray Data workers that build groups (`jobs.groups`) import this module without paying for
torch and transformers. `modelsat.objective` re-exports both functions.
"""

from __future__ import annotations

import numpy as np

__all__ = ["instruction_groups", "model_group"]


def instruction_groups(correct: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Paper Eq. 5 groups of one model: each instruction it answered correctly, with k−1 it answered wrongly.

    Args:
        correct: [n] bool, the model's outcomes on n instructions (True = correct).
        k: group size, >= 2.
        rng: random generator (negatives are drawn with replacement when fewer than k−1 exist).
    Returns:
        [n_correct, k] instruction indices, the positive in column 0; [0, k] if the model has no correct or no
        wrong answer (nothing to contrast).
    """
    pos, neg = np.flatnonzero(correct), np.flatnonzero(~correct)
    if len(pos) == 0 or len(neg) == 0:
        return np.zeros((0, k), dtype=np.int64)
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
