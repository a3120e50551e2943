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

    # ---- setup: the modelsat router, wrapped by DeepSpeed
    model = RouterModel(RouterConfig.from_dict(payload["router_config"]))
    model.load_state_dict(payload["state"])
    model.to(device)
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    optimizer = torch.optim.AdamW(optimizer_groups(model, tc), weight_decay=tc.weight_decay)
    scheduler = one_cycle_schedule(optimizer, tc)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=cfg.deepspeed
    )
    router: RouterModel = engine.module
    acc = torch.as_tensor(payload["accuracies"], dtype=torch.float32)
    k_items = torch.as_tensor(payload["items_per_task"], dtype=torch.float32)
    val_feats = Features(**payload["validation_features"])
    val_outcomes = np.asarray(payload["validation_outcomes"])

    # ---- resume
    step, epoch, offset, history, resumed_from = 0, 0, 0, [], []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            engine.load_checkpoint(
                str(Path(d) / CHECKPOINT_FILES["deepspeed"]), tag="ds", load_module_strict=False
            )
            state = json.loads((Path(d) / CHECKPOINT_FILES["state"]).read_text())
            rng = Path(d) / f"generator_rank{rank}.pt"
            if rng.exists():
                gen.set_state(torch.load(rng))
        step, epoch, offset = state["step"], state["epoch"], state["offset"]
        history, resumed_from = state["history"], state["resumed_from"] + [step]
        if rank == 0:
            print(f"[modelsat train] resuming from step {step} (epoch {epoch}, batch {offset})", flush=True)

    def validate() -> dict[str, float]:
        router.eval()
        with torch.no_grad():
            enc: InstructionEncoding = val_feats.encode(router, device)
        scores = validation_scores(router, enc.chunks(256), acc.to(device))
        return validation_metrics(scores, val_outcomes)

    def save_and_report(metrics: dict[str, float]) -> None:
        nonlocal history
        if rank == 0:
            val = validate()
            metrics = {**metrics, **{f"val_{k}": v for k, v in val.items()}}
            history = history + [{"step": step, **metrics}]
        with tempfile.TemporaryDirectory() as d:
            engine.save_checkpoint(
                str(Path(d) / CHECKPOINT_FILES["deepspeed"]), tag="ds", exclude_frozen_parameters=True
            )
            torch.save(gen.get_state(), Path(d) / f"generator_rank{rank}.pt")
            if rank == 0:
                save_file(router_state_dict(router), str(Path(d) / CHECKPOINT_FILES["router"]))
                state = {
                    "step": step,
                    "epoch": epoch,
                    "offset": offset,
                    "history": history,
                    "resumed_from": resumed_from,
                    "world_size": world,
                }
                (Path(d) / CHECKPOINT_FILES["state"]).write_text(json.dumps(state))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        interval["t"] = time.monotonic()

    # ---- loop
    deadline = None if tc.max_time_s is None else time.monotonic() + tc.max_time_s
    left_pad = router.is_causal
    pad_id = int(payload.get("pad_token_id") or 0)
    t_log, rows_since, t_since = time.monotonic(), 0, time.monotonic()
    metrics: dict[str, float] = {}
    interval = {"rows": 0, "t": time.monotonic()}

    def throughput() -> dict[str, float]:
        """Training examples per second over all workers since the previous report (reports excluded)."""
        now = time.monotonic()
        rate = interval["rows"] / max(now - interval["t"], 1e-9)
        interval["rows"] = 0
        return {"samples_per_s": rate, "interval_s": now - interval["t"]}

    while step < tc.max_steps and epoch < cfg.epochs:
        shard = ray.train.get_dataset_shard(f"epoch_{epoch}")
        batches = _Synced(
            shard.iter_batches(
                batch_size=cfg.batch_rows_per_worker,
                batch_format="numpy",
                drop_last=True,
                local_shuffle_buffer_size=cfg.shuffle_buffer_rows,
                local_shuffle_seed=tc.seed * 1_000 + 100 * epoch + rank,
            ),
            device,
            deadline,
        )
        for i, batch in enumerate(batches):
            if i < offset:
                continue  # consumed before the checkpoint this run resumed from
            engine.train()
            if router.backbone_frozen:
                router.backbone.eval()
            feats, tb = collate(batch, pad_token_id=pad_id, left_pad=left_pad)
            loss, metrics = compute_loss(
                router, feats.encode(router, device), tb, acc.to(device), k_items.to(device), tc, gen
            )
            engine.backward(loss)
            engine.step()
            step, offset = step + 1, i + 1
            rows_since += len(batch["kind"]) * world
            interval["rows"] += len(batch["kind"]) * world
            if cfg.fail_at_step == step and cfg.fail_marker and rank == min(1, world - 1):
                if not Path(cfg.fail_marker).exists():
                    Path(cfg.fail_marker).write_text(str(step))
                    raise RuntimeError(f"test hook: worker {rank} fails once at step {step}")
            now = time.monotonic()
            if rank == 0 and (now - t_log >= cfg.log_every_s or step == tc.max_steps):
                rate = rows_since / max(now - t_since, 1e-9)
                print(
                    f"[modelsat train] step {step}/{tc.max_steps} · epoch {epoch} · loss {metrics['loss']:.4f} · "
                    f"{rate:.0f} samples/s",
                    flush=True,
                )
                t_log, rows_since, t_since = now, 0, now
            metrics = {**metrics, "step": step, "epoch": epoch}
            if step % cfg.checkpoint_every == 0 or step == tc.max_steps:
                save_and_report({**metrics, **throughput()})
            if step >= tc.max_steps:
                break
        if step >= tc.max_steps or batches.ended == "time":
            break
        epoch, offset = epoch + 1, 0
    if step % cfg.checkpoint_every != 0 and step != tc.max_steps:
        save_and_report(
            {**metrics, "step": step, "epoch": epoch}
        )  # stopped early (time or data): keep the end


def load_router_weights(checkpoint_dir: str | Path) -> dict[str, torch.Tensor]:
    """Router weights saved by rank 0 in a reported checkpoint."""
    return load_file(str(Path(checkpoint_dir) / CHECKPOINT_FILES["router"]))
