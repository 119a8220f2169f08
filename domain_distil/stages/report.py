"""The report stage: Table 8 (and optionally Table 6 / Figure 2) from classification jobs' results,
written to ``output_dir`` with runs.json (failed, missing and duplicate runs) and printed; see
docs/statistics.md and, for the W&B copy, docs/wandb.md.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
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
from domain_distil.common.errors import UserInputError
from domain_distil.common.io import atomic_open, write_json
from domain_distil.common.loggers import to_container
from domain_distil.common.provenance import git_commit

log = logging.getLogger(__name__)
FORMATS = ("md", "csv", "tex", "png")


@dataclass(frozen=True)
class Table6Request:
    """Table 6 / Figure 2: students at growing budgets against baselines, one task/lang/mode."""

    task: str
    lang: str
    freeze: bool
    baselines: list[str]
    budgets: dict[str, float] | None = None


@dataclass(frozen=True)
class WandbTarget:
    """Where the report's W&B run goes (offline unless ``offline=False``)."""

    project: str | None
    entity: str | None
    group: str | None
    offline: bool = True
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportRequest:
    sweep_dirs: list[str]
    output_dir: Path
    baselines: dict[str, str]
    symbols: dict[str, str]
    stats: StatsSettings
    metrics: list[str] = field(default_factory=lambda: ["f1", "precision", "recall"])
    expected: dict[str, Any] = field(default_factory=dict)
    candidates: list[str] | None = None
    worse_symbols: dict[str, str] | None = None
    show_sd: bool = True
    formats: tuple[str, ...] = FORMATS
    table6: Table6Request | None = None
    wandb: WandbTarget | None = None


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


def report(request: ReportRequest) -> Table8:
    unknown = sorted(set(request.formats) - set(FORMATS))
    if unknown:
        raise UserInputError(f"report.formats: unknown format(s) {unknown}; choose from {list(FORMATS)}")
    output_dir = Path(request.output_dir)
    collection = collect(list(request.sweep_dirs), list(request.metrics), dict(request.expected))
    result = build_table8(
        collection, baselines=dict(request.baselines), candidates=request.candidates, metrics=list(request.metrics),
        settings=request.stats, symbols=dict(request.symbols), worse_symbols=request.worse_symbols,
    )
    console = Console()
    _print_accounting(console, collection)
    for table in rich_tables(result, request.show_sd):
        console.print(table)
    for note in result.warnings:
        console.print(f"[yellow]warning:[/] {note}")

    write_json(output_dir / "runs.json", {**accounting(collection), "warnings": result.warnings, "git": git_commit()})
    if "md" in request.formats:
        with atomic_open(output_dir / "table8.md") as handle:
            handle.write(render_markdown(result, request.show_sd))
    if "csv" in request.formats:
        write_csv(result, output_dir / "table8.csv")
        write_pvalues_csv(result, output_dir / "table8_pvalues.csv")
    if "tex" in request.formats:
        with atomic_open(output_dir / "table8.tex") as handle:
            handle.write(render_latex(result, request.show_sd))
    if "png" in request.formats:
        plot_f1(result, output_dir)
    if request.table6 is not None:
        _write_table6(collection, request.table6, output_dir, console)
    if request.wandb is not None:
        _log_to_wandb(request.wandb, result, output_dir, request.show_sd)
    log.info("Table 8 written to %s", output_dir)
    return result


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


def _log_to_wandb(target: WandbTarget, result: Table8, output_dir: Path, show_sd: bool) -> None:
    """One W&B run (job_type ``report``) in the sweep's group, next to the runs it summarises."""
    import wandb

    run = wandb.init(
        project=target.project, entity=target.entity, dir=str(output_dir),
        mode="offline" if target.offline else "online", group=target.group, job_type="report",
        name=f"report-{target.group}" if target.group else None, config=target.config,
    )
    try:
        log_wandb(result, run, show_sd)
    finally:
        wandb.finish()  # always, so a multirun never logs into a stale run


def _write_table6(collection: Collection, t6: Table6Request, output_dir: Path, console: Console) -> None:
    rows = table6.build_table6(collection, t6.task, t6.lang, t6.freeze, list(t6.baselines), t6.budgets)
    title = f"Table 6: {t6.task}, {t6.lang}, {'frozen' if t6.freeze else 'fine-tuned'}"
    markdown = table6.render_markdown(rows, title)
    console.print(markdown)
    with atomic_open(output_dir / "table6.md") as handle:
        handle.write(markdown)
    table6.write_csv(rows, output_dir / "table6.csv")
    table6.plot_figure2(rows, output_dir / "figure2.png", title.replace("Table 6", "Figure 2"))


# Config -> typed arguments, for the report task and the experiments that end with a report.


def report_request(cfg: DictConfig) -> ReportRequest:
    rc = cfg.report
    t6 = rc.get("table6")
    wandb = None
    if bool(rc.get("wandb", False)) and "wandb" in (cfg.get("logger") or {}):
        settings = cfg.logger.wandb
        wandb = WandbTarget(project=settings.get("project"), entity=settings.get("entity"),
                            group=settings.get("group"), offline=bool(settings.get("offline", True)),
                            config=to_container(rc))
    return ReportRequest(
        sweep_dirs=list(rc.sweep_dirs),
        output_dir=Path(cfg.paths.output_dir),
        baselines=to_container(rc.baselines),
        symbols=to_container(rc.symbols),
        stats=StatsSettings(**to_container(rc.stats)),
        metrics=list(rc.metrics),
        expected=to_container(rc.expected),
        candidates=list(rc.candidates) if rc.candidates is not None else None,
        worse_symbols=to_container(rc.worse_symbols) if rc.get("worse_symbols") else None,
        show_sd=bool(rc.get("show_sd", True)),
        formats=tuple(rc.formats),
        table6=None if t6 is None or not t6.enabled else Table6Request(
            task=str(t6.task), lang=str(t6.lang), freeze=bool(t6.freeze), baselines=[str(b) for b in t6.baselines],
            budgets=to_container(t6.budgets) if t6.budgets is not None else None,
        ),
        wandb=wandb,
    )
