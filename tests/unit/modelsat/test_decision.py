"""Anchor and defer (`modelsat.router.decision`): leave the best candidate by profile only when sure."""

from __future__ import annotations

import numpy as np
import pytest

from modelsat.router.configuration import RouterConfig
from modelsat.router.decision import anchor_column, defer_choice, fit_defer_margin


def test_the_margin_keeps_the_anchor_unless_another_candidate_beats_it_by_more():
    p = np.array([[0.60, 0.62, 0.10], [0.50, 0.80, 0.10], [0.70, 0.65, 0.66]])
    estimated = np.array([0.7, 0.5, 0.4])  # candidate 0 is best by profile: the anchor
    assert anchor_column(estimated) == 0
    assert defer_choice(p, estimated, 0.0).tolist() == [1, 1, 0]  # δ = 0: the plain argmax
    assert defer_choice(p, estimated, 0.05).tolist() == [0, 1, 0]  # 0.62 − 0.60 < δ; 0.80 − 0.50 > δ
    assert defer_choice(p, estimated, 1.0).tolist() == [0, 0, 0]  # δ ≥ 1: the best single model by profile


def test_bad_margins_and_shapes_are_refused():
    p, est = np.full((2, 3), 0.5), np.array([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="defer_margin=-0.1; allowed: a finite number >= 0"):
        defer_choice(p, est, -0.1)
    with pytest.raises(ValueError, match="defer_margin=nan"):
        defer_choice(p, est, float("nan"))
    with pytest.raises(ValueError, match=r"expected \[n, 2\]"):
        defer_choice(p, est[:2], 0.1)
    with pytest.raises(ValueError, match="no candidates"):
        anchor_column([])
    with pytest.raises(ValueError, match="defer_margin=-1"):
        RouterConfig(defer_margin=-1.0)


def test_fit_defer_margin_defers_only_where_it_pays_on_validation():
    rng = np.random.default_rng(0)
    n = 2000
    y = np.stack([rng.random(n) < 0.7, rng.random(n) < 0.5], axis=1).astype(np.float64)
    est = np.array([0.7, 0.5])
    noisy = np.clip(0.5 + rng.normal(0, 0.03, size=y.shape), 0, 1)  # p that knows nothing: anchor always
    margin, acc, curve = fit_defer_margin(noisy, y, est)
    assert margin > 0 and acc == pytest.approx(y[:, 0].mean()) and acc >= curve[0.0]
    informed = np.clip(0.2 + 0.6 * y, 0, 1)  # p that knows y: the plain argmax is best, δ = 0 kept
    margin, acc, _ = fit_defer_margin(informed, y, est)
    assert margin == 0.0 and acc == pytest.approx(y.max(1).mean())
    with pytest.raises(ValueError, match="must contain 0"):
        fit_defer_margin(noisy, y, est, margins=(0.1,))


def test_checkpoints_from_before_the_rule_route_by_the_plain_argmax():
    assert RouterConfig.from_dict({"backbone_type": "encoder", "n_tasks": 3}).defer_margin == 0.0
