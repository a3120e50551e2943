import json

import numpy as np
import pytest
import torch

from modelsat.aptitude import AptitudeConfig, measure_profiles, select_aptitude_test
from modelsat.data import load_routing_data
from modelsat.errors import CheckpointError, RoutingError, UnknownModelError
from modelsat.router import (
    Router,
    RouterCheckpoint,
    RouterModel,
    RouterSpec,
    new_router,
    tokenize_instructions,
)
from modelsat.router.build import SentenceEncoder
from modelsat.split import split_routing_data

T = 4
INSTRUCTIONS = [
    "Solve for x: 3x + 2 = 11.",
    "Which organelle makes ATP?",
    "Is the contract void under the statute?",
]


def _router(backbone, kind="encoder", seed=0):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    spec = RouterSpec(backbone_type=kind, backbone=str(backbone), router_hidden_size=16, num_heads=2)
    emb = rng.normal(size=(T, 12)).astype(np.float32)
    model, tok = new_router(spec, emb, np.full(T, 0.5), np.full(T, 0.2))
    for p in model.connector.parameters():  # make capability tokens matter in a random model
        torch.nn.init.normal_(p, std=0.5)
    return model, tok


@pytest.mark.parametrize("kind", ["encoder", "causal_lm"])
def test_dense_scores_equal_pair_scores(kind, tiny_bert, tiny_llama):
    model, tok = _router(tiny_bert if kind == "encoder" else tiny_llama, kind)
    acc = torch.rand(5, T)
    with torch.no_grad():
        enc = model.encode_instructions(**tokenize_instructions(tok, INSTRUCTIONS, model.config))
        caps = model.encode_profiles(acc)
        dense = model.score(enc, caps)
        qi, mi = torch.tensor([2, 0, 1, 1]), torch.tensor([4, 0, 3, 3])
        pairs = model.score_pairs(enc, caps, qi, mi)
    assert dense.shape == (3, 5)
    assert torch.allclose(dense[qi, mi], pairs, atol=1e-5)
    assert dense.std() > 0, "different candidates get different scores"


def test_causal_prefix_sharing_equals_full_sequence(tiny_llama):
    """The instruction's keys/values computed once and reused per candidate give the same Yes-vs-No logit as
    reading [instruction][capability tokens][inquiry] in one pass per pair."""
    model, tok = _router(tiny_llama, "causal_lm")
    cfg = model.config
    acc = torch.rand(3, T)
    t = tokenize_instructions(tok, INSTRUCTIONS, cfg)  # left-padded, different lengths
    with torch.no_grad():
        shared = model.score(model.encode_instructions(**t), model.encode_profiles(acc))
        emb = model.backbone.get_input_embeddings()
        caps = model.encode_profiles(acc)
        pre = emb(torch.tensor(cfg.capability_prefix_token_ids))
        inq = emb(torch.tensor(cfg.inquiry_token_ids))
        for i in range(3):
            n = int(t["attention_mask"][i].sum())
            ids = t["input_ids"][i, -n:]  # the real (unpadded) tokens
            for j in range(3):
                seq = torch.cat([emb(ids), pre, caps.tokens[j], inq]).unsqueeze(0)
                logits = model.backbone(inputs_embeds=seq).logits[0, -1]
                full = logits[cfg.yes_token_id] - logits[cfg.no_token_id]
                assert torch.allclose(full, shared[i, j], atol=1e-4), (i, j, float(full), float(shared[i, j]))


def test_the_encoder_backbone_pools_as_the_capability_encoder_psi(tiny_bert):
    """A frozen encoder backbone loaded from ψ's weights gives ψ's sentence embeddings: what lets the
    training and evaluation paths reuse ψ's cached encodings for the router (`shares_psi`)."""
    model, tok = _router(tiny_bert)
    t = tokenize_instructions(tok, INSTRUCTIONS, model.config)
    with torch.no_grad():
        pooled = model.encode_instructions(**t).pooled.numpy()
    psi = SentenceEncoder(str(tiny_bert), model.config.max_instruction_tokens)(INSTRUCTIONS)
    assert pooled.shape == psi.shape and np.allclose(pooled, psi, atol=1e-5)
    assert np.allclose(np.linalg.norm(psi, axis=1), 1.0, atol=1e-5)


def test_frozen_backbone_has_no_trainable_parameters(tiny_bert):
    model, _ = _router(tiny_bert)
    assert model.backbone_frozen
    assert any(p.requires_grad for p in model.connector.parameters())
    model.freeze_backbone(1)
    assert not model.backbone_frozen


def test_profiles_must_match_the_aptitude_test(tiny_bert):
    model, _ = _router(tiny_bert)
    with pytest.raises(ValueError, match="profiles have 3 tasks; this router's aptitude test has 4"):
        model.encode_profiles(torch.rand(2, 3))


@pytest.fixture
def checkpoint(tmp_path, toy_data, tiny_bert):
    zoo = load_routing_data(toy_data)
    split = split_routing_data(zoo, 0, 0.2)
    test = select_aptitude_test(zoo, split.pool, zoo.models, AptitudeConfig(n_tasks=T, items_per_task=5))
    model, tok = _router(tiny_bert)
    ckpt = RouterCheckpoint(
        model=model,
        tokenizer=tok,
        aptitude=test,
        profiles=measure_profiles(test, zoo),
        training={"seed": 0, "train_ids": ["x"], "validation_ids": []},
    )
    path = ckpt.save(tmp_path / "ckpt")
    return path, ckpt


