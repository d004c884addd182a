"""``pada age``: errors in one line, labelled grids, several targets, whole photos with several faces,
folders (CSV, resume), lifespan -- with a tiny random pipeline."""

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
    assert line.count("train one with") == 1  # one hint, not the loader's and the command's
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
    assert main(["age", "--text", "x"]) == 1  # no photo: says how to use the shipped sample
    [line] = _err_lines(capsys)
    assert "give a photo" in line and "--example" in line
    for bad in (["--age", "old"], ["--age", "300"], ["--text", "two\nlines"], ["--text", " "]):
        assert main(["age", str(blank), *bad]) == 1
        [line] = _err_lines(capsys)
        assert line.startswith("error: --")
    with pytest.raises(SystemExit) as exc:
        main(["age", str(blank), "--text", "x", "--draw-spread", "2"])
    assert exc.value.code == 2 and "--draw-spread: must be at most 1" in _err_lines(capsys)[0]
    with pytest.raises(SystemExit) as exc:
        main(["age", str(blank), "--text", "x", "--tone-guard", "1"])
    assert exc.value.code == 2 and "--tone-guard: must be" in _err_lines(capsys)[0]
    with pytest.raises(SystemExit) as exc:
        main(["age", str(blank), "--text", "x", "--shift-gain", "60:2,40:1"])
    assert exc.value.code == 2 and "--shift-gain: shift_gain '60:2,40:1': ages must increase" in \
        _err_lines(capsys)[0]
    crop = tmp_path / "crop.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(crop)
    assert main(["age", str(crop), "--aligned", "--text", "x", "--draw-spread", "0.1", "--device", "cpu",
                 "--steps", "2", "--no-estimates", "--out", str(tmp_path / "o.png")]) == 1
    [line] = _err_lines(capsys)  # a model built without a spread says so
    assert "draw spread 0.1" in line and "no draw-spread basis" in line
    assert not (tmp_path / "o.png").exists()


