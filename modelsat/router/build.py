"""Building a fresh router from a `RouterSpec`, sentence encoding, and instruction tokenization."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from modelsat.config import BaseConfig
from modelsat.encoding import resolve_pretrained
from modelsat.errors import ConfigError
from modelsat.router.configuration import RouterConfig
from modelsat.router.encodings import mean_pool
from modelsat.router.modeling import RouterModel
from modelsat.router.static import StaticEmbeddingBackbone, load_static_encoder, static_encoder_dir

__all__ = ["RouterSpec", "SentenceEncoder", "new_router", "tokenize_instructions"]

CAUSAL_TEMPLATE = "Test Sample: {instruction}\n"
CAPABILITY_PREFIX = "Model description:"


_ARCH = {n: p.default for n, p in inspect.signature(RouterConfig.__init__).parameters.items()}
"""`RouterConfig`'s defaults: the one place the architecture's defaults are written."""

ARCHITECTURE_FIELDS = (
    "backbone_type",
    "max_instruction_tokens",
    "router_hidden_size",
    "num_heads",
    "dropout",
    "residual_bound",
    "trainable_backbone_layers",
)
"""`RouterSpec` fields that `RouterConfig` takes under the same name (with the same defaults)."""


class RouterSpec(BaseConfig):
    """The `router:` section of a training config: which backbone and how large the head is.

    It validates what a run may ask for (ranges, offline weights); `new_router` turns it into the saved
    architecture `RouterConfig`, whose defaults these fields take (`ARCHITECTURE_FIELDS`).
    """

    backbone_type: Literal["encoder", "static", "causal_lm"] = Field(
        _ARCH["backbone_type"],
        description="encoder (a sentence encoder reads the instruction), static (a token-embedding table "
        "distilled from it: a lookup and a mean) or causal_lm (paper form, for GPU deployments)",
    )
    backbone: str = Field(
        _ARCH["backbone_name"],
        description="Backbone weights: a local directory or a hub id available offline; for static, a model2vec "
        "directory or the sentence encoder to distil (cached)",
    )
    static_dims: int = Field(
        256,
        ge=8,
        le=4096,
        description="static: width of the distilled token table (PCA components; at most the encoder's width)",
    )
    static_fit: Literal["none", "linear"] = Field(
        "linear",
        description="static: fit the distilled table to the sentence encoder's vectors of the router-training "
        "instructions (`modelsat.router.static.fit_static_table`, a ridge map folded into the table), or none "
        "(the plain distillation; required when `backbone` is a model2vec directory)",
    )
    capability_encoder: str = Field(
        _ARCH["backbone_name"],
        description="Sentence encoder ψ for task descriptions and aptitude items (local directory or offline hub "
        "id); for static, ψ is the static backbone itself and this must equal `backbone`",
    )
    max_instruction_tokens: int = Field(
        _ARCH["max_instruction_tokens"],
        ge=8,
        le=32768,
        description="Instructions are truncated to this many tokens",
    )
    router_hidden_size: int = Field(
        _ARCH["router_hidden_size"],
        ge=8,
        le=8192,
        description="Width of capability tokens and scoring head (encoder)",
    )
    num_heads: int = Field(
        _ARCH["num_heads"], ge=1, le=64, description="Heads of the instruction→task attention (encoder)"
    )
    dropout: float = Field(_ARCH["dropout"], ge=0, lt=1, description="Dropout in the scoring head")
    residual_bound: float | None = Field(
        _ARCH["residual_bound"],
        ge=0,
        description="Bound (logits) of the capability-token correction on the monotone IRT score; 0 = none, null = unbounded",
    )
    trainable_backbone_layers: int = Field(
        _ARCH["trainable_backbone_layers"],
        ge=0,
        le=1000,
        description="Top backbone layers fine-tuned (0 = frozen; encodings are then cached on disk)",
    )

    @model_validator(mode="after")
    def _static_reads_one_encoder(self) -> RouterSpec:
        if self.backbone_type == "static":
            if self.capability_encoder != self.backbone:
                raise ValueError(
                    f"backbone_type static reads instructions and aptitude items with one static encoder: "
                    f"capability_encoder={self.capability_encoder!r} must equal backbone={self.backbone!r}"
                )
            if self.trainable_backbone_layers:
                raise ValueError(
                    f"trainable_backbone_layers={self.trainable_backbone_layers}: a static backbone has no layers; "
                    "allowed: 0"
                )
        return self


class SentenceEncoder:
    """Mean-pooled, L2-normalised sentence embeddings (what sentence-transformers computes for MiniLM, or
    model2vec for a static table).

    Args:
        name_or_path: local directory or offline-available hub id (see `modelsat.encoding.resolve_pretrained`);
            with `static_dims`, a model2vec directory or the sentence encoder to distil
            (`modelsat.router.static.static_encoder_dir`).
        max_tokens: truncation length in tokens.
        static_dims: read with a static token table of this width instead of the transformer (None: the
            transformer).
    """

    def __init__(self, name_or_path: str, max_tokens: int = 256, static_dims: int | None = None) -> None:
        self.name = name_or_path
        self.max_tokens = max_tokens
        self.static = static_dims is not None
        if self.static:
            self.model, self.tokenizer = load_static_encoder(static_encoder_dir(name_or_path, static_dims))
        else:
            path = resolve_pretrained(name_or_path)
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).eval()

    @classmethod
    def static_backbone(
        cls, backbone: StaticEmbeddingBackbone, tokenizer: PreTrainedTokenizerBase, name: str, max_tokens: int
    ) -> SentenceEncoder:
        """ψ read from a router checkpoint's static backbone (the same table, no distillation)."""
        self = cls.__new__(cls)
        self.name, self.max_tokens, self.static = name, max_tokens, True
        self.model, self.tokenizer = backbone, tokenizer
        return self

    @classmethod
    def for_router(cls, spec: RouterSpec) -> SentenceEncoder:
        """ψ of a training run: the capability encoder, or for a static backbone that same static table."""
        dims = spec.static_dims if spec.backbone_type == "static" else None
        return cls(spec.capability_encoder, spec.max_instruction_tokens, dims)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> np.ndarray:
        """[n, d] float32 unit vectors."""
        t = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_tokens,
            return_tensors="pt",
            add_special_tokens=not self.static,
        )
        h = self.model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
        return mean_pool(h, t["attention_mask"]).numpy()


