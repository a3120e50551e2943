"""The run configuration of training + evaluation (the main job's YAML, `modelsat/configs/*.yaml`)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator

from modelsat.aptitude import AptitudeConfig
from modelsat.config import BaseConfig
from modelsat.router.build import RouterSpec
from modelsat.training import TrainConfig

__all__ = ["DataSection", "EvalSection", "RunConfig", "SplitSection"]


class DataSection(BaseConfig):
    """Which zoo to train on and which of its models to keep out of training."""

    routing_data: str | None = Field(
        None,
        validation_alias=AliasChoices("routing_data", "zoo"),  # `zoo:` before the vocabulary fix (README)
        description="Routing data directory, or its name under the data root ($MODELSAT_DATA)",
    )
    models: list[str] | None = Field(
        None,
        min_length=2,
        description="The zoo's candidate models, a subset of the routing data's (None = all of them); the rest "
        "are neither trained on nor routed to",
    )
    unseen_models: list[str] = Field(
        default_factory=list,
        description="Models kept out of router training; they join at evaluation via profiles",
    )
    validation_unseen_models: list[str] = Field(
        default_factory=list,
        description="Models also kept out of router training that play newcomers on the validation split: "
        "early stopping, the profile prior and the calibration are chosen with them among the candidates "
        "(the deployment protocol; disjoint from unseen_models)",
    )


class SplitSection(BaseConfig):
    """How the zoo is split (see `modelsat.split`)."""

    seed: int = Field(0, description="Seed of the held-out split and the validation split")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="Share of each task held out for testing")
    validation_fraction: float = Field(
        0.1, gt=0, lt=1, description="Share of the non-aptitude training pool used for validation"
    )


class EvalSection(BaseConfig):
    """Evaluation settings."""

    baselines: list[str] = Field(
        default_factory=lambda: ["category_prior", "knn", "mlp", "mf"],
        description="Baselines fitted on the training pool to run (a kind of `modelsat.methods.METHODS` with `learned`)",
    )
    cost_sweep_points: int = Field(40, ge=2, le=1000, description="λ values in the accuracy–cost sweep")
    seed: int = Field(0, description="Seed of the learned baselines")

    @field_validator("baselines")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        from modelsat.methods import METHODS

        learned = [n for n, m in METHODS.items() if m.learned]
        bad = [b for b in v if b not in learned]
        if bad:
            raise ValueError(f"unknown baseline {bad[0]!r}; allowed: {', '.join(learned)}")
        return v


class RunConfig(BaseConfig):
    """A training + evaluation run (the main job's config, `modelsat/configs/*.yaml`)."""

    data: DataSection = Field(default_factory=DataSection, description="Routing data and unseen models")
    split: SplitSection = Field(default_factory=SplitSection, description="Held-out and validation split")
    aptitude: AptitudeConfig = Field(default_factory=AptitudeConfig, description="Aptitude test (paper §3)")
    router: RouterSpec = Field(default_factory=RouterSpec, description="Router architecture")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training loop")
    eval: EvalSection = Field(default_factory=EvalSection, description="Evaluation")
