"""task=distill: teacher + corpus -> exported student (cached by content hash).

    python run.py task=distill teacher=mbert corpus=text corpus.dir=data/my_corpus
    python run.py task=distill ... ckpt_path=last        # resume the interrupted run

Everything that can be wrong with the configuration is checked in ``plan_distillation`` before a
single weight is loaded or a line tokenised.
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig

from callbacks.throughput import TokenThroughput
from datamodules.distill import DistillDataModule
from domain_distil.common.hashing import hash_object, memoised_model_hash, short
from domain_distil.common.io import read_json
from domain_distil.common.loggers import build_loggers, finish_wandb, sweep_group
from domain_distil.common.provenance import git_commit
from domain_distil.corpus.reader import discover_files
from domain_distil.corpus.shards import ShardSettings, build_corpus
from domain_distil.modeling.checks import (
    check_student_matches_teacher,
    checkpoint_has_mlm_head,
    usable_positions,
)
from domain_distil.modeling.distill_losses import LossWeights
from domain_distil.modeling.export import export_model
from domain_distil.modeling.masking import MaskingConfig
from domain_distil.modeling.student import StudentSpec, build_student, resolve_layers
from domain_distil.modeling.teachers import load_teacher, load_teacher_config, load_teacher_tokenizer
from domain_distil.tasks._common import seed_everything
from lightning_modules.distillation import DistillationModule

log = logging.getLogger(__name__)


@dataclass
class DistillPlan:
    """The validated run: resolved teacher, corpus files and every setting, nothing loaded yet."""

    teacher_path: str
    teacher_config: PretrainedConfig
    teacher_has_mlm_head: bool
    files: dict[str, list[Path]]
    shard_settings: ShardSettings
    student_spec: StudentSpec
    loss_weights: LossWeights
    masking: MaskingConfig
    fit_teacher_head: bool = False


def plan_distillation(cfg: DictConfig) -> DistillPlan:
    d = cfg.distill
    weights = LossWeights(
        alpha_ce=d.alpha_ce,
        alpha_mlm=d.alpha_mlm,
        alpha_cos=d.alpha_cos,
        alpha_mse=d.alpha_mse,
        temperature=d.temperature,
        restrict_ce_to_mask=d.restrict_ce_to_mask,
    )
    weights.validate()
    masking = MaskingConfig(**OmegaConf.to_container(d.masking))
    masking.validate()
    teacher_path, teacher_config = load_teacher_config(cfg.teacher, cfg.paths.cache_dir)
    has_head = checkpoint_has_mlm_head(teacher_path, teacher_config)
    fit_head = _mlm_head_strategy(cfg) == "fit" and not has_head and weights.needs_teacher_logits
    if weights.needs_teacher_logits and not has_head and not fit_head:
        raise ValueError(
            f"Teacher {teacher_path} has no trained MLM head, so its soft targets would be noise "
            f"(distill.alpha_ce={weights.alpha_ce}, alpha_mse={weights.alpha_mse}). Either distil with hidden "
            "states only (distill.alpha_ce=0 distill.alpha_mse=0 distill.alpha_mlm=0, keep alpha_cos>0), or fit a "
            "head first (teacher.mlm_head.strategy=fit, see docs/demo.md)."
        )
    student_name = cfg.student.get("name_or_path")
    if student_name:
        check_student_matches_teacher(AutoConfig.from_pretrained(student_name), teacher_config)
    if d.batch_size < 1:
        raise ValueError(f"distill.batch_size must be >= 1, got {d.batch_size}")
    corpus = cfg.corpus
    files = discover_files(corpus.dir, corpus.get("files"), corpus.get("languages"))
    max_len = min(int(corpus.max_seq_length), usable_positions(teacher_config))
    shard_settings = ShardSettings(
        max_seq_length=max_len,
        min_seq_length=int(corpus.min_seq_length),
        max_unk_ratio=float(corpus.max_unk_ratio),
        shard_tokens=int(corpus.shard_tokens),
        text_field=str(corpus.text_field),
    )
    spec_fields = {
        k: v for k, v in OmegaConf.to_container(cfg.student).items() if k in StudentSpec.__dataclass_fields__
    }
    if spec_fields.get("layers") is not None:
        spec_fields["layers"] = tuple(spec_fields["layers"])
    student_spec = StudentSpec(**spec_fields)
    if not student_name:
        resolve_layers(student_spec, teacher_config.num_hidden_layers)  # layer errors before any work
    return DistillPlan(
        teacher_path, teacher_config, has_head, files, shard_settings, student_spec, weights, masking, fit_head
    )


def _mlm_head_strategy(cfg: DictConfig) -> str:
    strategy = str((cfg.teacher.get("mlm_head") or {}).get("strategy", "none"))
    if strategy not in {"fit", "none"}:
        raise ValueError(f"teacher.mlm_head.strategy must be 'fit' or 'none', got {strategy!r}")
    return strategy


def fit_teacher_head(cfg: DictConfig, plan: DistillPlan) -> str:
    """Fit (or reuse) an MLM head for a headless teacher on the first documents of the corpus."""
    from domain_distil.corpus.reader import iter_documents
    from domain_distil.modeling.mlm_head import fit_mlm_head

    settings = cfg.teacher.mlm_head
    wanted = int(settings.steps) * int(settings.batch_size) * 2
    per_language = max(1, wanted // len(plan.files))
    texts: list[str] = []
    for paths in plan.files.values():  # an even share of every language
        taken = 0
        for path in paths:
            for text, _ in iter_documents(path, plan.shard_settings.text_field):
                texts.append(text)
                taken += 1
                if taken >= per_language:
                    break
            if taken >= per_language:
                break
    path = fit_mlm_head(
        plan.teacher_path, texts, cfg.paths.cache_dir, steps=int(settings.steps), batch_size=int(settings.batch_size),
        lr=float(settings.lr), max_length=int(settings.max_length), seed=distill_seed(cfg),
        **{k: settings[k] for k in ("epochs", "negatives") if k in settings},
    )
    return str(path)


def distill_seed(cfg: DictConfig) -> int:
    """The distillation's own seed (``distill.seed``, the reference's 56), not the global ``seed``:
    a classification sweep over ``seed=range(10)`` with ``encoder=distilled`` must share one student."""
    return int(cfg.distill.seed)


def _teacher_identity(cfg: DictConfig, teacher_path: str) -> dict[str, Any]:
    if Path(teacher_path).is_dir():
        return {"path_hash": memoised_model_hash(teacher_path, cfg.paths.cache_dir)}
    return {"name": teacher_path, "revision": cfg.teacher.get("revision")}


_NOT_PART_OF_THE_RECIPE = {"num_workers", "checkpoint_every_n_steps", "keep_checkpoints"}


def student_key(cfg: DictConfig, plan: DistillPlan, corpus_key: str) -> str:
    """What determines the student: teacher, corpus, student layout, recipe and seed (not hardware)."""
    distill = {
        k: v
        for k, v in OmegaConf.to_container(cfg.distill, resolve=True).items()
        if k not in _NOT_PART_OF_THE_RECIPE
    }
    distill.get("trainer", {}).pop("log_every_n_steps", None)
    return hash_object(
        {
            "teacher": _teacher_identity(cfg, plan.teacher_path),
            "corpus": corpus_key,
            "student": OmegaConf.to_container(cfg.student, resolve=True),
            "distill": distill,
        }
    )


def ensure_student(cfg: DictConfig) -> Path:
    """The exported student for this config: from the cache, or distilled now and cached."""
    plan = plan_distillation(cfg)
    if plan.fit_teacher_head:
        plan.teacher_path = fit_teacher_head(cfg, plan)
        plan.teacher_has_mlm_head = True
    # The tokenizer alone decides the corpus and so the cache key: no teacher weights on a cache hit.
    tokenizer = load_teacher_tokenizer(cfg.teacher, plan.teacher_path)
    corpus_dir = build_corpus(
        plan.files,
        tokenizer,
        cfg.paths.cache_dir,
        plan.shard_settings,
        num_workers=int(cfg.corpus.num_workers),
    )
    corpus_hash = corpus_dir.name
    key = short(student_key(cfg, plan, corpus_hash), 16)
    export_dir = Path(cfg.paths.cache_dir) / "students" / key
    if (export_dir / "manifest.json").exists():
        log.info("Student cache hit: %s", export_dir)
        return export_dir
    teacher = load_teacher(cfg.teacher, cfg.paths.cache_dir, path=plan.teacher_path)
    return distil(cfg, plan, teacher, corpus_dir, export_dir)


def distil(cfg: DictConfig, plan: DistillPlan, teacher, corpus_dir: Path, export_dir: Path) -> Path:
    seed_everything(distill_seed(cfg))
    tokenizer = teacher.tokenizer
    if len(tokenizer) > plan.teacher_config.vocab_size:
        raise ValueError(
            f"Tokenizer has {len(tokenizer)} ids but the teacher's vocab_size is {plan.teacher_config.vocab_size}"
        )
    if cfg.student.get("name_or_path"):
        student = AutoModelForMaskedLM.from_pretrained(cfg.student.name_or_path)
    else:
        student = build_student(teacher.model, plan.student_spec)
    token_counts = torch.from_numpy(np.load(corpus_dir / "token_counts.npy"))
    # Pad the count vector to the model's vocabulary (tokenizers may have fewer ids than rows).
    if len(token_counts) < plan.teacher_config.vocab_size:
        token_counts = torch.cat(
            [token_counts, token_counts.new_zeros(plan.teacher_config.vocab_size - len(token_counts))]
        )
    d = cfg.distill
    seed = distill_seed(cfg)
    module = DistillationModule(
        student=student,
        teacher=teacher.model,
        token_counts=token_counts,
        special_token_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        optimizer=instantiate(d.optimizer),
        loss_weights=plan.loss_weights,
        masking=plan.masking,
        warmup_prop=float(d.warmup_prop),
        seed=seed,
    )
    datamodule = DistillDataModule(
        corpus_dir,
        pad_token_id=tokenizer.pad_token_id,
        batch_size=int(d.batch_size),
        seed=seed,
        group_by_size=bool(d.group_by_size),
        reshuffle_each_epoch=bool(d.reshuffle_each_epoch),
        max_length=plan.shard_settings.max_seq_length,
        num_workers=int(d.num_workers),
    )
    work_dir = export_dir.with_name(f"{export_dir.name}.work")
    checkpoint = ModelCheckpoint(
        dirpath=work_dir / "checkpoints",
        every_n_train_steps=int(d.checkpoint_every_n_steps),
        save_top_k=-1,
        save_last=True,
        filename="step{step:08d}",
        auto_insert_metric_name=False,
    )
    throughput = TokenThroughput()
    callbacks = [checkpoint, throughput]
    corpus_name = cfg.corpus.get("name") or "corpus"
    loggers = build_loggers(
        cfg.get("logger"), name=f"distill-{Path(plan.teacher_path).name}-{corpus_name}",
        group=sweep_group("distill", cfg.paths.output_dir), tags=["distill", corpus_name], job_type="distill",
    )
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer = instantiate(
        cfg.trainer,
        **OmegaConf.to_container(d.trainer, resolve=True),
        callbacks=callbacks,
        logger=loggers or False,
    )
    started = time.time()
    failed = True
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        failed = False
    finally:
        finish_wandb(failed)
    if d.get("keep_checkpoints", True):
        trainer.save_checkpoint(work_dir / "checkpoints" / "final.ckpt")
    if trainer.is_global_zero:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}
        manifest = {
            "kind": "student",
            "teacher": plan.teacher_path,
            "teacher_identity": _teacher_identity(cfg, plan.teacher_path),
            "corpus_hash": corpus_dir.name,
            "corpus_stats": read_json(corpus_dir / "meta.json")["languages"],
            "student_layers": list(student.config.distil_layers)
            if hasattr(student.config, "distil_layers")
            else None,
            "steps": int(trainer.global_step),
            "epochs": int(trainer.current_epoch),
            "losses": metrics,
            "tokens_per_sec": throughput.history[-1] if throughput.history else None,
            "wall_seconds": round(time.time() - started, 1),
            "loss_weights": asdict(plan.loss_weights),
            "git": git_commit(),
            "config": OmegaConf.to_container(cfg, resolve=False),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        export_model(module.student, tokenizer, export_dir, manifest)
        log.info("Exported student to %s", export_dir)
        if not d.get("keep_checkpoints", True):
            shutil.rmtree(work_dir, ignore_errors=True)  # the export is complete; free the disk
    trainer.strategy.barrier("student-export")
    return export_dir


def run(cfg: DictConfig) -> str:
    path = ensure_student(cfg)
    print(f"Student: {path}")
    return str(path)
