"""The profile prior (`modelsat.router.prior`): the profile's accuracy on the tasks nearest the instruction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modelsat.router.configuration import RouterConfig
from modelsat.router.prior import fit_prior, profile_prior, with_prior


def test_a_sharp_prior_reads_the_nearest_tasks_accuracy():
    centroids = torch.eye(3, 8)  # three tasks, orthogonal centroids
    pooled = torch.eye(3, 8)[[2, 0]] + 0.01  # instruction 0 near task 2, instruction 1 near task 0
    acc = torch.tensor([[0.9, 0.5, 0.2], [0.3, 0.6, 0.8]])  # two candidates
    sharp = profile_prior(pooled, centroids, acc, temperature=0.01)
    torch.testing.assert_close(sharp, torch.tensor([[0.2, 0.8], [0.9, 0.3]]), atol=1e-3, rtol=0)
    flat = profile_prior(pooled, centroids, acc, temperature=100.0)  # every task alike: the mean accuracy
    torch.testing.assert_close(flat, acc.mean(1).expand(2, 2), atol=1e-2, rtol=0)
    assert (
        float(profile_prior(pooled, centroids, torch.ones(2, 3), 0.01).max()) < 1.0
    )  # clipped: finite logit


def test_the_prior_shifts_scores_by_its_logit_and_weight_zero_changes_nothing():
    s = torch.tensor([[0.0, 1.0]])
    p = torch.tensor([[0.9, 0.1]])
    assert torch.equal(with_prior(s, p, 0.0), s)
    out = with_prior(s, p, 1.0)
    assert out.argmax().item() == 0 and out[0, 0].item() == pytest.approx(np.log(9), rel=1e-5)


def test_fit_prior_uses_the_prior_only_where_it_helps_on_validation():
    rng = np.random.default_rng(0)
    y = (rng.random((400, 3)) < [0.5, 0.5, 0.5]).astype(np.float32)
    noise = rng.normal(size=y.shape)  # router scores that know nothing
    informative = lambda tau: np.clip(0.2 + 0.6 * y, 1e-3, 1 - 1e-3)  # noqa: E731  (a prior that knows y)
    weight, tau, acc = fit_prior(noise, informative, y)
    assert weight > 0 and acc == pytest.approx(float(y.max(1).mean()))  # the oracle, as the prior knows y
    useless = lambda tau: np.full(y.shape, 0.5)  # noqa: E731
    assert fit_prior(noise, useless, y)[0] == 0.0


def test_checkpoints_from_before_the_prior_load_without_it():
    cfg = RouterConfig.from_dict({"backbone_type": "encoder", "n_tasks": 3})
    assert cfg.prior_weight == 0.0 and cfg.prior_temperature > 0
    assert cfg.prior_source == "profile"
    with pytest.raises(ValueError, match="prior_weight=-1"):
        RouterConfig(prior_weight=-1.0)
    with pytest.raises(ValueError, match="prior_source='items'; allowed: profile, pool"):
        RouterConfig(prior_source="items")


def test_task_accuracies_link_a_newcomers_profile_to_the_pool_scale():
    from modelsat.router.prior import TaskAccuracies

    profiles = np.array([[0.2, 0.5], [0.4, 0.6], [0.6, 0.7]])  # aptitude items: hard, near 50 %
    pool = 0.3 + 0.5 * profiles  # the pool is easier: the same ranking on another scale
    table = TaskAccuracies.fit(pool, profiles, ["a", "b", "c"])
    out = table.for_candidates(["b", "new"], np.array([[0.0, 0.0], [0.8, 0.9]]))
    np.testing.assert_allclose(out[0], pool[1], atol=1e-6)  # a training model: its pool accuracies
    np.testing.assert_allclose(out[1], 0.3 + 0.5 * np.array([0.8, 0.9]), atol=1e-6)  # a newcomer: linked
    again = TaskAccuracies.from_dict(table.to_dict()).for_candidates(["new"], np.array([[0.8, 0.9]]))
    np.testing.assert_allclose(again, out[1:], atol=1e-6)
