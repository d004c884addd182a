"""Real-CLIP backend through open_clip: interface with random weights, local weight files, cache lookup."""

from __future__ import annotations

import pytest
import torch

from pada.errors import BadImageError, MissingWeightsError, PadaError
from pada.vl import load_vl
from pada.vl.base import VisionLanguageModel, resize_for_encoder
from pada.vl.openclip import OpenCLIP, find_cached_weights, read_state_dict


@pytest.fixture(autouse=True)
def _empty_home(tmp_path, monkeypatch):
    """No user caches: HOME, HF and pada weight folders point at an empty temporary folder."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("PADA_WEIGHTS_DIR", "HF_HUB_CACHE", "HF_HOME", "OPENCLIP_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="module")
def vitb32():
    return load_vl("openclip:ViT-B-32:random")


@pytest.mark.slow
def test_vitb32_interface_shapes_norms_frozen(vitb32):
    m = vitb32
    assert isinstance(m, VisionLanguageModel) and m.dim == 512 and m.name == "openclip:ViT-B-32"
    assert m.image_size == 224 and m.mean[0] == pytest.approx(0.48145466)
    assert not any(p.requires_grad for p in m.parameters())
    m.train()
    assert not m.training  # frozen backbones stay in eval mode
    g = torch.Generator().manual_seed(0)
    e = m.encode_image(torch.rand(2, 3, 64, 64, generator=g) * 2 - 1)
    assert e.shape == (2, 512)
    assert torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    t = m.encode_text(["man's face in his forties", "a toddler girl's face", "x"])
    assert t.shape == (3, 512) and torch.allclose(t.norm(dim=1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(t[0], t[1])
    assert m.encode_text("one string").shape == (1, 512)


@pytest.mark.slow
def test_vitb32_real_tokenizer(vitb32):
    tokens = vitb32.tokenizer(["a face"])
    assert tokens.shape == (1, 77)
    assert tokens[0, 0].item() == 49406  # <start_of_text> of CLIP's BPE vocabulary (ships in the wheel)
    assert (tokens[0] == 49407).any()  # <end_of_text>


@pytest.mark.slow
def test_vitb32_gradient_reaches_pixels(vitb32):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(2, 3, 64, 64, generator=g) * 2 - 1).requires_grad_()
    t = vitb32.encode_text(["old", "young"])
    # CLIP directional loss shape: 1 - cos(E_I(x_tar) - E_I(x_src), E_T(t_tar) - E_T(t_src))
    e = vitb32.encode_image(x)
    loss = 1 - torch.cosine_similarity((e[1] - e[0])[None], (t[1] - t[0])[None]).squeeze()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.slow
def test_bad_images_rejected(vitb32):
    with pytest.raises(BadImageError):
        vitb32.encode_image(torch.zeros(3, 64, 64))
    with pytest.raises(BadImageError):
        vitb32.encode_image(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError):
        vitb32.encode_text([])


def test_resize_for_encoder_matches_manual_normalisation():
    x = torch.rand(1, 3, 224, 224) * 2 - 1
    y = resize_for_encoder(x, 224, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert torch.allclose(y, ((x + 1) / 2 - 0.5) / 0.25, atol=1e-6)
    z = resize_for_encoder(torch.zeros(2, 3, 256, 200), 224, (0, 0, 0), (1, 1, 1))
    assert z.shape == (2, 3, 224, 224) and torch.allclose(z, torch.full_like(z, 0.5), atol=1e-5)


def test_missing_default_weights_one_line_how_to_get():
    with pytest.raises(MissingWeightsError) as info:
        load_vl("openclip:ViT-B-32")
    msg = str(info.value)
    assert "\n" not in msg and "~/.cache/pada/ViT-B-32.pt" in msg and "PADA_WEIGHTS_DIR" in msg


def test_missing_explicit_file(tmp_path):
    with pytest.raises(MissingWeightsError, match="nope.pt"):
        OpenCLIP("ViT-B-32", path=tmp_path / "nope.pt")


def test_unknown_names():
    with pytest.raises(PadaError, match="unknown open_clip architecture"):
        load_vl("openclip:NoSuchNet-1")
    with pytest.raises(PadaError, match="unknown vision-language model"):
        load_vl("clip-large")


@pytest.mark.slow
def test_any_architecture_and_local_weight_file_roundtrip(tmp_path):
    from safetensors.torch import save_file

    src = load_vl("openclip:ViT-S-32:random")
    assert src.dim == src.model.text_projection.shape[1]
    sd = {k: v.contiguous() for k, v in src.model.state_dict().items()}
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "w.pt")
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    ref_i, ref_t = src.encode_image(x), src.encode_text(["an old man"])
    for f in ("w.safetensors", "w.pt"):
        m = load_vl("openclip:ViT-S-32:random", path=tmp_path / f)
        assert m.weight_file == tmp_path / f
        assert torch.allclose(m.encode_image(x), ref_i, atol=1e-5)
        assert torch.allclose(m.encode_text(["an old man"]), ref_t, atol=1e-5)
    # a checkpoint of another architecture: one clear line
    bad = {k: v for k, v in list(sd.items())[:-3]}
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(PadaError, match="do not fit"):
        load_vl("openclip:ViT-S-32:random", path=tmp_path / "bad.safetensors")


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_read_state_dict_torchscript_archive(tmp_path):
    lin = torch.nn.Linear(3, 2)
    torch.jit.save(torch.jit.script(lin), str(tmp_path / "jit.pt"))
    sd = read_state_dict(tmp_path / "jit.pt")
    assert set(sd) == {"weight", "bias"} and torch.equal(sd["weight"], lin.weight.detach())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PadaError, match="junk.pt"):
        read_state_dict(tmp_path / "junk.pt")


def test_finds_weights_in_hf_and_openclip_caches(_empty_home, monkeypatch):
    # Hugging Face hub cache layout: models--<org>--<name>/{refs/main, snapshots/<rev>/<file>}
    repo = _empty_home / ".cache" / "huggingface" / "hub" / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    snap = repo / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"x")
    assert find_cached_weights("ViT-B-32", "laion2b_s34b_b79k") == snap / "open_clip_model.safetensors"
    assert find_cached_weights("ViT-B-32", "laion400m_e31") is None
    # open_clip's URL cache for OpenAI weights is sha256-checked against the registry entry
    clip_cache = _empty_home / ".cache" / "clip"
    clip_cache.mkdir(parents=True)
    (clip_cache / "ViT-B-32.pt").write_bytes(b"not the real file")
    with pytest.raises(PadaError, match="sha256"):
        find_cached_weights("ViT-B-32", "openai")