def tokenize_instructions(
    tokenizer: PreTrainedTokenizerBase, instructions: list[str], config: RouterConfig
) -> dict[str, torch.Tensor]:
    """Token ids of instructions as the router reads them.

    encoder: the instruction itself, right-padded. static: the same without special tokens (as model2vec reads
    it). causal_lm: `Test Sample: <instruction>\\n`, left-padded (so the per-candidate suffix follows directly).

    Returns:
        {"input_ids": [b, s], "attention_mask": [b, s]}.
    """
    if config.backbone_type == "causal_lm":
        texts = [CAUSAL_TEMPLATE.format(instruction=x) for x in instructions]
        tokenizer.padding_side = "left"
    else:
        texts = list(instructions)
        tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    t = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=config.max_instruction_tokens,
        return_tensors="pt",
        add_special_tokens=config.backbone_type != "static",
    )
    return {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}


def _answer_token(tokenizer: PreTrainedTokenizerBase, word: str) -> int:
    """Id of the token that starts the answer `word` after "Answer:" (" Yes" in most tokenizers).

    Prefers a single-token spelling (with, then without, a leading space); otherwise the first token of the
    bare word, which differs between "Yes" and "No" where a leading-space piece would not.
    """
    for text in (" " + word, word):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            return int(ids[0])
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ConfigError(f"the backbone tokenizer cannot encode {word!r}")
    return int(ids[0])


