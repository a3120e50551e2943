"""Bring-your-own-outcomes throughput: how long fetching, importing, extending and checking a zoo take.

Each step runs in a fresh process (so its peak RSS is its own) on inputs built beforehand in a temporary
directory, in the layouts the importers read (`modelsat.data.mmlu_pro`, `modelsat.data.lmeval`):

- `fetch mmlu-pro`: `fetch_mmlu_pro_archives` of the 24 archives of the shared `mmlu_pro` zoo rebuilt from its
  rows (8,224 questions each), served by a local HTTP server on 127.0.0.1 (download + SHA-256 + manifest; the
  network itself is not measured), then the same call again on the filled cache (verification only);
- `import mmlu-pro`: the 24 archives → a new zoo (read, merge, checks, atomic write);
- `import mmlu-pro (extend)`: one more archive into the 23-model zoo (what adding a model costs);
- `import lm-eval`: `--models` synthetic lm-evaluation-harness `--log_samples` runs of 4 tasks × `--docs`
  documents each (ARC, MMLU, Winogrande, GSM8K with two filters);
- `data validate` / `data stats` on the imported 24-model zoo.

    .venv/bin/python -m benchmarks.bench_data_import [--models 10] [--docs 2000] [--out result.json]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import multiprocessing
import platform
import resource
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from benchmarks.common import git_commit
from modelsat.data import (
    MergeReport,
    import_outcomes,
    lm_eval_models,
    load_routing_data,
    mmlu_pro_models,
    routing_data_stats,
    validate_routing_data,
)
from modelsat.data.mmlu_pro import fetch_mmlu_pro_archives
from modelsat.paths import data_root
from tests.lmeval_logs import write_lm_eval_logs
from tests.mmlu_pro_archives import archives_from_shared

TASKS = ("arc_easy", "mmlu_anatomy", "winogrande", "gsm8k")


def _peak_rss_mib() -> float:
    """Peak RSS of this process's own address space (VmHWM; ru_maxrss would include the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: ru_maxrss, in KiB


def _timed(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    t0 = time.perf_counter()
    out = fn()
    return {**out, "wall_s": time.perf_counter() - t0, "peak_rss_mib": _peak_rss_mib()}


def _fetch(base_url: str, models: list[str], cache: str) -> dict[str, Any]:
    files = fetch_mmlu_pro_archives(models, Path(cache), base_url)
    how = sorted({f.how for f in files})
    return {"models": len(files), "bytes": sum(f.bytes for f in files), "how": ",".join(how)}


def _summary(report: MergeReport) -> dict[str, Any]:
    return {
        "models": len(report.models),
        "questions": report.n_questions,
        "dropped": sum(report.dropped.values()),
    }


def _import_mmlu(archives: list[str], out: str) -> dict[str, Any]:
    return _summary(import_outcomes(mmlu_pro_models([Path(a) for a in archives]), Path(out)))


def _import_lm_eval(logs: str, out: str) -> dict[str, Any]:
    sets = lm_eval_models([Path(logs)], filter_name="strict-match", metrics=("acc", "exact_match"))
    return _summary(import_outcomes(sets, Path(out)))


def _validate(zoo: str) -> dict[str, Any]:
    problems = validate_routing_data(Path(zoo))
    n_models = pq.read_metadata(Path(zoo) / "models.parquet").num_rows
    n_questions = pq.read_metadata(Path(zoo) / "questions.parquet").num_rows
    return {"models": n_models, "questions": n_questions, "problems": len(problems)}


def _stats(zoo: str) -> dict[str, Any]:
    stats = routing_data_stats(load_routing_data(Path(zoo)))
    return {"models": stats["n_models"], "questions": stats["n_questions"]}


def _in_fresh_process(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_timed, functools.partial(fn, *args)).result()


@contextlib.contextmanager
def _http_server(directory: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=None, help="shared mmlu_pro zoo (default: <data root>/mmlu_pro)"
    )
    parser.add_argument("--models", type=int, default=10, help="synthetic lm-eval models")
    parser.add_argument("--docs", type=int, default=2000, help="documents per lm-eval task")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args()
    shared = args.data or data_root() / "mmlu_pro"
    models = pq.read_table(shared / "models.parquet")["model"].to_pylist()
    n_questions = pq.read_metadata(shared / "questions.parquet").num_rows

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-data-import-") as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        archives = archives_from_shared(shared, tmp_path / "served", None, models, members=14)
        lm_models = tuple(f"org/model-{i:02d}" for i in range(args.models))
        write_lm_eval_logs(tmp_path / "lm_eval", models=lm_models, tasks=TASKS, n_per_task=args.docs)
        setup_s = time.perf_counter() - t0

        with _http_server(tmp_path / "served") as url:
            for label in ("fetch mmlu-pro (download)", "fetch mmlu-pro (cached, verify)"):
                r = _in_fresh_process(_fetch, url, models, str(tmp_path / "cache"))
                rows.append(
                    {"step": label, "questions": n_questions, "outcomes": n_questions * len(models), **r}
                )

        paths = [str(archives[m]) for m in models]
        r = _in_fresh_process(_import_mmlu, paths, str(tmp_path / "zoo24"))
        rows.append({"step": "import mmlu-pro (new zoo)", "outcomes": r["questions"] * r["models"], **r})
        _in_fresh_process(_import_mmlu, paths[:-1], str(tmp_path / "zoo23"))  # the zoo to extend (not timed)
        r = _in_fresh_process(_import_mmlu, paths[-1:], str(tmp_path / "zoo23"))
        rows.append({"step": "import mmlu-pro (extend 23 → 24)", "outcomes": r["questions"], **r})
        r = _in_fresh_process(_import_lm_eval, str(tmp_path / "lm_eval"), str(tmp_path / "lm_zoo"))
        rows.append({"step": "import lm-eval", "outcomes": r["questions"] * r["models"], **r})
        for label, fn in (("data validate", _validate), ("data stats", _stats)):
            r = _in_fresh_process(fn, str(tmp_path / "zoo24"))
            rows.append({"step": label, "outcomes": r["questions"] * r["models"], **r})

    print(
        f"### Bring-your-own-outcomes throughput (commit {git_commit()}, {platform.processor() or platform.machine()}, "
        f"{multiprocessing.cpu_count()} cores; mmlu_pro rebuilt as {len(models)} archives of {n_questions:,} questions; "
        f"lm-eval: {args.models} models × {len(TASKS)} tasks × {args.docs:,} documents; inputs built in {setup_s:.0f} s)\n"
    )
    print("| step | models | questions | outcomes | wall s | outcomes/s | MB/s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mb_s = f"{r['bytes'] / 1e6 / r['wall_s']:,.0f}" if "bytes" in r else "–"
        print(
            f"| {r['step']} | {r['models']} | {r['questions']:,} | {r['outcomes']:,} | {r['wall_s']:.2f} | "
            f"{r['outcomes'] / r['wall_s']:,.0f} | {mb_s} | {r['peak_rss_mib']:.0f} |"
        )
    if args.out:
        args.out.write_text(json.dumps({"commit": git_commit(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