def test_age_aligned_crop_writes_a_grid(tmp_path, capsys, tiny_pipeline):
    crop = tmp_path / "crop.png"
    Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)).save(crop)
    out = tmp_path / "out.png"
    rc = main(["age", str(crop), "--aligned", "--text", "woman's face in her forties", "-n", "3", "--out",
               str(out), "--device", "cpu", "--seed", "1", "--no-estimates", "--steps", "2"])
    assert rc == 0
    # labelled grid: a title line, then input + 3 results shown at 128 px with captions
    assert Image.open(out).size == (6 + 4 * 134, 6 + 20 + 128 + 18 + 6)
    printed = capsys.readouterr().out
    assert "wrote" in printed and "done in" in printed
    first = np.asarray(Image.open(out)).copy()
    assert main(["age", str(crop), "--aligned", "--text", "woman's face in her forties", "-n", "3", "--out",
                 str(out), "--device", "cpu", "--seed", "1", "--no-estimates", "--steps", "2"]) == 0
    assert np.array_equal(first, np.asarray(Image.open(out)))  # reproducible from the seed
    assert main(["age", str(crop), "--aligned", "--text", "woman's face in her forties", "-n", "3", "--out",
                 str(out), "--device", "cpu", "--seed", "1", "--eps", "0.5", "--no-estimates", "--steps",
                 "2"]) == 0
    assert not np.array_equal(first, np.asarray(Image.open(out)))  # ε reaches the PAE sampling
    assert main(["age", str(crop), "--aligned", "--text", "woman's face in her forties", "-n", "3", "--out",
                 str(out), "--device", "cpu", "--seed", "1", "--shift-gain", "2:3", "--no-estimates",
                 "--steps", "2"]) == 0
    assert not np.array_equal(first, np.asarray(Image.open(out)))  # the gain reaches the edit
    calls = []
    real_age = tiny_pipeline.age
    tiny_pipeline.age = lambda *a, **kw: calls.append(
        (kw.get("calibrate"), kw.get("tone_guard"), kw.get("hold_gender"))) or real_age(*a, **kw)
    try:
        assert main(["age", str(crop), "--aligned", "--text", "woman's face in her forties", "-n", "3",
                     "--out", str(out), "--device", "cpu", "--seed", "1", "--calibrate", "--no-estimates",
                     "--steps", "2", "--tone-guard", "0.1", "--no-hold-gender"]) == 0
        for flag in ("--no-calibrate", None):
            assert main(["age", str(crop), "--aligned", "--age", "40", "--out", str(out), "--device", "cpu",
                         "--no-estimates", "--steps", "2", *([flag] if flag else [])]) == 0
    finally:
        del tiny_pipeline.age
    low = []  # --low-diversity and --low-noise reach it (default: the model's share; a share implies it)
    tiny_pipeline.age = lambda *a, **kw: low.append((kw.get("low_diversity"), kw.get("low_noise"))) \
        or real_age(*a, **kw)
    try:
        for flags in (["--low-diversity", "--low-noise", "0.3"], ["--low-diversity"], ["--low-noise", "1"]):
            assert main(["age", str(crop), "--aligned", "--age", "40", "-n", "2", "--out", str(out),
                         "--device", "cpu", "--no-estimates", "--steps", "2", *flags]) == 0
    finally:
        del tiny_pipeline.age
    assert low == [(True, 0.3), (True, None), (True, 1.0)]
    caps = []  # --spread-cap reaches it (default: the model's)
    tiny_pipeline.age = lambda *a, **kw: caps.append(kw.get("spread_cap")) or real_age(*a, **kw)
    try:
        for flags in (["--spread-cap", "0.5"], []):
            assert main(["age", str(crop), "--aligned", "--age", "40", "-n", "2", "--out", str(out),
                         "--device", "cpu", "--no-estimates", "--steps", "2", *flags]) == 0
    finally:
        del tiny_pipeline.age
    assert caps == [0.5, None]
    for bad in ("-1", "11", "x"):
        with pytest.raises(SystemExit):
            main(["age", str(crop), "--aligned", "--age", "40", "--out", str(tmp_path / "c.png"),
                  "--spread-cap", bad])
    assert not (tmp_path / "c.png").exists()
    for bad in ("0", "1.5", "x"):
        with pytest.raises(SystemExit):
            main(["age", str(crop), "--aligned", "--age", "40", "--out", str(tmp_path / "l.png"),
                  "--low-diversity", "--low-noise", bad])
    assert not (tmp_path / "l.png").exists()
    # --calibrate / --no-calibrate, --tone-guard and --no-hold-gender reach the pipeline; without them, the
    # model's defaults (None; the calibration, the guard and the gender hold themselves:
    # tests/test_aging_pipeline.py, test_aging_tone_guard.py, test_aging_hold_gender.py)
    assert calls == [(True, 0.1, False), (False, None, None), (None, None, None)]
    # a model that carries no gender direction: --hold-gender fails as one line naming the problem
    assert main(["age", str(crop), "--aligned", "--age", "40", "--out", str(tmp_path / "g.png"), "--device",
                 "cpu", "--no-estimates", "--steps", "2", "--hold-gender"]) == 1
    assert not (tmp_path / "g.png").exists()


def test_inversion_steps_apart_from_render_steps(tmp_path, tiny_pipeline, monkeypatch):
    crop = tmp_path / "crop.png"
    Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(crop)
    inv, dec = [], []
    real_invert, real_decode = tiny_pipeline.invert, tiny_pipeline.decode
    monkeypatch.setattr(tiny_pipeline, "invert", lambda x, z, steps=None, **kw: inv.append(steps)
                        or real_invert(x, z, steps, **kw))
    monkeypatch.setattr(tiny_pipeline, "decode", lambda x_T, z, steps=None, **kw: dec.append(steps)  # noqa: N803
                        or real_decode(x_T, z, steps, **kw))
    args = ["age", str(crop), "--aligned", "--age", "60", "-n", "2", "--device", "cpu", "--no-estimates"]
    assert main([*args, "--out", str(tmp_path / "a.png"), "--steps", "3", "--inversion-steps", "2"]) == 0
    assert inv == [2] and dec == [3, 3]  # the results, then the input for the detail transfer (64 px crop)
    assert main([*args, "--out", str(tmp_path / "b.png"), "--steps", "3"]) == 0
    assert inv[-1] == 3  # default: the render's steps
    assert main([*args, "--out", str(tmp_path / "c.png"), "--lifespan", "--frames", "1", "--steps", "2",
                 "--inversion-steps", "4", "--gender", "female"]) == 0
    assert inv[-1] == 4 and dec[-1] == 2
    seen = []  # --calibrate and --relative-detail reach the lifespan too (one calibration per anchor)
    real_lifespan = tiny_pipeline.lifespan
    monkeypatch.setattr(tiny_pipeline, "lifespan", lambda *a, **kw: seen.append(
        (kw.get("calibrate"), kw.get("relative_detail"))) or real_lifespan(*a, **kw))
    for flags, want in ((["--calibrate"], (True, True)), (["--no-calibrate", "--no-relative-detail"],
                                                          (False, False))):
        assert main([*args, "--out", str(tmp_path / "d.png"), "--lifespan", "--frames", "1", "--steps", "2",
                     "--gender", "female", *flags]) == 0
        assert seen[-1] == want


