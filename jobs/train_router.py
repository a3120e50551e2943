"""Ray Train + DeepSpeed recipe of capability instruction tuning (paper §3, Eq. 5; released run: DeepSpeed ZeRO-2).

`train_func` runs on every Ray Train worker. It builds the `modelsat` router from the driver's initial weights,
wraps it with `deepspeed.initialize` (ZeRO stage 2 by default; GPU: NCCL + bf16, CPU: gloo + fp32), streams
its shard of the training examples (`jobs.data.epoch_dataset`) with `ray.train.get_dataset_shard`, and
minimises `modelsat.objective.compute_loss` — the same model and loss as the single-process path. Every
`checkpoint_every` steps all ranks write the DeepSpeed checkpoint (each its own ZeRO partition) and report it;
rank 0 adds the router weights, the training state and the validation metrics. A restarted worker group
(`FailureConfig`) or a re-run with the same run name resumes from the latest checkpoint: the DeepSpeed engine,
the sampling generators and the position in the epoch are restored, so checkpointed steps are not repeated.

Docs: https://docs.ray.io/en/latest/train/deepspeed.html,
https://deepspeed.readthedocs.io/en/latest/initialize.html, https://docs.ray.io/en/latest/train/user-guides/checkpoints.html
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file

from jobs.data import Features, collate
from modelsat.config import BaseConfig
from modelsat.objective import compute_loss
from modelsat.router.configuration import RouterConfig
from modelsat.router.encodings import InstructionEncoding
from modelsat.router.modeling import RouterModel
from modelsat.training import (
    TrainConfig,
    one_cycle_schedule,
    optimizer_groups,
    validation_metrics,
    validation_scores,
)

__all__ = ["CHECKPOINT_FILES", "LoopConfig", "router_state_dict", "train_func"]

CHECKPOINT_FILES = {"router": "router.safetensors", "state": "train_state.json", "deepspeed": "deepspeed"}
"""Layout of a reported checkpoint: router weights (rank 0), training state (rank 0), DeepSpeed dir (all ranks)."""


class LoopConfig(BaseConfig):
    """Settings of `train_func` (the driver fills them; the payload of weights and arrays travels separately)."""

    train: TrainConfig = Field(
        description="Loss, optimiser and schedule settings (shared with the single-process path)"
    )
    deepspeed: dict[str, Any] = Field(description="DeepSpeed config with every `auto` value filled in")
    use_gpu: bool = Field(False, description="NCCL + bf16 on GPU, gloo + fp32 on CPU")
    epochs: int = Field(ge=1, description="Epoch datasets `epoch_{i}` the driver provides")
    batch_rows_per_worker: int = Field(ge=1, description="Training examples per worker and step")
    checkpoint_every: int = Field(ge=1, description="Steps between checkpoints (each one a report barrier)")
    shuffle_buffer_rows: int = Field(
        4096, ge=1, description="Rows each worker mixes before batching (local shuffle buffer)"
    )
    log_every_s: float = Field(10.0, gt=0, description="Seconds between progress lines of rank 0")
    fail_at_step: int | None = Field(
        None,
        ge=1,
        description="Test hook: rank 1 (or 0) raises once at this step; a marker file makes it once",
    )
    fail_marker: str | None = Field(None, description="Path of the marker file of `fail_at_step`")


def router_state_dict(model: RouterModel) -> dict[str, torch.Tensor]:
    """The trainable part of the router's weights (everything but a frozen backbone), fp32 on CPU."""
    skip_backbone = model.backbone_frozen
    return {
        k: v.detach().float().cpu().contiguous()
        for k, v in model.state_dict().items()
        if not (skip_backbone and k.startswith("backbone."))
    }


