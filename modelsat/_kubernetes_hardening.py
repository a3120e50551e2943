"""How the rendered KubeRay objects are hardened: the `kubernetes` section's security settings and checks.

Ray token auth (`RayAuthSection`), pod and container securityContext (`SecuritySection`), the RayService's
NetworkPolicy (`NetworkPolicySection`), Secrets by key on the pods that need them only (`SecretEnvSection`,
`SECRET_USERS`), image pinning (`image_problem`), and the checks across the section (`hardening_problems`:
volume writers, `/dev/shm` size, the Ray version token auth needs, environment variables set twice).
Re-exported by `modelsat.kubernetes_config`; rendering lives in `cluster.kuberay_render`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from modelsat._kubernetes_formats import DNS1123_LABEL, DNS1123_SUBDOMAIN, memory_bytes
from modelsat.config import BaseConfig

if TYPE_CHECKING:
    from modelsat.kubernetes_config import KubernetesSection

__all__ = [
    "ENV_NAME",
    "SECRET_KEY",
    "SECRET_USERS",
    "NetworkPolicySection",
    "RayAuthSection",
    "SecretEnvSection",
    "SecuritySection",
    "hardening_problems",
    "image_problem",
]

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
SECRET_KEY = r"^[-._a-zA-Z0-9]+$"
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}")

SECRET_USERS = ("serving", "training", "aptitude")
"""Who may get a Secret's key: the RayService's worker pods (its head runs no replicas), the router-training
RayJob's pods, the aptitude RayJobs' pods (a job's head runs its driver, so it gets the job's keys too)."""


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


def hardening_problems(k: KubernetesSection, names: list[str]) -> list[str]:
    """What breaks the hardening rules across the `kubernetes` section (empty if nothing does).

    Args:
        k: the section being validated.
        names: its worker group names.
    Returns:
        One message per problem, naming the field, the bad value and what is allowed: volume writers that
        name no pod, a `/dev/shm` sizeLimit above the pod's memory, token auth on a Ray older than 2.52.0,
        and environment variables set twice (`env`, `ray_auth`, `secret_env`) or bare Secret names that are
        not DNS-1123 subdomains.
    """
    problems = []
    writers = (*SECRET_USERS, *names)
    for v in k.volumes:
        bad = [w for w in v.writers or [] if w not in writers]
        if bad:
            problems.append(
                f"volume {v.name!r}: writers {bad} unknown; allowed: {', '.join(writers)} (worker groups)"
            )
    for g in k.worker_groups:
        shm = g.shm_size or (k.shm_size if g.gpus else None)
        if shm and memory_bytes(shm) > memory_bytes(g.memory):
            problems.append(
                f"worker group {g.name!r}: /dev/shm sizeLimit {shm} is above the pod's memory {g.memory}; "
                "allowed: at most the pod's memory (set worker_groups[].shm_size or kubernetes.shm_size)"
            )
    if k.ray_auth.mode == "token":
        version = tuple(int(p) for p in k.ray_version.split("."))
        if version < (2, 52, 0):
            problems.append(
                f"ray_version={k.ray_version!r}: Ray token auth (ray_auth.mode=token) needs Ray >= 2.52.0; "
                "allowed: a newer Ray image, or ray_auth.mode: disabled"
            )
    seen: dict[str, str] = {name: "kubernetes.env" for name in k.env}
    if k.ray_auth.mode == "token":
        seen |= {"RAY_AUTH_MODE": "kubernetes.ray_auth", "RAY_AUTH_TOKEN": "kubernetes.ray_auth"}
        for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
            if name in k.env:
                problems.append(f"kubernetes.env.{name}: set by kubernetes.ray_auth; remove it from env")
    for s in k.secret_env:
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
