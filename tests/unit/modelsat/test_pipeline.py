import json

import numpy as np
import pytest

from modelsat.aptitude import measure_profiles
from modelsat.data import load_routing_data
from modelsat.errors import ConfigError, DataError, UnknownModelError
from modelsat.evaluate import evaluate_pipeline, held_out_rows
from modelsat.pipeline import train_pipeline
from modelsat.report import write_report
from modelsat.router import RouterCheckpoint
from modelsat.runconfig import RunConfig
from tests.conftest import toy_run


@pytest.fixture
def trained(toy_data, tiny_bert, tmp_path):
    cfg = RunConfig.from_dict(
        toy_run(
            toy_data,
            tiny_bert,
            split={"seed": 3, "test_fraction": 0.2, "validation_fraction": 0.15},
            train={"max_steps": 30, "eval_every": 10, "groups_per_step": 8},
            eval={"baselines": ["knn", "mf"]},
        )
    )
    ckpt, summary = train_pipeline(cfg, tmp_path / "ckpt")
    return cfg, RouterCheckpoint.load(tmp_path / "ckpt"), summary


def test_parts_partition_the_zoo_and_are_recorded(trained, toy_data):
    cfg, ckpt, summary = trained
    zoo = load_routing_data(toy_data)
    t = ckpt.training
    parts = [
        set(t["train_ids"]),
        set(t["validation_ids"]),
        set(ckpt.aptitude.question_ids),
        set(t["held_out_ids"]),
    ]
    assert sum(len(p) for p in parts) == zoo.n_questions
    assert set().union(*parts) == set(zoo.question_ids.tolist())
    assert t["seed"] == 3 and t["unseen_models"] == ["gamma"] and "gamma" not in t["training_models"]
    assert "gamma" not in ckpt.profiles and "gamma" not in ckpt.aptitude.training_models
    assert t["zoo_fingerprint"] == zoo.fingerprint()


def test_evaluation_uses_exactly_the_held_out_questions(trained, toy_data):
    _, ckpt, _ = trained
    zoo = load_routing_data(toy_data)
    rows = held_out_rows(ckpt, zoo, "test")
    assert set(zoo.question_ids[rows].tolist()) == set(ckpt.training["held_out_ids"])
    assert not set(zoo.question_ids[rows].tolist()) & ckpt.used_question_ids


def test_report_contract_and_unseen_models(trained, toy_data, tmp_path):
    cfg, ckpt, _ = trained
    report = evaluate_pipeline(ckpt, toy_data, "test", cfg.eval)
    assert report["n_questions"] == len(ckpt.training["held_out_ids"])
    assert report["unseen_models"] == ["gamma"] and len(report["models"]) == 5
    assert set(report["methods"]) == {"model_sat", "best_single", "oracle", "random", "knn", "mf"}
    # the reference methods, recomputed from the held-out outcomes themselves
    data = load_routing_data(toy_data)
    y = data.outcomes[data.index_of_questions(ckpt.training["held_out_ids"])][
        :, data.model_index(report["models"])
    ]
    methods = report["methods"]
    assert methods["oracle"]["accuracy"] == pytest.approx(float(y.max(1).mean()))
    assert methods["random"]["accuracy"] == pytest.approx(float(y.mean()))
    best = report["models"].index(methods["best_single"]["model"])
    assert methods["best_single"]["accuracy"] == pytest.approx(float(y[:, best].mean()))
    assert (
        methods["oracle"]["gap_closed"] == pytest.approx(1.0) and methods["best_single"]["gap_closed"] == 0.0
    )
    # the unseen model joined through a profile measured on the checkpoint's aptitude items
    expected = measure_profiles(ckpt.aptitude, load_routing_data(toy_data), ["gamma"])["gamma"]
    assert np.allclose(report["profiles"]["gamma"]["accuracies"], expected.accuracies)
    assert set(report["unseen"]["model_sat"]) == {"gamma"}
    assert set(report["seen_only"]["models"]) == {"alpha", "beta", "delta", "epsilon"}
    out = write_report(report, tmp_path / "rep")
    assert json.loads((out / "report.json").read_text())["n_questions"] == report["n_questions"]
    assert (out / "report.md").read_text().startswith("# Routing report")
    assert {"accuracy.png", "choice_share.png"} <= {p.name for p in out.iterdir()}
    # the decision rule chosen on validation is recorded and shown
    rule = report["decision_rule"]
    assert rule["defer_margin"] == ckpt.model.config.defer_margin >= 0 and rule["anchor"] in report["models"]
    assert ckpt.training["summary"]["defer"]["margin"] == rule["defer_margin"]
    assert "## Decision rule" in (out / "report.md").read_text()


