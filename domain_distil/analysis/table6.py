"""Table 6 and Figure 2: students distilled on growing data budgets vs the baselines (paper §5),
for one task, language and frozen/fine-tuned setting; Figure 2 draws each baseline as a line."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from domain_distil.analysis.render import markdown_table, pyplot, save_png
from domain_distil.analysis.results import Collection
from domain_distil.analysis.table8 import Cell
from domain_distil.common.io import atomic_open

_TRAILING_NUMBER = re.compile(r"(\d+(?:\.\d+)?)$")
METRICS = ("precision", "recall", "f1")


@dataclass
class Row:
    encoder: str
    budget_gb: float | None  # None for baselines
    cells: dict[str, Cell]  # metric -> per-seed scores


def budget_of(encoder: str, budgets: Mapping[str, float] | None) -> float:
    """The GB budget of a student: from the mapping, or the number its id ends with (TD2.1 -> 2.1)."""
    if budgets and encoder in budgets:
        return float(budgets[encoder])
    match = _TRAILING_NUMBER.search(encoder)
    if not match:
        raise ValueError(
            f"report.table6: cannot tell the data budget of encoder {encoder!r}; name it like 'TD2.1' "
            f"or list it in report.table6.budgets")
    return float(match.group(1))


def build_table6(collection: Collection, task: str, lang: str, freeze: bool, baselines: Sequence[str],
                 budgets: Mapping[str, float] | None = None) -> list[Row]:
    """Baseline rows (in the given order), then every other encoder of ``task`` sorted by budget."""
    cells: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for record in collection.ok:
        key = record.key
        if (key.task, key.lang, key.freeze) == (task, lang, freeze):
            per_metric = cells.setdefault(key.encoder, {m: [] for m in METRICS})
            for metric in METRICS:
                per_metric[metric].append((key.seed, float(record.test[metric])))
    if not cells:
        raise ValueError(f"report.table6: no successful runs for task={task} lang={lang} freeze={freeze}")

    def row(encoder: str, budget: float | None) -> Row:
        scores = cells.get(encoder, {m: [] for m in METRICS})
        return Row(encoder, budget, {m: Cell([v for _, v in sorted(scores[m])]) for m in METRICS})

    students = sorted((budget_of(e, budgets), e) for e in cells if e not in baselines)
    return [row(b, None) for b in baselines] + [row(e, gb) for gb, e in students]


def render_markdown(rows: Sequence[Row], title: str) -> str:
    body = [[f"{r.encoder} *" if r.budget_gb is None else r.encoder,
             *("–" if math.isnan(r.cells[m].mean) else f"{r.cells[m].mean:.3f}" for m in METRICS), str(r.cells["f1"].n)]
            for r in rows]
    table = markdown_table(["Model", "Precision", "Recall", "F1", "n"], body, right=4)
    return f"### {title}\n\n{table}\n* = baseline. Means over seeds.\n"


def write_csv(rows: Sequence[Row], path: Path) -> Path:
    with atomic_open(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["encoder", "baseline", "budget_gb", "n", *(f"{m}_{s}" for m in METRICS for s in ("mean", "std"))])
        for r in rows:
            writer.writerow([
                r.encoder, r.budget_gb is None, "" if r.budget_gb is None else r.budget_gb, r.cells["f1"].n,
                *(v for m in METRICS for v in (r.cells[m].mean, r.cells[m].std)),
            ])
    return path


def plot_figure2(rows: Sequence[Row], path: Path, title: str) -> Path:
    students = [r for r in rows if r.budget_gb is not None]
    fig, ax = pyplot().subplots(figsize=(6, 3.8))
    if students:
        ax.errorbar(
            [r.budget_gb for r in students], [r.cells["f1"].mean for r in students],
            yerr=[0.0 if math.isnan(r.cells["f1"].std) else r.cells["f1"].std for r in students],
            fmt="o-", capsize=3, label="F1 Score",
        )
    for i, r in enumerate(r for r in rows if r.budget_gb is None):
        ax.axhline(r.cells["f1"].mean, linestyle="--", color=f"C{i + 1}", label=r.encoder)
    ax.set_xlabel("distillation data (GB of uncompressed text)")
    ax.set_ylabel("Macro F1 (mean ± sd over seeds)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_png(fig, path)
