"""Which KubeRay worker group each Serve deployment of a zoo runs on, and how many pods it needs.

`modelsat k8s render` checks the worker groups' `max_replicas` against this estimate (plus
`kubernetes.headroom_pods`) before it writes a manifest. Ray itself places replicas on any node with room
(Ray docs: "Resource Management"; Serve: `ray_actor_options`), so the estimate is a capacity check, not a
scheduling decision; custom resources (`resources.resources` of a deployment, `ray_resources` of a group) pin a
deployment to the groups that provide them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelsat.errors import ConfigError
from modelsat.kubernetes_config import WorkerGroupSection
from modelsat.serving_config import ResourcesSection, ServingConfig

__all__ = ["Placement", "place_deployments"]


@dataclass(frozen=True)
class Placement:
    """Where one Serve deployment's replicas run, and how many pods they take.

    Attributes:
        deployment: `ingress`, `router`, or a candidate model's name.
        group: worker group name.
        replicas_per_pod: replicas one pod of the group holds (≥ 1).
        min_pods, max_pods: pods its min/max replicas need.
    """

    deployment: str
    group: str
    replicas_per_pod: int
    min_pods: int
    max_pods: int


def _fit(need: ResourcesSection, group: WorkerGroupSection) -> str | None:
    """Why one replica does not fit a pod of `group` (None if it fits)."""
    if need.num_gpus > 0 and group.gpus == 0:
        return "no GPUs"
    if need.num_gpus == 0 and group.gpus > 0:
        return "a GPU group (CPU-only deployments go to a group without GPUs)"
    if need.num_gpus > group.gpus:
        return f"{group.gpus} GPUs per pod < {need.num_gpus:g}"
    if need.num_cpus > group.num_cpus:
        return f"{group.num_cpus:g} CPUs per pod < {need.num_cpus:g}"
    for key, amount in need.resources.items():
        if group.ray_resources.get(key, 0.0) < amount:
            return f"custom resource {key!r}: {group.ray_resources.get(key, 0.0):g} per pod < {amount:g}"
    return None


def _per_pod(need: ResourcesSection, group: WorkerGroupSection) -> int:
    limits = [math.floor(group.num_cpus / need.num_cpus) if need.num_cpus else None]
    limits.append(math.floor(group.gpus / need.num_gpus) if need.num_gpus else None)
    limits += [math.floor(group.ray_resources[k] / v) for k, v in need.resources.items() if v]
    return max(1, min((x for x in limits if x is not None), default=1000))


def place_deployments(serving: ServingConfig) -> list[Placement]:
    """Assign every Serve deployment to the worker group one of its replicas fits best.

    Best fit = fewest GPUs per pod, then fewest CPUs, then config order (a 1-GPU model goes to 1-GPU pods
    even when 2-GPU pods exist). Ray places replicas on any node with room; this is the capacity estimate
    `render` checks the groups' `max_replicas` against. Custom resources (`resources.resources` of a
    deployment, `ray_resources` of a group) pin a deployment to a group for certain.

    Returns:
        One `Placement` per deployment: ingress, router, then the models in zoo order.
    Raises:
        ConfigError: listing every deployment that fits no group, with each group's reason (e.g. a model
            that asks for GPUs when no worker group has GPUs).
    """
    wanted = [
        ("ingress", serving.ingress.resources, serving.ingress.autoscaling),
        ("router", serving.router.resources, serving.router.autoscaling),
        *((m.name, m.resources, m.autoscaling) for m in serving.models),
    ]
    placements, problems = [], []
    for name, need, scaling in wanted:
        reasons = {g.name: _fit(need, g) for g in serving.kubernetes.worker_groups}
        fitting = [g for g in serving.kubernetes.worker_groups if reasons[g.name] is None]
        group = min(fitting, key=lambda g: (g.gpus, g.num_cpus), default=None)  # stable: config order on ties
        if group is None:
            why = "; ".join(f"{g}: {r}" for g, r in reasons.items())
            problems.append(
                f"{name!r} (num_cpus={need.num_cpus:g}, num_gpus={need.num_gpus:g}, resources={need.resources}) "
                f"fits no worker group ({why})"
            )
            continue
        per_pod = _per_pod(need, group)
        placements.append(
            Placement(
                name,
                group.name,
                per_pod,
                math.ceil(scaling.min_replicas / per_pod),
                math.ceil(scaling.max_replicas / per_pod),
            )
        )
    if problems:
        hint = (
            " Add a worker group with `gpus: N` to kubernetes.worker_groups for GPU models."
            if any("no GPUs" in p for p in problems)
            else ""
        )
        raise ConfigError("deployments without a worker group: " + " | ".join(problems) + hint)
    return placements
