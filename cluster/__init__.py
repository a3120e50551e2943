"""How Ray clusters are started and addressed: the embedded local default, `--address`/`RAY_ADDRESS`
(KubeRay, `ray up`, `ray://`), fail-fast resource checks, a local multi-node cluster for tests, and offline
validation of KubeRay manifests (`cluster.kuberay_validate`, no Ray needed).

Names are loaded on first use, so `cluster.kuberay_validate` works where Ray is not installed.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "PACKAGES",
    "ClusterInfo",
    "connect",
    "disconnect",
    "free_port",
    "local_multinode_cluster",
    "original_error",
    "require_resources",
    "resolve_address",
    "root_cause",
]

_WHERE = {
    "PACKAGES": "cluster.session",
    "ClusterInfo": "cluster.session",
    "connect": "cluster.session",
    "disconnect": "cluster.session",
    "require_resources": "cluster.session",
    "resolve_address": "cluster.session",
    "original_error": "cluster.errors",
    "root_cause": "cluster.errors",
    "free_port": "cluster.local",
    "local_multinode_cluster": "cluster.local",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'cluster' has no attribute {name!r}; allowed: {', '.join(__all__)}")
    return getattr(importlib.import_module(_WHERE[name]), name)
