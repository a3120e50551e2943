"""The on-disk encoding cache (`modelsat.encoding`): a second run encodes nothing it encoded before."""

from __future__ import annotations

import os

import numpy as np

from modelsat.pipeline import sentence_encodings
from modelsat.progress import NullProgress
from modelsat.router.build import SentenceEncoder


class _Counting:
    """A `SentenceEncoder` that counts the texts it encodes."""

    def __init__(self, inner: SentenceEncoder) -> None:
        self.inner, self.model, self.max_tokens, self.seen = inner, inner.model, inner.max_tokens, []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.seen.extend(texts)
        return self.inner(texts)


def test_a_second_run_reads_every_encoding_from_this_tests_cache(tiny_bert, _isolated_cache):
    texts = ["Which organelle makes ATP?", "What is 2 + 2?", "Which organelle makes ATP?", "Name a prime."]
    assert not _isolated_cache.exists()  # each test starts from an empty cache
    assert os.environ["MODELSAT_CACHE"] == str(_isolated_cache)
    first = _Counting(SentenceEncoder(str(tiny_bert), 32))
    a = sentence_encodings(first, texts, NullProgress(), "test")
    assert sorted(first.seen) == sorted(set(texts))  # each distinct text once
    assert list(_isolated_cache.rglob("shard-*.npz"))

    second = _Counting(SentenceEncoder(str(tiny_bert), 32))  # a new process: a new index read from disk
    b = sentence_encodings(second, texts + ["A new one."], NullProgress(), "test")
    assert second.seen == ["A new one."]
    np.testing.assert_allclose(b[: len(texts)], a, rtol=1e-6, atol=1e-6)

    other = _Counting(SentenceEncoder(str(tiny_bert), 8))  # another truncation length: another cache key
    sentence_encodings(other, texts, NullProgress(), "test")
    assert sorted(other.seen) == sorted(set(texts))
