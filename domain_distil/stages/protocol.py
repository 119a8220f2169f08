"""The demo's protocol, steps 2-5 of ``task=demo``: students, frozen classifiers, Table 8, Table 5.

Distillation and classification run in ``demo.workers`` spawned processes (why: docs/demo.md); what
is cached (students, finished jobs) is read in this process, so a run with nothing left to do starts
no worker. Every setting comes from ``cfg.demo``: nothing here builds override strings or re-composes Hydra.
"""

from __future__ import annotations

import logging
import shutil
import time
from concurrent.futures import Future, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from domain_distil.classification.encoders import EncoderRef, local_encoder
from domain_distil.classification.taskfile import TaskSpec
from domain_distil.common.errors import in_multirun
from domain_distil.common.hashing import hash_object, short
from domain_distil.common.locking import build_entry
from domain_distil.common.loggers import to_container
from domain_distil.common.workers import WorkerPool, resolve_workers
from domain_distil.modeling.teachers import resolve_teacher_path
from domain_distil.stages.classify import (
    ClassifyJob,
    classify,
    classify_settings,
    finished_result,
    single_device,
    task_data_hash,
    trainer_factory,
)
from domain_distil.stages.distil import DistillPlan, cached_student, distil, distill_run, plan_distillation
from domain_distil.stages.report import report as run_report
from domain_distil.stages.report import report_request

log = logging.getLogger(__name__)

TEACHER, GENERAL, DOMAIN, TRIMMED = "teacher", "general-student", "domain-student", "trimmed-student"


