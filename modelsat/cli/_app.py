"""The root Typer app of the `modelsat` command line and helpers its command groups share."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from modelsat.cli._console import split_names

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Model-SAT: capability instruction tuning for LLM routing (train, evaluate, route).",
)


def bundled_config(name: str) -> Path:
    """Path of a config shipped in `modelsat/configs/`."""
    return Path(str(resources.files("modelsat") / "configs" / name))


def run_config(config: Path | None, data: str | None, unseen: str | None, max_steps: int | None = None):
    from modelsat.runconfig import RunConfig

    cfg = RunConfig.from_yaml(config) if config else RunConfig()
    overrides = {
        "data.routing_data": data,
        "data.unseen_models": split_names(unseen),
        "train.max_steps": max_steps,
    }
    return cfg.with_overrides(overrides, source=str(config or "defaults"))


RegistryOption = Annotated[
    str | None,
    typer.Option("--registry", help="Registry directory or URI (default: $MODELSAT_REGISTRY or ./registry)"),
]


def registry_at(uri: str | None):
    from modelsat.registry import ModelRegistry, default_registry_uri

    return ModelRegistry(uri or default_registry_uri())


AddressOption = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster (default RAY_ADDRESS or the embedded local cluster)"),
]


VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose",
        help="Show Ray's and Ray Serve's own log lines on the console (default: a log file; MODELSAT_VERBOSE=1)",
    ),
]
