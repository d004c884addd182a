"""Bad-input catalogue, part 4: output paths that cannot be written, and file modes.

``--out`` that is a folder, has an unknown extension, sits under a file or in a read-only folder, or hits a
full disk: one ``error:`` line naming the path, exit status 1, no partial or temporary file, earlier outputs
intact (a command writing several files publishes all or none). Every output follows the umask
(docs/reliability.md).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

import pada.outputs as outputs
from bad_inputs_helpers import (
    EARLIER,
    assert_one_line_failure,
    assert_untouched,
    out_folder,
    run_cli,
    use_tiny_pipeline,
    write_png,
)
from pada.aging.pipeline import save_gif
from pada.errors import PadaError
from test_aging_helpers import tiny_diffae, tiny_model


@pytest.fixture
def tiny(monkeypatch):
    return use_tiny_pipeline(monkeypatch)


def _age(crop, out, *extra):
    return ["age", crop, "--aligned", "--text", "x", "-n", "2", "--steps", "2", "--out", out, *extra]


# name -> (argv tail maker(folder) -> (out, extra args), words of the error line, option named)
PATH_CASES = {
    "out-is-a-folder": (lambda d: (d, []), "is a folder"),
    "unknown-extension": (lambda d: (d / "aged.xyz", []), "unknown extension '.xyz'"),
    "no-extension": (lambda d: (d / "aged", []), "unknown extension '(none)'"),
    "parent-is-a-file": (lambda d: (d / "aged.png" / "x.png", []), "is a file, not a folder"),
    "gif-wrong-extension": (lambda d: (d / "life.png", ["--lifespan", "--gif", str(d / "life.mp4")]),
                            "unknown extension '.mp4'"),
}


@pytest.mark.parametrize("kind", sorted(PATH_CASES))
def test_unusable_output_path_is_refused_before_work(tmp_path, capsys, monkeypatch, tiny, kind):
    make, problem = PATH_CASES[kind]
    folder, earlier = out_folder(tmp_path)
    out, extra = make(folder)
    calls = []
    monkeypatch.setattr(tiny, "age", lambda *a, **k: calls.append(1))  # must not be reached
    crop = write_png(tmp_path / "crop.png", (32, 32))
    code, err, _ = run_cli(_age(crop, out, *extra), capsys)
    assert_one_line_failure(code, err, problem)
    assert code == 1 and not calls
    assert_untouched(folder, earlier)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_folder(tmp_path, capsys, tiny):
    folder, earlier = out_folder(tmp_path)
    crop = write_png(tmp_path / "crop.png", (32, 32))
    folder.chmod(0o555)
    try:
        code, err, _ = run_cli(_age(crop, folder / "new.png"), capsys)
    finally:
        folder.chmod(0o755)
    assert_one_line_failure(code, err, str(folder), "permission denied")
    assert_untouched(folder, earlier)


# errno raised by the file system while the output is written (the path checks pass)
WRITE_ERRORS = {
    "disk-full": (errno.ENOSPC, "no space left on the device"),
    "quota": (errno.EDQUOT, "disk quota exceeded"),
    "read-only-fs": (errno.EROFS, "read-only file system"),
    "permission": (errno.EACCES, "permission denied"),
}


@pytest.mark.parametrize("kind", sorted(WRITE_ERRORS))
@pytest.mark.parametrize("stage", ["write", "rename"])
def test_write_error_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, tiny, kind, stage):
    err_no, problem = WRITE_ERRORS[kind]
    folder, earlier = out_folder(tmp_path)
    crop = write_png(tmp_path / "crop.png", (32, 32))

    def fail(*a, **k):
        raise OSError(err_no, os.strerror(err_no))

    if stage == "write":  # the image encoder's writes fail half-way
        real_fdopen = os.fdopen

        class Full:
            def __init__(self, fh):
                self.fh, self.n = fh, 0

            def write(self, data):
                self.fh.write(data[:10])
                fail()

            def __getattr__(self, name):
                return getattr(self.fh, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

        monkeypatch.setattr(outputs.os, "fdopen", lambda fd, *a, **k: Full(real_fdopen(fd, *a, **k)))
    else:  # publishing the files fails
        monkeypatch.setattr(outputs.os, "replace", fail)
    code, err, _ = run_cli(_age(crop, earlier), capsys)
    assert_one_line_failure(code, err, str(earlier), problem)
    assert code == 1
    assert_untouched(folder, earlier)


def test_lifespan_gif_failure_publishes_neither_file(tmp_path, capsys, monkeypatch, tiny):
    """Grid and GIF are published together: a failing GIF leaves the earlier grid as it was."""
    folder, earlier = out_folder(tmp_path)
    crop = write_png(tmp_path / "crop.png", (32, 32))
    import imageio.v2 as imageio

    def broken(path, *a, **k):
        open(path, "wb").write(b"GIF89a half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imageio, "mimsave", broken)
    code, err, _ = run_cli(_age(crop, earlier, "--lifespan", "--frames", "1"), capsys)
    assert_one_line_failure(code, err, str(folder / "aged.gif"), "no space left")
    assert_untouched(folder, earlier)


@pytest.mark.slow
def test_real_file_size_limit_end_to_end(tmp_path):
    """A real write failure (RLIMIT_FSIZE: EFBIG, like a full disk) in a fresh interpreter: one line, no
    traceback, no partial file."""
    import subprocess
    import sys
    from pathlib import Path

    folder, earlier = out_folder(tmp_path)
    crop = write_png(tmp_path / "crop.png", (32, 32))
    tests = Path(__file__).parent
    script = textwrap.dedent(f"""
        import resource, signal, sys
        sys.path[:0] = [{str(tests.parent / "src")!r}, {str(tests)!r}]
        import torch
        torch.set_num_threads(1)
        from bad_inputs_helpers import tiny_pipeline
        import pada.cli.age as age_cli
        from pada.cli.main import main
        age_cli.load_pipeline = lambda *a, **k: tiny_pipeline()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit: write() fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
        sys.exit(main({[str(a) for a in _age(crop, earlier, "-n", "8")]!r}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "%|" not in ln]
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines == [f"error: {earlier}: cannot write (file too large for this file system or process limit)"]
    assert_untouched(folder, earlier)


# ---------------------------------------------------------------------------------------------- file modes
@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    try:
        yield 0o640
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_output_follows_the_umask(tmp_path, capsys, tiny, umask_027):
    from pada.data.labels import write_labels
    from pada.faces.io import save_image
    from pada.networks.checkpoint import save_diffae

    crop = write_png(tmp_path / "crop.png", (32, 32))
    out = tmp_path / "o" / "aged.png"
    assert run_cli(_age(crop, out, "--lifespan", "--frames", "1"), capsys)[0] == 0
    made = {
        "png (pada age)": out, "gif (pada age)": out.with_suffix(".gif"),
        "png": save_image(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8)),
        "gif": save_gif(torch.zeros(3, 3, 8, 8), tmp_path / "x.gif"),
        "safetensors (PADA)": tiny_model().save(tmp_path / "p.safetensors"),
        "safetensors (DiffAE)": save_diffae(tiny_diffae().unet, tmp_path / "d.safetensors"),
        "json": outputs.write_text(tmp_path / "x.json", json.dumps({"a": 1})),
    }
    table = tmp_path / "labels.csv"
    write_labels(table, [])
    made["csv"] = table
    wrong = {k: oct(_mode(p)) for k, p in made.items() if _mode(p) != umask_027}
    assert not wrong, wrong
    assert not [p for p in tmp_path.rglob(".*tmp*")]  # no temporary file left anywhere


