"""Ageing-pattern draws (pada.aging.pattern): each PAE draw scales the part of its edit that changes the
hair, found through the DiffAE's eigenface coarse code; in the pipeline and ``pada age`` (tiny random
models)."""

from __future__ import annotations

import pytest
import torch

from pada.aging.config import PadaConfig
from pada.aging.pattern import apply_draw_pattern, hair_mask, hair_part, pattern_factors, pattern_value
from pada.aging.pipeline import AgingPipeline
from pada.aging.testing import TinyVL
from pada.diffae import DiffAE
from pada.errors import PadaError
from pada.networks.config import load_preset
from pada.networks.unet import DiffAEUNet
from test_aging_helpers import faces, one_thread, tiny_diffae, tiny_model

TEXT = "man's face in his eighties"
K = 8  # eigenface entries of the tiny DiffAE's 64-entry code


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def _eigen_diffae() -> DiffAE:
    torch.manual_seed(0)
    unet = DiffAEUNet(load_preset("tiny32").replace(coarse_size=8, coarse_pca=K))
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    unet.coarse.pca.fit(faces(40, seed=3), code_rms=0.1)
    return DiffAE(unet.eval())


def _coarse_change(diffae, d_code):
    pca = diffae.unet.coarse.pca
    return (d_code * pca.scale) @ pca.basis  # (N, 3·s·s), linear in the code


def test_hair_mask_covers_the_hair_not_the_face_or_the_backdrop():
    m = hair_mask(32)
    assert m.shape == (32, 32) and 0.0 <= float(m.min()) and float(m.max()) <= 1.0
    assert float(m[16, 16]) == 0.0  # the middle of the face
    assert float(m[0, 0]) == 0.0 and float(m[31, 31]) == 0.0  # corners: backdrop, shoulders
    assert float(m[5, 16]) > 0.9  # above the forehead


def test_factors_are_per_draw_clipped_and_zero_for_the_mean():
    eta = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    t = pattern_factors(eta, 0.3)
    assert t.shape == (6,) and float(t.abs().max()) < 1.0 and len(set(t.tolist())) == 6
    assert float(pattern_factors(eta, 1.0).abs().max()) == 1.0  # clipped
    torch.testing.assert_close(pattern_factors(eta[2:3], 0.3), t[2:3])  # a draw's t does not depend on N
    assert torch.equal(pattern_factors(torch.zeros(1, 32), 3.0), torch.zeros(1))
    assert float(pattern_factors(eta, 50.0).abs().min()) > 0.9  # large τ: the factors sit at ±1 (clipped)
    for bad in (-0.1, 11.0, float("nan"), "x"):
        with pytest.raises(PadaError, match="draw pattern"):
            pattern_value(bad)


def test_pattern_scales_the_hair_change_only_and_scales_with_the_edit():
    diffae = _eigen_diffae()
    pca = diffae.unet.coarse.pca
    g = torch.Generator().manual_seed(1)
    z_src = torch.randn(1, 64, generator=g)
    edit = torch.randn(1, 64, generator=g).expand(4, -1)
    eta = 5 * torch.randn(4, 32, generator=g)
    t = pattern_factors(eta, 10.0)
    assert torch.equal(t.abs(), torch.ones(4)) and 0 < int((t > 0).sum()) < 4  # clipped: t = ±1, both signs
    out = apply_draw_pattern(diffae, z_src, z_src + edit, eta, 10.0)
    d = out - z_src
    torch.testing.assert_close(d[:, :-K], edit[:, :-K])  # the learned entries: shared by every draw
    h = hair_part(pca, edit[:, -K:])
    hair = hair_mask(8).flatten().repeat(3)
    plain = _coarse_change(diffae, edit[:1, -K:])[0]
    # h's coarse change is the masked change projected onto the code's span: what is left is orthogonal to it
    left = plain * hair - _coarse_change(diffae, h[:1])[0]
    assert float((pca.basis @ left).abs().max()) < 1e-4 * float(left.norm())
    for i in range(4):
        torch.testing.assert_close(d[i, -K:], edit[i, -K:] + t[i] * h[i], rtol=1e-5, atol=1e-5)
        change = _coarse_change(diffae, d[i:i + 1, -K:])[0]
        on_hair = float((change * hair).norm() / (plain * hair).norm())
        assert on_hair > 1.3 if t[i] > 0 else on_hair < 0.7  # the hair changes twice as much, or hardly
    # the variation scales with the edit: twice the edit, twice each draw's edit; no edit, no variation
    out2 = apply_draw_pattern(diffae, z_src, z_src + 2 * edit, eta, 10.0)
    torch.testing.assert_close(out2 - z_src, 2 * d, rtol=1e-5, atol=1e-5)
    same = z_src.expand(4, -1)
    torch.testing.assert_close(apply_draw_pattern(diffae, z_src, same, eta, 1.0), same)
    # off: τ 0 or the PAE mean (no noise)
    assert torch.equal(apply_draw_pattern(diffae, z_src, z_src + edit, eta, 0.0), z_src + edit)
    assert torch.equal(apply_draw_pattern(diffae, z_src, z_src + edit, None, 1.0), z_src + edit)