def test_young_cap_option_reaches_age_and_lifespan(tmp_path, tiny_pipeline, monkeypatch, capsys):
    crop = tmp_path / "crop.png"
    Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(crop)
    seen = []
    real_age, real_lifespan = tiny_pipeline.age, tiny_pipeline.lifespan
    monkeypatch.setattr(tiny_pipeline, "age", lambda *a, **kw: seen.append(("age", kw.get("young_cap")))
                        or real_age(*a, **kw))
    monkeypatch.setattr(tiny_pipeline, "lifespan", lambda *a, **kw: seen.append(
        ("life", kw.get("young_cap"))) or real_lifespan(*a, **kw))
    args = ["age", str(crop), "--aligned", "--age", "10", "-n", "1", "--device", "cpu", "--no-estimates",
            "--steps", "2", "--calibrate"]
    assert main([*args, "--out", str(tmp_path / "a.png"), "--young-cap", "0.25"]) == 0
    assert main([*args, "--out", str(tmp_path / "b.png")]) == 0
    assert main([*args, "--out", str(tmp_path / "c.png"), "--lifespan", "--frames", "1", "--gender", "male",
                 "--young-cap", "0"]) == 0
    assert seen == [("age", 0.25), ("age", None), ("life", 0.0)]  # None: the model's default
    capsys.readouterr()
    for bad in ("-0.1", "1.6", "x"):
        with pytest.raises(SystemExit) as exc:
            main([*args, "--out", str(tmp_path / "d.png"), "--young-cap", bad])
        assert exc.value.code == 2 and "--young-cap" in _err_lines(capsys)[0]
    assert not (tmp_path / "d.png").exists()


def test_sampler_option(tmp_path, tiny_pipeline, monkeypatch, capsys):
    from pada.diffusion import SAMPLERS

    crop = tmp_path / "crop.png"
    Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(crop)
    seen = []
    real_invert, real_decode = tiny_pipeline.invert, tiny_pipeline.decode
    monkeypatch.setattr(tiny_pipeline, "invert", lambda *a, sampler=None, **kw: seen.append(("inv", sampler))
                        or real_invert(*a, sampler=sampler, **kw))
    monkeypatch.setattr(tiny_pipeline, "decode", lambda *a, sampler=None, **kw: seen.append(("dec", sampler))
                        or real_decode(*a, sampler=sampler, **kw))
    args = ["age", str(crop), "--aligned", "--age", "60", "-n", "2", "--device", "cpu", "--no-estimates",
            "--steps", "3"]
    assert main([*args, "--out", str(tmp_path / "a.png"), "--sampler", "ddim"]) == 0
    assert seen == [("inv", "ddim"), ("dec", "ddim"), ("dec", "ddim")]  # results, detail transfer's input
    assert main([*args, "--out", str(tmp_path / "b.png")]) == 0
    assert seen[-3:] == [("inv", "multistep")] + [("dec", "multistep")] * 2  # the default: multistep
    assert main([*args, "--out", str(tmp_path / "c.png"), "--lifespan", "--frames", "1", "--gender", "male",
                 "--sampler", "multistep"]) == 0
    assert seen[-3:] == [("inv", "multistep")] + [("dec", "multistep")] * 2  # frames, transfer's input
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "d.png"), "--sampler", "dpm"])
    assert "invalid choice: 'dpm'" in capsys.readouterr().err
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    choices = {a.dest: a.choices for a in age_cli.add_parser(sub)._actions}
    assert set(choices["sampler"]) == set(SAMPLERS)  # the CLI's list (no torch import) is the registry's


