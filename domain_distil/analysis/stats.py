"""Two-sample comparisons of per-seed scores: "does encoder A beat encoder B?" (docs/statistics.md).

KS alone is a coarse instrument at 10 seeds, so every comparison also reports Mann–Whitney U, a
bootstrap CI of the mean difference and Cliff's delta.

Direction (easy to get backwards): every function takes ``(candidate, baseline)``, and
``alternative="greater"`` claims "the candidate's scores tend to be larger". scipy's ``ks_2samp``
phrases its alternative in terms of the empirical CDFs, where a *larger* sample has a *lower* CDF,
so "greater" maps to ``ks_2samp(candidate, baseline, alternative="less")``; ``mannwhitneyu``
phrases it in terms of the samples, so there it stays ``"greater"``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

ALTERNATIVES = ("greater", "two-sided")
# How each of our alternatives reads in scipy's KS vocabulary (which talks about CDFs).
_KS_ALTERNATIVE = {"greater": "less", "two-sided": "two-sided"}


@dataclass(frozen=True)
class Comparison:
    """Everything the report says about one candidate-vs-baseline comparison."""

    n_candidate: int
    n_baseline: int
    mean_diff: float  # mean(candidate) - mean(baseline)
    ks_statistic: float
    ks_pvalue: float
    mwu_statistic: float  # U of the candidate sample
    mwu_pvalue: float
    mwu_method: str  # "exact" when there are no ties, else "asymptotic" (tie-corrected)
    ci_low: float  # bootstrap CI of mean(candidate) - mean(baseline)
    ci_high: float
    ci_method: str
    cliffs_delta: float  # P(c > b) - P(c < b), in [-1, 1]
    alternative: str

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def _as_sample(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of scores, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: scores must be finite, got {array.tolist()}")
    return array


def _check_alternative(alternative: str) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")


def ks_test(candidate: Sequence[float], baseline: Sequence[float], alternative: str = "greater") -> tuple[float, float]:
    """KS statistic and p-value; with ``"greater"``, H1 is "the candidate tends to be larger".
    scipy's ``method="auto"`` computes the exact p-value for samples this small."""
    _check_alternative(alternative)
    a, b = _as_sample(candidate, "candidate"), _as_sample(baseline, "baseline")
    result = stats.ks_2samp(a, b, alternative=_KS_ALTERNATIVE[alternative], method="auto")
    return float(result.statistic), float(result.pvalue)


def mann_whitney(
    candidate: Sequence[float], baseline: Sequence[float], alternative: str = "greater"
) -> tuple[float, float, str]:
    """U of the candidate, p-value and the method used.

    The exact null distribution of U assumes no ties; with ties scipy's exact p-value would be
    wrong, so we fall back to the tie-corrected normal approximation and say so.
    """
    _check_alternative(alternative)
    a, b = _as_sample(candidate, "candidate"), _as_sample(baseline, "baseline")
    pooled = np.concatenate([a, b])
    method = "exact" if np.unique(pooled).size == pooled.size else "asymptotic"
    result = stats.mannwhitneyu(a, b, alternative=alternative, method=method)
    return float(result.statistic), float(result.pvalue), method


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


def bootstrap_mean_diff_ci(candidate: Sequence[float], baseline: Sequence[float], confidence: float = 0.95,
                           n_resamples: int = 9999, seed: int = 0) -> tuple[float, float, str]:
    """Two-sided bootstrap CI of ``mean(candidate) - mean(baseline)`` (samples resampled independently).

    BCa first; BCa is undefined when a bootstrap distribution is degenerate (e.g. constant
    scores), in which case the percentile interval is returned and named as such.
    """
    a, b = _as_sample(candidate, "candidate"), _as_sample(baseline, "baseline")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # scipy warns (DegenerateDataWarning) and returns NaN when BCa cannot be computed.
            warnings.simplefilter("ignore")
            result = stats.bootstrap((a, b), _mean_difference, n_resamples=n_resamples, confidence_level=confidence,
                                     method=method, vectorized=True, rng=np.random.default_rng(seed))
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if math.isfinite(low) and math.isfinite(high):
            return low, high, method
    # Both samples constant: every resample gives the same difference.
    diff = float(a.mean() - b.mean())
    return diff, diff, "degenerate"


def cliffs_delta(candidate: Sequence[float], baseline: Sequence[float]) -> float:
    """Cliff's delta = P(c > b) - P(c < b) over all pairs; +1 means every candidate score is larger."""
    a, b = _as_sample(candidate, "candidate"), _as_sample(baseline, "baseline")
    return float(np.sign(a[:, None] - b[None, :]).mean())


def compare(candidate: Sequence[float], baseline: Sequence[float], alternative: str = "greater",
            confidence: float = 0.95, n_resamples: int = 9999, seed: int = 0) -> Comparison:
    """All statistics for one comparison. Fewer than two scores on either side gives NaNs: with one
    seed there is no distribution to compare, and NaN keeps the cell visibly unmarked."""
    a, b = _as_sample(candidate, "candidate"), _as_sample(baseline, "baseline")
    nan = float("nan")
    if a.size < 2 or b.size < 2:
        mean_diff = float(a.mean() - b.mean()) if a.size and b.size else nan
        return Comparison(n_candidate=a.size, n_baseline=b.size, mean_diff=mean_diff, ks_statistic=nan,
                          ks_pvalue=nan, mwu_statistic=nan, mwu_pvalue=nan, mwu_method="n/a", ci_low=nan,
                          ci_high=nan, ci_method="n/a", cliffs_delta=nan, alternative=alternative)
    ks_stat, ks_p = ks_test(a, b, alternative)
    u, mwu_p, mwu_method = mann_whitney(a, b, alternative)
    low, high, ci_method = bootstrap_mean_diff_ci(a, b, confidence, n_resamples, seed)
    return Comparison(n_candidate=int(a.size), n_baseline=int(b.size), mean_diff=float(a.mean() - b.mean()),
                      ks_statistic=ks_stat, ks_pvalue=ks_p, mwu_statistic=u, mwu_pvalue=mwu_p, mwu_method=mwu_method,
                      ci_low=low, ci_high=high, ci_method=ci_method, cliffs_delta=cliffs_delta(a, b),
                      alternative=alternative)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm step-down adjusted p-values, in the input order.

    Sorted ascending p_(1) <= ... <= p_(m), the adjusted value is
    max_{j <= i} min(1, (m - j + 1) p_(j)). NaN entries (comparisons that could not be made) are
    not part of the family: they stay NaN and do not count towards m.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    if valid.size == 0:
        return adjusted
    if np.any((p[valid] < 0) | (p[valid] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[valid].tolist()}")
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted


def min_ks_pvalue(n_candidate: int, n_baseline: int, alternative: str = "greater") -> float:
    """Smallest p-value the KS test can give at these sample sizes (complete separation).

    With 3 seeds per side, for instance, it is 0.05 one-sided, so nothing can be marked at
    alpha = 0.05; the report warns when that happens instead of printing a silently empty table.
    """
    if n_candidate < 1 or n_baseline < 1:
        return float("nan")
    high = np.arange(n_candidate, dtype=float) + n_baseline + 1.0
    low = np.arange(n_baseline, dtype=float)
    return ks_test(high, low, alternative)[1]
