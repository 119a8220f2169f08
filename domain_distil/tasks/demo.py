"""task=demo, the default of ``python run.py``: the paper's protocol in miniature, offline, on CPU.

The flow, top to bottom (every step is cached, so a second run only re-reads results):

1. Demo data (``domain_distil/demo/data``): in-domain and general corpora in five languages, two
   labeled tasks.
2. Two students of the same teacher and recipe, differing only in the corpus: in-domain and general
   (``stages.distil``).
3. Frozen self-attention classifiers on the teacher and both students, seeds x languages x tasks
   (``stages.classify``).
4. Table 8 with ⋆ (beats the general student, DistilmBERT's role) and † (beats the teacher).
5. Size and single-thread batch-1 latency of the teacher next to the student.

Every setting comes from ``cfg.demo`` (``conf/experiment/demo.yaml``), composed from the ordinary
config groups, so nothing here builds override strings or re-composes Hydra. Under ``-m``
(``python run.py -m seed='range(10)' lang=eng,esp,jap,por,rus``) each job runs only step 3 for its
own seed and language; ``task=report`` then summarises the sweep.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from domain_distil.classification.encoders import EncoderRef, local_encoder
from domain_distil.classification.taskfile import TaskSpec
from domain_distil.common.hashing import hash_object, short
from domain_distil.common.loggers import to_container
from domain_distil.modeling.teachers import resolve_teacher_path
from domain_distil.stages.classify import ClassifyJob, classify
from domain_distil.stages.distil import DistillRun, distil, plan_distillation
from domain_distil.stages.report import report as run_report
from domain_distil.tasks.classify import classify_settings, trainer_factory
from domain_distil.tasks.report import report_request

log = logging.getLogger(__name__)

TEACHER, GENERAL, DOMAIN = "teacher", "general-student", "domain-student"


def run(cfg: DictConfig) -> dict[str, Any]:
    started = time.perf_counter()
    demo, cache_dir, output_dir = cfg.demo, Path(cfg.paths.cache_dir), Path(cfg.paths.output_dir)
    data_dir = demo_data(demo.data, cache_dir)
    students = {
        GENERAL: distil_student(cfg, data_dir / "general"),
        DOMAIN: distil_student(cfg, data_dir / "in_domain"),
    }
    teacher_dir = resolve_teacher_path(demo.teacher, cache_dir)
    encoders = {
        TEACHER: local_encoder(TEACHER, teacher_dir, cache_dir),
        **{encoder_id: local_encoder(encoder_id, path, cache_dir) for encoder_id, path in students.items()},
    }
    if _is_multirun():  # one job of a sweep: this seed and language only, results in the job folder
        seeds, langs, results_dir = [int(cfg.seed)], [str(cfg.lang.name)], output_dir / "classify"
    else:
        seeds, langs = [int(s) for s in demo.seeds], [str(lang) for lang in demo.langs]
        results_dir = stable_results_dir(cfg, students)
    jobs = 0
    for task in demo.tasks:
        for lang in langs:
            for encoder in encoders.values():
                for seed in seeds:
                    classify(classify_job(cfg, data_dir, str(task), lang, seed, encoder, results_dir))
                    jobs += 1
    summary: dict[str, Any] = {"data": str(data_dir), "students": {k: str(v) for k, v in students.items()},
                               "jobs": jobs}
    if not _is_multirun():
        summary["report"] = report(cfg, results_dir, seeds, output_dir / "report")
        summary["speed"] = size_and_latency(cfg, students[DOMAIN], output_dir / "speed")
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    Console().print(f"[bold]demo finished in {summary['wall_seconds']:.0f} s[/]; outputs in {output_dir}")
    return summary


def demo_data(settings: DictConfig, cache_dir: Path) -> Path:
    """Generate (or reuse) the demo data; the folder is named by the generator settings."""
    from domain_distil.demo.data.generator import generate_demo_data

    values = OmegaConf.to_container(settings, resolve=True)
    out = cache_dir / "demo_data" / short(hash_object(values), 12)
    seed = values.pop("seed")
    generate_demo_data(out, seed, **values)
    return out


def distil_student(cfg: DictConfig, corpus_dir: Path) -> Path:
    """One student of the demo's teacher and recipe on ``corpus_dir`` (cached after the first run)."""
    demo = cfg.demo
    corpus = OmegaConf.to_container(demo.corpus, resolve=True) | {"dir": str(corpus_dir)}
    plan = plan_distillation(
        OmegaConf.to_container(demo.teacher, resolve=True), OmegaConf.to_container(demo.student, resolve=True),
        corpus, OmegaConf.to_container(demo.distill, resolve=True), cfg.paths.cache_dir,
    )
    started = time.perf_counter()
    student = distil(plan, DistillRun(cache_dir=Path(cfg.paths.cache_dir), trainer=partial(instantiate, _single_device(cfg.trainer))))
    log.info("student on %s ready in %.0f s: %s", corpus_dir.name, time.perf_counter() - started, student.path)
    return student.path


