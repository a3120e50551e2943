"""Both training paths draw the same examples: the single-process sampler and the Ray Data row functions
(`jobs.groups`, pandas only, run here without Ray) share the builders and proportions of `modelsat.groups`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jobs.groups import (
    instruction_groups_of_model,
    keep_training_pairs,
    model_groups_of_bucket,
    pointwise_pairs,
    rows_per_epoch,
    with_bucket,
)
from modelsat.groups import epoch_plan
from modelsat.objective import GroupSampler

K, SEED = 3, 7


@pytest.fixture(scope="module")
def outcomes() -> np.ndarray:
    rng = np.random.default_rng(0)
    ability = np.array([0.85, 0.7, 0.6, 0.5, 0.35, 0.2])
    difficulty = rng.normal(0, 1, 300)
    p = 1 / (1 + np.exp(-(np.log(ability / (1 - ability))[None, :] - difficulty[:, None])))
    return (rng.random(p.shape) < p).astype(np.float32)


def _single_process(y: np.ndarray, steps: int = 400) -> dict[str, np.ndarray]:
    sampler = GroupSampler(y, K, 16, SEED)
    inst_m, model_pos, point_y, kinds = [], [], [], np.zeros(3)
    for _ in range(steps):
        b = sampler.sample()
        q = b.questions
        assert (y[q[b.inst_q[:, 0]], b.inst_m] >= 0.5).all() and (
            y[q[b.inst_q[:, 1:]], b.inst_m[:, None]] < 0.5
        ).all()
        inst_m.append(b.inst_m)
        model_pos.append(b.model_m[:, 0])
        point_y.append(b.point_y)
        kinds += [len(b.inst_m), len(b.model_q), len(b.point_q)]
    return {
        "inst_m": np.concatenate(inst_m),
        "model_pos": np.concatenate(model_pos),
        "point_y": np.concatenate(point_y),
        "kinds": kinds / kinds.sum(),
    }


def _ray_path(y: np.ndarray, epochs: int = 30) -> dict[str, np.ndarray]:
    n, m = y.shape
    raw = pd.DataFrame(
        {
            "question_id": [f"q{i:04d}" for i in range(n) for _ in range(m)],
            "model": [f"m{j}" for _ in range(n) for j in range(m)],
            "score": y.ravel(),
        }
    )
    pairs = keep_training_pairs(raw, frozenset(raw["question_id"]), {f"m{j}": j for j in range(m)})
    plan = epoch_plan(y)
    inst, mgroups, point = [], [], []
    for epoch in range(epochs):
        for _, g in pairs.groupby("model_idx"):
            inst.append(instruction_groups_of_model(g, K, SEED, epoch, plan.instruction_groups_per_model))
        for _, g in with_bucket(pairs).groupby("bucket"):
            mgroups.append(model_groups_of_bucket(g, K, SEED, epoch))
        point.append(pointwise_pairs(pairs, plan.pointwise_fraction, SEED, epoch))
    inst_df, model_df, point_df = pd.concat(inst), pd.concat(mgroups), pd.concat(point)
    qpos = {f"q{i:04d}": i for i in range(n)}
    for qs, ms in zip(inst_df["question_ids"], inst_df["models"], strict=True):
        rows = [qpos[q] for q in qs]
        assert y[rows[0], ms[0]] >= 0.5 and all(y[r, ms[0]] < 0.5 for r in rows[1:])
    kinds = np.array([len(inst_df), len(model_df), len(point_df)], dtype=float)
    return {
        "inst_m": np.array([ms[0] for ms in inst_df["models"]]),
        "model_pos": np.array([ms[0] for ms in model_df["models"]]),
        "point_y": point_df["target"].to_numpy(),
        "kinds": kinds / kinds.sum(),
        "plan": plan,
    }


def test_both_paths_draw_the_same_distribution_of_kind_model_and_label(outcomes):
    one, ray = _single_process(outcomes), _ray_path(outcomes)
    np.testing.assert_allclose(one["kinds"], [1 / 6, 1 / 6, 4 / 6])
    np.testing.assert_allclose(ray["kinds"], one["kinds"], atol=0.01)
    m = outcomes.shape[1]
    share = lambda a: np.bincount(a, minlength=m) / len(a)  # noqa: E731
    np.testing.assert_allclose(share(ray["inst_m"]), np.full(m, 1 / m), atol=0.005)  # models uniform
    np.testing.assert_allclose(share(one["inst_m"]), np.full(m, 1 / m), atol=0.02)
    # the positive of a model group: uniform among the instruction's correct models, instructions uniform
    correct = outcomes >= 0.5
    mixed = correct.any(1) & (~correct).any(1)
    expected = (correct[mixed] / correct[mixed].sum(1, keepdims=True)).mean(0)
    np.testing.assert_allclose(share(ray["model_pos"]), expected, atol=0.01)
    np.testing.assert_allclose(share(one["model_pos"]), expected, atol=0.02)
    assert ray["point_y"].mean() == pytest.approx(outcomes.mean(), abs=0.01)
    assert one["point_y"].mean() == pytest.approx(outcomes.mean(), abs=0.02)


def test_an_epoch_holds_what_the_plan_counts(outcomes):
    plan = epoch_plan(outcomes)
    counts = rows_per_epoch(outcomes)
    correct = outcomes >= 0.5
    assert counts["model_groups"] == plan.model_groups == int((correct.any(1) & (~correct).any(1)).sum())
    assert counts["instruction_groups"] == 6 * plan.instruction_groups_per_model
    assert counts["pointwise"] == pytest.approx(4 * plan.model_groups, abs=1)
    with pytest.raises(ValueError, match="nothing to contrast"):
        epoch_plan(np.ones((5, 3), dtype=np.float32))
