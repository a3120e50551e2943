"""Router checkpoints at URIs (modelsat.storage): upload, download, load, and the CLI's --out URI."""

from __future__ import annotations

import pytest

from modelsat.errors import CheckpointError, ModelSATError
from modelsat.router import RouterCheckpoint
from modelsat.storage import download_dir, is_uri, upload_dir


def test_is_uri():
    assert is_uri("s3://bucket/x") and is_uri("file:///tmp/x")
    assert not is_uri("/models/router") and not is_uri("runs/ckpt")


def test_a_checkpoint_round_trips_through_a_file_uri(tiny_checkpoint, tmp_path):
    uri = f"file://{tmp_path}/bucket/routers/toy"
    upload_dir(tiny_checkpoint, uri)
    copied = sorted(
        p.relative_to(tmp_path / "bucket/routers/toy") for p in (tmp_path / "bucket/routers/toy").rglob("*")
    )
    assert copied == sorted(p.relative_to(tiny_checkpoint) for p in tiny_checkpoint.rglob("*"))
    local = download_dir(uri, tmp_path / "local")
    assert (local / "config.json").read_bytes() == (tiny_checkpoint / "config.json").read_bytes()
    ckpt = RouterCheckpoint.load(uri)  # a temporary copy
    assert sorted(ckpt.profiles) == sorted(RouterCheckpoint.load(tiny_checkpoint).profiles)


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
