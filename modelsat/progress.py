"""Progress reporting without a UI dependency: the library calls a `Progress`, the CLI renders it with rich."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

__all__ = ["NullProgress", "Progress"]


class Progress:
    """Receives progress of long work. Subclass and override; the default does nothing."""

    def log(self, message: str) -> None:
        """A line for the user (what is being done, what was chosen)."""

    @contextlib.contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Callable[..., None]]:
        """Context for a unit of work of `total` steps; yields `advance(n=1, **fields)`."""
        yield lambda n=1, **fields: None

    @contextlib.contextmanager
    def tasks(self, totals: dict[str, int]) -> Iterator[Callable[..., None]]:
        """Context for several units of work shown side by side (e.g. aptitude items per candidate model).

        Args:
            totals: label -> number of steps.
        Yields:
            `advance(label, n=1, **fields)`.
        """
        yield lambda label, n=1, **fields: None


class NullProgress(Progress):
    """Progress that reports nothing (tests, library use)."""
