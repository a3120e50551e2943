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

    # pool: model 0 best on "a", model 1 best on "b"; model 1 unseen: only its aptitude rows (2 of 4) known
    pool = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0, 1]] * 10, dtype=np.float32)
    pool[::3, 1] = np.nan
    held = HeldOut(
        models=["m0", "m1"],
        y=np.array([[1, 0], [0, 1], [0, 1]], dtype=np.float32),
        costs=None,
        preference=np.array([0.5, 0.5]),
        router_scores=np.zeros((3, 2)),
        categories=np.array(["a", "b", "c"], dtype=object),
        pool_outcomes=pool,
        pool_categories=np.array(["a", "a", "b", "b", "b", "b"] * 10, dtype=object),
    )
    method = CategoryPrior().fit(held)
    assert method.choose(held, [0, 1]).tolist()[:2] == [0, 1]
    assert method.choose(held, [0]).tolist() == [0, 0, 0]
    # a category the pool lacks falls back to each model's pool mean over the rows known for it
    overall = np.array([20 / 60, 30 / 40])
    np.testing.assert_allclose(method.scores(held)[2], overall, rtol=1e-6)


def test_paired_difference_and_its_standard_error():
    from modelsat.metrics import paired_difference

    y = np.array([[1, 0], [1, 1], [0, 1], [1, 0]], dtype=np.float32)
    d = paired_difference(np.array([0, 0, 1, 0]), np.array([1, 1, 1, 1]), y)
    diffs = np.array([1, 0, 0, 1], dtype=np.float64)
    assert d["diff"] == pytest.approx(diffs.mean())
    assert d["se"] == pytest.approx(diffs.std(ddof=1) / 2)
    assert paired_difference(np.array([1]), np.array([1]), y[:1]) == {"diff": 0.0, "se": 0.0}
