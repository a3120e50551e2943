"""KubeRay manifests rendered from the serving config (`modelsat k8s render`).

One serving config (`modelsat.serving_config.ServingConfig`, with its `kubernetes` section) becomes:

- `rayservice.yaml`: a `RayService` whose `serveConfigV2` is `cluster.serve_config.serve_deploy_config(zoo)`
  (the same Serve applications `modelsat serve` deploys), on a RayCluster with a head of `num-cpus: "0"`
  and one worker group per `kubernetes.worker_groups` entry, autoscaled by KubeRay's in-tree autoscaler;
- `rayjob-train-router.yaml`: a `RayJob` running `modelsat train --workers N` (Ray Train + DeepSpeed);
- `rayjob-aptitude-<model>.yaml`: one `RayJob` per model running `modelsat registry add` (the Ray Data aptitude
  job) against the model as the RayService serves it, registering its capability profile;
- `kustomization.yaml` listing them.

Placement of deployments on worker groups: `cluster.placement`; what a re-render means for a running
RayService (in place, appended group, new cluster): `cluster.rollout`.

Docs: https://docs.ray.io/en/latest/cluster/kubernetes/user-guides/rayservice.html ,
https://docs.ray.io/en/latest/cluster/kubernetes/user-guides/configuring-autoscaling.html ,
https://docs.ray.io/en/latest/cluster/kubernetes/getting-started/rayjob-quick-start.html .
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import yaml

from cluster.placement import Placement, place_deployments
from cluster.serve_config import serve_deploy_config
from modelsat.errors import ConfigError
from modelsat.kubernetes_config import TolerationSection, WorkerGroupSection
from modelsat.serving_config import ServingConfig, model_app_name

__all__ = ["SERVE_PORT", "dump_manifest", "model_label", "render_manifests"]

SERVE_PORT = 8000
"""Port of the Serve proxy in the pods; KubeRay's `<name>-serve-svc` forwards to it."""
MAX_RAYJOB_NAME = 47
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABELS = {"app.kubernetes.io/name": "modelsat", "app.kubernetes.io/managed-by": "modelsat-k8s-render"}
HEADER = (
    "# Rendered by `modelsat k8s render` from {source}. Do not edit: change the serving config and re-render.\n"
    "# Validate offline: modelsat k8s validate <this directory>\n"
)


def model_label(model: str) -> str:
    """A model's name as a Kubernetes DNS label: lower case, `.` and `_` as `-` (`Qwen2.5-7B` → `qwen2-5-7b`)."""
    return re.sub(r"[._]", "-", model.lower())


def _check(zoo: ServingConfig, service: str, placements: list[Placement]) -> list[str]:
    """Every problem of a serving config for Kubernetes (empty list: renderable)."""
    k8s, problems = zoo.kubernetes, []
    if not _DNS1035.fullmatch(service) or len(service) > MAX_RAYJOB_NAME:
        problems.append(
            f"RayService name {service!r} (kubernetes.service_name, default the zoo's name) is not a DNS-1035 "
            f"label of at most {MAX_RAYJOB_NAME} characters"
        )
    labels: dict[str, str] = {}
    for m in zoo.models:
        label, job = model_label(m.name), f"aptitude-{model_label(m.name)}"
        if not _DNS1035.fullmatch(label) or len(job) > MAX_RAYJOB_NAME:
            problems.append(
                f"model {m.name!r} renders as {label!r}, not a valid DNS label for its aptitude RayJob {job!r} "
                f"(lower-case letters, digits and '-', starting with a letter, the job name at most "
                f"{MAX_RAYJOB_NAME} characters); rename the model"
            )
        elif label in labels:
            problems.append(f"models {labels[label]!r} and {m.name!r} both render as {label!r}; rename one")
        labels.setdefault(label, m.name)
    if not zoo.router.registry:
        problems.append(
            "router.registry is not set: on Kubernetes the aptitude RayJobs register profiles in the registry "
            "and the router reads them there (give a URI or a path on a volume)"
        )
    mounts = [v.mount_path.rstrip("/") + "/" for v in k8s.volumes]
    for what, where in [
        ("router.checkpoint", zoo.router.checkpoint),
        ("router.registry", zoo.router.registry),
        *(
            (f"models[{m.name}].engine.routing_data", m.engine.routing_data)
            for m in zoo.models
            if m.engine.kind == "recorded"
        ),
        *(
            (f"models[{m.name}].engine.model_path", m.engine.model_path)
            for m in zoo.models
            if m.engine.kind == "vllm" and m.engine.model_path.startswith("/")
        ),
        *(
            (f"kubernetes.training.{f}", getattr(k8s.training, f))
            for f in ("data", "storage_path")
            if k8s.training is not None
        ),
    ]:
        if (
            where
            and "://" not in where
            and not any(where.rstrip("/") + "/" == m or where.startswith(m) for m in mounts)
        ):
            problems.append(
                f"{what}={where!r} is neither a URI nor on a volume the pods mount (kubernetes.volumes mount "
                f"paths: {', '.join(v.mount_path for v in k8s.volumes) or 'none'})"
            )
    token = zoo.ingress.auth_token_env
    if token and token not in k8s.env and not k8s.secret_env:
        problems.append(
            f"ingress.auth_token_env={token!r}: no pod gets this variable; name the Secret holding it in "
            "kubernetes.secret_env"
        )
    for g in k8s.worker_groups:
        need = sum(p.max_pods for p in placements if p.group == g.name)
        if need and need + k8s.headroom_pods > g.max_replicas:
            who = ", ".join(f"{p.deployment} ({p.max_pods})" for p in placements if p.group == g.name)
            problems.append(
                f"worker group {g.name!r}: max_replicas={g.max_replicas} pods cannot hold its deployments' max "
                f"replicas ({who}: {need} pods) plus headroom_pods={k8s.headroom_pods}; raise max_replicas to "
                f"at least {need + k8s.headroom_pods} (an in-place change) or lower the deployments' max_replicas"
            )
    return problems


