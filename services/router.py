"""The router deployment: ranks candidate models for an instruction; never generates text.

Concurrent requests are batched with `@serve.batch`: each batch encodes its instructions once (one backbone
pass) and scores them against the cached capability encodings of every candidate (paper §3, "Inference").
The candidate set comes from the deployment's `user_config` (`{"models": [...]}`), so adding or removing a
model is a lightweight `reconfigure` without restarting the replica; profiles and prices come from the model
registry (or, without one, from the checkpoint's own profiles, with unknown prices). A served model without a
capability profile yet (hot-added on Kubernetes before its aptitude test ran) is *pending*: requests can name
it, the router does not choose it, and the registry is re-read every `registry_refresh_s` until its profile
appears (the KubeRay flow of the README's deployment section).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import numpy as np
from ray import serve

from services.candidates import read_candidates

__all__ = ["InProcessRouter", "RouterDeployment"]

log = logging.getLogger("modelsat.serving")


class RouterDeployment:
    """Ranks candidate models with a Model-SAT router checkpoint.

    Args:
        checkpoint: router checkpoint directory.
        registry: model registry URI, or None for the checkpoint's own profiles.
        max_batch_size: instructions per router pass (`@serve.batch`).
        batch_wait_timeout_s: longest wait to fill a batch, in seconds.
        num_threads: torch CPU threads (the replica's logical CPUs).
        registry_refresh_s: seconds between registry re-reads while a served model is pending (no profile);
            0 = never.
    """

    def __init__(
        self,
        checkpoint: str,
        registry: str | None = None,
        max_batch_size: int = 16,
        batch_wait_timeout_s: float = 0.0,
        num_threads: int = 1,
        registry_refresh_s: float = 30.0,
    ) -> None:
        import torch

        from modelsat.registry import ModelRegistry
        from modelsat.router import Router, RouterCheckpoint

        torch.set_num_threads(max(1, num_threads))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.checkpoint = RouterCheckpoint.load(checkpoint, device=device)
        self.registry = ModelRegistry(registry) if registry else None
        self.router = Router(self.checkpoint)  # no disk cache: served instructions are new
        self.prices: dict[str, float] = {}
        self.served: list[str] = list(self.checkpoint.profiles)
        self.pending: list[str] = []
        self.registry_refresh_s = registry_refresh_s
        self._refreshed_at = time.monotonic()
        self._refresh_lock = asyncio.Lock()
        # Serve may run `reconfigure` in a thread beside the batches: candidates, their capability encodings
        # and prices change together under this lock, and a batch scores and reads them under it.
        self._state_lock = threading.Lock()
        self._rank_batch.set_max_batch_size(max_batch_size)
        self._rank_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Set the served models (`{"models": [names]}`), reading their profiles and prices.

        Models without a capability profile become pending (served by name, not routed to) until their
        profile is registered.

        Raises:
            RegistryError: the registry cannot be read, or no served model has a profile this router can
                use (then the served models and candidates stay as they were).
        """
        before = self.served
        self.served = list(config.get("models", []))
        try:
            self._load_profiles()
        except Exception:
            self.served = before  # a failed reconfigure changes nothing
            raise

    def _load_profiles(self) -> None:
        """Read the served models' profiles and prices (one registry read) and swap them in together.

        Registry entries that are unusable or measured on another aptitude test are skipped (the registry logs
        each once); every other served model stays routable.

        Raises:
            RegistryError: the registry cannot be listed, is empty, or none of its profiles fits this router's
                aptitude test; the current candidates are kept then.
        """
        found = read_candidates(
            self.registry, self.checkpoint.aptitude, self.checkpoint.profiles, self.served, self.pending
        )
        self._refreshed_at = time.monotonic()
        routable, newly, source = list(found.profiles), found.newly, found.source
        self.pending = found.pending
        if self.pending:
            log.warning(
                "no capability profile for %s in %s: served by name only until `modelsat registry add` registers it%s",
                ", ".join(self.pending),
                source,
                f" (re-reading the registry every {self.registry_refresh_s:g} s)"
                if self.registry is not None and self.registry_refresh_s > 0
                else "",
            )
        with self._state_lock:
            if routable:
                self.router.set_profiles(found.profiles)
            else:
                self.router.candidates = []
            self.prices = found.prices
        log.info(
            "router candidates (%d): %s%s",
            len(routable),
            ", ".join(routable),
            f"; newly profiled: {', '.join(newly)}" if newly else "",
        )

    async def _refresh_if_due(self) -> None:
        """Re-read the registry when a served model is pending and `registry_refresh_s` has passed."""
        if not self.pending or self.registry is None or self.registry_refresh_s <= 0:
            return
        if time.monotonic() - self._refreshed_at < self.registry_refresh_s or self._refresh_lock.locked():
            return
        async with self._refresh_lock:
            try:
                await asyncio.to_thread(self._load_profiles)
            except Exception:  # a registry outage must not stop routing among the profiled models
                self._refreshed_at = time.monotonic()
                log.exception(
                    "re-reading the registry %s failed; keeping the current candidates", self.registry.uri
                )

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def _rank_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        encoded = self.router.encode([r["instruction"] for r in requests])  # does not depend on candidates
        with self._state_lock:  # one consistent (candidates, encodings, prices) snapshot
            names, prices = list(self.router.candidates), dict(self.prices)
            scores = self.router.score_encoded(encoded) if names else np.zeros((len(requests), 0))  # [b, m]
        ms = 1000 * (time.perf_counter() - t0)
        out = []
        for i, r in enumerate(requests):
            cols = [j for j, n in enumerate(names) if r.get("candidates") is None or n in r["candidates"]]
            sub = [names[j] for j in cols]
            if not sub:
                out.append(self._no_candidate(r.get("candidates")))
                continue
            tokens = r["prompt_tokens"] + r["max_tokens"]
            cost = np.array([prices[n] * tokens / 1e6 for n in sub])
            decision = self.router.decide(scores[i : i + 1, cols], sub, r.get("cost_weight", 0.0), cost)[0]
            out.append(
                {
                    "ranked": decision.ranked(),
                    "scores": decision.scores,
                    "p_correct": decision.p_correct,
                    "expected_cost_usd": dict(zip(sub, cost.tolist(), strict=True)),
                    "batch_size": len(requests),
                    "router_ms": ms,
                }
            )
        return out

    async def rank(self, request: dict[str, Any]) -> dict[str, Any]:
        """Candidate models for one instruction, best first.

        Args:
            request: {"instruction": str, "prompt_tokens": int, "max_tokens": int, "cost_weight": λ (1/USD),
                "candidates": optional list of names}.
        Returns:
            {"ranked": [names, best first], "scores": {name: logit}, "p_correct": {name: 0..1},
             "expected_cost_usd": {name: USD}, "router_ms": ms of the batch's router pass}; or {"error": ...}.
        """
        await self._refresh_if_due()
        if not self.router.candidates:
            return self._no_candidate(request.get("candidates"))
        return await self._rank_batch(request)

    def _no_candidate(self, asked: list[str] | None) -> dict[str, Any]:
        """The error of a request none of whose candidates can be routed to (503 while models are pending)."""
        pending = [n for n in self.pending if asked is None or n in asked]
        if pending:
            return {
                "error": f"no candidate model has a capability profile yet ({', '.join(pending)} pending: run the "
                "aptitude test, `modelsat registry add`); call a model by name meanwhile",
                "status": 503,
                "code": "no_profiled_candidate",
            }
        return {
            "error": f"none of the candidates {asked} is served; served: {', '.join(self.router.candidates)}",
            "status": 400,
        }

    def served_models(self) -> list[str]:
        """Every served model (`user_config`), profiled or pending."""
        return list(self.served)


class _InProcessMethod:
    """`handle.method.remote(...)` for a method of an object in this process: schedules the coroutine."""

    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> asyncio.Task:
        return asyncio.ensure_future(self._method(*args, **kwargs))


class InProcessRouter:
    """A `RouterDeployment` inside the ingress replica (`router.placement: ingress`), behind the part of the
    deployment-handle interface the ingress's `Ranker` calls: `rank.remote(request)` returns an awaitable (an
    asyncio task, so an abandoned call can be cancelled); `reconfigure` and `served_models` are plain calls.

    Args:
        **router_args: `RouterDeployment`'s arguments (checkpoint, registry, batching, registry refresh); it
            ranks on one torch thread of the ingress process.
    """

    def __init__(self, **router_args: Any) -> None:
        self.deployment = RouterDeployment(**router_args, num_threads=1)
        self.rank = _InProcessMethod(self.deployment.rank)

    def reconfigure(self, models: list[str]) -> None:
        """Serve these models (`RouterDeployment.reconfigure`); raises as it does, changing nothing then."""
        self.deployment.reconfigure({"models": list(models)})

    def served_models(self) -> list[str]:
        return self.deployment.served_models()
