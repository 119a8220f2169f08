"""The report's p-value table: every ordered pair of a task table's encoders, tested both ways.

Table 8's marks only compare candidates with the baselines, in one direction; a reader asking
whether the teacher beats the general-domain student needs the other pairs too. The p-values are
raw (no Holm): they are for reading, the marks are decided in :mod:`domain_distil.analysis.table8`.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations
from typing import TYPE_CHECKING

from domain_distil.analysis.stats import ks_test, mann_whitney

if TYPE_CHECKING:  # table8 imports this module
    from domain_distil.analysis.table8 import TaskTable

NAN = float("nan")


@dataclass(frozen=True)
class PairTest:
    """``encoder`` against ``other`` on one cell; with ``alternative="greater"`` H1 is "encoder is larger"."""

    task: str
    metric: str
    freeze: bool
    lang: str
    encoder: str
    other: str
    n_encoder: int
    n_other: int
    mean_diff: float  # mean(encoder) - mean(other)
    ks_pvalue: float
    mwu_pvalue: float
    alternative: str


def pairwise_tests(table: TaskTable, alternative: str) -> list[PairTest]:
    """KS and MWU p-values for every ordered pair of ``table.encoders`` (fewer than 2 seeds: NaN)."""
    tests = []
    for metric in table.metrics:
        for freeze in table.freeze:
            for encoder, other in permutations(table.encoders, 2):
                for lang in table.langs:
                    a = table.cell(metric, freeze, encoder, lang).values
                    b = table.cell(metric, freeze, other, lang).values
                    diff = sum(a) / len(a) - sum(b) / len(b) if a and b else NAN
                    ks_p, mwu_p = ((NAN, NAN) if len(a) < 2 or len(b) < 2
                                   else (ks_test(a, b, alternative)[1], mann_whitney(a, b, alternative)[1]))
                    tests.append(PairTest(table.task, metric, freeze, lang, encoder, other, len(a), len(b), diff,
                                          ks_p, mwu_p, alternative))
    return tests
