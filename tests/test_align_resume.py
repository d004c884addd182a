"""``pada align`` writes its paste-back records as it goes: a kill -9 loses none, and a rerun resumes.

Like the label test (tests/test_label.py), the run is slowed down (a sleep in the detector) and killed with
SIGKILL, so no Python cleanup runs at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image

from pada.cli.align import JOURNAL_FILE, TRANSFORMS_FILE
from pada.cli.main import main
from pada.errors import PadaError
from pada.faces import samples

N_FILES = 12


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    try:
        img = samples.grace_hopper()
    except PadaError as exc:  # pragma: no cover
        pytest.skip(f"sample photo unavailable: {exc}")
    folder = tmp_path_factory.mktemp("photos")
    small = Image.fromarray(img).resize((img.shape[1] // 2, img.shape[0] // 2))
    for i in range(N_FILES):
        small.rotate(i - N_FILES // 2, fillcolor=(255, 255, 255)).save(folder / f"p{i:02d}.png")
    return folder


def _journal_entries(path: Path) -> list[dict]:
    out = []
    for line in path.read_text().splitlines()[1:]:
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def _transforms(out: Path) -> dict:
    return json.loads((out / TRANSFORMS_FILE).read_text())["files"]


@pytest.mark.slow
def test_align_killed_hard_loses_no_record_and_resumes(tmp_path, photos, capsys, monkeypatch):
    ref = tmp_path / "ref"
    assert main(["align", str(photos), "--out", str(ref), "--size", "64"]) == 0
    reference = _transforms(ref)
    assert len(reference) == N_FILES and not (ref / JOURNAL_FILE).exists()

    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parents[1] / "src")!r})
        from pada.faces.detect import FaceDetector
        real = FaceDetector.detect
        def slow(self, img, *a, **k):
            time.sleep(0.25)
            return real(self, img, *a, **k)
        FaceDetector.detect = slow
        from pada.cli.main import main
        sys.exit(main(["align", {str(photos)!r}, "--out", {str(out)!r}, "--size", "64"]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
    journal = out / JOURNAL_FILE
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if journal.exists() and len(_journal_entries(journal)) >= 3:
                break
            if proc.poll() is not None:
                pytest.fail(f"align ended early with status {proc.returncode}")
            time.sleep(0.05)
        else:
            pytest.fail("no record written within 120 s")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    # Every crop that finished before the kill has its record; at most the crop being written lacks one.
    entries = _journal_entries(journal)
    recorded = {k for e in entries for k in e["records"]}
    crops = {p.name for p in out.glob("*.png") if not p.name.startswith(".")}
    assert 3 <= len(entries) < N_FILES
    assert recorded <= crops and len(crops - recorded) <= 1
    for key in recorded:  # the records are the ones an uninterrupted run writes
        assert next(r for e in entries for k, r in e["records"].items() if k == key) == reference[key]

    from pada.faces.detect import FaceDetector

    calls = []
    real = FaceDetector.detect
    monkeypatch.setattr(FaceDetector, "detect", lambda self, img, *a, **k: calls.append(1) or real(self, img))
    capsys.readouterr()
    assert main(["align", str(photos), "--out", str(out), "--size", "64"]) == 0
    printed = capsys.readouterr().out
    assert f"({len(entries)} file(s) done by an earlier, interrupted run)" in printed
    assert len(calls) == N_FILES - len(entries)  # the finished files were not aligned again
    assert _transforms(out) == reference and not journal.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ref.iterdir())


def test_journal_with_torn_line_and_other_options(tmp_path, photos, capsys):
    """A torn last line is dropped; records made with other options are kept but not skipped."""
    out = tmp_path / "out"
    first = sorted(photos.glob("*.png"))[:2]
    assert main(["align", *map(str, first), "--out", str(out), "--size", "64"]) == 0
    records = _transforms(out)
    (out / TRANSFORMS_FILE).unlink()
    source = records["p00.png"]["source"]
    (out / JOURNAL_FILE).write_text(
        json.dumps({"format": "pada-align-journal", "version": 1,
                    "options": {"size": 64, "ext": "png", "all_faces": False}}) + "\n"
        + json.dumps({"source": source, "records": {"p00.png": records["p00.png"]}}) + "\n"
        + '{"source": "/x/p01.png", "rec')
    capsys.readouterr()
    assert main(["align", *map(str, first), "--out", str(out), "--size", "64"]) == 0
    assert "(1 file(s) done by an earlier, interrupted run)" in capsys.readouterr().out
    assert _transforms(out) == records and not (out / JOURNAL_FILE).exists()
    # same journal, other crop size: its record survives, but the file is aligned again at the new size
    (out / JOURNAL_FILE).write_text(
        json.dumps({"format": "pada-align-journal", "version": 1,
                    "options": {"size": 32, "ext": "png", "all_faces": False}}) + "\n"
        + json.dumps({"source": source, "records": {"old.png": records["p00.png"]}}) + "\n")
    assert main(["align", str(first[0]), "--out", str(out), "--size", "64"]) == 0
    assert "interrupted run" not in capsys.readouterr().out
    assert set(_transforms(out)) == {"old.png", "p00.png", "p01.png"}
