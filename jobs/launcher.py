"""Driver of distributed router training: checks, Ray Data inputs, `TorchTrainer`, and the final checkpoint.

`train_distributed` does on the driver what must happen once — load and split the zoo, select the aptitude
test, measure profiles, build the initial router (`modelsat.pipeline.prepare_training`, without encoding the
router-training instructions: the Ray Data pipeline featurizes them) — then runs `jobs.train_router.train_func`
on `workers` Ray Train workers and turns the best reported checkpoint into the same self-contained router
directory as the single-process path (`modelsat.pipeline.finalize_training`: Platt calibration, aptitude
test, profiles, `training.json`).

Fail-fast checks before any worker starts: the DeepSpeed config (JSON, ZeRO stage, DeepSpeed's own parser), a
writable storage path, a reachable cluster, and enough resources for the workers.

Docs: https://docs.ray.io/en/latest/train/api/doc/ray.train.torch.TorchTrainer.html,
https://docs.ray.io/en/latest/train/user-guides/fault-tolerance.html
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import ray
from pydantic import Field

from cluster import connect, disconnect, require_resources, root_cause
from jobs.data import InstructionFeaturizer, epoch_dataset, rows_per_epoch
from jobs.train_router import CHECKPOINT_FILES, LoopConfig, load_router_weights, train_func
from modelsat.config import BaseConfig
from modelsat.errors import ClusterError, ConfigError, ModelSATError
from modelsat.pipeline import TrainingPlan, finalize_training, prepare_training
from modelsat.progress import NullProgress, Progress
from modelsat.router.build import SentenceEncoder
from modelsat.router.checkpoint import RouterCheckpoint
from modelsat.runconfig import RunConfig
from modelsat.training import TrainResult

__all__ = [
    "DEFAULT_DEEPSPEED_CONFIG",
    "DistributedOptions",
    "TrainingError",
    "check_storage",
    "load_deepspeed_config",
    "train_distributed",
]

DEFAULT_DEEPSPEED_CONFIG = Path(__file__).resolve().parent / "configs" / "ds_zero2.json"


class TrainingError(ModelSATError):
    """A distributed training run failed (after its retries); nothing was written to the output directory."""


class DistributedOptions(BaseConfig):
    """How `modelsat train --workers N` runs (the run's model and data settings stay in `RunConfig`)."""

    workers: int = Field(ge=1, description="Ray Train workers (one DeepSpeed rank each)")
    use_gpu: bool = Field(False, description="One GPU per worker, NCCL and bf16; CPU: gloo and fp32")
    cpus_per_worker: float = Field(1.0, gt=0, description="Logical CPUs reserved per worker")
    address: str | None = Field(
        None,
        description="Ray cluster address (auto, HOST:PORT, ray://HOST:10001); None = RAY_ADDRESS or embedded",
    )
    storage_path: str | None = Field(
        None,
        description="Ray Train storage (local path or pyarrow URI, e.g. s3://bucket/x); None = <out>.ray-train",
    )
    run_name: str | None = Field(
        None,
        description="Ray Train run name; re-running with the same name resumes (None = derived from the run)",
    )
    deepspeed_config: Path = Field(DEFAULT_DEEPSPEED_CONFIG, description="DeepSpeed JSON config file")
    checkpoint_every: int = Field(100, ge=1, description="Steps between checkpoints")
    keep_checkpoints: int = Field(2, ge=1, description="Best checkpoints kept (the latest is always kept)")
    max_failures: int = Field(2, ge=0, description="Worker-group restarts from the latest checkpoint")
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="Placement of workers over nodes (SPREAD = one per node where possible)"
    )
    featurizer_concurrency: int = Field(1, ge=1, description="Ray Data featurizer actors")


#: Test hook, not an option: one worker fails once at this training step (fault-tolerance tests set it).
TEST_FAIL_AT_STEP_ENV = "MODELSAT_TEST_FAIL_AT_STEP"


def _test_fail_at_step() -> int | None:
    value = os.environ.get(TEST_FAIL_AT_STEP_ENV, "")
    return int(value) if value.isdigit() and int(value) >= 1 else None


