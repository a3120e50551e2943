"""A Ray cluster of several nodes on one machine, for tests and demos (`ray.cluster_utils.Cluster`).

    with local_multinode_cluster([{"num_cpus": 2}, {"num_cpus": 2, "resources": {"router": 1}}]) as info:
        ...  # connected: info.nodes == 2

Docs: https://docs.ray.io/en/latest/ray-contribute/testing-tips.html (Cluster utility).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import ray

from cluster.session import ClusterInfo, connect

__all__ = ["free_port", "local_multinode_cluster"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now (for a local Serve HTTP proxy or metrics)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def local_multinode_cluster(
    nodes: list[dict[str, Any]], namespace: str = "modelsat"
) -> Iterator[ClusterInfo]:
    """Start a head node plus workers on this machine, connect to it, and tear it down on exit.

    Args:
        nodes: per node, `ray start` arguments (e.g. `{"num_cpus": 2, "resources": {"gpu_pool": 1}}`); the
            first is the head node.
        namespace: Ray namespace.
    Yields:
        `ClusterInfo` of the connected cluster.
    """
    from ray.cluster_utils import Cluster

    if not nodes:
        raise ValueError("nodes must list at least the head node")
    if ray.is_initialized():
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args=dict(nodes[0]))
    try:
        for spec in nodes[1:]:
            c.add_node(**spec)
        c.wait_for_nodes()
        info = connect(address=c.address, ship_code=False, namespace=namespace)
        yield info
    finally:
        ray.shutdown()
        c.shutdown()
