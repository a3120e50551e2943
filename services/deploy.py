"""Deploying, hot-adding and removing zoo models on a Ray cluster (declarative Serve config).

The whole zoo is one Serve deploy config (`cluster.serve_config.serve_deploy_config`), applied with the
Serve controller's declarative API, the path `serve deploy` and KubeRay's `serveConfigV2` take: applications
that did not change are left alone, a changed `user_config` is a lightweight update (`reconfigure`, no restart),
new applications start and dropped ones stop. Adding a model therefore starts only its application and
reconfigures the router and the ingress; no other replica restarts.
"""

from __future__ import annotations

import os
import time
from typing import Any

from ray import serve

from cluster import connect
from cluster.serve_config import serve_deploy_config, serving_config_from_serve_config
from modelsat.errors import ConfigError, ModelSATError
from modelsat.serving_config import ServedModel, ServingConfig

__all__ = [
    "DeployError",
    "add_model",
    "deploy_serving_config",
    "remove_model",
    "running_serving_config",
    "stop_serving",
    "wait_running",
]


class DeployError(ModelSATError, RuntimeError):
    """A Serve application failed to deploy (the message carries Serve's own reason)."""


def _client() -> Any:
    from ray.serve.context import _get_global_client

    return _get_global_client()


def embedded_cpus(serving: ServingConfig) -> int:
    """Logical CPUs the embedded cluster needs to place every replica at its maximum (scheduling tokens)."""
    need = serving.ingress.resources.num_cpus * serving.ingress.autoscaling.max_replicas
    if serving.router.placement == "deployment":
        need += serving.router.resources.num_cpus * serving.router.autoscaling.max_replicas
    need += sum(m.resources.num_cpus * m.autoscaling.max_replicas for m in serving.models)
    return max(os.cpu_count() or 1, int(need + 2.999))


