"""Table 8: metric x frozen/fine-tuned x encoder rows, language columns, means over seeds with marks.

A candidate's cell gets a baseline role's symbol (⋆ DistilmBERT role, † mBERT role) when a KS test
at ``alpha`` (Holm-adjusted per metric when ``holm`` is on) finds its per-seed scores better; a
two-sided test takes the direction from the mean difference, so a worse model gets the role's
*worse* symbol (▽ / ▼), never "beats". docs/statistics.md has the details.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product

import numpy as np

from domain_distil.analysis.pairwise import PairTest, pairwise_tests
from domain_distil.analysis.results import Collection
from domain_distil.analysis.stats import ALTERNATIVES, Comparison, compare, holm, min_ks_pvalue
from domain_distil.classification.results import METRIC_KEYS
from domain_distil.common.errors import ConfigError

DEFAULT_SYMBOLS = {"distilmbert": "⋆", "mbert": "†"}
# Significantly worse than the role's baseline (two-sided test only).
DEFAULT_WORSE_SYMBOLS = {"distilmbert": "▽", "mbert": "▼"}
BETTER, WORSE = "better", "worse"
# Paper order of the five languages; other codes follow alphabetically.
LANG_ORDER = ("eng", "esp", "jap", "por", "rus")
METRIC_NAMES = {"f1": "F1-Score", "precision": "Precision", "recall": "Recall"}


@dataclass(frozen=True)
class StatsSettings:
    alpha: float = 0.05
    holm: bool = False
    alternative: str = "greater"
    confidence: float = 0.95
    n_resamples: int = 9999
    seed: int = 0


@dataclass
class Cell:
    values: list[float]
    # role -> comparison of this encoder against the baseline playing that role
    comparisons: dict[str, Comparison] = field(default_factory=dict)
    # role -> KS p-value after Holm (equal to the raw p-value when Holm is off)
    adjusted: dict[str, float] = field(default_factory=dict)
    # role -> "better" / "worse" for the significant comparisons only
    significant: dict[str, str] = field(default_factory=dict)
    marks: str = ""

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self) -> float:
        # Sample standard deviation over seeds (ddof=1), NaN for a single seed.
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else float("nan")


@dataclass
class TaskTable:
    task: str
    langs: list[str]
    encoders: list[str]  # row order: candidates first, then baselines in role order
    freeze: list[bool]  # frozen first, like the paper
    metrics: list[str]
    cells: dict[tuple[str, bool, str, str], Cell]  # (metric, freeze, encoder, lang) -> cell
    n_seeds: int  # seeds expected per cell (the grid's), to flag incomplete cells

    def cell(self, metric: str, freeze: bool, encoder: str, lang: str) -> Cell:
        return self.cells[(metric, freeze, encoder, lang)]


@dataclass
class Table8:
    tables: list[TaskTable]
    baselines: dict[str, str]  # role -> encoder id
    symbols: dict[str, str]  # role -> mark for "significantly better"
    candidates: list[str]
    settings: StatsSettings
    warnings: list[str] = field(default_factory=list)
    worse_symbols: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_WORSE_SYMBOLS))
    # Every ordered pair of every task table's encoders, both ways (raw p-values, no Holm).
    pairs: list[PairTest] = field(default_factory=list)


def order_langs(langs: Sequence[str]) -> list[str]:
    known = [lang for lang in LANG_ORDER if lang in langs]
    return known + sorted(set(langs) - set(known))


def _check_roles(
    collection: Collection, baselines: Mapping[str, str], symbols: Mapping[str, str], worse_symbols: Mapping[str, str]
) -> None:
    for name, defined in (("symbols", symbols), ("worse_symbols", worse_symbols)):
        missing = sorted(set(baselines) - set(defined))
        if missing:
            raise ConfigError(f"report.{name}: no mark defined for baseline role(s) {missing}")
    marks = [symbols[r] for r in baselines] + [worse_symbols[r] for r in baselines]
    if len(set(marks)) != len(marks) or not all(marks):
        raise ConfigError(
            f"report.symbols {dict(symbols)} and report.worse_symbols {dict(worse_symbols)}: every role needs two "
            "distinct non-empty marks, distinct from every other role's, or a cell could not be read unambiguously")
    seen = {r.key.encoder for r in collection.ok}
    absent = {role: enc for role, enc in baselines.items() if enc not in seen}
    if absent:
        fixes = " ".join(f"report.baselines.{role}=<id>" for role in absent)
        drops = " ".join(f"'~report.baselines.{role}'" for role in absent)
        raise ConfigError(
            f"report.baselines: encoder id(s) {absent} have no successful runs; "
            f"encoder ids found in the results: {sorted(seen)}. Point the role(s) at one of them ({fixes}) "
            f"or drop a role without such a baseline ({drops})")


def build_table8(collection: Collection, baselines: Mapping[str, str], candidates: Sequence[str] | None = None,
                 metrics: Sequence[str] = METRIC_KEYS, settings: StatsSettings | None = None,
                 symbols: Mapping[str, str] | None = None, worse_symbols: Mapping[str, str] | None = None) -> Table8:
    """Compute every cell, every candidate-vs-baseline comparison and every pairwise test, per task."""
    settings = settings or StatsSettings()
    if settings.alternative not in ALTERNATIVES:
        raise ValueError(f"report.stats.alternative: expected one of {list(ALTERNATIVES)}, got {settings.alternative!r}")
    symbols = dict(symbols or DEFAULT_SYMBOLS)
    worse_symbols = dict(worse_symbols or DEFAULT_WORSE_SYMBOLS)
    baselines = dict(baselines)
    _check_roles(collection, baselines, symbols, worse_symbols)
    baseline_ids = list(dict.fromkeys(baselines.values()))
    tables, notes = [], []
    everywhere = {e for axes in collection.grid.values() for e in axes["encoders"]}
    unknown = [c for c in (candidates or []) if c not in everywhere]
    if unknown:
        notes.append(f"report.candidates {unknown} have no runs in any task; encoders found: {sorted(everywhere)}")
    for task, axes in collection.grid.items():
        encoders_here = list(axes["encoders"])
        cands = [e for e in (candidates or encoders_here) if e in encoders_here and e not in baseline_ids]
        rows = cands + [e for e in baseline_ids if e in encoders_here]
        freeze = sorted(axes["freeze"], reverse=True)  # True (frozen) first
        langs = order_langs(axes["langs"])
        cells: dict[tuple[str, bool, str, str], Cell] = {}
        for metric in metrics:
            by_point: dict[tuple[bool, str, str], list[tuple[int, float]]] = {}
            for key, value in collection.scores(metric).items():
                if key.task == task:
                    by_point.setdefault((key.freeze, key.encoder, key.lang), []).append((key.seed, value))
            for fr, enc, lang in product(freeze, rows, langs):
                cells[(metric, fr, enc, lang)] = Cell([v for _, v in sorted(by_point.get((fr, enc, lang), []))])
            for fr, enc, lang in product(freeze, cands, langs):
                cell = cells[(metric, fr, enc, lang)]
                for role, base in baselines.items():
                    if base in rows:
                        reference = cells[(metric, fr, base, lang)].values
                        cell.comparisons[role] = compare(cell.values, reference, settings.alternative,
                                                         settings.confidence, settings.n_resamples, settings.seed)
            _mark(cells, metric, settings, symbols, worse_symbols)
        table = TaskTable(task, langs, rows, freeze, list(metrics), cells, len(axes["seeds"]))
        tables.append(table)
        notes += _resolution_warnings(table, settings)
    pairs = [pair for table in tables for pair in pairwise_tests(table, settings.alternative)]
    candidates_shown = [e for t in tables for e in t.encoders if e not in baseline_ids]
    return Table8(tables, baselines, symbols, candidates_shown, settings, notes, worse_symbols, pairs)


def direction(comparison: Comparison, alternative: str) -> str:
    """Which way a significant comparison goes: a one-sided "greater" test can only say better; a
    two-sided one says "different", and the sign of the mean difference (what the cells show) says
    which way. Equal means with a significant two-sided KS (a difference in spread only) get ""."""
    if alternative == "greater" or comparison.mean_diff > 0:
        return BETTER
    return WORSE if comparison.mean_diff < 0 else ""


def _mark(cells: dict[tuple[str, bool, str, str], Cell], metric: str, settings: StatsSettings,
          symbols: Mapping[str, str], worse_symbols: Mapping[str, str]) -> None:
    """Adjust (optionally) the KS p-values of one metric's family and set the marks."""
    family = [(cell, role) for (m, *_), cell in cells.items() if m == metric for role in cell.comparisons]
    raw = np.array([cell.comparisons[role].ks_pvalue for cell, role in family], dtype=float)
    adjusted = holm(raw) if settings.holm else raw
    for (cell, role), p in zip(family, adjusted):
        cell.adjusted[role] = float(p)
        if p < settings.alpha:
            way = direction(cell.comparisons[role], settings.alternative)
            if way:
                cell.significant[role] = way
    for (m, *_), cell in cells.items():
        if m == metric:
            # Marks in the order of the roles' symbols (⋆ before †, as in the paper), each role's
            # better or worse mark.
            cell.marks = "".join(
                (symbols if cell.significant[role] == BETTER else worse_symbols)[role]
                for role in symbols if role in cell.significant
            )


def _resolution_warnings(table: TaskTable, settings: StatsSettings) -> list[str]:
    """Say so when the seeds are too few for the KS test to ever reach alpha."""
    sizes = {(c.comparisons[r].n_candidate, c.comparisons[r].n_baseline) for c in table.cells.values() for r in c.comparisons}
    notes = []
    for n_a, n_b in sorted(sizes):
        floor = min_ks_pvalue(n_a, n_b, settings.alternative)
        if not floor < settings.alpha:
            notes.append(
                f"task {table.task}: with {n_a} vs {n_b} seeds the smallest possible KS p-value is "
                f"{floor:.3g} >= alpha={settings.alpha}, so no cell with these counts can be marked")
    return notes
