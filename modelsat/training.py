"""The single-process training loop of capability instruction tuning (paper §3) and its run settings.

`TrainConfig` holds a training run's settings: optimizer, schedule, budget, and the weights and augmentation
of the objective. What one step minimises (group sampling, profile augmentation, loss terms) lives in
`modelsat.objective`; this module holds what runs around it: `train_router` (sample, step, validate, keep the
best state), the optimizer's parameter groups and learning-rate schedule, and the validation numbers that
select checkpoints (`validation_scores`, `validation_metrics`). The Ray Train + DeepSpeed recipe
(`jobs/train_router.py`) reuses all but the loop itself.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from modelsat.config import BaseConfig
from modelsat.objective import GroupSampler, compute_loss
from modelsat.router.encodings import InstructionEncoding
from modelsat.router.modeling import RouterModel

__all__ = [
    "one_cycle_schedule",
    "optimizer_groups",
    "TrainConfig",
    "TrainResult",
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


@torch.no_grad()
def validation_scores(
    model: RouterModel,
    encodings: Iterable[InstructionEncoding],
    accuracies: torch.Tensor,
    prior_accuracies: torch.Tensor | None = None,
) -> np.ndarray:
    """[n, m] router scores of the validation instructions against the training models' profiles.

    Both training paths call it (single process: `TrainingPlan.validation_scores`; Ray Train: the recipe's
    rank 0), so they select checkpoints on the same numbers.

    Args:
        model: the router (its mode is the caller's: `eval()` for validation).
        encodings: the validation instructions' encodings in pieces (e.g. `InstructionEncoding.chunks(256)`).
        accuracies: [m, T'] capability profiles of the training models, on the model's device.
        prior_accuracies: [m, T'] what the profile prior reads (`CapabilityEncoding.prior_accuracies`); only
            used when `model.config.prior_weight > 0`.
    Returns:
        float32 scores (logits), rows in the order of `encodings`.
    """
    caps = model.encode_profiles(accuracies)
    caps.prior_accuracies = prior_accuracies
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