def wait_running(apps: list[str], timeout_s: float = 900.0) -> None:
    """Wait until the applications are RUNNING.

    Raises:
        DeployError: an application reports DEPLOY_FAILED or UNHEALTHY (with Serve's message), or the timeout
            passes (naming the applications not yet running).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications
        pending = []
        for name in apps:
            st = status.get(name)
            if st is None or st.status in ("NOT_STARTED", "DEPLOYING"):
                pending.append(name)
            elif st.status in ("DEPLOY_FAILED", "UNHEALTHY"):
                raise DeployError(f"Serve application {name!r} is {st.status}: {st.message.strip()[:2000]}")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise DeployError(f"Serve applications not running after {timeout_s:.0f}s: {', '.join(pending)}")
        time.sleep(0.5)


def _apply(serving: ServingConfig, wait_s: float) -> None:
    from ray.serve.schema import ServeDeploySchema

    config = serve_deploy_config(serving)
    keep = [a["name"] for a in config["applications"]]
    dropped = [name for name in serve.status().applications if name not in keep]
    _client().deploy_apps(ServeDeploySchema.model_validate(config))
    wait_running(keep, wait_s)
    _wait_reconfigured(serving, wait_s)
    _wait_deleted(dropped, wait_s)


def _wait_deleted(apps: list[str], timeout_s: float) -> None:
    """Wait until Serve has deleted the applications (their replicas stopped, their resources free).

    Raises:
        DeployError: an application is still listed after the timeout.
    """
    deadline = time.monotonic() + timeout_s
    while left := [name for name in apps if name in serve.status().applications]:
        if time.monotonic() > deadline:
            raise DeployError(f"Serve applications still deleting after {timeout_s:.0f}s: {', '.join(left)}")
        time.sleep(0.5)


def _wait_reconfigured(serving: ServingConfig, timeout_s: float) -> None:
    """Wait until the router and the ingress serve exactly the zoo's models.

    A `user_config` change is applied by `reconfigure` after the deploy call returns, while the application
    still reports RUNNING; this asks the replicas themselves.
    """
    names = [m.name for m in serving.models]
    ingress = serve.get_deployment_handle("Ingress", app_name=serving.name)
    router = (
        serve.get_deployment_handle("RouterDeployment", app_name=serving.name)
        if serving.router.placement == "deployment"
        else None  # placement ingress: the ingress replica's own router
    )
    deadline = time.monotonic() + timeout_s
    while True:
        got_router = (
            router.served_models.remote() if router is not None else ingress.router_served_models.remote()
        ).result(timeout_s=30)
        got_ingress = ingress.served_models.remote().result(timeout_s=30)
        if sorted(got_router) == sorted(names) and sorted(got_ingress) == sorted(names):
            return
        if time.monotonic() > deadline:
            raise DeployError(
                f"the router serves {sorted(got_router)} and the ingress {sorted(got_ingress)} after "
                f"{timeout_s:.0f}s; expected {sorted(names)}"
            )
        time.sleep(0.2)


def deploy_serving_config(serving: ServingConfig, address: str | None = None, wait_s: float = 900.0) -> None:
    """Deploy (or update) the whole zoo on the cluster and wait until every application runs.

    Raises:
        ClusterError: the cluster cannot be reached. DeployError: an application failed to deploy.
    """
    connect(address, num_cpus=embedded_cpus(serving))
    serve.start(
        proxy_location=serving.proxy_location,
        http_options={"host": serving.http_host, "port": serving.http_port},
    )
    _apply(serving, wait_s)


def running_serving_config() -> ServingConfig:
    """The serving config of the Serve deployment running on the connected cluster.

    Raises:
        ConfigError: no Model-SAT deployment is running.
    """
    details = _client().get_serve_details()
    apps = []
    for name, app in (details.get("applications") or {}).items():
        cfg = app.get("deployed_app_config")
        if cfg:
            apps.append({**cfg, "name": name})
    http = details.get("http_options") or {}
    if not apps:
        raise ConfigError(
            "no Serve applications are running; start the zoo with `modelsat serve --config ZOO.yaml`"
        )
    return serving_config_from_serve_config({"applications": apps, "http_options": http})


def add_model(
    model: ServedModel, address: str | None = None, replace: bool = False, wait_s: float = 900.0
) -> ServingConfig:
    """Hot-add (or with `replace`, update) one model's application on a running zoo.

    Returns:
        The new serving config.
    Raises:
        ConfigError: the model is already served and `replace` is False. DeployError: its application failed
            (the running deployment is rolled back to the previous config).
    """
    connect(address)
    serving = running_serving_config()
    _check_profile(serving, model.name)
    names = [m.name for m in serving.models]
    if model.name in names and not replace:
        raise ConfigError(f"model {model.name!r} is already served; pass --replace to update it")
    models = [model if m.name == model.name else m for m in serving.models]
    if model.name not in names:
        models.append(model)
    new = serving.model_copy(update={"models": models})
    new = ServingConfig.model_validate(new.model_dump())
    try:
        _apply(new, wait_s)
    except DeployError:
        _apply(serving, wait_s)  # roll back: the previous graph keeps serving
        raise
    return new


def _check_profile(serving: ServingConfig, name: str) -> None:
    """Fail before deploying anything when the router would have no capability profile for the model.

    Raises:
        ConfigError: naming the registry (or checkpoint) and how to register the model.
    """
    import json
    from pathlib import Path

    from modelsat.registry import ModelRegistry

    if serving.router.registry:
        if name not in ModelRegistry(serving.router.registry).names():
            raise ConfigError(
                f"model {name!r} is not in the router's registry {serving.router.registry!r}; register it first: "
                f"modelsat registry add {name} --router-checkpoint {serving.router.checkpoint} --registry {serving.router.registry} --engine ..."
            )
        return
    profiles = json.loads((Path(serving.router.checkpoint) / "profiles.json").read_text())
    if name not in profiles:
        raise ConfigError(
            f"model {name!r} has no profile in the router checkpoint and the zoo has no registry; set "
            "router.registry and register the model with `modelsat registry add`"
        )


def remove_model(name: str, address: str | None = None, wait_s: float = 900.0) -> ServingConfig:
    """Remove one model's application and drop it from the router's candidates.

    Returns once the router and ingress no longer name the model and Serve has deleted its application (its
    replicas stopped, their CPUs/GPUs free).

    Raises:
        ConfigError: the model is not served, or it is the last one. DeployError: the application is still
            deleting after `wait_s` seconds.
    """
    connect(address)
    serving = running_serving_config()
    if name not in [m.name for m in serving.models]:
        raise ConfigError(
            f"model {name!r} is not served; models: {', '.join(m.name for m in serving.models)}"
        )
    if len(serving.models) == 1:
        raise ConfigError(f"model {name!r} is the last one; stop the deployment instead (`serve shutdown`)")
    new = serving.model_copy(update={"models": [m for m in serving.models if m.name != name]})
    _apply(new, wait_s)
    return new


def stop_serving() -> None:
    """Shut Serve down on the connected cluster (every application, the controller and the proxies)."""
    serve.shutdown()
