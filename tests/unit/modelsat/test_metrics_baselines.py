import numpy as np
import pytest

from modelsat.baselines import BaselineData
from modelsat.methods import METHODS, HeldOut
from modelsat.metrics import (
    cost_sweep,
    cost_to_match,
    gap_closed,
    oracle_choice,
    summarize_choice,
    summarize_random,
)


def test_metrics_on_a_hand_made_case():
    y = np.array([[1, 0, 1], [0, 1, 1], [0, 0, 1], [1, 0, 0]], dtype=np.float32)
    r = summarize_choice(
        np.array([0, 1, 2, 2]), y, ["a", "b", "c"], benchmarks=np.array(["x", "x", "y", "y"])
    )
    assert r["accuracy"] == 0.75 and r["choice_share"] == {"a": 0.25, "b": 0.25, "c": 0.5}
    assert r["per_benchmark"] == {"x": 1.0, "y": 0.5}
    assert summarize_random(y)["accuracy"] == pytest.approx(y.mean())
    assert gap_closed(0.75, 0.5, 1.0) == 0.5 and gap_closed(0.4, 0.5, 0.5) is None


def test_oracle_breaks_ties_by_cost_then_preference():
    y = np.array([[1, 1, 0], [0, 0, 0]], dtype=np.float32)
    costs = np.array([[2.0, 1.0, 0.5], [2.0, 1.0, 0.5]])
    assert oracle_choice(y, costs, np.zeros(3)).tolist() == [1, 2]
    assert oracle_choice(y, None, np.array([0.1, 0.9, 0.5])).tolist() == [1, 1]


def test_cost_sweep_trades_accuracy_for_cost():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 3)) < np.array([0.9, 0.6, 0.3])).astype(np.float32)
    costs = np.tile([1e-2, 1e-3, 1e-4], (300, 1))
    p = np.tile([0.9, 0.6, 0.3], (300, 1))
    curve = cost_sweep(p, costs[0], y, costs, points=30)
    assert curve[0]["lambda"] == 0 and curve[0]["mean_cost_usd"] == pytest.approx(1e-2)
    assert curve[-1]["mean_cost_usd"] == pytest.approx(1e-4)
    assert cost_to_match(curve, curve[0]["accuracy"]) == pytest.approx(1e-2)
    assert cost_to_match(curve, 2.0) is None


@pytest.mark.parametrize("name", sorted(n for n, m in METHODS.items() if hasattr(m, "predictor")))
def test_learned_baselines_route_by_topic_and_handle_unseen_models(name):
    """Two topics; model 0 is right on topic 0, model 1 on topic 1. Model 2 (unseen) is known only on 40 items."""
    rng = np.random.default_rng(0)
    n = 600
    topic = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 16)).astype(np.float32) + 4 * np.eye(2, 16, dtype=np.float32)[topic]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.stack([topic == 0, topic == 1, topic == 1], 1).astype(np.float32)
    y_known = y.copy()
    y_known[40:, 2] = np.nan  # unseen model: outcomes known on the first 40 instructions only
    data = BaselineData(x=x[:400], y=y_known[:400], x_val=x[400:500], y_val=y[400:500], seed=0)
    pred = METHODS[name].predictor().fit(data).predict(x[500:])
    assert pred.shape == (100, 3)
    chosen = pred.argmax(1)
    assert y[500:][np.arange(100), chosen].mean() > 0.9


def test_methods_choose_on_any_candidate_set():
    """Oracle (ties to the preferred model), best single model and Model-SAT on all columns and on a subset."""
    y = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float32)
    data = HeldOut(
        models=["a", "b", "c"],
        y=y,
        costs=None,
        preference=np.array([0.2, 0.6, 0.4]),
        router_scores=np.array([[3.0, 1.0, 2.0], [0.0, 1.0, 5.0], [1.0, 0.0, 0.0]]),
    )
    oracle, best, sat = METHODS["oracle"](), METHODS["best_single"](), METHODS["model_sat"]()
    assert oracle.choose(data, [0, 1, 2]).tolist() == [1, 2, 1]  # ties: the preferred model (b)
    assert oracle.choose(data, [0, 2]).tolist() == [0, 1, 1]  # indices into the subset: a, c, c
    assert best.choose(data, [0, 1, 2]).tolist() == [1, 1, 1] and best.describe(data, [0, 2]) == {
        "model": "c"
    }
    assert sat.choose(data, [0, 1, 2]).tolist() == [0, 2, 0] and sat.choose(data, [1]).tolist() == [0, 0, 0]
    assert METHODS["random"].expectation and all(m.label for m in METHODS.values())
    with pytest.raises(ValueError, match="no training pool"):
        METHODS["knn"]().fit(data)


