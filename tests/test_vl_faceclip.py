"""FaceCLIP backend: interface, gradients, weight files, and the committed weights."""

from __future__ import annotations

import json

import pytest
import torch

from pada.data.groups import DESCRIPTIONS
from pada.errors import CheckpointError, MissingWeightsError
from pada.vl import load_vl
from pada.vl.base import VisionLanguageModel
from pada.vl.faceclip import (
    CriticFeatureBlocks,
    FaceCLIP,
    FaceCLIPConfig,
    FaceCLIPHeads,
    load_heads,
    save_heads,
)


@pytest.fixture(scope="module")
def random_faceclip():
    torch.manual_seed(0)
    return FaceCLIP(FaceCLIPHeads(FaceCLIPConfig()))


def test_interface_shapes_norms_frozen(random_faceclip):
    m = random_faceclip
    assert isinstance(m, VisionLanguageModel) and m.dim == 512 and m.name == "faceclip"
    assert not any(p.requires_grad for p in m.parameters())
    m.train()
    assert not m.training
    g = torch.Generator().manual_seed(0)
    for size in (64, 256):
        e = m.encode_image(torch.rand(3, 3, size, size, generator=g) * 2 - 1)
        assert e.shape == (3, 512) and torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    t = m.encode_text(list(DESCRIPTIONS))
    assert t.shape == (14, 512) and torch.allclose(t.norm(dim=1), torch.ones(14), atol=1e-5)
    assert torch.allclose(m.encode_text(["a teenage girl"]), m.encode_text("a teenage girl"))


def test_gradient_reaches_pixels_through_critics(random_faceclip):
    x = (torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_()
    t = random_faceclip.encode_text(["man's face in his forties", "man's face in his sixties"])
    e = random_faceclip.encode_image(x)
    loss = 1 - torch.cosine_similarity((e[1] - e[0])[None], (t[1] - t[0])[None]).squeeze()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_heads_roundtrip_and_bad_files(tmp_path):
    torch.manual_seed(1)
    heads = FaceCLIPHeads(FaceCLIPConfig(dim=32, text_hidden=16, image_hidden=16))
    path = save_heads(heads, tmp_path / "h.safetensors", extra={"recipe": "{}"})
    back, meta = load_heads(path)
    assert back.cfg == heads.cfg and meta["recipe"] == "{}"
    for k, v in heads.state_dict().items():
        assert torch.equal(v, back.state_dict()[k])
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a FaceCLIP weight file"):
        load_heads(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        load_heads(tmp_path / "junk.safetensors")
    with pytest.raises(MissingWeightsError, match="nothing.safetensors"):
        load_vl("faceclip", path=tmp_path / "nothing.safetensors")


def test_raw_baseline_config_uses_minilm_space():
    cfg = FaceCLIPConfig(text_projection="none")
    assert cfg.dim == 384
    heads = FaceCLIPHeads(cfg)
    u = torch.nn.functional.normalize(torch.randn(2, 384), dim=1)
    assert torch.allclose(heads.embed_text(u), u)


def test_training_features_match_inference_path(random_faceclip, tmp_path):
    """Cached features used in training = the features encode_image computes from the same file."""
    import numpy as np
    from PIL import Image

    from pada.vl.train_faceclip import _load_image, compute_features

    arr = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    feats = compute_features([tmp_path / "a.png"], random_faceclip.features, log=lambda s: None)
    x = _load_image(tmp_path / "a.png")[None]
    with torch.no_grad():
        assert torch.allclose(feats[0, 0], random_faceclip.features(x)[0], atol=1e-4)
        assert torch.allclose(feats[0, 1], random_faceclip.features(x.flip(-1))[0], atol=1e-4)
        e = random_faceclip.heads.embed_features(feats[:, 0])
        assert torch.allclose(e, random_faceclip.encode_image(x), atol=1e-4)


def test_critic_features_blocks():
    f = CriticFeatureBlocks(("age_logits", "gender_logodds"))
    assert f.dim == 82 and set(f.critics) == {"dlib_age", "dlib_gender"}
    assert f(torch.zeros(1, 3, 64, 64)).shape == (1, 82)


# ------------------------------------------------------------------------------------------------------
# the committed weights
# ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def committed():
    return load_vl("faceclip")


def test_committed_weights_registry_and_recipe():
    from pada import weights

    entry = weights.get("faceclip")
    path = weights.resolve("faceclip")  # sha256-checked
    assert path.stat().st_size < 8 * 2**20
    for key in ("command", "data_sha256", "seed", "steps", "final_losses", "eval"):
        assert key in entry.recipe, key
    _, meta = load_heads(path)
    assert json.loads(meta["recipe"])["data_sha256"] == entry.recipe["data_sha256"]


def test_committed_text_age_axis_is_ordered(committed):
    """Age read-out of the 14 descriptions rises with the group, toddlers included (text-only anchoring)."""
    with torch.no_grad():
        ages = committed.predict_age(committed.encode_text(list(DESCRIPTIONS)))
    for gender in (0, 1):
        seq = ages[gender::2].tolist()
        assert all(a < b for a, b in zip(seq, seq[1:])), seq
    assert ages[0] < 10 and ages[1] < 10  # "a toddler girl's/boy's face" at the young end


def test_committed_open_world_phrases(committed):
    from pada.vl.evaluation import open_world

    with torch.no_grad():
        res = open_world(committed.encode_text)
    assert res["group_correct_frac"] >= 0.9, [r for r in res["phrases"] if not r["group_ok"]]
