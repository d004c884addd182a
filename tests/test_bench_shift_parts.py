"""bench_shift_parts: the split of a shift along a direction and the baseline curve lookup."""

from __future__ import annotations

import pytest
import torch

from bench_helpers import load_bench


def _bench():
    return load_bench("bench_shift_parts")


def test_shift_parts_split_the_shift_into_a_part_along_w_and_a_part_across_it():
    g = torch.Generator().manual_seed(0)
    z_src, z_age = torch.randn(5, 12, generator=g), torch.randn(5, 12, generator=g)
    w = torch.randn(12, generator=g)
    along, orth = _bench().shift_parts(z_src, z_age, 3.0 * w)
    torch.testing.assert_close(along + orth, z_age - z_src)
    assert torch.allclose(orth @ w, torch.zeros(5), atol=1e-5)  # across w
    cos = (along @ w).abs() / (along.norm(dim=1) * w.norm())
    torch.testing.assert_close(cos, torch.ones(5))  # parallel to w
    # a shift that is a multiple of w has no part across it
    along, orth = _bench().shift_parts(z_src, z_src - 2.0 * w, w)
    assert orth.norm() < 1e-5 and torch.allclose(along, -2.0 * w.expand(5, -1), atol=1e-5)


def test_interpolate_curve_reads_the_baseline_between_its_points_and_not_outside():
    f = _bench().interpolate_curve
    pts = [(0.84, 16.0), (0.74, 14.0), (0.80, 15.0)]  # unsorted on purpose
    assert f(pts, 0.82) == pytest.approx(15.5)
    assert f(pts, 0.74) == pytest.approx(14.0)
    assert f(pts, 0.90) is None and f(pts, 0.70) is None