def test_category_prior_picks_each_categorys_best_model_from_what_the_router_knew():
    from modelsat.methods import CategoryPrior, HeldOut

    # pool: 30 questions of "a", 30 of "b"; m0 right on a, m2 right on every other question, m1 (unseen)
    # right on b and known only on every third question (its aptitude items, common to all models)
    cat = np.array(["a"] * 30 + ["b"] * 30, dtype=object)
    m0 = (cat == "a").astype(np.float32)
    m2 = (np.arange(60) % 2).astype(np.float32)
    m1 = (cat == "b").astype(np.float32)
    m1[np.arange(60) % 3 != 0] = np.nan
    held = HeldOut(
        models=["m0", "m1", "m2"],
        y=np.zeros((3, 3), dtype=np.float32),
        costs=None,
        preference=np.array([0.5, 0.5, 0.5]),
        router_scores=np.zeros((3, 3)),
        categories=np.array(["a", "b", "c"], dtype=object),
        pool_outcomes=np.stack([m0, m1, m2], 1),
        pool_categories=cat,
    )
    method = CategoryPrior().fit(held)
    assert method.choose(held, [0, 1, 2]).tolist()[:2] == [0, 1]
    assert method.choose(held, [0, 2]).tolist()[:2] == [0, 1]  # indices into the subset: m0, then m2
    overall = method.scores(held)[2]  # a category the pool lacks: each model's (linked) pool mean
    np.testing.assert_allclose(overall, [0.5, 0.5, 0.5], atol=1e-6)


def test_paired_difference_and_its_standard_error():
    from modelsat.metrics import paired_difference

    y = np.array([[1, 0], [1, 1], [0, 1], [1, 0]], dtype=np.float32)
    d = paired_difference(np.array([0, 0, 1, 0]), np.array([1, 1, 1, 1]), y)
    diffs = np.array([1, 0, 0, 1], dtype=np.float64)
    assert d["diff"] == pytest.approx(diffs.mean())
    assert d["se"] == pytest.approx(diffs.std(ddof=1) / 2)
    assert paired_difference(np.array([1]), np.array([1]), y[:1]) == {"diff": 0.0, "se": 0.0}


def test_reliability_bins_and_expected_calibration_error():
    from modelsat.metrics import reliability

    p = np.array([0.05, 0.05, 0.95, 0.95, 0.55, 0.55])
    y = np.array([0.0, 0.0, 1.0, 1.0, 1.0, 0.0])
    perfect = reliability(p[:4], y[:4])
    assert perfect["ece"] == pytest.approx(0.05) and [b["n"] for b in perfect["bins"]] == [2, 2]
    r = reliability(p, y)
    assert r["n"] == 6 and r["bins"][1] == {"p_mean": pytest.approx(0.55), "y_mean": 0.5, "n": 2}
    assert r["ece"] == pytest.approx((4 * 0.05 + 2 * 0.05) / 6)


def test_linked_means_put_a_newcomer_on_the_scale_of_the_fully_known_models():
    from modelsat.methods import linked_means

    rng = np.random.default_rng(0)
    ability = np.array([0.9, 0.7, 0.5, 0.3])  # four models known everywhere; the last one (0.8) a newcomer
    hard = rng.random(400) < 0.5  # common rows (the aptitude items) are the hard half
    p = np.where(hard[:, None], np.append(ability, 0.8)[None] - 0.25, np.append(ability, 0.8)[None])
    y = (rng.random((400, 5)) < p).astype(np.float32)
    y[~hard, 4] = np.nan  # the newcomer is known only on the common rows
    m = linked_means(y, np.ones(400, dtype=bool))
    assert abs(m[4] - 0.675) < 0.06  # its mean over all rows: (0.8 + 0.55) / 2
    assert abs(m[4] - 0.675) < abs(np.nanmean(y[:, 4]) - 0.675)  # closer than its raw mean on the hard rows


def test_lambda_for_a_target_is_chosen_on_one_curve_and_applied_to_other_questions():
    from modelsat.metrics import choose_lambda, cost_sweep, route_at_lambda

    rng = np.random.default_rng(1)
    y = np.stack([rng.random(500) < 0.8, rng.random(500) < 0.6], 1).astype(np.float32)  # a strong, dear model
    costs = np.tile([1.0, 0.1], (500, 1))
    p = np.clip(y * 0.5 + 0.25 + rng.normal(0, 0.05, y.shape), 0, 1)  # informative probabilities
    curve = cost_sweep(p, costs[0], y, costs, 20)
    lam = choose_lambda(curve, min_accuracy=float(y[:, 0].mean()))
    point = route_at_lambda(p, costs[0], y, costs, lam)
    assert point["accuracy"] >= y[:, 0].mean() - 1e-9 and point["mean_cost_usd"] < 1.0
    cheap = route_at_lambda(p, costs[0], y, costs, choose_lambda(curve, max_cost_usd=0.3))
    assert cheap["mean_cost_usd"] <= 0.3 + 1e-9
    with pytest.raises(ValueError, match="exactly one"):
        choose_lambda(curve)
