"""KubeRay manifests rendered from the serving config (`modelsat k8s render`).

One serving config (`modelsat.serving_config.ServingConfig`, with its `kubernetes` section) becomes:

- `rayservice.yaml`: a `RayService` whose `serveConfigV2` is `cluster.serve_config.serve_deploy_config(zoo)`
  (the same Serve applications `modelsat serve` deploys), on a RayCluster with a head of `num-cpus: "0"`
  and one worker group per `kubernetes.worker_groups` entry, autoscaled by KubeRay's in-tree autoscaler;
- `rayjob-train-router.yaml`: a `RayJob` running `modelsat train --workers N` (Ray Train + DeepSpeed);
- `networkpolicy.yaml` (unless `kubernetes.network_policy.enabled` is off): a `NetworkPolicy` admitting to the
  RayService's pods, from outside them, only the Serve HTTP port (and the dashboard from the KubeRay operator);
- `rayjob-train-router.yaml`: a `RayJob` running `modelsat train --workers N` (Ray Train + DeepSpeed);
- `rayjob-aptitude-<model>.yaml`: one `RayJob` per model running `modelsat registry add` (the Ray Data aptitude
  job) against the model as the RayService serves it, registering its capability profile;
- `kustomization.yaml` listing them.

Every pod is hardened (`kubernetes.security`, `ray_auth`, `secret_env`, `volumes[].writers`, `shm_size`): Ray
token auth from a Secret, non-root containers without privilege escalation or capabilities, Secret keys only on
the pods that use them, shared volumes read-only except on the pods that write them, a sized `/dev/shm`; images
must be pinned (`image_pinning`) and, optionally, hub models pinned to a commit (`require_model_revision`).

Placement of deployments on worker groups: `cluster.placement`; what a re-render means for a running
RayService (in place, appended group, new cluster): `cluster.rollout`.

Layout: the RayService is built in `cluster._kuberay_rayservice`, the RayJobs in `cluster._kuberay_rayjob`,
the NetworkPolicy in `cluster._kuberay_network`, the pod and group pieces they share in `cluster._kuberay_pods`
(hardening: `cluster._kuberay_security`); this module checks the config, assembles the files with their
`kustomization.yaml`, and writes the YAML text (`dump_manifest`).

Docs: https://docs.ray.io/en/latest/cluster/kubernetes/user-guides/rayservice.html ,
https://docs.ray.io/en/latest/cluster/kubernetes/user-guides/configuring-autoscaling.html ,
https://docs.ray.io/en/latest/cluster/kubernetes/getting-started/rayjob-quick-start.html .
"""

from __future__ import annotations

import re
from typing import Any

import yaml

# `X as X`: module-level names from before the split (not in __all__), still importable from here
from cluster._kuberay_network import network_policy
from cluster._kuberay_pods import LABELS as LABELS
from cluster._kuberay_pods import SERVE_PORT, model_label
from cluster._kuberay_rayjob import MAX_RAYJOB_NAME, aptitude_job, training_job
from cluster._kuberay_rayservice import rayservice
from cluster.kuberay_validate import validate_manifest
from cluster.placement import Placement, place_deployments
from modelsat.errors import ConfigError
from modelsat.kubernetes_config import SecretEnvSection, image_problem
from modelsat.serving_config import ServingConfig, check_exposure

__all__ = ["SERVE_PORT", "dump_manifest", "model_label", "render_manifests"]

_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_COMMIT = re.compile(r"[0-9a-f]{40}")
HEADER = (
    "# Rendered by `modelsat k8s render` from {source}. Do not edit: change the serving config and re-render.\n"
    "# Validate offline: modelsat k8s validate <this directory>\n"
)


def _token_problem(serving: ServingConfig) -> str | None:
    """Whether the ingress token variable reaches the pods that read it: the RayService's workers (the ingress
    replicas) and the aptitude RayJobs (`--api-key-env`)."""
    token, k8s = serving.ingress.auth_token_env, serving.kubernetes
    if not token or token in k8s.env or any(isinstance(s, str) for s in k8s.secret_env):
        return None  # a bare Secret name: all its keys on every pod (what they are is not known here)
    users = {
        u for s in k8s.secret_env if isinstance(s, SecretEnvSection) and s.env == token for u in s.used_by
    }
    if not users:
        return (
            f"ingress.auth_token_env={token!r}: no pod gets this variable; name the Secret key holding it in "
            f"kubernetes.secret_env (e.g. {{env: {token}, secret: NAME, used_by: [serving, aptitude]}})"
        )
    missing = sorted({"serving", "aptitude"} - users)
    if missing:
        return (
            f"ingress.auth_token_env={token!r}: kubernetes.secret_env gives it to {', '.join(sorted(users))} only; "
            f"add {', '.join(missing)} to its used_by (the ingress replicas and the aptitude jobs read it)"
        )
    return None