def _single_device(trainer_cfg: DictConfig) -> DictConfig:
    """The demo runs in one process: the trainer group's hardware, one device."""
    trainer_cfg = trainer_cfg.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.devices = 1
        trainer_cfg.pop("strategy", None)
        trainer_cfg.pop("num_nodes", None)
    return trainer_cfg


def classify_job(cfg: DictConfig, data_dir: Path, task: str, lang: str, seed: int, encoder: EncoderRef,
                 results_dir: Path) -> ClassifyJob:
    """A frozen classifier on ``encoder`` for one demo task, language and seed."""
    demo = cfg.demo
    task_cfg = OmegaConf.merge(demo.task_configs[task], {
        "files": [str(data_dir / "tasks" / f"{task}.jsonl")], "dir": None, "languages": list(demo.data.languages),
    })
    job_dir = results_dir / task / lang / encoder.id / f"seed={seed}"
    settings = classify_settings(demo.classify)
    return ClassifyJob(
        task=TaskSpec.from_config(task_cfg), lang=lang, task_files=task_cfg.files, task_dir=None,
        encoder=lambda: encoder, encoder_id=encoder.id, freeze=True, seed=seed,
        head=instantiate(cfg.head, _partial_=True), settings=settings,
        trainer=trainer_factory(_single_device(cfg.trainer), seed), output_dir=job_dir, cache_dir=Path(cfg.paths.cache_dir),
        # What decides the job's result, so an identical job is re-read instead of re-trained.
        config={"task": to_container(task_cfg), "lang": lang, "seed": seed, "encoder": encoder.to_dict(),
                "head": to_container(cfg.head), "classify": to_container(demo.classify)},
    )


def stable_results_dir(cfg: DictConfig, students: dict[str, Path], name: str = "demo") -> Path:
    """Where a plain ``python run.py`` keeps its classification jobs: a folder named by everything
    that decides their results, so a second run finds every job finished and only re-reads it."""
    settings = {
        "data": OmegaConf.to_container(cfg.demo.data, resolve=True),
        "teacher": OmegaConf.to_container(cfg.demo.teacher, resolve=True),
        "students": {k: str(v) for k, v in students.items()},
        "classify": OmegaConf.to_container(cfg.demo.classify, resolve=True),
    }
    return Path(cfg.paths.log_dir) / name / "classify" / short(hash_object(settings), 12)


def report(cfg: DictConfig, results_dir: Path, seeds: list[int], output_dir: Path) -> str:
    """Table 8 of the demo's jobs, the demo's encoders in the baselines' roles (``report`` group)."""
    request = report_request(cfg)
    expected = {**request.expected, "seeds": seeds}
    run_report(replace(request, sweep_dirs=[str(results_dir)], expected=expected, output_dir=output_dir))
    return str(output_dir)


def size_and_latency(cfg: DictConfig, student: Path, output_dir: Path) -> str:
    """Parameters and single-thread batch-1 latency, teacher next to the in-domain student."""
    from domain_distil.tasks.speed import run as speed_task

    speed = OmegaConf.merge(cfg.demo.speed, {"encoders": [{"id": TEACHER, "teacher": True},
                                                          {"id": DOMAIN, "name_or_path": str(student)}]})
    paths = OmegaConf.merge(cfg.paths, {"output_dir": str(output_dir)})
    speed_task(_with(cfg, speed=speed, teacher=cfg.demo.teacher, paths=paths))
    return str(output_dir)


def _with(cfg: DictConfig, **nodes: Any) -> DictConfig:
    """A copy of ``cfg`` with whole top-level nodes replaced (no Hydra composition involved)."""
    copy = cfg.copy()
    with open_dict(copy):
        for key, node in nodes.items():
            copy[key] = node
    return copy


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN

