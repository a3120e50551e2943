"""The rendered RayJobs: router training (`modelsat train`) and one aptitude test per model.

- `training_job`: `rayjob-train-router.yaml`, `modelsat train --workers N` (Ray Train + DeepSpeed) on a fixed
  group of `kubernetes.training.workers` pods shaped like `kubernetes.training.worker_group` (default: the
  first GPU group);
- `aptitude_job`: `rayjob-aptitude-<model>.yaml`, the Ray Data aptitude job against the model as the RayService
  serves it (`<service>-serve-svc`), registering its capability profile in `router.registry`.

Each job brings up its own RayCluster (Ray token auth as the RayService's, `cluster._kuberay_security`) and
deletes it when it finishes; its submitter pod is rendered too (`submitterPodTemplate`, hardened). The entry
point is `cluster.kuberay_render`.
"""

from __future__ import annotations

import shlex
from typing import Any

import yaml

from cluster._kuberay_pods import (
    SERVE_PORT,
    head_group,
    model_label,
    object_meta,
    submitter_template,
    worker_group,
)
from cluster._kuberay_security import auth_options
from modelsat.kubernetes_config import WorkerGroupSection
from modelsat.serving_config import ServingConfig, model_app_name

__all__ = ["MAX_RAYJOB_NAME", "aptitude_job", "training_job"]

MAX_RAYJOB_NAME = 47


def _rayjob(
    serving: ServingConfig,
    name: str,
    component: str,
    entrypoint: list[str],
    group: dict,
    job: Any,
    image: str | None,
    service: str,
) -> dict[str, Any]:
    role = {"router-training": "training", "aptitude-test": "aptitude"}[component]
    head_image = image or serving.kubernetes.image
    spec: dict[str, Any] = {
        "entrypoint": shlex.join(entrypoint),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": True,
        "ttlSecondsAfterFinished": job.ttl_after_finished_s,
        "activeDeadlineSeconds": job.active_deadline_s,
        "backoffLimit": 1,
        "submitterPodTemplate": submitter_template(serving, head_image, service),
        "rayClusterSpec": {
            "rayVersion": serving.kubernetes.ray_version,
            "authOptions": auth_options(serving, service),
            "headGroupSpec": head_group(serving, head_image, role, service),
            "workerGroupSpecs": [group],
        },
    }
    if "--use-gpu" in entrypoint:
        spec["runtimeEnvYAML"] = yaml.safe_dump({"env_vars": {"DS_ACCELERATOR": "cuda"}})
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": object_meta(name, serving, component),
        "spec": spec,
    }


def training_job(serving: ServingConfig, service: str, image: str | None) -> dict[str, Any]:
    """The router-training RayJob (`rayjob-train-router.yaml`), named `train-router-<service>`.

    Args:
        serving: the serving config, with `kubernetes.training` set.
        service: the RayService's name.
        image: image of CPU pods (as for `worker_group`).
    Returns:
        The RayJob manifest.
    """
    t = serving.kubernetes.training
    assert t is not None
    gpu_groups = [g for g in serving.kubernetes.worker_groups if g.gpus]
    g = (
        serving.kubernetes.group(t.worker_group)
        if t.worker_group
        else (gpu_groups or serving.kubernetes.worker_groups)[0]
    )
    args = [
        "modelsat",
        "train",
        "--data",
        t.data,
        "--out",
        serving.router.checkpoint,
        "--workers",
        str(t.workers),
    ]
    args += ["--config", t.run_config] if t.run_config else []
    args += ["--use-gpu"] if g.gpus else []
    args += ["--storage-path", t.storage_path]
    args += ["--unseen-models", ",".join(t.unseen_models)] if t.unseen_models else []
    group = worker_group(
        serving, g.model_copy(update={"name": "train"}), image, "training", service, fixed=t.workers
    )
    return _rayjob(
        serving,
        f"train-router-{service}"[:MAX_RAYJOB_NAME].rstrip("-"),
        "router-training",
        args,
        group,
        t,
        image,
        service,
    )


def aptitude_job(serving: ServingConfig, service: str, model: str, image: str | None) -> dict[str, Any]:
    """One model's aptitude RayJob (`rayjob-aptitude-<model label>.yaml`), named `aptitude-<model label>`.

    Args:
        serving: the serving config.
        service: the RayService's name (its `<service>-serve-svc` serves the model the job queries).
        model: the model's name in the zoo.
        image: image of the job's pods (CPU only).
    Returns:
        The RayJob manifest.
    """
    a, k8s = serving.kubernetes.aptitude, serving.kubernetes
    host = f"{service}-serve-svc" + (f".{k8s.namespace}.svc" if k8s.namespace else "")
    base_url = f"http://{host}:{SERVE_PORT}{serving.ingress.route_prefix.rstrip('/')}/v1"
    args = [
        "modelsat",
        "registry",
        "add",
        model,
        "--router-checkpoint",
        serving.router.checkpoint,
        "--registry",
        str(serving.router.registry),
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
    args += ["--api-key-env", serving.ingress.auth_token_env] if serving.ingress.auth_token_env else []
    pod = WorkerGroupSection(
        name="aptitude", cpu=a.worker_cpu, memory=a.worker_memory, max_replicas=a.workers
    )
    group = worker_group(serving, pod, image, "aptitude", service, fixed=a.workers)
    extra = {"modelsat.io/model": model_label(model)}
    job = _rayjob(serving, f"aptitude-{model_label(model)}", "aptitude-test", args, group, a, image, service)
    job["metadata"]["labels"].update(extra)
    return job
