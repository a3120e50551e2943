"""Serve application builders (STYLE.md §4): `build_*(args) -> Application`, validated on the first line.

`modelsat serve` deploys them through the declarative Serve config of `cluster.serve_config`; KubeRay's
`serveConfigV2` names the same import paths.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field
from ray import serve
from ray.serve import Application

from modelsat.config import BaseConfig
from modelsat.serving_config import IngressSection, ResourcesSection, RouterSection, ServedModel

__all__ = ["RouterAppArgs", "build_model_app", "build_router_app"]


class RouterAppArgs(BaseConfig):
    """Arguments of the ingress + router application."""

    name: str = Field("modelsat", description="Ingress application name")
    ingress: IngressSection = Field(default_factory=IngressSection, description="The HTTP API")
    router: RouterSection = Field(description="The router deployment")


def _actor_options(resources: ResourcesSection, env: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"num_cpus": resources.num_cpus, "num_gpus": resources.num_gpus}
    if resources.resources:
        out["resources"] = dict(resources.resources)
    if env:
        out["runtime_env"] = {"env_vars": env}
    return out


def build_router_app(args: dict[str, Any]) -> Application:
    """The ingress (FastAPI, OpenAI-compatible) bound to the router deployment, or ranking in its own process
    (`router.placement: ingress`)."""
    cfg = RouterAppArgs.from_dict(args, source="router application args")
    from services.api import Ingress
    from services.router import RouterDeployment

    r = cfg.router
    router_args = {
        "checkpoint": r.checkpoint,
        "registry": r.registry,
        "max_batch_size": r.max_batch_size,
        "batch_wait_timeout_s": r.batch_wait_timeout_s,
        "registry_refresh_s": r.registry_refresh_s,
    }
    # late-bound ASGI app: each replica builds its own FastAPI app (Ingress.__serve_build_asgi_app__)
    ingress = serve.deployment(
        serve.ingress()(Ingress),
        name="Ingress",
        ray_actor_options=_actor_options(cfg.ingress.resources),
        autoscaling_config=cfg.ingress.autoscaling.serve_options(),
        max_ongoing_requests=256,
    )
    # placement ingress: each ingress replica ranks in its own process (`services.router.InProcessRouter`)
    if r.placement == "ingress":
        return ingress.bind(
            None, cfg.ingress.model_dump(mode="json"), r.registry, in_process_router=router_args
        )
    router = serve.deployment(
        RouterDeployment,
        ray_actor_options=_actor_options(r.resources),
        autoscaling_config=r.autoscaling.serve_options(),
        max_ongoing_requests=max(64, 4 * r.max_batch_size),
        max_queued_requests=r.max_queued_requests,
    ).bind(**router_args, num_threads=max(1, int(r.resources.num_cpus)))
    return ingress.bind(router, cfg.ingress.model_dump(mode="json"), r.registry)


def build_model_app(args: dict[str, Any]) -> Application:
    """One candidate model's application, from its `ServedModel`: the model server registered for its engine
    kind (`services.models.MODEL_SERVERS`), built with the engine config's fields."""
    cfg = ServedModel.from_dict(args, source="model application args")
    from services.models import model_server

    server = model_server(cfg.engine.kind)
    dep = serve.deployment(
        server,
        name="ModelServer",
        ray_actor_options=_actor_options(cfg.resources, server.actor_env(cfg)),
        autoscaling_config=cfg.autoscaling.serve_options(),
        max_ongoing_requests=cfg.max_ongoing_requests,
        max_queued_requests=cfg.max_queued_requests,
        health_check_period_s=5.0,
    )
    return dep.bind(name=cfg.name, **cfg.engine.model_dump(exclude={"kind"}))