class _Synced:
    """Iterate batches while every rank has one and time is left.

    One tiny all-reduce per step (MIN over ranks of 2 = go, 1 = out of time, 0 = out of data), so ranks with
    unequal shards or clocks stop at the same step instead of hanging in a collective. `ended` is "data" or
    "time" afterwards.
    """

    def __init__(self, iterator, device: torch.device, deadline: float | None) -> None:
        self.iterator, self.device, self.deadline, self.ended = iterator, device, deadline, "data"

    def _agree(self, mine: int) -> int:
        import torch.distributed as dist

        flag = torch.tensor([mine], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return int(flag.item())

    def __iter__(self):
        for batch in self.iterator:
            in_time = self.deadline is None or time.monotonic() < self.deadline
            flag = self._agree(2 if in_time else 1)
            if flag < 2:
                self.ended = "time" if flag == 1 else "data"
                return
            yield batch
        self.ended = "data"
        self._agree(0)


def train_func(config: dict[str, Any]) -> None:
    """Ray Train worker loop (see module docstring). `config` = `LoopConfig` fields plus `payload` (ObjectRef)."""
    cfg = LoopConfig.model_validate({k: v for k, v in config.items() if k != "payload"})
    payload = (
        ray.get(config["payload"]) if isinstance(config["payload"], ray.ObjectRef) else config["payload"]
    )
    worker = _Worker.setup(cfg, payload)
    worker.resume()
    worker.loop(pad_id=int(payload.get("pad_token_id") or 0))


@dataclass
class _Position:
    """Where training stands: steps done, epoch and batch within it, and the reported history."""

    step: int = 0
    epoch: int = 0
    offset: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from: list[int] = field(default_factory=list)


@dataclass
class _Worker:
    """One Ray Train worker's state: the DeepSpeed engine around the router, its RNG, data and position."""

    cfg: LoopConfig
    engine: Any
    router: RouterModel
    gen: torch.Generator
    rank: int
    world: int
    device: torch.device
    accuracies: torch.Tensor
    items_per_task: torch.Tensor
    val_accuracies: torch.Tensor
    val_feats: Features
    val_outcomes: np.ndarray
    pos: _Position = field(default_factory=_Position)
    interval_rows: int = 0
    interval_t: float = field(default_factory=time.monotonic)

    @classmethod
    def setup(cls, cfg: LoopConfig, payload: dict[str, Any]) -> _Worker:
        """The modelsat router from the driver's weights, wrapped by `deepspeed.initialize`."""
        os.environ.setdefault("DS_ACCELERATOR", "cuda" if cfg.use_gpu else "cpu")
        import deepspeed

        ctx = ray.train.get_context()
        rank, world = ctx.get_world_rank(), ctx.get_world_size()
        device = ray.train.torch.get_device()
        if not cfg.use_gpu:
            torch.set_num_threads(1)
        tc = cfg.train
        torch.manual_seed(tc.seed + rank)
        gen = torch.Generator().manual_seed(tc.seed * 1_000 + rank)
        model = RouterModel(RouterConfig.from_dict(payload["router_config"]))
        model.load_state_dict(payload["state"])
        model.to(device)
        deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
        optimizer = torch.optim.AdamW(optimizer_groups(model, tc), weight_decay=tc.weight_decay)
        scheduler = one_cycle_schedule(optimizer, tc)
        engine, _, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=cfg.deepspeed
        )
        return cls(
            cfg=cfg,
            engine=engine,
            router=engine.module,
            gen=gen,
            rank=rank,
            world=world,
            device=device,
            accuracies=torch.as_tensor(payload["accuracies"], dtype=torch.float32),
            items_per_task=torch.as_tensor(payload["items_per_task"], dtype=torch.float32),
            val_accuracies=torch.as_tensor(
                payload.get("validation_accuracies", payload["accuracies"]), dtype=torch.float32
            ),
            val_feats=Features(**payload["validation_features"]),
            val_outcomes=np.asarray(payload["validation_outcomes"]),
        )

    def resume(self) -> None:
        """Restore the engine, this rank's generator and the position from Ray Train's latest checkpoint."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return
        with checkpoint.as_directory() as d:
            self.engine.load_checkpoint(
                str(Path(d) / CHECKPOINT_FILES["deepspeed"]), tag="ds", load_module_strict=False
            )
            state = json.loads((Path(d) / CHECKPOINT_FILES["state"]).read_text())
            rng = Path(d) / f"generator_rank{self.rank}.pt"
            if rng.exists():
                self.gen.set_state(torch.load(rng))
        self.pos = _Position(
            step=state["step"],
            epoch=state["epoch"],
            offset=state["offset"],
            history=state["history"],
            resumed_from=state["resumed_from"] + [state["step"]],
        )
        if self.rank == 0:
            p = self.pos
            print(
                f"[modelsat train] resuming from step {p.step} (epoch {p.epoch}, batch {p.offset})",
                flush=True,
            )

    def validate(self) -> dict[str, float]:
        """Validation metrics of the router now (`modelsat.training.validation_metrics`)."""
        self.router.eval()
        with torch.no_grad():
            enc: InstructionEncoding = self.val_feats.encode(self.router, self.device)
        scores = validation_scores(self.router, enc.chunks(256), self.val_accuracies.to(self.device))
        return validation_metrics(scores, self.val_outcomes)

    def throughput(self) -> dict[str, float]:
        """Training examples per second over all workers since the previous report (reports excluded)."""
        now = time.monotonic()
        rate = self.interval_rows / max(now - self.interval_t, 1e-9)
        self.interval_rows = 0
        return {"samples_per_s": rate, "interval_s": now - self.interval_t}

    def save_and_report(self, metrics: dict[str, float]) -> None:
        """Every rank writes its DeepSpeed partition and generator; rank 0 adds weights, state, validation."""
        p = self.pos
        if self.rank == 0:
            val = self.validate()
            metrics = {**metrics, **{f"val_{k}": v for k, v in val.items()}}
            p.history = p.history + [{"step": p.step, **metrics}]
        with tempfile.TemporaryDirectory() as d:
            self.engine.save_checkpoint(
                str(Path(d) / CHECKPOINT_FILES["deepspeed"]), tag="ds", exclude_frozen_parameters=True
            )
            torch.save(self.gen.get_state(), Path(d) / f"generator_rank{self.rank}.pt")
            if self.rank == 0:
                save_file(router_state_dict(self.router), str(Path(d) / CHECKPOINT_FILES["router"]))
                state = {
                    "step": p.step,
                    "epoch": p.epoch,
                    "offset": p.offset,
                    "history": p.history,
                    "resumed_from": p.resumed_from,
                    "world_size": self.world,
                }
                (Path(d) / CHECKPOINT_FILES["state"]).write_text(json.dumps(state))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        self.interval_t = time.monotonic()

    def report_validation(self, metrics: dict[str, float]) -> None:
        """`eval_every` between checkpoints: rank 0 validates and adds the point to the history; every rank
        reports (Ray Train expects the same reports from each worker), with no checkpoint."""
        p = self.pos
        if self.rank == 0:
            metrics = {**metrics, **{f"val_{k}": v for k, v in self.validate().items()}}
            p.history = p.history + [{"step": p.step, **metrics}]
        ray.train.report(metrics)

    def step(self, batch: dict[str, np.ndarray], pad_id: int) -> dict[str, float]:
        """One optimizer step on a batch of training examples; returns the loss terms."""
        self.engine.train()
        if self.router.backbone_frozen:
            self.router.backbone.eval()
        feats, tb = collate(batch, pad_token_id=pad_id, left_pad=self.router.is_causal)
        loss, metrics = compute_loss(
            self.router,
            feats.encode(self.router, self.device),
            tb,
            self.accuracies.to(self.device),
            self.items_per_task.to(self.device),
            self.cfg.train,
            self.gen,
        )
        self.engine.backward(loss)
        self.engine.step()
        return metrics

    def _test_fault(self) -> None:
        """Tests only (`fail_at_step`, set through `TEST_FAIL_AT_STEP_ENV`): one worker fails once."""
        cfg, step = self.cfg, self.pos.step
        if cfg.fail_at_step == step and cfg.fail_marker and self.rank == min(1, self.world - 1):
            if not Path(cfg.fail_marker).exists():
                Path(cfg.fail_marker).write_text(str(step))
                raise RuntimeError(f"test hook: worker {self.rank} fails once at step {step}")

    def loop(self, pad_id: int) -> None:
        """Epochs of this worker's shard until `max_steps`, the data or `max_time_s` ends; reports every
        `checkpoint_every` steps and at the end."""
        cfg, tc, p = self.cfg, self.cfg.train, self.pos
        deadline = None if tc.max_time_s is None else time.monotonic() + tc.max_time_s
        t_log, rows_since, t_since = time.monotonic(), 0, time.monotonic()
        metrics: dict[str, float] = {}
        self.interval_t = time.monotonic()
        while p.step < tc.max_steps and p.epoch < cfg.epochs:
            shard = ray.train.get_dataset_shard(f"epoch_{p.epoch}")
            batches = _Synced(
                shard.iter_batches(
                    batch_size=cfg.batch_rows_per_worker,
                    batch_format="numpy",
                    drop_last=True,
                    local_shuffle_buffer_size=cfg.shuffle_buffer_rows,
                    local_shuffle_seed=tc.seed * 1_000 + 100 * p.epoch + self.rank,
                ),
                self.device,
                deadline,
            )
            for i, batch in enumerate(batches):
                if i < p.offset:
                    continue  # consumed before the checkpoint this run resumed from
                metrics = self.step(batch, pad_id)
                p.step, p.offset = p.step + 1, i + 1
                rows_since += len(batch["kind"]) * self.world
                self.interval_rows += len(batch["kind"]) * self.world
                self._test_fault()
                now = time.monotonic()
                if self.rank == 0 and (now - t_log >= cfg.log_every_s or p.step == tc.max_steps):
                    rate = rows_since / max(now - t_since, 1e-9)
                    print(
                        f"[modelsat train] step {p.step}/{tc.max_steps} · epoch {p.epoch} · "
                        f"loss {metrics['loss']:.4f} · {rate:.0f} samples/s",
                        flush=True,
                    )
                    t_log, rows_since, t_since = now, 0, now
                metrics = {**metrics, "step": p.step, "epoch": p.epoch}
                if p.step % cfg.checkpoint_every == 0 or p.step == tc.max_steps:
                    self.save_and_report({**metrics, **self.throughput()})
                elif p.step % tc.eval_every == 0:
                    self.report_validation(metrics)
                if p.step >= tc.max_steps:
                    break
            if p.step >= tc.max_steps or batches.ended == "time":
                break
            p.epoch, p.offset = p.epoch + 1, 0
        if p.step % cfg.checkpoint_every != 0 and p.step != tc.max_steps:
            self.save_and_report({**metrics, "step": p.step, "epoch": p.epoch})  # stopped early: keep the end


def load_router_weights(checkpoint_dir: str | Path) -> dict[str, torch.Tensor]:
    """Router weights saved by rank 0 in a reported checkpoint."""
    return load_file(str(Path(checkpoint_dir) / CHECKPOINT_FILES["router"]))
