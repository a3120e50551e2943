"""`modelsat registry add | list | show | remove`: the model registry (aptitude tests of new models)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from modelsat.cli._app import RegistryOption, app, registry_at
from modelsat.cli._console import RichProgress, fail, quiet_libraries
from modelsat.errors import ConfigError, ModelSATError

registry_app = typer.Typer(
    no_args_is_help=True,
    help="The model registry: add candidate models through their aptitude test (no retraining), list, show, remove.",
)
app.add_typer(registry_app, name="registry")
# the group's name before the vocabulary fix (README, "Renamed"): still accepted, not listed
app.add_typer(registry_app, name="zoo", hidden=True, deprecated=True)


def _engine_args(pairs: list[str] | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--engine-arg {pair!r}: expected KEY=VALUE (e.g. max_model_len=2048)")
        out[key.strip()] = yaml.safe_load(value)
    return out


@registry_app.command("add")
def registry_add(
    names: Annotated[list[str], typer.Argument(help="Candidate model name(s) to add")],
    router: Annotated[
        str,
        typer.Option(
            "--router-checkpoint",
            "--router",
            help="Router checkpoint (directory or URI) whose aptitude test is taken",
        ),
    ],
    engine: Annotated[str, typer.Option("--engine", help="vllm, openai or recorded")],
    registry: RegistryOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a registered model")] = False,
    skip_registered: Annotated[
        bool,
        typer.Option("--skip-registered", help="Test only the names not registered yet (re-runnable jobs)"),
    ] = False,
    model_path: Annotated[
        str | None, typer.Option("--model-path", help="vllm: local model directory or hub id")
    ] = None,
    engine_arg: Annotated[
        list[str] | None, typer.Option("--engine-arg", help="vllm: KEY=VALUE for vllm.LLM (repeatable)")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="openai: endpoint, e.g. http://127.0.0.1:8000/v1")
    ] = None,
    served_model_name: Annotated[
        str | None, typer.Option("--served-model-name", help="openai: model name at the endpoint")
    ] = None,
    api_key_env: Annotated[
        str, typer.Option("--api-key-env", help="openai: environment variable holding the API key")
    ] = "OPENAI_API_KEY",
    max_concurrency: Annotated[
        int, typer.Option("--max-concurrency", min=1, help="openai: requests in flight per worker")
    ] = 8,
    timeout_s: Annotated[
        float, typer.Option("--timeout-s", min=0.001, help="openai: request timeout (s)")
    ] = 120.0,
    max_retries: Annotated[int, typer.Option("--max-retries", min=0, help="openai: retries per request")] = 3,
    wait_s: Annotated[
        float,
        typer.Option("--wait-s", min=0.0, help="openai: wait up to this long for the endpoint to answer (s)"),
    ] = 0.0,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="vllm/openai: generated tokens per item at most")
    ] = 512,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="recorded: zoo with the outcomes; any engine: zoo with the items if the router lacks them",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Ray Data workers (engines) for the job")
    ] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per engine batch")] = 32,
    num_gpus: Annotated[float, typer.Option("--num-gpus", min=0.0, help="vllm: GPUs per worker")] = 0.0,
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster (default RAY_ADDRESS or embedded)")
    ] = None,
    serve_app: Annotated[
        str | None, typer.Option("--serve-app", help="Card: Ray Serve application serving the model")
    ] = None,
    usd_per_mtok: Annotated[
        float | None, typer.Option("--usd-per-mtok", min=0.0, help="Card: price in USD per 1M tokens")
    ] = None,
    context_length: Annotated[
        int | None, typer.Option("--context-length", min=1, help="Card: context length in tokens")
    ] = None,
) -> None:
    """Run a router's aptitude test on candidate model(s) and register their capability profiles."""
    quiet_libraries()
    try:
        from modelsat.cli._extras import require_extras
        from modelsat.registry import ModelCard

        require_extras("modelsat registry add (the aptitude test runs on Ray Data)", "ray-data")
        from jobs.aptitude import AptitudeJobConfig, add_models
        from jobs.engines import ENGINES, engine_config

        if engine not in ENGINES:
            raise ConfigError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
        if engine in ("vllm", "openai"):
            require_extras(f"modelsat registry add --engine {engine}", engine)
        given = {
            "--model-path": model_path,
            "--engine-arg": engine_arg or None,
            "--num-gpus": num_gpus or None,
            "--base-url": base_url,
            "--served-model-name": served_model_name,
            "--wait-s": wait_s or None,
        }
        allowed = {
            "vllm": {"--model-path", "--engine-arg", "--num-gpus"},
            "openai": {"--base-url", "--served-model-name", "--wait-s"},
        }
        stray = [k for k, v in given.items() if v is not None and k not in allowed.get(engine, set())]
        if stray:
            raise ConfigError(f"{', '.join(stray)} do not apply to --engine {engine}")
        if engine == "vllm":
            if model_path is None:
                raise ConfigError("--engine vllm needs --model-path (a local model directory or hub id)")
            if len(names) != 1:
                raise ConfigError(f"--engine vllm adds one model per --model-path; got {len(names)} names")
            options: dict[str, Any] = {
                "model_path": model_path,
                "max_tokens": max_tokens,
                "engine_args": _engine_args(engine_arg),
                "num_gpus": num_gpus,
            }
        elif engine == "openai":
            if base_url is None:
                raise ConfigError("--engine openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
            if served_model_name and len(names) != 1:
                raise ConfigError("--served-model-name applies to one model; give one name")
            options = {
                "base_url": base_url,
                "model": served_model_name,
                "api_key_env": api_key_env,
                "max_concurrency": max_concurrency,
                "timeout_s": timeout_s,
                "max_retries": max_retries,
                "max_tokens": max_tokens,
                "wait_s": wait_s,
            }
        else:
            if data is None:
                raise ConfigError("--engine recorded needs --data ZOO_DIR (the zoo holding the outcomes)")
            options = {"routing_data": data}
        job = AptitudeJobConfig(engine=engine_config(engine, options), workers=workers, batch_size=batch_size)
        reg = registry_at(registry)
        if skip_registered:
            if replace:
                raise ConfigError("--skip-registered and --replace contradict each other; give one")
            known = set(reg.names())
            for n in [n for n in names if n in known]:
                typer.echo(f"skipped {n}: already in {reg.uri}")
            names = [n for n in names if n not in known]
            if not names:
                typer.echo("nothing to test: every model is registered")
                return
        price = _recorded_prices(data, names) if engine == "recorded" and usd_per_mtok is None else {}
        cards = [
            ModelCard.from_dict(
                {
                    "name": n,
                    "serve_application": serve_app,
                    "base_url": base_url,
                    "served_model_name": served_model_name,
                    "usd_per_mtok": usd_per_mtok if usd_per_mtok is not None else price.get(n),
                    "context_length_tokens": context_length,
                },
                source=f"model card of {n!r}",
            )
            for n in names
        ]
        entries = add_models(router, cards, job, reg, replace, data, RichProgress(), address)
        for e in entries:
            typer.echo(
                f"added {e.name} (version {e.version}) to {reg.uri}: {e.aptitude['n_items']} items, "
                f"{e.aptitude['n_unparsed']} unparsed, mean accuracy {100 * float(e.profile.accuracies.mean()):.1f}%"
            )
    except ModelSATError as e:
        fail(e)


def _recorded_prices(data: str | None, names: list[str]) -> dict[str, float]:
    """Prices the zoo's models.parquet states (`price_per_mtok`), for cards of recorded models."""
    from modelsat.data import load_routing_data

    if data is None:
        return {}
    info = load_routing_data(data).model_info
    return {n: float(p) for n in names if (p := info.get(n, {}).get("price_per_mtok")) is not None}


@registry_app.command("list")
def registry_list(
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List the registered candidate models."""
    try:
        from modelsat.cli._registry_view import registry_table

        reg = registry_at(registry)
        entries = reg.entries()
        if as_json:
            typer.echo(
                json.dumps([e.to_dict() | {"aptitude": _summary(e.aptitude)} for e in entries], indent=1)
            )
            return
        typer.echo(registry_table(entries) if entries else f"registry {reg.uri} has no models")
    except ModelSATError as e:
        fail(e)


def _summary(aptitude: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in aptitude.items() if k != "items"}


@registry_app.command("show")
def registry_show(
    name: Annotated[str, typer.Argument(help="Candidate model name")],
    registry: RegistryOption = None,
    version: Annotated[int | None, typer.Option("--version", min=1, help="A past version")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with per-item results)")] = False,
) -> None:
    """Show a registered model: card, capability profile, aptitude results and version history."""
    try:
        from modelsat.cli._registry_view import entry_report

        reg = registry_at(registry)
        entry = reg.get(name, version)
        if as_json:
            typer.echo(json.dumps(entry.to_dict() | {"history": reg.history(name)}, indent=1))
            return
        typer.echo(entry_report(entry, reg.history(name)))
    except ModelSATError as e:
        fail(e)


@registry_app.command("remove")
def registry_remove(
    name: Annotated[str, typer.Argument(help="Candidate model name")],
    registry: RegistryOption = None,
) -> None:
    """Unregister a model (a tombstone version; its history stays readable)."""
    try:
        reg = registry_at(registry)
        version = reg.remove(name)
        typer.echo(f"removed {name} from {reg.uri} (tombstone version {version})")
    except ModelSATError as e:
        fail(e)
