"""The static backbone (modelsat/router/static.py): model2vec's inference, distillation cache, a router on it."""

import numpy as np
import pytest
from pydantic import ValidationError

from modelsat.pipeline import train_pipeline
from modelsat.router import RouterCheckpoint, RouterSpec, SentenceEncoder
from modelsat.router.routing import Router
from modelsat.router.static import is_static_model_dir, load_static_encoder, static_encoder_dir
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
    raw["router"] |= {"backbone_type": "static", "static_dims": 16}
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
