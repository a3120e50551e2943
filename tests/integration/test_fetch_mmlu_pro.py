"""`modelsat data fetch mmlu-pro` against a local HTTP server on 127.0.0.1 (no internet): resumable downloads,
checksums, nothing half-written; and the newcomer's `modelsat run --fetch-data`."""

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from modelsat.cli import app
from modelsat.data import load_routing_data
from modelsat.data.download import Manifest, fetch_file
from modelsat.data.mmlu_pro import archive_name, fetch_mmlu_pro
from modelsat.errors import DataError
from tests.conftest import SHARED_DATA
from tests.mmlu_pro_archives import archives_from_shared, write_archive

pytestmark = pytest.mark.integration
runner = CliRunner()


class ArchiveServer:
    """Serves bytes by file name; honours `Range: bytes=N-` (206) unless `ranges` is False; can cut a response."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.ranges = True
        self.cut_after: int | None = None  # send only this many bytes of the next response, then close
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                start = int(rng.split("=")[1].rstrip("-")) if rng and server.ranges else 0
                if start >= len(data) and start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if server.cut_after is not None:
                    body, server.cut_after = body[: server.cut_after], None
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/eval_results"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = ArchiveServer()
    yield s
    s.close()


def _records(n: int, model_bias: int) -> list[dict]:
    out = []
    for i in range(n):
        gold = "ABCD"[i % 4]
        right = (i + model_bias) % 3 != 0
        out.append(
            {
                "question_id": 100 + i,
                "question": f"Question number {i}: which option is the right one?",
                "options": [f"option {k} of {i}" for k in range(4)],
                "answer": gold,
                "answer_index": "ABCD".index(gold),
                "cot_content": "",
                "category": ["math", "law"][i % 2],
                "src": ["ori_mmlu-algebra", "ori_mmlu-law"][i % 2],
                "pred": gold if right else ("A" if gold != "A" else "B"),
                "generated_text": "x" * 1000 + f"The answer is ({gold}).",
            }
        )
    return out


def _publish(server: ArchiveServer, tmp_path: Path, models: list[str], n: int = 40) -> dict[str, bytes]:
    for i, m in enumerate(models):
        p = write_archive(tmp_path / "built" / archive_name(m), _records(n, i))
        server.files[p.name] = p.read_bytes()
    return server.files


def test_resume_after_a_truncated_partial_file(server, tmp_path):
    files = _publish(server, tmp_path, ["Yi-6B", "gemma-7b"])
    cache = tmp_path / "cache"
    cache.mkdir()
    name_a = archive_name("Yi-6B")
    half = len(files[name_a]) // 2
    (cache / f"{name_a}.part").write_bytes(files[name_a][:half])  # an interrupted earlier download
    report = fetch_mmlu_pro(tmp_path / "zoo", ["Yi-6B", "gemma-7b"], cache, server.url)
    assert (name_a, f"bytes={half}-") in server.requests
    assert (cache / name_a).read_bytes() == files[name_a] and not (cache / f"{name_a}.part").exists()
    manifest = json.loads((cache / "manifest.json").read_text())["files"]
    assert manifest[name_a]["sha256"] == hashlib.sha256(files[name_a]).hexdigest()
    assert report.models == ["Yi-6B", "gemma-7b"] and report.n_questions == 40
    assert load_routing_data(tmp_path / "zoo").n_models == 2
    # a second fetch reuses the verified archives: no request at all
    server.requests.clear()
    fetch_mmlu_pro(tmp_path / "zoo", ["Yi-6B", "gemma-7b"], cache, server.url, replace=True)
    assert server.requests == []


def test_cut_download_resumes_on_the_next_run(server, tmp_path):
    files = _publish(server, tmp_path, ["Yi-6B"])
    name = archive_name("Yi-6B")
    manifest = Manifest(tmp_path / "cache")
    server.cut_after = 1000
    with pytest.raises(DataError, match=r"stopped at 1,000 of [\d,]+ bytes; run the command again to resume"):
        fetch_file(f"{server.url}/{name}", tmp_path / "cache" / name, manifest)
    assert (tmp_path / "cache" / f"{name}.part").stat().st_size == 1000 and not (
        tmp_path / "cache" / name
    ).exists()
    got = fetch_file(f"{server.url}/{name}", tmp_path / "cache" / name, manifest)
    assert got.how == "resumed" and (tmp_path / "cache" / name).read_bytes() == files[name]


def test_server_without_range_support_restarts_cleanly(server, tmp_path):
    files = _publish(server, tmp_path, ["Yi-6B"])
    name = archive_name("Yi-6B")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"{name}.part").write_bytes(b"garbage from another file")
    server.ranges = False
    got = fetch_file(f"{server.url}/{name}", tmp_path / "cache" / name, Manifest(tmp_path / "cache"))
    assert got.how == "downloaded" and (tmp_path / "cache" / name).read_bytes() == files[name]


def test_partial_file_longer_than_the_file_starts_over(server, tmp_path):
    files = _publish(server, tmp_path, ["Yi-6B"])
    name = archive_name("Yi-6B")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"{name}.part").write_bytes(b"x" * (len(files[name]) + 10))
    got = fetch_file(f"{server.url}/{name}", tmp_path / "cache" / name, Manifest(tmp_path / "cache"))
    assert [r for _, r in server.requests] == [f"bytes={len(files[name]) + 10}-", None]  # 416, then all of it
    assert got.how == "downloaded" and (tmp_path / "cache" / name).read_bytes() == files[name]


def test_checksum_mismatch_is_a_clear_error_and_nothing_is_half_written(server, tmp_path):
    _publish(server, tmp_path, ["Yi-6B", "gemma-7b"])
    cache = tmp_path / "cache"
    fetch_mmlu_pro(tmp_path / "zoo", ["Yi-6B", "gemma-7b"], cache, server.url)
    before = {p.name: p.read_bytes() for p in (tmp_path / "zoo").iterdir()}
    name_b = archive_name("gemma-7b")
    # the server now sends other bytes than the ones recorded when gemma-7b was first downloaded
    (cache / name_b).unlink()
    server.files[name_b] = write_archive(tmp_path / "other" / name_b, _records(40, 2)).read_bytes()
    with pytest.raises(
        DataError, match=r"checksum mismatch for http://127\.0\.0\.1:\d+/eval_results/model_outputs_gemma-7b"
    ):
        fetch_mmlu_pro(tmp_path / "zoo", ["Yi-6B", "gemma-7b"], cache, server.url, replace=True)
    assert not (cache / name_b).exists() and not (cache / f"{name_b}.part").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "zoo").iterdir()} == before
    # a cached archive that changed on disk is refused too
    (cache / archive_name("Yi-6B")).write_bytes(b"corrupted")
    with pytest.raises(
        DataError, match=r"checksum mismatch for cached .*the file changed on disk: delete it"
    ):
        fetch_mmlu_pro(tmp_path / "zoo2", ["Yi-6B"], cache, server.url)
    assert not (tmp_path / "zoo2").exists()


def test_cli_fetch(server, tmp_path):
    _publish(server, tmp_path, ["Yi-6B", "gemma-7b"])
    args = ["data", "fetch", "mmlu-pro", "--out", str(tmp_path / "zoo"), "--cache-dir", str(tmp_path / "c")]
    ok = runner.invoke(app, [*args, "--models", "Yi-6B,gemma-7b", "--base-url", server.url])
    assert ok.exit_code == 0, ok.output
    assert "zoo: 40 questions × 2 models (added Yi-6B, gemma-7b)" in ok.stdout
    unknown = runner.invoke(app, [*args, "--models", "Yi-6B,gpt-9", "--base-url", server.url])
    assert (
        unknown.exit_code == 2
        and "unknown MMLU-Pro model 'gpt-9'; allowed: c4ai-command-r-v01" in unknown.stderr
    )
    missing = runner.invoke(app, [*args, "--models", "Yi-34B", "--base-url", server.url, "--replace"])
    assert missing.exit_code == 2 and "model_outputs_Yi-34B_5shots.zip: HTTP 404" in missing.stderr


def test_newcomer_main_job_fetches_the_public_data(server, tmp_path, monkeypatch, tiny_bert):
    """`modelsat run --fetch-data` without a data root: fetch the archives, import, train, evaluate."""
    import modelsat.data.mmlu_pro as mp

    models = ["gemini-1.5-pro-002", "DeepSeek-Coder-V2", "Llama-2-7b-hf", "Yi-6B"]
    ids = pq.read_table(SHARED_DATA / "mmlu_pro" / "questions.parquet", columns=["question_id"])[
        "question_id"
    ]
    for p in archives_from_shared(
        SHARED_DATA / "mmlu_pro", tmp_path / "built", ids.to_pylist()[::40], models
    ).values():
        server.files[p.name] = p.read_bytes()
    monkeypatch.setattr(mp, "DEFAULT_BASE_URL", server.url)
    monkeypatch.setattr(mp, "SHARED_ZOO_MODELS", tuple(models))
    monkeypatch.setenv("MODELSAT_DATA", str(tmp_path / "data"))  # does not exist yet
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "data: {routing_data: mmlu_pro, unseen_models: [Yi-6B]}\n"
        "aptitude: {n_tasks: 10, items_per_task: 3}\n"
        f"router: {{backbone: {tiny_bert}, capability_encoder: {tiny_bert}, router_hidden_size: 16, num_heads: 2}}\n"
        "train: {max_steps: 20, eval_every: 10, groups_per_step: 8}\n"
        "eval: {baselines: [knn]}\n"
    )
    no_data = runner.invoke(app, ["run", "--config", str(config), "--out", str(tmp_path / "run")])
    assert no_data.exit_code == 2 and "modelsat data fetch mmlu-pro --out" in no_data.stderr
    result = runner.invoke(
        app, ["run", "--config", str(config), "--out", str(tmp_path / "run"), "--fetch-data"]
    )
    assert result.exit_code == 0, result.output
    assert load_routing_data(tmp_path / "data" / "mmlu_pro").n_questions == 206
    report = json.loads((tmp_path / "run" / "report" / "report.json").read_text())
    assert report["unseen_models"] == ["Yi-6B"] and len(report["models"]) == 4