def _container(name: str, image: str, cpu: str, memory: str, gpus: int, zoo: ServingConfig) -> dict[str, Any]:
    k8s = zoo.kubernetes
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
    container: dict[str, Any], zoo: ServingConfig, node_selector: dict[str, str], tolerations: list[Any]
) -> dict:
    spec: dict[str, Any] = {"containers": [container]}
    volumes = [
        {"name": v.name, "persistentVolumeClaim": {"claimName": v.claim_name, "readOnly": v.read_only}}
        for v in zoo.kubernetes.volumes
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


def _head(zoo: ServingConfig, image: str, serve: bool) -> dict[str, Any]:
    h = zoo.kubernetes.head
    container = _container("ray-head", image, h.cpu, h.memory, 0, zoo)
    ports = [("gcs-server", 6379), ("dashboard", 8265), ("client", 10001)]
    ports += [("serve", SERVE_PORT)] if serve else []
    container["ports"] = [{"containerPort": p, "name": n} for n, p in ports]
    return {
        # no replicas and no tasks on the head: it runs GCS, the dashboard, the Serve controller, job drivers
        "rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
        "template": _pod(container, zoo, h.node_selector, h.tolerations),
    }


def _group_image(zoo: ServingConfig, g: WorkerGroupSection, image: str | None) -> str:
    if g.image:
        return g.image
    if g.gpus and zoo.kubernetes.gpu_image:
        return zoo.kubernetes.gpu_image
    return image or zoo.kubernetes.image


def _worker_group(
    zoo: ServingConfig, g: WorkerGroupSection, image: str | None, fixed: int | None = None
) -> dict:
    tolerations = list(g.tolerations)
    if g.gpus and not any(t.key == "nvidia.com/gpu" for t in tolerations):  # GPU nodes are usually tainted
        tolerations.append(TolerationSection(key="nvidia.com/gpu"))
    container = _container("ray-worker", _group_image(zoo, g, image), g.cpu, g.memory, g.gpus, zoo)
    params: dict[str, str] = {}
    if g.ray_resources:  # `ray start --resources` takes JSON; KubeRay passes the value through a shell
        params["resources"] = json.dumps(json.dumps(g.ray_resources, sort_keys=True))
    out: dict[str, Any] = {
        "groupName": g.name,
        "replicas": fixed if fixed is not None else g.min_replicas,
        "minReplicas": fixed if fixed is not None else g.min_replicas,
        "maxReplicas": fixed if fixed is not None else g.max_replicas,
        "rayStartParams": params,  # KubeRay derives num-cpus / num-gpus / memory from the container limits
        "template": _pod(container, zoo, g.node_selector, tolerations),
    }
    if g.idle_timeout_s is not None and fixed is None:
        out["idleTimeoutSeconds"] = g.idle_timeout_s
    return out


def _meta(
    name: str, zoo: ServingConfig, component: str, extra: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "labels": {
            **LABELS,
            "app.kubernetes.io/component": component,
            "modelsat.io/zoo": zoo.name,
            **(extra or {}),
        },
    }
    if zoo.kubernetes.namespace:
        meta["namespace"] = zoo.kubernetes.namespace
    return meta


def _rayservice(zoo: ServingConfig, service: str, image: str | None, order: list[str]) -> dict[str, Any]:
    k8s = zoo.kubernetes
    served = zoo.model_copy(update={"http_host": "0.0.0.0", "http_port": SERVE_PORT})
    groups = sorted(k8s.worker_groups, key=lambda g: order.index(g.name) if g.name in order else len(order))
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": _meta(service, zoo, "serving"),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_deploy_config(served), sort_keys=False, width=1000),
            "upgradeStrategy": {"type": k8s.upgrade_strategy},
            "rayClusterConfig": {
                "rayVersion": k8s.ray_version,
                "enableInTreeAutoscaling": True,
                "autoscalerOptions": {
                    "upscalingMode": k8s.autoscaler.upscaling_mode,
                    "idleTimeoutSeconds": k8s.autoscaler.idle_timeout_s,
                },
                "headGroupSpec": _head(zoo, image or k8s.image, serve=True),
                "workerGroupSpecs": [_worker_group(zoo, g, image) for g in groups],
            },
        },
    }


def _rayjob(
    zoo: ServingConfig,
    name: str,
    component: str,
    entrypoint: list[str],
    group: dict,
    job: Any,
    image: str | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "entrypoint": shlex.join(entrypoint),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": job.ttl_after_finished_s,
        "activeDeadlineSeconds": job.active_deadline_s,
        "backoffLimit": 1,
        "rayClusterSpec": {
            "rayVersion": zoo.kubernetes.ray_version,
            "headGroupSpec": _head(zoo, image or zoo.kubernetes.image, serve=False),
            "workerGroupSpecs": [group],
        },
    }
    if "--use-gpu" in entrypoint:
        spec["runtimeEnvYAML"] = yaml.safe_dump({"env_vars": {"DS_ACCELERATOR": "cuda"}})
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": _meta(name, zoo, component),
        "spec": spec,
    }


def _training_job(zoo: ServingConfig, service: str, image: str | None) -> dict[str, Any]:
    t = zoo.kubernetes.training
    assert t is not None
    gpu_groups = [g for g in zoo.kubernetes.worker_groups if g.gpus]
    g = (
        zoo.kubernetes.group(t.worker_group)
        if t.worker_group
        else (gpu_groups or zoo.kubernetes.worker_groups)[0]
    )
    args = [
        "modelsat",
        "train",
        "--data",
        t.data,
        "--out",
        zoo.router.checkpoint,
        "--workers",
        str(t.workers),
    ]
    args += ["--config", t.run_config] if t.run_config else []
    args += ["--use-gpu"] if g.gpus else []
    args += ["--storage-path", t.storage_path]
    args += ["--unseen-models", ",".join(t.unseen_models)] if t.unseen_models else []
    group = _worker_group(zoo, g.model_copy(update={"name": "train"}), image, fixed=t.workers)
    return _rayjob(
        zoo, f"train-router-{service}"[:MAX_RAYJOB_NAME].rstrip("-"), "router-training", args, group, t, image
    )


