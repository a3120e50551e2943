"""The `modelsat` command line (Typer). Every command turns a `ModelSATError` into one line and exit code 2.

This is the only module that may reach up into `training/` and `services/` (lazily, inside a command).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer

from modelsat.errors import ConfigError, ModelSATError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Model-SAT: capability instruction tuning for LLM routing (train, evaluate, route).",
)


def bundled_config(name: str) -> Path:
    """Path of a config shipped in `modelsat/configs/`."""
    return Path(str(resources.files("modelsat") / "configs" / name))


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _fail(e: BaseException) -> None:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


class RichProgress:
    """`modelsat.progress.Progress` rendered with rich on stderr."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)

    def log(self, message: str) -> None:
        self.console.print(f"[bold cyan]›[/] {message}")

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[..., None]]:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
        ]
        with Progress(*columns, console=self.console, transient=False) as bar:
            tid = bar.add_task(description, total=total, info="")

            def advance(n: int = 1, **fields: Any) -> None:
                info = " ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items()
                )
                bar.update(tid, advance=n, info=info)

            yield advance
            if total is not None:
                bar.update(tid, completed=total)


def _split_names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _run_config(config: Path | None, data: str | None, unseen: str | None, max_steps: int | None = None):
    from modelsat.runconfig import RunConfig

    cfg = RunConfig.from_yaml(config) if config else RunConfig()
    raw = cfg.model_dump(mode="json")
    if data is not None:
        raw["data"]["zoo"] = data
    names = _split_names(unseen)
    if names is not None:
        raw["data"]["unseen_models"] = names
    if max_steps is not None:
        raw["train"]["max_steps"] = max_steps
    return RunConfig.from_dict(raw, source=str(config or "defaults"))


@app.command()
def train(
    out: Annotated[Path, typer.Option("--out", help="Checkpoint directory to write")],
    data: Annotated[
        str | None, typer.Option("--data", help="Zoo directory or name under $MODELSAT_DATA")
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
    _quiet_libraries()
    try:
        cfg = _run_config(config, data, unseen_models, max_steps)
        if workers == 0:
            if use_gpu or address or storage_path or deepspeed_config or run_name:
                raise ConfigError(
                    "--use-gpu, --address, --storage-path, --deepspeed-config and --run-name need --workers N (N >= 1)"
                )
            from modelsat.pipeline import train_pipeline

            train_pipeline(cfg, out, RichProgress())
            return
        from training.launcher import DEFAULT_DEEPSPEED_CONFIG, DistributedOptions, train_distributed

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
        _, summary = train_distributed(cfg, out, options, RichProgress())
        typer.echo(
            f"trained {summary['steps_done']} steps on {workers} worker(s) in {summary['train_seconds']:.0f}s; "
            f"checkpoint: {out}"
        )
    except ModelSATError as e:
        _fail(e)


@app.command("eval")
def eval_(
    router: Annotated[Path, typer.Option("--router", help="Router checkpoint directory")],
    data: Annotated[str, typer.Option("--data", help="Zoo directory or name under $MODELSAT_DATA")],
    out: Annotated[Path, typer.Option("--out", help="Report directory to write")],
    split: Annotated[str, typer.Option("--split", help="test (never-used questions) or validation")] = "test",
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config YAML; its eval section is used")
    ] = None,
) -> None:
    """Evaluate a checkpoint and the baselines on a zoo; write report.json, report.md and plots."""
    _quiet_libraries()
    try:
        from modelsat.evaluate import evaluate_pipeline
        from modelsat.report import comparison_table, write_report
        from modelsat.runconfig import RunConfig

        ev = (RunConfig.from_yaml(config) if config else RunConfig()).eval
        report = evaluate_pipeline(router, data, split, ev, RichProgress())
        write_report(report, out)
        typer.echo(comparison_table(report))
        typer.echo(f"\nreport: {out / 'report.md'}")
    except ModelSATError as e:
        _fail(e)


@app.command()
def route(
    router: Annotated[Path, typer.Option("--router", help="Router checkpoint directory")],
    instruction: Annotated[list[str], typer.Argument(help="Instruction(s) to route")],
    candidates: Annotated[
        str | None, typer.Option("--candidates", help="Comma-separated subset of models")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Print the chosen model and every candidate's router score for each instruction."""
    _quiet_libraries()
    try:
        from modelsat.router import Router, RouterCheckpoint

        r = Router(RouterCheckpoint.load(router))
        t0 = time.perf_counter()
        decisions = r.route(instruction, _split_names(candidates))
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
        _fail(e)


@app.command()
def aptitude(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the aptitude test and profiles to")],
    data: Annotated[
        str | None, typer.Option("--data", help="Zoo directory or name under $MODELSAT_DATA")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config YAML (split and aptitude sections)")
    ] = None,
    unseen_models: Annotated[
        str | None, typer.Option("--unseen-models", help="Models that must not choose the items")
    ] = None,
) -> None:
    """Select the aptitude test from a zoo's training pool and write it with every model's capability profile."""
    _quiet_libraries()
    try:
        from modelsat.aptitude import measure_profiles, select_aptitude_test
        from modelsat.data import load_zoo
        from modelsat.paths import atomic_output_dir
        from modelsat.pipeline import check_unseen
        from modelsat.split import split_zoo

        cfg = _run_config(config, data, unseen_models)
        if cfg.data.zoo is None:
            raise ModelSATError("no zoo given: pass --data ZOO_DIR")
        zoo = load_zoo(cfg.data.zoo)
        seen = check_unseen(zoo, cfg.data.unseen_models)
        split = split_zoo(zoo, cfg.split.seed, cfg.split.test_fraction)
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
        _fail(e)


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config (default: bundled mmlu_pro.yaml)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: runs/<zoo>)")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Override data.zoo")] = None,
) -> None:
    """The main job: train on a zoo with some models held out as unseen, evaluate, print and write the report."""
    _quiet_libraries()
    try:
        from modelsat.evaluate import evaluate_pipeline
        from modelsat.pipeline import train_pipeline
        from modelsat.report import comparison_table, write_report

        cfg_path = config or bundled_config("mmlu_pro.yaml")
        cfg = _run_config(cfg_path, data, None)
        out_dir = out or Path("runs") / Path(cfg.data.zoo or "zoo").name
        progress = RichProgress()
        progress.log(f"config {cfg_path}; output {out_dir}")
        t0 = time.monotonic()
        ckpt, summary = train_pipeline(cfg, out_dir / "checkpoint", progress)
        report = evaluate_pipeline(ckpt, cfg.data.zoo, "test", cfg.eval, progress)
        report["training_summary"] = summary
        write_report(report, out_dir / "report")
        typer.echo("")
        typer.echo(
            f"## {report['zoo']}: {report['n_questions']} held-out questions, {len(report['models'])} models "
            f"({len(report['unseen_models'])} unseen in training: {', '.join(report['unseen_models'])})"
        )
        typer.echo("")
        typer.echo(comparison_table(report))
        typer.echo(
            f"\nreport: {out_dir / 'report' / 'report.md'} (plots beside it); checkpoint: {out_dir / 'checkpoint'}"
        )
        typer.echo(f"total {time.monotonic() - t0:.0f}s", err=True)
    except ModelSATError as e:
        _fail(e)


def main() -> None:
    """Console entry point (`modelsat`)."""
    app(prog_name="modelsat")


if __name__ == "__main__":
    sys.exit(main())
