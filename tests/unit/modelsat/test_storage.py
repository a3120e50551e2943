"""Router checkpoints at URIs (modelsat.storage): upload, download, load, and the CLI's --out URI."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest

import modelsat.storage as storage
from modelsat.errors import CheckpointError, ModelSATError
from modelsat.router import RouterCheckpoint
from modelsat.router.checkpoint import check_replaceable
from modelsat.storage import MANIFEST_FILE, download_dir, is_uri, upload_dir


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _checkpoint_like(root: Path, tag: str) -> Path:
    """A directory shaped like a checkpoint whose every file carries `tag` (storage does not parse them)."""
    root.mkdir(parents=True)
    for name in ("config.json", "profiles.json", "training.json"):
        (root / name).write_text(json.dumps({"tag": tag, "file": name}))
    (root / "model.safetensors").write_bytes(tag.encode() * 4096)
    return root


def test_is_uri():
    assert is_uri("s3://bucket/x") and is_uri("file:///tmp/x")
    assert not is_uri("/models/router") and not is_uri("runs/ckpt")


def test_a_checkpoint_round_trips_through_a_file_uri(tiny_checkpoint, tmp_path, monkeypatch):
    bucket = tmp_path / "bucket/routers/toy"
    uri = f"file://{bucket}"
    version = upload_dir(tiny_checkpoint, uri)
    assert _files(bucket / "versions" / version) == _files(tiny_checkpoint)
    manifest = json.loads((bucket / MANIFEST_FILE).read_text())
    assert manifest["version"] == version and set(manifest["files"]) == set(_files(tiny_checkpoint))
    local = download_dir(uri, tmp_path / "local")
    assert _files(local) == _files(tiny_checkpoint)
    # RouterCheckpoint.load copies to a temporary directory and deletes it once loaded
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ckpt = RouterCheckpoint.load(uri)
    assert sorted(ckpt.profiles) == sorted(RouterCheckpoint.load(tiny_checkpoint).profiles)
    assert ckpt.path == uri and list(scratch.iterdir()) == []
    # the same upload seen as a plain path (a volume mounted where the upload went)
    assert sorted(RouterCheckpoint.load(bucket).profiles) == sorted(ckpt.profiles)
    assert list(scratch.iterdir()) == []


def test_a_plain_directory_without_a_manifest_still_loads(tiny_checkpoint, tmp_path):
    assert _files(download_dir(f"file://{tiny_checkpoint}", tmp_path / "copy")) == _files(tiny_checkpoint)


def test_an_upload_over_a_checkpoint_never_shows_a_reader_a_mix(tmp_path, monkeypatch):
    bucket = tmp_path / "bucket"
    uri = f"file://{bucket}"
    old, new = _checkpoint_like(tmp_path / "old", "old"), _checkpoint_like(tmp_path / "new", "new")
    v1 = upload_dir(old, uri)
    seen: list[dict[str, bytes]] = []
    real_open = storage._open

    class Spy:  # a filesystem whose every write lets a reader download the checkpoint first
        def __init__(self, fs):
            self._fs = fs

        def __getattr__(self, name):
            return getattr(self._fs, name)

        def open_output_stream(self, path):
            seen.append(_files(download_dir(uri, tmp_path / f"read-{len(seen)}")))
            return self._fs.open_output_stream(path)

    monkeypatch.setattr(storage, "_open", lambda u: (Spy(real_open(u)[0]), real_open(u)[1]))
    v2 = upload_dir(new, uri)  # not a LocalFileSystem any more: the object-store path (one PUT)
    monkeypatch.setattr(storage, "_open", real_open)
    assert len(seen) == len(_files(new)) + 1 and all(s == _files(old) for s in seen)
    assert _files(download_dir(uri, tmp_path / "after")) == _files(new)
    assert sorted(p.name for p in (bucket / "versions").iterdir()) == sorted(
        [v1, v2]
    )  # the replaced one kept
    v3 = upload_dir(old, uri)
    assert sorted(p.name for p in (bucket / "versions").iterdir()) == sorted([v2, v3])  # older ones deleted


def test_a_failed_upload_leaves_the_checkpoint_readers_load(tmp_path, monkeypatch):
    bucket = tmp_path / "bucket"
    uri = f"file://{bucket}"
    upload_dir(_checkpoint_like(tmp_path / "old", "old"), uri)
    before = _files(bucket)
    real_open = storage._open
    calls = []

    class Full:
        def __init__(self, fs):
            self._fs = fs

        def __getattr__(self, name):
            return getattr(self._fs, name)

        def open_output_stream(self, path):
            calls.append(path)
            if len(calls) == 3:
                raise OSError("No space left on device")
            return self._fs.open_output_stream(path)

    monkeypatch.setattr(storage, "_open", lambda u: (Full(real_open(u)[0]), real_open(u)[1]))
    with pytest.raises(
        ModelSATError, match=r"No space left on device \(the checkpoint readers load .* unchanged\)"
    ):
        upload_dir(_checkpoint_like(tmp_path / "new", "new"), uri)
    assert _files(bucket) == before


def test_a_file_that_does_not_match_the_manifest_is_a_checkpoint_error(
    tiny_checkpoint, tmp_path, monkeypatch
):
    bucket = tmp_path / "bucket"
    uri = f"file://{bucket}"
    version = upload_dir(tiny_checkpoint, uri)
    (bucket / "versions" / version / "profiles.json").write_text("{}")  # changed behind the manifest's back
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(
        CheckpointError,
        match=rf"router checkpoint '{uri}': '{uri}': profiles\.json of version {version} does not match "
        rf"{MANIFEST_FILE} \(sha256 [0-9a-f]{{64}}, 2 bytes; the manifest says sha256",
    ):
        RouterCheckpoint.load(uri)
    assert list(scratch.iterdir()) == []  # no partial copy left
    (bucket / "versions" / version / "profiles.json").unlink()
    with pytest.raises(CheckpointError, match=r"profiles\.json of version .* is missing although"):
        download_dir(uri, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    (bucket / MANIFEST_FILE).write_text('["not", "an", "object"]')
    with pytest.raises(CheckpointError, match=rf"{MANIFEST_FILE} is a JSON list, expected an object"):
        download_dir(uri, tmp_path / "y")
    manifest = {"format": 1, "version": version, "files": {"../escape": {"sha256": "0" * 64, "bytes": 1}}}
    (bucket / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"file path '\.\./escape' is not a relative path inside"):
        download_dir(uri, tmp_path / "z")


def test_a_local_checkpoint_replaced_while_it_is_read_is_read_again(tiny_checkpoint, tmp_path, monkeypatch):
    from modelsat.paths import atomic_output_dir

    real = RouterCheckpoint._load_dir.__func__
    calls = []

    def replaced_midway(cls, path, device, name):
        ckpt = real(cls, path, device, name)
        if not calls:  # a `modelsat train --out` renames a new checkpoint over it while we read
            with atomic_output_dir(path) as tmp:
                shutil.copytree(path, tmp, dirs_exist_ok=True)
                training = json.loads((tmp / "training.json").read_text())
                (tmp / "training.json").write_text(json.dumps({**training, "seed": 7}))
        calls.append(path)
        return ckpt

    monkeypatch.setattr(RouterCheckpoint, "_load_dir", classmethod(replaced_midway))
    ckpt = RouterCheckpoint.load(tiny_checkpoint)
    assert len(calls) == 2 and ckpt.training["seed"] == 7  # the new one, read whole


def test_train_out_never_replaces_a_directory_that_is_not_a_checkpoint(tiny_checkpoint, toy_data, tmp_path):
    from typer.testing import CliRunner

    from modelsat.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("mine")
    result = CliRunner().invoke(
        app, ["train", "--data", str(toy_data), "--out", str(docs), "--max-steps", "1"]
    )
    assert result.exit_code == 2 and "is not a router checkpoint (no config.json)" in result.stderr
    with pytest.raises(
        CheckpointError, match=r"refusing to replace '.*docs': it exists and is not a router checkpoint"
    ):
        RouterCheckpoint.load(tiny_checkpoint).save(docs)
    assert _files(docs) == {"notes.txt": b"mine"}
    check_replaceable(tiny_checkpoint)  # an existing checkpoint may be replaced
    check_replaceable(tmp_path / "new")
    upload_dir(tiny_checkpoint, f"file://{tmp_path}/bucket")
    with pytest.raises(CheckpointError, match=r"holds uploaded checkpoint versions .*give --out file://"):
        check_replaceable(tmp_path / "bucket")


def test_missing_uri_is_a_checkpoint_error_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"router checkpoint 'file://.*/nothing-here'.*not a directory"):
        RouterCheckpoint.load(f"file://{tmp_path}/nothing-here")


def test_download_refuses_a_non_empty_destination(tiny_checkpoint, tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    with pytest.raises(ModelSATError, match="copying"):
        download_dir(f"file://{tiny_checkpoint}", dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dest.")]  # no temporary copy left


def test_unknown_scheme_is_an_error():
    with pytest.raises(ModelSATError, match="cannot be opened as a filesystem URI"):
        download_dir("nosuchfs://bucket/x")
