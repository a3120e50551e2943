"""The Ray Data featurizer of distributed training (jobs/data.py) with a static backbone."""

import numpy as np
import pytest

from modelsat.router import SentenceEncoder
from modelsat.router.static import fit_static_table, load_static_encoder, static_encoder_dir

pytest.importorskip("ray")


def _sentences(n: int) -> list[str]:
    words = (
        "matrix court enzyme verdict integral protein appeal derivative cell statute vector tissue".split()
    )
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(n)]


@pytest.fixture(scope="module")
def static_dir(tiny_bert, tmp_path_factory):
    return static_encoder_dir(str(tiny_bert), 16, tmp_path_factory.mktemp("cache"))


def test_the_distributed_featurizer_reads_the_runs_own_static_table(static_dir, tmp_path, monkeypatch):
    """Ray Data workers get the (fitted) table itself; they neither distil nor fit one of their own."""
    from jobs.data import InstructionFeaturizer

    monkeypatch.setenv("MODELSAT_CACHE", str(tmp_path / "cache"))
    backbone, tokenizer = load_static_encoder(static_dir)
    texts = _sentences(40)
    y = np.random.default_rng(3).normal(size=(40, 8))
    fitted, _ = fit_static_table(
        backbone, tokenizer, texts, y / np.linalg.norm(y, axis=1, keepdims=True), 256
    )
    psi = SentenceEncoder.static_backbone(fitted, tokenizer, "fit", 256)
    feats = InstructionFeaturizer({}, "embedding", "not-a-model", {}, 256, static_encoder=psi)
    assert np.allclose(feats.featurize(texts[:5])["features"], psi(texts[:5]), atol=1e-6)
