"""Detection, FFHQ alignment and paste-back on real photos (astronaut, Grace Hopper, CelebA from PyPI wheels).

The CelebA and astronaut pictures are read from wheels cached by :mod:`pada.faces.samples`; when the download
fails the tests that need them are skipped with the reason.
"""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import torch

from pada.errors import NoFaceError, PadaError
from pada.faces import (
    AlignedFace,
    Face,
    align_face,
    align_image,
    default_detector,
    feather_mask,
    ffhq_quad,
    load_image,
    paste_back,
    samples,
    save_image,
    to_tensor,
    to_uint8,
)

CELEBA_IDS = [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]


def _get(fn, *args):
    try:
        return fn(*args)
    except PadaError as exc:
        pytest.skip(f"sample photos unavailable: {exc}")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return _get(samples.astronaut)


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return _get(samples.grace_hopper)


@pytest.fixture(scope="module")
def celeba() -> list[np.ndarray]:
    return _get(samples.celeba, CELEBA_IDS)


@pytest.fixture(scope="module")
def detector():
    return default_detector()


# ---------------------------------------------------------------------------------------------- detection


def test_detects_astronaut_with_plausible_landmarks(astronaut, detector):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    f = faces[0]
    assert f.score > 0.8
    x, y, w, h = f.box
    # The face of Eileen Collins is in the upper middle of the 512x512 picture.
    assert 150 < x < 220 and 30 < y < 100 and 60 < w < 140 and 80 < h < 160
    re, le, nose, rm, lm = f.landmarks
    inside = (f.landmarks[:, 0] > x) & (f.landmarks[:, 0] < x + w) & (f.landmarks[:, 1] > y)
    assert inside.all() and (f.landmarks[:, 1] < y + h).all()
    assert re[0] < le[0] and rm[0] < lm[0]  # subject's right = image left (YuNet's order)
    assert abs(re[1] - le[1]) < 10  # upright face: eyes level
    assert max(re[1], le[1]) < nose[1] < min(rm[1], lm[1])  # eyes above the nose above the mouth
    assert re[0] < nose[0] < le[0]
    assert 30 < np.hypot(*(le - re)) < 70


def test_detects_hopper_and_celeba(hopper, celeba, detector):
    for img in [hopper, *celeba]:
        faces = detector.detect(img)
        assert len(faces) >= 1
        lm = faces[0].landmarks
        assert lm[0, 0] < lm[1, 0] and lm[1, 1] < lm[2, 1] < lm[4, 1]


def test_no_face_in_flat_image_and_noise(detector):
    assert detector.detect(np.full((200, 300, 3), 127, np.uint8)) == []
    with pytest.raises(NoFaceError, match=r"^image: no face found$"):
        align_image(np.zeros((120, 120, 3), np.uint8), detector=detector)


def test_huge_image_is_shrunk_for_detection_and_mapped_back(astronaut, detector):
    k = 6
    big = cv2.resize(astronaut, (512 * k, 512 * k), interpolation=cv2.INTER_CUBIC)  # 3072^2 > max_side
    small = detector.detect(astronaut)[0]
    f = detector.detect(big)[0]
    # Mapped back to the big image's pixels: same face as in the original, scaled by k (pixel centres).
    expect = (small.landmarks + 0.5) * k - 0.5
    assert np.abs(f.landmarks - expect).max() < 6 * k  # detector jitter of a few original pixels
    assert np.abs(f.box[2:] - small.box[2:] * k).max() < 8 * k


def test_detector_sorted_largest_first(celeba, detector):
    a, b = celeba[0], cv2.resize(celeba[1], (89, 109), interpolation=cv2.INTER_AREA)
    canvas = np.full((218, 178 + 89, 3), 255, np.uint8)
    canvas[:, :178] = a
    canvas[:109, 178:] = b
    faces = detector.detect(canvas)
    assert len(faces) == 2
    assert faces[0].area > faces[1].area and faces[0].box[0] < 178 <= faces[1].box[0] + 1


# ---------------------------------------------------------------------------------------------- alignment


