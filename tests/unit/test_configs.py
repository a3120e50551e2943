"""STYLE.md §3: every YAML config in the repository loads and validates."""

from pathlib import Path

import pytest
import yaml

from modelsat.config import BaseConfig
from modelsat.errors import ConfigError
from modelsat.runconfig import RunConfig

ROOT = Path(__file__).resolve().parents[2]
RUN_CONFIGS = sorted((ROOT / "modelsat" / "configs").glob("*.yaml")) + sorted(
    (ROOT / "benchmarks" / "configs").glob("*.yaml")
)


def _schema_for(path: Path) -> type[BaseConfig]:
    """serving_*.yaml: a serving config (what runs); model_*.yaml: one served model; else: a run config."""
    from modelsat.serving_config import ServedModel, ServingConfig

    if path.name.startswith("serving_"):
        return ServingConfig
    if path.name.startswith("model_"):
        return ServedModel
    return RunConfig


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_config_validates(path):
    cfg = _schema_for(path).from_yaml(path)
    if isinstance(cfg, RunConfig):
        assert cfg.data.routing_data, f"{path}: a shipped run config names its zoo"


def test_serving_config_errors_name_the_bad_value(tmp_path):
    from modelsat.serving_config import ServingConfig

    base = {
        "router": {"checkpoint": "x"},
        "models": [{"name": "a", "engine": {"kind": "recorded", "routing_data": "z"}}],
    }
    ServingConfig.from_dict(base)
    bad = [
        (
            {"models": [{"name": "auto", "engine": {"kind": "recorded", "routing_data": "z"}}]},
            "virtual model",
        ),
        ({"models": [{"name": "a", "engine": {"kind": "tgi"}}]}, "engine"),
        (
            {
                "models": [
                    {
                        "name": "a",
                        "engine": {"kind": "recorded", "routing_data": "z"},
                        "autoscaling": {"min_replicas": 3, "max_replicas": 2},
                    }
                ]
            },
            "min_replicas=3 is above",
        ),
        (
            {"models": [{"name": "a", "engine": {"kind": "recorded", "routing_data": "z"}}] * 2},
            "appears twice",
        ),
        ({"models": []}, "models"),
    ]
    for change, fragment in bad:
        with pytest.raises(ConfigError, match=fragment):
            ServingConfig.from_dict({**base, **change})


def test_all_yaml_files_are_covered():
    known = set(RUN_CONFIGS)
    for path in ROOT.rglob("*.yaml"):
        if any(part.startswith(".") for part in path.relative_to(ROOT).parts) or "k8s" in path.parts:
            continue  # k8s manifests are checked against the KubeRay schemas
        assert path in known or path.name.startswith("ds_") or "jobs/configs" in str(path), (
            f"unvalidated YAML: {path}"
        )
        yaml.safe_load(path.read_text())


def test_unknown_key_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data: {routing_data: mmlu_pro}\ntrain: {max_stepz: 10}\n")
    with pytest.raises(ConfigError, match=r"train\.max_stepz=10: Extra inputs are not permitted"):
        RunConfig.from_yaml(p)


def test_out_of_range_value_is_rejected(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("split: {test_fraction: 1.5}\n")
    with pytest.raises(ConfigError, match=r"split\.test_fraction=1\.5"):
        RunConfig.from_yaml(p)


def test_unknown_baseline_lists_allowed(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("eval: {baselines: [knn, svm]}\n")
    with pytest.raises(ConfigError, match="unknown baseline 'svm'; allowed: category_prior, knn, mlp, mf"):
        RunConfig.from_yaml(p)


def test_dotted_overrides_are_validated_and_name_the_allowed_keys():
    cfg = RunConfig().with_overrides({"train.max_steps": 7, "data.routing_data": "z", "eval.seed": None})
    assert (
        cfg.train.max_steps == 7 and cfg.data.routing_data == "z" and cfg.eval.seed == RunConfig().eval.seed
    )
    with pytest.raises(ConfigError, match=r"'train.max_stepz' names no field; allowed at train: .*max_steps"):
        RunConfig().with_overrides({"train.max_stepz": 1})
    with pytest.raises(ConfigError, match=r"max_steps"):
        RunConfig().with_overrides({"train.max_steps": 0})


def test_run_configs_written_before_the_rename_still_load(tmp_path):
    p = tmp_path / "old.yaml"
    p.write_text("data: {zoo: mmlu_pro, unseen_models: [Yi-6b-Chat]}\n")
    cfg = RunConfig.from_yaml(p)
    assert cfg.data.routing_data == "mmlu_pro"
    assert "zoo" not in cfg.model_dump()["data"]
