"""task=demo, the default of ``python run.py``: the paper's protocol in miniature, offline, on CPU.

The flow, top to bottom (every step is cached, so a second run only re-reads results):

1. Demo data (``domain_distil/demo/data``): in-domain and general corpora in five languages, two
   labeled tasks.
2. Two students of the same teacher and recipe, differing only in the corpus: in-domain and general
   (``stages.distil``).
3. Frozen self-attention classifiers on the teacher and both students, seeds x languages x tasks
   (``stages.classify``).

Steps 2 and 3 run in ``demo.workers`` spawned processes with ``demo.threads_per_worker`` torch
threads each (``common/workers.py``): a small job is mostly single-threaded Python (Lightning's
loop, collation), which a second process runs on the other core while a second torch thread would
idle; a fixed thread count per job makes the numbers independent of the worker count. What is cached (students, finished jobs) is read in this process; a run with
nothing left to do starts no worker.
4. Table 8 with ⋆ (beats the general student, DistilmBERT's role) and † (beats the teacher).
5. Size and single-thread batch-1 latency of the teacher next to the student.

Every setting comes from ``cfg.demo`` (``conf/experiment/demo.yaml``), composed from the ordinary
config groups, so nothing here builds override strings or re-composes Hydra. Under ``-m``
(``python run.py -m seed='range(10)' lang=eng,esp,jap,por,rus``) each job runs only step 3 for its
own seed and language; ``task=report`` then summarises the sweep.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import Future, as_completed
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
from domain_distil.classification.taskfile import TaskSpec, load_examples
from domain_distil.common.hashing import hash_object, short
from domain_distil.common.io import atomic_open
from domain_distil.common.locking import build_entry
from domain_distil.common.loggers import to_container
from domain_distil.common.workers import WorkerPool, resolve_workers
from domain_distil.modeling.teachers import resolve_teacher_path
from domain_distil.stages.classify import ClassifyJob, classify, finished_result, task_data_hash
from domain_distil.stages.distil import DistillPlan, DistillRun, cached_student, distil, plan_distillation
from domain_distil.stages.report import report as run_report
from domain_distil.tasks.classify import classify_settings, trainer_factory
from domain_distil.tasks.report import report_request

log = logging.getLogger(__name__)

TEACHER, GENERAL, DOMAIN, TRIMMED = "teacher", "general-student", "domain-student", "trimmed-student"


def run(cfg: DictConfig) -> dict[str, Any]:
    data_dir = demo_data(cfg.demo.data, Path(cfg.paths.cache_dir))
    corpora = {GENERAL: data_dir / "general", DOMAIN: data_dir / "in_domain"}
    overrides: dict[str, dict[str, Any]] = {}
    if cfg.demo.trimmed_student:
        # The in-domain student again, with the vocabulary trimmed to what its corpus and the tasks'
        # training texts use (student.vocab=trim): the same recipe, a quarter of the parameters.
        corpora[TRIMMED] = data_dir / "in_domain"
        overrides[TRIMMED] = {"vocab": "trim", "vocab_extra_texts": [str(training_texts(cfg, data_dir))]}
    return run_protocol(cfg, data_dir, corpora, name="demo", with_speed=True, student_overrides=overrides)


def training_texts(cfg: DictConfig, data_dir: Path) -> Path:
    """The texts of the tasks' ``train`` rows (every language) as one JSONL file, for a trimmed
    student's vocabulary: no validation or test text decides which tokens are kept."""
    path = data_dir / "vocab_extra" / "train_texts.jsonl"
    rows = []
    for task in cfg.demo.tasks:
        task_cfg = demo_task_config(cfg, data_dir, str(task))
        for example in load_examples(task_cfg.files, TaskSpec.from_config(task_cfg)):
            if example.split == "train":
                rows.append(json.dumps({"text": example.text}, ensure_ascii=False))
    text = "\n".join(rows) + "\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # unchanged: keep its mtime
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as handle:
            handle.write(text)
    return path


