"""``pada align``: folders, --all-faces, transforms.json good enough for a later paste-back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pada.cli.main import main
from pada.errors import PadaError
from pada.faces import AlignedFace, load_image, paste_back, samples, save_image


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    try:
        c = samples.celeba([1, 2, 5])
        return {"astronaut": samples.astronaut(), "c1": c[0], "c2": c[1], "c5": c[2]}
    except PadaError as exc:
        pytest.skip(f"sample photos unavailable: {exc}")


def _read_transforms(out) -> dict:
    data = json.loads((out / "transforms.json").read_text())
    assert data["format"] == "pada-align-transforms" and data["version"] == 1
    return data["files"]


def test_folder_recursive_and_transforms_paste_back(tmp_path, photos, capsys):
    src = tmp_path / "photos"
    save_image(src / "astro.png", photos["astronaut"])
    save_image(src / "celeb" / "c1.jpg", photos["c1"])
    save_image(src / "celeb" / "deep" / "c2.webp", photos["c2"])
    save_image(src / "flat.png", np.full((80, 80, 3), 90, np.uint8))
    (src / "notes.txt").write_text("ignored: not an image extension")
    (src / ".hidden").mkdir()
    save_image(src / ".hidden" / "skip.png", photos["c5"])
    out = tmp_path / "aligned"
    rc = main(["align", str(src), "--out", str(out)])  # 256: not smaller than these faces, so no detail lost
    cap = capsys.readouterr()
    assert rc == 1  # flat.png has no face
    expected = [f"{src / 'flat.png'}: no face found", "1 input(s) failed; see the lines above"]
    assert cap.err.splitlines() == expected
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert written == ["astro.png", "celeb/c1.png", "celeb/deep/c2.png"]
    files = _read_transforms(out)
    assert sorted(files) == written
    for key, rec in files.items():
        crop = load_image(out / key)
        assert crop.shape == (256, 256, 3)
        # A later paste-back from the record alone: the unchanged crop reproduces the photo's face.
        original = load_image(rec["source"])
        a = AlignedFace.from_record(rec)
        back, mask = paste_back(original, a, crop, return_mask=True)
        inner = mask >= 0.999
        assert inner.sum() > 1000
        assert np.abs(back[inner].astype(int) - original[inner]).mean() < 3, key
        np.testing.assert_array_equal(back[mask == 0], original[mask == 0])
        assert len(rec["landmarks"]) == 5 and rec["face_index"] == 0 and rec["size"] == 256


def test_all_faces_on_two_face_image(tmp_path, photos, capsys):
    two = np.concatenate([photos["c1"], photos["c5"]], axis=1)  # two CelebA photos side by side
    save_image(tmp_path / "two.png", two)
    out = tmp_path / "out"
    assert main(["align", str(tmp_path / "two.png"), "--out", str(out), "--all-faces", "--size", "64"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["two_0.png", "two_1.png"]
    files = _read_transforms(out)
    assert [files[k]["face_index"] for k in ("two_0.png", "two_1.png")] == [0, 1]
    # the two crops come from the two halves of the picture
    xs = sorted(files[k]["box"][0] + files[k]["box"][2] / 2 for k in files)
    assert xs[0] < 178 < xs[1]
    # largest first
    areas = [files[k]["box"][2] * files[k]["box"][3] for k in ("two_0.png", "two_1.png")]
    assert areas[0] >= areas[1]
    # default: only the largest face, no suffix; earlier records in the folder are kept
    assert main(["align", str(tmp_path / "two.png"), "--out", str(out), "--size", "64"]) == 0
    assert sorted(_read_transforms(out)) == ["two.png", "two_0.png", "two_1.png"]
    np.testing.assert_array_equal(load_image(out / "two.png"), load_image(out / "two_0.png"))
    assert "aligned 1 face(s) from 1 of 1 file(s)" in capsys.readouterr().out


def test_same_stem_from_two_folders_and_jpg_output(tmp_path, photos):
    save_image(tmp_path / "a" / "x.png", photos["c1"])
    save_image(tmp_path / "b" / "x.png", photos["c2"])
    out = tmp_path / "out"
    rc = main(["align", str(tmp_path / "a" / "x.png"), str(tmp_path / "b" / "x.png"), "--out", str(out),
               "--ext", "jpg", "--size", "96"])
    assert rc == 0
    files = _read_transforms(out)
    assert sorted(files) == ["x-2.jpg", "x.jpg"]
    assert files["x.jpg"]["source"].endswith("a/x.png") and files["x-2.jpg"]["source"].endswith("b/x.png")
    assert load_image(out / "x-2.jpg").shape == (96, 96, 3)


def test_bad_transforms_file_and_bad_options(tmp_path, photos, capsys):
    save_image(tmp_path / "c.png", photos["c1"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "transforms.json").write_text("{not json")
    assert main(["align", str(tmp_path / "c.png"), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {out / 'transforms.json'}: existing transforms file is unreadable")
    assert "\n" not in err and (out / "transforms.json").read_text() == "{not json"  # not overwritten
    assert main(["align", str(tmp_path / "c.png"), "--out", str(tmp_path / "c.png")]) == 1
    assert "exists and is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["align", str(tmp_path / "c.png"), "--out", str(tmp_path / "o2"), "--size", "4"])
    assert exc.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "argument --size: must be at least 8, got 4" in line
