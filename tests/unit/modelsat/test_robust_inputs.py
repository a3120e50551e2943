"""Bad inputs to the data importers' downloads (issue 18): a `manifest.json` that is not an object, and
downloads that end early without the server saying how long the file is. No network: a fake HTTP response."""

from __future__ import annotations

import http.client
import io
import json
import zipfile
from pathlib import Path

import pytest

import modelsat.data.download as download
from modelsat.data.download import Manifest, fetch_file, sha256_of
from modelsat.data.mmlu_pro import archive_name, check_zip, fetch_mmlu_pro_archives
from modelsat.errors import DataError

BASE = "http://archives.invalid/eval_results"


def _archive_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("m/results.json", json.dumps([{"question_id": i, "pad": "x" * 200} for i in range(50)]))
    return buf.getvalue()


class FakeResponse:
    """What `urllib.request.urlopen` returns: `status`, `headers`, `read(n)`; `cut` raises IncompleteRead."""

    def __init__(self, body: bytes, status: int = 200, headers: dict | None = None, cut: bool = False):
        self.status, self.headers, self._body, self._cut = status, headers or {}, io.BytesIO(body), cut

    def read(self, n: int = -1) -> bytes:
        block = self._body.read(n)
        if not block and self._cut:
            raise http.client.IncompleteRead(b"", 1024)
        return block

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _serve(monkeypatch, responses: list[FakeResponse]) -> list[tuple[str, int]]:
    """Answer each request with the next response; returns the (url, start) of the requests."""
    asked: list[tuple[str, int]] = []

    def fake_open(url: str, start: int, timeout_s: float) -> FakeResponse:
        asked.append((url, start))
        return responses.pop(0)

    monkeypatch.setattr(download, "_open", fake_open)
    return asked


def _cache(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())} if root.exists() else {}


def test_a_download_without_content_length_that_ends_early_is_not_recorded(tmp_path, monkeypatch):
    data = _archive_bytes()
    cut = len(data) // 2
    asked = _serve(
        monkeypatch,
        [
            FakeResponse(data[:cut]),  # 200, no Content-Length, the connection closes halfway
            FakeResponse(data[cut:], 206, {"Content-Range": f"bytes {cut}-{len(data) - 1}/{len(data)}"}),
        ],
    )
    cache = tmp_path / "cache"
    name = archive_name("gemma-7b")
    with pytest.raises(
        DataError,
        match=rf"{name}: the download ended after {cut:,} bytes but is not whole \({name}\.part is not a whole "
        r"zip archive .*nothing was recorded: run the command again to resume",
    ):
        fetch_mmlu_pro_archives(["gemma-7b"], cache, BASE)
    assert not (cache / name).exists() and Manifest(cache).files == {}
    assert (cache / f"{name}.part").stat().st_size == cut  # kept: the next run resumes
    [got] = fetch_mmlu_pro_archives(["gemma-7b"], cache, BASE)
    assert asked == [(f"{BASE}/{name}", 0), (f"{BASE}/{name}", cut)]
    assert (got.how, got.path.read_bytes()) == ("resumed", data)
    assert Manifest(cache).sha256(name) == sha256_of(cache / name)


def test_a_chunked_download_cut_off_is_not_recorded(tmp_path, monkeypatch):
    data = _archive_bytes()
    _serve(monkeypatch, [FakeResponse(data[:1000], cut=True)])
    dest = tmp_path / "cache" / "x.zip"
    with pytest.raises(
        DataError,
        match=r"x\.zip: the connection closed before the server's end of the file, after 1,000 bytes",
    ):
        fetch_file(f"{BASE}/x.zip", dest, Manifest(dest.parent), check=check_zip)
    assert not dest.exists() and Manifest(dest.parent).files == {}


def test_a_resume_of_unknown_total_is_checked_against_its_content_length(tmp_path, monkeypatch):
    data = _archive_bytes()
    dest = tmp_path / "cache" / "x.zip"
    dest.parent.mkdir()
    (dest.parent / "x.zip.part").write_bytes(data[:100])
    headers = {"Content-Range": f"bytes 100-{len(data) - 1}/*", "Content-Length": str(len(data) - 100)}
    _serve(monkeypatch, [FakeResponse(data[100:500], 206, headers)])
    with pytest.raises(DataError, match=rf"stopped at 500 of {len(data):,} bytes; run the command again"):
        fetch_file(f"{BASE}/x.zip", dest, Manifest(dest.parent))
    assert not dest.exists() and Manifest(dest.parent).files == {}


def test_a_damaged_file_of_the_stated_length_is_removed_not_recorded(tmp_path, monkeypatch):
    data = b"PK" + b"\0" * 500  # as long as the server says, but not a zip
    _serve(monkeypatch, [FakeResponse(data, 200, {"Content-Length": str(len(data))})])
    dest = tmp_path / "cache" / "x.zip"
    with pytest.raises(DataError, match=r"the server's file \(502 bytes, as long as it said\) is damaged"):
        fetch_file(f"{BASE}/x.zip", dest, Manifest(dest.parent), check=check_zip)
    assert sorted(p.name for p in dest.parent.iterdir()) == []


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b'["files"]', r"manifest\.json:1: the manifest is a JSON list, not an object"),
        (b"7", r"manifest\.json:1: the manifest is a JSON int, not an object"),
        (b'{"files": {\n"a": 1,\n', r"manifest\.json:3: not a readable manifest"),
        (b'{"files": "\xff"}', r"manifest\.json is not a readable manifest \('utf-8' codec"),
        (b'{"files": ["a.zip"]}', r"manifest\.json: 'files' is a JSON list; allowed: \{\"files\""),
        (b'{"files": {"a.zip": "abc"}}', r"manifest\.json: entry 'a\.zip' is 'abc'; allowed"),
    ],
)
def test_a_manifest_that_is_not_an_object_is_a_data_error_and_nothing_is_written(
    tmp_path, monkeypatch, content, fragment
):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "manifest.json").write_bytes(content)
    asked = _serve(monkeypatch, [FakeResponse(_archive_bytes())])
    with pytest.raises(DataError, match=fragment + r".*delete it to start over"):
        fetch_mmlu_pro_archives(["gemma-7b"], cache, BASE)
    assert _cache(cache) == {"manifest.json": content} and asked == []
