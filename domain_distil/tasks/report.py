"""``task=report``: Table 8 with significance marks from classification sweeps; ``stages/report.py``
does the work (docs/statistics.md)."""

from __future__ import annotations

from omegaconf import DictConfig

from domain_distil.analysis.table8 import Table8
from domain_distil.stages.report import report, report_request


def run(cfg: DictConfig) -> Table8:
    return report(report_request(cfg))