@pytest.mark.slow
def test_age_photo_with_paste_back_and_lifespan(tmp_path, photo, tiny_pipeline, capsys):
    out = tmp_path / "aged.png"
    assert main(["age", str(photo), "--ref", str(photo), "-n", "2", "--out", str(out), "--paste-back",
                 "--device", "cpu", "--no-estimates"]) == 0
    assert Image.open(out).size == (6 + 4 * 262, 332)  # input, reference, 2 results, at --out-size 256
    pasted = sorted(tmp_path.glob("aged_pasted_*.png"))
    assert len(pasted) == 2 and Image.open(pasted[0]).size == Image.open(photo).size
    life = tmp_path / "life.png"
    seen, genders = [], []
    orig = tiny_pipeline.lifespan
    tiny_pipeline.lifespan = lambda *a, **k: (seen.append(k["space"]) or genders.append(k["gender"])
                                              or orig(*a, **k))
    capsys.readouterr()
    assert main(["age", str(photo), "--lifespan", "--frames", "1", "--out", str(life),
                 "--device", "cpu"]) == 0
    assert Image.open(life).size == (6 + 7 * 262, 332) and life.with_suffix(".gif").is_file()
    # no --gender: the estimate the anchors were written for is named, with the hint to pass it
    note = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("note: the lifespan")]
    assert genders[0] in ("female", "male") and len(note) == 1 and f"({genders[0]})" in note[0]
    assert main(["age", str(photo), "--lifespan", "--frames", "1", "--out", str(life), "--device", "cpu",
                 "--space-lifespan", "--gender", "female"]) == 0
    assert seen == [None, True]  # the model's default unless asked
    assert genders[1] == "female" and "note: the lifespan" not in capsys.readouterr().err


def test_tiny_pipeline_output_is_in_range(tiny_pipeline):
    r = tiny_pipeline.age(torch.zeros(3, 32, 32), text="a", n=1)
    assert float(r.images.abs().max()) <= 1.0


def test_several_targets_give_one_labelled_row_each(tmp_path, capsys, tiny_pipeline):
    crop = tmp_path / "crop.png"
    Image.fromarray((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)).save(crop)
    out = tmp_path / "rows.png"
    assert main(["age", str(crop), "--aligned", "--age", "10,70", "--text", "a very old face", "-n", "2",
                 "--gender", "female", "--out", str(out), "--device", "cpu", "--no-estimates", "--steps",
                 "2"]) == 0
    assert Image.open(out).size == (6 + 3 * 134, 6 + 3 * 172)  # 3 rows: input + 2 results each
    # age 10 and age 70 reach the pipeline as different texts (the group descriptions)
    seen = []
    orig = tiny_pipeline.age
    tiny_pipeline.age = lambda *a, **k: seen.append(k["text"]) or orig(*a, **k)
    assert main(["age", str(crop), "--aligned", "--age", "10", "--age", "70", "-n", "1", "--gender", "male",
                 "--out", str(out), "--device", "cpu", "--no-estimates", "--steps", "2"]) == 0
    assert seen == ["man's face in his tens", "man's face in his sixties"]


def test_example_photo_runs_verbatim(tmp_path, capsys, tiny_pipeline):
    out = tmp_path / "ex.png"
    assert main(["age", "--example", "--age", "70", "-n", "1", "--out", str(out), "--device", "cpu",
                 "--no-estimates", "--steps", "2"]) == 0
    assert out.is_file()
    assert "grace_hopper.jpg: face 0: box" in capsys.readouterr().out


@pytest.fixture(scope="module")
def group_photo(tmp_path_factory):
    """Two public-domain portraits side by side (composed at test time): a photo with two faces."""
    from pada.faces import samples

    a, b = samples.astronaut(), samples.grace_hopper()[44:556]
    img = np.concatenate([a, np.full((512, 40, 3), 90, np.uint8), b], axis=1)
    path = tmp_path_factory.mktemp("group") / "group.png"
    Image.fromarray(img).save(path)
    return path, img


