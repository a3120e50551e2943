"""The router's capability layers: the connector (paper Eq. 2) and the capability-attention scoring head.

`CapabilityConnector` turns a capability profile into one capability token per aptitude task (both backbones);
`CapabilityAttentionHead` scores (instruction, candidate model) pairs from a pooled instruction and those tokens
in the form of item response theory (encoder backbone). `RouterModel` (`modelsat.router.modeling`) owns both;
their parameter names in a checkpoint are `connector.*` and `head.*`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from modelsat.router.encodings import CapabilityEncoding

__all__ = ["CapabilityAttentionHead", "CapabilityConnector"]


class CapabilityConnector(nn.Module):
    """Connector W of paper Eq. 2, applied per task: [ψ_j ; a_j ; z_j] -> capability token, [m, T', out].

    The first layer is W·[ψ_j ; a ; z] = W_ψ·ψ_j + W_a·[a ; z] + b, computed as two products so that W_ψ·ψ_j
    is computed once per task rather than once per (model, task).
    """

    def __init__(self, task_dim: int, out_dim: int) -> None:
        super().__init__()
        self.task = nn.Linear(task_dim, out_dim)
        self.accuracy = nn.Linear(2, out_dim, bias=False)
        self.out = nn.Sequential(nn.GELU(), nn.Linear(out_dim, out_dim))

    def forward(
        self, task_embeddings: torch.Tensor, accuracies: torch.Tensor, standardized: torch.Tensor
    ) -> torch.Tensor:
        per_task = self.task(task_embeddings)  # [T', out]
        per_model = self.accuracy(torch.stack([accuracies, standardized], -1))  # [m, T', out]
        return self.out(per_task.unsqueeze(0) + per_model)


class CapabilityAttentionHead(nn.Module):
    """Scores (instruction, candidate) pairs from a pooled instruction and encoded profiles (encoder path).

    The score has the form of item response theory (IRT) plus a bounded correction:

        score(x, m) = Σ_k softplus(w_k(x)) · φ_k(x, m) + d(x) + c · tanh(r(x, m) / c)

    - φ(x, m) = [Σ_j α_hj(x) z_mj ; Σ_j α_hj(x) a_mj] for h = 1..H: the candidate's standardised and raw
      accuracy on the aptitude tasks relevant to x (α = instruction→task attention) — its "ability" θ;
    - softplus(w(x)) >= 0: instruction-dependent discrimination, so the score is monotone in ability and
      extrapolates to a newcomer stronger than every training model;
    - d(x): instruction difficulty (cancels in routing; matters for calibration);
    - r(x, m) = MLP([u, s, g, u ⊙ s]) over the capability tokens (s: attention-weighted, g: mean): the
      interactions a monotone model misses, bounded by c = `residual_bound` logits so it can reorder close
      candidates but never outvote a large ability gap (c = 0: no correction; None: unbounded).
    """

    def __init__(
        self,
        instr_dim: int,
        task_dim: int,
        hidden: int,
        heads: int,
        dropout: float,
        residual_bound: float | None,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.residual_bound = residual_bound
        self.query = nn.Linear(instr_dim, hidden)
        self.key = nn.Linear(task_dim, hidden)
        self.discrimination = nn.Linear(instr_dim, 2 * heads)
        self.difficulty = nn.Linear(instr_dim, 1)
        self.instr = nn.Sequential(nn.Linear(instr_dim, hidden), nn.GELU())
        self.mlp = nn.Sequential(
            nn.Linear(4 * hidden, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )

    def attention(self, pooled: torch.Tensor, task_embeddings: torch.Tensor) -> torch.Tensor:
        """Instruction→task attention logits, [b, H, T'] (the same for every candidate)."""
        b, h = pooled.shape[0], self.heads
        q = self.query(pooled).view(b, h, -1)
        k = self.key(task_embeddings).view(task_embeddings.shape[0], h, -1)
        return torch.einsum("bhd,thd->bht", q, k) / q.shape[-1] ** 0.5

    def _score(
        self, u_raw: torch.Tensor, ability: torch.Tensor, residual: torch.Tensor | None
    ) -> torch.Tensor:
        """u_raw [..., d], ability [..., 2H], residual [...] -> score [...]."""
        out = (F.softplus(self.discrimination(u_raw)) * ability).sum(-1) + self.difficulty(u_raw).squeeze(-1)
        if residual is not None:
            c = self.residual_bound
            out = out + (residual if c is None else c * torch.tanh(residual / c))
        return out

    @property
    def uses_residual(self) -> bool:
        return self.residual_bound is None or self.residual_bound > 0

    def dense(
        self, pooled: torch.Tensor, caps: CapabilityEncoding, task_embeddings: torch.Tensor
    ) -> torch.Tensor:
        """[b, m] scores for every pair; instruction work is done once per instruction."""
        b, (m, t, hid) = pooled.shape[0], caps.tokens.shape
        a = self.attention(pooled, task_embeddings).softmax(-1)  # [b, H, T']
        ability = torch.cat(
            [
                torch.einsum("bht,mt->bmh", a, caps.standardized),
                torch.einsum("bht,mt->bmh", a, caps.accuracies),
            ],
            -1,
        )  # [b, m, 2H]
        residual = None
        if self.uses_residual:
            v = caps.tokens.view(m, t, self.heads, hid // self.heads)
            s = torch.einsum("bht,mthd->bmhd", a, v).reshape(b, m, hid)
            u = self.instr(pooled).unsqueeze(1).expand(b, m, hid)
            g = caps.tokens.mean(1).unsqueeze(0).expand(b, m, hid)
            residual = self.mlp(torch.cat([u, s, g, u * s], -1)).squeeze(-1)
        return self._score(pooled.unsqueeze(1), ability, residual)

    def pairs(
        self,
        pooled: torch.Tensor,
        caps: CapabilityEncoding,
        task_embeddings: torch.Tensor,
        qi: torch.Tensor,
        mi: torch.Tensor,
        task_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[P] scores of the pairs (pooled[qi[p]], candidate mi[p]); `task_mask` [m, T'] drops tasks (augmentation)."""
        p, (_, t, hid) = qi.shape[0], caps.tokens.shape
        logits = self.attention(pooled, task_embeddings).index_select(0, qi)  # [P, H, T']
        tokens = caps.tokens
        if task_mask is not None:
            keep = task_mask.index_select(0, mi)  # [P, T']
            logits = logits.masked_fill(~keep.unsqueeze(1), torch.finfo(logits.dtype).min)
            g = (tokens * task_mask.unsqueeze(-1)).sum(1) / task_mask.sum(1, keepdim=True).clamp_min(1)
        else:
            g = tokens.mean(1)
        a = logits.softmax(-1)
        z, acc = caps.standardized.index_select(0, mi), caps.accuracies.index_select(0, mi)  # [P, T']
        ability = torch.cat([torch.einsum("pht,pt->ph", a, z), torch.einsum("pht,pt->ph", a, acc)], -1)
        residual = None
        if self.uses_residual:
            v = tokens.index_select(0, mi).view(p, t, self.heads, hid // self.heads)
            s = torch.einsum("pht,pthd->phd", a, v).reshape(p, hid)
            u = self.instr(pooled).index_select(0, qi)
            residual = self.mlp(torch.cat([u, s, g.index_select(0, mi), u * s], -1)).squeeze(-1)
        return self._score(pooled.index_select(0, qi), ability, residual)
