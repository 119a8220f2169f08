"""``python run.py task=report``: Table 8 with significance marks from classification sweeps.

    python run.py task=report report.sweep_dirs=[outputs/classify/multiruns/2026-01-01_10-00-00]
    python run.py task=report report.baselines.distilmbert=demo-distil report.baselines.mbert=demo-teacher
    python run.py task=report report.stats.holm=true report.expected.seeds=[0,1,2,3,4,5,6,7,8,9]

``domain_distil/stages/report.py`` turns the ``report`` group into a typed ``ReportRequest``
(``report_request``) and does the work (outputs listed there, docs/statistics.md).
"""

from __future__ import annotations

from omegaconf import DictConfig

from domain_distil.analysis.table8 import Table8
from domain_distil.stages.report import report, report_request


def run(cfg: DictConfig) -> Table8:
    return report(report_request(cfg))
