"""What the router computes once and shares: sentence pooling, instruction encodings, capability encodings.

An instruction is encoded once for every candidate model (`InstructionEncoding`), and a set of capability
profiles once per profile set (`CapabilityEncoding`, cached by `Router`); `RouterModel.score` combines the two.
`mean_pool` is the sentence embedding that the encoder backbone and the capability encoder ψ share. (The
on-disk cache of frozen sentence-encoder outputs is `modelsat.encoding`.)
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["CapabilityEncoding", "InstructionEncoding", "mean_pool"]


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states over the attention mask, L2-normalised: a sentence embedding.

    What sentence-transformers computes for all-MiniLM-L6-v2 (its `Pooling(mean)` + `Normalize` modules); the
    router's encoder backbone and the capability encoder ψ share it, so their vectors agree.

    Args:
        hidden: [b, s, d] token states. attention_mask: [b, s] 1 for tokens, 0 for padding.
    Returns:
        [b, d] unit vectors.
    """
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * m).sum(1) / m.sum(1).clamp_min(1e-9), dim=-1)


@dataclass
class InstructionEncoding:
    """Instructions encoded once, shared by every candidate model.

    Attributes:
        pooled: [b, d] unit-norm sentence embeddings (encoder backbone).
        past: per-layer (keys, values) of the instruction prefix (causal_lm backbone), each [b, heads, s, dh].
        attention_mask: [b, s] mask of the left-padded prefix (causal_lm).
    """

    pooled: torch.Tensor | None = None
    past: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    attention_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        if self.pooled is not None:
            return self.pooled.shape[0]
        assert self.attention_mask is not None
        return self.attention_mask.shape[0]

    def rows(self, index: slice) -> InstructionEncoding:
        """The encodings of the instructions `index` selects (a slice of the batch dimension)."""
        return InstructionEncoding(
            pooled=None if self.pooled is None else self.pooled[index],
            past=None if self.past is None else [(k[index], v[index]) for k, v in self.past],
            attention_mask=None if self.attention_mask is None else self.attention_mask[index],
        )

    def chunks(self, size: int) -> Iterator[InstructionEncoding]:
        """Consecutive pieces of at most `size` instructions (bounded memory when scoring many)."""
        for start in range(0, len(self), max(1, size)):
            yield self.rows(slice(start, start + max(1, size)))


@dataclass
class CapabilityEncoding:
    """Encoded capability profiles of m candidate models (computed once per profile set and cached).

    Attributes:
        tokens: [m, T', h] capability tokens (paper Eq. 2, one per aptitude task).
        standardized: [m, T'] accuracies standardised with the aptitude test's frozen statistics.
        accuracies: [m, T'] accuracies in [0, 1].
        prior_accuracies: [m, T'] what the profile prior reads per task (`modelsat.router.prior`): a training
            model's accuracy on the task's training-pool questions, a newcomer's profile put on that scale;
            None = `accuracies`.
    """

    tokens: torch.Tensor
    standardized: torch.Tensor
    accuracies: torch.Tensor
    prior_accuracies: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, index: list[int] | torch.Tensor) -> CapabilityEncoding:
        """The encodings of a subset of candidates, in the given order."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.tokens.device)
        return CapabilityEncoding(
            *(t.index_select(0, idx) for t in (self.tokens, self.standardized, self.accuracies)),
            prior_accuracies=None
            if self.prior_accuracies is None
            else self.prior_accuracies.index_select(0, idx.to(self.prior_accuracies.device)),
        )
