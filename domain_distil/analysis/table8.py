"""Table 8: metric x frozen/fine-tuned x encoder rows, language columns, means over seeds with marks.

A candidate encoder's cell gets a baseline role's symbol (⋆ for the DistilmBERT role, † for the
mBERT role) when its per-seed scores beat that baseline's by a one-sided KS test at ``alpha``
(Holm-adjusted over the family of one metric's comparisons when ``holm`` is on). Which encoder ids
play the roles is configuration, so the demo's small encoders can stand in for the paper's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from domain_distil.analysis.results import Collection
from domain_distil.analysis.stats import Comparison, compare, holm, min_ks_pvalue

DEFAULT_SYMBOLS = {"distilmbert": "⋆", "mbert": "†"}
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
    symbols: dict[str, str]  # role -> mark
    candidates: list[str]
    settings: StatsSettings
    warnings: list[str] = field(default_factory=list)


def order_langs(langs: Sequence[str]) -> list[str]:
    known = [lang for lang in LANG_ORDER if lang in langs]
    return known + sorted(set(langs) - set(known))


def _check_roles(collection: Collection, baselines: Mapping[str, str], symbols: Mapping[str, str]) -> None:
    missing_symbols = sorted(set(baselines) - set(symbols))
    if missing_symbols:
        raise ValueError(f"report.symbols: no mark defined for baseline role(s) {missing_symbols}")
    seen = {r.key.encoder for r in collection.ok}
    absent = {role: enc for role, enc in baselines.items() if enc not in seen}
    if absent:
        raise ValueError(
            f"report.baselines: encoder id(s) {absent} have no successful runs; "
            f"encoder ids found in the results: {sorted(seen)}"
        )


def build_table8(
    collection: Collection,
    baselines: Mapping[str, str],
    candidates: Sequence[str] | None = None,
    metrics: Sequence[str] = ("f1", "precision", "recall"),
    settings: StatsSettings | None = None,
    symbols: Mapping[str, str] | None = None,
) -> Table8:
    """Compute every cell and every candidate-vs-baseline comparison, per task in the grid."""
    settings = settings or StatsSettings()
    symbols = dict(symbols or DEFAULT_SYMBOLS)
    baselines = dict(baselines)
    _check_roles(collection, baselines, symbols)
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
            scores = collection.scores(metric)
            by_point: dict[tuple[bool, str, str], list[tuple[int, float]]] = {}
            for key, value in scores.items():
                if key.task == task:
                    by_point.setdefault((key.freeze, key.encoder, key.lang), []).append((key.seed, value))
            for fr, enc, lang in ((f, e, la) for f in freeze for e in rows for la in langs):
                values = [v for _, v in sorted(by_point.get((fr, enc, lang), []))]
                cells[(metric, fr, enc, lang)] = Cell(values)
            for fr, enc, lang in ((f, e, la) for f in freeze for e in cands for la in langs):
                cell = cells[(metric, fr, enc, lang)]
                for role, base in baselines.items():
                    if base in rows:
                        reference = cells[(metric, fr, base, lang)].values
                        cell.comparisons[role] = compare(
                            cell.values, reference, settings.alternative, settings.confidence,
                            settings.n_resamples, settings.seed,
                        )
            _mark(cells, metric, settings, symbols)
        table = TaskTable(task, langs, rows, freeze, list(metrics), cells, len(axes["seeds"]))
        tables.append(table)
        notes += _resolution_warnings(table, settings)
    return Table8(tables, baselines, symbols, [e for t in tables for e in t.encoders if e not in baseline_ids], settings, notes)


def _mark(cells: dict[tuple[str, bool, str, str], Cell], metric: str, settings: StatsSettings, symbols: Mapping[str, str]) -> None:
    """Adjust (optionally) the KS p-values of one metric's family and set the marks."""
    family = [(cell, role) for (m, *_), cell in cells.items() if m == metric for role in cell.comparisons]
    raw = np.array([cell.comparisons[role].ks_pvalue for cell, role in family], dtype=float)
    adjusted = holm(raw) if settings.holm else raw
    for (cell, role), p in zip(family, adjusted):
        cell.adjusted[role] = float(p)
    for (m, *_), cell in cells.items():
        if m == metric:
            # Marks in the order of the roles' symbols (⋆ before †, as in the paper).
            cell.marks = "".join(
                sym for role, sym in symbols.items() if role in cell.adjusted and cell.adjusted[role] < settings.alpha
            )


def _resolution_warnings(table: TaskTable, settings: StatsSettings) -> list[str]:
    """Say so when the seeds are too few for the KS test to ever reach alpha."""
    sizes = {
        (c.comparisons[r].n_candidate, c.comparisons[r].n_baseline) for c in table.cells.values() for r in c.comparisons
    }
    notes = []
    for n_a, n_b in sorted(sizes):
        floor = min_ks_pvalue(n_a, n_b, settings.alternative)
        if not floor < settings.alpha:
            notes.append(
                f"task {table.task}: with {n_a} vs {n_b} seeds the smallest possible KS p-value is "
                f"{floor:.3g} >= alpha={settings.alpha}, so no cell with these counts can be marked"
            )
    return notes
