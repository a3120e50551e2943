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
- **static backbone** (`modelsat.router.static`): the encoder form with a token-embedding table distilled from
  the sentence encoder in place of the transformer, so encoding an instruction is a table lookup and a mean.
- **causal_lm backbone** (the paper's form): the LM reads `Test Sample: <instruction>` first, so its keys and
  values are computed once per instruction and reused for every candidate; per candidate it reads only
  `Model description: <T' capability tokens>` and the inquiry prompt, and the score is
  logit("Yes") − logit("No") at the last position. Instruction-first is our change of the paper's order, made
  for this prefix sharing.

Scores are unbounded real numbers (logits); higher = more likely correct. `RouterConfig.score_scale/bias`
calibrate them to probabilities (Platt scaling on the validation split, `modelsat.router.calibration`).

This module holds the model class and its registration with transformers' Auto classes; the connector and
the capability-attention head are in `modelsat.router.capability`, the encodings it returns and the mean
pooling in `modelsat.router.encodings`.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, DynamicCache, PreTrainedModel

from modelsat.router.capability import CapabilityAttentionHead, CapabilityConnector
from modelsat.router.configuration import RouterConfig
from modelsat.router.encodings import CapabilityEncoding, InstructionEncoding, mean_pool
from modelsat.router.prior import profile_prior, with_prior
from modelsat.router.static import StaticEmbeddingBackbone

__all__ = ["RouterModel", "register_auto_classes"]


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
        self.is_causal = config.backbone_type == "causal_lm"
        if config.backbone_type == "static":
            self.backbone = StaticEmbeddingBackbone(
                int(config.backbone_config["vocab_size"]), int(config.backbone_config["hidden_size"])
            )
            out_dim = config.router_hidden_size
            self.head = self._encoder_head(config, self.backbone.config.hidden_size)
        elif self.is_causal:
            bc = AutoConfig.for_model(**config.backbone_config)
            self.backbone = AutoModelForCausalLM.from_config(bc)
            out_dim = bc.hidden_size
        else:
            bc = AutoConfig.for_model(**config.backbone_config)
            self.backbone = (
                AutoModel.from_config(bc, add_pooling_layer=False)
                if bc.model_type == "bert"
                else AutoModel.from_config(bc)
            )
            out_dim = config.router_hidden_size
            self.head = self._encoder_head(config, bc.hidden_size)
        self.register_buffer("task_embeddings", torch.zeros(config.n_tasks, config.task_embedding_dim))
        self.register_buffer("task_mean", torch.zeros(config.n_tasks))
        self.register_buffer("task_std", torch.ones(config.n_tasks))
        self.connector = CapabilityConnector(config.task_embedding_dim, out_dim)
        self.post_init()
        self.freeze_backbone(config.trainable_backbone_layers)

    @staticmethod
    def _encoder_head(config: RouterConfig, backbone_width: int) -> CapabilityAttentionHead:
        return CapabilityAttentionHead(
            backbone_width,
            config.task_embedding_dim,
            config.router_hidden_size,
            config.num_heads,
            config.dropout,
            residual_bound=config.residual_bound,
        )

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
            pooled = self._pooled(instructions)
            scores = self.head.dense(pooled, capabilities, self.task_embeddings)
            if self.config.prior_weight > 0:
                scores = with_prior(
                    scores, self.profile_prior(pooled, capabilities), self.config.prior_weight
                )
            return scores
        b, m = len(instructions), len(capabilities)
        qi = torch.arange(b).repeat_interleave(m)
        mi = torch.arange(m).repeat(b)
        return self.score_pairs(instructions, capabilities, qi, mi).view(b, m)

    def profile_prior(
        self, pooled: torch.Tensor, capabilities: CapabilityEncoding, temperature: float | None = None
    ) -> torch.Tensor:
        """[b, m] profile prior (`modelsat.router.prior.profile_prior`) of b pooled instructions ψ(x) for m
        candidates, over the aptitude tasks' item centroids (the second half of `task_embeddings`).

        Args:
            temperature: τ; default `config.prior_temperature`.
        """
        centroids = self.task_embeddings[:, self.task_embeddings.shape[1] // 2 :]
        tau = self.config.prior_temperature if temperature is None else temperature
        acc = (
            capabilities.accuracies
            if capabilities.prior_accuracies is None
            else capabilities.prior_accuracies
        )
        return profile_prior(pooled, centroids, acc.to(pooled.device), tau)

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