def _aptitude_job(zoo: ServingConfig, service: str, model: str, image: str | None) -> dict[str, Any]:
    a, k8s = zoo.kubernetes.aptitude, zoo.kubernetes
    host = f"{service}-serve-svc" + (f".{k8s.namespace}.svc" if k8s.namespace else "")
    base_url = f"http://{host}:{SERVE_PORT}{zoo.ingress.route_prefix.rstrip('/')}/v1"
    args = [
        "modelsat",
        "registry",
        "add",
        model,
        "--router-checkpoint",
        zoo.router.checkpoint,
        "--registry",
        str(zoo.router.registry),
    ]
    args += ["--engine", "openai", "--base-url", base_url, "--served-model-name", model]
    args += ["--serve-app", model_app_name(model), "--skip-registered", "--wait-s", "3600"]
    args += [
        "--workers",
        str(a.workers),
        "--max-concurrency",
        str(a.max_concurrency),
        "--max-tokens",
        str(a.max_tokens),
    ]
    args += ["--api-key-env", zoo.ingress.auth_token_env] if zoo.ingress.auth_token_env else []
    pod = WorkerGroupSection(
        name="aptitude", cpu=a.worker_cpu, memory=a.worker_memory, max_replicas=a.workers
    )
    group = _worker_group(zoo, pod, image, fixed=a.workers)
    extra = {"modelsat.io/model": model_label(model)}
    job = _rayjob(zoo, f"aptitude-{model_label(model)}", "aptitude-test", args, group, a, image)
    job["metadata"]["labels"].update(extra)
    return job


def render_manifests(
    zoo: ServingConfig,
    router_uri: str | None = None,
    image: str | None = None,
    previous_groups: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The KubeRay manifests of a zoo, by file name (see the module docstring).

    Args:
        zoo: the serving config, with its `kubernetes` section.
        router_uri: router checkpoint location in the cluster (overrides `router.checkpoint`): an object-store
            URI or a path on a mounted volume.
        image: image of the CPU pods (overrides `kubernetes.image`; GPU pods keep `kubernetes.gpu_image`).
        previous_groups: worker group names of the running RayService, in order; kept in that order, new
            groups appended (so KubeRay updates the cluster in place).
    Returns:
        {file name: manifest}; `kustomization.yaml` lists the others.
    Raises:
        ConfigError: every problem found (GPU models without a GPU group, names that are not DNS labels,
            group bounds too small, paths the pods cannot see), in one message; nothing is rendered.
    """
    raw = zoo.model_dump(mode="json")
    if router_uri is not None:
        raw["router"]["checkpoint"] = router_uri
    zoo = ServingConfig.from_dict(raw, source="serving config")
    service = zoo.kubernetes.service_name or zoo.name
    try:
        placements = place_deployments(zoo)
    except ConfigError as e:
        placements, problems = [], [str(e)]
    else:
        problems = []
    problems += _check(zoo, service, placements)
    if problems:
        raise ConfigError(
            f"the serving config cannot be rendered for KubeRay ({len(problems)} problem(s)):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    files: dict[str, dict[str, Any]] = {
        "rayservice.yaml": _rayservice(zoo, service, image, previous_groups or [])
    }
    if zoo.kubernetes.training is not None:
        files["rayjob-train-router.yaml"] = _training_job(zoo, service, image)
    for m in zoo.models:
        files[f"rayjob-aptitude-{model_label(m.name)}.yaml"] = _aptitude_job(zoo, service, m.name, image)
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if zoo.kubernetes.namespace:
        kustomization["namespace"] = zoo.kubernetes.namespace
    kustomization["resources"] = list(files)
    files["kustomization.yaml"] = kustomization
    return files


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (`serveConfigV2: |`), so the Serve config stays readable."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_manifest(doc: dict[str, Any], source: str) -> str:
    """A manifest as YAML text with the "rendered, do not edit" header."""
    return HEADER.format(source=source) + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=110)
