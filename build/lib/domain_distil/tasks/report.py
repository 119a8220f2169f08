"""``python run.py task=report``: Table 8 with significance marks from classification sweeps.

    python run.py task=report report.sweep_dirs=[outputs/classify/multiruns/2026-01-01_10-00-00]
    python run.py task=report report.baselines.distilmbert=demo-distil report.baselines.mbert=demo-teacher
    python run.py task=report report.stats.holm=true report.expected.seeds=[0,1,2,3,4,5,6,7,8,9]

Writes table8.{md,csv,tex} (Markdown and LaTeX: Table 8, then the p-value table of every pair of
encoders), table8_pvalues.csv, table8_<task>_f1.png and runs.json (failed, missing and duplicate
runs) to ``paths.output_dir`` and prints the table; with ``report.table6.enabled=true`` also
table6.{md,csv} and figure2.png (the data-quantity sweep). With a ``logger.wandb`` entry the tables
go to W&B as well, in ``logger.wandb.group`` (docs/wandb.md). See docs/statistics.md.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from domain_distil.analysis import table6
from domain_distil.analysis.render import (
    log_wandb,
    plot_f1,
    render_latex,
    render_markdown,
    rich_tables,
    write_csv,
    write_pvalues_csv,
)
from domain_distil.analysis.results import Collection, collect
from domain_distil.analysis.table8 import StatsSettings, Table8, build_table8
from domain_distil.common.io import atomic_open, write_json
from domain_distil.common.provenance import git_commit

log = logging.getLogger(__name__)
FORMATS = ("md", "csv", "tex", "png")


def accounting(collection: Collection) -> dict[str, Any]:
    """The runs that are not in the table and why, as written to runs.json."""
    return {
        "ok": len(collection.ok),
        "failed": [{"run": r.key.describe(), "path": str(r.path), "error": r.error} for r in collection.failed],
        "missing": [k.describe() for k in collection.missing],
        "duplicates": [
            {"run": kept.key.describe(), "kept": str(kept.path), "ignored": [str(r.path) for r in dropped]}
            for kept, dropped in collection.duplicates
        ],
        "grid": collection.grid,
    }


def _print_accounting(console: Console, collection: Collection) -> None:
    console.print(f"[bold]{len(collection.ok)}[/] successful runs")
    if collection.failed:
        console.print(f"[bold red]{len(collection.failed)} failed run(s), left out of the table:[/]")
        for r in collection.failed:
            console.print(f"  {r.key.describe()}  ({r.path}): {r.error}")
    if collection.missing:
        console.print(f"[bold red]{len(collection.missing)} missing run(s) (no results.json):[/]")
        for key in collection.missing:
            console.print(f"  {key.describe()}")
    for kept, dropped in collection.duplicates:
        console.print(f"[yellow]duplicate[/] {kept.key.describe()}: kept {kept.path}, ignored {[str(r.path) for r in dropped]}")


def _wandb_enabled(cfg: DictConfig) -> bool:
    return bool(cfg.report.get("wandb", False)) and "wandb" in (cfg.get("logger") or {})


def _log_to_wandb(cfg: DictConfig, result: Table8, output_dir: Path, show_sd: bool) -> None:
    """One W&B run (job_type ``report``) in ``logger.wandb.group``: set it to the sweep's group
    (docs/wandb.md) and the report sits next to the runs it summarises on the dashboard."""
    import wandb

    settings = cfg.logger.wandb
    group = settings.get("group")
    run = wandb.init(
        project=settings.get("project"),
        entity=settings.get("entity"),
        dir=str(output_dir),
        mode="offline" if settings.get("offline", True) else "online",
        group=group,
        job_type="report",
        name=f"report-{group}" if group else None,
        config=OmegaConf.to_container(cfg.report, resolve=True),
    )
    try:
        log_wandb(result, run, show_sd)
    finally:
        wandb.finish()  # always, so a multirun never logs into a stale run


def _write_table6(collection: Collection, t6: DictConfig, output_dir: Path, console: Console) -> None:
    rows = table6.build_table6(
        collection, str(t6.task), str(t6.lang), bool(t6.freeze), [str(b) for b in t6.baselines],
        OmegaConf.to_container(t6.budgets, resolve=True) if t6.budgets is not None else None,
    )
    title = f"Table 6: {t6.task}, {t6.lang}, {'frozen' if t6.freeze else 'fine-tuned'}"
    markdown = table6.render_markdown(rows, title)
    console.print(markdown)
    with atomic_open(output_dir / "table6.md") as handle:
        handle.write(markdown)
    table6.write_csv(rows, output_dir / "table6.csv")
    table6.plot_figure2(rows, output_dir / "figure2.png", title.replace("Table 6", "Figure 2"))


def run(cfg: DictConfig) -> Table8:
    rc = cfg.report
    formats = list(rc.formats)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"report.formats: unknown format(s) {unknown}; choose from {list(FORMATS)}")
    output_dir = Path(cfg.paths.output_dir)
    metrics = list(rc.metrics)
    collection = collect(list(rc.sweep_dirs), metrics, OmegaConf.to_container(rc.expected, resolve=True))
    settings = StatsSettings(**OmegaConf.to_container(rc.stats, resolve=True))
    result = build_table8(
        collection,
        baselines=OmegaConf.to_container(rc.baselines, resolve=True),
        candidates=list(rc.candidates) if rc.candidates is not None else None,
        metrics=metrics,
        settings=settings,
        symbols=OmegaConf.to_container(rc.symbols, resolve=True),
        worse_symbols=OmegaConf.to_container(rc.worse_symbols, resolve=True) if rc.get("worse_symbols") else None,
    )
    show_sd = bool(rc.get("show_sd", True))

    console = Console()
    _print_accounting(console, collection)
    for table in rich_tables(result, show_sd):
        console.print(table)
    for note in result.warnings:
        console.print(f"[yellow]warning:[/] {note}")

    write_json(output_dir / "runs.json", {**accounting(collection), "warnings": result.warnings, "git": git_commit()})
    if "md" in formats:
        with atomic_open(output_dir / "table8.md") as handle:
            handle.write(render_markdown(result, show_sd))
    if "csv" in formats:
        write_csv(result, output_dir / "table8.csv")
        write_pvalues_csv(result, output_dir / "table8_pvalues.csv")
    if "tex" in formats:
        with atomic_open(output_dir / "table8.tex") as handle:
            handle.write(render_latex(result, show_sd))
    if "png" in formats:
        plot_f1(result, output_dir)
    t6 = rc.get("table6")
    if t6 is not None and t6.enabled:
        _write_table6(collection, t6, output_dir, console)
    if _wandb_enabled(cfg):
        _log_to_wandb(cfg, result, output_dir, show_sd)
    log.info("Table 8 written to %s", output_dir)
    return result
