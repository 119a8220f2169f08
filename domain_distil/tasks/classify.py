"""``task=classify``: train and test one self-attention classifier for one (task, language, seed).

    python run.py task=classify cls_task=cc_intent lang=esp encoder=distilled
    python run.py task=classify encoder=teacher encoder.freeze=false          # fine-tune mBERT
    python run.py -m task=classify seed=range(10) lang=eng,esp,jap,por,rus    # Table 8 sweep

This module turns the config into a typed :class:`ClassifyJob`; ``domain_distil/stages/classify.py``
does the work.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from domain_distil.classification.encoders import resolve_encoder
from domain_distil.classification.taskfile import TaskSpec
from domain_distil.common.loggers import build_loggers, finish_wandb, log_config, sweep_group, to_container
from domain_distil.stages.classify import ClassifyJob, ClassifyResult, ClassifySettings, classify


def classify_settings(ccfg: DictConfig) -> ClassifySettings:
    """The ``classify`` group as typed settings (optimizer and scheduler become factories)."""
    return ClassifySettings(
        optimizer=instantiate(ccfg.optimizer),
        scheduler=instantiate(ccfg.scheduler) if ccfg.get("scheduler") else None,
        batch_size=int(ccfg.batch_size),
        num_workers=int(ccfg.num_workers),
        encoder_lr=float(ccfg.encoder_lr),
        warmup_prop=float(ccfg.warmup_prop),
        penalty_coef=float(ccfg.penalty_coef),
        feature_cache=bool(ccfg.feature_cache),
        feature_dtype=str(ccfg.feature_dtype),
        encode_batch_size=int(ccfg.encode_batch_size),
        skip_finished=bool(ccfg.get("skip_finished", True)),
        keep_checkpoint=bool(ccfg.keep_checkpoint),
        save_head=bool(ccfg.get("save_head", True)),
        trainer_args=dict(ccfg.trainer),
    )


def trainer_factory(trainer_cfg: DictConfig, seed: int | None) -> Any:
    """The hardware group as a factory; deterministic kernels on CPU, where they cost little."""
    on_cpu = str(trainer_cfg.get("accelerator", "cpu")) == "cpu"
    deterministic = True if on_cpu and seed is not None else trainer_cfg.get("deterministic", False)
    return partial(instantiate, trainer_cfg, deterministic=deterministic)


def classify_job(cfg: DictConfig) -> ClassifyJob:
    spec = TaskSpec.from_config(cfg.cls_task)
    output_dir = Path(cfg.paths.output_dir)
    return ClassifyJob(
        task=spec,
        lang=str(cfg.lang.name),
        task_files=cfg.cls_task.get("files"),
        task_dir=cfg.cls_task.get("dir"),
        encoder=lambda: resolve_encoder(cfg),
        # Until the encoder is resolved (encoder=distilled names its student then) the kind stands in.
        encoder_id=str(cfg.encoder.id or cfg.encoder.kind),
        freeze=bool(cfg.encoder.freeze),
        seed=cfg.seed,
        head=instantiate(cfg.head, _partial_=True),
        settings=classify_settings(cfg.classify),
        trainer=trainer_factory(cfg.trainer, cfg.seed),
        output_dir=output_dir,
        cache_dir=Path(cfg.paths.cache_dir),
        config=to_container(cfg),
        loggers=lambda name, tags: build_loggers(
            cfg.get("logger"), name=name, group=sweep_group(str(cfg.task), output_dir), tags=tags,
            job_type=str(cfg.task),
        ),
        finish_loggers=finish_wandb,
        log_config=log_config,
    )


def run(cfg: DictConfig) -> dict[str, Any]:
    result: ClassifyResult = classify(classify_job(cfg))
    return result.record
