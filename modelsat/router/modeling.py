"""`RouterModel`: capability encoder + connector + backbone that scores (instruction, candidate model) pairs.

Paper §3 (Eq. 2–4) has a lightweight LM read `[capability][instruction][inquiry]` and score the "Yes" logit,
one router pass per candidate. We keep the ingredients and change the order of work so that an instruction is
encoded **once** and shared by every candidate:

- **Capability encoding (Eq. 2, per-task form).** A profile is T' lines "accuracy a_j on the task of
  <description_j>". The capability encoder ψ (the backbone's sentence encoder) embeds each task's description
  and the centroid of its aptitude items once per checkpoint (buffer `task_embeddings`, [T', e]). The connector
  maps [ψ_j ; a_j ; z_j] (accuracy and its standardised value) to one capability token per task, [m, T', h].
  Numbers go in as numbers: sentence encoders represent "65.0%" poorly, and this keeps new profiles exact.
- **encoder backbone** (CPU default, MiniLM): the backbone embeds the instruction once ([b, d], mean pooling);
  an instruction→task attention (shared by all candidates, since all profiles cover the same tasks) gives each
  candidate's ability on the tasks relevant to the instruction, and the score takes the form of item response
  theory — discrimination(x)·ability(x, m) + difficulty(x) — plus a bounded correction computed from the
  capability tokens (`CapabilityAttentionHead`). The monotone part lets a newcomer stronger than every training
  model score higher; the bound keeps the learned correction from overruling it. Cost per extra candidate: a
  few [T'] dot products and one MLP row.
- **causal_lm backbone** (the paper's form): the LM reads `Test Sample: <instruction>` first, so its keys and
  values are computed once per instruction and reused for every candidate; per candidate it reads only
  `Model description: <T' capability tokens>` and the inquiry prompt, and the score is
  logit("Yes") − logit("No") at the last position. Instruction-first is our change of the paper's order, made
  for this prefix sharing.

Scores are unbounded real numbers (logits); higher = more likely correct. `RouterConfig.score_scale/bias`
calibrate them to probabilities (Platt scaling on the validation split).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, DynamicCache, PreTrainedModel

from modelsat.router.configuration import RouterConfig

__all__ = ["CapabilityEncoding", "InstructionEncoding", "RouterModel", "register_auto_classes"]


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
    """

    tokens: torch.Tensor
    standardized: torch.Tensor
    accuracies: torch.Tensor

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, index: list[int] | torch.Tensor) -> CapabilityEncoding:
        """The encodings of a subset of candidates, in the given order."""
        idx = torch.as_tensor(index, dtype=torch.long, device=self.tokens.device)
        return CapabilityEncoding(
            *(t.index_select(0, idx) for t in (self.tokens, self.standardized, self.accuracies))
        )


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


