"""task=distill: teacher + corpus -> exported student (cached by content hash), then the command that
classifies with it. ``stages/distil.py`` does the work and checks the config before loading anything.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from domain_distil.artifacts.students import StudentArtifact, classify_command
from domain_distil.common.loggers import build_loggers, finish_wandb, sweep_group
from domain_distil.stages import distil as stage

log = logging.getLogger(__name__)


def run_settings(cfg: DictConfig, plan: stage.DistillPlan) -> stage.DistillRun:
    """The hardware (``trainer`` group), loggers, resume checkpoint and extra callbacks of this run."""
    name = f"distill-{Path(plan.teacher_path).name}-{plan.corpus_name}"
    extra = [instantiate(c) for c in (cfg.distill.get("callbacks") or [])]
    return replace(
        stage.distill_run(cfg), ckpt_path=cfg.get("ckpt_path"), callbacks=extra, finish_loggers=finish_wandb,
        loggers=lambda: build_loggers(
            cfg.get("logger"), name=name, group=sweep_group("distill", cfg.paths.output_dir),
            tags=["distill", plan.corpus_name], job_type="distill",
        ),
    )


def ensure_student(cfg: DictConfig) -> StudentArtifact:
    """The student of this config: from the cache, or distilled now."""
    plan = stage.plan_from_config(cfg)
    return stage.distil(plan, run_settings(cfg, plan))


def cache_overrides(cfg: DictConfig) -> tuple[str, ...]:
    """``paths.cache_dir=...`` when a command started from the same folder and shell would look elsewhere.

    Mirrors the default of ``conf/paths/default.yaml``: ``$DOMAIN_DISTIL_CACHE``, else ``./cache``.
    """
    default = Path(os.environ.get("DOMAIN_DISTIL_CACHE") or Path(cfg.paths.root_dir) / "cache")
    cache = Path(cfg.paths.cache_dir)
    return () if cache.resolve() == default.resolve() else (f"paths.cache_dir={cache}",)


def run(cfg: DictConfig) -> str:
    student = ensure_student(cfg)
    command = classify_command(student, cache_overrides(cfg))
    log.info("Student %s (key %s, report id %s); classify with it (add your cls_task settings): %s",
             student.path, student.key, student.default_id, command)
    print(f"Student: {student.path}")
    print(command)
    return str(student.path)
