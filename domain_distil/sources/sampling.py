"""Seeded sampling shared by the sources: per-item random keys, per-language GB budgets,
mBERT-style exponent smoothing, and a byte histogram that turns a budget into a key threshold.

Keys are a hash of (seed, item id), so a sample depends on nothing else (not file order, worker
count or restarts); docs/data-sources.md, "How a budget is met".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np

GB = 10**9  # the paper's Table 1 counts "GB of uncompressed text": decimal gigabytes of UTF-8


def uniform_key(seed: int, item_id: object) -> float:
    """A uniform number in [0, 1) determined by (seed, item_id); 53 bits, like ``random.random``."""
    digest = hashlib.blake2b(f"{seed}\x1f{item_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / float(1 << 53)


def smoothed_probabilities(sizes: Mapping[str, float], alpha: float = 0.7) -> dict[str, float]:
    """mBERT's language sampling: p_i = n_i / sum n, then q_i = p_i^alpha / sum_j p_j^alpha.

    alpha = 1 keeps the natural proportions, alpha = 0 samples languages uniformly.
    """
    if not sizes:
        raise ValueError("smoothed_probabilities: no languages given")
    if any(v < 0 for v in sizes.values()) or sum(sizes.values()) <= 0:
        raise ValueError(f"smoothed_probabilities: sizes must be >= 0 with a positive sum, got {dict(sizes)}")
    total = float(sum(sizes.values()))
    powered = {lang: (n / total) ** alpha if n > 0 else 0.0 for lang, n in sizes.items()}
    norm = sum(powered.values())
    return {lang: v / norm for lang, v in powered.items()}


def language_budgets(total_gb: float, sizes: Mapping[str, float], alpha: float = 0.7) -> dict[str, float]:
    """Split a total budget in GB over languages in proportion to the smoothed probabilities."""
    return {lang: total_gb * q for lang, q in smoothed_probabilities(sizes, alpha).items()}


def budget_bytes(budget_gb: float | None) -> int | None:
    """GB (decimal) to bytes; ``None`` means "everything there is"."""
    if budget_gb is None:
        return None
    if budget_gb < 0:
        raise ValueError(f"a budget must be >= 0 GB, got {budget_gb}")
    return int(round(budget_gb * GB))


class KeyHistogram:
    """Bytes per key bin, filled in a first pass, so that the second pass knows which key
    threshold yields a byte budget. Memory is ``bins`` counters, whatever the input size."""

    def __init__(self, bins: int = 1 << 16) -> None:
        self.bins = bins
        self.bytes = np.zeros(bins, dtype=np.int64)

    def add(self, key: float, nbytes: int) -> None:
        """Count an item; a negative ``nbytes`` takes out one counted before."""
        self.bytes[min(int(key * self.bins), self.bins - 1)] += nbytes

    @property
    def total_bytes(self) -> int:
        return int(self.bytes.sum())

    def threshold(self, target_bytes: int | None, margin: float = 0.02) -> float:
        """Smallest key threshold whose bins hold at least ``target_bytes * (1 + margin)``.

        The second pass keeps items with key below it and stops adding once the exact budget is
        reached; the margin covers items that the first pass counted but the second pass must
        skip (e.g. answers to task questions), so the budget is still met exactly.
        Returns 1.0 (take everything) when the data is smaller than the budget or it is None.
        """
        if target_bytes is None:
            return 1.0
        cumulative = np.cumsum(self.bytes)
        need = target_bytes * (1.0 + margin)
        idx = int(np.searchsorted(cumulative, need, side="left"))
        if idx >= self.bins - 1:
            return 1.0
        return (idx + 1) / self.bins


class BudgetFilter:
    """Second-pass gate: accept an item when its key is under the threshold and it still fits
    the byte budget. Items that do not fit are skipped, not fatal: a later, shorter item may
    still fit, which keeps the written total within one short document of the budget."""

    def __init__(self, threshold: float, target_bytes: int | None) -> None:
        self.threshold = threshold
        self.target_bytes = target_bytes
        self.written_bytes = 0

    def accept(self, key: float, nbytes: int) -> bool:
        if key >= self.threshold:
            return False
        if self.target_bytes is not None and self.written_bytes + nbytes > self.target_bytes:
            return False
        self.written_bytes += nbytes
        return True

    @property
    def full(self) -> bool:
        return self.target_bytes is not None and self.written_bytes >= self.target_bytes
