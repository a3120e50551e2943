"""The whole shared `mmlu_pro` zoo (8,224 questions × 24 models) rebuilt as MMLU-Pro archives converts back to
exactly the same questions.parquet rows and the same scores and response tails (~1 min on 2 cores)."""

import pyarrow.parquet as pq
import pytest

from modelsat.data import import_outcomes, mmlu_pro_models
from tests.conftest import SHARED_DATA
from tests.mmlu_pro_archives import archives_from_shared

MMLU_PRO = SHARED_DATA / "mmlu_pro"
pytestmark = [
    pytest.mark.integration,
]


def test_full_shared_zoo_round_trip(tmp_path):
    models = pq.read_table(MMLU_PRO / "models.parquet")["model"].to_pylist()
    archives = archives_from_shared(MMLU_PRO, tmp_path / "archives", None, models, members=14)
    report = import_outcomes(mmlu_pro_models(list(archives.values())), tmp_path / "zoo")
    assert report.n_questions == 8224 and not report.dropped
    assert pq.read_table(tmp_path / "zoo" / "questions.parquet").to_pylist() == (
        pq.read_table(MMLU_PRO / "questions.parquet").to_pylist()
    )
    cols = ["question_id", "model", "score", "response_tail"]
    want = {
        (r["question_id"], r["model"]): r
        for r in pq.read_table(MMLU_PRO / "outcomes.parquet", columns=cols).to_pylist()
    }
    got = pq.read_table(tmp_path / "zoo" / "outcomes.parquet", columns=cols).to_pylist()
    assert len(got) == len(want) == 8224 * 24
    assert all(want[(r["question_id"], r["model"])] == r for r in got)
    accuracy = {
        r["model"]: r["accuracy"] for r in pq.read_table(tmp_path / "zoo" / "models.parquet").to_pylist()
    }
    for r in pq.read_table(MMLU_PRO / "models.parquet").to_pylist():
        assert accuracy[r["model"]] == pytest.approx(r["accuracy"], abs=1e-9)
