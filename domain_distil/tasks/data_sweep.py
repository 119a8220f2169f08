"""task=data_sweep: how much in-domain text is enough (the paper's §5, Table 6 and Figure 2).

For each budget in ``data_sweep.budgets_gb`` the corpus is cut to that many GB of the chosen
language (nested seeded samples, ``corpus/subset.py``), a student is distilled from it, and frozen
classifiers are trained on it over ``data_sweep.seeds``; the baselines (the teacher and
DistilmBERT) are classified with the same seeds. ``task=report`` with Table 6 enabled closes the
sweep. The Wikipedia control (``experiment=wiki_control``) is this task on the Wikipedia corpus.

    python run.py experiment=data_sweep corpus.source.dump=...     # after task=prepare
    python run.py experiment=wiki_control

Every step is cached, so a killed sweep re-run with the same settings continues where it stopped.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from domain_distil.corpus.reader import discover_files
from domain_distil.corpus.subset import budget_subset
from domain_distil.tasks._compose import derive

log = logging.getLogger(__name__)


def budget_id(prefix: str, budget: float) -> str:
    """The paper's names: TD1.5, TD2.1, Wiki3.0 (the report reads the budget back from the id)."""
    return f"{prefix}{budget:g}" if "." in f"{budget:g}" else f"{prefix}{budget:.1f}"


def run(cfg: DictConfig) -> dict[str, Any]:
    sweep = cfg.data_sweep
    lang = str(sweep.lang)
    output_dir = Path(cfg.paths.output_dir)
    files = discover_files(cfg.corpus.dir, cfg.corpus.get("files"), [lang])
    seeds = [int(s) for s in sweep.seeds]
    classify = _classifier(cfg, lang, output_dir)
    students: dict[str, str] = {}
    for budget in sweep.budgets_gb:
        encoder_id = budget_id(str(sweep.id_prefix), float(budget))
        subset = budget_subset(files, {lang: float(budget)}, int(sweep.sample_seed), cfg.paths.cache_dir,
                               str(cfg.corpus.text_field))
        from domain_distil.tasks.distill import ensure_student

        student = ensure_student(derive(cfg, ["task=distill", f"corpus.dir={subset}", "corpus.files={}",
                                              "corpus.languages=null"]))
        students[encoder_id] = str(student)
        for seed in seeds:
            classify(["encoder=path", f"encoder.name_or_path={student}", f"encoder.id={encoder_id}"], encoder_id, seed)
    for baseline in sweep.baselines:
        for seed in seeds:
            classify([f"encoder={baseline}"], str(baseline), seed)
    log.info("data sweep finished: %s", students)
    return {"students": students, "output_dir": str(output_dir)}


def _classifier(cfg: DictConfig, lang: str, output_dir: Path):
    from domain_distil.tasks.classify import run as classify

    def job(encoder: list[str], encoder_id: str, seed: int) -> dict[str, Any]:
        overrides = ["task=classify", f"lang={lang}", f"seed={seed}", "encoder.freeze=true", *encoder,
                     *cfg.data_sweep.classify_overrides]
        job_dir = output_dir / "classify" / encoder_id / f"seed={seed}"
        return classify(derive(cfg, overrides, output_dir=job_dir))

    return job