# ------------------------------------------------------------------------------------------------ checks
def load_deepspeed_config(path: Path, micro_batch_rows: int, use_gpu: bool) -> dict[str, Any]:
    """Read a DeepSpeed JSON config, fill its `auto` values and check it with DeepSpeed's own parser.

    `train_micro_batch_size_per_gpu: auto` = training examples per worker and step; `bf16.enabled: auto` =
    `use_gpu`. Docs: https://www.deepspeed.ai/docs/config-json/

    Raises:
        ConfigError: missing file, invalid JSON, a ZeRO stage outside 0–3, or a config DeepSpeed rejects.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"DeepSpeed config {str(path)!r} does not exist (default: {DEFAULT_DEEPSPEED_CONFIG})"
        )
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"DeepSpeed config {str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise ConfigError(f"DeepSpeed config {str(path)!r} must be a JSON object, got {type(cfg).__name__}")
    if cfg.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        cfg["train_micro_batch_size_per_gpu"] = micro_batch_rows
    cfg.pop("train_batch_size", None)  # derived by DeepSpeed from micro batch × accumulation × world size
    bf16 = cfg.setdefault("bf16", {})
    if bf16.get("enabled", "auto") == "auto":
        bf16["enabled"] = use_gpu
    zero = cfg.get("zero_optimization", {})
    stage = zero.get("stage", 0) if isinstance(zero, dict) else zero
    if stage not in (0, 1, 2, 3):
        raise ConfigError(
            f"DeepSpeed config {str(path)!r}: zero_optimization.stage = {stage!r}; allowed: 0, 1, 2, 3"
        )
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if use_gpu else "cpu")
    try:
        from deepspeed.runtime.config import DeepSpeedConfig

        DeepSpeedConfig(json.loads(json.dumps(cfg)))
    except Exception as e:  # DeepSpeed raises AssertionError, ValueError or pydantic errors
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"DeepSpeed rejects the config {str(path)!r}: {first}") from e
    return cfg


def check_storage(storage_path: str) -> None:
    """Fail fast unless `storage_path` (local path or pyarrow filesystem URI) is writable.

    Raises:
        ConfigError: naming the path and the reason.
    """
    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(storage_path)
    except (pafs.ArrowInvalid, ValueError, TypeError):
        fs, root = pafs.LocalFileSystem(), str(Path(storage_path).expanduser().resolve())
    probe = f"{root.rstrip('/')}/.modelsat-write-probe-{uuid.uuid4().hex[:8]}"
    try:
        fs.create_dir(root, recursive=True)
        with fs.open_output_stream(probe) as f:
            f.write(b"ok")
        fs.delete_file(probe)
    except (OSError, Exception) as e:
        raise ConfigError(f"storage path {storage_path!r} is not writable: {e}") from e


# ------------------------------------------------------------------------------------------------ driver
def _run_name(config: RunConfig, out_dir: Path) -> str:
    key = json.dumps(
        {"config": config.model_dump(mode="json"), "out": str(out_dir.resolve())}, sort_keys=True
    )
    zoo = Path(str(config.data.routing_data)).name
    return f"modelsat-{zoo}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def _payload(plan: TrainingPlan, featurizer: InstructionFeaturizer) -> dict[str, Any]:
    val_texts = plan.zoo.prompts[plan.val_rows].tolist()
    feats = featurizer.featurize(val_texts)
    return {
        "router_config": plan.model.config.to_dict(),
        "state": {k: v.detach().cpu() for k, v in plan.model.state_dict().items()},
        "accuracies": plan.accuracies,
        "items_per_task": plan.items_per_task,
        "validation_features": {"pooled": feats["features"]} if "features" in feats else feats,
        "validation_accuracies": plan.validation_accuracies,
        "validation_outcomes": plan.validation_outcomes(),
        "pad_token_id": plan.tokenizer.pad_token_id,
    }


def train_distributed(
    config: RunConfig,
    out_dir: str | Path,
    options: DistributedOptions,
    progress: Progress | None = None,
) -> tuple[RouterCheckpoint, dict[str, Any]]:
    """Train the router with Ray Train + DeepSpeed on `options.workers` workers; save the checkpoint to `out_dir`.

    Returns:
        (checkpoint, summary) like `modelsat.pipeline.train_pipeline`, with `distributed` settings and timings.
    Raises:
        ConfigError: bad DeepSpeed config, unwritable storage, bad zoo or run config.
        ClusterError: unreachable address, or the cluster cannot place the workers.
        TrainingError: the run failed after `max_failures` restarts (no output is written).
    """
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, ScalingConfig
    from ray.train import RunConfig as TrainRunConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    progress = progress or NullProgress()
    t_start = time.monotonic()
    out_dir = Path(out_dir)
    tc = config.train
    rows_per_step = 6 * tc.groups_per_step  # ≈ the single-process step: G + G groups and 4G pairs
    per_worker = math.ceil(rows_per_step / options.workers)
    ds_config = load_deepspeed_config(options.deepspeed_config, per_worker, options.use_gpu)
    storage = options.storage_path or str(out_dir.resolve()) + ".ray-train"
    check_storage(storage)

    # The embedded cluster offers at least 4 logical CPUs (scheduling tokens: 2 workers + the featurizer fit on
    # a 2-core machine); larger requests must come with a cluster that has the resources.
    info = connect(options.address, num_cpus=max(os.cpu_count() or 1, 4))
    try:
        per = {"CPU": options.cpus_per_worker, **({"GPU": 1.0} if options.use_gpu else {})}
        require_resources(per, options.workers, "modelsat train --workers")
        need = options.workers * options.cpus_per_worker + options.featurizer_concurrency
        if info.resources.get("CPU", 0.0) < need:
            raise ClusterError(
                f"modelsat train --workers {options.workers}: the cluster has {info.resources.get('CPU', 0.0):g} CPU; "
                f"the workers and the Ray Data featurizer need {need:g} (missing "
                f"{need - info.resources.get('CPU', 0.0):g} CPU)"
            )
        progress.log(
            f"Ray cluster {info.address}: {info.nodes} node(s), {info.resources.get('CPU', 0):g} CPU, "
            f"{info.resources.get('GPU', 0):g} GPU; {options.workers} worker(s), DeepSpeed ZeRO-"
            f"{ds_config.get('zero_optimization', {}).get('stage', 0)}"
        )
        plan = prepare_training(config, progress, encode_training_rows=False)
        mode = "embedding" if plan.shares_psi else "tokens"
        featurizer_kwargs = {
            "prompts": None,
            "mode": mode,
            "encoder": config.router.capability_encoder,
            "static_encoder": ray.put(
                SentenceEncoder.static_backbone(
                    plan.model.backbone,
                    plan.tokenizer,
                    config.router.backbone,
                    config.router.max_instruction_tokens,
                )
            )
            if config.router.backbone_type == "static"
            else None,
            "router_config": plan.model.config.to_dict(),
            "max_tokens": config.router.max_instruction_tokens,
        }
        featurizer = InstructionFeaturizer(**{**featurizer_kwargs, "prompts": {}})
        payload_ref = ray.put(_payload(plan, featurizer))
        train_ids = plan.zoo.question_ids[plan.train_rows].tolist()
        featurizer_kwargs["prompts"] = ray.put(
            dict(zip(train_ids, plan.zoo.prompts[plan.train_rows].tolist(), strict=True))
        )
        train_outcomes = plan.outcomes(plan.train_rows)
        counts = rows_per_epoch(train_outcomes)
        steps_per_epoch = max(1, counts["total"] // (per_worker * options.workers))
        epochs = (
            math.ceil(tc.max_steps / steps_per_epoch) + 1
        )  # one spare: shards are split evenly, not exactly
        progress.log(
            f"input pipeline: {counts['total']} examples per epoch ({counts['instruction_groups']} instruction "
            f"groups, {counts['model_groups']} model groups, {counts['pointwise']} pairs), {per_worker} per "
            f"worker and step, ~{steps_per_epoch} steps per epoch, features: {mode}"
        )
        outcomes_path = plan.zoo.path / "outcomes.parquet"

        def make(epoch: int):
            return lambda: epoch_dataset(
                outcomes_path,
                train_outcomes,
                train_ids,
                plan.seen,
                tc.group_size,
                tc.seed,
                epoch,
                featurizer_kwargs,
                featurizer_concurrency=options.featurizer_concurrency,
            )

        datasets = {f"epoch_{e}": make(e) for e in range(epochs)}
        name = options.run_name or _run_name(config, out_dir)
        fail_at = _test_fail_at_step()
        loop = LoopConfig(
            train=tc,
            deepspeed=ds_config,
            use_gpu=options.use_gpu,
            epochs=epochs,
            batch_rows_per_worker=per_worker,
            checkpoint_every=options.checkpoint_every,
            fail_at_step=fail_at,
            fail_marker=str(Path(storage) / name / f".fail-once-{fail_at}") if fail_at else None,
        )
        trainer = TorchTrainer(
            train_func,
            train_loop_config={**loop.model_dump(mode="json"), "payload": payload_ref},
            torch_config=TorchConfig(backend="nccl" if options.use_gpu else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=options.workers,
                use_gpu=options.use_gpu,
                resources_per_worker={"CPU": options.cpus_per_worker},
                placement_strategy=options.placement_strategy,
            ),
            run_config=TrainRunConfig(
                name=name,
                storage_path=storage,
                failure_config=FailureConfig(max_failures=options.max_failures),
                checkpoint_config=CheckpointConfig(
                    num_to_keep=options.keep_checkpoints,
                    checkpoint_score_attribute="val_routing_accuracy",
                    checkpoint_score_order="max",
                ),
            ),
            datasets=datasets,
            dataset_config=DataConfig(datasets_to_split="all"),
        )
        progress.log(f"Ray Train run {name!r}, storage {storage} (re-run the same command to resume)")
        t_fit = time.monotonic()
        try:
            result = trainer.fit()
        except Exception as e:
            raise TrainingError(
                f"distributed training run {name!r} failed after {options.max_failures} restart(s): "
                f"{root_cause(e)} (storage: {storage}; worker logs above)"
            ) from e
        fit_seconds = time.monotonic() - t_fit
        best = _best_checkpoint(result)
        latest = result.checkpoint
        if best is None or latest is None:
            raise TrainingError(f"run {name!r} reported no checkpoint (storage: {storage})")
        with latest.as_directory() as d:
            state = json.loads((Path(d) / CHECKPOINT_FILES["state"]).read_text())
        with best[0].as_directory() as d:
            plan.model.load_state_dict(load_router_weights(d), strict=False)
        val = {k[4:]: v for k, v in best[1].items() if k.startswith("val_")}
        train_result = TrainResult(
            best_step=int(best[1].get("step", state["step"])),
            best_validation=val,
            steps_done=int(state["step"]),
            seconds=fit_seconds,
            history=state["history"],
        )
        extra = {
            "distributed": {
                **options.model_dump(mode="json"),
                "storage_path": storage,
                "run_name": name,
                "deepspeed": ds_config,
                "rows_per_worker_step": per_worker,
                "examples_per_epoch": counts["total"],
                "resumed_from": state["resumed_from"],
                "features": mode,
            }
        }
        ckpt, summary = finalize_training(plan, out_dir, train_result, progress, extra=extra)
        summary["total_seconds"] = time.monotonic() - t_start
        summary["distributed"] = extra["distributed"]
        return ckpt, summary
    finally:
        if info.embedded:
            disconnect()


def _best_checkpoint(result) -> tuple[Any, dict[str, Any]] | None:
    scored = [(c, m) for c, m in (result.best_checkpoints or []) if "val_routing_accuracy" in m]
    if scored:
        return max(scored, key=lambda cm: (cm[1]["val_routing_accuracy"], cm[1].get("step", 0)))
    if result.checkpoint is not None:
        return result.checkpoint, dict(result.metrics or {})
    return None
