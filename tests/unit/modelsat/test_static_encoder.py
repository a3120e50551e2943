"""The static backbone (modelsat/router/static.py): model2vec's inference, distillation cache, a router on it."""

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from modelsat.errors import ConfigError
from modelsat.pipeline import train_pipeline
from modelsat.router import RouterCheckpoint, RouterSpec, SentenceEncoder
from modelsat.router.routing import Router
from modelsat.router.static import (
    fit_static_table,
    is_static_model_dir,
    load_static_encoder,
    static_encoder_dir,
)
from modelsat.runconfig import RunConfig
from tests.conftest import toy_run


@pytest.fixture(scope="module")
def static_dir(tiny_bert, tmp_path_factory):
    return static_encoder_dir(str(tiny_bert), 16, tmp_path_factory.mktemp("cache"))


def test_distillation_is_cached_and_reads_as_model2vec_does(static_dir, tiny_bert, monkeypatch):
    from model2vec import StaticModel

    assert is_static_model_dir(static_dir) and static_dir.parent.name == "static"
    import model2vec.distill

    import modelsat.router.static as static

    monkeypatch.setattr(static, "_distilled", {})  # a new process: only the disk cache knows the table
    monkeypatch.setattr(
        model2vec.distill, "distill_from_model", lambda *a, **k: pytest.fail("distilled twice")
    )
    assert static_encoder_dir(str(tiny_bert), 16, static_dir.parent.parent) == static_dir
    texts = ["What is the derivative of x squared?", "Which court hears appeals? " * 80]
    ours = SentenceEncoder(str(static_dir), 256, static_dims=16)(texts)
    ref = StaticModel.from_pretrained(str(static_dir)).encode(texts, max_length=256)
    assert ours.shape == (2, 16) and np.allclose(ours, ref, atol=1e-5)


def test_a_router_on_a_static_backbone_trains_saves_and_scores_the_same(static_dir, toy_data, tmp_path):
    raw = toy_run(toy_data, static_dir)
    raw["router"] |= {"backbone_type": "static", "static_dims": 16, "static_fit": "none"}
    ckpt, _ = train_pipeline(RunConfig.from_dict(raw), tmp_path / "ckpt")
    loaded = RouterCheckpoint.load(tmp_path / "ckpt")
    assert loaded.model.config.backbone_type == "static"
    texts = ["solve for x in 2x + 3 = 7", "name the capital of France"]
    assert np.allclose(Router(ckpt).scores(texts), Router(loaded).scores(texts), atol=1e-5)
    backbone, _ = load_static_encoder(static_dir)  # the checkpoint carries the table itself
    assert np.allclose(
        loaded.model.backbone.embeddings.weight.detach().numpy(),
        backbone.embeddings.weight.detach().numpy(),
        atol=1e-6,
    )


def test_a_static_backbone_reads_one_encoder_and_has_no_layers_to_train():
    with pytest.raises(ValidationError, match="capability_encoder='other' must equal backbone='m2v'"):
        RouterSpec(backbone_type="static", backbone="m2v", capability_encoder="other")
    with pytest.raises(ValidationError, match="trainable_backbone_layers=2: a static backbone has no layers"):
        RouterSpec(
            backbone_type="static", backbone="m2v", capability_encoder="m2v", trainable_backbone_layers=2
        )


def _sentences(n: int) -> list[str]:
    words = (
        "matrix court enzyme verdict integral protein appeal derivative cell statute vector tissue".split()
    )
    rng = np.random.default_rng(0)
    return [" ".join(rng.choice(words, size=int(rng.integers(3, 12)))) for _ in range(n)]


def test_the_linear_fit_recovers_a_linear_source_and_leaves_the_distilled_table_alone(static_dir):
    backbone, tokenizer = load_static_encoder(static_dir)
    before = backbone.embeddings.weight.detach().clone()
    texts = _sentences(200)
    plain = SentenceEncoder.static_backbone(backbone, tokenizer, "m2v", 256)(texts)  # [n, 16]
    y = plain @ np.random.default_rng(1).normal(size=(16, 24))
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    fitted, info = fit_static_table(backbone, tokenizer, texts, y, 256, ridge=1e-6)
    assert fitted.embeddings.weight.shape == (backbone.embeddings.num_embeddings, 24)
    assert info["mode"] == "linear" and info["texts"] == 200 and info["held_out_cosine"] > 0.99
    ours = SentenceEncoder.static_backbone(fitted, tokenizer, "fit", 256)(texts)
    assert np.mean(np.sum(ours * y, axis=1)) > 0.99  # the router reads normalise(x̄ W)
    noise = np.random.default_rng(2).normal(size=y.shape)  # no linear map of the table explains noise
    _, unrelated = fit_static_table(
        backbone, tokenizer, texts, noise / np.linalg.norm(noise, axis=1)[:, None], 256
    )
    assert unrelated["held_out_cosine"] < 0.5
    assert torch.equal(backbone.embeddings.weight, before)  # the input table is left as it was
    with pytest.raises(ValueError, match="10 texts and 200 targets"):
        fit_static_table(backbone, tokenizer, texts[:10], y, 256)


def test_a_router_with_a_fitted_table_records_the_fit_and_reads_what_it_was_trained_on(
    tiny_bert, toy_data, tmp_path, monkeypatch
):
    monkeypatch.setenv("MODELSAT_CACHE", str(tmp_path / "cache"))
    raw = toy_run(toy_data, tiny_bert)
    raw["router"] |= {"backbone_type": "static", "static_dims": 16, "static_fit": "linear"}
    ckpt, summary = train_pipeline(RunConfig.from_dict(raw), tmp_path / "ckpt")
    fit = summary["static_fit"]
    assert fit["mode"] == "linear" and fit["texts"] > 0 and -1 <= fit["held_out_cosine"] <= 1
    loaded = RouterCheckpoint.load(tmp_path / "ckpt")
    assert loaded.model.backbone.embeddings.weight.shape[1] == 64  # the source encoder's width, not 16
    texts = ["solve for x in 2x + 3 = 7", "name the capital of France"]
    assert np.allclose(Router(ckpt).scores(texts), Router(loaded).scores(texts), atol=1e-5)


def test_fitting_a_model2vec_directory_has_no_source_to_fit_to(static_dir, toy_data, tmp_path):
    raw = toy_run(toy_data, static_dir)
    raw["router"] |= {"backbone_type": "static", "static_fit": "linear"}
    with pytest.raises(ConfigError, match="allowed: static_fit none, or a sentence encoder"):
        train_pipeline(RunConfig.from_dict(raw), tmp_path / "ckpt")
    assert not (tmp_path / "ckpt").exists()
