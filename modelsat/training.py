"""Capability instruction tuning (paper §3, Eq. 5) and the single-process training loop.

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

The loss lives in `compute_loss`, which the Ray Train + DeepSpeed recipe (`jobs/train_router.py`) calls
unchanged; `train_router` is the single-process loop around it.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from modelsat.config import BaseConfig
from modelsat.groups import instruction_groups, model_group
from modelsat.router.modeling import InstructionEncoding, RouterModel

__all__ = [
    "GroupSampler",
    "instruction_groups",
    "model_group",
    "one_cycle_schedule",
    "optimizer_groups",
    "TrainConfig",
    "TrainingBatch",
    "TrainResult",
    "compute_loss",
    "fit_calibration",
    "train_router",
    "validation_metrics",
    "validation_scores",
]


class TrainConfig(BaseConfig):
    """Training run settings (single process; the Ray Train recipe reuses them)."""

    max_steps: int = Field(3000, ge=1, description="Optimizer steps at most")
    max_time_s: float | None = Field(
        None, gt=0, description="Wall-clock budget for the loop in seconds (stops early when spent)"
    )
    learning_rate: float = Field(
        2e-3, gt=0, le=1.0, description="Peak learning rate of the router head and connector"
    )
    backbone_learning_rate: float = Field(
        2e-5, gt=0, le=1.0, description="Learning rate of trainable backbone layers"
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_fraction: float = Field(
        0.1, ge=0, lt=1, description="Share of steps with linear warm-up (one-cycle schedule)"
    )
    group_size: int = Field(
        4, ge=2, le=64, description="k: instructions per group (paper Eq. 5; released run: 4)"
    )
    groups_per_step: int = Field(64, ge=1, description="Groups of each kind per optimizer step")
    instruction_group_weight: float = Field(
        0.5, ge=0, description="Weight of the paper's instruction-group loss"
    )
    model_group_weight: float = Field(1.0, ge=0, description="Weight of the model-group loss (our addition)")
    pointwise_weight: float = Field(0.5, ge=0, description="Weight of the pointwise BCE loss (our addition)")
    task_dropout: float = Field(
        0.2, ge=0, lt=1, description="Share of profile tasks dropped per model and step"
    )
    profile_noise: bool = Field(
        True, description="Resample task accuracies as Binomial(K, a)/K during training"
    )
    eval_every: int = Field(250, ge=1, description="Steps between validation passes")
    seed: int = Field(0, description="Seed of group sampling, dropout and initialisation")


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
    """Samples instruction groups (paper Eq. 5), model groups and pointwise pairs from an outcome matrix.

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
            inst_rows[i, 0] = self.pos[j][rng.integers(len(self.pos[j]))]
            inst_rows[i, 1:] = self.neg[j][rng.integers(len(self.neg[j]), size=k - 1)]
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
    g, k = batch.inst_q.shape
    dev = caps.tokens.device

    def pairs(q: np.ndarray, m: np.ndarray) -> torch.Tensor:
        qi = torch.as_tensor(q.ravel(), device=dev)
        mi = torch.as_tensor(m.ravel(), device=dev)
        return model.score_pairs(instructions, caps, qi, mi, mask.to(dev) if mask is not None else None)

    parts: dict[str, torch.Tensor] = {}
    if config.instruction_group_weight > 0 and g > 0:
        s = pairs(batch.inst_q, np.repeat(batch.inst_m[:, None], k, 1)).view(g, k)
        parts["instruction_ce"] = F.cross_entropy(s.float(), torch.zeros(g, dtype=torch.long, device=dev))
    g2 = len(batch.model_q)
    if config.model_group_weight > 0 and g2 > 0:
        s = pairs(np.repeat(batch.model_q[:, None], batch.model_m.shape[1], 1), batch.model_m).view(g2, -1)
        parts["model_ce"] = F.cross_entropy(s.float(), torch.zeros(g2, dtype=torch.long, device=dev))
    if config.pointwise_weight > 0 and len(batch.point_q) > 0:
        s = pairs(batch.point_q, batch.point_m)
        parts["pointwise_bce"] = F.binary_cross_entropy_with_logits(
            s.float(), torch.as_tensor(batch.point_y, dtype=torch.float32, device=dev)
        )
    weights = {
        "instruction_ce": config.instruction_group_weight,
        "model_ce": config.model_group_weight,
        "pointwise_bce": config.pointwise_weight,
    }
    if not parts:
        raise ValueError("the batch has no group or pair with a positive loss weight")
    loss = sum(weights[n] * v for n, v in parts.items())
    assert isinstance(loss, torch.Tensor)
    return loss, {"loss": float(loss.detach()), **{n: float(v.detach()) for n, v in parts.items()}}


@torch.no_grad()
def validation_scores(
    model: RouterModel, encodings: Iterable[InstructionEncoding], accuracies: torch.Tensor
) -> np.ndarray:
    """[n, m] router scores of the validation instructions against the training models' profiles.

    Both training paths call it (single process: `TrainingPlan.validation_scores`; Ray Train: the recipe's
    rank 0), so they select checkpoints on the same numbers.

    Args:
        model: the router (its mode is the caller's: `eval()` for validation).
        encodings: the validation instructions' encodings in pieces (e.g. `InstructionEncoding.chunks(256)`).
        accuracies: [m, T'] capability profiles of the training models, on the model's device.
    Returns:
        float32 scores (logits), rows in the order of `encodings`.
    """
    caps = model.encode_profiles(accuracies)
    return torch.cat([model.score(enc, caps) for enc in encodings]).float().cpu().numpy()


