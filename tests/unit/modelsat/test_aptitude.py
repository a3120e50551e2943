import re

import numpy as np
import pytest

from modelsat.aptitude import (
    AptitudeConfig,
    AptitudeTest,
    CapabilityProfile,
    describe_task,
    measure_profiles,
    profile_from_scores,
    select_aptitude_test,
)
from modelsat.data import load_routing_data
from modelsat.errors import DataError
from modelsat.split import split_routing_data


@pytest.fixture
def zoo_split(toy_data):
    zoo = load_routing_data(toy_data)
    return zoo, split_routing_data(zoo, 0, 0.2)


def test_items_are_the_most_distinguishing(zoo_split):
    zoo, split = zoo_split
    cfg = AptitudeConfig(n_tasks=2, items_per_task=5)
    test = select_aptitude_test(zoo, split.pool, zoo.models[:4], cfg)
    assert len(test.tasks) == 2 and test.n_items == 10
    cols = zoo.model_index(list(zoo.models[:4]))
    mean = zoo.outcomes[:, cols].mean(1)
    for task in test.tasks:
        chosen = zoo.index_of_questions(list(task.question_ids))
        others = np.setdiff1d(split.pool[zoo.tasks[split.pool] == task.name], chosen)
        # every chosen item is at least as close to 0.5 as every item left out (up to distinct-text dedup)
        assert np.abs(mean[chosen] - 0.5).max() <= np.abs(mean[others] - 0.5).min() + 1e-9 or len(others) == 0
        assert set(chosen) <= set(split.pool), "aptitude items come from the training pool only"


def test_selection_is_deterministic_and_uses_largest_tasks(zoo_split):
    zoo, split = zoo_split
    cfg = AptitudeConfig(n_tasks=3, items_per_task=4, seed=3)
    a = select_aptitude_test(zoo, split.pool, zoo.models, cfg)
    b = select_aptitude_test(zoo, split.pool, zoo.models, cfg)
    assert a.to_dict() == b.to_dict()
    assert AptitudeTest.from_dict(a.to_dict()) == a


def test_few_tasks_get_more_items_each(zoo_split):
    zoo, split = zoo_split
    test = select_aptitude_test(zoo, split.pool, zoo.models, AptitudeConfig(n_tasks=50, items_per_task=1))
    assert len(test.tasks) == 4 and test.n_items == 50
    assert {len(t.question_ids) for t in test.tasks} <= {12, 13}
    assert "has 4 task labels (< n_tasks=50)" in test.notes


def test_impossible_test_says_what_the_zoo_can_supply(zoo_split):
    zoo, split = zoo_split
    with pytest.raises(DataError, match=r"can supply (\d+) aptitude items from 4 tasks.*50×20 = 1000"):
        select_aptitude_test(zoo, split.pool, zoo.models, AptitudeConfig())


def test_profile_text_matches_paper_form(zoo_split):
    zoo, split = zoo_split
    test = select_aptitude_test(zoo, split.pool, zoo.models, AptitudeConfig(n_tasks=4, items_per_task=5))
    prof = measure_profiles(test, zoo)["alpha"]
    text = prof.text(test)
    assert text.startswith("The model achieves accuracy ")
    parts = re.findall(r'accuracy (\d+\.\d)% on the task of "([^"]+)"', text)
    assert len(parts) == 4
    for (pct, desc), acc, task in zip(parts, prof.accuracies, test.tasks, strict=True):
        assert float(pct) == pytest.approx(100 * acc, abs=0.05)
        assert desc == task.description and 2 <= len(desc.split(", ")) <= 5


def test_profiles_use_frozen_reference_statistics(zoo_split):
    zoo, split = zoo_split
    test = select_aptitude_test(zoo, split.pool, zoo.models[:3], AptitudeConfig(n_tasks=4, items_per_task=5))
    scores = {q: 1.0 for q in test.question_ids}
    new = profile_from_scores(test, "newcomer", scores)
    assert np.allclose(new.accuracies, 1.0)
    expected = (1.0 - np.array([t.reference_mean for t in test.tasks])) / np.array(
        [t.reference_std for t in test.tasks]
    )
    assert np.allclose(new.standardized(test), expected)
    # the reference statistics come from the training models only
    m = zoo.model_index(list(zoo.models[:3]))
    rows = zoo.index_of_questions(list(test.tasks[0].question_ids))
    assert test.tasks[0].reference_mean == pytest.approx(zoo.outcomes[np.ix_(rows, m)].mean(0).mean())
    assert CapabilityProfile.from_dict(new.to_dict()).model == "newcomer"


def test_profile_needs_every_item(zoo_split):
    zoo, split = zoo_split
    test = select_aptitude_test(zoo, split.pool, zoo.models, AptitudeConfig(n_tasks=2, items_per_task=3))
    with pytest.raises(DataError, match=r"has no outcome for 1 of the 6 aptitude items"):
        profile_from_scores(test, "m", {q: 1.0 for q in test.question_ids[1:]})


def test_describe_task():
    task_prompts = [
        "velocity of the car and its acceleration",
        "force and acceleration of mass",
        "velocity force mass",
    ]
    background = task_prompts + ["contract law and the defendant", "the defendant appeals the contract"]
    desc = describe_task("ori_mmlu-high_school_physics", task_prompts, background)
    words = desc.split(", ")
    assert words[0] == "High School Physics" and len(words) <= 5
    assert "Acceleration" in words and "Defendant" not in words
