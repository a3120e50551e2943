"""The ingress's metrics (`ray.util.metrics`, exported on Ray's Prometheus endpoint with the `ray_` prefix).

`IngressMetrics.ray()` makes the real ones inside a replica; tests pass `IngressMetrics.recording()`, which
keeps every observation in memory and needs no Ray.

Docs: https://docs.ray.io/en/latest/ray-observability/user-guides/add-app-metrics.html
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

__all__ = ["IngressMetrics"]

ROUTER_MS_BOUNDARIES = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]


class _Recorder:
    """In-memory stand-in of a Ray Counter/Histogram: `values[tags]` lists what was recorded."""

    def __init__(self) -> None:
        self.values: dict[tuple[tuple[str, str], ...], list[float]] = defaultdict(list)

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.values[tuple(sorted((tags or {}).items()))].append(value)

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self.inc(value, tags)


@dataclass
class IngressMetrics:
    """`requests{model,route}`, `router_ms` (histogram), `fallbacks{model}`, `errors{type}`."""

    requests: Any
    router_ms: Any
    fallbacks: Any
    errors: Any

    @classmethod
    def ray(cls) -> IngressMetrics:
        """The Ray metrics `modelsat_requests_total`, `modelsat_router_latency_ms`, `modelsat_fallbacks_total`,
        `modelsat_errors_total` (call inside a Ray worker or replica)."""
        from ray.util import metrics

        return cls(
            requests=metrics.Counter(
                "modelsat_requests_total",
                "Requests answered, by model and route (auto|direct)",
                ("model", "route"),
            ),
            router_ms=metrics.Histogram(
                "modelsat_router_latency_ms",
                "Router ranking latency per request (ms)",
                boundaries=ROUTER_MS_BOUNDARIES,
            ),
            fallbacks=metrics.Counter(
                "modelsat_fallbacks_total",
                "Requests moved to the next model because this one failed",
                ("model",),
            ),
            errors=metrics.Counter("modelsat_errors_total", "Error responses by type", ("type",)),
        )

    @classmethod
    def recording(cls) -> IngressMetrics:
        """In-memory metrics (tests; no Ray)."""
        return cls(requests=_Recorder(), router_ms=_Recorder(), fallbacks=_Recorder(), errors=_Recorder())
