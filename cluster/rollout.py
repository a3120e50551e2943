"""How KubeRay applies a re-rendered RayService over a running one.

KubeRay keeps the running RayCluster and only re-applies the Serve config when the cluster spec is unchanged
apart from `replicas`/`minReplicas`/`maxReplicas`/`workersToDelete`, and updates it in place when worker groups
are only appended (KubeRay >= 1.1; `utils.GenerateHashWithoutReplicasAndWorkersToDelete` and
`rayservice_controller.go` at v1.7.0). `modelsat k8s render` therefore keeps the worker groups of a previous
render in their order and appends new ones (`previous_groups`), and `cluster_update` says which of the three
cases a re-render is.

Docs: https://docs.ray.io/en/latest/cluster/kubernetes/user-guides/rayservice.html (in-place updates,
zero-downtime upgrades).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

from modelsat.errors import ConfigError

__all__ = ["cluster_update", "previous_groups"]


def _cluster_hash_view(cluster: dict[str, Any], groups: int | None = None) -> str:
    """The RayCluster spec as KubeRay hashes it: no replicas/min/max/workersToDelete, no upgradeStrategy."""
    view = copy.deepcopy(cluster)
    view.pop("upgradeStrategy", None)
    specs = view.get("workerGroupSpecs", [])
    view["workerGroupSpecs"] = specs if groups is None else specs[:groups]
    for g in view["workerGroupSpecs"]:
        for key in ("replicas", "minReplicas", "maxReplicas"):
            g.pop(key, None)
        g.get("scaleStrategy", {}).pop("workersToDelete", None)
    return json.dumps(view, sort_keys=True)


def cluster_update(old: dict[str, Any], new: dict[str, Any]) -> str:
    """How KubeRay applies a re-rendered RayService over a running one (rayservice_controller.go, v1.7.0).

    Args:
        old, new: the RayService manifests before and after.
    Returns:
        `unchanged`; `serve` (only `serveConfigV2` or autoscaling bounds differ: the Serve applications are
        updated in place on the running cluster); `append` (worker groups appended at the end as well: the
        RayCluster is updated in place); or `new-cluster` (any other cluster change: a new RayCluster is
        created and traffic switched when it is ready, or nothing happens with upgradeStrategy None).
    """
    a, b = old["spec"]["rayClusterConfig"], new["spec"]["rayClusterConfig"]
    if _cluster_hash_view(a) == _cluster_hash_view(b):
        return "unchanged" if old["spec"] == new["spec"] else "serve"
    n_old = len(a.get("workerGroupSpecs", []))
    if len(b.get("workerGroupSpecs", [])) > n_old and _cluster_hash_view(a) == _cluster_hash_view(b, n_old):
        return "append"
    return "new-cluster"


def previous_groups(out: Path) -> tuple[dict[str, Any] | None, list[str]]:
    """The RayService of an earlier render in `out` (or None) and its worker group names in order."""
    path = Path(out) / "rayservice.yaml"
    if not path.is_file():
        return None, []
    try:
        doc = yaml.safe_load(path.read_text())
        return doc, [g["groupName"] for g in doc["spec"]["rayClusterConfig"].get("workerGroupSpecs", [])]
    except (yaml.YAMLError, KeyError, TypeError) as e:
        raise ConfigError(f"{path}: not a RayService rendered by `modelsat k8s render`: {e}") from e
