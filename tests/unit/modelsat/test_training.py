import numpy as np
import pytest
import torch

from modelsat.objective import GroupSampler, compute_loss
from modelsat.router import RouterSpec, new_router
from modelsat.router.calibration import fit_calibration
from modelsat.router.encodings import InstructionEncoding
from modelsat.training import TrainConfig, train_router


def test_groups_follow_the_paper_and_model_contrast():
    rng = np.random.default_rng(0)
    y = (rng.random((200, 6)) < 0.4).astype(np.float32)
    s = GroupSampler(y, group_size=4, groups_per_step=32, seed=0)
    b = s.sample()
    rows = b.questions
    # instruction groups (paper Eq. 5): one instruction the model got right, k-1 it got wrong
    for q, m in zip(b.inst_q, b.inst_m, strict=True):
        assert y[rows[q[0]], m] == 1 and (y[rows[q[1:]], m] == 0).all()
    # model groups: one model right on the instruction, k-1 wrong
    for q, ms in zip(b.model_q, b.model_m, strict=True):
        assert y[rows[q], ms[0]] == 1 and (y[rows[q], ms[1:]] == 0).all()
    assert np.allclose(b.point_y, y[rows[b.point_q], b.point_m])


def test_sampler_rejects_data_without_contrast():
    with pytest.raises(ValueError, match="nothing to contrast"):
        GroupSampler(np.ones((10, 3)), 4, 8, 0)


def _toy_router(tiny_bert, t=3):
    torch.manual_seed(0)
    spec = RouterSpec(backbone=str(tiny_bert), router_hidden_size=16, num_heads=2)
    return new_router(spec, np.eye(t, 8, dtype=np.float32), np.full(t, 0.5), np.full(t, 0.25))[0]


def test_training_learns_which_model_is_right(tiny_bert):
    """Two instruction clusters; model 0 is right on cluster A, model 1 on cluster B. Profiles say so."""
    rng = np.random.default_rng(0)
    n = 200
    cluster = rng.integers(0, 2, n)
    x = torch.nn.functional.normalize(
        torch.randn(n, 64) + 3 * torch.as_tensor(np.eye(2, 64)[cluster], dtype=torch.float32), dim=-1
    )
    y = np.stack([cluster == 0, cluster == 1], 1).astype(np.float32)
    acc = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]], dtype=np.float32)
    model = _toy_router(tiny_bert)

    def validate(m):
        s = m.score(InstructionEncoding(pooled=x), m.encode_profiles(torch.as_tensor(acc)))
        return {"routing_accuracy": float(y[np.arange(n), s.argmax(1).numpy()].mean())}

    cfg = TrainConfig(
        max_steps=150,
        eval_every=50,
        groups_per_step=16,
        learning_rate=5e-3,
        profile_noise=False,
        task_dropout=0.0,
    )
    result = train_router(
        model, lambda rows: InstructionEncoding(pooled=x[rows]), y, acc, np.array([10, 10, 10]), validate, cfg
    )
    assert result.best_validation["routing_accuracy"] > 0.95
    assert result.history[0]["loss"] > result.history[-1]["loss"]


def test_loss_terms_follow_the_weights(tiny_bert):
    model = _toy_router(tiny_bert)
    y = (np.random.default_rng(1).random((50, 2)) < 0.5).astype(np.float32)
    batch = GroupSampler(y, 4, 8, 0).sample()
    enc = InstructionEncoding(
        pooled=torch.nn.functional.normalize(torch.randn(len(batch.questions), 64), dim=-1)
    )
    acc, k = torch.rand(2, 3), torch.full((3,), 20.0)
    only_paper = TrainConfig(model_group_weight=0, pointwise_weight=0, instruction_group_weight=1)
    _, parts = compute_loss(model, enc, batch, acc, k, only_paper, torch.Generator().manual_seed(0))
    assert set(parts) == {"loss", "instruction_ce"}
    _, parts = compute_loss(model, enc, batch, acc, k, TrainConfig(), torch.Generator().manual_seed(0))
    assert set(parts) == {"loss", "instruction_ce", "model_ce", "pointwise_bce"}
    # each weight scales its own term: same batch, no dropout or profile noise, one weight changed at a time
    model.eval()
    base = {"task_dropout": 0.0, "profile_noise": False}
    w = {"instruction_group_weight": 0.5, "model_group_weight": 2.0, "pointwise_weight": 3.0}
    loss, parts = compute_loss(model, enc, batch, acc, k, TrainConfig(**base, **w), torch.Generator())
    expected = 0.5 * parts["instruction_ce"] + 2.0 * parts["model_ce"] + 3.0 * parts["pointwise_bce"]
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5) and all(parts[n] > 0 for n in parts)
    for key, term in (("model_group_weight", "model_ce"), ("pointwise_weight", "pointwise_bce")):
        loss2, _ = compute_loss(
            model, enc, batch, acc, k, TrainConfig(**base, **{**w, key: w[key] + 1}), torch.Generator()
        )
        assert float(loss2.detach()) - float(loss.detach()) == pytest.approx(parts[term], rel=1e-4)


def test_platt_calibration_recovers_scale():
    rng = np.random.default_rng(0)
    s = rng.normal(size=5000)
    y = (rng.random(5000) < 1 / (1 + np.exp(-(2.0 * s - 0.5)))).astype(np.float64)
    a, b = fit_calibration(s, y)
    assert a == pytest.approx(2.0, rel=0.15) and b == pytest.approx(-0.5, abs=0.15)


def test_instruction_and_model_group_builders():
    from modelsat.objective import TrainingBatch, instruction_groups, model_group

    rng = np.random.default_rng(0)
    correct = np.array([True, False, True, False, False])
    groups = instruction_groups(correct, 3, rng)
    assert groups.shape == (2, 3)  # one group per correct instruction
    assert set(groups[:, 0]) == {0, 2} and not correct[groups[:, 1:]].any()
    assert instruction_groups(np.ones(4, dtype=bool), 3, rng).shape == (0, 3)
    g = model_group(np.array([False, True, False, True]), 4, rng)
    assert g[0] in (1, 3) and set(g[1:]) <= {0, 2}
    batch = TrainingBatch.from_groups(
        np.array([[10, 20]]),
        np.array([1]),
        np.array([30]),
        np.array([[0, 1]]),
        np.array([20, 40]),
        np.array([0, 1]),
        np.array([1.0, 0.0]),
    )
    assert batch.questions.tolist() == [10, 20, 30, 40]
    assert (
        batch.inst_q.tolist() == [[0, 1]]
        and batch.model_q.tolist() == [2]
        and batch.point_q.tolist() == [1, 3]
    )


def test_every_loss_term_has_its_weight_in_the_training_config():
    from modelsat.objective import LOSS_TERMS

    for name, (_, weight_field) in LOSS_TERMS.items():
        field = TrainConfig.model_fields[weight_field]
        assert field.description and field.metadata, (name, weight_field)  # described, with a range
