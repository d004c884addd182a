"""Shared pieces of the bad-input catalogue (tests/test_bad_inputs_*.py); no tests here.

Every catalogue case runs a ``pada`` command in-process and checks the reliability contract of
docs/reliability.md: non-zero exit status, exactly one line on stderr that names the input and the problem,
no traceback, no partial output file, earlier outputs intact.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pada.cli.main import main

EARLIER = b"earlier output, must survive"
PROGRESS = re.compile(r"^[^:]+: +\d+%\|.*\| *\d+/\d+ \[")  # tqdm progress bars are not error lines


def run_cli(argv: list[str], capsys) -> tuple[int, list[str], str]:
    """(exit status, non-empty stderr lines, stdout) of ``pada ARGV`` run in this process."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    lines = [ln for part in captured.err.splitlines() for ln in part.split("\r")]
    return code, [ln for ln in lines if ln.strip() and not PROGRESS.search(ln)], captured.out


def assert_one_line_failure(code: int, err: list[str], *needles: str) -> str:
    """Non-zero status and exactly one ``error: ...`` line containing every needle; returns the line."""
    assert code != 0, f"exit status 0 for a bad input; stderr: {err}"
    assert len(err) == 1, f"expected one stderr line, got {len(err)}: {err}"
    line = err[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    return line


def out_folder(tmp_path: Path) -> tuple[Path, Path]:
    """A folder holding one earlier output ``aged.png`` (arbitrary bytes); returns (folder, that file)."""
    folder = tmp_path / "out"
    folder.mkdir()
    earlier = folder / "aged.png"
    earlier.write_bytes(EARLIER)
    return folder, earlier


def assert_untouched(folder: Path, earlier: Path) -> None:
    """The earlier output is byte-identical and the folder holds nothing else (no partial or temp file)."""
    assert earlier.read_bytes() == EARLIER
    assert sorted(p.name for p in folder.iterdir()) == [earlier.name]


def write_png(path: Path, size: tuple[int, int] = (64, 64), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@functools.lru_cache(maxsize=1)
def tiny_pipeline():
    """The tiny random PADA pipeline (32 px, 2 DDIM steps) shared by the catalogue."""
    from pada.aging.pipeline import AgingPipeline
    from pada.aging.testing import TinyVL
    from test_aging_helpers import tiny_diffae, tiny_model

    return AgingPipeline(tiny_diffae(), TinyVL(dim=32), tiny_model(init_gain=0.3), steps=2)


def use_tiny_pipeline(monkeypatch):
    """Make ``pada age`` use :func:`tiny_pipeline` whatever ``--model`` says; returns it."""
    import pada.cli.age as age_cli

    pipe = tiny_pipeline()
    monkeypatch.setattr(age_cli, "load_pipeline", lambda model, device, steps, trust_pickle=False: pipe)
    return pipe


def run_subprocess(argv: list[str], cwd: Path, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    """``python -m pada.cli.main ARGV`` in a fresh interpreter (end-to-end: nothing can catch a traceback)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                       os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pada.cli.main", *map(str, argv)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)
