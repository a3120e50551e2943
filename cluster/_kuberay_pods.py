"""What the rendered RayService and RayJobs share: names, labels, pod templates, head and worker groups.

- `model_label`: a model's name as a Kubernetes DNS label (in file, job and label names);
- `object_meta`: an object's `metadata` (name, the `LABELS` every rendered object carries, namespace);
- `head_group` / `worker_group`: a RayCluster's `headGroupSpec` and one `workerGroupSpecs` entry, with their
  pod templates (resources, env and Secrets, volumes, `/dev/shm` for GPU pods, node selectors, tolerations).

Used by `cluster._kuberay_rayservice` and `cluster._kuberay_rayjob`; the entry point is `cluster.kuberay_render`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from modelsat.kubernetes_config import TolerationSection, WorkerGroupSection
from modelsat.serving_config import ServingConfig

__all__ = ["LABELS", "SERVE_PORT", "head_group", "model_label", "object_meta", "worker_group"]

SERVE_PORT = 8000
"""Port of the Serve proxy in the pods; KubeRay's `<name>-serve-svc` forwards to it."""
LABELS = {"app.kubernetes.io/name": "modelsat", "app.kubernetes.io/managed-by": "modelsat-k8s-render"}


def model_label(model: str) -> str:
    """A model's name as a Kubernetes DNS label: lower case, `.` and `_` as `-` (`Qwen2.5-7B` → `qwen2-5-7b`)."""
    return re.sub(r"[._]", "-", model.lower())


def _container(
    name: str, image: str, cpu: str, memory: str, gpus: int, serving: ServingConfig
) -> dict[str, Any]:
    k8s = serving.kubernetes
    limits: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        limits["nvidia.com/gpu"] = gpus
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": {"limits": limits, "requests": dict(limits)},
    }
    if k8s.env:
        out["env"] = [{"name": k, "value": v} for k, v in sorted(k8s.env.items())]
    if k8s.secret_env:
        out["envFrom"] = [{"secretRef": {"name": s}} for s in k8s.secret_env]
    mounts = [{"name": v.name, "mountPath": v.mount_path, "readOnly": v.read_only} for v in k8s.volumes]
    if gpus:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})  # NCCL / vLLM need more than 64 MiB
    if mounts:
        out["volumeMounts"] = mounts
    return out


def _pod(
    container: dict[str, Any], serving: ServingConfig, node_selector: dict[str, str], tolerations: list[Any]
) -> dict:
    spec: dict[str, Any] = {"containers": [container]}
    volumes = [
        {"name": v.name, "persistentVolumeClaim": {"claimName": v.claim_name, "readOnly": v.read_only}}
        for v in serving.kubernetes.volumes
    ]
    if any(m["name"] == "dshm" for m in container.get("volumeMounts", [])):
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    if volumes:
        spec["volumes"] = volumes
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        spec["tolerations"] = [t.model_dump(exclude_none=True) for t in tolerations]
    return {"spec": spec}


def head_group(serving: ServingConfig, image: str, serve: bool) -> dict[str, Any]:
    """A RayCluster's `headGroupSpec`: `kubernetes.head`'s pod, no Ray CPUs (nothing is scheduled on it).

    Args:
        serving: the serving config.
        image: the head pod's image.
        serve: also expose the Serve proxy port (`SERVE_PORT`; the RayService's head, not a RayJob's).
    Returns:
        The `headGroupSpec` mapping.
    """
    h = serving.kubernetes.head
    container = _container("ray-head", image, h.cpu, h.memory, 0, serving)
    ports = [("gcs-server", 6379), ("dashboard", 8265), ("client", 10001)]
    ports += [("serve", SERVE_PORT)] if serve else []
    container["ports"] = [{"containerPort": p, "name": n} for n, p in ports]
    return {
        # no replicas and no tasks on the head: it runs GCS, the dashboard, the Serve controller, job drivers
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": _pod(container, serving, h.node_selector, h.tolerations),
    }


def _group_image(serving: ServingConfig, g: WorkerGroupSection, image: str | None) -> str:
    if g.image:
        return g.image
    if g.gpus and serving.kubernetes.gpu_image:
        return serving.kubernetes.gpu_image
    return image or serving.kubernetes.image


def worker_group(
    serving: ServingConfig, g: WorkerGroupSection, image: str | None, fixed: int | None = None
) -> dict:
    """One `workerGroupSpecs` entry: pods of `g`'s shape (GPU pods tolerate the `nvidia.com/gpu` taint).

    Args:
        serving: the serving config.
        g: the worker group's section (resources, image, replicas, node selector, tolerations).
        image: image of CPU pods (overrides `kubernetes.image`; `g.image` and `kubernetes.gpu_image` win).
        fixed: a fixed number of pods (replicas = min = max, no idle timeout; for RayJobs), or None for
            `g`'s autoscaling bounds.
    Returns:
        The worker group mapping.
    """
    tolerations = list(g.tolerations)
    if g.gpus and not any(t.key == "nvidia.com/gpu" for t in tolerations):  # GPU nodes are usually tainted
        tolerations.append(TolerationSection(key="nvidia.com/gpu"))
    container = _container("ray-worker", _group_image(serving, g, image), g.cpu, g.memory, g.gpus, serving)
    params: dict[str, str] = {}
    if g.ray_resources:  # `ray start --resources` takes JSON; KubeRay passes the value through a shell
        params["resources"] = json.dumps(json.dumps(g.ray_resources, sort_keys=True))
    out: dict[str, Any] = {
        "groupName": g.name,
        "replicas": fixed if fixed is not None else g.min_replicas,
        "minReplicas": fixed if fixed is not None else g.min_replicas,
        "maxReplicas": fixed if fixed is not None else g.max_replicas,
        "rayStartParams": params,  # KubeRay derives num-cpus / num-gpus / memory from the container limits
        "template": _pod(container, serving, g.node_selector, tolerations),
    }
    if g.idle_timeout_s is not None and fixed is None:
        out["idleTimeoutSeconds"] = g.idle_timeout_s
    return out


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
