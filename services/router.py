"""The router deployment: ranks candidate models for an instruction; never generates text.

Concurrent requests are batched with `@serve.batch`: each batch encodes its instructions once (one backbone
pass) and scores them against the cached capability encodings of every candidate (paper §3, "Inference").
The candidate set comes from the deployment's `user_config` (`{"models": [...]}`), so adding or removing a
model is a lightweight `reconfigure` without restarting the replica; profiles and prices come from the model
registry (or, without one, from the checkpoint's own profiles, with unknown prices).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
from ray import serve

__all__ = ["RouterDeployment"]

log = logging.getLogger("modelsat.serving")


class RouterDeployment:
    """Ranks candidate models with a Model-SAT router checkpoint.

    Args:
        checkpoint: router checkpoint directory.
        registry: model registry URI, or None for the checkpoint's own profiles.
        max_batch_size: instructions per router pass (`@serve.batch`).
        batch_wait_timeout_s: longest wait to fill a batch, in seconds.
        num_threads: torch CPU threads (the replica's logical CPUs).
    """

    def __init__(
        self,
        checkpoint: str,
        registry: str | None = None,
        max_batch_size: int = 16,
        batch_wait_timeout_s: float = 0.005,
        num_threads: int = 1,
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
        self._rank_batch.set_max_batch_size(max_batch_size)
        self._rank_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Set the candidate models (`{"models": [names]}`), reading their profiles and prices.

        Raises:
            RoutingError: a model has no capability profile (names it; run `modelsat zoo add`).
            RegistryError: the registry's profiles were measured on another aptitude test.
        """
        from modelsat.errors import RoutingError

        names = list(config.get("models", []))
        if self.registry is not None:
            profiles = self.registry.profiles_for(self.checkpoint.aptitude)
            cards = {e.name: e.card for e in self.registry.entries()}
            source = f"registry {self.registry.uri}"
        else:
            profiles, cards, source = self.checkpoint.profiles, {}, "the checkpoint"
        missing = [n for n in names if n not in profiles]
        if missing:
            raise RoutingError(
                f"no capability profile for {', '.join(missing)} in {source}; run `modelsat zoo add NAME --router ...`"
            )
        self.router.set_profiles({n: profiles[n] for n in names})
        self.prices = {n: float(cards[n].usd_per_mtok or 0.0) if n in cards else 0.0 for n in names}
        log.info("router candidates (%d): %s", len(names), ", ".join(names))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def _rank_batch(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        t0 = time.perf_counter()
        encoded = self.router.encode([r["instruction"] for r in requests])
        scores = self.router.score_encoded(encoded)  # [b, m]
        ms = 1000 * (time.perf_counter() - t0)
        names = self.router.candidates
        out = []
        for i, r in enumerate(requests):
            cols = [j for j, n in enumerate(names) if r.get("candidates") is None or n in r["candidates"]]
            sub = [names[j] for j in cols]
            if not sub:
                out.append(
                    {
                        "error": f"none of the candidates {r.get('candidates')} is served; served: {', '.join(names)}"
                    }
                )
                continue
            tokens = r["prompt_tokens"] + r["max_tokens"]
            cost = np.array([self.prices[n] * tokens / 1e6 for n in sub])
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
        return await self._rank_batch(request)

    def candidates(self) -> list[str]:
        """The current candidate models."""
        return list(self.router.candidates)