def run_protocol(cfg: DictConfig, data_dir: Path, corpora: dict[str, Path], name: str, with_speed: bool,
                 student_overrides: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Steps 2-5 on ``data_dir`` (task files in ``tasks/``) with one student per corpus in ``corpora``
    (``experiment=debian_td`` runs them on prepared Debian data); ``student_overrides`` changes the
    student settings of some of them (the trimmed student)."""
    started = time.perf_counter()
    demo, cache_dir, output_dir = cfg.demo, Path(cfg.paths.cache_dir), Path(cfg.paths.output_dir)
    # Converted once here, before any worker process could race to convert it.
    teacher_dir = resolve_teacher_path(demo.teacher, cache_dir)
    if _is_multirun():  # one job of a sweep: this seed and language only, results in the job folder
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
        results_dir = output_dir / "classify" if _is_multirun() else stable_results_dir(cfg, students, name)
        # Seed-major order: the first job of every (task, encoder) pair encodes its features, so two
        # workers rarely wait for each other's feature file, and a run stopped early holds whole seeds.
        jobs = [(str(task), lang, encoder, seed) for seed in seeds for task in demo.tasks for lang in langs
                for encoder in encoders.values()]
        trained = classify_all(cfg, data_dir, jobs, results_dir, pool)
    summary: dict[str, Any] = {"data": str(data_dir), "students": {k: str(v) for k, v in students.items()},
                               "jobs": len(jobs), "distilled": distilled, "trained": trained,
                               "results": str(results_dir)}
    if not _is_multirun():
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
    portable = _portable(cfg)
    for name, corpus_dir in corpora.items():
        changes = (overrides or {}).get(name, {})
        hit = cached_student(student_plan(cfg, corpus_dir, changes), distill_run(cfg))
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
    portable = _portable(cfg)
    pending: list[Future] = []
    data_hashes: dict[tuple[str, str], str] = {}  # every job of a task and language reads the same files
    for task, lang, encoder, seed in jobs:
        job = classify_job(cfg, data_dir, task, lang, seed, encoder, results_dir)
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


def _portable(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain, resolved data: a worker process has no Hydra context to resolve it."""
    return OmegaConf.to_container(cfg, resolve=True)


def _worker_cfg(portable: dict[str, Any]) -> DictConfig:
    cfg = OmegaConf.create(portable)
    with open_dict(cfg):
        cfg.trainer.enable_progress_bar = False  # bars of several processes would draw over each other
    return cfg


def distil_student(cfg: DictConfig, corpus_dir: Path, student_changes: dict[str, Any] | None = None) -> Path:
    """One student of the demo's teacher and recipe on ``corpus_dir``, in this process (cached)."""
    started = time.perf_counter()
    student = distil(student_plan(cfg, corpus_dir, student_changes), distill_run(cfg))
    log.info("student on %s ready in %.0f s: %s", corpus_dir.name, time.perf_counter() - started, student.path)
    return student.path


def _distil_in_worker(portable: dict[str, Any], corpus_dir: str, student_changes: dict[str, Any]) -> str:
    return str(distil_student(_worker_cfg(portable), Path(corpus_dir), student_changes))


def _classify_in_worker(portable: dict[str, Any], data_dir: str, task: str, lang: str, seed: int,
                        encoder: EncoderRef, results_dir: str) -> float | None:
    cfg = _worker_cfg(portable)
    return classify(classify_job(cfg, Path(data_dir), task, lang, seed, encoder, Path(results_dir))).test_f1


def demo_data(settings: DictConfig, cache_dir: Path) -> Path:
    """Generate (or reuse) the demo data; the folder is named by the generator settings."""
    from domain_distil.demo.data.generator import generate_demo_data

    values = OmegaConf.to_container(settings, resolve=True)
    out = cache_dir / "demo_data" / short(hash_object(values), 12)
    seed = values.pop("seed")
    generate_demo_data(out, seed, **values)
    return out


def student_plan(cfg: DictConfig, corpus_dir: Path, student_changes: dict[str, Any] | None = None) -> DistillPlan:
    """The demo's teacher, student and recipe on ``corpus_dir`` (validated; nothing loaded);
    ``student_changes`` replaces some ``demo.student`` settings."""
    demo = cfg.demo
    corpus = OmegaConf.to_container(demo.corpus, resolve=True) | {"dir": str(corpus_dir)}
    student = OmegaConf.to_container(demo.student, resolve=True) | dict(student_changes or {})
    return plan_distillation(
        OmegaConf.to_container(demo.teacher, resolve=True), student,
        corpus, OmegaConf.to_container(demo.distill, resolve=True), cfg.paths.cache_dir,
    )


def distill_run(cfg: DictConfig) -> DistillRun:
    return DistillRun(cache_dir=Path(cfg.paths.cache_dir), trainer=partial(instantiate, _single_device(cfg.trainer)))


def _single_device(trainer_cfg: DictConfig) -> DictConfig:
    """The demo runs in one process: the trainer group's hardware, one device."""
    trainer_cfg = trainer_cfg.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.devices = 1
        trainer_cfg.pop("strategy", None)
        trainer_cfg.pop("num_nodes", None)
    return trainer_cfg


def demo_task_config(cfg: DictConfig, data_dir: Path, task: str) -> DictConfig:
    """The ``cls_task`` config of one demo task, pointed at the generated task file."""
    return OmegaConf.merge(cfg.demo.task_configs[task], {
        "files": [str(data_dir / "tasks" / f"{task}.jsonl")], "dir": None, "languages": list(cfg.demo.data.languages),
    })


def classify_job(cfg: DictConfig, data_dir: Path, task: str, lang: str, seed: int, encoder: EncoderRef,
                 results_dir: Path) -> ClassifyJob:
    """A frozen classifier on ``encoder`` for one demo task, language and seed."""
    demo = cfg.demo
    task_cfg = demo_task_config(cfg, data_dir, task)
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


def size_and_latency(cfg: DictConfig, students: dict[str, Path], output_dir: Path, model_hashes: list[str]) -> str:
    """Parameters and single-thread batch-1 latency, teacher next to the in-domain student (and
    the trimmed one, when the demo distils it).

    A timing, unlike the other steps, is not a function of its inputs alone, but re-timing the same
    two models on the same machine tells nothing new: the measurement is kept in the cache under
    the models' content hashes, the settings and the machine, and re-used (the log says so) unless
    ``demo.remeasure_speed=true``.
    """
    from domain_distil.analysis.speed import machine_identity
    from domain_distil.tasks.speed import run as speed_task

    encoders = [{"id": TEACHER, "teacher": True}, *({"id": k, "name_or_path": str(v)} for k, v in students.items())]
    speed = OmegaConf.merge(cfg.demo.speed, {"encoders": encoders})
    cache_dir = Path(cfg.paths.cache_dir)
    key = short(hash_object({
        "models": model_hashes,
        "speed": OmegaConf.to_container(speed, resolve=True), "machine": machine_identity(),
    }), 16)
    measured = cache_dir / "speed" / key
    if measured.is_dir() and not bool(cfg.demo.remeasure_speed):
        shutil.copytree(measured, output_dir, dirs_exist_ok=True)
        log.info("Table 5: the same models were timed on this machine before (%s); re-used, "
                 "demo.remeasure_speed=true times them again", measured)
        return str(output_dir)
    paths = OmegaConf.merge(cfg.paths, {"output_dir": str(output_dir)})
    speed_task(_with(cfg, speed=speed, teacher=cfg.demo.teacher, paths=paths))

    def keep(folder: Path) -> None:
        for name in ("speed.md", "speed.json"):
            shutil.copy2(output_dir / name, folder / name)

    build_entry(measured, keep)
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

