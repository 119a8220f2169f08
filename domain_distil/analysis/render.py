"""Table 8 as CSV (every number), Markdown, LaTeX, a PNG plot, a rich terminal table and W&B tables.

Every format shows the same cell text (:func:`cell_text`) and the same legend (:func:`legend`:
test, alternative and α), so a reader of any one file can tell what a mark claims.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Collection, Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from domain_distil.analysis.pairwise import PairTest
from domain_distil.analysis.table8 import METRIC_NAMES, Cell, Table8, TaskTable
from domain_distil.common.io import atomic_open

# amssymb's \triangledown / \blacktriangledown for the "worse" marks.
_LATEX_SYMBOLS = {
    "⋆": r"$^{\star}$", "†": r"$^{\dagger}$", "▽": r"$^{\triangledown}$", "▼": r"$^{\blacktriangledown}$",
    "±": r"$\pm$", "×": r"$\times$", "<": "$<$", "α": r"$\alpha$", "–": "--", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
}
_COMPARISON_FIELDS = (
    "mean_diff", "ks_statistic", "ks_pvalue", "ks_pvalue_adjusted", "mwu_statistic", "mwu_pvalue",
    "mwu_method", "ci_low", "ci_high", "ci_method", "cliffs_delta",
)


def freeze_name(freeze: bool) -> str:
    return "Frozen" if freeze else "Fine-tuned"


def cell_text(cell: Cell, n_seeds: int, show_sd: bool = True) -> str:
    """``75.9 ± 0.6⋆†`` (the paper's ``75.9⋆†`` with ``show_sd=False``); ``–`` when no seed
    succeeded; ``(n=7)`` when seeds are missing; no ``±`` for a single seed."""
    if cell.n == 0:
        return "–"
    spread = f" ± {100 * cell.std:.1f}" if show_sd and not math.isnan(cell.std) else ""
    text = f"{100 * cell.mean:.1f}{spread}{cell.marks}"
    return text if cell.n == n_seeds else f"{text} (n={cell.n})"


def _rows(table: TaskTable) -> Iterator[tuple[str, bool, str]]:
    return itertools.product(table.metrics, table.freeze, table.encoders)


def _display_rows(table: TaskTable, show_sd: bool, metric_names: bool = True) -> list[list[str]]:
    """Table 8's rows as every format shows them: metric, weights, model, one cell per language."""
    return [[METRIC_NAMES.get(metric, metric) if metric_names else metric, freeze_name(freeze), encoder,
             *(cell_text(table.cell(metric, freeze, encoder, lang), table.n_seeds, show_sd) for lang in table.langs)]
            for metric, freeze, encoder in _rows(table)]


def markdown_table(header: list[str], rows: list[list[str]], right: int = 0) -> str:
    """A Markdown table whose last ``right`` columns are right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * (len(header) - right) + "---:|" * right]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def rich_table(title: str, header: list[str], rows: list[list[str]], left: Collection[str],
               caption: str | None = None) -> Any:
    """``rows`` as a rich table: the ``left`` columns left-aligned, numbers right."""
    from rich.table import Table

    table = Table(title=title, caption=caption)
    for name in header:
        table.add_column(name, justify="left" if name in left else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_table(console: Any, title: str, header: list[str], rows: list[list[str]], left: Collection[str]) -> None:
    console.print(rich_table(title, header, rows, left))


def legend(result: Table8, show_sd: bool = True) -> str:
    """What the cells and marks mean: test, alternative, α, correction and every mark."""
    s = result.settings
    cells = "Means ± sd over seeds ×100." if show_sd else "Means over seeds ×100."
    holm = ", Holm-adjusted per metric" if s.holm else ""
    roles = [role for role in result.symbols if role in result.baselines]
    if s.alternative == "greater":
        test = f"one-sided two-sample KS test (H1: the row's scores tend to be higher), p < α = {s.alpha}{holm}"
        marks = [f"{result.symbols[r]} beats {result.baselines[r]} ({r} role)" for r in roles]
        tail = "A one-sided test never marks a worse cell; see the p-value table."
    else:
        test = (f"two-sided two-sample KS test (H1: the distributions differ), p < α = {s.alpha}{holm}; "
                "the direction is the sign of the mean difference")
        marks = [
            f"{result.symbols[r]} significantly better than {result.baselines[r]} ({r} role), "
            f"{result.worse_symbols[r]} significantly worse than it" for r in roles
        ]
        tail = ""
    return " ".join(part for part in (cells, f"Marks: {test}.", "; ".join(marks) + ".", tail) if part)


def _p(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2g}"


def pair_label(pair: PairTest) -> str:
    return f"{pair.encoder} > {pair.other}" if pair.alternative == "greater" else f"{pair.encoder} vs {pair.other}"


def pair_text(pair: PairTest) -> str:
    """``KS p / MWU p``; two-sided: an arrow first for the direction (↑ the row's encoder is higher)."""
    text = f"{_p(pair.ks_pvalue)} / {_p(pair.mwu_pvalue)}"
    if pair.alternative == "greater" or math.isnan(pair.mean_diff):
        return text
    arrow = "↑" if pair.mean_diff > 0 else "↓" if pair.mean_diff < 0 else "="
    return f"{arrow} {text}"


def pvalue_rows(result: Table8, table: TaskTable) -> list[list[str]]:
    """[metric name, weights, comparison, one text per language] for the task's p-value table."""
    by_key = {(p.metric, p.freeze, p.encoder, p.other, p.lang): p for p in result.pairs if p.task == table.task}
    rows = []
    for metric, freeze, encoder in _rows(table):
        for other in table.encoders:
            if other != encoder:
                pairs = [by_key[(metric, freeze, encoder, other, lang)] for lang in table.langs]
                rows.append([METRIC_NAMES.get(metric, metric), freeze_name(freeze), pair_label(pairs[0]),
                             *(pair_text(p) for p in pairs)])
    return rows


def pvalue_legend(result: Table8) -> str:
    s = result.settings
    if s.alternative == "greater":
        h1 = "one-sided, H1: the first encoder's scores tend to be higher; both orders of every pair are listed"
    else:
        h1 = "two-sided, H1: the two differ; ↑/↓: the first encoder's mean is higher/lower"
    return f"KS p / Mann–Whitney U p per cell, raw (no Holm correction), {h1}."


def csv_records(result: Table8) -> list[dict[str, Any]]:
    """One row per (task, metric, freeze, encoder, lang): mean, sd, n, scores, and every test per role."""
    records = []
    for table in result.tables:
        for metric, freeze, encoder in _rows(table):
            for lang in table.langs:
                cell = table.cell(metric, freeze, encoder, lang)
                row: dict[str, Any] = {
                    "task": table.task, "metric": metric, "weights": freeze_name(freeze).lower(),
                    "encoder": encoder, "lang": lang, "n": cell.n, "n_expected": table.n_seeds,
                    "mean": cell.mean, "std": cell.std, "mean_x100": round(100 * cell.mean, 1) if cell.n else "",
                    "sd_x100": "" if math.isnan(cell.std) else round(100 * cell.std, 1),
                    "marks": cell.marks, "scores": ";".join(f"{v:.6g}" for v in cell.values),
                }
                for role, baseline in result.baselines.items():
                    comparison = cell.comparisons.get(role)
                    row[f"vs_{role}_encoder"] = baseline if comparison else ""
                    values = comparison.as_dict() if comparison else {}
                    values["ks_pvalue_adjusted"] = cell.adjusted.get(role, "")
                    for name in _COMPARISON_FIELDS:
                        row[f"vs_{role}_{name}"] = values.get(name, "")
                    row[f"vs_{role}_significant"] = cell.significant.get(role, "")
                records.append(row)
    return records


def pvalue_records(result: Table8) -> list[dict[str, Any]]:
    """One row per ordered pair, metric, mode and language (the p-value table, every number)."""
    return [{**asdict(p), "weights": freeze_name(p.freeze).lower()} for p in result.pairs]


def _write_records(records: list[dict[str, Any]], path: Path) -> Path:
    with atomic_open(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["task"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return path


def write_csv(result: Table8, path: Path) -> Path:
    return _write_records(csv_records(result), path)


def write_pvalues_csv(result: Table8, path: Path) -> Path:
    return _write_records(pvalue_records(result), path)


def render_markdown(result: Table8, show_sd: bool = True) -> str:
    lines = []
    for table in result.tables:
        lines += [f"### {table.task}", "", markdown_table(["Metric", "Encoder weights", "Model", *table.langs],
                                                          _display_rows(table, show_sd), len(table.langs))]
    lines += [legend(result, show_sd), ""]
    for table in result.tables:
        lines += [f"### {table.task}: p-values", "", markdown_table(
            ["Metric", "Encoder weights", "Comparison", *table.langs], pvalue_rows(result, table), len(table.langs))]
    lines.append(pvalue_legend(result))
    return "\n".join(lines) + "\n"


def _latex(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, repl)
    for char, repl in _LATEX_SYMBOLS.items():
        text = text.replace(char, repl)
    return text


def _latex_table(header: list[str], rows: list[list[str]], caption: str, n_right: int) -> list[str]:
    return [
        r"\begin{table}[t]", r"\centering", r"\begin{tabular}{lll" + "r" * n_right + "}", r"\toprule",
        " & ".join(_latex(h) for h in header) + r" \\", r"\midrule",
        *(" & ".join(_latex(c) for c in row) + r" \\" for row in rows),
        r"\bottomrule", r"\end{tabular}", f"\\caption{{{_latex(caption)}}}", r"\end{table}", "",
    ]


def render_latex(result: Table8, show_sd: bool = True) -> str:
    """Table 8 and the p-value table per task (the marks need amssymb for ▽ / ▼)."""
    out = []
    for table in result.tables:
        out += _latex_table(["Metric", "Encoder weights", "Model", *table.langs], _display_rows(table, show_sd),
                            f"{table.task}. {legend(result, show_sd)}", len(table.langs))
        out += _latex_table(["Metric", "Encoder weights", "Comparison", *table.langs], pvalue_rows(result, table),
                            f"{table.task}: p-values. {pvalue_legend(result)}", len(table.langs))
    return "\n".join(out)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend: no display on servers and CI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` atomically and close it."""
    with atomic_open(path, "wb", encoding=None) as handle:
        fig.savefig(handle, format="png", dpi=dpi)
    pyplot().close(fig)
    return path


def plot_f1(result: Table8, output_dir: Path, metric: str = "f1") -> list[Path]:
    """One PNG per task: mean ± sd of ``metric`` per language, one series per encoder, one panel per
    mode; each point carries its cell's marks, and the legend of the marks is the figure's caption."""
    plt = pyplot()
    paths = []
    for table in result.tables:
        if metric not in table.metrics:
            continue
        fig, axes = plt.subplots(1, len(table.freeze), figsize=(4.5 * len(table.freeze), 4.0), squeeze=False, sharey=True)
        width = 0.8 / max(1, len(table.encoders))
        for ax, freeze in zip(axes[0], table.freeze):
            for i, encoder in enumerate(table.encoders):
                cells = [table.cell(metric, freeze, encoder, lang) for lang in table.langs]
                x = [j + (i - (len(table.encoders) - 1) / 2) * width for j in range(len(table.langs))]
                means = [100 * c.mean for c in cells]
                errors = [0.0 if math.isnan(c.std) else 100 * c.std for c in cells]
                ax.errorbar(x, means, yerr=errors, fmt="o", capsize=3, label=encoder)
                for xi, mean, error, cell in zip(x, means, errors, cells):
                    if cell.marks and not math.isnan(mean):
                        ax.annotate(cell.marks, (xi, mean + error), ha="center", va="bottom", fontsize="small")
            ax.set_xticks(range(len(table.langs)), table.langs)
            ax.set_title(f"{table.task}: {freeze_name(freeze)}")
            ax.grid(axis="y", alpha=0.3)
        axes[0][0].set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (mean ± sd over seeds, x100)")
        axes[0][-1].legend(fontsize="small")
        fig.text(0.01, 0.01, legend(result), fontsize="x-small", wrap=True)
        fig.tight_layout(rect=(0, 0.08, 1, 1))
        paths.append(save_png(fig, output_dir / f"table8_{table.task}_{metric}.png"))
    return paths


def rich_tables(result: Table8, show_sd: bool = True) -> list[Any]:
    return [rich_table(f"Table 8: {table.task}", ["Metric", "Weights", "Model", *table.langs],
                       _display_rows(table, show_sd), ("Metric", "Weights", "Model"), legend(result, show_sd))
            for table in result.tables]


def _wandb_table(records: list[Mapping[str, Any]]) -> Any:
    import wandb

    # W&B types each column from its values: blanks must be None, not "", next to numbers; NaN too.
    def clean(value: Any) -> Any:
        return None if value == "" or (isinstance(value, float) and math.isnan(value)) else value

    return wandb.Table(columns=list(records[0]), data=[[clean(v) for v in r.values()] for r in records])


def wandb_tables(result: Table8, show_sd: bool = True) -> dict[str, Any]:
    """The W&B tables ``task=report`` logs: per task the display table (the Markdown cells, text), and
    for the whole report ``table8/stats`` (every number of table8.csv) and ``table8/pvalues``."""
    import wandb

    tables: dict[str, Any] = {}
    for table in result.tables:
        tables[f"table8/{table.task}"] = wandb.Table(columns=["metric", "weights", "model", *table.langs],
                                                     data=_display_rows(table, show_sd, metric_names=False))
    for name, records in (("stats", csv_records(result)), ("pvalues", pvalue_records(result))):
        if records:
            tables[f"table8/{name}"] = _wandb_table(records)
    return tables


def log_wandb(result: Table8, run: Any, show_sd: bool = True) -> None:
    """Log :func:`wandb_tables` to ``run`` in one step."""
    run.log(wandb_tables(result, show_sd))