def validation_metrics(scores: np.ndarray, outcomes: np.ndarray) -> dict[str, float]:
    """Routing accuracy among the training models and pointwise BCE of router scores.

    Args:
        scores: [n, m] router scores (logits) of n validation instructions × m training models.
        outcomes: [n, m] their outcomes in [0, 1].
    Returns:
        {"routing_accuracy": mean outcome of each row's top-scored model, in [0, 1], "bce": mean BCE in nats}.
    """
    bce = F.binary_cross_entropy_with_logits(
        torch.as_tensor(scores, dtype=torch.float32), torch.as_tensor(outcomes, dtype=torch.float32)
    )
    picked = outcomes[np.arange(len(outcomes)), scores.argmax(1)]
    return {"routing_accuracy": float(picked.mean()), "bce": float(bce)}


def fit_calibration(scores: np.ndarray, outcomes: np.ndarray, steps: int = 200) -> tuple[float, float]:
    """Platt scaling: (a, b) minimising the log-loss of sigmoid(a·score + b) against outcomes.

    Args:
        scores: [n] router scores. outcomes: [n] targets in [0, 1].
    Returns:
        (scale a > 0, bias b).
    """
    s = torch.as_tensor(scores, dtype=torch.float64)
    y = torch.as_tensor(outcomes, dtype=torch.float64)
    params = torch.tensor([0.0, 0.0], dtype=torch.float64, requires_grad=True)  # log a, b
    opt = torch.optim.LBFGS([params], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(params[0].exp() * s + params[1], y)
        loss.backward()
        return loss

    opt.step(closure)
    a, b = float(params[0].detach().exp()), float(params[1].detach())
    if not (math.isfinite(a) and math.isfinite(b)):
        return 1.0, 0.0
    return a, b


@dataclass
class TrainResult:
    """What `train_router` returns: the best model state and the training history."""

    best_step: int
    best_validation: dict[str, float]
    steps_done: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def optimizer_groups(model: RouterModel, config: TrainConfig) -> list[dict]:
    """AdamW parameter groups: router head and connector at `learning_rate`, trainable backbone layers at
    `backbone_learning_rate` (frozen parameters are left out)."""
    head = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    body = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")]
    groups = [{"params": head, "lr": config.learning_rate}]
    if body:
        groups.append({"params": body, "lr": config.backbone_learning_rate})
    return groups


def one_cycle_schedule(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.OneCycleLR:
    """One-cycle learning-rate schedule over `config.max_steps` steps (linear warm-up, cosine decay).

    The warm-up share is at least 2 steps (OneCycleLR divides by the warm-up length) and at most half the run.
    Docs: https://pytorch.org/docs/stable/generated/torch.optim.lr_scheduler.OneCycleLR.html
    """
    total = max(config.max_steps, 4)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=[g["lr"] for g in optimizer.param_groups],
        total_steps=total,
        pct_start=min(max(config.warmup_fraction, 2.0 / total), 0.5),
        anneal_strategy="cos",
    )


def train_router(
    model: RouterModel,
    encode: Callable[[np.ndarray], InstructionEncoding],
    outcomes: np.ndarray,
    accuracies: np.ndarray,
    items_per_task: np.ndarray,
    validate: Callable[[RouterModel], dict[str, float]],
    config: TrainConfig,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train the router in this process; keep the state with the best validation routing accuracy.

    Args:
        model: router with its aptitude embeddings set.
        encode: maps [u] training-row indices to their `InstructionEncoding` (cached or computed).
        outcomes: [n, m] training instructions × training models.
        accuracies: [m, T'] capability profiles of the training models.
        items_per_task: [T'] items per aptitude task.
        validate: returns validation metrics for the model (must contain `routing_accuracy`), called every
            `config.eval_every` steps and at the end, in eval mode.
        config: run settings.
        on_step: progress callback (step, metrics).
    Returns:
        `TrainResult`; `model` holds the best state when this returns.
    """
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    sampler = GroupSampler(outcomes, config.group_size, config.groups_per_step, config.seed)
    acc = torch.as_tensor(accuracies, dtype=torch.float32)
    k_items = torch.as_tensor(items_per_task, dtype=torch.float32)
    groups = optimizer_groups(model, config)
    opt = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    sched = one_cycle_schedule(opt, config)
    start = time.monotonic()
    best_state, best_metrics, best_step = None, {"routing_accuracy": -1.0}, 0
    history: list[dict[str, float]] = []
    step = 0
    while step < config.max_steps:
        model.train()
        if model.backbone_frozen:
            model.backbone.eval()  # no dropout noise in encodings of a frozen backbone
        batch = sampler.sample()
        loss, metrics = compute_loss(model, encode(batch.questions), batch, acc, k_items, config, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for gr in groups for p in gr["params"]], 1.0)
        opt.step()
        sched.step()
        step += 1
        out_of_time = config.max_time_s is not None and time.monotonic() - start > config.max_time_s
        if step % config.eval_every == 0 or step == config.max_steps or out_of_time:
            model.eval()
            with torch.no_grad():
                val = validate(model)
            metrics = {**metrics, **{f"val_{k}": v for k, v in val.items()}}
            history.append({"step": step, **metrics})
            if val["routing_accuracy"] > best_metrics["routing_accuracy"]:
                best_state = copy.deepcopy(
                    {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
                    if model.backbone_frozen
                    else model.state_dict()
                )
                best_metrics, best_step = val, step
        if on_step is not None:
            on_step(step, metrics)
        if out_of_time:
            break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    return TrainResult(
        best_step=best_step,
        best_validation=best_metrics,
        steps_done=step,
        seconds=time.monotonic() - start,
        history=history,
    )
