"""task=demo, the default of ``python run.py``: the paper's protocol in miniature, offline, on CPU.

1. Demo data (demo/data): in-domain and general corpora in five languages, two labeled tasks.
2. Two students of the same teacher, same recipe, different corpus: in-domain and general.
3. Frozen self-attention classifiers on the teacher and both students, seeds x languages x tasks.
4. Table 8 with ⋆ (beats the general student, DistilmBERT's role) and † (beats the teacher).
5. Size and single-thread batch-1 latency of the teacher next to the student.

Under ``-m`` (``python run.py -m seed='range(10)' lang=eng,esp,jap,por,rus``) each job runs only
step 3 for its own seed and language, with the encoders from the cache; ``task=report`` then
summarises the sweep. Everything expensive is cached, so a second run only re-reads results.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from domain_distil.common.hashing import hash_object, short
from domain_distil.tasks._compose import derive

log = logging.getLogger(__name__)

TEACHER, GENERAL, DOMAIN = "teacher", "general-student", "domain-student"


def demo_data(cfg: DictConfig) -> Path:
    """Generate (or reuse) the demo data; the folder is named by the generator settings."""
    from domain_distil.demo.data.generator import generate_demo_data

    settings = OmegaConf.to_container(cfg.demo.data, resolve=True)
    out = Path(cfg.paths.cache_dir) / "demo_data" / short(hash_object(settings), 12)
    seed = settings.pop("seed")
    generate_demo_data(out, seed, **settings)
    return out


def ensure_students(cfg: DictConfig, data_dir: Path) -> dict[str, Path]:
    """The general and in-domain students (distilled now unless cached), by encoder id."""
    from domain_distil.tasks.distill import ensure_student

    students = {}
    for encoder_id, corpus in ((GENERAL, "general"), (DOMAIN, "in_domain")):
        overrides = ["task=distill", f"teacher={cfg.demo.teacher}", f"corpus.dir={data_dir / corpus}",
                     *cfg.demo.distill_overrides]
        started = time.perf_counter()
        students[encoder_id] = ensure_student(derive(cfg, overrides))
        log.info("%s ready in %.0f s: %s", encoder_id, time.perf_counter() - started, students[encoder_id])
    return students


def encoder_overrides(cfg: DictConfig, students: dict[str, Path]) -> dict[str, list[str]]:
    teacher = ["encoder=teacher", f"teacher={cfg.demo.teacher}", f"encoder.id={TEACHER}"]
    by_id = {TEACHER: teacher}
    for encoder_id, path in students.items():
        by_id[encoder_id] = ["encoder=path", f"encoder.name_or_path={path}", f"encoder.id={encoder_id}"]
    return by_id


def classify_job(cfg: DictConfig, data_dir: Path, task: str, lang: str, seed: int, encoder: list[str],
                 output_dir: Path) -> dict[str, Any]:
    from domain_distil.tasks.classify import run as classify

    overrides = [
        "task=classify", f"cls_task={task}", f"lang={lang}", f"seed={seed}", *encoder,
        f"cls_task.files=[{data_dir / 'tasks' / f'{task}.jsonl'}]", "cls_task.dir=null",
        f"cls_task.languages=[{','.join(cfg.demo.data.languages)}]", *cfg.demo.classify_overrides,
    ]
    return classify(derive(cfg, overrides, output_dir=output_dir))


def stable_results_dir(cfg: DictConfig, students: dict[str, Path]) -> Path:
    """Where a plain ``python run.py`` keeps its classification jobs: a folder named by everything
    that decides their results, so a second run finds every job finished and only re-reads it."""
    settings = {
        "data": OmegaConf.to_container(cfg.demo.data, resolve=True),
        "teacher": cfg.demo.teacher,
        "students": {k: str(v) for k, v in students.items()},
        "classify": list(cfg.demo.classify_overrides),
    }
    return Path(cfg.paths.log_dir) / "demo" / "classify" / short(hash_object(settings), 12)


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def run(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    console = Console()
    data_dir = demo_data(cfg)
    students = ensure_students(cfg, data_dir)
    encoders = encoder_overrides(cfg, students)
    output_dir = Path(cfg.paths.output_dir)
    if _is_multirun():  # one job of a sweep: this seed and language only, results in the job folder
        seeds, langs = [int(cfg.seed)], [str(cfg.lang.name)]
        results_dir = output_dir / "classify"
    else:
        seeds, langs = [int(s) for s in cfg.demo.seeds], [str(lang) for lang in cfg.demo.langs]
        results_dir = stable_results_dir(cfg, students)
    results = []
    for task in cfg.demo.tasks:
        for lang in langs:
            for encoder_id, overrides in encoders.items():
                for seed in seeds:
                    job_dir = results_dir / task / lang / encoder_id / f"seed={seed}"
                    results.append(classify_job(cfg, data_dir, task, lang, seed, overrides, job_dir))
    summary: dict[str, Any] = {"data": str(data_dir), "students": {k: str(v) for k, v in students.items()},
                               "jobs": len(results)}
    if not _is_multirun():
        from domain_distil.tasks.report import run as report

        report_cfg = derive(cfg, ["task=report", f"report.sweep_dirs=[{results_dir}]",
                                  f"report.expected.seeds=[{','.join(map(str, seeds))}]"],
                            output_dir=output_dir / "report")
        report(report_cfg)
        summary["report"] = str(output_dir / "report")
        summary["speed"] = size_and_latency(cfg, students[DOMAIN], output_dir / "speed")
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    console.print(f"[bold]demo finished in {summary['wall_seconds']:.0f} s[/]; outputs in {output_dir}")
    return summary


def size_and_latency(cfg: DictConfig, student: Path, output_dir: Path) -> str:
    """Parameters and single-thread batch-1 latency, teacher next to the in-domain student."""
    from domain_distil.tasks.speed import run as speed

    encoders = f"speed.encoders=[{{id: {TEACHER}, teacher: true}},{{id: {DOMAIN}, name_or_path: '{student}'}}]"
    speed(derive(cfg, ["task=speed", f"teacher={cfg.demo.teacher}", encoders, *cfg.demo.speed_overrides],
                 output_dir=output_dir))
    return str(output_dir)
