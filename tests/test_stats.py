"""Direction, resolution and corrections of the significance tests (analysis/stats.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from domain_distil.analysis.stats import (
    bootstrap_mean_diff_ci,
    cliffs_delta,
    compare,
    holm,
    ks_test,
    mann_whitney,
    min_ks_pvalue,
)

BASE = [0.700, 0.702, 0.704, 0.706, 0.708, 0.710, 0.712, 0.714, 0.716, 0.718]


def shifted(values: list[float], delta: float) -> list[float]:
    return [v + delta for v in values]


def test_ks_direction_better_candidate_is_significant_only_one_way() -> None:
    better = shifted(BASE, 0.1)  # complete separation: D = 1
    stat, p = ks_test(better, BASE, "greater")
    assert stat == 1.0
    # Exact one-sided p at n = m = 10 and complete separation is 1 / C(20, 10).
    assert p == pytest.approx(1 / math.comb(20, 10), rel=1e-6)
    # The same claim the other way round ("baseline beats candidate") has no support at all.
    assert ks_test(BASE, better, "greater")[1] == pytest.approx(1.0)


def test_ks_resolution_at_ten_seeds_matches_the_spec_table() -> None:
    # Shifting by k ranks makes D = k / 10; one-sided p < 0.05 needs D >= 0.6.
    ranks = list(range(10))
    p5 = ks_test([r + 5 for r in ranks], ranks)[1]
    p6 = ks_test([r + 6 for r in ranks], ranks)[1]
    assert p5 == pytest.approx(0.0839, abs=1e-3) and p5 > 0.05
    assert p6 == pytest.approx(0.0262, abs=1e-3) and p6 < 0.05
    assert ks_test([r + 6 for r in ranks], ranks, "two-sided")[1] == pytest.approx(0.0524, abs=1e-3)


def test_identical_samples_are_not_significant() -> None:
    stat, p = ks_test(BASE, BASE)
    assert stat == 0.0 and p == pytest.approx(1.0)
    result = compare(BASE, list(BASE), n_resamples=999)
    assert result.mean_diff == 0.0
    assert result.mwu_pvalue > 0.4
    assert result.cliffs_delta == 0.0
    assert result.ci_low <= 0.0 <= result.ci_high


def test_mann_whitney_direction_and_exactness() -> None:
    u, p, method = mann_whitney(shifted(BASE, 0.1), BASE)
    assert method == "exact"
    assert u == 100.0  # every one of the 10 x 10 pairs favours the candidate
    assert p == pytest.approx(1 / math.comb(20, 10), rel=1e-6)
    assert mann_whitney(BASE, shifted(BASE, 0.1))[1] == pytest.approx(1.0)
    # Ties make the exact null distribution wrong, so the tie-corrected approximation is used.
    assert mann_whitney([1.0, 1.0, 2.0], [1.0, 0.0, 0.0])[2] == "asymptotic"


def test_bootstrap_ci_contains_the_true_difference_and_excludes_zero() -> None:
    rng = np.random.default_rng(1)
    a = 0.80 + 0.01 * rng.standard_normal(10)
    b = 0.75 + 0.01 * rng.standard_normal(10)
    low, high, method = bootstrap_mean_diff_ci(a, b, n_resamples=2000, seed=0)
    assert method == "BCa"
    assert low < 0.05 < high
    assert low > 0.0
    # Seeded: the same call gives the same interval.
    assert bootstrap_mean_diff_ci(a, b, n_resamples=2000, seed=0)[:2] == (low, high)


def test_bootstrap_of_constant_samples_falls_back_instead_of_nan() -> None:
    low, high, method = bootstrap_mean_diff_ci([0.5] * 5, [0.4] * 5, n_resamples=200)
    assert (low, high) == pytest.approx((0.1, 0.1))
    assert method in ("percentile", "degenerate")


def test_cliffs_delta_hand_computed() -> None:
    # Pairs (c, b): (1,0)+ (1,2)- (3,0)+ (3,2)+ -> (3 - 1) / 4
    assert cliffs_delta([1.0, 3.0], [0.0, 2.0]) == pytest.approx(0.5)
    assert cliffs_delta(shifted(BASE, 1), BASE) == 1.0
    assert cliffs_delta(BASE, shifted(BASE, 1)) == -1.0


def test_holm_matches_a_hand_worked_example() -> None:
    # m = 4, sorted p: 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06 (monotone), 0.06 (monotone)
    p = [0.03, 0.01, 0.04, 0.02]
    assert holm(p) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # NaN is not part of the family (m = 3 here): sorted 0.01, 0.6, 0.7 -> 0.03, min(1, 1.2), 0.7 -> 1.
    out = holm([0.6, float("nan"), 0.01, 0.7])
    assert math.isnan(out[1])
    assert out[[0, 2, 3]] == pytest.approx([1.0, 0.03, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([1.5])


def test_min_ks_pvalue_says_when_nothing_can_be_significant() -> None:
    assert min_ks_pvalue(10, 10) == pytest.approx(1 / math.comb(20, 10), rel=1e-6)
    assert min_ks_pvalue(3, 3) == pytest.approx(0.05)  # 1 / C(6, 3): never < 0.05


def test_compare_needs_two_scores_per_side() -> None:
    result = compare([0.9], BASE)
    assert math.isnan(result.ks_pvalue) and math.isnan(result.ci_low)
    with pytest.raises(ValueError, match="finite"):
        compare([0.9, float("nan")], BASE)
    with pytest.raises(ValueError, match="alternative"):
        ks_test(BASE, BASE, "less")
