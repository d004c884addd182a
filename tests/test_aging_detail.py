"""Detail transfer (pada.aging.detail): an edit made at the model's size carried onto a sharper crop of the
same face, in the pipeline (``image_hr``) and in ``pada age --out-size`` (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pada.aging.detail import (
    RATIO_LIMITS,
    RATIO_OFFSET,
    brightness_ratio,
    detail_gain,
    downsample,
    head_region,
    transfer_edit,
    upsample,
)
from pada.aging.pipeline import AgingPipeline
from pada.aging.testing import TinyVL
from pada.errors import PadaError
from test_aging_helpers import faces, one_thread, tiny_diffae, tiny_model


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def _sharp(size=128, seed=0):
    """A smooth face-like image plus fine detail (checkerboard-ish noise) finer than 32 px can hold."""
    g = torch.Generator().manual_seed(seed)
    low = F.interpolate(torch.rand(1, 3, 4, 4, generator=g) * 1.2 - 0.6, size=size, mode="bicubic",
                        align_corners=False)
    return (low + 0.15 * (torch.rand(1, 1, size, size, generator=g) * 2 - 1)).clamp(-1, 1)


def _fine(x, h=32):
    return x - F.interpolate(downsample(x, h), size=x.shape[-2:], mode="bicubic", align_corners=False)


def test_a_result_equal_to_the_reconstruction_gives_back_the_sharp_crop():
    hr = _sharp()
    r = faces(1, seed=3)  # what the decoder drew for the input: anything, the edit is y - r
    out = transfer_edit(r.expand(2, -1, -1, -1), r, hr)
    assert out.shape == (2, 3, 128, 128)
    assert torch.allclose(out, hr.expand(2, -1, -1, -1), atol=1e-5)


def test_a_smooth_edit_moves_the_sharp_crop_by_the_edit_and_keeps_its_detail():
    hr = _sharp()
    r = faces(1, seed=3)
    edit = torch.zeros(1, 3, 32, 32)
    edit[:, 0, :, 16:] = 0.3  # the right half redder (smoothed below)
    edit = F.avg_pool2d(F.pad(edit, (2, 2, 2, 2), mode="replicate"), 5, 1)
    for relative in (True, False):
        out = transfer_edit(r + edit, r, hr, keep_detail=True, relative_detail=relative)
        moved = downsample(out - hr, 32)
        assert float((moved - edit).abs().max()) < 0.05  # the edit, at the model's scale
        assert float(moved[:, 1:].abs().max()) < 0.02  # nothing else
        # the photo's fine detail is all there: where nothing was brightened, at its own amplitude
        ratio = _fine(out)[:, 1:].pow(2).mean() / _fine(hr)[:, 1:].pow(2).mean()
        assert 0.9 < float(ratio) <= 1.05


def test_where_the_edit_lightens_the_photos_detail_keeps_its_contrast_to_the_brightness():
    """Dark hair turning grey: a tone lifted threefold carries the strands' detail scaled by the brightness
    ratio (damped near black by the offset: 2.3x here), so the detail keeps its contrast relative to the
    brightness (no pale haze); with relative_detail=False it stays at its own amplitude."""
    size, h = 128, 32
    g = torch.Generator().manual_seed(5)
    noise = (torch.rand(1, 1, size, size, generator=g) * 2 - 1).expand(1, 3, -1, -1)
    dark = -0.8 + 0.1 * noise  # ~0.1 on the [0, 1] scale, with strands
    r = downsample(dark, h)
    y = r.clone()
    y[..., :, 16:] = 2 * (3 * ((r[..., :, 16:] + 1) / 2)) - 1  # the right half three times as bright
    out = transfer_edit(y, r, dark, keep_detail=False)
    kept = transfer_edit(y, r, dark, keep_detail=False, relative_detail=False)
    inner = (slice(None), slice(None), slice(8, -8))  # away from the step between the halves
    left, right = (slice(8, 56), slice(72, 120))

    def energy(t, cols):
        return float(_fine(t, h)[inner + (cols,)].pow(2).mean())

    e0 = energy(dark, right)
    q = (0.3 + RATIO_OFFSET) / (0.1 + RATIO_OFFSET)  # 0.1 -> 0.3: the amplitude's factor (offset-damped)
    assert 0.85 * q**2 < energy(out, right) / e0 < 1.15 * q**2 and q > 2
    assert 0.85 < energy(kept, right) / e0 < 1.15
    assert 0.85 < energy(out, left) / energy(dark, left) < 1.15  # untouched half: as it was
    ratio = brightness_ratio(y, r)
    assert float(ratio.max()) <= RATIO_LIMITS[1] and float(ratio.min()) >= RATIO_LIMITS[0]
    assert torch.allclose(brightness_ratio(r, r), torch.ones_like(r))


def test_a_result_that_smooths_the_face_fades_the_photos_detail_with_it():
    hr = _sharp()
    x = downsample(hr, 32)
    r = x.clone()
    smooth = F.avg_pool2d(F.pad(r, (2, 2, 2, 2), mode="replicate"), 5, 1)  # a younger, smoother skin
    g = detail_gain(smooth, r)
    assert g.shape == (1, 1, 32, 32) and float(g.max()) <= 1.0 and float(g.mean()) < 0.6
    out = transfer_edit(smooth, r, hr)
    kept = transfer_edit(smooth, r, hr, keep_detail=False)
    e = [float(_fine(t).pow(2).mean()) for t in (hr, out, kept)]
    assert e[1] < 0.5 * e[0] and e[2] > 0.9 * e[0]


def test_a_region_keeps_the_photo_outside_it():
    hr, r = _sharp(), faces(1, seed=3)
    y = (r + 0.4).clamp(-1, 1)  # a change everywhere, background included
    region = head_region(32)
    assert region.shape == (1, 1, 32, 32)
    assert float(region[..., 0, 0]) == 0 and float(region[..., 16, 16]) == 1
    out = transfer_edit(y, r, hr, region=region)
    assert torch.allclose(out[..., :8, :8], hr[..., :8, :8], atol=1e-5)  # a corner: the photo's own
    assert float((out - hr)[..., 56:72, 56:72].mean()) > 0.3  # the middle of the face: the edit
    for bad in (torch.ones(16, 16), torch.full((32, 32), 2.0), torch.ones(2, 1, 32, 32)):
        with pytest.raises(PadaError, match="region must be a"):
            transfer_edit(y, r, hr, region=bad)


def test_many_results_are_blended_in_chunks_with_the_same_result():
    from pada.aging.detail import CHUNK

    hr, r = _sharp(64), faces(1, seed=3)
    ys = torch.cat([r + 0.05 * k * faces(1, seed=10 + k) for k in range(CHUNK + 3)]).clamp(-1, 1)
    together = transfer_edit(ys, r, hr)
    alone = torch.cat([transfer_edit(ys[k:k + 1], r, hr) for k in range(ys.shape[0])])
    assert together.shape == (CHUNK + 3, 3, 64, 64) and torch.allclose(together, alone, atol=1e-6)


def test_bad_shapes_are_one_line_errors():
    hr, r = _sharp(), faces(1)
    cases = [
        (lambda: transfer_edit(r[0], r, hr), "outputs must be square images"),
        (lambda: transfer_edit(r, faces(2), hr), "reconstruction must hold 1"),
        (lambda: transfer_edit(r, r, hr[..., :16, :16]), "smaller than the results"),
        (lambda: transfer_edit(r, faces(1, size=16), hr), "reconstruction is 16 px"),
        (lambda: transfer_edit(r * float("nan"), r, hr), "NaN"),
        (lambda: transfer_edit(r, r, hr, image=faces(1, size=64)), "input is 64 px"),
    ]
    for call, msg in cases:
        with pytest.raises(PadaError, match=msg) as exc:
            call()
        assert "\n" not in str(exc.value) and str(exc.value).startswith("detail transfer:")


def test_upsample_and_downsample_keep_sizes_and_range():
    x = faces(2, size=16)
    assert torch.equal(upsample(x, 16), x) and upsample(x * 3, 40).abs().max() <= 1.0
    assert downsample(upsample(x, 64), 16).shape == (2, 3, 16, 16)


# ------------------------------------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def pipe():
    return AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=2)


def test_pipeline_carries_its_results_onto_the_sharp_crop(pipe):
    hr = _sharp(96, seed=1)[0]
    x = downsample(hr[None], 32)
    plain = pipe.age(x, text="man's face in his sixties", n=2, seed=4)
    res = pipe.age(x, text="man's face in his sixties", n=2, seed=4, image_hr=hr)
    assert plain.images_hr is None and torch.equal(res.images, plain.images)  # the results are the same
    assert res.images_hr.shape == (2, 3, 96, 96) and "detail" in res.timings
    base = pipe.decode(pipe.invert(x, pipe.encode(x)), pipe.encode(x),
                       x0_guard=pipe.tone_guard(x))  # the input rendered as the results are
    assert torch.allclose(res.images_hr, transfer_edit(res.images, base, hr[None], image=x,
                                                       region=head_region(32)), atol=1e-5)
    corner = (slice(None), slice(None), slice(0, 6), slice(0, 6))
    assert torch.allclose(res.images_hr[corner], hr[None].expand(2, -1, -1, -1)[corner], atol=1e-5)
    whole = pipe.age(x, text="man's face in his sixties", n=2, seed=4, image_hr=hr, keep_background=False)
    assert torch.allclose(whole.images_hr, transfer_edit(res.images, base, hr[None], image=x), atol=1e-5)
    flat = pipe.age(x, text="man's face in his sixties", n=2, seed=4, image_hr=hr, relative_detail=False)
    absolute = transfer_edit(res.images, base, hr[None], image=x, region=head_region(32),
                             relative_detail=False)
    assert torch.allclose(flat.images_hr, absolute, atol=1e-5)
    assert not torch.allclose(flat.images_hr, res.images_hr, atol=1e-3)  # the ratio did something here
    # its model-size view is the result plus what the decoder lost of the input
    assert float((downsample(whole.images_hr, 32) - (res.images + x - base)).abs().mean()) < 0.02
    fresh = pipe.age(x, text="man's face in his sixties", n=2, seed=4, image_hr=hr, low_diversity=True)
    assert torch.allclose(fresh.images_hr, upsample(fresh.images, 96))  # no pixel-wise counterpart
    # a mixed start keeps the input's layout: carried against the input rendered from its inversion, so
    # each result's drawn detail is part of what is carried (not subtracted by a render from its own start)
    mixed = pipe.age(x, text="man's face in his sixties", n=2, seed=4, image_hr=hr, low_diversity=True,
                     low_noise=0.3)
    assert torch.allclose(mixed.images_hr, transfer_edit(mixed.images, base, hr[None], image=x,
                                                         region=head_region(32)), atol=1e-5)
    life = pipe.lifespan(x, gender="male", frames_per_segment=1, image_hr=hr)
    assert life.images_hr.shape == (7, 3, 96, 96)
    life_flat = pipe.lifespan(x, gender="male", frames_per_segment=1, image_hr=hr, relative_detail=False)
    assert torch.equal(life_flat.images, life.images)
    assert not torch.allclose(life_flat.images_hr, life.images_hr)


def test_pipeline_refuses_a_sharp_crop_smaller_than_the_input(pipe):
    x = faces(1)
    for call in (lambda: pipe.age(x, text="a", image_hr=faces(1, size=16)),
                 lambda: pipe.lifespan(x, gender="male", image_hr=faces(1, size=16)),
                 lambda: pipe.age(x, text="a", image_hr=torch.zeros(1, 3, 64, 48))):
        with pytest.raises(PadaError, match="sharp crop") as exc:
            call()
        assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------------ CLI
@pytest.fixture
def cli_pipe(monkeypatch, pipe):
    import pada.cli.age as age_cli

    monkeypatch.setattr(age_cli, "load_pipeline", lambda model, device, steps, trust_pickle=False: pipe)
    return pipe


def _crop(tmp_path, side):
    path = tmp_path / f"crop{side}.png"
    img = ((_sharp(side)[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    Image.fromarray(img).save(path)
    return path


def test_out_size_sets_the_written_faces(tmp_path, capsys, cli_pipe):
    from pada.cli.main import main

    seen, keep, relative = [], [], []
    orig = cli_pipe.age
    cli_pipe.age = lambda *a, **k: seen.append(k.get("image_hr")) or keep.append(k.get("keep_background")) \
        or relative.append(k.get("relative_detail")) or orig(*a, **k)
    crop = _crop(tmp_path, 160)
    base = ["age", str(crop), "--aligned", "--age", "70", "-n", "1", "--gender", "male", "--device", "cpu",
            "--no-estimates"]
    assert main([*base, "--out", str(tmp_path / "a.png")]) == 0  # default 256: the crop's own 160 px
    assert seen[-1].shape == (1, 3, 160, 160)
    assert main([*base, "--out-size", "128", "--out", str(tmp_path / "b.png")]) == 0
    assert seen[-1].shape == (1, 3, 128, 128) and keep[-1] is True
    assert relative[-1] is True
    assert main([*base, "--no-keep-background", "--out", str(tmp_path / "b2.png")]) == 0
    assert keep[-1] is False
    assert main([*base, "--no-relative-detail", "--out", str(tmp_path / "b2r.png")]) == 0
    assert relative[-1] is False and keep[-1] is True
    recording, guards = cli_pipe.age, []
    cli_pipe.age = lambda *a, **k: guards.append((k.get("background_guard"), k.get("saturation_guard"),
                                                  k.get("blotch_guard"), k.get("structure_guard"))) \
        or recording(*a, **k)
    assert main([*base, "--background-guard", "0.05", "--out", str(tmp_path / "b3.png")]) == 0
    assert main([*base, "--out", str(tmp_path / "b4.png")]) == 0
    assert main([*base, "--saturation-guard", "0.01", "--out", str(tmp_path / "b5.png")]) == 0
    assert main([*base, "--blotch-guard", "0.06", "--out", str(tmp_path / "b7.png")]) == 0
    assert main([*base, "--structure-guard", "0.13", "--out", str(tmp_path / "b9.png")]) == 0
    assert guards == [(0.05, None, None, None), (None, None, None, None),  # None: the model's own
                      (None, 0.01, None, None), (None, None, 0.06, None), (None, None, None, 0.13)]
    capsys.readouterr()
    with pytest.raises(SystemExit) as bad:
        main([*base, "--saturation-guard", "1.5", "--out", str(tmp_path / "b6.png")])
    assert bad.value.code == 2 and "--saturation-guard: must be below 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main([*base, "--blotch-guard", "-0.1", "--out", str(tmp_path / "b8.png")])
    assert bad.value.code == 2 and "--blotch-guard" in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main([*base, "--structure-guard", "1", "--out", str(tmp_path / "b10.png")])
    assert bad.value.code == 2 and "--structure-guard" in capsys.readouterr().err
    assert Image.open(tmp_path / "b.png").size == (6 + 2 * 134, 178)  # 128 px tiles
    assert main([*base, "--out-size", "32", "--out", str(tmp_path / "c.png")]) == 0  # the model's size
    assert seen[-1] is None
    capsys.readouterr()
    assert main([*base, "--out-size", "20", "--out", str(tmp_path / "d.png")]) == 1
    [line] = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert line == "error: --out-size 20: must be at least the model's face size (32 px)"
    assert not (tmp_path / "d.png").exists()
    with pytest.raises(SystemExit) as exc:
        main([*base, "--out-size", "5000"])
    assert exc.value.code == 2


def test_app_shows_the_faces_at_its_out_size(pipe):
    pytest.importorskip("fastapi")
    import io

    from fastapi.testclient import TestClient

    from pada.app.server import create_app

    buf = io.BytesIO()
    Image.fromarray(((_sharp(96)[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)).save(
        buf, format="PNG")
    sizes = {}
    for out_size in (256, 32):
        c = TestClient(create_app(pipe, ui=False, out_size=out_size))
        r = c.post("/api/age?format=gif", data={"target": "man's face in his sixties", "n": "1",
                                               "aligned": "on", "low_level": "off"},
                   files={"image": ("f.png", buf.getvalue(), "image/png")})
        assert r.status_code == 200, r.text
        sizes[out_size] = Image.open(io.BytesIO(r.content)).size  # the GIF's frames: input, then the result
        life = c.post("/api/age?format=gif", data={"lifespan": "on", "gender": "male", "aligned": "on"},
                      files={"image": ("f.png", buf.getvalue(), "image/png")})
        assert life.status_code == 200 and Image.open(io.BytesIO(life.content)).size == sizes[out_size]
    assert sizes == {256: (96, 96), 32: (32, 32)}  # an aligned upload is never enlarged