def test_ffhq_quad_geometry_on_synthetic_landmarks():
    # An upright face: eyes 40 px apart at y=100, mouth 40 px below the eye midpoint.
    lm = np.array([[80, 100], [120, 100], [100, 120], [85, 140], [115, 140]], float)
    q = ffhq_quad(lm)
    # x = eye_to_eye normalised * max(2*40, 1.8*40) = (80, 0); y = (0, 80); c = (100, 104).
    np.testing.assert_allclose(q, [[20, 24], [20, 184], [180, 184], [180, 24]], atol=1e-9)
    # Rotating the landmarks rotates the quad the same way.
    th = np.deg2rad(25)
    r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    np.testing.assert_allclose(ffhq_quad(lm @ r.T), q @ r.T, atol=1e-9)


def test_alignment_puts_eyes_at_canonical_pixels(astronaut, hopper, celeba, detector):
    S = 256
    # FFHQ geometry: when 2|eye_to_eye| dominates, |x| = 2 |eye_to_eye|, so the eyes are S/4 apart,
    # centred horizontally, on a line through the crop at a fixed height.
    canonical = np.array([[S / 2 - S / 8, np.nan], [S / 2 + S / 8, np.nan]]) - 0.5
    eye_rows, n_frontal = [], 0
    for img in [astronaut, hopper, *celeba]:
        face = detector.detect(img)[0]
        a = align_face(img, face, S)
        assert a.image.shape == (S, S, 3) and a.image.dtype == np.uint8
        eyes = a.to_crop(face.landmarks[:2])
        mid = eyes.mean(0)
        assert abs(mid[0] - (S / 2 - 0.5)) < 4, eyes  # eye midpoint always centred horizontally
        lm = face.landmarks.astype(float)
        e2e = np.hypot(*(lm[1] - lm[0]))
        e2m = np.hypot(*((lm[3] + lm[4]) / 2 - (lm[0] + lm[1]) / 2))
        if 2.0 * e2e > 1.8 * e2m * 1.05:  # frontal enough that the eye term sets the scale
            n_frontal += 1
            np.testing.assert_allclose(eyes[:, 0], canonical[:, 0], atol=2.5)
            eye_rows.append(mid[1])
    assert n_frontal >= 6
    assert np.ptp(eye_rows) < 6, eye_rows  # the same eye height for every frontal face


def test_alignment_crop_matches_matrix(astronaut, detector):
    """The crop's pixels are the photo's pixels at matrix^-1 (bicubic), independently resampled here."""
    face = detector.detect(astronaut)[0]
    a = align_face(astronaut, face, 128)
    ref = cv2.warpAffine(astronaut, a.matrix, (128, 128), flags=cv2.INTER_AREA)
    diff = np.abs(a.image.astype(int) - ref.astype(int))[8:-8, 8:-8]
    assert diff.mean() < 4
    # quad corners map to the crop's corners; the inverse map is consistent
    corners = [[-0.5, -0.5], [-0.5, 127.5], [127.5, 127.5], [127.5, -0.5]]
    np.testing.assert_allclose(a.to_crop(a.quad), corners, atol=1e-3)
    np.testing.assert_allclose(a.to_original(a.to_crop(face.landmarks)), face.landmarks, atol=1e-3)


def test_large_face_shrink_path_matches_small(astronaut, detector):
    """A 4x larger copy of the photo goes through the integer shrink; the crop must look the same."""
    k = 4
    big = cv2.resize(astronaut, (512 * k, 512 * k), interpolation=cv2.INTER_CUBIC)
    small_face = detector.detect(astronaut)[0]
    lm_big = (small_face.landmarks + 0.5) * k - 0.5
    a_small = align_face(astronaut, small_face.landmarks, 128)
    a_big = align_face(big, lm_big, 128)
    np.testing.assert_allclose(a_big.quad, (a_small.quad + 0.5) * k - 0.5, atol=1e-6)
    diff = np.abs(a_big.image.astype(int) - a_small.image.astype(int))
    assert diff.mean() < 3, diff.mean()