def test_pattern_needs_an_eigenface_code():
    z = torch.zeros(2, 64)
    with pytest.raises(PadaError, match="eigenface coarse code"):
        apply_draw_pattern(tiny_diffae(), z[:1], z + 1.0, torch.ones(2, 32), 1.0)


def test_pipeline_renders_the_pattern_on_the_draws_only():
    p = AgingPipeline(_eigen_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=2)
    x = faces(1)
    plain = p.age(x, text=TEXT, n=3, seed=0, calibrate=False)
    pat = p.age(x, text=TEXT, n=3, seed=0, calibrate=False, draw_pattern=1.0)
    assert not torch.equal(pat.z_age, plain.z_age) and not torch.equal(pat.images, plain.images)
    z_src = p.encode(x)
    _, eta = p.pae_draws(text=TEXT, n=3, high_diversity=True, seed=0)
    torch.testing.assert_close(pat.z_age, apply_draw_pattern(p.diffae, z_src, plain.z_age, eta, 1.0))
    # the PAE mean (high_diversity off) is left as it is
    mean_plain = p.age(x, text=TEXT, n=2, seed=0, calibrate=False, high_diversity=False)
    mean_pat = p.age(x, text=TEXT, n=2, seed=0, calibrate=False, high_diversity=False, draw_pattern=1.0)
    assert torch.equal(mean_plain.images, mean_pat.images)
    # the model's own value is the default; a bad value or a DiffAE without the code is one clear error
    stored = AgingPipeline(p.diffae, p.vl, tiny_model(init_gain=0.3, draw_pattern=1.0), steps=2)
    assert torch.equal(stored.age(x, text=TEXT, n=3, seed=0, calibrate=False).z_age, pat.z_age)
    with pytest.raises(PadaError, match="draw pattern"):
        p.age(x, text=TEXT, n=1, draw_pattern=-1.0)
    with pytest.raises(PadaError, match="eigenface coarse code"):
        AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(), steps=2).age(x, text=TEXT, n=2,
                                                                                draw_pattern=1.0)
    with pytest.raises(PadaError, match="draw_pattern"):
        PadaConfig(draw_pattern=12.0)


def test_cli_option(tmp_path, capsys, monkeypatch):
    from PIL import Image

    import pada.cli.age as age_cli
    from pada.cli.main import main

    pipes = {"eigen": AgingPipeline(_eigen_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=2),
             "plain": AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=2)}
    use = {"pipe": pipes["eigen"]}
    monkeypatch.setattr(age_cli, "load_pipeline",
                        lambda model, device, steps, trust_pickle=False: use["pipe"])
    crop = tmp_path / "crop.png"
    Image.fromarray((faces(1)[0].permute(1, 2, 0).numpy() * 127.5 + 127.5).astype("uint8")).save(crop)
    seen = []
    for p in pipes.values():
        real_age = p.age
        monkeypatch.setattr(p, "age",
                            lambda *a, _r=real_age, **k: seen.append(k.get("draw_pattern")) or _r(*a, **k))
    args = ["age", str(crop), "--aligned", "--age", "70", "-n", "2", "--device", "cpu", "--no-estimates",
            "--out", str(tmp_path / "a.png")]
    assert main([*args, "--draw-pattern", "1.5"]) == 0 and seen[-1] == pytest.approx(1.5)
    assert main(args) == 0 and seen[-1] is None  # the model's own
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        main([*args, "--draw-pattern", "-1"])
    assert bad.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "--draw-pattern" in err[0]
    use["pipe"] = pipes["plain"]  # a DiffAE without an eigenface code: one line, no output written
    out = tmp_path / "b.png"
    assert main([*args[:-1], str(out), "--draw-pattern", "1"]) != 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and "it/s" not in ln]
    assert any("eigenface coarse code" in ln for ln in err) and "Traceback" not in "".join(err)
    assert not out.exists()
