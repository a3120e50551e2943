"""The profile prior: each candidate's accuracy on the aptitude tasks nearest the instruction, added to the score.

The router's score is learned from the training models' outcomes; a candidate it never saw is known only through
its capability profile. The profile prior reads per-task accuracies directly: with ψ(x) the instruction's
sentence embedding and c_t the centroid of ψ over task t's aptitude items,

    w_t(x) = softmax_t(cos(ψ(x), c_t) / τ),    prior_m(x) = Σ_t w_t(x) · A_mt,
    score'(x, m) = score(x, m) + β · logit(prior_m(x)),

a nonparametric ability estimate on the tasks near the instruction (IRT-Router, arXiv 2506.01048; the
k-nearest-task estimate of LOCUS, arXiv 2601.21082). A_mt (`TaskAccuracies`, saved in `training.json`) is a
training model's accuracy on task t's training-pool questions (hundreds per task, not the profile's 20 items),
and for any other candidate its profile accuracy a_mt put on that scale by the task's least-squares line across
the training models (linear linking: the aptitude items are chosen near 50 % correctness, so raw profile
accuracies are not on the pool's scale). Checkpoints without the table read the profiles themselves.
β (`RouterConfig.prior_weight`) and τ (`prior_temperature`) are chosen on the validation split after training
(`fit_prior`); β = 0 (checkpoints from before) leaves the score unchanged. The prior needs ψ(x), so it applies
when the instruction encoding is ψ's (a frozen encoder backbone with ψ's weights, `shares_psi`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PRIOR_TEMPERATURES",
    "PRIOR_WEIGHTS",
    "TaskAccuracies",
    "fit_prior",
    "profile_prior",
    "with_prior",
]

PRIOR_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0)
"""β values `fit_prior` tries (0 = no prior)."""
PRIOR_TEMPERATURES: tuple[float, ...] = (0.02, 0.05, 0.1)
"""τ values `fit_prior` tries (cosine-similarity units)."""
_EPS = 1e-3


class TaskAccuracies:
    """What the prior reads per task: the training models' accuracies on each task's training-pool questions,
    and per task the least-squares line from profile accuracy to pool accuracy across those models, which puts
    any other candidate's profile on the same scale (linear item-response linking; `modelsat.methods.linked_means`
    does the same for the category prior).

    Args:
        models: {training model: [T'] pool accuracies in [0, 1]}.
        intercept, slope: [T'] per-task line pool ≈ intercept + slope · profile accuracy.
    """

    def __init__(self, models: dict[str, list[float]], intercept: list[float], slope: list[float]) -> None:
        self.models = {m: np.asarray(v, dtype=np.float64) for m, v in models.items()}
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.slope = np.asarray(slope, dtype=np.float64)

    @classmethod
    def fit(cls, pool: np.ndarray, profiles: np.ndarray, models: Sequence[str]) -> TaskAccuracies:
        """From [m, T'] pool accuracies and [m, T'] profile accuracies of the training models `models`."""
        intercept, slope = np.empty(pool.shape[1]), np.empty(pool.shape[1])
        for t in range(pool.shape[1]):
            x, y = profiles[:, t], pool[:, t]
            if len(x) >= 2 and np.ptp(x) > 0:
                slope[t], intercept[t] = np.polyfit(x, y, 1)
            else:
                slope[t], intercept[t] = 0.0, float(y.mean())
        return cls({m: pool[i].tolist() for i, m in enumerate(models)}, intercept.tolist(), slope.tolist())

    def for_candidates(self, names: Sequence[str], profiles: np.ndarray) -> np.ndarray:
        """[m, T'] per-task accuracies of candidates: a training model's pool accuracies, else its linked
        profile (clipped to [0, 1])."""
        linked = np.clip(self.intercept[None, :] + self.slope[None, :] * profiles, 0.0, 1.0)
        return np.stack([self.models.get(n, linked[i]) for i, n in enumerate(names)]).astype(np.float32)

    def to_dict(self) -> dict[str, object]:
        return {
            "models": {m: v.tolist() for m, v in self.models.items()},
            "intercept": self.intercept.tolist(),
            "slope": self.slope.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TaskAccuracies:
        return cls(d["models"], d["intercept"], d["slope"])  # type: ignore[arg-type]


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
        p = prior_at(tau)
        logit = np.log(p) - np.log1p(-p)
        for w in weights:
            if w == 0:
                continue
            acc = float(outcomes[rows, (scores + w * logit).argmax(1)].mean())
            if acc > best[0] + 1e-12:
                best = (acc, float(w), float(tau))
    return best[1], best[2], best[0]