def test_checkpoint_roundtrip_is_self_contained(checkpoint):
    path, ckpt = checkpoint
    assert RouterModel.from_pretrained(path) is not None  # loads from the folder alone
    loaded = RouterCheckpoint.load(path)
    acc = torch.as_tensor(np.stack([p.accuracies for p in ckpt.profiles.values()]))
    t = tokenize_instructions(loaded.tokenizer, INSTRUCTIONS, loaded.model.config)
    with torch.no_grad():
        assert torch.allclose(ckpt.model(**t, accuracies=acc), loaded.model(**t, accuracies=acc), atol=1e-6)
    assert loaded.aptitude == ckpt.aptitude and set(loaded.profiles) == set(ckpt.profiles)
    assert "x" in loaded.used_question_ids and set(ckpt.aptitude.question_ids) <= loaded.used_question_ids


def test_checkpoint_errors(checkpoint, tmp_path):
    path, _ = checkpoint
    with pytest.raises(CheckpointError, match="does not exist"):
        RouterCheckpoint.load(tmp_path / "missing")
    (path / "profiles.json").unlink()
    with pytest.raises(CheckpointError, match="incomplete: missing profiles.json"):
        RouterCheckpoint.load(path)


def test_checkpoint_incompatible_version(checkpoint):
    path, _ = checkpoint
    cfg = json.loads((path / "config.json").read_text())
    cfg["modelsat_format"] = 99
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="modelsat_format=99; this version of modelsat reads format 1"):
        RouterCheckpoint.load(path)


def test_router_routes_and_checks_input(checkpoint):
    path, _ = checkpoint
    router = Router(RouterCheckpoint.load(path))
    decisions = router.route(INSTRUCTIONS)
    assert len(decisions) == 3
    for d in decisions:
        assert d.model_id == d.ranked()[0] and set(d.scores) == set(router.candidates)
        assert all(0.0 <= p <= 1.0 for p in d.p_correct.values())
    sub = router.route(INSTRUCTIONS[:1], candidates=["beta", "gamma"])[0]
    assert sub.model_id in ("beta", "gamma") and set(sub.scores) == {"beta", "gamma"}
    with pytest.raises(RoutingError, match="instruction 1 is empty"):
        router.route(["fine", "   "])
    with pytest.raises(RoutingError, match="no instructions"):
        router.route([])
    with pytest.raises(UnknownModelError, match="unknown candidate model 'zeta'; known: alpha"):
        router.route(INSTRUCTIONS, candidates=["zeta"])


def test_cost_weight_moves_the_choice_to_cheaper_models(checkpoint):
    path, _ = checkpoint
    router = Router(RouterCheckpoint.load(path))
    scores = router.scores(INSTRUCTIONS)
    costs = np.array([1.0, 0.0, 0.0, 0.0, 0.0]) * 1e-3  # alpha is expensive
    free = router.decide(scores, cost_weight=0.0)
    pricey = router.decide(scores, cost_weight=1e6, expected_cost_usd=costs)
    assert all(d.model_id != "alpha" for d in pricey)
    assert [d.model_id for d in free] == [router.candidates[i] for i in scores.argmax(1)]
    with pytest.raises(RoutingError, match="cost_weight=-1"):
        router.decide(scores, cost_weight=-1)


def test_the_defer_margin_keeps_the_best_candidate_by_profile_and_ranks_it_first(checkpoint):
    path, _ = checkpoint
    router = Router(RouterCheckpoint.load(path))
    scores = router.scores(INSTRUCTIONS)
    anchor = max(router.estimated_accuracy, key=router.estimated_accuracy.get)
    router.model.config.defer_margin = 1.0  # p in [0, 1]: nothing beats the anchor by more than 1
    decisions = router.decide(scores)
    assert all(d.model_id == anchor and d.ranked()[0] == anchor for d in decisions)
    assert all(sorted(d.ranked()) == sorted(router.candidates) for d in decisions)
    others = [m for m in router.candidates if m != anchor]
    sub = router.decide(router.scores(INSTRUCTIONS, others), others)  # the anchor of this candidate set
    best_other = max(others, key=router.estimated_accuracy.get)
    assert all(d.model_id == best_other for d in sub)
    costs = np.zeros(len(router.candidates))
    with_cost = router.decide(scores, cost_weight=1.0, expected_cost_usd=costs)  # λ > 0: argmax p − λ·cost
    assert [d.model_id for d in with_cost] == [router.candidates[i] for i in scores.argmax(1)]


def test_dominating_profile_never_loses_by_more_than_the_residual_bound(tiny_bert):
    """The IRT part is monotone in every task accuracy and the correction is bounded by c, so a candidate at
    least as accurate on every task scores at least score(A) - 2c, for any instruction and any weights."""
    model, tok = _router(tiny_bert)
    c = model.config.residual_bound
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.head.parameters():  # arbitrary weights, as after any training
            p.add_(torch.randn(p.shape, generator=gen))
        enc = model.encode_instructions(**tokenize_instructions(tok, INSTRUCTIONS, model.config))
        a = torch.rand(50, T, generator=gen)
        b = (a + torch.rand(50, T, generator=gen) * (1 - a)).clamp(max=1.0)  # b >= a on every task
        sa = model.score(enc, model.encode_profiles(a))
        sb = model.score(enc, model.encode_profiles(b))
    assert (sb >= sa - 2 * c - 1e-5).all()


def test_checkpoint_with_mismatched_weights_is_refused(checkpoint):
    """A checkpoint from another architecture must not load with silently re-initialised weights."""
    from safetensors.torch import load_file, save_file

    path, _ = checkpoint
    weights = load_file(path / "model.safetensors")
    dropped = [k for k in weights if k.startswith("head.discrimination")]
    save_file(
        {k: v for k, v in weights.items() if k not in dropped},
        path / "model.safetensors",
        metadata={"format": "pt"},
    )
    with pytest.raises(
        CheckpointError,
        match=r"does not match this version's architecture \(missing weights: head\.discrimination",
    ):
        RouterCheckpoint.load(path)
