"""How Ray clusters are started and addressed: the embedded local default, `--address`/`RAY_ADDRESS`
(KubeRay, `ray up`, `ray://`), fail-fast resource checks, and a local multi-node cluster for tests."""

from cluster.connect import PACKAGES, ClusterInfo, connect, disconnect, require_resources, resolve_address
from cluster.local import local_multinode_cluster

__all__ = [
    "PACKAGES",
    "ClusterInfo",
    "connect",
    "disconnect",
    "local_multinode_cluster",
    "require_resources",
    "resolve_address",
]
