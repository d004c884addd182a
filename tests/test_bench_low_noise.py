"""bench_low_noise: the shares parser, the per-share summary and its one-line errors."""

from __future__ import annotations

import pytest

from bench_helpers import load_bench


def _bench():
    return load_bench("bench_low_noise")


def test_shares_parse_and_bad_entries_name_themselves():
    parse = _bench().parse_shares
    assert parse("0, 0.3,1,") == [0.0, 0.3, 1.0]
    for bad in ("a", "1.5", "-0.1", "nan", ""):
        with pytest.raises(ValueError, match="--shares"):
            parse(bad)


def test_summary_averages_each_key_over_the_faces():
    rec = {"own_id": 0.9, "own_div": 0.1, "own_structure": 0.03, "id": 0.8, "div_id": 0.2, "age": 50.0}
    s = _bench().summarize([rec, {**rec, "id": 0.6, "age": 40.0}])
    assert s["id"] == pytest.approx(0.7) and s["age"] == pytest.approx(45.0) and s["own_id"] == 0.9
    with pytest.raises(ValueError, match="no records"):
        _bench().summarize([])


def test_bad_arguments_are_one_line_before_any_work(tmp_path, capsys):
    bench = _bench()
    assert bench.main(["--faces", "0", "--data", str(tmp_path)]) == 2
    assert bench.main(["--n", "1", "--data", str(tmp_path)]) == 2
    assert bench.main(["--shares", "2", "--data", str(tmp_path)]) == 2
    assert bench.main(["--target", "nonsense", "--data", str(tmp_path)]) == 2
    assert bench.main(["--out", str(tmp_path / "r.txt"), "--data", str(tmp_path)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 5 and all(ln.startswith("bench_low_noise: ") for ln in err)
    assert "--faces" in err[0] and "--n" in err[1] and "--shares" in err[2] and "--out" in err[4]
    assert list(tmp_path.iterdir()) == []  # nothing written
