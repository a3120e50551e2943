"""Where things live: repository root, data root, cache directory, atomic output directories."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "atomic_output_dir",
    "atomic_write_text",
    "cache_dir",
    "data_root",
    "data_root_found",
    "local_data_dir",
    "repo_root",
    "resolve_routing_data_dir",
    "shared_data_dir",
]

DATA_ENV = "MODELSAT_DATA"
CACHE_ENV = "MODELSAT_CACHE"


def repo_root() -> Path:
    """Root of the source checkout (the directory holding `pyproject.toml`)."""
    return Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """`../shared/data` beside the repository (the shared routing datasets on this project's machines)."""
    return (repo_root().parent / "shared" / "data").resolve()


def local_data_dir() -> Path:
    """`data/` in the checkout (git-ignored): where a newcomer's fetched or imported zoos go."""
    return repo_root() / "data"


def data_root() -> Path:
    """Data root: `$MODELSAT_DATA` if set, else `../shared/data` if it exists, else `data/` in the checkout."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    shared = shared_data_dir()
    return shared if shared.is_dir() else local_data_dir()


def data_root_found() -> bool:
    """Whether the data root exists (`$MODELSAT_DATA`, `../shared/data` or `data/` in the checkout)."""
    return data_root().is_dir()


def resolve_routing_data_dir(zoo: str | Path) -> Path:
    """A zoo given as a path (absolute, or relative to the working directory) or as a name under the data root.

    `mmlu_pro` resolves to `<data root>/mmlu_pro` unless `./mmlu_pro` exists.
    """
    p = Path(zoo).expanduser()
    if p.is_absolute() or p.exists() or len(p.parts) > 1:
        return p
    return data_root() / p


def cache_dir() -> Path:
    """Cache root: `$MODELSAT_CACHE`, else `$XDG_CACHE_HOME/modelsat`, else `~/.cache/modelsat`."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "modelsat"


@contextlib.contextmanager
def atomic_output_dir(final: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `final` in one rename.

    On an exception the temporary directory is removed and `final` is left exactly as it was, so a failed
    command never leaves a half-written output (issue 2, "Bad input").

    Raises:
        FileExistsError: if `final` exists and `overwrite` is False.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file via a temporary file and `os.replace` (readers see the old or the new content)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
