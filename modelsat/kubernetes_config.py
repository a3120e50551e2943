"""The `kubernetes` section of the serving config: how `modelsat k8s render` lays the zoo out on KubeRay.

The serving config stays the one source of truth for what runs (STYLE.md §3): its models, router and ingress
become the RayService's `serveConfigV2`; this section adds what only Kubernetes needs: the image, the head
pod, the worker groups (pod size, GPUs, node selectors, tolerations, autoscaling bounds), volumes, secrets,
and the two RayJobs (router training, aptitude tests), and how the rendered objects are hardened (Ray token
auth, the NetworkPolicy, pod and container securityContext, read-only mounts, Secrets by key, image and model
revision pinning, `/dev/shm` size). Rendering lives in `cluster.kuberay_render`.

This module holds the sections of pods, worker groups, volumes, the autoscaler and the RayJobs, and
`KubernetesSection` itself. The hardening sections and checks live in `modelsat._kubernetes_hardening`, the
name patterns and resource quantities (`cpu_quantity`, `memory_bytes`) in `modelsat._kubernetes_formats`;
both are re-exported here. KubeRay field meanings follow the RayCluster/RayService/RayJob CRDs of KubeRay
v1.7.0.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from modelsat._kubernetes_formats import (
    CPU_QUANTITY,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,  # noqa: F401 - re-exported: defined here before the split
    MEMORY_QUANTITY,
    cpu_quantity,
    memory_bytes,
)
from modelsat._kubernetes_hardening import (
    ENV_NAME,  # noqa: F401 - re-exported: defined here before the split
    SECRET_KEY,  # noqa: F401 - re-exported: defined here before the split
    SECRET_USERS,
    NetworkPolicySection,
    RayAuthSection,
    SecretEnvSection,
    SecuritySection,
    hardening_problems,
    image_problem,
)
from modelsat.config import BaseConfig

__all__ = [
    "CACHE_ENV",
    "SECRET_USERS",
    "AptitudeJobSection",
    "AutoscalerSection",
    "HeadSection",
    "KubernetesSection",
    "NetworkPolicySection",
    "RayAuthSection",
    "SecretEnvSection",
    "SecuritySection",
    "TolerationSection",
    "TrainingJobSection",
    "VolumeSection",
    "WorkerGroupSection",
    "cpu_quantity",
    "image_problem",
    "memory_bytes",
]

CACHE_ENV = (
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "VLLM_CACHE_ROOT",
    "XDG_CACHE_HOME",
    "TORCH_HOME",
    "TRITON_CACHE_DIR",
)
"""Cache variables of `kubernetes.env` that make a volume written by the pods loading models (see
`VolumeSection.writers`)."""


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
    shm_size: str | None = Field(
        None,
        pattern=MEMORY_QUANTITY,
        description="sizeLimit of this group's /dev/shm (a memory-backed emptyDir; counts against the pod's "
        "memory limit); default: kubernetes.shm_size on GPU pods, none on CPU pods (set it to add one)",
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
    """A PersistentVolumeClaim mounted into every Ray pod (router checkpoints, registry, data, caches).

    Read-write only on the pods that write it, read-only everywhere else (the RayService's head always).
    """

    name: str = Field(pattern=DNS1123_LABEL, description="Volume name in the pod spec")
    claim_name: str = Field(pattern=DNS1123_LABEL, description="PersistentVolumeClaim name")
    mount_path: str = Field(pattern=r"^/", description="Absolute mount path in the containers")
    read_only: bool = Field(False, description="Mount read-only on every pod (overrides writers)")
    writers: list[str] | None = Field(
        None,
        description="Pods that mount it read-write; all others mount it read-only: `training` (router-training "
        "RayJob), `aptitude` (aptitude RayJobs), `serving` (every RayService worker group) or a worker group "
        "name (that RayService group only). None = derived: training if router.checkpoint or "
        "training.storage_path is on it, aptitude if router.registry is, and if a cache variable of "
        "kubernetes.env (CACHE_ENV: HF_HOME, ...) is on it, both jobs and the worker groups a vLLM model "
        "loaded from a hub id fits on. [] = read-only on every pod",
    )

    @model_validator(mode="after")
    def _writers(self) -> VolumeSection:
        if self.read_only and self.writers:
            raise ValueError(
                f"volume {self.name!r}: read_only=true with writers={self.writers}; allowed: one of them"
            )
        return self


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
    secret_env: list[
        Annotated[
            Annotated[SecretEnvSection, Tag("by-key")] | Annotated[str, Tag("secret-name")],
            Discriminator(lambda v: "secret-name" if isinstance(v, str) else "by-key"),
        ]
    ] = Field(
        default_factory=list,
        description="Secret keys as environment variables (API keys, object-store credentials), each by key "
        "(`{env, secret, key, used_by}`: env[].valueFrom.secretKeyRef on the pods in used_by only). A bare "
        "Secret name is the deprecated form: all its keys on every pod (envFrom). Never put secret values in "
        "the config",
    )
    ray_auth: RayAuthSection = Field(default_factory=RayAuthSection, description="Ray token authentication")
    security: SecuritySection = Field(
        default_factory=SecuritySection, description="Pod and container securityContext"
    )
    network_policy: NetworkPolicySection = Field(
        default_factory=NetworkPolicySection, description="NetworkPolicy of the RayService's pods"
    )
    image_pinning: Literal["tag", "digest", "none"] = Field(
        "tag",
        description="Which images `render` accepts (image, gpu_image, worker_groups[].image, --image): tag = "
        "a digest (@sha256:) or an explicit tag other than latest (default); digest = only digests; none = "
        "anything, :latest and untagged included",
    )
    require_model_revision: bool = Field(
        False,
        description="Every vLLM model loaded from a hub id must pin `engine_args.revision` (and "
        "`tokenizer_revision`, if set) to a 40-hex commit id",
    )
    shm_size: str = Field(
        "8Gi",
        pattern=MEMORY_QUANTITY,
        description="sizeLimit of /dev/shm on GPU pods (a memory-backed emptyDir for NCCL and vLLM; counts "
        "against the pod's memory limit); worker_groups[].shm_size overrides it per group",
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
        problems = hardening_problems(self, names)
        if problems:
            raise ValueError("; ".join(problems))
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
