"""The engine registries: aptitude engines (`jobs.engines.ENGINES`) and model servers (`services.models`)."""

from __future__ import annotations

import inspect

import pytest
from pydantic import TypeAdapter, ValidationError
from typer.testing import CliRunner

from jobs.engines import ENGINES, EngineConfig, OpenAIEngine, RecordedEngine, VLLMEngine, engine_class
from modelsat.cli import app
from modelsat.errors import ConfigError
from modelsat.serving_config import MODEL_ENGINES, ServedModel


@pytest.mark.parametrize("kind", list(ENGINES))
def test_each_engine_is_registered_under_its_configs_kind(kind):
    cls = ENGINES[kind]
    assert cls.config_class.model_fields["kind"].default == kind
    flags = cls.flags()
    assert len(set(flags.values())) == len(flags) == len(cls.config_class.model_fields) - 1
    assert all(f.startswith("--") for f in flags)


def test_the_job_config_accepts_every_registered_kind_and_only_those():
    adapter = TypeAdapter(EngineConfig)
    assert (
        type(adapter.validate_python({"kind": "recorded", "routing_data": "x"}))
        is RecordedEngine.config_class
    )
    assert type(adapter.validate_python({"kind": "vllm", "model_path": "/m"})) is VLLMEngine.config_class
    with pytest.raises(ValidationError, match="kind"):
        adapter.validate_python({"kind": "tgi", "model_path": "/m"})
    with pytest.raises(ConfigError, match="unknown engine 'tgi'; allowed: vllm, openai, recorded"):
        engine_class("tgi")


def test_flags_become_a_validated_config():
    cfg = VLLMEngine.config_from_flags(
        "vllm",
        {
            "--model-path": ["/m"],
            "--engine-arg": ["max_model_len=2048", "dtype=bfloat16"],
            "--num-gpus": ["1"],
        },
    )
    assert cfg.engine_args == {"max_model_len": 2048, "dtype": "bfloat16"}
    assert cfg.num_gpus == 1.0
    cfg = OpenAIEngine.config_from_flags(
        "openai", {"--base-url": ["http://h:1/v1"], "--served-model-name": ["m"]}
    )
    assert (cfg.model, cfg.max_concurrency) == ("m", 8)
    assert OpenAIEngine.card_fields(cfg) == {"base_url": "http://h:1/v1", "served_model_name": "m"}


@pytest.mark.parametrize(
    ("engine", "given", "match"),
    [
        (
            "recorded",
            {"--base-url": ["http://h/v1"], "--data": ["d"]},
            "--base-url do not apply to --engine recorded",
        ),
        ("openai", {}, r"--engine openai needs --base-url \(--base-url: Endpoint"),
        (
            "openai",
            {"--base-url": ["http://h/v1"], "--max-tokens": ["1", "2"]},
            "--max-tokens is given 2 times",
        ),
        (
            "vllm",
            {"--model-path": ["/m"], "--engine-arg": ["dtype"]},
            "--engine-arg 'dtype': expected KEY=VALUE",
        ),
        ("openai", {"--base-url": ["http://h/v1"], "--max-concurrency": ["many"]}, "max_concurrency='many'"),
    ],
)
def test_bad_flags_are_refused_by_name(engine, given, match):
    with pytest.raises(ConfigError, match=match):
        engine_class(engine).config_from_flags(engine, given)


def test_one_model_path_serves_one_candidate():
    cfg = VLLMEngine.config_from_flags("vllm", {"--model-path": ["/m"]})
    VLLMEngine.check_candidates(cfg, ["a"])
    with pytest.raises(ConfigError, match="one model per --model-path; got 2 names"):
        VLLMEngine.check_candidates(cfg, ["a", "b"])


def test_registry_add_help_lists_every_engines_flags():
    out = CliRunner().invoke(app, ["registry", "add", "--help"], env={"COLUMNS": "200"}).stdout
    for kind, cls in ENGINES.items():
        assert f"--engine {kind}:" in out
        for flag in cls.flags():
            assert flag in out


def test_every_serving_engine_has_a_model_server_taking_its_fields():
    from services.models import MODEL_SERVERS, model_server

    assert list(MODEL_SERVERS) == list(MODEL_ENGINES)
    for kind, config_class in MODEL_ENGINES.items():
        params = inspect.signature(MODEL_SERVERS[kind]).parameters
        assert set(config_class.model_fields) - {"kind"} <= set(params), kind
        assert "name" in params
    with pytest.raises(ConfigError, match="unknown serving engine 'tgi'"):
        model_server("tgi")


def test_vllm_replicas_on_cpu_get_vllm_cpus_environment():
    from services.models import RecordedModel, VLLMModel

    cpu = ServedModel.from_dict({"name": "m", "engine": {"kind": "vllm", "model_path": "/m"}})
    gpu = ServedModel.from_dict(
        {"name": "m", "engine": {"kind": "vllm", "model_path": "/m"}, "resources": {"num_gpus": 1}}
    )
    assert VLLMModel.actor_env(cpu) and VLLMModel.actor_env(gpu) is None
    assert RecordedModel.actor_env(cpu) is None


def test_registry_add_tells_names_from_engine_flags_in_any_order():
    from modelsat.cli._registry import _engine_flags

    names, flags = _engine_flags(
        ["a", "--base-url", "http://h/v1", "b", "--max-tokens=3", "--engine-arg", "x=1"]
    )
    assert names == ["a", "b"]
    assert flags == {"--base-url": ["http://h/v1"], "--max-tokens": ["3"], "--engine-arg": ["x=1"]}
    with pytest.raises(ConfigError, match="--base-url needs a value"):
        _engine_flags(["a", "--base-url", "--max-tokens", "3"])