def _pinning_problems(serving: ServingConfig, image: str | None) -> list[str]:
    """Every image against `kubernetes.image_pinning`, and hub models against `require_model_revision`."""
    k8s, problems = serving.kubernetes, []
    images = [("--image ", image) if image else ("kubernetes.image=", k8s.image)]  # --image replaces it
    images += [("kubernetes.gpu_image=", k8s.gpu_image)]
    images += [(f"kubernetes.worker_groups[{g.name}].image=", g.image) for g in k8s.worker_groups]
    for where, ref in images:
        problem = image_problem(ref, k8s.image_pinning) if ref else None
        if problem:
            problems.append(where + problem)
    if not k8s.require_model_revision:
        return problems
    for m in serving.models:
        if m.engine.kind != "vllm" or m.engine.model_path.startswith("/"):
            continue
        args = m.engine.engine_args
        for field in ("revision", "tokenizer_revision"):
            value = args.get(field)
            if (field == "revision" or value is not None) and not _COMMIT.fullmatch(str(value or "")):
                problems.append(
                    f"models[{m.name}].engine.engine_args.{field}={value!r}: the hub model "
                    f"{m.engine.model_path!r} is not pinned (kubernetes.require_model_revision); allowed: a "
                    "40-hex commit id of the model repository (not a branch or tag)"
                )
    return problems


def _check(serving: ServingConfig, service: str, placements: list[Placement], image: str | None) -> list[str]:
    """Every problem of a serving config for Kubernetes (empty list: renderable)."""
    k8s, problems = serving.kubernetes, _pinning_problems(serving, image)
    if not _DNS1035.fullmatch(service) or len(service) > MAX_RAYJOB_NAME:
        problems.append(
            f"RayService name {service!r} (kubernetes.service_name, default the zoo's name) is not a DNS-1035 "
            f"label of at most {MAX_RAYJOB_NAME} characters"
        )
    labels: dict[str, str] = {}
    for m in serving.models:
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
    if not serving.router.registry:
        problems.append(
            "router.registry is not set: on Kubernetes the aptitude RayJobs register profiles in the registry "
            "and the router reads them there (give a URI or a path on a volume)"
        )
    mounts = [v.mount_path.rstrip("/") + "/" for v in k8s.volumes]
    for what, where in [
        ("router.checkpoint", serving.router.checkpoint),
        ("router.registry", serving.router.registry),
        *(
            (f"models[{m.name}].engine.routing_data", m.engine.routing_data)
            for m in serving.models
            if m.engine.kind == "recorded"
        ),
        *(
            (f"models[{m.name}].engine.model_path", m.engine.model_path)
            for m in serving.models
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
    token = _token_problem(serving)
    if token:
        problems.append(token)
    try:  # the RayService listens on 0.0.0.0: auth, or an explicit ingress.allow_unauthenticated
        check_exposure(serving, "0.0.0.0")
    except ValueError as e:
        problems.append(
            str(e).replace("http_host='0.0.0.0'", "the RayService (http_host 0.0.0.0 on Kubernetes)")
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


def render_manifests(
    serving: ServingConfig,
    router_uri: str | None = None,
    image: str | None = None,
    previous_groups: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The KubeRay manifests of a zoo, by file name (see the module docstring).

    Args:
        serving: the serving config, with its `kubernetes` section.
        router_uri: router checkpoint location in the cluster (overrides `router.checkpoint`): an object-store
            URI or a path on a mounted volume.
        image: image of the CPU pods (overrides `kubernetes.image`; GPU pods keep `kubernetes.gpu_image`).
        previous_groups: worker group names of the running RayService, in order; kept in that order, new
            groups appended (so KubeRay updates the cluster in place).
    Returns:
        {file name: manifest}; `kustomization.yaml` lists the others.
    Raises:
        ConfigError: every problem found (GPU models without a GPU group, names that are not DNS labels,
            group bounds too small, paths the pods cannot see, an ingress token no pod gets, an unpinned
            `image` or hub model), in one message; nothing is rendered.
    """
    raw = serving.model_dump(mode="json")
    if router_uri is not None:
        raw["router"]["checkpoint"] = router_uri
    serving = ServingConfig.from_dict(raw, source="serving config")
    service = serving.kubernetes.service_name or serving.name
    try:
        placements = place_deployments(serving)
    except ConfigError as e:
        placements, problems = [], [str(e)]
    else:
        problems = []
    problems += _check(serving, service, placements, image)
    if problems:
        raise ConfigError(
            f"the serving config cannot be rendered for KubeRay ({len(problems)} problem(s)):\n"
            + "\n".join(f"  - {p}" for p in problems)
        )
    files: dict[str, dict[str, Any]] = {
        "rayservice.yaml": rayservice(serving, service, image, previous_groups or [])
    }
    if serving.kubernetes.network_policy.enabled:
        files["networkpolicy.yaml"] = network_policy(serving, service)
        validate_manifest(
            files["networkpolicy.yaml"], source="networkpolicy.yaml"
        )  # `k8s render` checks KINDS
    if serving.kubernetes.training is not None:
        files["rayjob-train-router.yaml"] = training_job(serving, service, image)
    for m in serving.models:
        files[f"rayjob-aptitude-{model_label(m.name)}.yaml"] = aptitude_job(serving, service, m.name, image)
    kustomization: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if serving.kubernetes.namespace:
        kustomization["namespace"] = serving.kubernetes.namespace
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