def test_align_outputs_follow_the_umask(tmp_path, capsys, umask_027):
    from pada.faces import samples

    try:
        img = samples.grace_hopper()
    except PadaError as exc:  # pragma: no cover
        pytest.skip(f"sample photo unavailable: {exc}")
    Image.fromarray(img).save(tmp_path / "face.png")
    code, err, _ = run_cli(["align", tmp_path / "face.png", "--out", tmp_path / "al", "--size", "64"], capsys)
    assert code == 0, err
    assert _mode(tmp_path / "al" / "face.png") == umask_027
    assert _mode(tmp_path / "al" / "transforms.json") == umask_027


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "t.json"
    target.write_bytes(EARLIER)
    with pytest.raises(PadaError, match=r"t\.json: cannot write \(no space left on the device\)"):
        with outputs.atomic_open(target, "w") as fh:
            fh.write("partial")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert target.read_bytes() == EARLIER and sorted(tmp_path.iterdir()) == [target]


def test_print_json_prints_and_writes_the_same_report(tmp_path, capsys):
    import json

    report = {"faces": 3, "scores": [0.5, 0.25]}
    text = outputs.print_json(report, tmp_path / "r.json")
    assert json.loads(capsys.readouterr().out) == report == json.loads((tmp_path / "r.json").read_text())
    assert (tmp_path / "r.json").read_text() == text + "\n"
    outputs.print_json(report)  # no path: printed only
    assert json.loads(capsys.readouterr().out) == report
    assert sorted(tmp_path.iterdir()) == [tmp_path / "r.json"]


def test_chart_under_a_file_is_one_line(tmp_path, capsys):
    from test_data import _labelled_folder

    _labelled_folder(tmp_path, n=4)
    blocker = tmp_path / "report"
    blocker.write_bytes(EARLIER)
    code, err, _ = run_cli(["data", "stats", tmp_path / "f", "--out", blocker / "chart.png"], capsys)
    assert_one_line_failure(code, err, str(blocker), "is a file, not a folder")
    assert blocker.read_bytes() == EARLIER


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device", "/data/x.csv"),
                                 MemoryError(), PermissionError(errno.EACCES, "Permission denied")])
def test_environment_errors_escaping_a_command_are_one_line(tmp_path, capsys, monkeypatch, exc):
    """The last safety net: an OSError or MemoryError that no command turned into a message."""
    import pada.cli.label as label_cli

    def boom(args):
        raise exc

    monkeypatch.setattr(label_cli, "_run", boom)
    code, err, _ = run_cli(["label", tmp_path], capsys)
    line = assert_one_line_failure(code, err)
    assert ("No space left on device" in line and "/data/x.csv" in line) or "memory" in line \
        or "Permission denied" in line
