"""`modelsat run`: the main job (train, evaluate, report) and its optional data-fetch and serving stages.

`run` chains the stages of `modelsat train` and `modelsat eval` (`modelsat.cli._lifecycle`) on one run config;
`--fetch-data` first fetches the public mmlu_pro zoo, and `--serve` adds the serving stage, which answers the
held-out instructions through the OpenAI-compatible API on Ray Serve.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from modelsat.cli._app import VerboseOption, app, bundled_config, run_config
from modelsat.cli._console import RichProgress, fail, quiet_libraries
from modelsat.errors import ConfigError, ModelSATError


def _fetch_public_routing_data(zoo: str | None, progress: RichProgress) -> None:
    """`modelsat run --fetch-data`: fetch the public mmlu_pro zoo where the config expects it, if it is absent."""
    from modelsat.data import mmlu_pro
    from modelsat.paths import resolve_routing_data_dir

    if zoo is None or Path(zoo).name != "mmlu_pro":
        raise ConfigError(f"--fetch-data fetches the public mmlu_pro zoo; data.routing_data is {zoo!r}")
    target = resolve_routing_data_dir(zoo)
    if target.is_dir():
        progress.log(f"--fetch-data: zoo found at {target}, nothing to fetch")
        return
    progress.log(f"--fetch-data: zoo {zoo!r} not found; fetching the public MMLU-Pro outcomes into {target}")
    report = mmlu_pro.fetch_mmlu_pro(
        target, mmlu_pro.SHARED_ZOO_MODELS, base_url=mmlu_pro.DEFAULT_BASE_URL, progress=progress
    )
    for line in report.lines():
        progress.log(line)


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option("--config", help="Run config (default: bundled mmlu_pro.yaml)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output directory (default: runs/<zoo>)")] = None,
    data: Annotated[str | None, typer.Option("--data", help="Override data.routing_data")] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Serving stage: deploy the zoo's recorded models behind the router on Ray Serve and answer the "
            "held-out instructions through the OpenAI-compatible API",
        ),
    ] = False,
    fetch_data: Annotated[
        bool,
        typer.Option(
            "--fetch-data",
            help="If the mmlu_pro zoo is not found, download the public MMLU-Pro outcomes into the data root first",
        ),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """The main job: train on a zoo with some models held out as unseen, evaluate, print and write the report.

    Each stage's result is written as soon as the stage ends: the checkpoint after training, the report after
    evaluation (before the serving stage). A failed serving stage is recorded in the report
    (`serving: {"error", "log"}`) and the command exits with code 1; checkpoint, report and registry stay.
    """
    quiet_libraries()
    try:
        from modelsat.evaluate import evaluate_pipeline
        from modelsat.pipeline import train_pipeline
        from modelsat.report import comparison_table, write_report

        if serve:
            from modelsat.cli._extras import require_extras

            require_extras("modelsat run --serve", "serving")
        cfg_path = config or bundled_config("mmlu_pro.yaml")
        cfg = run_config(cfg_path, data, None)
        out_dir = out or Path("runs") / Path(cfg.data.routing_data or "zoo").name
        report_dir = out_dir / "report"
        progress = RichProgress()
        progress.log(f"config {cfg_path}; output {out_dir}")
        t0 = time.monotonic()
        if fetch_data:
            _fetch_public_routing_data(cfg.data.routing_data, progress)
        ckpt, summary = train_pipeline(cfg, out_dir / "checkpoint", progress)
        report = evaluate_pipeline(
            ckpt, cfg.data.routing_data, "test", cfg.eval, progress, models=cfg.data.models
        )
        report["training_summary"] = summary
        write_report(report, report_dir)  # the evaluation is kept whatever a later stage does
        progress.log(f"report written: {report_dir / 'report.md'}")
        serving_failed = None
        if serve:
            serving_failed = _serving_stage(report, cfg, out_dir, progress, verbose)
            write_report(report, report_dir)
        typer.echo("")
        typer.echo(
            f"## {report['zoo']}: {report['n_questions']} held-out questions, {len(report['models'])} models "
            f"({len(report['unseen_models'])} unseen in training: {', '.join(report['unseen_models'])})"
        )
        typer.echo("")
        typer.echo(comparison_table(report))
        if serve and serving_failed is None:
            s = report["serving"]
            typer.echo(
                f"\nserving stage: {s['n_questions']} held-out instructions through the HTTP API (model auto, "
                f"{s['concurrency']} clients): accuracy {100 * s['accuracy']:.1f}% by recorded outcomes "
                f"({'equal to' if s['matches_eval'] else 'DIFFERENT FROM'} modelsat eval's "
                f"{100 * report['methods']['model_sat']['accuracy']:.1f}%), "
                f"{100 * (s['accuracy_regraded'] or 0):.1f}% re-grading the answer text of the {s['n_regraded']} "
                "gradable ones against the reference; "
                f"{s['requests_per_s']:.0f} requests/s, p50 {s['latency_ms_p50']:.0f} ms"
            )
        typer.echo(
            f"\nreport: {report_dir / 'report.md'} (plots beside it); checkpoint: {out_dir / 'checkpoint'}"
        )
        typer.echo(f"total {time.monotonic() - t0:.0f}s", err=True)
        if serving_failed is not None:
            typer.echo(
                f"error: the serving stage failed: {serving_failed} (log: {report['serving']['log']}); "
                f"the checkpoint, the report (without serving figures) and the registry are kept in {out_dir}",
                err=True,
            )
            raise typer.Exit(1)
    except ModelSATError as e:
        fail(e)


def _serving_stage(
    report: dict[str, Any], cfg: Any, out_dir: Path, progress: Any, verbose: bool
) -> str | None:
    """Run the serving stage into `report["serving"]`; on failure record `{"error", "log"}` there instead.

    Ray's and Serve's log lines (and a failure's traceback) go to `<out>/logs/serving.log`, unless `verbose`.

    Returns:
        None on success, else the one-line reason of the failure.
    """
    import traceback

    from cluster.logs import capture_ray_logs

    log_file = out_dir / "logs" / "serving.log"
    capture_ray_logs(log_file, verbose, announce=progress.log)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    progress.log(
        f"serving stage: Ray and Serve log lines go to {log_file}" if not verbose else "serving stage"
    )
    try:
        from services.stage import serve_held_out

        report["serving"] = serve_held_out(
            out_dir / "checkpoint",
            cfg.data.routing_data,
            out_dir / "registry",
            progress,
            expected_accuracy=report["methods"]["model_sat"]["accuracy"],
        )
        return None
    except Exception as e:  # noqa: BLE001 - recorded in the report and the log, and the exit code is 1
        first = (str(e).strip().splitlines() or [""])[0][:500]
        reason = f"{type(e).__name__}: {first}" if first else type(e).__name__
        with log_file.open("a", encoding="utf-8") as f:
            f.write(f"\nserving stage failed: {reason}\n{traceback.format_exc()}")
        report["serving"] = {"error": reason, "log": str(log_file)}
        return reason