@pytest.mark.slow
def test_all_faces_whole_photo(tmp_path, capsys, tiny_pipeline, group_photo):
    path, img = group_photo
    out = tmp_path / "g.png"
    assert main(["age", str(path), "--all-faces", "--paste-back", "--age", "70", "-n", "1", "--out", str(out),
                 "--device", "cpu", "--steps", "2"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    faces = [ln for ln in printed.splitlines() if ": face " in ln]
    assert len(faces) == 2 and all("est. age" in ln and "box" in ln for ln in faces)  # input age / gender
    assert captured.err.count("estimated gender") == 1  # the hint to pass --gender, once
    assert (tmp_path / "g_face0.png").is_file() and (tmp_path / "g_face1.png").is_file()
    whole = np.asarray(Image.open(tmp_path / "g_pasted_0.png"))
    assert whole.shape == img.shape
    # both faces changed, the strip between them and the photo's corners untouched
    from pada.faces.align import align_image

    boxes = [f.face.box.astype(int) for f in align_image(img, 32, all_faces=True)]
    assert len(boxes) == 2
    for x, y, w, h in boxes:  # (the photo's own detail is kept under the edit: --out-size, default 256)
        assert np.abs(whole[y:y + h, x:x + w].astype(int) - img[y:y + h, x:x + w]).mean() > 0.5
    np.testing.assert_array_equal(whole[:, 512:552], img[:, 512:552])
    np.testing.assert_array_equal(whole[-60:], img[-60:])
    # --max-faces 1 keeps the largest only
    assert main(["age", str(path), "--all-faces", "--max-faces", "1", "--age", "70", "-n", "1", "--out",
                 str(tmp_path / "one.png"), "--device", "cpu", "--no-estimates", "--steps", "2"]) == 0
    assert (tmp_path / "one_face0.png").is_file() and not (tmp_path / "one_face1.png").exists()


def test_folder_mode_csv_bad_files_and_resume(tmp_path, capsys, tiny_pipeline, monkeypatch):
    import csv

    src = tmp_path / "in"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):  # aligned crops: fast, no detector
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(src / name)
    (src / "broken.png").write_bytes(b"not a png")
    (src / "notes.txt").write_text("ignored: not an image extension")
    out = tmp_path / "out"
    args = ["age", str(src), "--aligned", "--age", "30,70", "-n", "2", "--out", str(out), "--device", "cpu",
            "--no-estimates", "--steps", "2"]
    # an interruption after the first photo (Ctrl-C / kill): what is in the CSV stays done
    calls = []
    orig_age = age_cli._Job.age

    def interrupted(self, path, dest):
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return orig_age(self, path, dest)

    monkeypatch.setattr(age_cli._Job, "age", interrupted)
    assert main(args) == 130  # "interrupted"
    monkeypatch.setattr(age_cli._Job, "age", lambda self, path, dest: calls.append(path.name)
                        or orig_age(self, path, dest))
    with open(out / "results.csv", "ab") as fh:  # a row cut short by the kill
        fh.write(b"b.png,0,,")
    capsys.readouterr()
    assert main(args) == 1  # broken.png failed: non-zero at the end, after the others
    err = _err_lines(capsys)
    assert len([ln for ln in err if ln.startswith("error:")]) == 2  # the file's line and the summary
    assert any("broken.png" in ln for ln in err)
    assert calls == ["a.png", "b.png", "b.png", "broken.png", "c.png"]  # a.png not redone
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert sorted({r["file"] for r in rows}) == ["a.png", "b.png", "c.png"]
    assert len(rows) == 3 * 2 * 2  # photos x targets x results
    assert {r["target"] for r in rows} == {"age 30", "age 70"}
    assert all((out / f"{s}.png").is_file() for s in "abc")
    calls.clear()
    assert main(args) == 1 and calls == ["broken.png"]  # everything else done


def test_folder_mode_marks_broken_results_and_resumes_an_old_results_file(tmp_path, capsys, tiny_pipeline):
    import csv

    from pada.evaluation.scores import STRUCTURE_LIMIT

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(src / name)
    # a results file of the version before the structure column, with a.png done
    old = ",".join(age_cli.CSV_FIELDS_V1)
    (out / "results.csv").write_text(f"{old}\na.png,0,,,,age 70,,0,,\n", encoding="utf-8")
    def args(dest):
        return ["age", str(src), "--aligned", "--age", "70", "-n", "2", "--out", str(dest), "--device", "cpu",
                "--no-estimates", "--steps", "2"]

    assert main(args(out)) == 0
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    assert [r["file"] for r in rows] == ["a.png", "b.png", "b.png"]
    assert "structure" not in rows[0]  # the old file keeps its own columns
    # a new file gets the structure score of every result, and the note counts the marked ones
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    assert main(args(fresh)) == 0
    err = capsys.readouterr().err
    rows = list(csv.DictReader(open(fresh / "results.csv", encoding="utf-8")))
    scores = [float(r["structure"]) for r in rows]
    assert len(scores) == 2 * 2 and all(0.0 <= v <= 2.0 for v in scores)
    broken = sum(v > STRUCTURE_LIMIT for v in scores)
    assert (f"note: {broken} result(s) marked '!'" in err) == (broken > 0)
