"""Awkward and broken image files: load_image either normalises them or raises one clear line.

The same files then go through ``pada align`` in-process (stderr lines + exit status) and once as a
subprocess (no traceback).
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pada.cli.main import main
from pada.errors import BadImageError, PadaError
from pada.faces import default_detector, load_image, samples, save_image


def _astronaut() -> np.ndarray:
    try:
        return samples.astronaut()
    except PadaError as exc:
        pytest.skip(f"sample photos unavailable: {exc}")


def _jpeg_bytes(img: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def make_bad_files(folder: Path) -> dict[str, str]:
    """Broken files -> a regular expression their one-line error must match (after the file name)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    good = _jpeg_bytes(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    (folder / "corrupt.jpg").write_bytes(good[:20] + bytes(rng.integers(0, 256, 3000, dtype=np.uint8)))
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "text.png").write_text("this is not an image\n")
    (folder / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (1, 1), (255, 0, 0)).save(folder / "one_pixel.png")
    Image.new("1", (12000, 9000)).save(folder / "huge.png")  # 108 MP, a 13 kB file
    return {
        "corrupt.jpg": r"corrupt or truncated image|not an image",
        "truncated.jpg": r"corrupt or truncated image",
        "text.png": r"not an image file",
        "empty.jpg": r"empty file",
        "one_pixel.png": r"only 1x1 pixels",
        "huge.png": r"12000x9000 \(108 MP\), over the limit of 100 MP",
    }


# ---------------------------------------------------------------------------------------------- load_image


