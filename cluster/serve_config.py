"""The Ray Serve deploy config (`ServeDeploySchema`) derived from a serving config.

One function turns `modelsat.serving_config.ServingConfig` into the declarative Serve config that `modelsat serve` deploys on
a local or remote cluster and that a KubeRay `RayService` embeds as `serveConfigV2` (Ray docs: "Serve Config
Files"; in-place updates: "Updating Applications In-Place"). Applications:

- `<zoo.name>` (route prefix `ingress.route_prefix`): the ingress and router deployments
  (`services.app:build_router_app`); their `user_config` carries the served models, so adding or removing a
  model is a lightweight update that restarts neither.
- `zoo-<model>` (no route prefix): one application per candidate model (`services.app:build_model_app`),
  deployed, updated or removed alone.
"""

from __future__ import annotations

from typing import Any

from modelsat.serving_config import ServedModel, ServingConfig, model_app_name

__all__ = [
    "MODEL_APP_IMPORT",
    "ROUTER_APP_IMPORT",
    "model_application",
    "serve_deploy_config",
    "serving_config_from_serve_config",
]

ROUTER_APP_IMPORT = "services.app:build_router_app"
MODEL_APP_IMPORT = "services.app:build_model_app"


def model_application(model: ServedModel) -> dict[str, Any]:
    """The Serve application entry of one candidate model."""
    return {
        "name": model_app_name(model.name),
        "route_prefix": None,
        "import_path": MODEL_APP_IMPORT,
        "args": model.model_dump(mode="json"),
        "deployments": [
            {
                "name": "ModelServer",
                "max_ongoing_requests": model.max_ongoing_requests,
                "max_queued_requests": model.max_queued_requests,
                "autoscaling_config": model.autoscaling.serve_options(),
            }
        ],
    }


def serve_deploy_config(serving: ServingConfig) -> dict[str, Any]:
    """The Serve deploy config of a zoo (a dict that validates as `ray.serve.schema.ServeDeploySchema`)."""
    names = [m.name for m in serving.models]
    router_app = {
        "name": serving.name,
        "route_prefix": serving.ingress.route_prefix,
        "import_path": ROUTER_APP_IMPORT,
        "args": {
            "name": serving.name,
            "ingress": serving.ingress.model_dump(mode="json"),
            "router": serving.router.model_dump(mode="json"),
        },
        "deployments": [
            *(
                [
                    {
                        "name": "RouterDeployment",
                        "user_config": {"models": names},
                        "max_queued_requests": serving.router.max_queued_requests,
                        "autoscaling_config": serving.router.autoscaling.serve_options(),
                    }
                ]
                if serving.router.placement == "deployment"
                else []  # placement ingress: the ingress replicas rank in their own process
            ),
            {
                "name": "Ingress",
                "user_config": {"models": {n: model_app_name(n) for n in names}},
                "autoscaling_config": serving.ingress.autoscaling.serve_options(),
            },
        ],
    }
    return {
        "proxy_location": serving.proxy_location,
        "http_options": {"host": serving.http_host, "port": serving.http_port},
        "applications": [router_app, *(model_application(m) for m in serving.models)],
    }


def serving_config_from_serve_config(config: dict[str, Any]) -> ServingConfig:
    """Rebuild the serving config from a deployed Serve config (inverse of `serve_deploy_config`).

    Raises:
        ConfigError: the config was not made by `serve_deploy_config`.
    """
    from modelsat.errors import ConfigError

    apps = config.get("applications", [])
    routers = [a for a in apps if a.get("import_path") == ROUTER_APP_IMPORT]
    if len(routers) != 1:
        raise ConfigError(
            f"the running Serve config has {len(routers)} Model-SAT ingress applications; expected 1 "
            "(deploy the zoo with `modelsat serve --config ZOO.yaml` first)"
        )
    args = routers[0]["args"]
    http = config.get("http_options") or {}
    return ServingConfig.from_dict(
        {
            "name": args["name"],
            "http_host": http.get("host", "127.0.0.1"),
            "http_port": http.get("port", 8000),
            "proxy_location": config.get("proxy_location", "EveryNode"),
            "ingress": args["ingress"],
            "router": args["router"],
            "models": [a["args"] for a in apps if a.get("import_path") == MODEL_APP_IMPORT],
        },
        source="running Serve config",
    )
