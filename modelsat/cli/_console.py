"""Console helpers of the `modelsat` command line: rich progress, one-line errors, quiet libraries."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import typer

__all__ = ["RichProgress", "fail", "quiet_libraries", "split_names"]


def quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def fail(e: BaseException) -> None:
    """Print `error: <message>` (every line of it: some errors list several problems) and exit with code 2."""
    msg = str(e).strip() or type(e).__name__
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

    @contextlib.contextmanager
    def tasks(self, totals: dict[str, int]) -> Iterator[Callable[..., None]]:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        ]
        with Progress(*columns, console=self.console, transient=False) as bar:
            ids = {label: bar.add_task(label, total=total, info="") for label, total in totals.items()}

            def advance(label: str, n: int = 1, **fields: Any) -> None:
                info = " ".join(f"{k}={v}" for k, v in fields.items())
                bar.update(ids[label], advance=n, info=info)

            yield advance


def split_names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]
