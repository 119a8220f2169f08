"""``python run.py task=report``: Table 8 with significance marks from classification sweeps.

    python run.py task=report report.sweep_dirs=[outputs/classify/multiruns/2026-01-01_10-00-00]
    python run.py task=report report.baselines.distilmbert=demo-distil report.baselines.mbert=demo-teacher
    python run.py task=report report.stats.holm=true report.expected.seeds=[0,1,2,3,4,5,6,7,8,9]

This module turns the ``report`` group into a typed :class:`ReportRequest`;
``domain_distil/stages/report.py`` does the work (outputs listed there, docs/statistics.md).
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from domain_distil.analysis.table8 import StatsSettings, Table8
from domain_distil.stages.report import ReportRequest, Table6Request, WandbTarget, report


def _plain(node) -> object:
    return OmegaConf.to_container(node, resolve=True)


def report_request(cfg: DictConfig) -> ReportRequest:
    rc = cfg.report
    t6 = rc.get("table6")
    wandb = None
    if bool(rc.get("wandb", False)) and "wandb" in (cfg.get("logger") or {}):
        settings = cfg.logger.wandb
        wandb = WandbTarget(project=settings.get("project"), entity=settings.get("entity"),
                            group=settings.get("group"), offline=bool(settings.get("offline", True)),
                            config=_plain(rc))
    return ReportRequest(
        sweep_dirs=list(rc.sweep_dirs),
        output_dir=Path(cfg.paths.output_dir),
        baselines=_plain(rc.baselines),
        symbols=_plain(rc.symbols),
        stats=StatsSettings(**_plain(rc.stats)),
        metrics=list(rc.metrics),
        expected=_plain(rc.expected),
        candidates=list(rc.candidates) if rc.candidates is not None else None,
        worse_symbols=_plain(rc.worse_symbols) if rc.get("worse_symbols") else None,
        show_sd=bool(rc.get("show_sd", True)),
        formats=tuple(rc.formats),
        table6=None if t6 is None or not t6.enabled else Table6Request(
            task=str(t6.task), lang=str(t6.lang), freeze=bool(t6.freeze), baselines=[str(b) for b in t6.baselines],
            budgets=_plain(t6.budgets) if t6.budgets is not None else None,
        ),
        wandb=wandb,
    )


def run(cfg: DictConfig) -> Table8:
    return report(report_request(cfg))
