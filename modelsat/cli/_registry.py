"""`modelsat registry add | list | show | remove`: the model registry (aptitude tests of new models)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

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


class _AddCommand(TyperCommand):
    """`registry add`, whose help ends with each engine's flags, read from the engine configs when shown."""

    @property  # type: ignore[override]
    def epilog(self) -> str:
        from jobs.engines import ENGINES

        parts = ["Engine options (one flag per field of the engine's config, `jobs.engines`):"]
        for kind, cls in ENGINES.items():
            fields = cls.config_class.model_fields
            flags = [f"{flag} ({fields[name].description})" for flag, name in cls.flags().items()]
            parts.append(f"--engine {kind}: " + "; ".join(flags))
        return "\n\n".join(parts)

    @epilog.setter
    def epilog(self, value: str | None) -> None:  # click sets it in __init__; the property computes it
        pass


def _engine_flags(tokens: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split what the fixed options left over into candidate names and engine flags.

    Click hands unknown options to the variadic `NAMES` argument, so the tokens mix names with `--flag VALUE`
    and `--flag=VALUE` pairs; each flag keeps its values in order.

    Raises:
        ConfigError: a flag without value.
    """
    names: list[str] = []
    flags: dict[str, list[str]] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            names.append(token)
            i += 1
            continue
        flag, sep, value = token.partition("=")
        if not sep:
            if i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                raise ConfigError(f"{flag} needs a value")
            value, i = tokens[i + 1], i + 1
        flags.setdefault(flag, []).append(value)
        i += 1
    return names, flags


def _unregistered(reg: Any, names: list[str], replace: bool) -> list[str]:
    """`--skip-registered`: the names not registered yet (each skipped one is printed)."""
    if replace:
        raise ConfigError("--skip-registered and --replace contradict each other; give one")
    known = set(reg.names())
    for n in [n for n in names if n in known]:
        typer.echo(f"skipped {n}: already in {reg.uri}")
    return [n for n in names if n not in known]


@registry_app.command(
    "add", cls=_AddCommand, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def registry_add(
    ctx: typer.Context,
    names: Annotated[
        list[str], typer.Argument(help="Candidate model name(s) to add, then the engine's options (below)")
    ],
    router: Annotated[
        str,
        typer.Option(
            "--router-checkpoint",
            "--router",
            help="Router checkpoint (directory or URI) whose aptitude test is taken",
        ),
    ],
    engine: Annotated[
        str, typer.Option("--engine", help="Engine kind: vllm, openai or recorded (options below)")
    ],
    registry: RegistryOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace a registered model")] = False,
    skip_registered: Annotated[
        bool,
        typer.Option("--skip-registered", help="Test only the names not registered yet (re-runnable jobs)"),
    ] = False,
    data: Annotated[
        str | None,
        typer.Option(
            "--data",
            help="recorded: routing data with the outcomes; any engine: routing data with the items if the "
            "router lacks them",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Ray Data workers (engines) for the job")
    ] = 1,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Items per engine batch")] = 32,
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
        from jobs.engines import engine_class

        cls = engine_class(engine)
        if cls.generates:
            require_extras(f"modelsat registry add --engine {engine}", engine)
        names, given = _engine_flags([*names, *ctx.args])
        if not names:
            raise ConfigError("give at least one candidate model name")
        if data is not None and cls.flags().get("--data"):
            given["--data"] = [data]
        config = cls.config_from_flags(engine, given)
        cls.check_candidates(config, names)
        job = AptitudeJobConfig(engine=config, workers=workers, batch_size=batch_size)
        reg = registry_at(registry)
        if skip_registered:
            names = _unregistered(reg, names, replace)
            if not names:
                typer.echo("nothing to test: every model is registered")
                return
        price = _recorded_prices(data, names) if not cls.generates and usd_per_mtok is None else {}
        card = {
            "serve_application": serve_app,
            "context_length_tokens": context_length,
            **cls.card_fields(config),
        }
        cards = [
            ModelCard.from_dict(
                {
                    **card,
                    "name": n,
                    "usd_per_mtok": usd_per_mtok if usd_per_mtok is not None else price.get(n),
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
