"""Start or reach a Ray cluster the same way everywhere (CLI, training, serving, tests).

- no address (and no `RAY_ADDRESS`): an **embedded local cluster** in this process (the default);
- `--address ADDR` or `RAY_ADDRESS`: an existing cluster — `auto`, `HOST:PORT` (GCS), or a Ray Client URL
  `ray://HOST:10001` (a KubeRay head service, a `ray up` cluster). Code is shipped to a remote cluster with
  `runtime_env.py_modules` unless `ship_code=False` (e.g. when the image already holds the packages).

Docs: https://docs.ray.io/en/latest/ray-core/api/doc/ray.init.html
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cluster.logs import announce_session, ray_log_to_driver
from modelsat.errors import ClusterError

__all__ = [
    "PACKAGES",
    "ClusterInfo",
    "connect",
    "disconnect",
    "require_resources",
    "resolve_address",
]

PACKAGES = ("modelsat", "cluster", "jobs", "services")
"""Our top-level packages; shipped to remote clusters as `py_modules`."""


@dataclass(frozen=True)
class ClusterInfo:
    """What `connect` reached.

    Attributes:
        address: the address connected to, or `local` for the embedded cluster.
        embedded: True when this process started the cluster (and should stop it).
        resources: total logical resources of the cluster (e.g. {"CPU": 16.0, "GPU": 0.0}).
        nodes: number of alive nodes.
    """

    address: str
    embedded: bool
    resources: dict[str, float]
    nodes: int


def resolve_address(address: str | None) -> str | None:
    """The cluster address to use: the explicit one, else `$RAY_ADDRESS`, else None (embedded local cluster)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (seconds, not Ray's minute-long retries) when a HOST:PORT or ray://HOST:PORT is not listening."""
    if address == "auto" or "://" in address and not address.startswith("ray://"):
        return
    hostport = address.removeprefix("ray://").split("/")[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"cannot parse Ray address {address!r}; allowed: auto, HOST:PORT (GCS, e.g. 10.0.0.5:6379) or ray://HOST:10001"
        )
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ClusterError(
            f"cannot reach a Ray cluster at {address!r}: {e.strerror or e} (give --address auto, HOST:PORT or "
            "ray://HOST:10001 of a running cluster, or unset RAY_ADDRESS for the embedded local cluster)"
        ) from e


def _code_runtime_env() -> dict[str, Any]:
    import importlib

    modules = []
    for name in PACKAGES:
        try:
            modules.append(str(Path(importlib.import_module(name).__file__).parent))
        except ImportError:
            continue
    return {"py_modules": modules}


def connect(
    address: str | None = None,
    num_cpus: int | None = None,
    resources: dict[str, float] | None = None,
    runtime_env: dict[str, Any] | None = None,
    ship_code: bool = True,
    namespace: str = "modelsat",
) -> ClusterInfo:
    """Connect to (or start) the Ray cluster; idempotent when Ray is already initialised.

    Args:
        address: cluster address (see module docstring); None = `$RAY_ADDRESS` or the embedded cluster.
        num_cpus: logical CPUs of the embedded cluster (None = all cores); ignored for remote clusters.
        resources: custom resources of the embedded cluster's node.
        runtime_env: extra runtime environment for every task and actor (merged with shipped code).
        ship_code: ship our packages to a remote cluster with `py_modules`.
        namespace: Ray namespace (Serve applications and named actors live in it).
    Returns:
        `ClusterInfo`.
    Raises:
        ClusterError: the address cannot be reached (names the address and how to fix it).
    """
    import ray

    target = resolve_address(address)
    if not ray.is_initialized():
        env = dict(runtime_env or {})
        if target is not None and ship_code:
            env = {**_code_runtime_env(), **env}
        if target is not None:
            _check_reachable(target)
        try:
            if target is None:
                ray.init(
                    num_cpus=num_cpus,
                    resources=resources,
                    runtime_env=env or None,
                    namespace=namespace,
                    include_dashboard=False,
                    log_to_driver=ray_log_to_driver(),
                )
            else:
                ray.init(
                    address=target,
                    runtime_env=env or None,
                    namespace=namespace,
                    log_to_driver=ray_log_to_driver(),
                )
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as e:
            raise ClusterError(
                f"cannot reach a Ray cluster at {target!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__} "
                "(give --address auto, HOST:PORT or ray://HOST:10001, or unset RAY_ADDRESS for the embedded local cluster)"
            ) from e
    announce_session()
    total = {k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
    nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    return ClusterInfo(address=target or "local", embedded=target is None, resources=total, nodes=nodes)


def disconnect() -> None:
    """Disconnect from (and, for the embedded cluster, stop) Ray."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


def require_resources(per_worker: dict[str, float], count: int, what: str) -> None:
    """Fail fast when the cluster cannot place `count` workers of `per_worker` resources, instead of hanging.

    A worker's resources must fit on one node; the check counts how many workers each alive node can hold.

    Raises:
        ClusterError: naming the resources that are missing and what the cluster has.
    """
    import ray

    per_node = [
        {k: float(v) for k, v in n.get("Resources", {}).items()} for n in ray.nodes() if n.get("Alive")
    ]
    fits = 0
    for node in per_node:
        fits += int(min((node.get(k, 0.0) // v) if v > 0 else float("inf") for k, v in per_worker.items()))
    if fits >= count:
        return
    total = {k: sum(n.get(k, 0.0) for n in per_node) for k in per_worker}
    short = {k: count * v - total[k] for k, v in per_worker.items() if count * v > total[k]}
    detail = ", ".join(f"{k}: need {count * v:g}, cluster has {total[k]:g}" for k, v in per_worker.items())
    missing = ", ".join(f"{v:g} {k}" for k, v in short.items()) or "resources on a single node"
    raise ClusterError(
        f"{what}: the cluster cannot place {count} workers of {per_worker} (it fits {fits}); missing {missing} ({detail})"
    )
