from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelsat.data import load_routing_data
from modelsat.errors import DataError, UnknownModelError


def _rewrite(path: Path, fn) -> None:
    rows = pq.read_table(path).to_pylist()
    pq.write_table(pa.Table.from_pylist(fn(rows)), path)


def test_loads_matrix_in_order(toy_data):
    zoo = load_routing_data(toy_data)
    assert zoo.outcomes.shape == (160, 5)
    assert zoo.models == ("alpha", "beta", "gamma", "delta", "epsilon")
    assert zoo.costs is None
    assert set(np.unique(zoo.outcomes)) <= {0.0, 1.0}
    assert zoo.question_ids[0] == "toy/algebra/0"


def test_cost_matrix(tmp_path):
    from tests.conftest import write_toy_data

    zoo = load_routing_data(write_toy_data(tmp_path / "c", with_cost=True))
    assert zoo.costs is not None and zoo.costs.shape == zoo.outcomes.shape
    assert np.allclose(zoo.costs[:, 1], 2e-4)


def test_missing_directory(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_routing_data(tmp_path / "nope")


def test_missing_file(toy_data):
    (toy_data / "outcomes.parquet").unlink()
    with pytest.raises(DataError, match=r"outcomes\.parquet is missing"):
        load_routing_data(toy_data)


def test_missing_column(toy_data):
    _rewrite(
        toy_data / "questions.parquet",
        lambda rows: [{k: v for k, v in r.items() if k != "task"} for r in rows],
    )
    with pytest.raises(DataError, match=r"questions\.parquet: missing column 'task'"):
        load_routing_data(toy_data)


def test_duplicated_outcome(toy_data):
    _rewrite(toy_data / "outcomes.parquet", lambda rows: rows + [rows[3]])
    with pytest.raises(DataError, match=r"duplicated \(question_id, model\) = \('toy/algebra/0', 'delta'\)"):
        load_routing_data(toy_data)


def test_score_out_of_range(toy_data):
    def bad(rows):
        rows[7]["score"] = 1.5
        return rows

    _rewrite(toy_data / "outcomes.parquet", bad)
    with pytest.raises(DataError, match=r"column 'score' has value 1\.5 .*allowed: a number in \[0, 1\]"):
        load_routing_data(toy_data)


def test_model_missing_outcomes(toy_data):
    _rewrite(
        toy_data / "outcomes.parquet",
        lambda rows: [r for r in rows if not (r["model"] == "beta" and r["question_id"].endswith("/3"))],
    )
    with pytest.raises(DataError, match=r"model 'beta' is missing outcomes for 4 of 160 questions"):
        load_routing_data(toy_data)


def test_fewer_than_two_models(tmp_path):
    from tests.conftest import write_toy_data

    with pytest.raises(DataError, match="at least 2 models, found 1"):
        load_routing_data(write_toy_data(tmp_path / "one", models=("solo",)))


def test_bad_split_value(toy_data):
    def bad(rows):
        rows[0]["split"] = "dev"
        return rows

    _rewrite(toy_data / "questions.parquet", bad)
    with pytest.raises(DataError, match=r"column 'split' has value 'dev'; allowed: train, test"):
        load_routing_data(toy_data)


def test_unknown_model_lists_allowed(toy_data):
    zoo = load_routing_data(toy_data)
    with pytest.raises(UnknownModelError, match="unknown model 'zeta'.*allowed: alpha, beta"):
        zoo.model_index(["zeta"])


def test_subset_keeps_alignment(toy_data):
    zoo = load_routing_data(toy_data)
    sub = zoo.subset(np.array([5, 2]), ["gamma", "alpha"])
    assert sub.question_ids.tolist() == [zoo.question_ids[5], zoo.question_ids[2]]
    assert np.array_equal(sub.outcomes, zoo.outcomes[[5, 2]][:, [2, 0]])


def test_shared_mmlu_pro_loads():
    zoo = load_routing_data("mmlu_pro")
    assert zoo.outcomes.shape == (8224, 24)
    assert abs(zoo.outcomes[:, zoo.models.index("gemini-1.5-pro-002")].mean() - 0.719) < 0.001
