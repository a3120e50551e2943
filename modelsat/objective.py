"""The training objective of capability instruction tuning (paper §3, Eq. 5): pair sampling and loss terms.

Objective. The paper trains on groups of one instruction a model answered correctly and k−1 it answered
wrongly, with cross-entropy over the group's k scores (**instruction groups**). That contrasts instructions for a
fixed model; routing compares models for a fixed instruction (PAPER.md, "Training"). Measured on a validation
split, the paper objective alone leaves scores incomparable across models (routing accuracy far below the best
single model; `benchmarks/bench_routing_quality.py --ablation`). We add two terms:

- **model groups**: one instruction, one model that answered it correctly and k−1 that did not, cross-entropy
  over the k scores (the routing decision itself);
- **pointwise**: binary cross-entropy of every sampled pair against its outcome (soft scores allowed), which
  makes scores calibrated enough for cost-aware routing.

Profile augmentation. The paper shuffles the subset and order of profile tasks. Our capability attention is
order-free, so we drop a random share of tasks per model and step (`task_dropout`) and resample each task's
accuracy as Binomial(K, a)/K (`profile_noise`): a profile is measured on only K items per task, so the router
should not rely on differences smaller than that measurement noise. Both help unseen models.

This module holds what one optimizer step minimises: `TrainingBatch` (the sampled groups), `GroupSampler`
(draws them from an outcome matrix), `augment_profiles`, the loss terms (`LOSS_TERMS`) and `compute_loss` (their weighted sum). A new
loss term is one function here plus one line in `LOSS_TERMS`, its weight a field of `modelsat.training.TrainConfig`. Both training paths call
`compute_loss` unchanged: the single-process loop (`modelsat.training.train_router`) and the Ray Train +
DeepSpeed recipe (`jobs/train_router.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from modelsat.groups import EpochPlan, epoch_plan, instruction_group, instruction_groups, model_group
from modelsat.router.encodings import InstructionEncoding
from modelsat.router.modeling import RouterModel

if TYPE_CHECKING:  # the run settings import this module's loss; only the annotation needs them
    from modelsat.training import TrainConfig

__all__ = [
    "LOSS_TERMS",
    "EpochPlan",
    "GroupSampler",
    "PairScorer",
    "TrainingBatch",
    "augment_profiles",
    "compute_loss",
    "epoch_plan",
    "instruction_ce",
    "instruction_group",
    "instruction_groups",
    "model_ce",
    "model_group",
    "pointwise_bce",
]


@dataclass
class TrainingBatch:
    """One optimizer step's groups, as indices into a set of instructions and the training models.

    Attributes:
        questions: [u] row indices (into the caller's instruction table) of the distinct instructions used.
        inst_q: [G, k] local instruction index per instruction-group member (column 0 = the positive).
        inst_m: [G] model of each instruction group.
        model_q: [G] local instruction index of each model group.
        model_m: [G, k] models of each model group (column 0 = the positive).
        point_q, point_m: [P] pointwise pairs; point_y: [P] their outcomes in [0, 1].
    """

    questions: np.ndarray
    inst_q: np.ndarray
    inst_m: np.ndarray
    model_q: np.ndarray
    model_m: np.ndarray
    point_q: np.ndarray
    point_m: np.ndarray
    point_y: np.ndarray

    @classmethod
    def from_groups(
        cls,
        inst_rows: np.ndarray,
        inst_m: np.ndarray,
        model_rows: np.ndarray,
        model_m: np.ndarray,
        point_rows: np.ndarray,
        point_m: np.ndarray,
        point_y: np.ndarray,
    ) -> TrainingBatch:
        """A batch from groups given by instruction *rows* (any row ids): rows become local indices.

        Args:
            inst_rows: [G, k] instruction rows of the instruction groups; inst_m: [G] their model.
            model_rows: [G'] instruction row of each model group; model_m: [G', k] its models.
            point_rows, point_m, point_y: [P] pointwise pairs and outcomes.
        """
        questions, inverse = np.unique(
            np.concatenate([inst_rows.ravel(), model_rows.ravel(), point_rows.ravel()]), return_inverse=True
        )
        n1, n2 = inst_rows.size, model_rows.size
        return cls(
            questions=questions,
            inst_q=inverse[:n1].reshape(inst_rows.shape),
            inst_m=np.asarray(inst_m),
            model_q=inverse[n1 : n1 + n2],
            model_m=np.asarray(model_m),
            point_q=inverse[n1 + n2 :],
            point_m=np.asarray(point_m),
            point_y=np.asarray(point_y, dtype=np.float32),
        )


class GroupSampler:
    """Samples instruction groups (paper Eq. 5), model groups and pointwise pairs from an outcome matrix, a
    step at a time, with the builders and proportions of `modelsat.groups` (the Ray Data path's epochs hold the
    same distribution).

    Args:
        outcomes: [n, m] scores in [0, 1] of the training instructions × training models (>= 0.5 = correct).
        group_size: k.
        groups_per_step: G groups of each kind per batch.
        seed: sampling seed.
    """

    def __init__(self, outcomes: np.ndarray, group_size: int, groups_per_step: int, seed: int) -> None:
        self.y = outcomes.astype(np.float32)
        correct = outcomes >= 0.5
        self.k, self.g = group_size, groups_per_step
        self.rng = np.random.default_rng(seed)
        self.pos = [np.flatnonzero(correct[:, j]) for j in range(outcomes.shape[1])]
        self.neg = [np.flatnonzero(~correct[:, j]) for j in range(outcomes.shape[1])]
        self.models_ok = np.array(
            [j for j in range(outcomes.shape[1]) if len(self.pos[j]) and len(self.neg[j])]
        )
        mixed = correct.any(1) & (~correct).any(1)
        self.questions_ok = np.flatnonzero(mixed)
        self.correct = correct
        if len(self.models_ok) == 0 or len(self.questions_ok) == 0:
            raise ValueError("no training model has both correct and wrong answers; nothing to contrast")

    def sample(self) -> TrainingBatch:
        rng, k, g = self.rng, self.k, self.g
        inst_m = rng.choice(self.models_ok, g)
        inst_rows = np.empty((g, k), dtype=np.int64)
        for i, j in enumerate(inst_m):
            inst_rows[i] = instruction_group(self.pos[j], self.neg[j], k, rng)
        model_rows = rng.choice(self.questions_ok, g)
        model_m = np.stack([model_group(self.correct[q], k, rng) for q in model_rows])
        point_rows = rng.integers(self.y.shape[0], size=4 * g)
        point_m = rng.integers(self.y.shape[1], size=4 * g)
        return TrainingBatch.from_groups(
            inst_rows, inst_m, model_rows, model_m, point_rows, point_m, self.y[point_rows, point_m]
        )


def augment_profiles(
    accuracies: torch.Tensor, items_per_task: torch.Tensor, noise: bool, generator: torch.Generator
) -> torch.Tensor:
    """[m, T'] accuracies resampled as Binomial(K_j, a)/K_j (measurement noise of a K-item task)."""
    if not noise:
        return accuracies
    k = items_per_task.to(accuracies.dtype).expand_as(accuracies)
    return torch.binomial(k, accuracies.clamp(0, 1), generator=generator) / k


PairScorer = Callable[[np.ndarray, np.ndarray], torch.Tensor]
"""Router scores (logits) of (question row, model column) pairs given as equal-shaped index arrays, flattened."""


def instruction_ce(pairs: PairScorer, batch: TrainingBatch) -> torch.Tensor | None:
    """Paper Eq. 5, instruction groups: for one model, cross-entropy over the scores of k instructions, one it
    answered correctly (column 0) and k−1 it did not."""
    g, k = batch.inst_q.shape
    if g == 0:
        return None
    s = pairs(batch.inst_q, np.repeat(batch.inst_m[:, None], k, 1)).view(g, k)
    return F.cross_entropy(s.float(), torch.zeros(g, dtype=torch.long, device=s.device))


def model_ce(pairs: PairScorer, batch: TrainingBatch) -> torch.Tensor | None:
    """Model groups: for one instruction, cross-entropy over the scores of k models, one that answered it
    correctly (column 0) and k−1 that did not."""
    g2 = len(batch.model_q)
    if g2 == 0:
        return None
    s = pairs(np.repeat(batch.model_q[:, None], batch.model_m.shape[1], 1), batch.model_m).view(g2, -1)
    return F.cross_entropy(s.float(), torch.zeros(g2, dtype=torch.long, device=s.device))


def pointwise_bce(pairs: PairScorer, batch: TrainingBatch) -> torch.Tensor | None:
    """Pointwise binary cross-entropy of each sampled pair's score against its outcome in [0, 1]."""
    if len(batch.point_q) == 0:
        return None
    s = pairs(batch.point_q, batch.point_m)
    return F.binary_cross_entropy_with_logits(
        s.float(), torch.as_tensor(batch.point_y, dtype=torch.float32, device=s.device)
    )


LOSS_TERMS: dict[str, tuple[Callable[[PairScorer, TrainingBatch], torch.Tensor | None], str]] = {
    "instruction_ce": (instruction_ce, "instruction_group_weight"),
    "model_ce": (model_ce, "model_group_weight"),
    "pointwise_bce": (pointwise_bce, "pointwise_weight"),
}
"""Loss term name → (term, the `TrainConfig` field holding its weight); a term is skipped at weight 0 or
when the batch has nothing for it. A new term is one function here and one line in this dict."""


def compute_loss(
    model: RouterModel,
    instructions: InstructionEncoding,
    batch: TrainingBatch,
    accuracies: torch.Tensor,
    items_per_task: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss of one batch (paper Eq. 5 plus our model-group and pointwise terms).

    Args:
        model: the router (train mode set by the caller).
        instructions: encodings of `batch.questions`, in that order.
        batch: the sampled groups; a kind may be empty and the kinds' counts may differ (distributed batches).
        accuracies: [m, T'] capability profiles of the training models (before augmentation).
        items_per_task: [T'] K_j, items per aptitude task (for `profile_noise`).
        config: loss weights and augmentation settings.
        generator: torch RNG for augmentation.
    Returns:
        (scalar loss, {"loss", "instruction_ce", "model_ce", "pointwise_bce"} as floats).
    """
    acc = augment_profiles(accuracies, items_per_task, config.profile_noise, generator)
    caps = model.encode_profiles(acc)
    mask = None
    if config.task_dropout > 0:
        mask = torch.rand(acc.shape, generator=generator) >= config.task_dropout
        mask[:, 0] |= ~mask.any(1)  # keep at least one task
    dev = caps.tokens.device

    def pairs(q: np.ndarray, m: np.ndarray) -> torch.Tensor:
        qi = torch.as_tensor(q.ravel(), device=dev)
        mi = torch.as_tensor(m.ravel(), device=dev)
        return model.score_pairs(instructions, caps, qi, mi, mask.to(dev) if mask is not None else None)

    parts: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    for name, (term, weight_field) in LOSS_TERMS.items():
        weight = float(getattr(config, weight_field))
        if weight > 0 and (value := term(pairs, batch)) is not None:
            parts[name], weights[name] = value, weight
    if not parts:
        raise ValueError("the batch has no group or pair with a positive loss weight")
    loss = sum(weights[n] * v for n, v in parts.items())
    assert isinstance(loss, torch.Tensor)
    return loss, {"loss": float(loss.detach()), **{n: float(v.detach()) for n, v in parts.items()}}