def test_padding_fills_outside_with_blurred_reflection(astronaut, detector):
    img = np.ascontiguousarray(astronaut[60:, 150:])  # cut so that the quad leaves the frame top and left
    face = detector.detect(img)[0]
    a = align_face(img, face, 128)
    assert a.quad[:, 1].min() < -20 and a.quad[:, 0].min() < -10
    unpadded = align_face(img, face, 128, pad=False).image
    # crop pixels whose source lies off the photo (by more than the bicubic support)
    uv = np.stack(np.meshgrid(np.arange(128.0), np.arange(128.0)), axis=-1).reshape(-1, 2)
    xy = a.to_original(uv).reshape(128, 128, 2)
    outside = (xy[..., 0] < -2) | (xy[..., 1] < -2)
    assert outside.mean() > 0.1
    assert (unpadded[outside] == 0).all()  # the plain warp leaves black there
    assert (a.image[outside].max(axis=1) < 8).mean() < 0.01  # padded: no black
    # FFHQ's blur ramps in over a third of the pad width inside the photo; the face below is untouched
    # (up to 1 level: the padded warp's translation differs, so float rounding can too)
    diff = np.abs(a.image[64:120, 40:120].astype(int) - unpadded[64:120, 40:120])
    assert diff.max() <= 1 and diff.mean() < 0.01
    # the fill is smooth (blurred), unlike the photo: compare local gradients
    grad = np.abs(np.diff(a.image.astype(float), axis=1)).mean(axis=2)[:, :-1]
    assert grad[outside[:, :-2]].mean() < grad[~outside[:, :-2]].mean()


def test_align_image_from_path_and_all_faces(tmp_path, celeba, detector):
    two = np.concatenate([celeba[0], celeba[1]], axis=1)
    p = tmp_path / "two.png"
    save_image(p, two)
    one = align_image(p, size=64, detector=detector)
    both = align_image(p, size=64, all_faces=True, detector=detector)
    assert len(one) == 1 and len(both) == 2
    assert both[0].source == str(p) and both[0].original_size == (218, 356)
    centres = sorted(b.face.box[0] + b.face.box[2] / 2 for b in both)
    assert centres[0] < 178 < centres[1]
    with pytest.raises(NoFaceError, match="blank.png: no face found"):
        blank = tmp_path / "blank.png"
        save_image(blank, np.full((64, 64, 3), 200, np.uint8))
        align_image(blank, detector=detector)


# ---------------------------------------------------------------------------------------------- paste-back


