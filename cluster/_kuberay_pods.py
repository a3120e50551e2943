"""What the rendered RayService and RayJobs share: names, labels, pod templates, head and worker groups.

- `model_label`: a model's name as a Kubernetes DNS label (in file, job and label names);
- `object_meta`: an object's `metadata` (name, the `LABELS` every rendered object carries, namespace);
- `head_group` / `worker_group`: a RayCluster's `headGroupSpec` and one `workerGroupSpecs` entry, with their
  pod templates (resources, env and Secrets by key, volumes read-only unless the pod writes them, `/dev/shm`
  with a `sizeLimit` for GPU pods, securityContext, node selectors, tolerations);
- `submitter_template`: a RayJob's `submitterPodTemplate` (KubeRay's default submitter, hardened).

The hardening pieces (securityContext, Ray token auth, Secrets, mount modes) are in `cluster._kuberay_security`.
Used by `cluster._kuberay_rayservice` and `cluster._kuberay_rayjob`; the entry point is `cluster.kuberay_render`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cluster._kuberay_security import (
    container_security,
    pod_security,
    ray_auth_env,
    secret_env,
    secret_env_from,
    volume_read_only,
)
from modelsat.kubernetes_config import TolerationSection, WorkerGroupSection
from modelsat.serving_config import ServingConfig

__all__ = [
    "DASHBOARD_PORT",
    "LABELS",
    "SERVE_PORT",
    "SERVICE_LABEL",
    "head_group",
    "model_label",
    "object_meta",
    "submitter_template",
    "worker_group",
]

SERVE_PORT = 8000
"""Port of the Serve proxy in the pods; KubeRay's `<name>-serve-svc` forwards to it."""
DASHBOARD_PORT = 8265
"""Port of the Ray dashboard (job submission, Serve REST API) on the head."""
LABELS = {"app.kubernetes.io/name": "modelsat", "app.kubernetes.io/managed-by": "modelsat-k8s-render"}
SERVICE_LABEL = "modelsat.io/rayservice"
"""Pod-template label of the RayService's pods (value: its name), stable across the clusters of upgrades."""
_SUBMITTER_RESOURCES = {  # KubeRay v1.7.0 common/job.go GetDefaultSubmitterContainer
    "limits": {"cpu": "1", "memory": "1Gi"},
    "requests": {"cpu": "500m", "memory": "200Mi"},
}


def model_label(model: str) -> str:
    """A model's name as a Kubernetes DNS label: lower case, `.` and `_` as `-` (`Qwen2.5-7B` → `qwen2-5-7b`)."""
    return re.sub(r"[._]", "-", model.lower())


def _container(
    name: str,
    image: str,
    g: Any,
    serving: ServingConfig,
    role: str,
    service: str,
    group: str | None,
) -> dict[str, Any]:
    """The Ray container of a pod of `g`'s shape (a head or worker section); `group` as for `volume_read_only`."""
    k8s, gpus = serving.kubernetes, getattr(g, "gpus", 0)
    limits: dict[str, Any] = {"cpu": g.cpu, "memory": g.memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": {"limits": limits, "requests": dict(limits)},
        "securityContext": container_security(),
    }
    env = [{"name": k, "value": v} for k, v in sorted(k8s.env.items())]
    env += ray_auth_env(serving, service) + secret_env(serving, role, head=name == "ray-head")
    if env:
        out["env"] = env
    if secret_env_from(serving):
        out["envFrom"] = secret_env_from(serving)
    mounts = [
        {"name": v.name, "mountPath": v.mount_path, "readOnly": volume_read_only(serving, v, role, group)}
        for v in k8s.volumes
    ]
    shm = getattr(g, "shm_size", None) or (k8s.shm_size if gpus else None)
    if shm:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})  # NCCL / vLLM need more than 64 MiB
    if mounts:
        out["volumeMounts"] = mounts
    return out


def _pod(
    container: dict[str, Any],
    serving: ServingConfig,
    g: Any,
    tolerations: list[Any],
    labels: dict[str, str],
) -> dict:
    spec: dict[str, Any] = {"securityContext": pod_security(serving), "containers": [container]}
    read_only = {m["name"]: m.get("readOnly", False) for m in container.get("volumeMounts", [])}
    volumes: list[dict[str, Any]] = [
        {"name": v.name, "persistentVolumeClaim": {"claimName": v.claim_name, "readOnly": read_only[v.name]}}
        for v in serving.kubernetes.volumes
    ]
    if "dshm" in read_only:
        shm = getattr(g, "shm_size", None) or serving.kubernetes.shm_size
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm}})
    if volumes:
        spec["volumes"] = volumes
    if g.node_selector:
        spec["nodeSelector"] = dict(g.node_selector)
    if tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in tolerations]
    return {"metadata": {"labels": dict(labels)}, "spec": spec} if labels else {"spec": spec}


def _pod_labels(role: str, service: str) -> dict[str, str]:
    return {SERVICE_LABEL: service} if role == "service" else {}


