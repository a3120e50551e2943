"""`RouterConfig`: the router architecture, saved as `config.json` next to the weights (STYLE.md §3)."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

__all__ = ["BACKBONE_TYPES", "DEFAULT_INQUIRY", "PRIOR_SOURCES", "ROUTER_FORMAT", "RouterConfig"]

ROUTER_FORMAT = 1
"""Version of the checkpoint layout; a checkpoint with another value is refused with a clear error."""

BACKBONE_TYPES = ("encoder", "static", "causal_lm")

PRIOR_SOURCES = ("profile", "pool")
"""What the profile prior reads per task (`RouterConfig.prior_source`)."""

DEFAULT_INQUIRY = (
    "Based on the model description and the test sample, predict whether the model can handle test sample "
    "by indicating 'Yes' or 'No'."
)
"""Inquiry prompt of the authors' released script (PAPER.md, "Router")."""


class RouterConfig(PretrainedConfig):
    """Architecture of a Model-SAT router (paper §3, Eq. 2–4).

    Args:
        backbone_type: `encoder` (a sentence encoder reads the instruction once; a capability-attention head
            scores every candidate) or `causal_lm` (the paper's form: a causal LM reads instruction, capability
            tokens and the inquiry prompt, and the score is the logit of "Yes" against "No"), or `static` (the
            `encoder` form with a static token-embedding table instead of a transformer,
            `modelsat.router.static`).
        backbone_config: the backbone's Hugging Face config as a dict (its weights live in this checkpoint).
        backbone_name: where the initial backbone weights came from (provenance only).
        max_instruction_tokens: instructions are truncated to this many tokens, >= 8.
        n_tasks: T', tasks of the frozen aptitude test (rows of the task-embedding buffer), >= 1.
        task_embedding_dim: width of a task embedding (description ‖ item centroid), >= 1.
        router_hidden_size: width of capability tokens and of the scoring head, divisible by `num_heads`.
        num_heads: heads of the instruction→task attention.
        dropout: dropout in the scoring head, in [0, 1).
        residual_bound: c, the bound in logits of the capability-token correction added to the monotone
            IRT-style score (encoder; see `CapabilityAttentionHead`); 0 = none, None = unbounded.
        trainable_backbone_layers: top backbone layers that are fine-tuned (0 = frozen backbone, whose
            instruction encodings can be cached on disk).
        inquiry_prompt: the inquiry prompt (causal_lm); the score is logit("Yes") - logit("No") of the
            tokenizer's ids for those words (`yes_token_id`, `no_token_id`, set when the router is built).
        Checkpoints written before `pooling`, `yes_token` and `no_token` were dropped (they were validated but
        never read) still load: the keys become plain attributes.
        score_scale, score_bias: Platt calibration p(correct) = sigmoid(scale·score + bias), fitted on the
            validation split after training.
        prior_weight, prior_temperature: β >= 0 and τ > 0 of the profile prior added to encoder scores
            (`modelsat.router.prior`), fitted on the validation split after training; β = 0 (the default, and
            every checkpoint from before the prior) leaves scores unchanged.
        prior_source: what the prior reads per task: `profile` (every candidate's profile accuracies) or
            `pool` (training models' training-pool accuracies, newcomers' profiles linked to that scale:
            `TaskAccuracies` in `training.json`); chosen on validation with β and τ.
        defer_margin: δ >= 0 of the anchor-and-defer rule (`modelsat.router.decision`), in probability units:
            another candidate is chosen over the best one by profile only if its calibrated p(correct) is
            higher by more than δ; fitted on the validation split after calibration. 0 (the default, and every
            checkpoint from before the rule) is the plain argmax.
        modelsat_format: checkpoint layout version (`ROUTER_FORMAT`).
    """

    model_type = "modelsat_router"

    def __init__(
        self,
        backbone_type: str = "encoder",
        backbone_config: dict[str, Any] | None = None,
        backbone_name: str = "sentence-transformers/all-MiniLM-L6-v2",
        max_instruction_tokens: int = 256,
        n_tasks: int = 1,
        task_embedding_dim: int = 768,
        router_hidden_size: int = 128,
        num_heads: int = 4,
        dropout: float = 0.1,
        residual_bound: float | None = 0.5,
        trainable_backbone_layers: int = 0,
        inquiry_prompt: str = DEFAULT_INQUIRY,
        score_scale: float = 1.0,
        score_bias: float = 0.0,
        prior_weight: float = 0.0,
        prior_temperature: float = 0.05,
        prior_source: str = "profile",
        defer_margin: float = 0.0,
        modelsat_format: int = ROUTER_FORMAT,
        **kwargs: Any,
    ) -> None:
        if backbone_type not in BACKBONE_TYPES:
            raise ValueError(f"backbone_type={backbone_type!r}; allowed: {', '.join(BACKBONE_TYPES)}")
        if router_hidden_size % num_heads:
            raise ValueError(
                f"router_hidden_size={router_hidden_size} is not divisible by num_heads={num_heads}"
            )
        self.backbone_type = backbone_type
        self.backbone_config = backbone_config or {}
        self.backbone_name = backbone_name
        self.max_instruction_tokens = max_instruction_tokens
        self.n_tasks = n_tasks
        self.task_embedding_dim = task_embedding_dim
        self.router_hidden_size = router_hidden_size
        self.num_heads = num_heads
        self.dropout = dropout
        self.residual_bound = residual_bound
        self.trainable_backbone_layers = trainable_backbone_layers
        self.inquiry_prompt = inquiry_prompt
        self.score_scale = score_scale
        self.score_bias = score_bias
        if prior_weight < 0 or prior_temperature <= 0:
            raise ValueError(
                f"prior_weight={prior_weight}, prior_temperature={prior_temperature}; need weight >= 0, temperature > 0"
            )
        self.prior_weight = prior_weight
        self.prior_temperature = prior_temperature
        if prior_source not in PRIOR_SOURCES:
            raise ValueError(f"prior_source={prior_source!r}; allowed: {', '.join(PRIOR_SOURCES)}")
        self.prior_source = prior_source
        if not (defer_margin >= 0 and defer_margin < float("inf")):
            raise ValueError(f"defer_margin={defer_margin!r}; allowed: a finite number >= 0")
        self.defer_margin = defer_margin
        self.modelsat_format = modelsat_format
        super().__init__(**kwargs)