def _mask_in_original(a: AlignedFace, shape, feather=0.1) -> np.ndarray:
    m = feather_mask(a.size, feather)
    return cv2.warpAffine(m, a.matrix, (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


@pytest.mark.parametrize("size", [256, 512])
def test_paste_back_round_trip(astronaut, hopper, celeba, detector, size):
    errors = []
    for img in [astronaut, hopper, *celeba[:5]]:
        a = align_face(img, detector.detect(img)[0], size)
        back, mask = paste_back(img, a, a.image, return_mask=True)
        assert back.shape == img.shape and back.dtype == np.uint8
        assert mask.shape == img.shape[:2] and mask.min() == 0.0 and mask.max() == pytest.approx(1.0)
        # The mask is the crop's soft square seen in the photo.
        np.testing.assert_allclose(mask, _mask_in_original(a, img.shape), atol=0.1)
        diff = np.abs(back.astype(int) - img.astype(int))
        inner = mask >= 0.999
        assert inner.sum() > 2000
        errors.append(diff[inner].mean())
        # Outside the mask the photo is untouched, bit for bit; the mask is 0 well outside the quad.
        np.testing.assert_array_equal(back[mask == 0], img[mask == 0])
        assert (_mask_in_original(a, img.shape, feather=0.1) == 0).sum() <= (mask == 0).sum() + 50 * size
    # Only resampling error inside the face region (bicubic both ways). Measured (S=256): astronaut 0.6,
    # Hopper 2.9 (her face is larger than the 256 crop: detail is lost), CelebA 0.2-0.8; (S=512): 0.4-2.6.
    assert max(errors) < 3.2, errors
    if size == 256:
        assert errors[0] < 1.0, errors  # astronaut: face ~1:1 with the crop


def test_paste_back_edited_crop_and_other_sizes(astronaut, detector):
    a = align_face(astronaut, detector.detect(astronaut)[0], 256)
    edited = 255 - a.image  # a drastic "edit"
    for crop in (edited, cv2.resize(edited, (1024, 1024)), cv2.resize(edited, (64, 64))):
        out = paste_back(astronaut, a, crop, feather=0.1)
        centre = a.to_original(np.array([[127.5, 127.5]]))[0].round().astype(int)
        y, x = centre[1], centre[0]
        patch = out[y - 5 : y + 5, x - 5 : x + 5].astype(int)
        expect = 255 - astronaut[y - 5 : y + 5, x - 5 : x + 5].astype(int)
        assert np.abs(patch - expect).mean() < 12  # the edit is in place at the face centre
        assert np.array_equal(out[:5], astronaut[:5]) or a.quad[:, 1].min() < 5
        assert np.array_equal(out[-100:], astronaut[-100:])  # far below the face: untouched
    # a soft edge: at the crop's border the mask is ~0, so the result stays close to the original there
    m = _mask_in_original(a, astronaut.shape)
    edge = (m > 0) & (m < 0.05)
    out = paste_back(astronaut, a, edited)
    assert np.abs(out[edge].astype(int) - astronaut[edge].astype(int)).mean() < 12


def test_paste_back_from_json_record(tmp_path, astronaut, detector):
    a = align_face(astronaut, detector.detect(astronaut)[0], 128, source="astro.png")
    rec = json.loads(json.dumps(a.to_record()))
    b = AlignedFace.from_record(rec)
    np.testing.assert_allclose(b.matrix, a.matrix, atol=1e-9)
    np.testing.assert_allclose(b.face.landmarks, a.face.landmarks, atol=1e-3)
    assert b.source == "astro.png" and b.size == 128 and b.original_size == (512, 512)
    np.testing.assert_array_equal(paste_back(astronaut, b, a.image), paste_back(astronaut, a, a.image))
    with pytest.raises(ValueError, match="cut from a 512x512"):
        paste_back(astronaut[:300], b, a.image)


def test_feather_mask_shapes():
    sq = feather_mask(64, 0.1)
    el = feather_mask(64, 0.1, "ellipse")
    assert sq.shape == (64, 64) and sq.dtype == np.float32
    assert sq[32, 32] == 1.0 and sq[0, 0] < 0.01 and sq[0, 32] < 0.05 and sq[10, 10] == 1.0
    assert el[32, 32] == 1.0 and el[2, 2] == 0.0 and el[32, 0] < 0.05 and el[32, 1] < el[32, 3]
    np.testing.assert_allclose(sq, sq.T)
    np.testing.assert_allclose(sq, sq[::-1, ::-1])


def test_face_from_landmarks_and_align_with_array(astronaut, detector):
    f = detector.detect(astronaut)[0]
    a1 = align_face(astronaut, f, 64)
    a2 = align_face(astronaut, f.landmarks, 64)
    np.testing.assert_array_equal(a1.image, a2.image)
    g = Face.from_landmarks(f.landmarks)
    assert np.isnan(g.score) and g.box[2] > 0


# ---------------------------------------------------------------------------------------------- tensors / io


def test_tensor_round_trip():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (16, 24, 3), dtype=np.uint8) for _ in range(3)]
    t = to_tensor(imgs)
    assert t.shape == (3, 3, 16, 24) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    assert float(t[0, 0, 0, 0]) == pytest.approx(imgs[0][0, 0, 0] / 127.5 - 1)
    back = to_uint8(t)
    assert isinstance(back, list) and len(back) == 3
    for x, y in zip(back, imgs):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(to_uint8(t[1]), imgs[1])
    assert to_tensor(imgs[0]).shape == (1, 3, 16, 24)
    np.testing.assert_array_equal(to_uint8(torch.full((3, 2, 2), 5.0))[0, 0], [255, 255, 255])
    ro = imgs[0].copy()
    ro.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "non-writable array" warning from torch
        assert torch.equal(to_tensor(ro), t[:1])
    with pytest.raises(ValueError):
        to_tensor([imgs[0], imgs[0][:8]])


