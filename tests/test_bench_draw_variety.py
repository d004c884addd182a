"""bench_draw_variety: the settings parser, the per-target summary and its one-line errors."""

from __future__ import annotations

import pytest

from bench_helpers import load_bench


def _bench():
    return load_bench("bench_draw_variety")


def test_settings_parse_and_bad_entries_name_themselves():
    parse = _bench().parse_settings
    assert parse("0:0.14, 1:0.09,") == [(0.0, 0.14), (1.0, 0.09)]
    for bad in ("1", "a:b", "1:2", "-1:0.1", ""):
        with pytest.raises(ValueError, match="--settings"):
            parse(bad)


def test_summary_gain_is_taken_from_the_mean_diversities():
    rec = {"id": 0.8, "div_id": 0.1, "age": 40.0, "age_std": 2.0, "structure_ok": 1.0}
    rows = {"eighties": [{**rec, "div_on": 0.50, "div_off": 0.40}, {**rec, "id": 0.6, "structure_ok": 0.5,
                                                                      "div_on": 0.30, "div_off": 0.40}],
            "toddler": [{**rec, "age": 20.0, "div_on": 0.44, "div_off": 0.40}]}
    s = _bench().summarize(rows)
    e = s["targets"]["eighties"]
    assert e["id"] == pytest.approx(0.7) and e["structure_ok"] == pytest.approx(0.75)
    assert e["div_gain"] == pytest.approx((0.40 - 0.40) / 0.40)  # mean on 0.40 against mean off 0.40
    assert s["targets"]["toddler"]["div_gain"] == pytest.approx(0.1)
    assert s["overall"]["age"] == pytest.approx(30.0) and s["overall"]["div_gain"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="no records"):
        _bench().summarize({"eighties": []})


def test_bad_arguments_are_one_line_before_any_work(tmp_path, capsys):
    bench = _bench()
    assert bench.main(["--faces", "0", "--data", str(tmp_path)]) == 2
    assert bench.main(["--n", "1", "--data", str(tmp_path)]) == 2
    assert bench.main(["--settings", "x", "--data", str(tmp_path)]) == 2
    assert bench.main(["--targets", "nonsense", "--data", str(tmp_path)]) == 2
    assert bench.main(["--out", str(tmp_path / "r.txt"), "--data", str(tmp_path)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 5 and all(ln.startswith("bench_draw_variety: ") for ln in err)
    assert "--faces" in err[0] and "--n" in err[1] and "--settings" in err[2] and "--out" in err[4]
    assert list(tmp_path.iterdir()) == []  # nothing written
