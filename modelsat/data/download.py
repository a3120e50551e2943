"""Resumable, checksummed downloads into a cache directory (stdlib `urllib`; used by `modelsat data fetch`).

A file is downloaded to `<name>.part` and renamed to `<name>` only when complete. An interrupted download
resumes from the `.part` file with an HTTP `Range` request (a server that ignores it sends the whole file, which
then replaces the partial one). The SHA-256 of every completed file is recorded in `manifest.json` beside it; a
cached file is verified against the manifest before reuse, and a re-download must match the recorded checksum.

"Complete" means: as long as the server's `Content-Length` (or `Content-Range` total) says, the transfer was
not cut off (a chunked response that ends early raises `http.client.IncompleteRead`), and the file passes the
caller's `check` (e.g. a zip archive's central directory, which sits at its end, is readable), since a server
that sends no length and closes the connection early is otherwise indistinguishable from a complete download.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelsat.errors import DataError
from modelsat.paths import atomic_write_text
from modelsat.progress import NullProgress, Progress

__all__ = ["CachedFile", "Manifest", "fetch_file", "sha256_of"]

_CHUNK = 1 << 20
_USER_AGENT = "modelsat-data-fetch"


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


class Manifest:
    """`manifest.json` of a cache directory: file name -> {"url", "sha256", "bytes"}."""

    def __init__(self, directory: Path) -> None:
        """Read `<directory>/manifest.json` (an empty manifest if there is none).

        Raises:
            DataError: the file is unreadable, not UTF-8 JSON, not an object, or its `files` are not an object of
                name -> {"url", "sha256", "bytes"} (naming the file and, for JSON errors, the line).
        """
        self.path = directory / "manifest.json"
        hint = "delete it to start over (the downloads are checked again)"
        try:
            raw = json.loads(self.path.read_bytes().decode("utf-8")) if self.path.is_file() else {}
        except json.JSONDecodeError as e:
            raise DataError(f"{self.path}:{e.lineno}: not a readable manifest ({e.msg}); {hint}") from e
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{self.path} is not a readable manifest ({e}); {hint}") from e
        if not isinstance(raw, dict):
            raise DataError(
                f"{self.path}:1: the manifest is a JSON {type(raw).__name__}, not an object; {hint}"
            )
        files = raw.get("files", {})
        bad = (
            [f"'files' is a JSON {type(files).__name__}"]
            if not isinstance(files, dict)
            else [
                f"entry {k!r} is {v!r:.60}"
                for k, v in files.items()
                if not (isinstance(v, dict) and isinstance(v.get("sha256", ""), str))
            ]
        )
        if bad:
            raise DataError(
                f'{self.path}: {bad[0]}; allowed: {{"files": {{name: {{"url", "sha256", "bytes"}}}}}}; {hint}'
            )
        self.files: dict[str, dict[str, object]] = dict(files)

    def sha256(self, name: str) -> str | None:
        entry = self.files.get(name)
        return str(entry["sha256"]) if entry and "sha256" in entry else None

    def record(self, name: str, url: str, sha256: str, size: int) -> None:
        """Record a completed file and write the manifest atomically."""
        self.files[name] = {"url": url, "sha256": sha256, "bytes": size}
        atomic_write_text(self.path, json.dumps({"files": self.files}, indent=1, sort_keys=True) + "\n")


@dataclass(frozen=True)
class CachedFile:
    """A verified file in the cache: path, SHA-256, size in bytes, and how it got there."""

    path: Path
    sha256: str
    bytes: int
    how: str  # "cached" (verified against the manifest), "downloaded", "resumed" (from a partial download)


def _open(url: str, start: int, timeout_s: float):
    headers = {"User-Agent": _USER_AGENT}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout_s)


def _download(
    url: str, part: Path, progress: Progress, timeout_s: float, label: str
) -> tuple[int, bool, bool]:
    """Download `url` into `part`, resuming from its current size.

    Returns:
        (size in bytes, resumed, whether the server stated the file's length).
    Raises:
        DataError: a resume answered with the wrong range; a transfer cut off or shorter than stated.
    """
    start = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, start, timeout_s)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not start:
            raise
        part.unlink()  # the partial file does not fit the server's file: start over
        start, resp = 0, _open(url, 0, timeout_s)
    with resp:
        status = getattr(resp, "status", 200)
        total: int | None = None
        if status == 206:
            m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != start:
                raise DataError(
                    f"{url}: the server answered a resume request with Content-Range "
                    f"{resp.headers.get('Content-Range')!r} (expected bytes {start}-...); delete {part} to start over"
                )
            total = int(m.group(2)) if m.group(2) != "*" else None
        else:
            start = 0  # the server sent the whole file
            total = None
        length = resp.headers.get("Content-Length")
        if total is None and length and length.isdigit():
            total = start + int(length)  # a 206 with an unknown total still says how much it sends
        done = start
        with (
            part.open("ab" if start else "wb") as f,
            progress.task(f"download {label} (bytes)", total) as advance,
        ):
            if start:
                advance(start)
            try:
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    f.write(block)
                    done += len(block)
                    advance(len(block), MB=f"{done / 1e6:.1f}")
            except http.client.HTTPException as e:  # IncompleteRead: a chunked response cut short
                f.flush()
                raise DataError(
                    f"{url}: the connection closed before the server's end of the file, after "
                    f"{part.stat().st_size:,} bytes ({type(e).__name__}); run the command again to resume"
                ) from e
    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(
            f"{url}: the download stopped at {size:,} of {total:,} bytes; run the command again to resume"
        )
    return size, start > 0, total is not None


def fetch_file(
    url: str,
    dest: Path,
    manifest: Manifest,
    progress: Progress | None = None,
    timeout_s: float = 60.0,
    label: str | None = None,
    check: Callable[[Path], None] | None = None,
) -> CachedFile:
    """A verified local copy of `url` at `dest`: reused if cached, else downloaded (resuming a `.part` file).

    Args:
        url: http(s) URL of the file.
        dest: where the file goes (its directory holds the manifest).
        manifest: the cache directory's manifest (records and provides SHA-256 checksums).
        progress: shows a byte progress bar while downloading.
        timeout_s: socket timeout per request, in seconds.
        label: what the progress bar calls the file (default: its name).
        check: raises `DataError` for a file that is not whole (e.g. a truncated zip archive); run on a
            download before it is recorded, and on a cached file before reuse.
    Returns:
        The cached file with its SHA-256.
    Raises:
        DataError: a cached file whose SHA-256 differs from the manifest's; a download whose SHA-256 differs from
            the one recorded for it earlier (the partial file is removed and nothing is written); an HTTP or network
            error, or a download cut off before the server's end (the `.part` file is kept and nothing is
            recorded, so running again resumes); a truncated download (shorter than the server said, or failing
            `check`).
    """
    progress = progress or NullProgress()
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = manifest.sha256(dest.name)
    if dest.is_file():
        got = sha256_of(dest)
        if expected is not None and got != expected:
            raise DataError(
                f"checksum mismatch for cached {dest}: sha256 {got}, but {manifest.path} recorded {expected} when it "
                "was downloaded; the file changed on disk: delete it to download it again"
            )
        if check is not None:
            try:
                check(dest)
            except DataError as e:
                raise DataError(f"cached {dest} is not whole ({e}); delete it to download it again") from e
        if expected is None:
            manifest.record(dest.name, url, got, dest.stat().st_size)
        return CachedFile(dest, got, dest.stat().st_size, "cached")
    part = dest.with_name(dest.name + ".part")
    try:
        size, resumed, sized = _download(url, part, progress, timeout_s, label or dest.name)
    except urllib.error.HTTPError as e:
        raise DataError(f"{url}: HTTP {e.code} {e.reason}; check the model name and --base-url") from e
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DataError(f"{url}: download failed ({reason}); run the command again to resume") from e
    got = sha256_of(part)
    if expected is not None and got != expected:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
        raise DataError(
            f"checksum mismatch for {url}: sha256 {got}, but {manifest.path} recorded {expected} for "
            f"{dest.name}; the partial download was removed and nothing was written"
        )
    if check is not None and expected is None:  # a recorded checksum already proves the file whole
        try:
            check(part)
        except DataError as e:
            if sized:  # as long as the server said: its file itself is damaged, resuming cannot help
                part.unlink()
                raise DataError(
                    f"{url}: the server's file ({size:,} bytes, as long as it said) is damaged ({e}); the "
                    "download was removed and nothing was written"
                ) from e
            raise DataError(
                f"{url}: the download ended after {size:,} bytes but is not whole ({e}); the server sent no "
                "length, so the connection probably closed early; nothing was recorded: run the command "
                "again to resume"
            ) from e
    os.replace(part, dest)
    manifest.record(dest.name, url, got, size)
    return CachedFile(dest, got, size, "resumed" if resumed else "downloaded")