def test_save_image_is_atomic_and_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    for ext in ("png", "webp", "bmp", "tif"):
        p = save_image(tmp_path / "sub" / f"x.{ext}", img)
        if ext != "webp":
            loaded = load_image(p)
            np.testing.assert_array_equal(loaded, img)
            assert loaded.flags.writeable and loaded.flags.c_contiguous
    # A failing save leaves the previous file intact and no temporary files behind.
    target = tmp_path / "keep.png"
    save_image(target, img)
    with pytest.raises(ValueError):
        save_image(target, img.astype(np.float32))
    np.testing.assert_array_equal(load_image(target), img)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["keep.png", "sub"]
    with pytest.raises(PadaError, match="unknown image extension"):
        save_image(tmp_path / "x.xyz", img)


def test_alignment_is_mirror_equivariant_and_accepts_views(astronaut, detector):
    """Mirroring the photo and its landmarks (swapping left/right rows) mirrors the crop exactly."""
    lm = detector.detect(astronaut)[0].landmarks
    mirrored = astronaut[:, ::-1]  # a negative-stride view, not a copy
    mlm = lm.copy()
    mlm[:, 0] = astronaut.shape[1] - 1 - mlm[:, 0]
    mlm = mlm[[1, 0, 2, 4, 3]]  # the image-left eye / mouth corner is now the other one
    a = align_face(astronaut, lm, 128)
    b = align_face(mirrored, mlm, 128)
    assert np.abs(a.image[:, ::-1].astype(int) - b.image).max() <= 1
    assert len(detector.detect(astronaut[::2, ::2])) == 1  # strided views are fine too
    out = paste_back(mirrored, b, b.image[::-1, ::-1][::-1, ::-1])
    assert out.shape == astronaut.shape


# ----------------------------------------------------------------------- one way from a photo to model input


def _cli_and_app_tensors(path, size: int, aligned: bool):
    from pada.app.service import ServiceLimits, _decode_upload, _face
    from pada.cli.age import _load_face

    cli = _load_face(path, size, aligned)[0]
    upload = _decode_upload(path.read_bytes(), path.name, ServiceLimits().max_pixels)
    app = _face(upload, size, aligned, path.name)[0]
    return cli, app


@pytest.mark.parametrize("side", [96, 64, 40])
def test_cli_and_app_turn_an_aligned_crop_into_the_same_tensor(tmp_path, hopper, side):
    """``pada age --aligned`` and the app's 'already aligned' give the model the same face, any crop size."""
    crop = cv2.resize(hopper[:min(hopper.shape[:2]), :min(hopper.shape[:2])], (side, side),
                      interpolation=cv2.INTER_AREA)
    path = save_image(tmp_path / "crop.png", crop)
    cli, app = _cli_and_app_tensors(path, 64, aligned=True)
    assert cli.shape == (3, 64, 64) and app.shape == (1, 3, 64, 64)
    assert torch.equal(cli, app[0])
    if side == 64:  # at the model's size the crop is used as it is
        assert torch.equal(cli, to_tensor(crop)[0])


def test_cli_and_app_turn_a_photo_into_the_same_tensor(tmp_path, hopper):
    path = save_image(tmp_path / "hopper.png", hopper)
    cli, app = _cli_and_app_tensors(path, 64, aligned=False)
    assert torch.equal(cli, app[0])
    assert torch.equal(cli, to_tensor(align_image(hopper, 64)[0].image)[0])


def test_face_tensors_names_the_input_in_its_errors():
    from pada.errors import BadImageError
    from pada.faces import face_tensors

    with pytest.raises(BadImageError, match=r"^wide.png: .* must be a square crop, got 80x60$"):
        face_tensors(np.zeros((60, 80, 3), np.uint8), 64, aligned=True, name="wide.png")
    with pytest.raises(NoFaceError, match=r"^wall.png: no face found \(try another\)$"):
        face_tensors(np.full((120, 120, 3), 128, np.uint8), 64, name="wall.png", no_face_hint="try another")
