"""bench_coarse_edit: the statistics of the coarse-image edits and its one-line errors."""

from __future__ import annotations

import pytest
import torch

from bench_helpers import load_bench


def _bench():
    return load_bench("bench_coarse_edit")


def test_one_added_pattern_scores_as_a_template_and_its_relative_size_tells_the_broken_faces():
    g = torch.Generator().manual_seed(0)
    pattern = torch.randn(1, 3, 8, 8, generator=g)
    contrast = torch.tensor([0.5, 1.0, 2.0, 4.0, 8.0])  # low-contrast faces first
    c_src = torch.randn(5, 3, 8, 8, generator=g)
    c_src = c_src - c_src.flatten(1).mean(1).view(-1, 1, 1, 1)
    c_src = c_src / c_src.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * contrast.view(-1, 1, 1, 1)
    lost = torch.tensor([0.30, 0.20, 0.12, 0.08, 0.05])  # the low-contrast faces broke
    out = _bench().coarse_edit_stats(c_src, c_src + pattern, lost)
    assert out["faces"] == 5
    assert out["pairwise_cosine"] == pytest.approx(1.0) and out["cosine_to_mean"]["min"] == pytest.approx(1.0)
    rel = pattern.flatten().norm() / contrast
    assert out["relative_size"]["max"] == pytest.approx(float(rel.max()), rel=1e-5)
    assert out["spearman"]["relative_size"] == pytest.approx(1.0)
    # edits that share nothing: the cosines fall toward 0
    free = _bench().coarse_edit_stats(c_src, c_src + torch.randn(5, 3, 8, 8, generator=g), lost)
    assert abs(free["pairwise_cosine"]) < 0.3
    with pytest.raises(ValueError, match="N >= 2"):
        _bench().coarse_edit_stats(c_src[:1], c_src[:1], lost[:1])


def test_bad_option_and_missing_data_are_one_line(tmp_path, capsys):
    assert _bench().main(["--option", "oops", "--data", str(tmp_path)]) == 2
    assert _bench().main(["--data", str(tmp_path / "nowhere")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 2 and all(ln.startswith("bench_coarse_edit: ") for ln in err)
    assert "NAME=VALUE" in err[0]