def test_bad_files_raise_one_line(tmp_path):
    expected = make_bad_files(tmp_path)
    for name, pattern in expected.items():
        path = tmp_path / name
        with pytest.raises(BadImageError, match=pattern) as info:
            load_image(path)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
        assert info.value.__suppress_context__ or info.value.__cause__ is None
    with pytest.raises(BadImageError, match=r"missing\.jpg: file not found$"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(BadImageError, match=r"is a directory, not an image file$"):
        load_image(tmp_path)


def test_large_image_allowed_when_asked(tmp_path):
    Image.new("L", (11000, 1000), 7).save(tmp_path / "wide.png")  # 11 MP
    with pytest.raises(BadImageError, match="over the limit of 10 MP"):
        load_image(tmp_path / "wide.png", max_pixels=10_000_000)
    img = load_image(tmp_path / "wide.png", max_pixels=None)
    assert img.shape == (1000, 11000, 3) and (img == 7).all()


def test_min_side(tmp_path):
    Image.new("RGB", (31, 200)).save(tmp_path / "thin.png")
    with pytest.raises(BadImageError, match="only 31x200 pixels; at least 32"):
        load_image(tmp_path / "thin.png")
    assert load_image(tmp_path / "thin.png", min_side=8).shape == (200, 31, 3)


def test_greyscale_and_16_bit(tmp_path):
    Image.new("L", (40, 50), 77).save(tmp_path / "grey.png")
    g = load_image(tmp_path / "grey.png")
    assert g.shape == (50, 40, 3) and g.dtype == np.uint8 and (g == 77).all()
    Image.fromarray(np.full((50, 40), 40000, np.uint16)).save(tmp_path / "grey16.png")
    assert (load_image(tmp_path / "grey16.png") == 40000 >> 8).all()
    bgr16 = np.zeros((50, 40, 3), np.uint16)
    bgr16[..., 2], bgr16[..., 1] = 65535, 100 * 256  # red 65535, green 25600
    cv2.imwrite(str(tmp_path / "rgb16.png"), bgr16)
    cv2.imwrite(str(tmp_path / "rgb16.tif"), bgr16)
    for name in ("rgb16.png", "rgb16.tif"):
        assert load_image(tmp_path / name)[0, 0].tolist() == [255, 100, 0]
    Image.new("1", (40, 40), 1).save(tmp_path / "bits.bmp")
    assert (load_image(tmp_path / "bits.bmp") == 255).all()
    Image.fromarray(np.full((40, 40), 0.5, np.float32)).save(tmp_path / "float.tif")
    assert (load_image(tmp_path / "float.tif") == 128).all()


def test_alpha_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (40, 40), (255, 0, 0, 0))
    im.putpixel((1, 1), (255, 0, 0, 128))
    im.putpixel((2, 2), (0, 0, 255, 255))
    im.save(tmp_path / "rgba.png")
    x = load_image(tmp_path / "rgba.png")
    assert x.shape == (40, 40, 3)
    assert x[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert x[1, 1].tolist() == [255, 127, 127]  # half red over white
    assert x[2, 2].tolist() == [0, 0, 255]  # opaque stays
    Image.new("LA", (40, 40), (0, 0)).save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png") == 255).all()
    p = Image.new("P", (40, 40), 0)
    p.putpalette([10, 20, 30] * 256)
    p.save(tmp_path / "transparent.gif", transparency=0)
    assert (load_image(tmp_path / "transparent.gif") == 255).all()
    p.save(tmp_path / "palette.png")
    assert load_image(tmp_path / "palette.png")[5, 5].tolist() == [10, 20, 30]
    Image.new("RGBA", (40, 40), (0, 200, 0, 255)).save(tmp_path / "rgba.webp", lossless=True)
    assert load_image(tmp_path / "rgba.webp")[5, 5].tolist() == [0, 200, 0]


def test_cmyk(tmp_path):
    Image.new("CMYK", (40, 40), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("CMYK", (40, 40), (255, 0, 255, 0)).save(tmp_path / "cmyk.tif")
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    red = load_image(tmp_path / "cmyk.jpg")[10, 10].astype(int)
    green = load_image(tmp_path / "cmyk.tif")[10, 10].astype(int)
    assert red[0] > 240 and red[1] < 15 and red[2] < 15
    assert green.tolist() == [0, 255, 0]


def test_exif_orientation_is_applied(tmp_path):
    img = np.zeros((60, 100, 3), np.uint8)
    img[:20, :30] = (255, 0, 0)  # red block top-left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(img).save(tmp_path / "rot.jpg", quality=95, exif=exif)
    x = load_image(tmp_path / "rot.jpg")
    assert x.shape == (100, 60, 3)  # upright: portrait
    assert x[5, 50, 0] > 200 and x[5, 5, 0] < 50  # the block went to the top-right
    # A real photo stored sideways with the tag comes out upright and its face is found.
    astro = _astronaut()
    sideways = np.ascontiguousarray(np.rot90(astro, k=1))  # rotated 90 degrees counter-clockwise
    (tmp_path / "astro.jpg").write_bytes(_jpeg_bytes(sideways, exif=exif))
    up = load_image(tmp_path / "astro.jpg")
    assert up.shape == astro.shape
    assert np.abs(up.astype(int) - astro.astype(int)).mean() < 3  # JPEG loss only
    lm = default_detector().detect(up)[0].landmarks
    assert lm[0, 0] < lm[1, 0] and lm[1, 1] < lm[3, 1]  # eyes level, above the mouth: upright
    # A broken EXIF block does not make a good image unreadable, and Pillow's warning about it is silenced.
    plain = _jpeg_bytes(img)
    payload = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x12\x01" * 20
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    (tmp_path / "bad_exif.jpg").write_bytes(plain[:2] + app1 + plain[2:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_image(tmp_path / "bad_exif.jpg").shape == (60, 100, 3)


def test_formats_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for ext, kw in (("png", {}), ("bmp", {}), ("tiff", {}), ("webp", {"lossless": True})):
        Image.fromarray(img).save(tmp_path / f"x.{ext}", **kw)
        np.testing.assert_array_equal(load_image(tmp_path / f"x.{ext}"), img)
    smooth = cv2.GaussianBlur(img, (0, 0), 4)
    Image.fromarray(smooth).save(tmp_path / "x.jpg", quality=98)
    assert np.abs(load_image(tmp_path / "x.jpg").astype(int) - smooth).mean() < 2


# ------------------------------------------------------------------------------------------- through the CLI


def _stderr_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def test_cli_reports_each_bad_file_in_one_line(tmp_path, capsys):
    bad = tmp_path / "in"
    expected = make_bad_files(bad)
    (bad / "empty_dir").mkdir()
    astro = _astronaut()
    save_image(bad / "good.png", astro)
    Image.fromarray(astro).convert("L").save(bad / "grey.png")
    Image.fromarray(astro).convert("CMYK").save(bad / "cmyk.jpg")
    Image.fromarray(astro).convert("RGBA").save(bad / "rgba.png")
    out = tmp_path / "out"
    rc = main(["align", str(bad), str(bad / "empty_dir"), str(tmp_path / "nope.jpg"), "--out", str(out),
               "--size", "64"])
    cap = capsys.readouterr()
    lines = _stderr_lines(cap.err)
    assert rc == 1
    assert "Traceback" not in cap.err
    for name, pattern in expected.items():
        hits = [ln for ln in lines if ln.startswith(str(bad / name) + ": ")]
        assert len(hits) == 1, (name, lines)
        assert re.search(pattern, hits[0]), hits[0]
    assert sum(ln.startswith(f"{bad / 'empty_dir'}: no image files found") for ln in lines) == 1
    assert sum(ln == f"{tmp_path / 'nope.jpg'}: file not found" for ln in lines) == 1
    assert lines[-1] == f"{len(expected) + 2} input(s) failed; see the lines above"
    assert len(lines) == len(expected) + 3  # nothing else on stderr
    # the good, grey, CMYK and RGBA versions of the photo were all aligned
    assert sorted(p.name for p in out.glob("*.png")) == ["cmyk.png", "good.png", "grey.png", "rgba.png"]
    assert "aligned 4 face(s) from 4 of 11 file(s)" in cap.out


def test_cli_subprocess_has_no_traceback(tmp_path):
    bad = tmp_path / "in"
    make_bad_files(bad)
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "pada.cli.main", "align", str(bad), str(bad / "x.jpg"),
           "--out", str(tmp_path / "o")]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr and "Error" not in res.stderr.replace("error", "")
    lines = _stderr_lines(res.stderr)
    assert len(lines) == 6 + 1 + 1, lines  # six bad files, the missing one, the summary
    assert all(ln.startswith(str(bad)) for ln in lines[:-1])
