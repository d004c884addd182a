"""Bad-input catalogue, part 2: every kind of image a user can hand to ``pada age``.

Broken or unusable files (empty, random bytes, truncated at 10/50/90 %, text, a folder, missing, 1x1, a
huge-dimension PNG, no face, odd path names) must fail with one ``error:`` line naming the file, exit status
1, no traceback, and leave the output folder as it was. Unusual but valid files (16-bit, grey, CMYK, alpha,
animated GIF, WebP, multi-page TIFF, all 8 EXIF orientations, several faces) must work. Faces that are hard
to find (tiny, at the border) may go either way, but never with a traceback or a partial output.
The model is the tiny random pipeline of tests/test_aging_helpers.py: each run takes a fraction of a second.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bad_inputs_helpers import (
    assert_one_line_failure,
    assert_untouched,
    out_folder,
    run_cli,
    use_tiny_pipeline,
)
from pada.errors import PadaError

TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
             7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}  # stored = inverse of display


@pytest.fixture
def tiny(monkeypatch):
    return use_tiny_pipeline(monkeypatch)


@pytest.fixture(scope="module")
def face():
    from pada.faces import samples

    try:
        return samples.grace_hopper()
    except PadaError as exc:  # pragma: no cover - sample photo unavailable offline
        pytest.skip(f"sample photo unavailable: {exc}")


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


# name -> (maker(folder, face) -> path, words of the error line)
def _bytes(name: str, data):
    def make(folder, face):
        p = folder / name
        p.write_bytes(data(face) if callable(data) else data)
        return p
    return make


BROKEN = {
    "empty": (_bytes("empty.png", b""), "empty file"),
    "random-bytes": (_bytes("random.jpg", bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8))),
                     "not an image file"),
    "truncated-png-10": (_bytes("t10.png", lambda f: _cut(_png_bytes(f), 0.1)), "truncated"),
    "truncated-png-50": (_bytes("t50.png", lambda f: _cut(_png_bytes(f), 0.5)), "truncated"),
    "truncated-png-90": (_bytes("t90.png", lambda f: _cut(_png_bytes(f), 0.9)), "truncated"),
    "truncated-jpeg-50": (_bytes("t50.jpg", lambda f: _cut(_jpeg_bytes(f), 0.5)), "truncated"),
    "text": (_bytes("notes.png", b"this is not an image\n"), "not an image file"),
    "one-pixel": (lambda d, f: (Image.new("RGB", (1, 1)).save(d / "1x1.png"), d / "1x1.png")[1],
                  "only 1x1 pixels"),
    "huge-dimensions": (lambda d, f: (Image.new("1", (12000, 9000)).save(d / "huge.png"), d / "huge.png")[1],
                        "12000x9000 (108 MP), over the limit"),
    "no-face": (lambda d, f: (Image.new("RGB", (200, 160), (128, 128, 128)).save(d / "wall.png"),
                              d / "wall.png")[1], "no face found"),
    "odd-name-newline": (lambda d, f: (Image.new("RGB", (90, 90), (128, 120, 110)).save(d / "a\nb.png"),
                                       d / "a\nb.png")[1], "no face found"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_image_is_one_line(tmp_path, capsys, tiny, face, kind):
    make, problem = BROKEN[kind]
    src = tmp_path / "in"
    src.mkdir()
    photo = make(src, face)
    folder, earlier = out_folder(tmp_path)
    code, err, _ = run_cli(["age", photo, "--text", "x", "-n", "1", "--steps", "2", "--out", earlier], capsys)
    shown = str(photo).replace("\n", "\\n")  # control characters are escaped: still one line
    assert_one_line_failure(code, err, shown, problem)
    assert code == 1
    assert_untouched(folder, earlier)


def test_missing_photo_and_folder_reference(tmp_path, capsys, tiny, face):
    folder, earlier = out_folder(tmp_path)
    missing = tmp_path / "nope.jpg"
    code, err, _ = run_cli(["age", missing, "--text", "x", "--out", earlier], capsys)
    assert_one_line_failure(code, err, str(missing), "no such file")
    photo = tmp_path / "face.png"
    Image.fromarray(face).save(photo)
    code, err, _ = run_cli(["age", photo, "--ref", tmp_path, "-n", "1", "--steps", "2", "--out", earlier],
                           capsys)
    assert_one_line_failure(code, err, str(tmp_path), "is a directory")
    assert_untouched(folder, earlier)


# ------------------------------------------------------------------------------------------- valid kinds
def _save(name, convert=None, **kw):
    def make(folder, face):
        im = Image.fromarray(face)
        im = convert(im) if convert else im
        im.save(folder / name, **kw)
        return folder / name
    return make


def _sixteen_bit(folder, face):
    grey16 = (np.asarray(Image.fromarray(face).convert("L")).astype(np.uint16) * 257)
    Image.fromarray(grey16).save(folder / "grey16.png")
    return folder / "grey16.png"


def _animated_gif(folder, face):
    frames = [Image.fromarray(face), Image.fromarray(face[:, ::-1].copy())]
    frames[0].save(folder / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return folder / "anim.gif"


def _multipage_tiff(folder, face):
    pages = [Image.fromarray(face), Image.new("RGB", (50, 50))]
    pages[0].save(folder / "pages.tif", save_all=True, append_images=pages[1:])
    return folder / "pages.tif"


def _two_faces(folder, face):
    from pada.faces import samples

    try:
        other = samples.astronaut()
    except PadaError as exc:  # pragma: no cover
        pytest.skip(f"sample photo unavailable: {exc}")
    h = max(face.shape[0], other.shape[0])
    canvas = np.full((h, face.shape[1] + other.shape[1], 3), 255, np.uint8)
    canvas[: face.shape[0], : face.shape[1]] = face
    canvas[: other.shape[0], face.shape[1]:] = other
    Image.fromarray(canvas).save(folder / "two.png")
    return folder / "two.png"


def _orientation(o):
    def make(folder, face):
        im = Image.fromarray(face)
        stored = im.transpose(TRANSPOSE[o]) if o in TRANSPOSE else im
        exif = Image.Exif()
        exif[0x0112] = o
        stored.save(folder / f"exif{o}.jpg", quality=92, exif=exif)
        return folder / f"exif{o}.jpg"
    return make


VALID = {
    "grey": _save("grey.png", lambda im: im.convert("L")),
    "16-bit": _sixteen_bit,
    "cmyk": _save("cmyk.jpg", lambda im: im.convert("CMYK")),
    "alpha": _save("alpha.png", lambda im: im.convert("RGBA")),
    "palette": _save("palette.png", lambda im: im.convert("P")),
    "animated-gif": _animated_gif,
    "webp": _save("face.webp", quality=90),
    "multipage-tiff": _multipage_tiff,
    "two-faces": _two_faces,
    "odd-name-unicode-spaces": _save("été -- photo (1).png"),
    **{f"exif-orientation-{o}": _orientation(o) for o in range(1, 9)},
}


@pytest.mark.parametrize("kind", sorted(VALID))
def test_valid_image_kind_is_aged(tmp_path, capsys, tiny, face, kind):
    src = tmp_path / "in"
    src.mkdir()
    photo = VALID[kind](src, face)
    out = tmp_path / "out" / "aged.png"
    argv = ["age", photo, "--text", "x", "-n", "1", "--steps", "2", "--out", out]
    code, err, printed = run_cli(argv, capsys)
    assert code == 0, err
    assert not err or all("Traceback" not in ln for ln in err)
    assert Image.open(out).size == (6 + 2 * 262, 332) and f"wrote {out}" in printed  # --out-size 256
    assert sorted(p.name for p in out.parent.iterdir()) == ["aged.png"]  # no temporary file left


def _tiny_face(folder, face):
    small = np.asarray(Image.fromarray(face).resize((24, 24 * face.shape[0] // face.shape[1])))
    canvas = np.full((600, 800, 3), 200, np.uint8)
    canvas[300:300 + small.shape[0], 400:424] = small
    Image.fromarray(canvas).save(folder / "tiny_face.png")
    return folder / "tiny_face.png"


def _face_at_border(folder, face):
    h, w = face.shape[:2]
    Image.fromarray(face[: h // 2, w // 3:]).save(folder / "border.png")  # face cut by the edge
    return folder / "border.png"


@pytest.mark.parametrize("kind,make", [("tiny-face", _tiny_face), ("face-at-border", _face_at_border)])
def test_hard_face_works_or_fails_in_one_line(tmp_path, capsys, tiny, face, kind, make):
    src = tmp_path / "in"
    src.mkdir()
    photo = make(src, face)
    folder, earlier = out_folder(tmp_path)
    target = folder / "new.png"
    code, err, _ = run_cli(["age", photo, "--text", "x", "-n", "1", "--steps", "2", "--out", target], capsys)
    if code == 0:
        assert Image.open(target).size == (6 + 2 * 262, 332)  # --out-size 256
        target.unlink()
    else:
        assert_one_line_failure(code, err, str(photo), "no face found")
    assert_untouched(folder, earlier)
