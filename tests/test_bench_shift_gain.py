"""bench_shift_gain: the per-target choice of the shift gain and its margin against the baseline curve."""

from __future__ import annotations

import pytest

from bench_helpers import load_bench


def _row(mae: float, ident: float) -> dict[str, float]:
    return {"age_mae": mae, "id_similarity": ident}


def test_pick_gains_trades_years_for_identity_per_target_and_reads_the_baseline_at_equal_id():
    pick = load_bench("bench_shift_gain").pick_gains
    rows = {"gain@1": {"young": _row(10.0, 0.80), "old": _row(20.0, 0.60)},
            "gain@1.5": {"young": _row(9.5, 0.70), "old": _row(12.0, 0.50)}}
    curve = [(0.50, 14.0), (0.70, 16.0)]  # the baseline: MAE 14 at ID 0.5, 16 at 0.7
    # λ = 10 years per unit of identity: a longer edit pays off for "old" (8 years for 0.1) only
    p = pick(rows, [1.0, 1.5], 10.0, ["young", "old"], curve)
    assert p["gain_by_target"] == {"young": 1.0, "old": 1.5}
    assert p["id_similarity"] == pytest.approx(0.65) and p["age_mae"] == pytest.approx(11.0)
    assert p["baseline_mae_at_equal_id"] == pytest.approx(15.5) and p["margin"] == pytest.approx(-4.5)
    # λ = 100: identity is worth more than any of these years
    p = pick(rows, [1.0, 1.5], 100.0, ["young", "old"], curve)
    assert p["gain_by_target"] == {"young": 1.0, "old": 1.0}
    assert p["age_mae"] == pytest.approx(15.0) and p["margin"] == pytest.approx(-1.0)  # at the curve's end
    rows["gain@1"]["young"] = _row(10.0, 0.95)  # an identity beyond the baseline's curve: no margin
    assert pick(rows, [1.0, 1.5], 100.0, ["young", "old"], curve)["margin"] is None
