"""FFHQ-AT relabeling: the labelling rule, the table, streaming, resuming after interruption, the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from pada.data import labels as L
from pada.data.groups import AGE_GROUPS, DESCRIPTIONS, description, group_of_age
from pada.errors import PadaError
from test_data_fakes import BrightnessAge, RedBlueGender, expected_age, write_images


def _run(root, out=None, **kw):
    kw.setdefault("age_critic", BrightnessAge())
    kw.setdefault("gender_critic", RedBlueGender())
    kw.setdefault("progress", False)
    kw.setdefault("batch_size", 4)
    kw.setdefault("size", 32)
    return L.relabel(root, out, **kw)


@pytest.mark.parametrize("age", [0.0, 5.4, 5.6, 15.49, 15.51, 25.49, 25.51, 35.4, 50.6, 70.4, 70.6, 99.0])
def test_label_row_follows_nearest_predefined_age(age):
    r = L.label_row("x.png", age, p_male=0.8, det_score=0.93)
    g = group_of_age(age)
    # the nearest pre-defined age (anchor) must be the one chosen ...
    dists = [abs(age - a.anchor) for a in AGE_GROUPS]
    assert r["group"] == int(np.argmin(dists)) == g.index
    # ... which coincides with the paper's group intervals
    assert g.contains(age)
    assert r["gender"] == "male" and r["gender_conf"] == pytest.approx(0.8)
    assert r["description"] == description(g, "male") and r["description"] in DESCRIPTIONS
    assert r["group_name"] == g.name and r["det_score"] == pytest.approx(0.93)


def test_label_row_gender_and_bad_age():
    r = L.label_row("x.png", 30.0, p_male=0.2)
    assert r["gender"] == "female" and r["gender_conf"] == pytest.approx(0.8)
    assert r["description"] == "woman's face in her thirties" and r["det_score"] is None
    with pytest.raises(ValueError, match="x.png"):
        L.label_row("x.png", float("nan"), 0.5)


def test_relabel_labels_every_image_correctly(tmp_path):
    imgs = write_images(tmp_path / "faces", 10, subdirs=True)
    res = _run(tmp_path / "faces")
    assert res.table == tmp_path / "faces" / "labels.csv"
    assert (res.total, res.already, res.labelled, res.bad) == (10, 0, 10, [])
    rows = L.load_labels(res.table)
    assert [r["file"] for r in rows] == sorted(imgs)  # sorted, relative POSIX paths, once each
    for r in rows:
        img = imgs[r["file"]]
        assert r["age"] == pytest.approx(expected_age(img), abs=0.6)  # resize to 32 changes the mean a little
        g = group_of_age(r["age"])
        assert r["group"] == g.index and r["description"] == description(g, r["gender"])
        red_minus_blue = img[..., 0].mean() - img[..., 2].mean()
        if abs(red_minus_blue) > 5:
            assert r["gender"] == ("male" if red_minus_blue > 0 else "female")
        assert 0.5 <= r["gender_conf"] <= 1.0 and r["det_score"] is None
    assert not (tmp_path / "faces" / "labels.csv.part").exists()


def test_relabel_with_detector_and_parquet(tmp_path):
    from test_data_fakes import FixedLandmarkDetector

    write_images(tmp_path / "f", 5)
    out = tmp_path / "t" / "labels.parquet"
    res = _run(tmp_path / "f", out, detector_factory=FixedLandmarkDetector)
    rows = L.load_labels(out)
    assert res.table == out and len(rows) == 5
    assert all(r["det_score"] == pytest.approx(0.9) for r in rows)
    # Parquet and CSV hold the same rows
    csv_rows = L.load_labels(L.write_labels(tmp_path / "copy.csv", rows))
    assert [(r["file"], round(r["age"], 2), r["group"]) for r in csv_rows] == \
        [(r["file"], round(r["age"], 2), r["group"]) for r in rows]


@pytest.mark.slow
def test_relabel_with_worker_processes_matches_in_process(tmp_path):
    import cv2

    from pada.faces.detect import FaceDetector
    from test_data_fakes import FixedLandmarkDetector

    # Use YuNet and OpenCV's thread pool in this process first: a process in that state cannot be
    # forked (the forked DataLoader workers deadlocked in cv2.setNumThreads; reproduced), which is why
    # the loaders spawn their workers.
    det = FaceDetector()
    for _ in range(3):
        det.detect(np.full((256, 256, 3), 128, np.uint8))
        cv2.warpAffine(np.zeros((2048, 2048, 3), np.uint8), np.eye(2, 3), (1024, 1024), flags=cv2.INTER_CUBIC)
    write_images(tmp_path / "f", 9)
    a = L.load_labels(_run(tmp_path / "f", tmp_path / "a.csv", num_workers=0,
                           detector_factory=FixedLandmarkDetector).table)
    b = L.load_labels(_run(tmp_path / "f", tmp_path / "b.csv", num_workers=2, batch_size=2,
                           detector_factory=FixedLandmarkDetector).table)
    assert a == b and all(r["det_score"] == pytest.approx(0.9) for r in b)


def test_interrupted_relabel_resumes_without_loss_or_duplicates(tmp_path):
    write_images(tmp_path / "f", 22)
    reference = L.load_labels(_run(tmp_path / "f", tmp_path / "ref.csv").table)

    out = tmp_path / "labels.csv"
    first = BrightnessAge(fail_on_call=4)  # Ctrl-C while the 4th batch is being labelled
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "f", out, age_critic=first)
    journal = tmp_path / "labels.csv.part"
    assert not out.exists() and journal.exists()
    saved = L.load_labels(journal)
    assert len(saved) == 3 * 4  # the three finished batches, nothing of the interrupted one

    # a crash in the middle of a write leaves a torn last line: it must be cut off, not parsed or kept
    with open(journal, "a") as fh:
        fh.write("00021.png,33.3")

    second = BrightnessAge()
    res = _run(tmp_path / "f", out, age_critic=second)
    assert res.already == 12 and res.labelled == 10
    assert second.images_seen == 10  # no image labelled twice
    rows = L.load_labels(out)
    files = [r["file"] for r in rows]
    assert len(files) == len(set(files)) == 22
    assert rows == reference  # same table as one uninterrupted run
    assert not journal.exists()

    # running again does no work at all and leaves the table as it is
    third = BrightnessAge()
    res = _run(tmp_path / "f", out, age_critic=third)
    assert (res.already, res.labelled, third.calls) == (22, 0, 0)
    assert L.load_labels(out) == reference


def test_relabel_stopped_early_then_new_files_added(tmp_path):
    write_images(tmp_path / "f", 8)
    res = _run(tmp_path / "f", max_batches=1)
    assert res.table is None and res.labelled == 4
    res = _run(tmp_path / "f")
    assert (res.already, res.labelled) == (4, 4) and res.table is not None
    # more images arrive later: only they are labelled, the table grows
    write_images(tmp_path / "f" / "more", 3, seed=5)
    crit = BrightnessAge()
    res = _run(tmp_path / "f", age_critic=crit)
    assert (res.already, res.labelled, crit.images_seen) == (8, 3, 3)
    assert len(L.load_labels(res.table)) == 11


def test_unreadable_images_are_listed_not_fatal(tmp_path):
    write_images(tmp_path / "f", 4)
    (tmp_path / "f" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    res = _run(tmp_path / "f")
    assert res.labelled == 4 and len(res.bad) == 1 and res.bad[0].startswith("broken.png: ")
    assert res.table is not None and len(L.load_labels(res.table)) == 4
    assert "broken.png" in (tmp_path / "f" / "labels.csv.errors.txt").read_text()


def test_bad_inputs_give_one_line_errors(tmp_path):
    with pytest.raises(PadaError, match="not a folder"):
        _run(tmp_path / "missing")
    write_images(tmp_path / "f", 2)
    with pytest.raises(PadaError, match=r"\.txt: labels table must end in \.csv or \.parquet"):
        _run(tmp_path / "f", tmp_path / "labels.txt")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,value\na,1\n")
    with pytest.raises(PadaError, match="bad.csv: not a labels table"):
        L.load_labels(bad)
    with pytest.raises(PadaError, match="no labels table"):
        L.find_table(tmp_path / "f")

    class WrongGender:
        def __call__(self, x):
            return torch.zeros(x.shape[0], 3)

    with pytest.raises(PadaError, match=r"expected \(B, 2\)"):
        _run(tmp_path / "f", gender_critic=WrongGender())


def test_table_is_plain_csv_with_the_documented_columns(tmp_path):
    write_images(tmp_path / "f", 3)
    res = _run(tmp_path / "f")
    with open(res.table, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        body = list(reader)
    assert tuple(header) == L.LABEL_COLUMNS and len(body) == 3


def test_cli_label(tmp_path, monkeypatch, capsys):
    from pada.cli.main import main

    write_images(tmp_path / "f", 6)
    monkeypatch.setattr(L, "load_label_critics", lambda *a, **k: (BrightnessAge(), RedBlueGender()))
    rc = main(["label", str(tmp_path / "f"), "--no-detect", "--quiet", "--workers", "0", "--batch-size", "4",
               "--size", "32", "--json"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 6 and summary["labelled_now"] == 6 and summary["images_per_second"] > 0
    assert len(L.load_labels(tmp_path / "f")) == 6
    rc = main(["label", str(tmp_path / "nothing-here")])
    assert rc == 1 and "nothing-here: not a folder" in capsys.readouterr().err


def test_unknown_critic_name():
    with pytest.raises(PadaError, match="unknown critic 'foo'"):
        L.load_label_critics("foo")


@pytest.mark.slow
def test_relabel_killed_hard_resumes(tmp_path):
    """SIGKILL (no Python cleanup at all) in the middle of a run: the rerun loses and duplicates nothing."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    write_images(tmp_path / "f", 40)
    reference = L.load_labels(_run(tmp_path / "f", tmp_path / "ref.csv").table)
    script = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_data_fakes import BrightnessAge, RedBlueGender
from pada.data.labels import relabel
class Slow(BrightnessAge):
    def __call__(self, x):
        time.sleep(0.3)
        return super().__call__(x)
relabel({str(tmp_path / "f")!r}, {str(tmp_path / "out.csv")!r}, age_critic=Slow(),
        gender_critic=RedBlueGender(), size=32, batch_size=4, progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    journal = tmp_path / "out.csv.part"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if journal.exists() and journal.read_text().count("\n") >= 1 + 8:  # header + two batches
                break
            if proc.poll() is not None:
                pytest.fail(f"labelling process ended early with status {proc.returncode}")
            time.sleep(0.05)
        else:
            pytest.fail("no rows written within 60 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (tmp_path / "out.csv").exists()
    saved = {r["file"] for r in L.load_labels(journal)}
    assert 8 <= len(saved) < 40
    crit = BrightnessAge()
    res = _run(tmp_path / "f", tmp_path / "out.csv", age_critic=crit)
    assert res.already == len(saved) and crit.images_seen == 40 - len(saved)
    assert L.load_labels(tmp_path / "out.csv") == reference
