"""The rendered `RayService`: the zoo's Serve applications on an autoscaled RayCluster.

`rayservice` builds the manifest: `serveConfigV2` is `cluster.serve_config.serve_deploy_config(zoo)` (the same
Serve applications `modelsat serve` deploys, listening on `SERVE_PORT` in the pods), the head runs no replicas
(`num-cpus: "0"`), and there is one worker group per `kubernetes.worker_groups` entry, autoscaled by KubeRay's
in-tree autoscaler, Ray token auth (`authOptions`), and the autoscaler sidecar's securityContext. The
`NetworkPolicy` rendered with it is `cluster._kuberay_network`. The entry point is `cluster.kuberay_render`.
"""

from __future__ import annotations

from typing import Any

import yaml

from cluster._kuberay_pods import SERVE_PORT, head_group, object_meta, worker_group
from cluster._kuberay_security import auth_options, container_security
from cluster.serve_config import serve_deploy_config
from modelsat.serving_config import ServingConfig

__all__ = ["rayservice"]


def rayservice(serving: ServingConfig, service: str, image: str | None, order: list[str]) -> dict[str, Any]:
    """The RayService manifest (`rayservice.yaml`).

    Args:
        serving: the serving config.
        service: the RayService's name.
        image: image of CPU pods (overrides `kubernetes.image`).
        order: worker group names of the running RayService; those groups keep this order, the others follow
            in config order (so KubeRay updates the cluster in place).
    Returns:
        The RayService manifest.
    """
    k8s = serving.kubernetes
    served = serving.model_copy(update={"http_host": "0.0.0.0", "http_port": SERVE_PORT})
    groups = sorted(k8s.worker_groups, key=lambda g: order.index(g.name) if g.name in order else len(order))
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": object_meta(service, serving, "serving"),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_deploy_config(served), sort_keys=False, width=1000),
            "upgradeStrategy": {"type": k8s.upgrade_strategy},
            "rayClusterConfig": {
                "rayVersion": k8s.ray_version,
                "authOptions": auth_options(serving, service),
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {
                    "upscalingMode": k8s.autoscaler.upscaling_mode,
                    "idleTimeoutSeconds": k8s.autoscaler.idle_timeout_s,
                    "securityContext": container_security(),
                },
                "headGroupSpec": head_group(serving, image or k8s.image, "service", service),
                "workerGroupSpecs": [worker_group(serving, g, image, "service", service) for g in groups],
            },
        },
    }
