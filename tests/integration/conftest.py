"""Integration-tier fixtures: one local Ray for the modules that need a plain single-node Ray.

`ray_local` starts Ray once (48 logical CPUs, so Serve apps of a 24-model zoo fit; the dashboard and a
metrics export port, for the metrics tests) and keeps it for every later module that asks for it; it is shut
down at the end of the session. A module that needs environment variables in Ray's workers (e.g. the ingress's
bearer token, read by each replica) declares them as `RAY_ENV_VARS = {...}`: Ray workers inherit the driver's
environment when Ray starts, so `ray_local` sets them first and restarts Ray when the running one lacks them. A module that does not ask for it gets no Ray left over from another module
(`_no_foreign_ray`): the CLI jobs and the multi-node tests start and stop their own clusters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class LocalRay:
    """The shared local Ray: its `metrics_port` serves Prometheus metrics (`ray.util.metrics`)."""

    metrics_port: int
    env: tuple[tuple[str, str], ...] = ()


_STATE: dict[str, LocalRay] = {}


@pytest.fixture(scope="module")
def ray_local(request: pytest.FixtureRequest) -> Iterator[LocalRay]:
    """The session's local Ray (started on first use, reused by later modules, shut down at session end),
    with the module's `RAY_ENV_VARS` in its workers' environment."""
    import os

    import ray

    from cluster.local import free_port

    wanted = dict(getattr(request.module, "RAY_ENV_VARS", {}))
    running = _STATE.get("ray")
    if not ray.is_initialized() or running is None or not set(wanted.items()) <= set(running.env):
        if ray.is_initialized():
            ray.shutdown()
        port = free_port()
        env = {**dict(running.env if running else ()), **wanted}
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            ray.init(num_cpus=48, include_dashboard=True, namespace="modelsat", _metrics_export_port=port)
        _STATE["ray"] = LocalRay(metrics_port=port, env=tuple(sorted(env.items())))
    with pytest.MonkeyPatch.context() as mp:  # the driver sees them too (in-process deployment code)
        for k, v in wanted.items():
            mp.setenv(k, v)
        assert not [k for k in wanted if os.environ.get(k) != wanted[k]]
        yield _STATE["ray"]


@pytest.fixture(scope="module", autouse=True)
def _no_foreign_ray(request: pytest.FixtureRequest) -> Iterator[None]:
    """Before a module that does not use `ray_local`, shut the shared Ray down (it starts its own)."""
    if "ray_local" not in request.fixturenames and _STATE:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        _STATE.clear()
    yield


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_exit() -> Iterator[None]:
    yield
    if _STATE:
        import ray

        ray.shutdown()
        _STATE.clear()