def run_protocol(cfg: DictConfig, data_dir: Path, corpora: dict[str, Path], name: str, with_speed: bool,
                 student_overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Steps 2-5 on ``data_dir`` (task files in ``tasks/``) with one student per corpus in ``corpora``
    (``experiment=debian_td`` runs them on prepared Debian data); ``student_overrides`` changes the
    student settings of some of them (the trimmed student)."""
    started = time.perf_counter()
    demo, cache_dir, output_dir = cfg.demo, Path(cfg.paths.cache_dir), Path(cfg.paths.output_dir)
    # Converted once here, before any worker process could race to convert it.
    teacher_dir = resolve_teacher_path(demo.teacher, cache_dir)
    if in_multirun():  # one job of a sweep: this seed and language only, results in the job folder
        seeds, langs = [int(cfg.seed)], [str(cfg.lang.name)]
    else:
        seeds, langs = [int(s) for s in demo.seeds], [str(lang) for lang in demo.langs]
    threads = int(demo.threads_per_worker)
    with WorkerPool(resolve_workers(demo.workers, threads), threads) as pool:
        students, distilled = distil_students(cfg, corpora, pool, student_overrides)
        encoders = {
            TEACHER: local_encoder(TEACHER, teacher_dir, cache_dir),
            **{encoder_id: local_encoder(encoder_id, path, cache_dir) for encoder_id, path in students.items()},
        }
        results_dir = output_dir / "classify" if in_multirun() else stable_results_dir(cfg, students, name)
        # Seed-major order: the first job of every (task, encoder) pair encodes its features, so two
        # workers rarely wait for each other's feature file, and a run stopped early holds whole seeds.
        jobs = [(str(task), lang, encoder, seed) for seed in seeds for task in demo.tasks for lang in langs
                for encoder in encoders.values()]
        trained = classify_all(cfg, data_dir, jobs, results_dir, pool)
    summary: dict[str, Any] = {"data": str(data_dir), "students": {k: str(v) for k, v in students.items()},
                               "jobs": len(jobs), "distilled": distilled, "trained": trained,
                               "results": str(results_dir)}
    if not in_multirun():
        summary["report"] = report(cfg, results_dir, seeds, output_dir / "report")
        if with_speed:
            timed = [s for s in (DOMAIN, TRIMMED) if s in students]
            summary["speed"] = size_and_latency(cfg, {s: students[s] for s in timed}, output_dir / "speed",
                                               [encoders[e].hash for e in (TEACHER, *timed)])
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    Console().print(f"[bold]{name} finished in {summary['wall_seconds']:.0f} s[/]; outputs in {output_dir}")
    return summary


def distil_students(cfg: DictConfig, corpora: dict[str, Path], pool: WorkerPool,
                    overrides: dict[str, dict[str, Any]] | None = None) -> tuple[dict[str, Path], int]:
    """One student per corpus, same teacher and recipe (``overrides[name]`` changes some student
    settings): cached ones are read here, the others are distilled side by side in the worker
    processes. Returns the folders and how many were distilled."""
    students: dict[str, Path] = {}
    pending: dict[str, Future] = {}
    portable = to_container(cfg)  # resolved here: a worker process has no Hydra context to resolve it
    for name, corpus_dir in corpora.items():
        changes = (overrides or {}).get(name, {})
        hit = cached_student(student_plan(cfg, corpus_dir, changes), distill_run(cfg, single_device(cfg.trainer)))
        if hit is not None:
            log.info("%s on %s: cache hit %s", name, corpus_dir.name, hit.path)
            students[name] = hit.path
        else:
            pending[name] = pool.submit(_distil_in_worker, portable, str(corpus_dir), changes)
    for name, future in pending.items():
        students[name] = Path(future.result())
    return {name: students[name] for name in corpora}, len(pending)


def classify_all(cfg: DictConfig, data_dir: Path, jobs: list[tuple[str, str, EncoderRef, int]], results_dir: Path,
                 pool: WorkerPool) -> int:
    """Run every (task, language, encoder, seed) job not already finished in ``results_dir``."""
    portable = to_container(cfg)
    pending: list[Future] = []
    data_hashes: dict[tuple[str, str], str] = {}  # every job of a task and language reads the same files
    for task, lang, encoder, seed in jobs:
        job = protocol_job(cfg, data_dir, task, lang, seed, encoder, results_dir)
        if (task, lang) not in data_hashes:
            data_hashes[task, lang] = task_data_hash(job)
        if finished_result(job, data_hashes[task, lang]) is None:
            pending.append(pool.submit(_classify_in_worker, portable, str(data_dir), task, lang, seed, encoder,
                                       str(results_dir)))
    log.info("classification: %d of %d jobs to run, %d finished before", len(pending), len(jobs),
             len(jobs) - len(pending))
    started, step = time.perf_counter(), max(1, len(pending) // 10)
    for done, future in enumerate(as_completed(pending), start=1):
        future.result()  # a failed job re-raises here (its results.json says why)
        if done % step == 0 or done == len(pending):
            log.info("classification: %d/%d jobs done in %.0f s", done, len(pending), time.perf_counter() - started)
    return len(pending)


def _worker_cfg(portable: dict[str, Any]) -> DictConfig:
    cfg = OmegaConf.create(portable)
    with open_dict(cfg):
        cfg.trainer.enable_progress_bar = False  # bars of several processes would draw over each other
    return cfg


def distil_student(cfg: DictConfig, corpus_dir: Path, student_changes: dict[str, Any] | None = None) -> Path:
    """One student of the demo's teacher and recipe on ``corpus_dir``, in this process (cached)."""
    started = time.perf_counter()
    student = distil(student_plan(cfg, corpus_dir, student_changes), distill_run(cfg, single_device(cfg.trainer)))
    log.info("student on %s ready in %.0f s: %s", corpus_dir.name, time.perf_counter() - started, student.path)
    return student.path


def _distil_in_worker(portable: dict[str, Any], corpus_dir: str, student_changes: dict[str, Any]) -> str:
    return str(distil_student(_worker_cfg(portable), Path(corpus_dir), student_changes))


def _classify_in_worker(portable: dict[str, Any], data_dir: str, task: str, lang: str, seed: int,
                        encoder: EncoderRef, results_dir: str) -> float | None:
    cfg = _worker_cfg(portable)
    return classify(protocol_job(cfg, Path(data_dir), task, lang, seed, encoder, Path(results_dir))).test_f1


def student_plan(cfg: DictConfig, corpus_dir: Path, student_changes: dict[str, Any] | None = None) -> DistillPlan:
    """The demo's teacher, student and recipe on ``corpus_dir`` (validated; nothing loaded);
    ``student_changes`` replaces some ``demo.student`` settings."""
    demo = cfg.demo
    corpus = to_container(demo.corpus) | {"dir": str(corpus_dir)}
    student = to_container(demo.student) | dict(student_changes or {})
    return plan_distillation(to_container(demo.teacher), student, corpus, to_container(demo.distill), cfg.paths.cache_dir)


def demo_task_config(cfg: DictConfig, data_dir: Path, task: str) -> DictConfig:
    """The ``cls_task`` config of one demo task, pointed at the generated task file."""
    return OmegaConf.merge(cfg.demo.task_configs[task], {
        "files": [str(data_dir / "tasks" / f"{task}.jsonl")], "dir": None, "languages": list(cfg.demo.data.languages),
    })


def protocol_job(cfg: DictConfig, data_dir: Path, task: str, lang: str, seed: int, encoder: EncoderRef,
                 results_dir: Path) -> ClassifyJob:
    """A frozen classifier on ``encoder`` for one demo task, language and seed."""
    demo = cfg.demo
    task_cfg = demo_task_config(cfg, data_dir, task)
    job_dir = results_dir / task / lang / encoder.id / f"seed={seed}"
    return ClassifyJob(
        task=TaskSpec.from_config(task_cfg), lang=lang, task_files=task_cfg.files, task_dir=None,
        encoder=lambda: encoder, encoder_id=encoder.id, freeze=True, seed=seed,
        head=instantiate(cfg.head, _partial_=True), settings=classify_settings(demo.classify),
        trainer=trainer_factory(single_device(cfg.trainer), seed), output_dir=job_dir, cache_dir=Path(cfg.paths.cache_dir),
        # What decides the job's result, so an identical job is re-read instead of re-trained.
        config={"task": to_container(task_cfg), "lang": lang, "seed": seed, "encoder": encoder.to_dict(),
                "head": to_container(cfg.head), "classify": to_container(demo.classify)},
    )


def stable_results_dir(cfg: DictConfig, students: dict[str, Path], name: str = "demo") -> Path:
    """Where a plain ``python run.py`` keeps its classification jobs: a folder named by everything
    that decides their results, so a second run finds every job finished and only re-reads it."""
    settings = {"data": to_container(cfg.demo.data), "teacher": to_container(cfg.demo.teacher),
                "students": {k: str(v) for k, v in students.items()}, "classify": to_container(cfg.demo.classify)}
    return Path(cfg.paths.log_dir) / name / "classify" / short(hash_object(settings), 12)


def report(cfg: DictConfig, results_dir: Path, seeds: list[int], output_dir: Path) -> str:
    """Table 8 of the demo's jobs, the demo's encoders in the baselines' roles (``report`` group)."""
    request = report_request(cfg)
    expected = {**request.expected, "seeds": seeds}
    run_report(replace(request, sweep_dirs=[str(results_dir)], expected=expected, output_dir=output_dir))
    return str(output_dir)


def size_and_latency(cfg: DictConfig, students: dict[str, Path], output_dir: Path, model_hashes: list[str]) -> str:
    """Parameters and single-thread batch-1 latency, teacher next to the in-domain student (and
    the trimmed one, when the demo distils it).

    A timing, unlike the other steps, is not a function of its inputs alone, but re-timing the same
    two models on the same machine tells nothing new: the measurement is kept in the cache under
    the models' content hashes, the settings (the int8 row's too) and the machine, and re-used (the
    log says so) unless ``demo.remeasure_speed=true``.
    """
    from domain_distil.analysis.speed import machine_identity
    from domain_distil.serving.quantize import int8_calibration_texts, int8_settings
    from domain_distil.stages.speed import measure, speed_request

    encoders = [{"id": TEACHER, "teacher": True}, *({"id": k, "name_or_path": str(v)} for k, v in students.items())]
    speed = OmegaConf.merge(cfg.demo.speed, {"encoders": encoders})
    cache_dir = Path(cfg.paths.cache_dir)
    # The int8 row quantizes by the int8 group, and exclude=auto picks its layers on the calibration texts.
    int8 = {"settings": int8_settings(cfg).effective(), "calibration": int8_calibration_texts(cfg)}
    key = short(hash_object({"models": model_hashes, "speed": to_container(speed), "machine": machine_identity(),
                             "int8": int8}), 16)
    measured = cache_dir / "speed" / key
    if measured.is_dir() and not bool(cfg.demo.remeasure_speed):
        shutil.copytree(measured, output_dir, dirs_exist_ok=True)
        log.info("Table 5: the same models were timed on this machine before (%s); re-used, "
                 "demo.remeasure_speed=true times them again", measured)
        return str(output_dir)
    speed_cfg = cfg.copy()  # the demo's teacher and speed settings in the groups speed_request reads
    with open_dict(speed_cfg):
        speed_cfg.speed, speed_cfg.teacher, speed_cfg.paths.output_dir = speed, cfg.demo.teacher, str(output_dir)
    measure(speed_request(speed_cfg))

    def keep(folder: Path) -> None:
        for name in ("speed.md", "speed.json"):
            shutil.copy2(output_dir / name, folder / name)

    build_entry(measured, keep)
    return str(output_dir)
