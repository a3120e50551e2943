"""A static-embedding instruction encoder: a token-embedding table, mean-pooled (no transformer pass).

The `static` backbone type reads an instruction as the mean of its tokens' vectors, L2-normalised: the
inference of a model2vec `StaticModel` (Tulkens & van Dongen, "Model2Vec", 2024; https://github.com/MinishLab/model2vec),
written as a torch module so it lives inside the router checkpoint like any backbone and the instruction
encoding is one table lookup ([b, s] ids → [b, s, d] → [b, d]). The table is distilled offline from a sentence
encoder (by default the local all-MiniLM-L6-v2) with `model2vec.distill.distill_from_model`: every vocabulary
token goes through the encoder once, the outputs are reduced by PCA and weighted by estimated token frequency
(SIF). Distillation runs once per (encoder weights, dimensions) and is cached under `$MODELSAT_CACHE/static/`.

A training run then fits the table to the sentence encoder's own vectors of its router-training instructions
(`fit_static_table`, `RouterSpec.static_fit: linear`): a ridge map from the table's mean to the encoder's
sentence vector, folded into the table, which makes the static vectors point where MiniLM's do.

`RouterSpec.backbone` with `backbone_type: static` names either a model2vec directory (`config.json` with
`"model_type": "model2vec"`; used as it is, `static_fit: none`) or a sentence encoder to distil;
`RouterSpec.static_dims` is the PCA width. Distillation needs the `model2vec` and `skeletoken` packages (locked);
loading a checkpoint needs neither (the fitted table is in it).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.modeling_outputs import BaseModelOutput

from modelsat.errors import ConfigError

__all__ = [
    "STATIC_MODEL_TYPE",
    "StaticEmbeddingBackbone",
    "fit_static_table",
    "is_static_model_dir",
    "load_static_encoder",
    "static_encoder_dir",
]

log = logging.getLogger("modelsat")

STATIC_MODEL_TYPE = "static_embedding"
"""`backbone_config["model_type"]` of a static backbone in a router checkpoint."""


class StaticEmbeddingBackbone(nn.Module):
    """Token-embedding table with the call signature of a transformers encoder.

    Args:
        vocab_size: rows of the table (the tokenizer's vocabulary).
        hidden_size: d, the vector width.

    `forward(input_ids [b, s], attention_mask [b, s])` returns `BaseModelOutput(last_hidden_state=[b, s, d])`:
    each token's vector. `modelsat.router.encodings.mean_pool` then gives model2vec's sentence vector (mean over
    the tokens, L2-normalised).
    """

    def __init__(self, vocab_size: int, hidden_size: int) -> None:
        super().__init__()
        self.config = PretrainedConfig(vocab_size=vocab_size, hidden_size=hidden_size)
        self.config.model_type = STATIC_MODEL_TYPE
        self.embeddings = nn.Embedding(vocab_size, hidden_size)

    def config_dict(self) -> dict[str, int | str]:
        """What a router checkpoint stores to rebuild this module (`RouterConfig.backbone_config`)."""
        return {
            "model_type": STATIC_MODEL_TYPE,
            "vocab_size": int(self.embeddings.num_embeddings),
            "hidden_size": int(self.embeddings.embedding_dim),
        }

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: object
    ) -> BaseModelOutput:
        return BaseModelOutput(last_hidden_state=self.embeddings(input_ids))


def is_static_model_dir(path: str | Path) -> bool:
    """Whether `path` is a model2vec directory (its `config.json` says `"model_type": "model2vec"`)."""
    cfg = Path(path).expanduser() / "config.json"
    try:
        return json.loads(cfg.read_text()).get("model_type") == "model2vec"
    except (OSError, ValueError, AttributeError):
        return False


def load_static_encoder(path: str | Path) -> tuple[StaticEmbeddingBackbone, PreTrainedTokenizerBase]:
    """Load a model2vec directory as (backbone, tokenizer).

    The tokenizer is the directory's `tokenizer.json`; instructions are tokenized without special tokens, as
    model2vec does.

    Raises:
        ConfigError: the directory is not a plain model2vec model (a vocabulary-quantized or token-weighted one
            has no single table) or cannot be read.
    """
    from model2vec import StaticModel

    try:
        m = StaticModel.from_pretrained(str(Path(path).expanduser()))
    except Exception as e:  # noqa: BLE001 - model2vec raises several kinds; the message names the path
        raise ConfigError(f"cannot load the static encoder {str(path)!r}: {e}") from e
    if m.token_mapping is not None or m.weights is not None:
        raise ConfigError(
            f"the static encoder {str(path)!r} is vocabulary-quantized (token mapping or weights); "
            "distil one without vocabulary_quantization"
        )
    table = np.asarray(m.embedding, dtype=np.float32)
    backbone = StaticEmbeddingBackbone(table.shape[0], table.shape[1])
    with torch.no_grad():
        backbone.embeddings.weight.copy_(torch.from_numpy(table))
    backbone.requires_grad_(False)  # an encoder; `RouterModel.freeze_backbone` decides what trains
    pad = m.tokenizer.padding["pad_token"] if m.tokenizer.padding else None
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=m.tokenizer, pad_token=pad or "[PAD]", unk_token="[UNK]"
    )
    tokenizer.model_max_length = 1_000_000  # truncation is the router's `max_instruction_tokens`
    backbone.eval()
    return backbone, tokenizer


_distilled: dict[tuple[str, int, Path | None], Path] = {}
"""(encoder, dims, cache root) → its distillation directory, found in this process."""


def static_encoder_dir(name_or_path: str, dims: int, cache_root: Path | None = None) -> Path:
    """The model2vec directory for `name_or_path`: itself if it is one, else its distillation (cached).

    Args:
        name_or_path: a model2vec directory, or a sentence encoder (local directory, MiniLM alias, or a hub id in
            the local cache; `modelsat.encoding.resolve_pretrained`) to distil.
        dims: PCA width of the distilled table (ignored for a model2vec directory).
        cache_root: cache root (default `modelsat.paths.cache_dir()`).
    Returns:
        The directory, under `cache_root/static/<fingerprint>-d<dims>/` when distilled.
    Raises:
        ConfigError: no offline copy of the encoder, or model2vec is not installed.
    """
    if is_static_model_dir(name_or_path):
        return Path(name_or_path).expanduser()
    known = _distilled.get((name_or_path, dims, cache_root))
    if known is not None and is_static_model_dir(known):
        return known  # a training run asks twice (ψ and the backbone): fingerprint the encoder once
    from transformers import AutoModel, AutoTokenizer

    from modelsat.encoding import encoder_key, resolve_pretrained
    from modelsat.paths import atomic_output_dir, cache_dir

    src = resolve_pretrained(name_or_path)
    encoder = AutoModel.from_pretrained(src).eval()
    out = (cache_root or cache_dir()) / "static" / f"{encoder_key(encoder, 0)}-d{dims}"
    _distilled[(name_or_path, dims, cache_root)] = out
    if is_static_model_dir(out):
        return out
    try:
        from model2vec.distill import distill_from_model
    except ImportError as e:
        raise ConfigError(
            "backbone_type static distils with model2vec; install the locked set (bash scripts/setup.sh) "
            f"or give a model2vec directory as router.backbone ({e})"
        ) from e
    log.info("distilling a static encoder from %s (%d dims) into %s", name_or_path, dims, out)
    tokenizer = AutoTokenizer.from_pretrained(src)
    with torch.no_grad():
        static = distill_from_model(encoder, tokenizer, device="cpu", pca_dims=dims, quantize_to="float32")
    with atomic_output_dir(out) as tmp:
        static.save_pretrained(str(tmp))
    return out


def fit_static_table(
    backbone: StaticEmbeddingBackbone,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    targets: np.ndarray,
    max_tokens: int,
    seed: int = 0,
    ridge: float = 1e-2,
) -> tuple[StaticEmbeddingBackbone, dict[str, float | int | str]]:
    """Fit a distilled token table to the source encoder's sentence vectors of `texts` (linear map).

    Distillation (`static_encoder_dir`) embeds each vocabulary token alone, so the table knows nothing of how
    the source encoder reads whole instructions. With E the [V, d] table, x̄ the L2-normalised mean of an
    instruction's token rows and y the source encoder's unit vector of it, ridge regression
    W = argmin ‖X W − Y‖² + α‖W‖² (α = `ridge` · n / d) is folded into the table, E ← E W ([V, D], D = the
    source's width); mean pooling is linear, so the router then reads normalise(x̄ W), which points where y
    does. The sentence-level step of tokenlearn (https://github.com/MinishLab/tokenlearn) with a linear student;
    tuning every row of E as well (tokenlearn's full fit) came closer to the source's vectors but routed worse
    on our validation zoo (README, "Static backbone").

    Args:
        backbone, tokenizer: the distilled table and its tokenizer (`load_static_encoder`).
        texts: n instructions (the router-training pool only; never validation or held-out questions).
        targets: [n, D] the source encoder's unit vectors of `texts`.
        max_tokens: truncation length in tokens (the router's `max_instruction_tokens`).
        seed: which 10 % of the texts are held out to measure the fit (the table is then refitted on all).
        ridge: α relative to n / d.
    Returns:
        (the fitted backbone, a [V, D] table; {"mode": "linear", "texts": n, "held_out_cosine": mean cosine to
        the targets of a map fitted on 90 % of the texts, on the other 10 %}).
    Raises:
        ValueError: texts and targets of different lengths, or fewer than 20 texts.
    """
    import torch.nn.functional as F

    if len(texts) != len(targets) or len(texts) < 20:
        raise ValueError(f"{len(texts)} texts and {len(targets)} targets; need the same number, at least 20")
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_tokens)[
        "input_ids"
    ]
    unk = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else 0
    ids = [s if s else [unk] for s in ids]
    order = np.random.default_rng(seed).permutation(len(ids))
    n_held = max(2, len(ids) // 10)
    held, fit = order[:n_held], order[n_held:]
    table = backbone.embeddings.weight.detach().to(torch.float64)
    y = torch.as_tensor(np.asarray(targets), dtype=torch.float64)

    def pooled(weight: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        flat = torch.tensor([t for r in rows for t in ids[r]])
        offsets = torch.tensor(np.cumsum([0] + [len(ids[r]) for r in rows[:-1]]))
        return F.normalize(F.embedding_bag(flat, weight, offsets, mode="mean"), dim=-1)

    def solve(rows: np.ndarray) -> torch.Tensor:
        x = pooled(table, rows)
        d = x.shape[1]
        return torch.linalg.solve(
            x.T @ x + ridge * len(rows) / d * torch.eye(d, dtype=x.dtype), x.T @ y[rows]
        )

    held_cosine = float((pooled(table @ solve(fit), held) * y[held]).sum(-1).mean())
    weight = (table @ solve(order)).to(torch.float32)  # then refitted on every text
    fitted = StaticEmbeddingBackbone(weight.shape[0], weight.shape[1])
    with torch.no_grad():
        fitted.embeddings.weight.copy_(weight)
    fitted.requires_grad_(False)
    fitted.eval()
    return fitted, {"mode": "linear", "texts": len(ids), "held_out_cosine": round(held_cosine, 4)}
