"""bench_spread_directions: the per-direction table and its one-line errors."""

from __future__ import annotations

import pytest
import torch

from bench_helpers import load_bench


def _bench():
    return load_bench("bench_spread_directions")


def test_table_ranks_identity_change_against_the_structure_it_costs():
    ids = torch.tensor([[0.06, 0.01, 0.02], [0.08, 0.01, 0.04]])  # 2 faces x 3 directions
    lost = torch.tensor([[0.10, 0.14, 0.10, 0.20], [0.08, 0.16, 0.08, 0.12]])
    rows = _bench().direction_table(ids, lost, limit=0.13)
    assert [r["direction"] for r in rows] == [0, 1, 2]
    assert rows[0]["id_change"] == pytest.approx(0.07) and rows[0]["structure_added"] == pytest.approx(0.06)
    assert rows[0]["id_per_structure"] == pytest.approx(0.07 / 0.06, rel=1e-3)
    assert rows[1]["id_per_structure"] is None  # adds no structure loss: no ratio
    assert rows[0]["structure_ok"] == pytest.approx(0.0) and rows[1]["structure_ok"] == pytest.approx(1.0)
    assert rows[2]["structure_ok"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="F, K"):
        _bench().direction_table(ids, lost[:, :3], limit=0.13)


def test_directions_are_an_orthonormal_basis_of_the_spread_span():
    class Mod:
        spread_basis = torch.cat([torch.randn(3, 10, generator=torch.Generator().manual_seed(0)),
                                  torch.zeros(1, 10)])
    dirs = _bench().spread_directions(Mod())
    assert dirs.shape == (3, 10)
    assert torch.allclose(dirs @ dirs.T, torch.eye(3), atol=1e-5)
    proj = Mod.spread_basis @ dirs.T @ dirs  # the basis lies in the span
    assert torch.allclose(proj, Mod.spread_basis, atol=1e-4)


def test_bad_arguments_and_missing_data_are_one_line(tmp_path, capsys):
    bench = _bench()
    assert bench.main(["--faces", "0", "--data", str(tmp_path)]) == 2
    assert bench.main(["--target", "nonsense", "--data", str(tmp_path)]) == 2
    assert bench.main(["--data", str(tmp_path / "nowhere")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 3 and all(ln.startswith("bench_spread_directions: ") for ln in err)
    assert "--faces" in err[0]


def test_bad_bound_and_output_paths_are_one_line_before_any_work(tmp_path, capsys):
    bench = _bench()
    (tmp_path / "file").write_text("x")
    assert bench.main(["--contrast-bound", "-1", "--data", str(tmp_path)]) == 2
    assert bench.main(["--out", str(tmp_path / "r.txt"), "--data", str(tmp_path)]) == 2
    assert bench.main(["--grid", str(tmp_path / "file" / "g.png"), "--data", str(tmp_path)]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 3 and all(ln.startswith("bench_spread_directions: ") for ln in err)
    assert "--contrast-bound" in err[0] and "--out" in err[1] and "--grid" in err[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written
