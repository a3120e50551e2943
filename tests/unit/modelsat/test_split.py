import numpy as np

from modelsat.data import load_routing_data
from modelsat.split import split_routing_data, stratified_sample


def test_split_is_seeded_stratified_and_disjoint(toy_data):
    zoo = load_routing_data(toy_data)
    a, b, c = (
        split_routing_data(zoo, 0, 0.25),
        split_routing_data(zoo, 0, 0.25),
        split_routing_data(zoo, 1, 0.25),
    )
    assert np.array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)
    assert len(np.intersect1d(a.test, a.pool)) == 0 and len(a.test) + len(a.pool) == zoo.n_questions
    for task in set(zoo.tasks):
        n_task = (zoo.tasks == task).sum()
        n_test = (zoo.tasks[a.test] == task).sum()
        assert abs(n_test - 0.25 * n_task) <= 2


def test_identical_instructions_stay_together():
    rows = np.arange(6)
    strata = np.array(["t"] * 6)
    groups = np.array(["x", "x", "y", "z", "z", "z"], dtype=object)
    for seed in range(10):
        taken, rest = stratified_sample(rows, strata, groups, 0.5, seed)
        for g in ("x", "y", "z"):
            members = set(rows[groups == g])
            assert members <= set(taken) or members <= set(rest)


def test_given_test_split_is_used(tmp_path):
    from tests.conftest import write_toy_data

    zoo = load_routing_data(write_toy_data(tmp_path / "z", test_split=True))
    s = split_routing_data(zoo, 0, 0.3)
    given = set(np.flatnonzero(zoo.splits == "test").tolist())
    assert given <= set(s.test.tolist())
    # the only extra held-out rows are exact duplicates of given test instructions
    hashes = zoo.prompt_hashes()
    given_hashes = {hashes[i] for i in given}
    assert all(hashes[i] in given_hashes for i in set(s.test.tolist()) - given)
