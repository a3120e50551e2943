"""Directories at a URI: router checkpoints on object storage (s3://, gs://, abfs://, hdfs://, file://).

A Kubernetes deployment keeps the router checkpoint where every pod can read it: a volume (a plain path) or
an object store (a URI). These helpers copy a whole directory between the local disk and any filesystem
pyarrow opens (`pyarrow.fs.FileSystem.from_uri`, https://arrow.apache.org/docs/python/filesystems.html);
credentials come from the environment, as pyarrow reads them (e.g. AWS_ACCESS_KEY_ID, GOOGLE_APPLICATION_
CREDENTIALS).

Layout written by `upload_dir` (object stores cannot rename a directory, so an upload never overwrites a file
a reader may be reading; it writes a new version and then switches one small object to it):

    <uri>/versions/<version>/config.json, model.safetensors, ...   one immutable copy per upload
    <uri>/modelsat-manifest.json                                   {"format", "version", "created_at",
                                                                    "files": {path: {"sha256", "bytes"}}}

The manifest is written last, in one PUT (on a local `file://` filesystem: a temporary file renamed over it),
so a reader sees the previous version or the new one, never a mix; `download_dir` checks every file it copies
against the manifest's SHA-256 and size, and a mismatch is a `CheckpointError`. After an upload, versions older
than the one it replaced are deleted (the replaced one is kept for readers still copying it). A directory
without a manifest (copied by hand, or uploaded by an older modelsat) is copied as it is, unverified.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from modelsat.errors import CheckpointError, ModelSATError

__all__ = ["MANIFEST_FILE", "download_dir", "is_uri", "upload_dir"]

MANIFEST_FILE = "modelsat-manifest.json"
"""Written last by `upload_dir`: names the current version and the SHA-256 of each of its files."""
VERSIONS_DIR = "versions"
STORAGE_FORMAT = 1
_CHUNK = 1 << 20
_VERSION = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

log = logging.getLogger("modelsat.storage")


def is_uri(location: str | Path) -> bool:
    """True for `scheme://...` locations (object stores, `file://`), False for plain paths."""
    return "://" in str(location)


def _open(uri: str):
    from pyarrow import fs as pafs

    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as e:  # pyarrow.ArrowInvalid is a ValueError
        raise ModelSATError(f"{uri!r} cannot be opened as a filesystem URI: {e}") from e


def _read_manifest(fs: Any, root: str, uri: str) -> dict[str, Any] | None:
    """The checked manifest at `root`, or None if there is none (a directory in the plain layout).

    Raises:
        CheckpointError: the manifest cannot be read, is not JSON, or is malformed (names the bad field).
        ModelSATError: the filesystem cannot be read.
    """
    from pyarrow import fs as pafs

    path = f"{root}/{MANIFEST_FILE}"
    try:
        if fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with fs.open_input_stream(path) as f:
            raw = json.loads(f.read().decode("utf-8"))
    except OSError as e:
        raise ModelSATError(f"reading {uri.rstrip('/')}/{MANIFEST_FILE}: {e}") from e
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{uri.rstrip('/')}/{MANIFEST_FILE} is not UTF-8 JSON ({e})") from e
    where = f"{uri.rstrip('/')}/{MANIFEST_FILE}"
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where} is a JSON {type(raw).__name__}, expected an object")
    if raw.get("format") != STORAGE_FORMAT:
        raise CheckpointError(
            f"{where} has format {raw.get('format')!r}; this version of modelsat reads format {STORAGE_FORMAT}"
        )
    version, files = raw.get("version"), raw.get("files")
    if not isinstance(version, str) or not _VERSION.match(version):
        raise CheckpointError(
            f"{where}: 'version' is {version!r}; expected a version name like 20250101T000000000000Z-0123abcd"
        )
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{where}: 'files' must be a non-empty object of path -> {{sha256, bytes}}")
    for rel, meta in files.items():
        parts = PurePosixPath(rel).parts
        if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in rel:
            raise CheckpointError(f"{where}: file path {rel!r} is not a relative path inside the checkpoint")
        ok = (
            isinstance(meta, dict)
            and isinstance(meta.get("sha256"), str)
            and _SHA256.match(meta["sha256"])
            and isinstance(meta.get("bytes"), int)
            and meta["bytes"] >= 0
        )
        if not ok:
            raise CheckpointError(
                f"{where}: file {rel!r} has {meta!r:.120}; expected {{sha256: 64 hex digits, bytes: int >= 0}}"
            )
    return raw


def _copy_hashed(fs: Any, src: str, dest: Path) -> tuple[str, int]:
    """Stream `src` to `dest`, returning (its SHA-256, its size in bytes)."""
    h = hashlib.sha256()
    n = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    with fs.open_input_stream(src) as f, dest.open("wb") as out:
        while block := f.read(_CHUNK):
            h.update(block)
            n += len(block)
            out.write(block)
    return h.hexdigest(), n


def download_dir(uri: str, dest: str | Path | None = None) -> Path:
    """Copy the directory at `uri` to a local directory, verified against its manifest if it has one.

    Args:
        uri: directory URI, e.g. `s3://bucket/routers/mmlu_pro`.
        dest: local directory to create (must not exist or be empty); default: a new temporary directory
            (the caller deletes it).
    Returns:
        The local directory: the manifest's current version's files (or, without a manifest, every file).
    Raises:
        CheckpointError: a file differs from the manifest's SHA-256 or size, is missing, or the manifest is
            malformed (nothing is left at `dest`).
        ModelSATError: the URI cannot be opened, is not a directory, or the copy fails (nothing is left at
            `dest`).
    """
    from pyarrow import fs as pafs

    fs, root = _open(uri)
    root = root.rstrip("/")
    info = fs.get_file_info(root)
    if info.type != pafs.FileType.Directory:
        raise ModelSATError(f"{uri!r} is not a directory ({info.type.name.lower()})")
    manifest = _read_manifest(fs, root, uri)
    out = Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix="modelsat-download-"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if manifest is None:
            pafs.copy_files(
                root, str(tmp), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
            )
        else:
            version = manifest["version"]
            for rel, meta in sorted(manifest["files"].items()):
                src = f"{root}/{VERSIONS_DIR}/{version}/{rel}"
                if fs.get_file_info(src).type != pafs.FileType.File:
                    raise CheckpointError(
                        f"{uri!r}: {rel} of version {version} is missing although {MANIFEST_FILE} lists it "
                        "(deleted by a newer upload while this one was read? load it again); nothing was loaded"
                    )
                got, n = _copy_hashed(fs, src, tmp / rel)
                if (got, n) != (meta["sha256"], meta["bytes"]):
                    raise CheckpointError(
                        f"{uri!r}: {rel} of version {version} does not match {MANIFEST_FILE} (sha256 {got}, "
                        f"{n:,} bytes; the manifest says sha256 {meta['sha256']}, {meta['bytes']:,} bytes): the "
                        "checkpoint is damaged or was changed by hand; nothing was loaded"
                    )
        if out.exists():
            out.rmdir()  # the empty temporary directory made above; a non-empty `dest` raises here
        tmp.rename(out)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if dest is None:
            shutil.rmtree(out, ignore_errors=True)
        if isinstance(e, OSError):
            raise ModelSATError(f"copying {uri!r} to {out}: {e}") from e
        raise
    return out


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def upload_dir(local: str | Path, uri: str) -> str:
    """Upload a local directory to `uri` as a new version, then switch the manifest to it (see the module doc).

    A reader of `uri` sees the previous version or this one, never a mix; an existing checkpoint at `uri` stays
    readable throughout, and stays current if the upload fails.

    Args:
        local: the local directory (a router checkpoint).
        uri: destination directory URI.
    Returns:
        The new version's name (`<UTC time>-<8 hex digits>`, under `<uri>/versions/`).
    Raises:
        ModelSATError: `local` is not a directory or holds nothing, the URI cannot be opened, or a copy fails
            (the partial version is deleted; the manifest, so what readers load, is unchanged).
    """
    from pyarrow import fs as pafs

    local = Path(local)
    if not local.is_dir():
        raise ModelSATError(f"cannot upload {local}: not a directory")
    files = sorted(p for p in local.rglob("*") if p.is_file())
    if not files:
        raise ModelSATError(f"cannot upload {local}: it holds no files")
    fs, root = _open(uri)
    root = root.rstrip("/")
    try:
        previous = _read_manifest(fs, root, uri)
    except CheckpointError as e:  # a damaged manifest is replaced; nothing older is deleted then
        log.warning("%s; the upload replaces it", e)
        previous = None
    now = dt.datetime.now(dt.UTC)
    version = f"{now:%Y%m%dT%H%M%S%f}Z-{uuid.uuid4().hex[:8]}"
    vroot = f"{root}/{VERSIONS_DIR}/{version}"
    manifest = {
        "format": STORAGE_FORMAT,
        "version": version,
        "created_at": now.isoformat(timespec="seconds"),
        "files": {
            p.relative_to(local).as_posix(): {"sha256": _sha256_of(p), "bytes": p.stat().st_size}
            for p in files
        },
    }
    final = f"{root}/{MANIFEST_FILE}"
    tmp = f"{root}/.{MANIFEST_FILE}.tmp-{uuid.uuid4().hex}"
    try:
        fs.create_dir(vroot, recursive=True)
        for path in files:
            target = f"{vroot}/{path.relative_to(local).as_posix()}"
            fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
            with path.open("rb") as src, fs.open_output_stream(target) as out:
                while block := src.read(_CHUNK):
                    out.write(block)
        data = json.dumps(manifest, indent=1, sort_keys=True).encode()
        if isinstance(fs, pafs.LocalFileSystem):  # file://: publish with a rename, atomic for readers
            with fs.open_output_stream(tmp) as out:
                out.write(data)
            fs.move(tmp, final)
        else:  # an object store: one PUT, atomic for readers
            with fs.open_output_stream(final) as out:
                out.write(data)
    except OSError as e:
        for cleanup in (lambda: fs.delete_dir(vroot), lambda: fs.delete_file(tmp)):
            with contextlib.suppress(OSError):
                cleanup()
        raise ModelSATError(
            f"copying {local} to {uri!r}: {e} (the checkpoint readers load from {uri!r} is unchanged)"
        ) from e
    if previous is not None:
        _delete_versions_before(fs, root, previous["version"], keep=version)
    return version


def _delete_versions_before(fs: Any, root: str, oldest_kept: str, keep: str) -> None:
    """Delete the versions older than `oldest_kept` (the one just replaced), never `keep` or newer ones.

    Newer versions may be another writer's upload in progress. A failed deletion only leaves files behind, so
    it is logged, not raised.
    """
    from pyarrow import fs as pafs

    try:
        infos = fs.get_file_info(pafs.FileSelector(f"{root}/{VERSIONS_DIR}", allow_not_found=True))
        for info in infos:
            name = info.base_name
            if (
                info.type == pafs.FileType.Directory
                and _VERSION.match(name)
                and name < oldest_kept
                and name != keep
            ):
                fs.delete_dir(info.path)
    except OSError as e:
        log.warning("could not delete old checkpoint versions under %s/%s: %s", root, VERSIONS_DIR, e)
