"""`modelsat data validate | stats | import lm-eval | import mmlu-pro | fetch mmlu-pro`: routing data as an input.

Routing data directories follow the contract of `modelsat.data.schema` (README, "Routing data"). Imports build or extend a
routing data directory atomically and print what they kept and dropped.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from modelsat.cli._app import app
from modelsat.cli._console import RichProgress, fail, split_names
from modelsat.errors import ModelSATError

data_app = typer.Typer(
    no_args_is_help=True,
    help="Routing data: check and summarise routing data directories, import evaluation logs, fetch public outcomes.",
)
import_app = typer.Typer(
    no_args_is_help=True,
    help="Import evaluation logs into a routing data directory (build a new zoo or extend one).",
)
fetch_app = typer.Typer(
    no_args_is_help=True, help="Download public outcomes and import them into a routing data directory."
)
data_app.add_typer(import_app, name="import")
data_app.add_typer(fetch_app, name="fetch")
app.add_typer(data_app, name="data")

OutOption = Annotated[
    Path, typer.Option("--out", help="Routing data directory to build or extend (written atomically)")
]
ReplaceOption = Annotated[
    bool, typer.Option("--replace", help="Replace models that are already in the zoo (else an error)")
]


def _report(report, out: Path, t0: float) -> None:
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"wrote {out} in {time.monotonic() - t0:.1f}s (check it: modelsat data validate {out})")


@data_app.command("validate")
def validate(
    zoo: Annotated[str, typer.Argument(help="Routing data directory, or a zoo name under the data root")],
) -> None:
    """Check a routing data directory against the schema and report every problem (exit code 2 if any)."""
    try:
        from modelsat.data import load_routing_data, validate_routing_data
        from modelsat.errors import DataError

        problems = validate_routing_data(zoo)
        if problems:
            for p in problems:
                typer.echo(f"- {p}")
            raise DataError(f"{zoo}: {len(problems)} problem(s), listed above")
        z = load_routing_data(zoo)
        counts = sorted(Counter(z.benchmarks.tolist()).items())
        benches = ", ".join(f"{b} {n:,}" for b, n in counts)
        typer.echo(
            f"ok: {z.path}: {z.n_questions:,} questions × {z.n_models} models "
            f"({z.outcomes.size:,} outcomes{', with cost' if z.costs is not None else ''}); benchmarks: {benches}"
        )
    except ModelSATError as e:
        fail(e)


@data_app.command("stats")
def stats(
    zoo: Annotated[str, typer.Argument(help="Routing data directory, or a zoo name under the data root")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Print a zoo's models, benchmarks, per-model accuracy, best single model, oracle and random expectation."""
    try:
        from modelsat.data import load_routing_data, routing_data_stats, stats_markdown

        s = routing_data_stats(load_routing_data(zoo))
        typer.echo(json.dumps(s, indent=1) if as_json else stats_markdown(s))
    except ModelSATError as e:
        fail(e)


@import_app.command("lm-eval")
def import_lm_eval(
    dirs: Annotated[
        list[Path],
        typer.Argument(
            help="lm-eval --output_path directories (one subdirectory per model) or model directories "
            "holding samples_<task>_<timestamp>.jsonl"
        ),
    ],
    out: OutOption,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Model name of all the given logs (default: results_*.json model_name, else dir name)",
        ),
    ] = None,
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric",
            help="Per-sample metric used as the score, e.g. acc, acc_norm, exact_match; comma-separated or "
            "repeated: the first present in a sample wins (default: acc)",
        ),
    ] = None,
    filter_name: Annotated[
        str | None,
        typer.Option("--filter", help="lm-eval filter to use where a task logs several (e.g. strict-match)"),
    ] = None,
    prompt_field: Annotated[
        list[str] | None,
        typer.Option(
            "--prompt-field",
            help="Document field holding the question text: FIELD (every task) or TASK=FIELD (repeatable)",
        ),
    ] = None,
    replace: ReplaceOption = False,
) -> None:
    """Import lm-evaluation-harness per-sample logs (`lm_eval --log_samples`) into a routing data directory."""
    t0 = time.monotonic()
    try:
        from modelsat.data import import_outcomes, lm_eval_models, parse_prompt_fields
        from modelsat.data.lmeval import DEFAULT_METRICS

        metrics = tuple(n for v in metric or [] for n in split_names(v) or []) or DEFAULT_METRICS
        progress = RichProgress()
        notes: list[str] = []
        sets = lm_eval_models(dirs, model, metrics, filter_name, parse_prompt_fields(prompt_field), notes)
        for line in notes:
            progress.log(line)
        for s in sets:
            progress.log(f"{s.model}: {len(s.outcomes):,} scored questions from {s.source}")
        _report(import_outcomes(sets, out, replace), out, t0)
    except ModelSATError as e:
        fail(e)


@import_app.command("mmlu-pro")
def import_mmlu_pro(
    archives: Annotated[
        list[Path], typer.Argument(help="MMLU-Pro result archives model_outputs_<model>_5shots.zip")
    ],
    out: OutOption,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model name of a single archive (default: from the file name)"),
    ] = None,
    replace: ReplaceOption = False,
) -> None:
    """Import MMLU-Pro result archives (TIGER-AI-Lab/MMLU-Pro eval_results) already on disk into a routing data directory."""
    t0 = time.monotonic()
    try:
        from modelsat.data import import_outcomes, mmlu_pro_models

        progress = RichProgress()
        _report(import_outcomes(mmlu_pro_models(archives, model, progress), out, replace), out, t0)
    except ModelSATError as e:
        fail(e)


@fetch_app.command("mmlu-pro")
def fetch_mmlu_pro(
    out: OutOption,
    models: Annotated[
        str | None,
        typer.Option("--models", help="Comma-separated models (default: the 24 of the shared mmlu_pro zoo)"),
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Where the archives are kept (default: <cache>/mmlu-pro-archives)"),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="URL of the eval_results folder (default: GitHub, pinned commit)"),
    ] = None,
    replace: ReplaceOption = False,
) -> None:
    """Download the public MMLU-Pro result archives (resumable, checksummed) and import them into a zoo."""
    t0 = time.monotonic()
    try:
        from modelsat.data import mmlu_pro as mp

        progress = RichProgress()
        report = mp.fetch_mmlu_pro(
            out,
            split_names(models) or mp.SHARED_ZOO_MODELS,
            cache_dir,
            base_url or mp.DEFAULT_BASE_URL,
            replace,
            progress,
        )
        _report(report, out, t0)
    except ModelSATError as e:
        fail(e)
