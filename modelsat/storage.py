"""Directories at a URI: router checkpoints on object storage (s3://, gs://, abfs://, hdfs://, file://).

A Kubernetes deployment keeps the router checkpoint where every pod can read it: a volume (a plain path) or
an object store (a URI). These helpers copy a whole directory between the local disk and any filesystem
pyarrow opens (`pyarrow.fs.FileSystem.from_uri`, https://arrow.apache.org/docs/python/filesystems.html);
credentials come from the environment, as pyarrow reads them (e.g. AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_
CREDENTIALS).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from modelsat.errors import ModelSATError

__all__ = ["download_dir", "is_uri", "upload_dir"]

LAST_FILE = "config.json"
"""Uploaded last: a reader that finds it finds every other file of the checkpoint."""


def is_uri(location: str | Path) -> bool:
    """True for `scheme://...` locations (object stores, `file://`), False for plain paths."""
    return "://" in str(location)


def _open(uri: str):
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as e:  # pyarrow.ArrowInvalid is a ValueError
        raise ModelSATError(f"{uri!r} cannot be opened as a filesystem URI: {e}") from e


def download_dir(uri: str, dest: str | Path | None = None) -> Path:
    """Copy the directory at `uri` to a local directory.

    Args:
        uri: directory URI, e.g. `s3://bucket/routers/mmlu_pro`.
        dest: local directory to create (must not exist); default: a new temporary directory.
    Returns:
        The local directory.
    Raises:
        ModelSATError: the URI cannot be opened, is not a directory, or the copy fails (nothing is left at
            `dest`).
    """
    from pyarrow import fs as pafs

    fs, root = _open(uri)
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise ModelSATError(f"{uri!r} is not a directory ({info.type.name.lower()})")
    out = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="modelsat-download-"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        pafs.copy_files(root, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        if out.exists():
            out.rmdir()  # the empty temporary directory made above; a non-empty `dest` raises here
        tmp.rename(out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise ModelSATError(f"copying {uri!r} to {out}: {e}") from e
    return out


def upload_dir(local: str | Path, uri: str) -> None:
    """Copy a local directory to `uri`, `config.json` last (readers never see a checkpoint without it).

    Args:
        local: the local directory.
        uri: destination directory URI; existing files of the same names are overwritten.
    Raises:
        ModelSATError: the URI cannot be opened or a copy fails.
    """
    from pyarrow import fs as pafs

    fs, root = _open(uri)
    local = Path(local)
    files = sorted(p for p in local.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(local).as_posix() == LAST_FILE)
    try:
        fs.create_dir(root, recursive=True)
        for path in files:
            target = f"{root.rstrip('/')}/{path.relative_to(local).as_posix()}"
            fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            pafs.copy_files(
                str(path), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
            )
    except OSError as e:
        raise ModelSATError(f"copying {local} to {uri!r}: {e}") from e
