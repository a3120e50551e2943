"""The `kubernetes` section of the serving config: how `modelsat k8s render` lays the zoo out on KubeRay.

The serving config stays the one source of truth for what runs (STYLE.md §3): its models, router and ingress
become the RayService's `serveConfigV2`; this section adds what only Kubernetes needs: the image, the head
pod, the worker groups (pod size, GPUs, node selectors, tolerations, autoscaling bounds), volumes, secrets,
and the two RayJobs (router training, aptitude tests), and how the rendered objects are hardened (Ray token
auth, the NetworkPolicy, pod and container securityContext, read-only mounts, Secrets by key, image and model
revision pinning, `/dev/shm` size). Rendering lives in `cluster.kuberay_render`.

Kubernetes quantities (`cpu: "4"`, `memory: 16Gi`) follow
https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/ ; KubeRay field meanings
follow the RayCluster/RayService/RayJob CRDs of KubeRay v1.7.0.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

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

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
CPU_QUANTITY = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"
MEMORY_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_UNITS |= {f"{u}i": 2 ** (10 * (i + 1)) for i, u in enumerate("KMGTPE")}
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")

SECRET_USERS = ("serving", "training", "aptitude")
"""Who may get a Secret's key: the RayService's worker pods (its head runs no replicas), the router-training
RayJob's pods, the aptitude RayJobs' pods (a job's head runs its driver, so it gets the job's keys too)."""
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


def cpu_quantity(value: str) -> float:
    """CPUs in a Kubernetes CPU quantity (`"4"` → 4.0, `"500m"` → 0.5).

    Raises:
        ValueError: `value` is not a plain or milli CPU quantity.
    """
    if not re.fullmatch(CPU_QUANTITY, value):
        raise ValueError(f"cpu={value!r} is not a CPU quantity; allowed: e.g. 4, 2.5, 500m")
    return int(value[:-1]) / 1000 if value.endswith("m") else float(value)


def memory_bytes(value: str) -> float:
    """Bytes in a Kubernetes memory quantity (`"8Gi"` → 8 * 2**30, `"500M"` → 5e8).

    Raises:
        ValueError: `value` is not a memory quantity (a number with an optional Ki..Ei or k..E suffix).
    """
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)([A-Za-z]*)", value)
    if not m or m.group(2) not in _UNITS:
        raise ValueError(f"memory={value!r} is not a memory quantity; allowed: e.g. 512Mi, 16Gi, 8G")
    return float(m.group(1)) * _UNITS[m.group(2)]


def image_problem(image: str, pinning: str) -> str | None:
    """Why `image` breaks the pinning policy (None if it is allowed).

    Args:
        image: an image reference, `[registry/]repository[:tag][@sha256:<64 hex>]`.
        pinning: `digest` (only `@sha256:` digests), `tag` (a digest or an explicit tag other than `latest`)
            or `none` (anything, `:latest` and untagged included).
    Returns:
        The problem (naming the reference and what is allowed), or None.
    """
    if pinning == "none":
        return None
    if "@" in image:
        if _DIGEST.fullmatch(image[image.index("@") :]):
            return None
        return f"{image!r}: malformed digest; allowed: repository@sha256:<64 lower-case hex digits>"
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    allowed = f"{repo}@sha256:<64 hex digits>"
    if pinning == "tag":
        allowed = f"an explicit tag other than latest (e.g. {repo}:1.2.3) or a digest ({allowed})"
    else:
        allowed = f"a digest ({allowed})"
    what = "untagged (pulls :latest)" if not tag else "the mutable tag 'latest'" if tag == "latest" else None
    if pinning == "digest":
        what = what or f"pinned by the tag {tag!r} only, not by digest"
    if what is None:
        return None
    return (
        f"{image!r} is {what} (kubernetes.image_pinning={pinning!r}); allowed: {allowed}; "
        "`kubernetes.image_pinning: none` allows any image"
    )


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


class RayAuthSection(BaseConfig):
    """Ray token authentication (Ray >= 2.52): every Ray API (GCS, dashboard, jobs) needs the token.

    Rendered as the RayCluster's `authOptions` (so the KubeRay operator, the autoscaler sidecar and the job
    submitter use the token too) and as `RAY_AUTH_MODE=token` plus `RAY_AUTH_TOKEN` from the Secret
    (`env[].valueFrom.secretKeyRef`) on every Ray container. Create the Secret before applying:
    `kubectl create secret generic NAME --from-literal=auth_token=$(openssl rand -base64 32)`.
    """

    mode: Literal["token", "disabled"] = Field(
        "token", description="token = Ray token auth on (default); disabled = no Ray auth (not recommended)"
    )
    secret_name: str | None = Field(
        None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Secret holding the token; default: `<RayService name>-ray-auth`, shared by the "
        "RayService and the RayJobs",
    )
    secret_key: Literal["auth_token"] = Field(
        "auth_token",
        description="Key of the token in the Secret: fixed, the KubeRay operator reads `auth_token` "
        "(authOptions.secretName)",
    )


class SecuritySection(BaseConfig):
    """securityContext of every rendered pod and container.

    Always set on every container: `runAsNonRoot: true`, `allowPrivilegeEscalation: false`, capabilities
    `drop: [ALL]`; on every pod: `runAsNonRoot: true` and the ids below (the defaults are the `ray` user and
    `users` group of the rayproject/ray images).
    """

    run_as_user: int = Field(1000, ge=1, le=2**31 - 1, description="Pod runAsUser (a non-zero uid)")
    run_as_group: int = Field(100, ge=0, le=2**31 - 1, description="Pod runAsGroup (gid)")
    fs_group: int | None = Field(
        100,
        ge=0,
        le=2**31 - 1,
        description="Pod fsGroup: volumes are made group-writable for this gid; None = not set",
    )
    fs_group_change_policy: Literal["OnRootMismatch", "Always"] = Field(
        "OnRootMismatch",
        description="fsGroupChangePolicy: OnRootMismatch = chown a volume only when its root does not match "
        "(fast on large PVCs)",
    )
    seccomp_profile: Literal["RuntimeDefault", "Unconfined"] = Field(
        "RuntimeDefault", description="Pod seccompProfile type"
    )


class NetworkPolicySection(BaseConfig):
    """The NetworkPolicy rendered with the RayService (`networkpolicy.yaml`).

    Selects the RayService's Ray pods (KubeRay's `ray.io/is-ray-node: "yes"` plus the
    `modelsat.io/rayservice: <name>` label the render puts on their pod templates: KubeRay's own
    `ray.io/cluster` is `<name>-<random suffix>` and changes with every new cluster of an upgrade). Admits all
    traffic between those pods (Ray-internal: GCS, raylets, object transfer), the Serve HTTP port from anywhere,
    and, if `operator_access`, the dashboard port from the KubeRay operator only (it deploys `serveConfigV2`
    and polls its status there); nothing else. Egress is not restricted.
    """

    enabled: bool = Field(True, description="Render the NetworkPolicy (off: every port of every pod is open)")
    operator_access: bool = Field(
        True,
        description="Admit the KubeRay operator to the head's dashboard port 8265 (needed unless the operator "
        "runs with --use-kubernetes-proxy)",
    )
    operator_namespace: str | None = Field(
        None,
        pattern=DNS1123_LABEL,
        description="Namespace of the KubeRay operator; None = the operator pods in any namespace",
    )
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/component": "kuberay-operator"},
        min_length=1,
        description="Labels of the KubeRay operator pods (the Helm chart's and the kustomize install's)",
    )


class SecretEnvSection(BaseConfig):
    """One environment variable from one key of a Secret, on the pods that need it only."""

    env: str = Field(pattern=ENV_NAME, description="Environment variable name, e.g. MODELSAT_API_KEY")
    secret: str = Field(
        max_length=253, pattern=DNS1123_SUBDOMAIN, description="Secret name (in the objects' namespace)"
    )
    key: str | None = Field(
        None, max_length=253, pattern=SECRET_KEY, description="Key in the Secret (default: the variable name)"
    )
    optional: bool = Field(
        False,
        description="secretKeyRef.optional: pods start without the key; off: a missing Secret or key keeps "
        "the pod from starting",
    )
    used_by: list[Literal["serving", "training", "aptitude"]] = Field(
        min_length=1,
        description="Who gets it (SECRET_USERS): serving = the RayService's worker pods (the ingress and "
        "model replicas), training = the router-training RayJob, aptitude = the aptitude RayJobs",
    )

    @field_validator("used_by")
    @classmethod
    def _unique(cls, users: list[str]) -> list[str]:
        if len(set(users)) != len(users):
            raise ValueError(
                f"used_by={users} repeats an entry; allowed: each of {', '.join(SECRET_USERS)} once"
            )
        return users

    @property
    def secret_key(self) -> str:
        """The key read from the Secret (`key`, else `env`)."""
        return self.key or self.env


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
        problems = self._hardening_problems(names)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _hardening_problems(self, names: list[str]) -> list[str]:
        problems = []
        writers = (*SECRET_USERS, *names)
        for v in self.volumes:
            bad = [w for w in v.writers or [] if w not in writers]
            if bad:
                problems.append(
                    f"volume {v.name!r}: writers {bad} unknown; allowed: {', '.join(writers)} (worker groups)"
                )
        for g in self.worker_groups:
            shm = g.shm_size or (self.shm_size if g.gpus else None)
            if shm and memory_bytes(shm) > memory_bytes(g.memory):
                problems.append(
                    f"worker group {g.name!r}: /dev/shm sizeLimit {shm} is above the pod's memory {g.memory}; "
                    "allowed: at most the pod's memory (set worker_groups[].shm_size or kubernetes.shm_size)"
                )
        if self.ray_auth.mode == "token":
            version = tuple(int(p) for p in self.ray_version.split("."))
            if version < (2, 52, 0):
                problems.append(
                    f"ray_version={self.ray_version!r}: Ray token auth (ray_auth.mode=token) needs Ray >= 2.52.0; "
                    "allowed: a newer Ray image, or ray_auth.mode: disabled"
                )
        seen: dict[str, str] = {name: "kubernetes.env" for name in self.env}
        if self.ray_auth.mode == "token":
            seen |= {"RAY_AUTH_MODE": "kubernetes.ray_auth", "RAY_AUTH_TOKEN": "kubernetes.ray_auth"}
            for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
                if name in self.env:
                    problems.append(f"kubernetes.env.{name}: set by kubernetes.ray_auth; remove it from env")
        for s in self.secret_env:
            if isinstance(s, SecretEnvSection):
                if s.env in seen:
                    problems.append(f"secret_env {s.env!r}: already set by {seen[s.env]}; allowed: once")
                seen.setdefault(s.env, "secret_env")
            elif not re.fullmatch(DNS1123_SUBDOMAIN, s):
                problems.append(
                    f"secret_env {s!r}: not a Secret name; allowed: a DNS-1123 subdomain (lower-case "
                    "letters, digits, '-', '.')"
                )
        return problems

    def group(self, name: str) -> WorkerGroupSection:
        """The worker group called `name`.

        Raises:
            KeyError: no such group (the message lists the groups).
        """
        for g in self.worker_groups:
            if g.name == name:
                return g
        raise KeyError(f"no worker group {name!r}; groups: {', '.join(g.name for g in self.worker_groups)}")
