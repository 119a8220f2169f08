"""Table 8 as CSV (every number), Markdown, LaTeX, a PNG plot, a rich terminal table and W&B tables."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from domain_distil.analysis.table8 import METRIC_NAMES, Cell, Table8, TaskTable
from domain_distil.common.io import atomic_open

_LATEX_SYMBOLS = {"⋆": r"$^{\star}$", "†": r"$^{\dagger}$"}
_COMPARISON_FIELDS = (
    "mean_diff", "ks_statistic", "ks_pvalue", "ks_pvalue_adjusted", "mwu_statistic", "mwu_pvalue",
    "mwu_method", "ci_low", "ci_high", "ci_method", "cliffs_delta",
)


def freeze_name(freeze: bool) -> str:
    return "Frozen" if freeze else "Fine-tuned"


def cell_text(cell: Cell, n_seeds: int, symbols: dict[str, str] | None = None) -> str:
    """``86.6⋆†`` like the paper; ``–`` when no seed succeeded; ``(n=7)`` when seeds are missing."""
    if cell.n == 0:
        return "–"
    marks = "".join((symbols or {}).get(m, m) for m in cell.marks)
    text = f"{100 * cell.mean:.1f}{marks}"
    return text if cell.n == n_seeds else f"{text} (n={cell.n})"


def _rows(table: TaskTable) -> Iterator[tuple[str, bool, str]]:
    for metric in table.metrics:
        for freeze in table.freeze:
            for encoder in table.encoders:
                yield metric, freeze, encoder


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
                    "marks": cell.marks, "scores": ";".join(f"{v:.6g}" for v in cell.values),
                }
                for role, baseline in result.baselines.items():
                    comparison = cell.comparisons.get(role)
                    row[f"vs_{role}_encoder"] = baseline if comparison else ""
                    values = comparison.as_dict() if comparison else {}
                    values["ks_pvalue_adjusted"] = cell.adjusted.get(role, "")
                    for name in _COMPARISON_FIELDS:
                        row[f"vs_{role}_{name}"] = values.get(name, "")
                records.append(row)
    return records


def write_csv(result: Table8, path: Path) -> Path:
    records = csv_records(result)
    with atomic_open(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=list(records[0]) if records else ["task"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
    return path


def _legend(result: Table8) -> str:
    test = "one-sided KS (candidate better)" if result.settings.alternative == "greater" else "two-sided KS"
    holm = ", Holm-adjusted per metric" if result.settings.holm else ""
    parts = [f"{sym} beats {result.baselines[role]} ({role} role)" for role, sym in result.symbols.items() if role in result.baselines]
    return f"Means over seeds ×100. {'; '.join(parts)}: {test}{holm}, p < {result.settings.alpha}."


def render_markdown(result: Table8) -> str:
    lines = []
    for table in result.tables:
        lines += [f"### {table.task}", "", "| Metric | Encoder weights | Model | " + " | ".join(table.langs) + " |"]
        lines.append("|---|---|---|" + "---:|" * len(table.langs))
        for metric, freeze, encoder in _rows(table):
            cells = [cell_text(table.cell(metric, freeze, encoder, lang), table.n_seeds) for lang in table.langs]
            lines.append(f"| {METRIC_NAMES.get(metric, metric)} | {freeze_name(freeze)} | {encoder} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(_legend(result))
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for char, repl in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(char, repl)
    return text


def render_latex(result: Table8) -> str:
    out = []
    for table in result.tables:
        out += [
            r"\begin{table}[t]", r"\centering", r"\begin{tabular}{lll" + "r" * len(table.langs) + "}", r"\toprule",
            "Metric & Encoder weights & Model & " + " & ".join(table.langs) + r" \\", r"\midrule",
        ]
        for metric, freeze, encoder in _rows(table):
            cells = [cell_text(table.cell(metric, freeze, encoder, lang), table.n_seeds, _LATEX_SYMBOLS) for lang in table.langs]
            cells = [c.replace("–", "--") for c in cells]
            out.append(
                f"{METRIC_NAMES.get(metric, metric)} & {freeze_name(freeze)} & {_latex_escape(encoder)} & "
                + " & ".join(cells) + r" \\"
            )
        legend = _legend(result).replace("×", r"$\times$").replace("⋆", r"$^{\star}$").replace("†", r"$^{\dagger}$").replace("<", "$<$")
        out += [r"\bottomrule", r"\end{tabular}", f"\\caption{{{_latex_escape(table.task)}. {legend}}}", r"\end{table}", ""]
    return "\n".join(out)


def plot_f1(result: Table8, output_dir: Path, metric: str = "f1") -> list[Path]:
    """One PNG per task: mean ± sd of ``metric`` per language, one series per encoder, one panel per mode."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    paths = []
    for table in result.tables:
        if metric not in table.metrics:
            continue
        fig, axes = plt.subplots(1, len(table.freeze), figsize=(4.5 * len(table.freeze), 3.6), squeeze=False, sharey=True)
        width = 0.8 / max(1, len(table.encoders))
        for ax, freeze in zip(axes[0], table.freeze):
            for i, encoder in enumerate(table.encoders):
                cells = [table.cell(metric, freeze, encoder, lang) for lang in table.langs]
                x = [j + (i - (len(table.encoders) - 1) / 2) * width for j in range(len(table.langs))]
                means = [100 * c.mean for c in cells]
                errors = [0.0 if math.isnan(c.std) else 100 * c.std for c in cells]
                ax.errorbar(x, means, yerr=errors, fmt="o", capsize=3, label=encoder)
            ax.set_xticks(range(len(table.langs)), table.langs)
            ax.set_title(f"{table.task}: {freeze_name(freeze)}")
            ax.grid(axis="y", alpha=0.3)
        axes[0][0].set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (mean ± sd over seeds, x100)")
        axes[0][-1].legend(fontsize="small")
        fig.tight_layout()
        path = output_dir / f"table8_{table.task}_{metric}.png"
        with atomic_open(path, "wb", encoding=None) as handle:
            fig.savefig(handle, format="png", dpi=150)
        plt.close(fig)
        paths.append(path)
    return paths


def rich_tables(result: Table8) -> list[Any]:
    from rich.table import Table

    tables = []
    for table in result.tables:
        rt = Table(title=f"Table 8: {table.task}", caption=_legend(result))
        for name in ("Metric", "Weights", "Model", *table.langs):
            rt.add_column(name, justify="right" if name in table.langs else "left")
        for metric, freeze, encoder in _rows(table):
            cells = [cell_text(table.cell(metric, freeze, encoder, lang), table.n_seeds) for lang in table.langs]
            rt.add_row(METRIC_NAMES.get(metric, metric), freeze_name(freeze), encoder, *cells)
        tables.append(rt)
    return tables


def log_wandb(result: Table8, run: Any) -> None:
    """Log the display table per task and the full CSV records as ``wandb.Table`` objects."""
    import wandb

    for table in result.tables:
        columns = ["metric", "weights", "model", *table.langs]
        data = [
            [metric, freeze_name(freeze), encoder, *(cell_text(table.cell(metric, freeze, encoder, lang), table.n_seeds) for lang in table.langs)]
            for metric, freeze, encoder in _rows(table)
        ]
        run.log({f"table8/{table.task}": wandb.Table(columns=columns, data=data)})
    records = csv_records(result)
    if records:
        # W&B types each column from its values: blanks must be None, not "", next to numbers.
        data = [[None if v == "" else v for v in r.values()] for r in records]
        run.log({"table8/stats": wandb.Table(columns=list(records[0]), data=data)})