def _layer_stack(backbone: nn.Module) -> nn.ModuleList:
    """The backbone's list of transformer layers (the longest ModuleList)."""
    lists = [m for m in backbone.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ValueError(f"cannot find the transformer layers of {type(backbone).__name__}")
    return max(lists, key=len)


class RouterModel(PreTrainedModel):
    """The Model-SAT router (see module docstring). Loads with `RouterModel.from_pretrained(dir)` alone."""

    config_class = RouterConfig
    base_model_prefix = "router"
    _supports_sdpa = True

    def __init__(self, config: RouterConfig) -> None:
        super().__init__(config)
        bc = AutoConfig.for_model(**config.backbone_config)
        self.is_causal = config.backbone_type == "causal_lm"
        if self.is_causal:
            self.backbone = AutoModelForCausalLM.from_config(bc)
            out_dim = bc.hidden_size
        else:
            self.backbone = (
                AutoModel.from_config(bc, add_pooling_layer=False)
                if bc.model_type == "bert"
                else AutoModel.from_config(bc)
            )
            out_dim = config.router_hidden_size
            self.head = CapabilityAttentionHead(
                bc.hidden_size,
                config.task_embedding_dim,
                config.router_hidden_size,
                config.num_heads,
                config.dropout,
                residual_bound=config.residual_bound,
            )
        self.register_buffer("task_embeddings", torch.zeros(config.n_tasks, config.task_embedding_dim))
        self.register_buffer("task_mean", torch.zeros(config.n_tasks))
        self.register_buffer("task_std", torch.ones(config.n_tasks))
        self.connector = CapabilityConnector(config.task_embedding_dim, out_dim)
        self.post_init()
        self.freeze_backbone(config.trainable_backbone_layers)

    def _init_weights(self, module: nn.Module) -> None:
        # Our own layers keep PyTorch's default initialisation; backbone weights come from the checkpoint.
        return

    # ------------------------------------------------------------------------------------------- utilities
    def freeze_backbone(self, trainable_layers: int) -> None:
        """Freeze the backbone except its top `trainable_layers` transformer layers (0 = all frozen)."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        if trainable_layers > 0:
            for layer in list(_layer_stack(self.backbone))[-trainable_layers:]:
                for p in layer.parameters():
                    p.requires_grad_(True)

    @property
    def backbone_frozen(self) -> bool:
        return not any(p.requires_grad for p in self.backbone.parameters())

    def standardize(self, accuracies: torch.Tensor) -> torch.Tensor:
        """[m, T'] accuracies -> standardised with the frozen training-zoo statistics of the aptitude test."""
        return (accuracies - self.task_mean) / self.task_std

    # ------------------------------------------------------------------------------------------- encoding
    def encode_instructions(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> InstructionEncoding:
        """Encode a batch of instructions once (shared by every candidate model).

        Args:
            input_ids: [b, s] token ids (right-padded for `encoder`, left-padded for `causal_lm`).
            attention_mask: [b, s] 1 for tokens, 0 for padding.
        Returns:
            `InstructionEncoding` with `pooled` [b, d] (encoder) or the prefix keys/values (causal_lm).
        """
        if not self.is_causal:
            h = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return InstructionEncoding(pooled=mean_pool(h, attention_mask))
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
        out = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True
        )
        cache = out.past_key_values
        past = [(layer.keys, layer.values) for layer in cache.layers]
        return InstructionEncoding(past=past, attention_mask=attention_mask)

    def encode_profiles(self, accuracies: torch.Tensor) -> CapabilityEncoding:
        """Capability tokens of candidate models (paper Eq. 2, one token per aptitude task).

        Args:
            accuracies: [m, T'] per-task accuracies in [0, 1], tasks in the aptitude test's order.
        Returns:
            `CapabilityEncoding`: [m, T', h] capability tokens (h = router_hidden_size, or the LM width for
            causal_lm) and [m, T'] standardised accuracies; cache it.
        Raises:
            ValueError: if T' differs from the checkpoint's aptitude test.
        """
        if accuracies.shape[-1] != self.task_embeddings.shape[0]:
            raise ValueError(
                f"profiles have {accuracies.shape[-1]} tasks; this router's aptitude test has {self.task_embeddings.shape[0]}"
            )
        acc = accuracies.to(self.task_embeddings.dtype)
        z = self.standardize(acc)
        return CapabilityEncoding(
            tokens=self.connector(self.task_embeddings, acc, z), standardized=z, accuracies=acc
        )

    # ------------------------------------------------------------------------------------------- scoring
    def score(self, instructions: InstructionEncoding, capabilities: CapabilityEncoding) -> torch.Tensor:
        """Router scores for every (instruction, candidate model) pair (paper Eq. 4).

        Args:
            instructions: b encoded instructions (each encoded once, shared by all candidates).
            capabilities: m encoded profiles from `encode_profiles` (cached per model).
        Returns:
            [b, m] router scores (logits, unbounded); higher = more likely to answer correctly.

        Shapes: b = instructions, m = candidate models, T' = aptitude tasks, h = capability token width.
        """
        if not self.is_causal:
            return self.head.dense(self._pooled(instructions), capabilities, self.task_embeddings)
        b, m = len(instructions), len(capabilities)
        qi = torch.arange(b).repeat_interleave(m)
        mi = torch.arange(m).repeat(b)
        return self.score_pairs(instructions, capabilities, qi, mi).view(b, m)

    def _pooled(self, instructions: InstructionEncoding) -> torch.Tensor:
        """[b, d] pooled encodings on this model's device and dtype (bf16 under DeepSpeed on GPU)."""
        assert instructions.pooled is not None, "encoder backbone needs pooled instruction encodings"
        ref = self.task_embeddings
        return instructions.pooled.to(device=ref.device, dtype=ref.dtype)

    def score_pairs(
        self,
        instructions: InstructionEncoding,
        capabilities: CapabilityEncoding,
        qi: torch.Tensor,
        mi: torch.Tensor,
        task_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Router scores of selected pairs (training groups).

        Args:
            instructions: b encoded instructions.
            capabilities: m encoded profiles.
            qi, mi: [P] instruction and candidate index of each pair.
            task_mask: optional [m, T'] bool, False drops a task from that profile (augmentation).
        Returns:
            [P] router scores (logits).
        """
        if not self.is_causal:
            return self.head.pairs(
                self._pooled(instructions), capabilities, self.task_embeddings, qi, mi, task_mask
            )
        return self._causal_pairs(instructions, capabilities.tokens, qi, mi, task_mask)

    def _causal_pairs(
        self,
        instructions: InstructionEncoding,
        capabilities: torch.Tensor,
        qi: torch.Tensor,
        mi: torch.Tensor,
        task_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        cfg = self.config
        emb = self.backbone.get_input_embeddings()
        dev = capabilities.device
        pre = emb(torch.tensor(cfg.capability_prefix_token_ids, device=dev))  # [l1, H]
        inq = emb(torch.tensor(cfg.inquiry_token_ids, device=dev))  # [l2, H]
        caps = capabilities[mi]  # [P, T', H]
        p = caps.shape[0]
        suffix = torch.cat([pre.unsqueeze(0).expand(p, -1, -1), caps, inq.unsqueeze(0).expand(p, -1, -1)], 1)
        prefix_mask = instructions.attention_mask[qi]
        suffix_mask = torch.ones(p, suffix.shape[1], dtype=prefix_mask.dtype, device=dev)
        if task_mask is not None:
            t0 = pre.shape[0]
            suffix_mask[:, t0 : t0 + caps.shape[1]] = task_mask[mi].to(prefix_mask.dtype)
        cache = DynamicCache(
            ddp_cache_data=[(k[qi], v[qi]) for k, v in instructions.past], config=self.backbone.config
        )
        start = prefix_mask.sum(-1, keepdim=True)
        position_ids = start + suffix_mask.long().cumsum(-1) - 1
        out = self.backbone(
            inputs_embeds=suffix,
            attention_mask=torch.cat([prefix_mask, suffix_mask], -1),
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        last = out.logits[:, -1]
        return last[:, cfg.yes_token_id] - last[:, cfg.no_token_id]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        accuracies: torch.Tensor,
    ) -> torch.Tensor:
        """Convenience: encode instructions and profiles, return [b, m] router scores."""
        return self.score(
            self.encode_instructions(input_ids, attention_mask), self.encode_profiles(accuracies)
        )


def register_auto_classes() -> None:
    """Make `AutoConfig` / `AutoModel` resolve `model_type="modelsat_router"` (idempotent; called on load)."""
    from transformers import AutoConfig as _AutoConfig
    from transformers import AutoModel as _AutoModel

    try:
        _AutoConfig.register(RouterConfig.model_type, RouterConfig)
        _AutoModel.register(RouterConfig, RouterModel)
    except ValueError:
        pass  # already registered
