"""Hardening of the rendered pods: securityContext, Ray token auth, Secrets by key, read-only volume mounts.

- `pod_security` / `container_security`: the pod- and container-level `securityContext` (non-root, no privilege
  escalation, every capability dropped, RuntimeDefault seccomp; uid/gid/fsGroup from `kubernetes.security`);
- `auth_options` / `ray_auth_env`: Ray token auth (`kubernetes.ray_auth`) as the RayCluster's `authOptions` and
  as `RAY_AUTH_MODE` / `RAY_AUTH_TOKEN` (`secretKeyRef`) on every Ray container;
- `secret_env` / `secret_env_from`: `kubernetes.secret_env` by key on the pods of the workloads that use it,
  and the deprecated bare Secret names as `envFrom`;
- `volume_read_only`: whether a volume is mounted read-only on a pod (`VolumeSection.writers`).

Roles: a pod belongs to the RayService (`service`: its head, or one of its worker groups) or to a RayJob
(`training`, `aptitude`: head and workers alike, the head runs the job's driver).

Sources: KubeRay v1.7.0 `ray-operator/controllers/ray/common/pod.go` (`SetContainerTokenAuthEnvVars`: the
operator sets the same variables, skipping those already set) and `utils/util.go`
(`GetRayDashboardClientFunc`: the operator reads the key `auth_token` of `authOptions.secretName`);
Ray token auth: https://docs.ray.io/en/latest/cluster/kubernetes/user-guides/kuberay-auth.html ;
securityContext: https://kubernetes.io/docs/tasks/configure-pod-container/security-context/ .
"""

from __future__ import annotations

from typing import Any

from modelsat.kubernetes_config import CACHE_ENV, SecretEnvSection, VolumeSection, WorkerGroupSection
from modelsat.serving_config import ServingConfig

__all__ = [
    "ROLES",
    "auth_options",
    "container_security",
    "pod_security",
    "ray_auth_env",
    "ray_auth_secret",
    "secret_env",
    "secret_env_from",
    "volume_read_only",
    "volume_writers",
]

ROLES = ("service", "training", "aptitude")
"""Workloads a rendered pod belongs to: the RayService, the router-training RayJob, an aptitude RayJob."""
_USER = {"service": "serving", "training": "training", "aptitude": "aptitude"}


def container_security() -> dict[str, Any]:
    """Container `securityContext`: non-root, no privilege escalation, every Linux capability dropped."""
    return {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_security(serving: ServingConfig) -> dict[str, Any]:
    """Pod `securityContext` from `kubernetes.security` (uid, gid, fsGroup and its change policy, seccomp)."""
    sec = serving.kubernetes.security
    out: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": sec.run_as_user, "runAsGroup": sec.run_as_group}
    if sec.fs_group is not None:
        out |= {"fsGroup": sec.fs_group, "fsGroupChangePolicy": sec.fs_group_change_policy}
    out["seccompProfile"] = {"type": sec.seccomp_profile}
    return out


def ray_auth_secret(serving: ServingConfig, service: str) -> str | None:
    """Name of the Secret holding the Ray token (`ray_auth.secret_name`, else `<service>-ray-auth`); None if off."""
    auth = serving.kubernetes.ray_auth
    if auth.mode != "token":
        return None
    return auth.secret_name or f"{service}-ray-auth"


def auth_options(serving: ServingConfig, service: str) -> dict[str, Any]:
    """A RayCluster spec's `authOptions`: `{mode: token, secretName}`, or `{mode: disabled}`."""
    secret = ray_auth_secret(serving, service)
    return {"mode": "token", "secretName": secret} if secret else {"mode": "disabled"}


def ray_auth_env(serving: ServingConfig, service: str) -> list[dict[str, Any]]:
    """`RAY_AUTH_MODE=token` and `RAY_AUTH_TOKEN` from the Secret's key (empty list if Ray auth is off)."""
    secret = ray_auth_secret(serving, service)
    if secret is None:
        return []
    key = serving.kubernetes.ray_auth.secret_key
    return [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}},
    ]


def secret_env(serving: ServingConfig, role: str, head: bool) -> list[dict[str, Any]]:
    """The `kubernetes.secret_env` entries (by key) a pod of `role` gets, as `env[].valueFrom.secretKeyRef`.

    Args:
        serving: the serving config.
        role: one of `ROLES`.
        head: the pod is its cluster's head (the RayService's head runs no replicas and gets none).
    Returns:
        The env entries, in config order.
    """
    if role == "service" and head:
        return []
    out = []
    for s in serving.kubernetes.secret_env:
        if isinstance(s, SecretEnvSection) and _USER[role] in s.used_by:
            ref: dict[str, Any] = {"name": s.secret, "key": s.secret_key}
            if s.optional:
                ref["optional"] = True
            out.append({"name": s.env, "valueFrom": {"secretKeyRef": ref}})
    return out


def secret_env_from(serving: ServingConfig) -> list[dict[str, Any]]:
    """The deprecated bare Secret names of `kubernetes.secret_env` as `envFrom` (every key, every pod)."""
    return [{"secretRef": {"name": s}} for s in serving.kubernetes.secret_env if isinstance(s, str)]


def _under(path: str | None, mount: str) -> bool:
    return bool(path) and "://" not in path and (path.rstrip("/") + "/").startswith(mount)


def _fits(serving: ServingConfig, g: WorkerGroupSection) -> bool:
    """Whether a vLLM model loaded from a hub id could get a replica on a pod of `g` (Ray places replicas on
    any node with room, so every group with enough GPUs, CPUs and custom resources counts)."""
    for m in serving.models:
        if m.engine.kind != "vllm" or m.engine.model_path.startswith("/"):
            continue
        need = m.resources
        if (
            need.num_gpus <= g.gpus
            and need.num_cpus <= g.num_cpus
            and all(g.ray_resources.get(k, 0.0) >= v for k, v in need.resources.items())
        ):
            return True
    return False


def volume_writers(serving: ServingConfig, v: VolumeSection) -> set[str]:
    """Who mounts `v` read-write: `v.writers`, or what the config says is written there (see `VolumeSection`).

    Returns:
        Entries of `SECRET_USERS` (`serving` = every RayService worker group) and worker group names.
    """
    if v.read_only:
        return set()
    if v.writers is not None:
        return set(v.writers)
    k8s, mount, out = serving.kubernetes, v.mount_path.rstrip("/") + "/", set()
    if k8s.training is not None and any(
        _under(p, mount) for p in (serving.router.checkpoint, k8s.training.storage_path)
    ):
        out.add("training")
    if _under(serving.router.registry, mount):
        out.add("aptitude")
    if any(_under(value, mount) for name, value in k8s.env.items() if name in CACHE_ENV):
        out |= {"training", "aptitude"}  # both load the router LM; vLLM loads hub models into the cache
        out |= {g.name for g in k8s.worker_groups if _fits(serving, g)}
    return out


def volume_read_only(serving: ServingConfig, v: VolumeSection, role: str, group: str | None) -> bool:
    """Whether a pod mounts `v` read-only.

    Args:
        serving: the serving config.
        v: the volume.
        role: one of `ROLES`.
        group: the RayService worker group of the pod (None: the head, or a RayJob's pod).
    Returns:
        False only where `volume_writers` lists the pod's role (or, on the RayService, its worker group);
        the RayService's head always mounts read-only.
    """
    writers = volume_writers(serving, v)
    if role == "service":
        return group is None or not ({"serving", group} & writers)
    return _USER[role] not in writers
