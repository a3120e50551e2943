"""`modelsat k8s render | validate`: KubeRay manifests derived from the serving config, validated offline."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from modelsat.cli._app import app
from modelsat.cli._console import fail
from modelsat.errors import ConfigError, ModelSATError

k8s_app = typer.Typer(
    no_args_is_help=True,
    help="KubeRay: render the serving config as a RayService + RayJobs + kustomization, validate manifests offline.",
)
app.add_typer(k8s_app, name="k8s")

UPDATE_NOTES = {
    "unchanged": "no change to the RayService",
    "serve": "only the Serve config (and autoscaling bounds) changed: KubeRay updates the Serve applications in "
    "place on the running RayCluster",
    "append": "worker group(s) appended: KubeRay adds them to the running RayCluster in place and updates the "
    "Serve applications",
    "new-cluster": "the RayCluster spec changed: KubeRay starts a new RayCluster and switches traffic when it is "
    "ready (zero-downtime upgrade; nothing happens with upgrade_strategy None)",
}


def check_entrypoint(entrypoint: str) -> str | None:
    """Parse a RayJob entrypoint with the `modelsat` command line (commands, options, required values).

    Returns:
        The problem (an unknown command or option, a missing or bad value), or None if it parses.
    """
    argv = shlex.split(entrypoint)
    if not argv or argv[0] != "modelsat":
        return f"expected a `modelsat ...` command, got {entrypoint[:60]!r}"
    import typer.main

    try:
        ctx = typer.main.get_command(app).make_context("modelsat", argv[1:])
        while hasattr(ctx.command, "resolve_command"):  # a command group: descend into the subcommand
            rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
            if not rest:
                break
            name, sub, args = ctx.command.resolve_command(ctx, rest)
            ctx = sub.make_context(name, args, parent=ctx)
    except Exception as e:  # Typer's vendored click raises its own UsageError / BadParameter classes
        if hasattr(e, "format_message"):
            return f"`{shlex.join(argv[:3])} ...`: {e.format_message()}"
        raise
    return None


@k8s_app.command("render")
def k8s_render(
    config: Annotated[
        Path, typer.Option("--config", help="Serving config YAML (with its kubernetes section)")
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the manifests to")],
    router_uri: Annotated[
        str | None,
        typer.Option(
            "--router-uri", help="Router checkpoint in the cluster: s3://..., gs://... or a volume path"
        ),
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Image of the CPU pods (modelsat + Ray)")
    ] = None,
) -> None:
    """Render the RayService, the training and aptitude RayJobs and a kustomization.yaml; validate, then write.

    Re-rendering into the same directory keeps the worker groups of the earlier render in their order (new
    groups appended, so KubeRay updates the running cluster in place) and says how KubeRay will apply it.
    """
    try:
        from cluster.kuberay_render import dump_manifest, render_manifests
        from cluster.kuberay_validate import KINDS, validate_manifest
        from cluster.rollout import cluster_update, previous_groups
        from modelsat.paths import atomic_write_text
        from modelsat.serving_config import ServingConfig

        serving = ServingConfig.from_yaml(config)
        old, order = previous_groups(out) if out.is_dir() else (None, [])
        files = render_manifests(serving, router_uri, image, order)
        for name, doc in files.items():  # everything is checked before anything is written
            if doc["kind"] in KINDS:
                validate_manifest(doc, source=name)
                entry = doc["spec"].get("entrypoint")
                problem = check_entrypoint(entry) if entry else None
                if problem:
                    raise ConfigError(f"{name}: spec.entrypoint: {problem}")
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        for name, doc in files.items():
            atomic_write_text(out / name, dump_manifest(doc, config.name))
        stale = [
            p
            for p in sorted(out.glob("*.yaml"))
            if p.name not in files and p.read_text().startswith("# Rendered by `modelsat k8s render`")
        ]
        for p in stale:
            p.unlink()
        for name, doc in files.items():
            what = f"{doc['kind']} {doc.get('metadata', {}).get('name', '')}".rstrip()
            typer.echo(f"wrote {out / name} ({what})")
        for p in stale:
            typer.echo(f"removed {p} (no longer rendered)")
        if old is not None:
            kind = cluster_update(old, files["rayservice.yaml"])
            typer.echo(f"update over the previous render: {kind}: {UPDATE_NOTES[kind]}")
        typer.echo(f"apply: kubectl apply -k {out}")
    except ModelSATError as e:
        fail(e)


@k8s_app.command("validate")
def k8s_validate(
    directory: Annotated[Path, typer.Argument(help="Directory of manifests (the output of `k8s render`)")],
    no_strict: Annotated[
        bool, typer.Option("--no-strict", help="Ignore fields the schemas do not list")
    ] = False,
) -> None:
    """Validate every manifest offline: KubeRay v1.7.0 CRD schemas, names, serveConfigV2, entrypoints, kustomization."""
    try:
        from cluster.kustomize import validate_dir

        for name, kind, obj in validate_dir(
            directory, strict=not no_strict, check_entrypoint=check_entrypoint
        ):
            typer.echo(f"ok {directory / name} ({kind} {obj})")
    except ModelSATError as e:
        fail(e)
