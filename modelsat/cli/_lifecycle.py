"""`modelsat train | eval | route | aptitude`: the router's offline life cycle, one command per stage.

Train a checkpoint (single process, or Ray Train + DeepSpeed with `--workers N`), evaluate it against the
baselines, route instructions with it, and select the aptitude test with every model's capability profile.
The main job that chains these stages is `modelsat run` (`modelsat.cli._run`).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from modelsat.cli._app import app, registry_at, run_config
from modelsat.cli._console import RichProgress, fail, quiet_libraries, split_names
from modelsat.errors import ConfigError, ModelSATError


@app.command()
def train(
    out: Annotated[
        str,
        typer.Option(
            "--out", help="Checkpoint directory to write, or an object-store URI (s3://, gs://, ...)"
        ),
    ],
    data: Annotated[
        str | None, typer.Option("--data", help="Routing data directory or name under $MODELSAT_DATA")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config YAML (default: built-in defaults)")
    ] = None,
    unseen_models: Annotated[
        str | None, typer.Option("--unseen-models", help="Comma-separated models kept out of training")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Override train.max_steps")
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", min=0, help="Ray Train + DeepSpeed workers; 0 = single process (no Ray)"),
    ] = 0,
    use_gpu: Annotated[bool, typer.Option("--use-gpu", help="One GPU per worker (NCCL, bf16)")] = False,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="Ray cluster (auto, HOST:PORT, ray://HOST:10001); default RAY_ADDRESS or embedded",
        ),
    ] = None,
    storage_path: Annotated[
        str | None,
        typer.Option(
            "--storage-path", help="Ray Train checkpoints: local path or URI (default: <out>.ray-train)"
        ),
    ] = None,
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", min=1, help="Steps between distributed checkpoints")
    ] = 100,
    max_failures: Annotated[
        int, typer.Option("--max-failures", min=0, help="Worker-group restarts from the latest checkpoint")
    ] = 2,
    deepspeed_config: Annotated[
        Path | None, typer.Option("--deepspeed-config", help="DeepSpeed JSON (default: ZeRO-2)")
    ] = None,
    run_name: Annotated[
        str | None, typer.Option("--run-name", help="Ray Train run name; the same name resumes")
    ] = None,
) -> None:
    """Train a router on a zoo and save a self-contained checkpoint (distributed with --workers N)."""
    quiet_libraries()
    try:
        from modelsat.storage import is_uri, upload_dir

        cfg = run_config(config, data, unseen_models, max_steps)
        if workers == 0 and (use_gpu or address or storage_path or deepspeed_config or run_name):
            raise ConfigError(
                "--use-gpu, --address, --storage-path, --deepspeed-config and --run-name need --workers N (N >= 1)"
            )
        if workers:
            from modelsat.cli._extras import require_extras

            require_extras("modelsat train --workers", "training")
            from jobs.launcher import DEFAULT_DEEPSPEED_CONFIG, DistributedOptions

            options = DistributedOptions(
                workers=workers,
                use_gpu=use_gpu,
                address=address,
                storage_path=storage_path,
                run_name=run_name,
                deepspeed_config=deepspeed_config or DEFAULT_DEEPSPEED_CONFIG,
                checkpoint_every=checkpoint_every,
                max_failures=max_failures,
            )
        if not is_uri(out):
            from modelsat.router.checkpoint import check_replaceable

            check_replaceable(Path(out))  # before training: a mistyped --out fails fast, replacing nothing
            _train(cfg, Path(out), options if workers else None)
            return
        # train locally, then upload; a failed upload keeps the trained checkpoint (the work is not lost)
        tmp = Path(tempfile.mkdtemp(prefix="modelsat-train-"))
        try:
            _train(cfg, tmp / "checkpoint", options if workers else None)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            version = upload_dir(
                tmp / "checkpoint", out
            )  # a new version, then the manifest: no mix for readers
        except Exception as e:  # noqa: BLE001 - re-raised as one line naming where the checkpoint is
            raise ModelSATError(
                f"training finished but the upload to {out} failed ({type(e).__name__}: {e}); the checkpoint "
                f"is kept at {tmp / 'checkpoint'} (upload it again, or use it as --router-checkpoint)"
            ) from e
        shutil.rmtree(tmp, ignore_errors=True)
        typer.echo(f"uploaded the checkpoint to {out} (version {version})")
    except ModelSATError as e:
        fail(e)


def _train(cfg: Any, out: Path, options: Any) -> None:
    """Single-process training (`options` None) or Ray Train + DeepSpeed with `DistributedOptions`."""
    if options is None:
        from modelsat.pipeline import train_pipeline

        train_pipeline(cfg, out, RichProgress())
        return
    from jobs.launcher import train_distributed

    _, summary = train_distributed(cfg, out, options, RichProgress())
    typer.echo(
        f"trained {summary['steps_done']} steps on {options.workers} worker(s) in "
        f"{summary['train_seconds']:.0f}s; checkpoint: {out}"
    )


@app.command("eval")
def eval_(
    router: Annotated[
        str,
        typer.Option(
            "--router-checkpoint", "--router", help="Router checkpoint directory or URI (s3://, gs://, ...)"
        ),
    ],
    data: Annotated[str, typer.Option("--data", help="Routing data directory or name under $MODELSAT_DATA")],
    out: Annotated[Path, typer.Option("--out", help="Report directory to write")],
    split: Annotated[str, typer.Option("--split", help="test (never-used questions) or validation")] = "test",
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config YAML; its eval section is used")
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry", help="Route over the registry's models (profiles from it); default: the zoo's"
        ),
    ] = None,
) -> None:
    """Evaluate a checkpoint and the baselines on a zoo; write report.json, report.md and plots."""
    quiet_libraries()
    try:
        from modelsat.evaluate import evaluate_pipeline
        from modelsat.report import comparison_table, write_report
        from modelsat.runconfig import RunConfig

        ev = (RunConfig.from_yaml(config) if config else RunConfig()).eval
        profiles = None
        if registry is not None:
            from modelsat.router import RouterCheckpoint

            ckpt = RouterCheckpoint.load(router)
            profiles = registry_at(registry).profiles_for(ckpt.aptitude)
            router = ckpt
        report = evaluate_pipeline(router, data, split, ev, RichProgress(), profiles)
        write_report(report, out)
        typer.echo(comparison_table(report))
        typer.echo(f"\nreport: {out / 'report.md'}")
    except ModelSATError as e:
        fail(e)


@app.command()
def route(
    router: Annotated[
        str,
        typer.Option(
            "--router-checkpoint", "--router", help="Router checkpoint directory or URI (s3://, gs://, ...)"
        ),
    ],
    instruction: Annotated[list[str], typer.Argument(help="Instruction(s) to route")],
    candidates: Annotated[
        str | None, typer.Option("--candidates", help="Comma-separated subset of models")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry", help="Route over the registry's models (default: the checkpoint's profiles)"
        ),
    ] = None,
) -> None:
    """Print the chosen model and every candidate's router score for each instruction."""
    quiet_libraries()
    try:
        from modelsat.router import Router, RouterCheckpoint

        ckpt = RouterCheckpoint.load(router)
        r = Router(ckpt, registry_at(registry).profiles_for(ckpt.aptitude) if registry else None)
        t0 = time.perf_counter()
        decisions = r.route(instruction, split_names(candidates))
        ms = 1000 * (time.perf_counter() - t0)
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {"model_id": d.model_id, "scores": d.scores, "p_correct": d.p_correct}
                        for d in decisions
                    ],
                    indent=1,
                )
            )
            return
        for text, d in zip(instruction, decisions, strict=True):
            typer.echo(f"instruction: {text[:100]}{'…' if len(text) > 100 else ''}")
            typer.echo(f"chosen model: {d.model_id}")
            typer.echo("| rank | candidate model | router score (logit) | p(correct) |")
            typer.echo("|---|---|---|---|")
            for i, m in enumerate(d.ranked(), 1):
                typer.echo(f"| {i} | {m} | {d.scores[m]:+.3f} | {d.p_correct[m]:.3f} |")
        typer.echo(
            f"({len(r.candidates)} candidates, {ms:.0f} ms for {len(instruction)} instruction(s))", err=True
        )
    except ModelSATError as e:
        fail(e)


