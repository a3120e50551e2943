"""`modelsat serve [add-model | remove-model]`: routed serving on Ray Serve."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from modelsat.cli._app import AddressOption, RegistryOption, VerboseOption, app, registry_at
from modelsat.cli._console import fail, quiet_libraries
from modelsat.cli._extras import require_extras
from modelsat.errors import ConfigError, ModelSATError

serve_app = typer.Typer(
    invoke_without_command=True,
    help="Routed serving on Ray Serve: OpenAI-compatible ingress -> router -> one application per zoo model.",
)
app.add_typer(serve_app, name="serve")


def _absolute(serving: Any) -> Any:
    """Paths in a serving config resolved against the current directory (replicas run elsewhere)."""
    from modelsat.serving_config import ServingConfig

    raw = serving.model_dump(mode="json")
    for key in ("checkpoint", "registry"):
        v = raw["router"].get(key)
        if v and "://" not in v:
            raw["router"][key] = str(Path(v).expanduser().resolve())
    for m in raw["models"]:
        _absolute_engine(m)
    return ServingConfig.from_dict(raw, source="serving config")


def _absolute_engine(model: dict[str, Any]) -> None:
    eng = model["engine"]
    key = {"recorded": "routing_data", "vllm": "model_path"}.get(eng["kind"])
    if key and Path(eng[key]).expanduser().exists():
        eng[key] = str(Path(eng[key]).expanduser().resolve())


@serve_app.callback()
def serve_main(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Serving config YAML (modelsat.serving_config.ServingConfig)"),
    ] = None,
    router: Annotated[
        str | None, typer.Option("--router-checkpoint", "--router", help="Override router.checkpoint")
    ] = None,
    registry: Annotated[str | None, typer.Option("--registry", help="Override router.registry")] = None,
    address: AddressOption = None,
    detach: Annotated[bool, typer.Option("--detach", help="Deploy and return (remote clusters)")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Deploy the zoo and serve until interrupted (Ctrl-C), or `add-model` / `remove-model` on a running one."""
    if ctx.invoked_subcommand is not None:
        return
    quiet_libraries()
    try:
        if config is None:
            raise ConfigError("modelsat serve needs --config ZOO.yaml (see modelsat/configs/serving_*.yaml)")
        require_extras("modelsat serve", "serving")
        from cluster.logs import capture_ray_logs
        from modelsat.serving_config import ServingConfig
        from services.deploy import deploy_serving_config

        capture_ray_logs(None, verbose, announce=lambda line: typer.echo(line, err=True))

        serving = ServingConfig.from_yaml(config)
        raw = serving.model_dump(mode="json")
        if router is not None:
            raw["router"]["checkpoint"] = str(router)
        if registry is not None:
            raw["router"]["registry"] = registry
        serving = _absolute(ServingConfig.from_dict(raw, source=str(config)))
        from modelsat.router import RouterCheckpoint

        RouterCheckpoint.load(serving.router.checkpoint)  # fail fast, before any replica starts
        t0 = time.monotonic()
        deploy_serving_config(serving, address)
        url = f"http://{serving.http_host}:{serving.http_port}{serving.ingress.route_prefix.rstrip('/')}/v1"
        typer.echo(
            f"serving {len(serving.models)} models + auto at {url} (ready in {time.monotonic() - t0:.0f}s); "
            f"OpenAI clients: base_url={url!r}, model='auto'"
        )
        if detach:
            return
        typer.echo("Ctrl-C stops serving", err=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            from services.deploy import stop_serving

            stop_serving()
    except ModelSATError as e:
        fail(e)


@serve_app.command("add-model")
def serve_add_model(
    config: Annotated[
        Path | None, typer.Option("--config", help="Model YAML (one zoo model: name, engine, resources)")
    ] = None,
    from_registry: Annotated[
        str | None,
        typer.Option(
            "--from-registry", help="Add a registered model served at its card's OpenAI-compatible URL"
        ),
    ] = None,
    registry: RegistryOption = None,
    address: AddressOption = None,
    replace: Annotated[bool, typer.Option("--replace", help="Update a served model")] = False,
) -> None:
    """Hot-add a model to a running zoo: deploy its application and reconfigure the router (no restarts)."""
    quiet_libraries()
    try:
        require_extras("modelsat serve add-model", "serving")
        from modelsat.serving_config import ServedModel
        from services.deploy import add_model

        if (config is None) == (from_registry is None):
            raise ConfigError("give exactly one of --config MODEL.yaml and --from-registry NAME")
        if config is not None:
            raw = ServedModel.from_yaml(config).model_dump(mode="json")
        else:
            card = registry_at(registry).get(from_registry).card
            if not card.base_url:
                raise ConfigError(
                    f"the registry card of {from_registry!r} has no base_url (Serve application "
                    f"{card.serve_application!r}); add a model served by this cluster with --config MODEL.yaml"
                )
            raw = {
                "name": card.name,
                "engine": {"kind": "openai", "base_url": card.base_url, "model": card.served_model_name},
                "resources": {"num_cpus": 0.1},
            }
        _absolute_engine(raw)
        serving = add_model(
            ServedModel.from_dict(raw, source=str(config or "registry card")), address or "auto", replace
        )
        typer.echo(f"serving {raw['name']}; models: {', '.join(m.name for m in serving.models)}")
    except ModelSATError as e:
        fail(e)


@serve_app.command("remove-model")
def serve_remove_model(
    name: Annotated[str, typer.Argument(help="Model to remove")],
    address: AddressOption = None,
) -> None:
    """Remove a model from a running zoo: the router stops choosing it, then its application stops."""
    quiet_libraries()
    try:
        require_extras("modelsat serve remove-model", "serving")
        from services.deploy import remove_model

        serving = remove_model(name, address or "auto")
        typer.echo(f"removed {name}; models: {', '.join(m.name for m in serving.models)}")
    except ModelSATError as e:
        fail(e)