def new_router(
    spec: RouterSpec,
    task_embeddings: np.ndarray,
    task_mean: np.ndarray,
    task_std: np.ndarray,
    static_encoder: SentenceEncoder | None = None,
) -> tuple[RouterModel, PreTrainedTokenizerBase]:
    """A fresh router with pretrained backbone weights and the aptitude test's task embeddings.

    Args:
        spec: architecture choices.
        task_embeddings: [T', e] per-task [ψ(description) ; centroid of ψ(items)].
        task_mean, task_std: [T'] reference statistics of the aptitude test (training-zoo scale).
        static_encoder: static backbone: this table and tokenizer (ψ of the run, e.g. fitted by
            `fit_static_table`) instead of loading `spec.backbone`'s distillation.
    Returns:
        (model, tokenizer). The backbone is frozen except its top `trainable_backbone_layers`.
    Raises:
        ConfigError: if the backbone weights cannot be found offline or do not fit the backbone type.
    """
    if spec.backbone_type == "static" and static_encoder is not None:
        backbone, tokenizer = static_encoder.model, static_encoder.tokenizer
    elif spec.backbone_type == "static":
        backbone, tokenizer = load_static_encoder(static_encoder_dir(spec.backbone, spec.static_dims))
    else:
        path = resolve_pretrained(spec.backbone)
        tokenizer = AutoTokenizer.from_pretrained(path)
        loader: Callable = AutoModelForCausalLM if spec.backbone_type == "causal_lm" else AutoModel
        try:
            backbone = loader.from_pretrained(path)
        except (ValueError, OSError) as e:
            raise ConfigError(f"cannot load {spec.backbone!r} as a {spec.backbone_type} backbone: {e}") from e
    extra = {}
    if spec.backbone_type == "causal_lm":
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        extra = {
            "capability_prefix_token_ids": tokenizer(CAPABILITY_PREFIX, add_special_tokens=False)[
                "input_ids"
            ],
            "yes_token_id": _answer_token(tokenizer, "Yes"),
            "no_token_id": _answer_token(tokenizer, "No"),
        }
        if extra["yes_token_id"] == extra["no_token_id"]:
            raise ConfigError(
                f"the tokenizer of {spec.backbone!r} maps 'Yes' and 'No' to the same token; pick another backbone"
            )
    config = RouterConfig(
        **{name: getattr(spec, name) for name in ARCHITECTURE_FIELDS},
        backbone_config=backbone.config_dict()
        if isinstance(backbone, StaticEmbeddingBackbone)
        else backbone.config.to_dict(),
        backbone_name=spec.backbone,
        n_tasks=int(task_embeddings.shape[0]),
        task_embedding_dim=int(task_embeddings.shape[1]),
        **extra,
    )
    if spec.backbone_type == "causal_lm":
        config.inquiry_token_ids = tokenizer(
            "\n" + config.inquiry_prompt + " Answer:", add_special_tokens=False
        )["input_ids"]
    model = RouterModel(config)
    missing, unexpected = model.backbone.load_state_dict(backbone.state_dict(), strict=False)
    unexpected = [k for k in unexpected if not k.startswith("pooler.")]  # the unused BERT pooler is dropped
    if unexpected or [k for k in missing if "position_ids" not in k]:
        raise ConfigError(
            f"backbone weights of {spec.backbone!r} do not match: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    if spec.backbone_type == "causal_lm" and getattr(model.backbone.config, "tie_word_embeddings", False):
        model.backbone.tie_weights()
    with torch.no_grad():
        model.task_embeddings.copy_(torch.as_tensor(task_embeddings, dtype=torch.float32))
        model.task_mean.copy_(torch.as_tensor(task_mean, dtype=torch.float32))
        model.task_std.copy_(torch.as_tensor(task_std, dtype=torch.float32))
    model.freeze_backbone(spec.trainable_backbone_layers)
    model.eval()
    return model, tokenizer