def head_group(serving: ServingConfig, image: str, role: str, service: str) -> dict[str, Any]:
    """A RayCluster's `headGroupSpec`: `kubernetes.head`'s pod, no Ray CPUs (nothing is scheduled on it).

    Args:
        serving: the serving config.
        image: the head pod's image.
        role: `service` (the RayService's head: also exposes `SERVE_PORT`, mounts every volume read-only, gets
            no Secret keys) or a RayJob's (`training`, `aptitude`: its driver runs here).
        service: the RayService's name (names the Ray token Secret by default and labels its pods).
    Returns:
        The `headGroupSpec` mapping.
    """
    h = serving.kubernetes.head
    container = _container("ray-head", image, h, serving, role, service, None)
    ports = [("gcs-server", 6379), ("dashboard", DASHBOARD_PORT), ("client", 10001)]
    ports += [("serve", SERVE_PORT)] if role == "service" else []
    container["ports"] = [{"containerPort": p, "name": n} for n, p in ports]
    return {
        # no replicas and no tasks on the head: it runs GCS, the dashboard, the Serve controller, job drivers
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": _pod(container, serving, h, h.tolerations, _pod_labels(role, service)),
    }


def _group_image(serving: ServingConfig, g: WorkerGroupSection, image: str | None) -> str:
    if g.image:
        return g.image
    if g.gpus and serving.kubernetes.gpu_image:
        return serving.kubernetes.gpu_image
    return image or serving.kubernetes.image


def worker_group(
    serving: ServingConfig,
    g: WorkerGroupSection,
    image: str | None,
    role: str,
    service: str,
    fixed: int | None = None,
) -> dict:
    """One `workerGroupSpecs` entry: pods of `g`'s shape (GPU pods tolerate the `nvidia.com/gpu` taint).

    Args:
        serving: the serving config.
        g: the worker group's section (resources, image, replicas, node selector, tolerations, /dev/shm).
        image: image of CPU pods (overrides `kubernetes.image`; `g.image` and `kubernetes.gpu_image` win).
        role: `service` (a RayService worker group: volumes written by `g.name` or `serving` are read-write)
            or a RayJob's (`training`, `aptitude`).
        service: the RayService's name (as for `head_group`).
        fixed: a fixed number of pods (replicas = min = max, no idle timeout; for RayJobs), or None for
            `g`'s autoscaling bounds.
    Returns:
        The worker group mapping.
    """
    tolerations = list(g.tolerations)
    if g.gpus and not any(t.key == "nvidia.com/gpu" for t in tolerations):  # GPU nodes are usually tainted
        tolerations.append(TolerationSection(key="nvidia.com/gpu"))
    group = g.name if role == "service" else None
    container = _container("ray-worker", _group_image(serving, g, image), g, serving, role, service, group)
    params: dict[str, str] = {}
    if g.ray_resources:  # `ray start --resources` takes JSON; KubeRay passes the value through a shell
        params["resources"] = json.dumps(json.dumps(g.ray_resources, sort_keys=True))
    out: dict[str, Any] = {
        "groupName": g.name,
        "replicas": fixed if fixed is not None else g.min_replicas,
        "minReplicas": fixed if fixed is not None else g.min_replicas,
        "maxReplicas": fixed if fixed is not None else g.max_replicas,
        "rayStartParams": params,  # KubeRay derives num-cpus / num-gpus / memory from the container limits
        "template": _pod(container, serving, g, tolerations, _pod_labels(role, service)),
    }
    if g.idle_timeout_s is not None and fixed is None:
        out["idleTimeoutSeconds"] = g.idle_timeout_s
    return out


def submitter_template(serving: ServingConfig, image: str, service: str) -> dict[str, Any]:
    """A RayJob's `submitterPodTemplate`: KubeRay's default submitter (the head's image, 1 CPU / 1Gi limits,
    `restartPolicy: Never`) with the pod and container securityContext and the Ray token.

    Args:
        serving: the serving config.
        image: the job head's image.
        service: the RayService's name (names the Ray token Secret by default).
    Returns:
        The pod template; KubeRay fills in the `ray job submit` command.
    """
    container: dict[str, Any] = {
        "name": "ray-job-submitter",
        "image": image,
        "resources": json.loads(json.dumps(_SUBMITTER_RESOURCES)),
        "securityContext": container_security(),
    }
    env = ray_auth_env(serving, service)
    if env:
        container["env"] = env
    return {
        "spec": {
            "restartPolicy": "Never",
            "securityContext": pod_security(serving),
            "containers": [container],
        }
    }


def object_meta(
    name: str, serving: ServingConfig, component: str, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    """An object's `metadata`: its name, the `LABELS` of every rendered object, and the zoo's namespace.

    Args:
        name: `metadata.name`.
        serving: the serving config (its name becomes the `modelsat.io/zoo` label).
        component: the `app.kubernetes.io/component` label (e.g. `serving`, `router-training`).
        extra: more labels.
    Returns:
        The `metadata` mapping.
    """
    meta: dict[str, Any] = {
        "name": name,
        "labels": {
            **LABELS,
            "app.kubernetes.io/component": component,
            "modelsat.io/zoo": serving.name,
            **(extra or {}),
        },
    }
    if serving.kubernetes.namespace:
        meta["namespace"] = serving.kubernetes.namespace
    return meta
