"""``pada age``: errors in one line, grids / lifespan / paste-back with a tiny random pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import pada.cli.age as age_cli
from pada.aging.pipeline import AgingPipeline
from pada.aging.testing import TinyVL
from pada.cli.main import main
from test_aging_helpers import one_thread, tiny_diffae, tiny_model


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


@pytest.fixture
def tiny_pipeline(monkeypatch):
    pipe = AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=2)
    monkeypatch.setattr(age_cli, "load_pipeline", lambda model, device, steps, trust_pickle=False: pipe)
    return pipe


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    from pada.faces import samples

    try:
        img = samples.grace_hopper()
    except Exception as exc:  # noqa: BLE001 - sample photo unavailable
        pytest.skip(f"sample photo unavailable: {exc}")
    path = tmp_path_factory.mktemp("photo") / "hopper.png"
    Image.fromarray(img).save(path)
    return path


def _err_lines(capsys) -> list[str]:
    return [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


def test_no_trained_model_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(age_cli, "DEFAULT_MODEL", "pada-not-installed")  # a default whose file is absent
    f = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(f)
    assert main(["age", str(f), "--text", "man's face in his sixties", "--device", "cpu"]) == 1
    [line] = _err_lines(capsys)
    assert line.startswith("error: no trained PADA model") and "pada train pada" in line
    missing = str(tmp_path / "m.safetensors")
    assert main(["age", str(f), "--text", "x", "--model", missing, "--device", "cpu"]) == 1
    [line] = _err_lines(capsys)
    assert "m.safetensors" in line


def test_input_errors_are_one_line(tmp_path, capsys, tiny_pipeline):
    assert main(["age", str(tmp_path / "missing.jpg"), "--text", "x"]) == 1
    assert "missing.jpg: no such file" in _err_lines(capsys)[0]
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 120, 3), 128, np.uint8)).save(blank)
    assert main(["age", str(blank), "--text", "x", "--device", "cpu"]) == 1
    [line] = _err_lines(capsys)
    assert line == f"error: {blank}: no face found"
    assert main(["age", str(blank)]) == 1
    assert "give a target" in _err_lines(capsys)[0]


def test_age_aligned_crop_writes_a_grid(tmp_path, capsys, tiny_pipeline):
    crop = tmp_path / "crop.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(crop)
    out = tmp_path / "out.png"
    rc = main(["age", str(crop), "--aligned", "--text", "woman's face in her forties", "-n", "3", "--out",
               str(out), "--device", "cpu", "--seed", "1"])
    assert rc == 0
    assert Image.open(out).size == (4 * 34 + 2, 36)  # input + 3 results at 32 px, 2 px padding
    printed = capsys.readouterr().out
    assert "wrote" in printed and "done in" in printed
    first = np.asarray(Image.open(out)).copy()
    assert main(["age", str(crop), "--aligned", "--text", "woman's face in her forties", "-n", "3", "--out",
                 str(out), "--device", "cpu", "--seed", "1"]) == 0
    assert np.array_equal(first, np.asarray(Image.open(out)))  # reproducible from the seed
    assert main(["age", str(crop), "--aligned", "--text", "woman's face in her forties", "-n", "3", "--out",
                 str(out), "--device", "cpu", "--seed", "1", "--eps", "0.5"]) == 0
    assert not np.array_equal(first, np.asarray(Image.open(out)))  # ε reaches the PAE sampling


@pytest.mark.slow
def test_age_photo_with_paste_back_and_lifespan(tmp_path, photo, tiny_pipeline):
    out = tmp_path / "aged.png"
    assert main(["age", str(photo), "--ref", str(photo), "-n", "2", "--out", str(out), "--paste-back",
                 "--device", "cpu"]) == 0
    assert Image.open(out).size == (4 * 34 + 2, 36)  # input, reference, 2 results
    pasted = sorted(tmp_path.glob("aged_pasted_*.png"))
    assert len(pasted) == 2 and Image.open(pasted[0]).size == Image.open(photo).size
    life = tmp_path / "life.png"
    assert main(["age", str(photo), "--lifespan", "--frames", "1", "--out", str(life),
                 "--device", "cpu"]) == 0
    assert Image.open(life).size == (7 * 34 + 2, 36) and life.with_suffix(".gif").is_file()


def test_tiny_pipeline_output_is_in_range(tiny_pipeline):
    r = tiny_pipeline.age(torch.zeros(3, 32, 32), text="a", n=1)
    assert float(r.images.abs().max()) <= 1.0