def test_other_zoo_without_aptitude_items_fails_clearly(trained, tmp_path):
    from tests.conftest import write_toy_data

    _, ckpt, _ = trained
    other = write_toy_data(tmp_path / "other", models=("alpha", "newcomer"))
    for qfile in [other / "questions.parquet", other / "outcomes.parquet"]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = pq.read_table(qfile).to_pylist()
        for r in rows:
            r["question_id"] = r["question_id"].replace("toy/", "other/")
        pq.write_table(pa.Table.from_pylist(rows), qfile)
    with pytest.raises(DataError, match=r"lacks 24 of the 24 aptitude items of the checkpoint"):
        evaluate_pipeline(ckpt, other, "test")


def test_a_run_on_a_subset_of_the_zoos_models_trains_and_routes_only_over_them(toy_data, tiny_bert, tmp_path):
    raw = toy_run(toy_data, tiny_bert, train={"max_steps": 10, "eval_every": 10, "groups_per_step": 8})
    raw["data"] = {
        "routing_data": str(toy_data),
        "models": ["alpha", "beta", "gamma", "delta"],
        "unseen_models": ["gamma"],
    }
    cfg = RunConfig.from_dict(raw)
    ckpt, _ = train_pipeline(cfg, tmp_path / "ckpt")
    assert set(ckpt.training["training_models"]) == {"alpha", "beta", "delta"}
    report = evaluate_pipeline(ckpt, toy_data, "test", cfg.eval, models=cfg.data.models)
    assert report["models"] == ["alpha", "beta", "gamma", "delta"] and report["unseen_models"] == ["gamma"]
    raw["data"]["models"] = ["alpha", "nobody"]
    with pytest.raises(UnknownModelError, match="nobody"):
        train_pipeline(RunConfig.from_dict(raw), tmp_path / "ck2")


def test_cost_aware_routing_chooses_lambda_on_validation(tiny_bert, tmp_path):
    from tests.conftest import write_toy_data

    data = write_toy_data(tmp_path / "costly", with_cost=True)
    cfg = RunConfig.from_dict(
        toy_run(data, tiny_bert, train={"max_steps": 10, "eval_every": 10, "groups_per_step": 8})
    )
    ckpt, _ = train_pipeline(cfg, tmp_path / "ckpt")
    chosen = evaluate_pipeline(ckpt, data, "test", cfg.eval)["cost_sweep"]["chosen_on_validation"]
    assert chosen["n_validation"] == len(ckpt.training["validation_ids"])
    for key in ("match_best_single", "at_30pct_cost"):
        assert {"lambda", "accuracy", "mean_cost_usd", "cost_share_of_best_single"} <= set(chosen[key])


def test_validation_newcomers_are_kept_out_of_training_and_select_on_validation(
    toy_data, tiny_bert, tmp_path
):
    raw = toy_run(toy_data, tiny_bert, train={"max_steps": 10, "eval_every": 5, "groups_per_step": 8})
    raw["data"] = {
        "routing_data": str(toy_data),
        "unseen_models": ["gamma"],
        "validation_unseen_models": ["delta"],
    }
    cfg = RunConfig.from_dict(raw)
    ckpt, _ = train_pipeline(cfg, tmp_path / "ckpt")
    assert "delta" not in ckpt.training["training_models"] and "gamma" not in ckpt.training["training_models"]
    assert ckpt.training["validation_unseen_models"] == ["delta"]
    report = evaluate_pipeline(ckpt, toy_data, "test", cfg.eval)
    assert set(report["unseen_models"]) == {"gamma", "delta"}  # both joined through their profiles only
    raw["data"]["validation_unseen_models"] = ["gamma"]
    with pytest.raises(ConfigError, match="'gamma' is in both"):
        train_pipeline(RunConfig.from_dict(raw), tmp_path / "ck2")


def test_the_checkpoint_carries_the_priors_task_table_and_the_router_reads_it(trained, toy_data):
    from modelsat.router.routing import Router

    _, ckpt, _ = trained
    table = ckpt.training["task_accuracies"]
    assert set(table["models"]) == set(ckpt.training["training_models"])
    assert len(table["slope"]) == len(ckpt.aptitude.tasks)
    assert ckpt.training["summary"]["profile_prior"]["source"] in ("profile", "pool")
    ckpt.model.config.prior_source = "profile"
    assert Router(ckpt)._capabilities.prior_accuracies is None  # the profiles themselves
    ckpt.model.config.prior_source = "pool"
    router = Router(ckpt)
    caps = router._capabilities
    assert caps is not None and caps.prior_accuracies is not None
    known = router.candidates.index(ckpt.training["training_models"][0])
    np.testing.assert_allclose(
        caps.prior_accuracies[known].numpy(), table["models"][router.candidates[known]], rtol=1e-5
    )
