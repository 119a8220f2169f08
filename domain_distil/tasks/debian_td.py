"""experiment=debian_td: the demo's protocol on the real Debian benchmark (docs/debian.md).

Reads what ``task=prepare corpus=debian`` wrote (``corpus.prepared_dir``), then, reusing the
demo's steps (``tasks/demo.py``; this experiment composes its groups under ``demo.*`` in the same
shape):

1. two students of the teacher, one recipe, ``demo.corpus.budget_tokens`` teacher tokens per
   language each: in-domain (``corpus/``: descriptions of the packages outside the task) and
   general (``general/``: fortune files);
2. frozen classifiers on the teacher and both students for ``debian_tags``, seeds x languages;
3. Table 8 with the general student in DistilmBERT's role and the teacher in mBERT's.

Under ``-m`` each job runs step 2 for its own seed and language, like the demo.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from rich.console import Console

from domain_distil.classification.encoders import local_encoder
from domain_distil.common.errors import ConfigError
from domain_distil.modeling.teachers import resolve_teacher_path
from domain_distil.stages.classify import classify
from domain_distil.tasks.demo import (
    DOMAIN,
    GENERAL,
    TEACHER,
    _is_multirun,
    classify_job,
    distil_student,
    report,
    stable_results_dir,
)

log = logging.getLogger(__name__)


def prepared_corpora(prepared_dir: Path, task: str) -> tuple[Path, Path]:
    """(in-domain, general) corpus folders of a prepared Debian benchmark; a clear error before any
    long work when ``task=prepare corpus=debian`` has not run (or ran without the task)."""
    needed = [prepared_dir / "manifest.json", prepared_dir / "tasks" / f"{task}.jsonl",
              prepared_dir / "corpus", prepared_dir / "general"]
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        raise ConfigError(
            f"demo.data.prepared_dir={prepared_dir} lacks {missing}; run `python run.py task=prepare corpus=debian` "
            "first (same paths.data_dir), or point demo.data.prepared_dir at its output"
        )
    return prepared_dir / "corpus", prepared_dir / "general"


def run(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    demo, cache_dir = cfg.demo, Path(cfg.paths.cache_dir)
    data_dir = Path(demo.data.prepared_dir)
    in_domain, general = prepared_corpora(data_dir, str(demo.tasks[0]))
    students = {GENERAL: distil_student(cfg, general), DOMAIN: distil_student(cfg, in_domain)}
    encoders = {
        TEACHER: local_encoder(TEACHER, resolve_teacher_path(demo.teacher, cache_dir), cache_dir),
        **{encoder_id: local_encoder(encoder_id, path, cache_dir) for encoder_id, path in students.items()},
    }
    if _is_multirun():
        seeds, langs = [int(cfg.seed)], [str(cfg.lang.name)]
        results_dir = Path(cfg.paths.output_dir) / "classify"
    else:
        seeds, langs = [int(s) for s in demo.seeds], [str(lang) for lang in demo.langs]
        results_dir = stable_results_dir(cfg, students, name="debian_td")
    jobs = 0
    # Seeds outermost: a run stopped early still has every language and encoder for its first seeds,
    # which task=report can already compare (a rerun re-reads finished jobs and does the rest).
    for seed in seeds:
        for task in demo.tasks:
            for lang in langs:
                for encoder in encoders.values():
                    classify(classify_job(cfg, data_dir, str(task), lang, seed, encoder, results_dir))
                    jobs += 1
        log.info("seed %d: %d jobs done, %.0f s", seed, jobs, time.perf_counter() - started)
    summary: dict[str, Any] = {"data": str(data_dir), "students": {k: str(v) for k, v in students.items()},
                               "jobs": jobs, "results": str(results_dir)}
    if not _is_multirun():
        summary["report"] = report(cfg, results_dir, seeds, Path(cfg.paths.output_dir) / "report")
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    Console().print(f"[bold]debian_td finished in {summary['wall_seconds']:.0f} s[/]; outputs in {cfg.paths.output_dir}")
    return summary
