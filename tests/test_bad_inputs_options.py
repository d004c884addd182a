"""Bad-input catalogue, part 1: every numeric option of every command at its edges (0, -1, huge, NaN, inf).

Each value is refused when the command line is parsed, before any model or file is touched: exit status 2,
one ``error:`` line naming the option and the problem, nothing written (docs/reliability.md).
"""

from __future__ import annotations

import pytest

from bad_inputs_helpers import (
    assert_one_line_failure,
    assert_untouched,
    out_folder,
    run_cli,
    run_subprocess,
    write_png,
)
from pada.validation import LIMITS

AGE = ["age", "{photo}", "--text", "man's face in his sixties", "--out", "{out}"]
ALIGN = ["align", "{photo}", "--out", "{dir}"]
EVAL = ["evaluate", "--model", "m.safetensors", "--data", "{dir}"]

# (command template, option, value, words the error line must contain)
CASES = [
    (AGE, "-n", "0", "must be at least 1"),
    (AGE, "-n", "-1", "must be at least 1"),
    (AGE, "-n", "10000", f"must be at most {LIMITS['n']}"),
    (AGE, "-n", "nan", "expected a whole number"),
    (AGE, "-n", "2.5", "expected a whole number"),
    (AGE, "--steps", "0", "must be at least 1"),
    (AGE, "--steps", "100000", "must be at most 1000"),
    (AGE, "--eps", "nan", "nan is not a finite number"),
    (AGE, "--eps", "inf", "inf is not a finite number"),
    (AGE, "--eps", "-1", "must be at least 0"),
    (AGE, "--eps", "1e308", "must be at most 10"),
    (AGE, "--text-weight", "5", "must be at most 1"),
    (AGE, "--text-weight", "-0.1", "must be at least 0"),
    (AGE, "--text-weight", "nan", "not a finite number"),
    (AGE, "--batch-size", "-1", "must be at least 1"),
    (AGE, "--batch-size", "0", "must be at least 1"),
    (AGE, "--frames", "0", "must be at least 1"),
    (AGE, "--frames", "100000", f"must be at most {LIMITS['frames']}"),
    (AGE, "--seed", "-1", "must be at least 0"),
    (AGE, "--seed", str(2**64), "must be at most"),
    (ALIGN, "--size", "4", "must be at least 8"),
    (ALIGN, "--size", "100000", f"must be at most {LIMITS['crop_size']}"),
    (ALIGN, "--score-threshold", "0", "must be greater than 0"),
    (ALIGN, "--score-threshold", "2", "must be at most 1"),
    (ALIGN, "--score-threshold", "nan", "not a finite number"),
    (ALIGN, "--max-megapixels", "-1", "must be greater than 0"),
    (ALIGN, "--max-megapixels", "inf", "not a finite number"),
    (ALIGN, "--max-megapixels", "1e9", "must be at most 1000"),
    (["label", "{dir}"], "--batch-size", "0", "must be at least 1"),
    (["label", "{dir}"], "--size", "1", "must be at least 8"),
    (["label", "{dir}"], "--workers", "-1", "must be at least 0"),
    (EVAL, "--n", "0", "must be at least 1"),
    (EVAL, "--test-fraction", "1", "must be below 1"),
    (EVAL, "--test-fraction", "nan", "not a finite number"),
    (EVAL, "--eps", "inf", "not a finite number"),
    (EVAL, "--baseline-strengths", "1,nan", "not a finite number"),
    (["app", "--model", "m.safetensors"], "--port", "-5", "must be at least 0"),
    (["app", "--model", "m.safetensors"], "--port", "70000", "must be at most 65535"),
    (["app", "--model", "m.safetensors"], "--max-n", "0", "must be at least 1"),
    (["app", "--model", "m.safetensors"], "--max-upload-mb", "0", "must be greater than 0"),
    (["data", "demo", "--out", "{dir}"], "--sizes", "64,abc", "expected a whole number"),
    (["data", "demo", "--out", "{dir}"], "--sizes", "4", "must be at least 8"),
    (["data", "demo", "--out", "{dir}"], "--limit", "0", "must be at least 1"),
    (["train", "pada", "--data", "{dir}", "--out", "{dir}"], "--lr", "nan", "not a finite number"),
    (["train", "pada", "--data", "{dir}", "--out", "{dir}"], "--batch-size", "-1", "must be at least 1"),
    (["train", "diffae", "--out", "{dir}"], "--steps", "0", "must be at least 1"),
    (["train", "diffae", "--out", "{dir}"], "--high-t-fraction", "2", "must be at most 1"),
    (["train", "faceclip", "--out", "{dir}/h.safetensors"], "--test-fraction", "inf", "not a finite number"),
]


def _ids():
    return [f"{c[0][0]}{'-' + c[0][1] if c[0][0] in ('data', 'train') else ''} {c[1]} {c[2]}" for c in CASES]


@pytest.mark.parametrize("template,option,value,problem", CASES, ids=_ids())
def test_numeric_option_refused_in_one_line(tmp_path, capsys, template, option, value, problem):
    folder, earlier = out_folder(tmp_path)
    photo = write_png(tmp_path / "photo.png")
    subs = {"{photo}": str(photo), "{out}": str(earlier), "{dir}": str(folder)}
    argv = [subs.get(a, a.replace("{dir}", str(folder))) for a in template] + [option, value]
    code, err, out = run_cli(argv, capsys)
    line = assert_one_line_failure(code, err, problem)
    long_name = option if option.startswith("--") else "--num"
    assert long_name in line, line
    assert code == 2 and out == ""
    assert_untouched(folder, earlier)


def test_train_set_override_non_finite_is_one_line(tmp_path, capsys):
    """``--set`` goes through the same checks (TrainConfig), as a PadaError: exit status 1."""
    code, err, _ = run_cli(["train", "diffae", "--data", "synthetic:blobs:8", "--out", tmp_path / "run",
                            "--set", "grad_clip=inf"], capsys)
    assert_one_line_failure(code, err, "grad_clip", "not a finite number")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_end_to_end_no_traceback(tmp_path):
    """The same refusal from a fresh interpreter: one line, no traceback, exit status 2."""
    photo = write_png(tmp_path / "photo.png")
    argv = ["age", photo, "--text", "x", "--out", tmp_path / "o.png", "-n", "10000"]
    r = run_subprocess(argv, cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert lines == ["error: pada age: argument -n/--num: must be at most 256, got 10000 "
                     "(see pada age --help)"]
    assert not (tmp_path / "o.png").exists()