@app.command()
def aptitude(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the aptitude test and profiles to")],
    data: Annotated[
        str | None, typer.Option("--data", help="Routing data directory or name under $MODELSAT_DATA")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config YAML (split and aptitude sections)")
    ] = None,
    unseen_models: Annotated[
        str | None, typer.Option("--unseen-models", help="Models that must not choose the items")
    ] = None,
) -> None:
    """Select the aptitude test from a zoo's training pool and write it with every model's capability profile."""
    quiet_libraries()
    try:
        from modelsat.aptitude import measure_profiles, select_aptitude_test
        from modelsat.data import load_routing_data
        from modelsat.paths import atomic_output_dir
        from modelsat.pipeline import check_unseen
        from modelsat.split import split_routing_data

        cfg = run_config(config, data, unseen_models)
        if cfg.data.routing_data is None:
            raise ModelSATError("no zoo given: pass --data ZOO_DIR")
        zoo = load_routing_data(cfg.data.routing_data)
        seen = check_unseen(zoo, cfg.data.unseen_models)
        split = split_routing_data(zoo, cfg.split.seed, cfg.split.test_fraction)
        test = select_aptitude_test(zoo, split.pool, seen, cfg.aptitude)
        profiles = measure_profiles(test, zoo)
        with atomic_output_dir(out) as tmp:
            (tmp / "aptitude_test.json").write_text(json.dumps(test.to_dict(), indent=1))
            (tmp / "profiles.json").write_text(
                json.dumps({m: p.to_dict() for m, p in profiles.items()}, indent=1)
            )
            (tmp / "profiles.txt").write_text(
                "\n\n".join(f"{m}:\n{p.text(test)}" for m, p in profiles.items()) + "\n"
            )
        typer.echo(test.notes)
        typer.echo(f"wrote {out}/aptitude_test.json, profiles.json, profiles.txt ({len(profiles)} models)")
    except ModelSATError as e:
        fail(e)
