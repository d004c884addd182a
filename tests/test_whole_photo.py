"""Whole-photo paste-back: the face-region mask and colour matching leave no seam (issue 11)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pada.aging.photo import Target, age_text, labelled_grid, make_targets, parse_ages
from pada.errors import PadaError
from pada.faces import samples
from pada.faces.align import FACE_ELLIPSE, align_image, feather_mask, paste_back


@pytest.fixture(scope="module")
def hopper_face():
    img = samples.grace_hopper()
    return img, align_image(img, 64)[0]


def _generated(crop: np.ndarray) -> np.ndarray:
    """A stand-in for a model output: the face with a colour cast, on the model's own grey background."""
    out = crop.astype(np.int16) + np.array([38, -12, -30], np.int16)
    m = feather_mask(crop.shape[0], 0.02, "face") < 0.5
    out[m] = 128
    return np.clip(out, 0, 255).astype(np.uint8)


def _rings(mask: np.ndarray, width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Pixels just inside the full-weight part of the mask and just outside its support."""
    full = (mask >= 0.999).astype(np.uint8)
    support = (mask > 0).astype(np.uint8)
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    inner = full.astype(bool) & ~cv2.erode(full, k).astype(bool)
    outer = cv2.dilate(support, k).astype(bool) & ~support.astype(bool)
    return inner, outer


def colour_step(out: np.ndarray, original: np.ndarray, mask: np.ndarray, sectors: int = 16) -> float:
    """Colour step across the blend zone, in grey levels: around the mask, in each of ``sectors`` angular
    sectors, the mean colour change from the ring just outside the mask to the ring just inside its
    full-weight part, minus the same change in the original photo (the scene's own gradient); the mean
    absolute value over sectors and channels."""
    inner, outer = _rings(mask)
    ys, xs = np.nonzero(mask > 0)
    cy, cx = ys.mean(), xs.mean()
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    sector = ((np.arctan2(yy - cy, xx - cx) + np.pi) / (2 * np.pi) * sectors).astype(int) % sectors
    steps = []
    for k in range(sectors):
        i, o = inner & (sector == k), outer & (sector == k)
        if i.sum() < 5 or o.sum() < 5:
            continue
        d_out = out[i].astype(float).mean(0) - out[o].astype(float).mean(0)
        d_orig = original[i].astype(float).mean(0) - original[o].astype(float).mean(0)
        steps.append(np.abs(d_out - d_orig))
    return float(np.mean(steps))


def test_face_mask_lies_inside_the_face_region():
    m = feather_mask(64, 0.12, "face")
    assert m.max() == pytest.approx(1.0, abs=1e-3) and m[0, 0] == 0 and m[-1, -1] == 0 and m[0, 32] == 0
    (cx, cy), (ax, ay) = FACE_ELLIPSE
    ys, xs = np.nonzero(m > 0)
    r = np.hypot(((xs + 0.5) / 64 - cx) / ax, ((ys + 0.5) / 64 - cy) / ay)
    assert r.max() <= 1.0  # every weighted pixel is inside the face ellipse


def test_paste_back_leaves_no_colour_step(hopper_face):
    img, face = hopper_face
    gen = _generated(face.image)
    naive, m_sq = paste_back(img, face, gen, feather=0.1, mask_shape="square", return_mask=True)
    seamless, m_face = paste_back(img, face, gen, feather=0.12, mask_shape="face", color_match=True,
                                  return_mask=True)
    step_naive = colour_step(naive, img, m_sq)
    step_seamless = colour_step(seamless, img, m_face)
    # measured: naive square paste ~ 40 grey levels (the model's grey background and the cast);
    # face mask without colour matching ~ 26; with it ~ 3 (the unchanged crop pasted back: 1.8)
    assert step_naive > 20, step_naive
    assert step_seamless < 4, step_seamless
    # without colour matching the cast alone still shows as a step
    plain, m2 = paste_back(img, face, gen, feather=0.12, mask_shape="face", return_mask=True)
    assert colour_step(plain, img, m2) > 10
    # the generated detail is kept inside the face (colour matching adds only a smooth field)
    centre = m_face >= 0.999
    hp = lambda im: im.astype(float) - cv2.GaussianBlur(im.astype(float), (0, 0), 3)  # noqa: E731
    gen_warped = paste_back(np.zeros_like(img), face, gen, feather=0.12, mask_shape="face")
    assert np.corrcoef(hp(seamless)[centre].ravel(), hp(gen_warped)[centre].ravel())[0, 1] > 0.9
    # outside the mask the photo is untouched
    np.testing.assert_array_equal(seamless[m_face == 0], img[m_face == 0])


def test_targets_from_ages_and_texts():
    assert parse_ages("10, 30,50.5") == [10.0, 30.0, 50.5]
    for bad in ("x", "nan", "-3", "200", "10,,20"):
        with pytest.raises(PadaError, match="--age"):
            parse_ages(bad)
    assert age_text(65, "male") == "man's face in his sixties"
    assert age_text(3, "female") == "a toddler girl's face"
    ts = make_targets(["old face"], [70, 70], ref=False)
    assert [t.label for t in ts] == ["age 70", "old face"]
    assert make_targets([], [], ref=True) == [Target(ref=True)]
    assert make_targets(["x"], [], ref=True)[0].label == "x + reference"


def test_labelled_grid_layout():
    tiles = [np.full((32, 32, 3), v, np.uint8) for v in (0, 100, 200)]
    g = labelled_grid([("row one", tiles, ["input", "#0", "#1"]), ("row two", tiles[:2], ["a", "b"])])
    assert g.dtype == np.uint8 and g.shape[1] == 6 + 3 * (128 + 6)
    # each tile is shown (enlarged to 128 px) and the title / caption areas carry dark text
    assert (g[:, :, 0] < 50).sum() > 128 * 128  # the black tile of row one (and of row two)
    assert (g[6:20, 6:200] < 128).any()  # title text


def test_head_mask_takes_the_hair_and_leaves_the_corners():
    from pada.faces.align import HEAD_ELLIPSE

    face, head = feather_mask(64, 0.12, "face"), feather_mask(64, 0.12, "head")
    assert head[0, 0] == 0 and head[-1, -1] == 0 and head[-1, 0] == 0  # corners: background, shoulders
    assert head[6, 32] > 0.5 and face[6, 32] == 0  # the crown's hair
    assert (head >= face - 1e-6).all()  # the face region is inside it
    (cx, cy), (ax, ay) = HEAD_ELLIPSE
    ys, xs = np.nonzero(head > 0)
    assert np.hypot(((xs + 0.5) / 64 - cx) / ax, ((ys + 0.5) / 64 - cy) / ay).max() <= 1.0
    with pytest.raises(ValueError, match="'head'"):
        feather_mask(64, 0.1, "hair")


def test_compose_photo_pastes_the_hair_only_for_results_on_the_photos_crop(hopper_face):

    from pada.aging.photo import FaceResult, compose_photo, sharp_crop
    from pada.faces.io import to_tensor

    img, face = hopper_face
    x = to_tensor(face.image)[0]
    grey = lambda t: (t * 0.3 + 0.6).clamp(-1, 1)  # noqa: E731 - whitened, as old hair goes
    small = FaceResult(0, face, x, outputs=[grey(x)[None]])
    image_hr, face_hr = sharp_crop(img, face, 128, 64)
    sharp = FaceResult(0, face, x, image_hr=image_hr, face_hr=face_hr, outputs=[grey(x)[None]],
                       outputs_hr=[grey(image_hr)[None]])
    crown = tuple(np.rint(face_hr.to_original(np.array([[64.0, 10.0]]))[0]).astype(int))  # hair / cap
    chin = tuple(np.rint(face_hr.to_original(np.array([[64.0, 90.0]]))[0]).astype(int))
    a, b = compose_photo(img, [small], 0, 0), compose_photo(img, [sharp], 0, 0)
    diff = lambda out, p: np.abs(out[p[1], p[0]].astype(int) - img[p[1], p[0]]).sum()  # noqa: E731
    assert diff(a, crown) == 0 and diff(b, crown) > 30  # the head mask reaches the crown
    assert diff(a, chin) > 30 and diff(b, chin) > 30  # both change the face
    assert np.array_equal(a[:20, :20], img[:20, :20]) and np.array_equal(b[:20, :20], img[:20, :20])
