"""`Router`: routing decisions from a checkpoint and the capability profiles of the candidate models.

Each instruction is encoded once and shared by all candidates; capability tokens are computed once per set of
profiles and cached, so adding a candidate costs one profile encoding, not a router pass per instruction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from modelsat.aptitude import CapabilityProfile
from modelsat.encoding import EmbeddingCache, encode_with_cache, encoder_key
from modelsat.errors import RoutingError, UnknownModelError
from modelsat.router.build import tokenize_instructions
from modelsat.router.calibration import platt_probabilities
from modelsat.router.checkpoint import RouterCheckpoint
from modelsat.router.decision import defer_choice
from modelsat.router.encodings import CapabilityEncoding, InstructionEncoding
from modelsat.router.prior import TaskAccuracies

__all__ = ["Router", "RoutingDecision"]


@dataclass(frozen=True)
class RoutingDecision:
    """The routing decision for one instruction.

    Attributes:
        model_id: the chosen candidate model.
        scores: router score per candidate (logit, unbounded; higher = more likely correct).
        p_correct: calibrated probability of a correct answer per candidate, in [0, 1].
        utility: p_correct − λ·expected cost (USD) per candidate; equals p_correct when λ = 0.
    """

    model_id: str
    scores: dict[str, float]
    p_correct: dict[str, float]
    utility: dict[str, float]

    def ranked(self) -> list[str]:
        """The chosen model, then the other candidates by decreasing utility (the failover order)."""
        rest = sorted((m for m in self.utility if m != self.model_id), key=lambda m: -self.utility[m])
        return [self.model_id, *rest]


class Router:
    """Routes instructions to candidate models with a trained Model-SAT router.

    Args:
        checkpoint: the loaded checkpoint.
        profiles: capability profiles of the candidates (default: the checkpoint's own profiles).
        cache_root: cache root for instruction encodings on disk (e.g. `modelsat.paths.cache_dir()`); used only
            when encodings depend on frozen weights alone (encoder backbone). None = no disk cache.
        batch_size: instructions per backbone pass.
    """

    def __init__(
        self,
        checkpoint: RouterCheckpoint,
        profiles: dict[str, CapabilityProfile] | None = None,
        cache_root: Path | None = None,
        batch_size: int = 32,
    ) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.eval()
        self.tokenizer = checkpoint.tokenizer
        self.batch_size = batch_size
        self.cache = (
            EmbeddingCache(cache_root, self.encoder_key())
            if cache_root is not None and self.cacheable
            else None
        )
        self._capabilities: CapabilityEncoding | None = None
        self.candidates: list[str] = []
        self.estimated_accuracy: dict[str, float] = {}  # the anchor-and-defer criterion, per candidate
        self.set_profiles(profiles if profiles is not None else checkpoint.profiles)

    @property
    def _device(self) -> torch.device:
        """Where the router's weights are (`RouterCheckpoint.load(..., device=)`); inputs go there."""
        return self.model.task_embeddings.device

    @property
    def cacheable(self) -> bool:
        """Whether instruction encodings depend only on the (frozen) backbone and can be cached on disk."""
        return not self.model.is_causal

    def encoder_key(self) -> str:
        """Fingerprint of the instruction encoder (weights + truncation length), the cache key."""
        return encoder_key(self.model.backbone, self.model.config.max_instruction_tokens)

    def set_profiles(self, profiles: dict[str, CapabilityProfile]) -> None:
        """Replace the candidate set and re-encode the capability profiles (cached until the next call).

        Raises:
            RoutingError: if no profile is given or a profile does not match the checkpoint's aptitude test.
        """
        if not profiles:
            raise RoutingError("no candidate models: give at least one capability profile")
        n_tasks = len(self.checkpoint.aptitude.tasks)
        for name, p in profiles.items():
            if len(p.accuracies) != n_tasks:
                raise RoutingError(
                    f"profile of {name!r} has {len(p.accuracies)} tasks; the router's aptitude test has {n_tasks}"
                )
        self.candidates = list(profiles)
        acc = torch.as_tensor(
            np.stack([profiles[m].accuracies for m in self.candidates]), dtype=torch.float32
        )
        with torch.no_grad():
            self._capabilities = self.model.encode_profiles(acc.to(self._device))
        table = self.checkpoint.training.get("task_accuracies")
        linked = acc.numpy()
        if table is not None:
            linked = TaskAccuracies.from_dict(table).for_candidates(self.candidates, acc.numpy())
            if self.model.config.prior_source == "pool":  # else the prior reads the profiles themselves
                self._capabilities.prior_accuracies = torch.as_tensor(linked, device=self._device)
        self.estimated_accuracy = dict(zip(self.candidates, linked.mean(1).tolist(), strict=True))

    def _check(self, instructions: Sequence[str]) -> list[str]:
        if isinstance(instructions, str):
            raise RoutingError("instructions must be a list of strings, got one string")
        out = list(instructions)
        if not out:
            raise RoutingError("no instructions given")
        for i, x in enumerate(out):
            if not isinstance(x, str) or not x.strip():
                raise RoutingError(f"instruction {i} is empty ({x!r}); give non-empty text")
        return out

    @torch.no_grad()
    def encode(
        self, instructions: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> InstructionEncoding:
        """Encode instructions once (from the disk cache where possible).

        Raises:
            RoutingError: if the list is empty or an instruction is empty.
        """
        texts = self._check(instructions)
        cfg = self.model.config
        if self.model.is_causal:
            t = tokenize_instructions(self.tokenizer, texts, cfg)
            return self.model.encode_instructions(**{k: v.to(self._device) for k, v in t.items()})

        def batch(chunk: list[str]) -> np.ndarray:
            t = tokenize_instructions(self.tokenizer, chunk, cfg)
            enc = self.model.encode_instructions(**{k: v.to(self._device) for k, v in t.items()})
            return enc.pooled.float().cpu().numpy()

        pooled = encode_with_cache(texts, batch, self.cache, self.batch_size, progress)
        return InstructionEncoding(pooled=torch.as_tensor(pooled))

    def _columns(self, candidates: Sequence[str] | None) -> list[int]:
        if candidates is None:
            return list(range(len(self.candidates)))
        pos = {m: i for i, m in enumerate(self.candidates)}
        bad = [c for c in candidates if c not in pos]
        if bad:
            raise UnknownModelError(
                f"unknown candidate model {bad[0]!r}; known: {', '.join(self.candidates)}"
            )
        if not candidates:
            raise RoutingError("empty candidate list")
        return [pos[c] for c in candidates]

    @torch.no_grad()
    def score_encoded(
        self, encoded: InstructionEncoding, candidates: Sequence[str] | None = None
    ) -> np.ndarray:
        """[b, m] router scores (logits) of encoded instructions for the given candidates (default: all)."""
        cols = self._columns(candidates)
        assert self._capabilities is not None
        caps = self._capabilities.select(cols)
        step = max(1, 4096 // max(len(cols), 1))
        scores = torch.cat([self.model.score(part, caps) for part in encoded.chunks(step)])
        return scores.float().cpu().numpy()  # [b, m] on the host, whatever the router's device and dtype

    def scores(self, instructions: Sequence[str], candidates: Sequence[str] | None = None) -> np.ndarray:
        """[b, m] router scores (logits) for every (instruction, candidate) pair; instructions encoded once."""
        return self.score_encoded(self.encode(instructions), candidates)

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated p(correct) in [0, 1] for router scores (Platt scaling from the checkpoint)."""
        cfg = self.model.config
        return platt_probabilities(scores, cfg.score_scale, cfg.score_bias)

    def decide(
        self,
        scores: np.ndarray,
        candidates: Sequence[str] | None = None,
        cost_weight: float = 0.0,
        expected_cost_usd: np.ndarray | None = None,
    ) -> list[RoutingDecision]:
        """Routing decisions from router scores: argmax of p(correct) − λ·expected cost; with λ = 0, the
        anchor-and-defer rule with the checkpoint's margin δ (`modelsat.router.decision`; δ = 0: argmax p).

        Args:
            scores: [b, m] router scores for `candidates`.
            candidates: the m candidate names (default: all, in `self.candidates` order).
            cost_weight: λ in 1/USD, >= 0 (0 = accuracy only).
            expected_cost_usd: [b, m] or [m] expected USD of each request on each candidate (needed if λ > 0).
        Raises:
            RoutingError: if λ < 0, or λ > 0 without costs, or shapes disagree.
        """
        names = list(self.candidates) if candidates is None else list(candidates)
        if cost_weight < 0:
            raise RoutingError(f"cost_weight={cost_weight!r}; allowed: a number >= 0 (1/USD)")
        p = self.probabilities(scores)
        util = p
        if cost_weight > 0:
            if expected_cost_usd is None:
                raise RoutingError("cost_weight > 0 needs the expected cost of each candidate")
            cost = np.broadcast_to(np.asarray(expected_cost_usd, dtype=np.float64), p.shape)
            util = p - cost_weight * cost
            best = util.argmax(1)
        else:
            anchor = np.array([self.estimated_accuracy[m] for m in names])
            best = defer_choice(p, anchor, self.model.config.defer_margin)
        return [
            RoutingDecision(
                model_id=names[int(best[i])],
                scores={m: float(scores[i, j]) for j, m in enumerate(names)},
                p_correct={m: float(p[i, j]) for j, m in enumerate(names)},
                utility={m: float(util[i, j]) for j, m in enumerate(names)},
            )
            for i in range(scores.shape[0])
        ]

    def route(
        self,
        instructions: Sequence[str],
        candidates: Sequence[str] | None = None,
        cost_weight: float = 0.0,
        expected_cost_usd: np.ndarray | None = None,
    ) -> list[RoutingDecision]:
        """Score every candidate for each instruction and pick the best (paper §3, "Inference").

        Raises:
            RoutingError: empty instruction list or instruction, bad cost settings.
            UnknownModelError: a candidate without a profile.
        """
        return self.decide(self.scores(instructions, candidates), candidates, cost_weight, expected_cost_usd)
