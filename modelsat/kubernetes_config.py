"""The `kubernetes` section of the serving config: how `modelsat k8s render` lays the zoo out on KubeRay.

The serving config stays the one source of truth for what runs (STYLE.md §3): its models, router and ingress
become the RayService's `serveConfigV2`; this section adds what only Kubernetes needs: the image, the head
pod, the worker groups (pod size, GPUs, node selectors, tolerations, autoscaling bounds), volumes, secrets,
and the two RayJobs (router training, aptitude tests). Rendering lives in `cluster.kuberay_render`.

Kubernetes quantities (`cpu: "4"`, `memory: 16Gi`) follow
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/ ; KubeRay field meanings
follow the RayCluster/RayService/RayJob CRDs of KubeRay v1.7.0.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from modelsat.config import BaseConfig

__all__ = [
    "AptitudeJobSection",
    "AutoscalerSection",
    "HeadSection",
    "KubernetesSection",
    "TolerationSection",
    "TrainingJobSection",
    "VolumeSection",
    "WorkerGroupSection",
    "cpu_quantity",
]

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CPU_QUANTITY = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"


def cpu_quantity(value: str) -> float:
    """CPUs in a Kubernetes CPU quantity (`"4"` → 4.0, `"500m"` → 0.5).

    Raises:
        ValueError: `value` is not a plain or milli CPU quantity.
    """
    if not re.fullmatch(CPU_QUANTITY, value):
        raise ValueError(f"cpu={value!r} is not a CPU quantity; allowed: e.g. 4, 2.5, 500m")
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


class TolerationSection(BaseConfig):
    """A pod toleration (core/v1 `Toleration`)."""

    key: str = Field(min_length=1, description="Taint key, e.g. nvidia.com/gpu")
    operator: Literal["Exists", "Equal"] = Field("Exists", description="Exists (any value) or Equal")
    value: str | None = Field(None, description="Taint value (operator Equal only)")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        "NoSchedule", description="Taint effect tolerated; None = all effects"
    )

    @model_validator(mode="after")
    def _value(self) -> TolerationSection:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(f"value={self.value!r} is only allowed with operator Equal")
        return self


class PodSection(BaseConfig):
    """Size and placement of one kind of Ray pod."""

    cpu: str = Field("4", pattern=CPU_QUANTITY, description="CPU request = limit per pod (e.g. 4, 500m)")
    memory: str = Field("16Gi", pattern=MEMORY_QUANTITY, description="Memory request = limit per pod")
    node_selector: dict[str, str] = Field(default_factory=dict, description="Pod nodeSelector")
    tolerations: list[TolerationSection] = Field(default_factory=list, description="Pod tolerations")


class HeadSection(PodSection):
    """The head pod: GCS, dashboard, Serve controller; `num-cpus: "0"` keeps replicas and tasks off it."""

    cpu: str = Field("2", pattern=CPU_QUANTITY, description="CPU request = limit of the head pod")
    memory: str = Field("8Gi", pattern=MEMORY_QUANTITY, description="Memory request = limit of the head pod")


class WorkerGroupSection(PodSection):
    """One KubeRay worker group: identical pods the autoscaler adds and removes between min and max."""

    name: str = Field(
        max_length=40, pattern=DNS1123_LABEL, description="groupName (a DNS-1123 label, pod names use it)"
    )
    gpus: int = Field(0, ge=0, le=16, description="nvidia.com/gpu per pod (0 = CPU pods)")
    min_replicas: int = Field(0, ge=0, le=1000, description="Pods kept when idle (the autoscaler's floor)")
    max_replicas: int = Field(4, ge=0, le=1000, description="Most pods the autoscaler may create")
    ray_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Custom Ray resources each pod advertises (deployments ask for them to land here)",
    )
    image: str | None = Field(None, description="Image of this group (default: kubernetes.image / gpu_image)")
    idle_timeout_s: int | None = Field(
        None, ge=0, description="Idle seconds before the autoscaler removes a pod (default: the autoscaler's)"
    )

    @model_validator(mode="after")
    def _bounds(self) -> WorkerGroupSection:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"worker group {self.name!r}: min_replicas={self.min_replicas} is above "
                f"max_replicas={self.max_replicas}; min_replicas must be <= max_replicas"
            )
        return self

    @property
    def num_cpus(self) -> float:
        """Ray CPUs of one pod (KubeRay sets `num-cpus` from the container's CPU limit)."""
        return cpu_quantity(self.cpu)


class VolumeSection(BaseConfig):
    """A PersistentVolumeClaim mounted into every Ray pod (router checkpoints, registry, data, caches)."""

    name: str = Field(pattern=DNS1123_LABEL, description="Volume name in the pod spec")
    claim_name: str = Field(pattern=DNS1123_LABEL, description="PersistentVolumeClaim name")
    mount_path: str = Field(pattern=r"^/", description="Absolute mount path in the containers")
    read_only: bool = Field(False, description="Mount read-only")


class AutoscalerSection(BaseConfig):
    """KubeRay's in-tree Ray autoscaler (`autoscalerOptions`)."""

    upscaling_mode: Literal["Default", "Aggressive", "Conservative"] = Field(
        "Default", description="How fast pods are added (Conservative: one pending request at a time)"
    )
    idle_timeout_s: int = Field(60, ge=0, description="Idle seconds before a worker pod is removed")


class TrainingJobSection(BaseConfig):
    """The router-training RayJob (`modelsat train --workers N`: Ray Train + DeepSpeed)."""

    data: str = Field(description="Routing data directory inside the pods (e.g. /data/mmlu_pro on a volume)")
    run_config: str | None = Field(
        None, description="Run config YAML inside the image or a volume (default: the bundled mmlu_pro.yaml)"
    )
    workers: int = Field(2, ge=1, le=256, description="Ray Train workers = pods of the training worker group")
    worker_group: str | None = Field(
        None, description="Worker group whose pod spec the training pods use (default: the first GPU group)"
    )
    storage_path: str = Field(
        description="Ray Train storage (checkpoints), shared by all pods: a volume path or an object-store URI"
    )
    unseen_models: list[str] = Field(default_factory=list, description="Models kept out of training")
    active_deadline_s: int = Field(21600, ge=60, description="Wall-clock limit of the whole job, in seconds")
    ttl_after_finished_s: int = Field(600, ge=0, description="Seconds the finished cluster is kept for logs")


class AptitudeJobSection(BaseConfig):
    """The aptitude-test RayJob: `modelsat registry add` through the live RayService (OpenAI-compatible API)."""

    workers: int = Field(1, ge=1, le=64, description="Ray Data workers of the job")
    max_concurrency: int = Field(8, ge=1, le=256, description="Requests in flight per worker")
    max_tokens: int = Field(512, ge=1, description="Generated tokens per item at most")
    worker_cpu: str = Field("2", pattern=CPU_QUANTITY, description="CPU of each job worker pod")
    worker_memory: str = Field("4Gi", pattern=MEMORY_QUANTITY, description="Memory of each job worker pod")
    active_deadline_s: int = Field(7200, ge=60, description="Wall-clock limit of the whole job, in seconds")
    ttl_after_finished_s: int = Field(600, ge=0, description="Seconds the finished cluster is kept for logs")


class KubernetesSection(BaseConfig):
    """How the zoo runs on Kubernetes with KubeRay (`modelsat k8s render`)."""

    service_name: str | None = Field(
        None,
        max_length=47,
        pattern=r"^[a-z]([-a-z0-9]*[a-z0-9])?$",
        description="RayService name (DNS-1035, at most 47 characters); default: the zoo's name",
    )
    namespace: str | None = Field(None, pattern=DNS1123_LABEL, description="Namespace of every object")
    image: str = Field(
        "ghcr.io/modelsat/modelsat:0.1.0", min_length=1, description="Image of CPU pods (modelsat + Ray)"
    )
    gpu_image: str | None = Field(None, description="Image of GPU pods (default: image)")
    ray_version: str = Field("2.60.0", pattern=r"^\d+\.\d+\.\d+$", description="Ray version in the image")
    head: HeadSection = Field(default_factory=HeadSection, description="The head pod")
    worker_groups: list[WorkerGroupSection] = Field(
        default_factory=lambda: [WorkerGroupSection(name="cpu", min_replicas=1, max_replicas=4)],
        min_length=1,
        description="Worker groups; every deployment must fit one (CPU deployments a group without GPUs)",
    )
    headroom_pods: int = Field(
        1,
        ge=0,
        le=100,
        description="Pods each worker group can add beyond its deployments' max replicas (rolling updates, "
        "failover); `render` checks max_replicas against it",
    )
    autoscaler: AutoscalerSection = Field(default_factory=AutoscalerSection, description="Ray autoscaler")
    upgrade_strategy: Literal["NewCluster", "None"] = Field(
        "NewCluster",
        description="RayService upgradeStrategy: NewCluster = zero-downtime upgrade when the cluster spec "
        "changes; None = never replace the cluster",
    )
    volumes: list[VolumeSection] = Field(default_factory=list, description="PVCs mounted into every pod")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables of every pod")
    secret_env: list[str] = Field(
        default_factory=list,
        description="Secrets whose keys become environment variables of every pod (API keys, object-store "
        "credentials); never put secret values in the config",
    )
    training: TrainingJobSection | None = Field(
        None, description="Router-training RayJob (None: not rendered)"
    )
    aptitude: AptitudeJobSection = Field(
        default_factory=AptitudeJobSection, description="Aptitude-test RayJob"
    )

    @field_validator("worker_groups")
    @classmethod
    def _unique_groups(cls, groups: list[WorkerGroupSection]) -> list[WorkerGroupSection]:
        names = [g.name for g in groups]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"worker group names must be unique; repeated: {', '.join(dup)}")
        return groups

    @model_validator(mode="after")
    def _training_group(self) -> KubernetesSection:
        names = [g.name for g in self.worker_groups]
        if self.training is not None and self.training.worker_group not in (None, *names):
            raise ValueError(
                f"training.worker_group={self.training.worker_group!r} is not a worker group; "
                f"allowed: {', '.join(names)}"
            )
        mounts = [v.mount_path for v in self.volumes]
        dup = sorted({m for m in mounts if mounts.count(m) > 1})
        if dup:
            raise ValueError(f"volumes mount_path must be unique; repeated: {', '.join(dup)}")
        return self

    def group(self, name: str) -> WorkerGroupSection:
        """The worker group called `name`.

        Raises:
            KeyError: no such group (the message lists the groups).
        """
        for g in self.worker_groups:
            if g.name == name:
                return g
        raise KeyError(f"no worker group {name!r}; groups: {', '.join(g.name for g in self.worker_groups)}")
