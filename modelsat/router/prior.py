"""The profile prior: each candidate's accuracy on the aptitude tasks nearest the instruction, added to the score.

The router's score is learned from the training models' outcomes; a candidate it never saw is known only through
its capability profile. The profile prior reads that profile directly: with ψ(x) the instruction's sentence
embedding and c_t the centroid of ψ over task t's aptitude items,

    w_t(x) = softmax_t(cos(ψ(x), c_t) / τ),    prior_m(x) = Σ_t w_t(x) · a_mt,
    score'(x, m) = score(x, m) + β · logit(prior_m(x)),

a nonparametric ability estimate on the tasks near the instruction (aptitude items near the instruction weigh
more: IRT-Router, arXiv 2506.01048; the k-nearest-task estimate of LOCUS, arXiv 2601.21082), on the same
aptitude items for every candidate, so a newcomer is on the scale of the training models by construction.
β (`RouterConfig.prior_weight`) and τ (`prior_temperature`) are chosen on the validation split after training
(`fit_prior`); β = 0 (checkpoints from before) leaves the score unchanged. The prior needs ψ(x), so it applies
when the instruction encoding is ψ's (a frozen encoder backbone with ψ's weights, `shares_psi`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PRIOR_TEMPERATURES", "PRIOR_WEIGHTS", "fit_prior", "profile_prior", "with_prior"]

PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
"""β values `fit_prior` tries (0 = no prior)."""
PRIOR_TEMPERATURES: tuple[float, ...] = (0.02, 0.05, 0.1)
"""τ values `fit_prior` tries (cosine-similarity units)."""
_EPS = 1e-3


def profile_prior(
    pooled: torch.Tensor, task_centroids: torch.Tensor, accuracies: torch.Tensor, temperature: float
) -> torch.Tensor:
    """[b, m] prior accuracies in [ε, 1−ε] (ε = 1e-3) of m candidates on b instructions.

    Args:
        pooled: [b, d] instruction embeddings ψ(x).
        task_centroids: [T', d] centroids of ψ over each task's aptitude items.
        accuracies: [m, T'] the candidates' profile accuracies in [0, 1].
        temperature: τ > 0 of the softmax over tasks.
    """
    sim = F.normalize(pooled.float(), dim=-1) @ F.normalize(task_centroids.float(), dim=-1).T
    w = torch.softmax(sim / temperature, dim=-1)
    return (w @ accuracies.float().T).clamp(_EPS, 1 - _EPS)


def with_prior(scores: torch.Tensor, prior: torch.Tensor, weight: float) -> torch.Tensor:
    """score + β·logit(prior), in the scores' dtype ([b, m] each)."""
    return scores + (weight * torch.logit(prior)).to(scores.dtype)


def fit_prior(
    scores: np.ndarray,
    prior_at: Callable[[float], np.ndarray],
    outcomes: np.ndarray,
    weights: Sequence[float] = PRIOR_WEIGHTS,
    temperatures: Sequence[float] = PRIOR_TEMPERATURES,
) -> tuple[float, float, float]:
    """β and τ that maximise routing accuracy on the validation split (the smallest β among ties).

    Args:
        scores: [n, m] router scores (without prior) of the validation instructions × training models.
        prior_at: τ → [n, m] `profile_prior` of the same pairs.
        outcomes: [n, m] their outcomes in [0, 1].
    Returns:
        (β, τ, routing accuracy in [0, 1] with them).
    """
    rows = np.arange(len(outcomes))
    best = (float(outcomes[rows, scores.argmax(1)].mean()), 0.0, float(temperatures[0]))
    for tau in temperatures:
        logit = np.log(prior_at(tau)) - np.log1p(-prior_at(tau))
        for w in weights:
            if w == 0:
                continue
            acc = float(outcomes[rows, (scores + w * logit).argmax(1)].mean())
            if acc > best[0] + 1e-12:
                best = (acc, float(w), float(tau))
    return best[1], best[2], best[0]
