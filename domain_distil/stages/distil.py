"""The distillation stage: teacher + corpus + recipe -> an exported student (a cached artifact).

    plan = plan_distillation(teacher_cfg, student_cfg, corpus_cfg, distill_cfg, cache_dir)  # validates
    student = distil(plan, DistillRun(cache_dir, trainer=partial(Trainer, accelerator="cpu")))

Everything is validated before a weight is loaded or a line tokenised. The student's key needs the
corpus shards (cached) and the trainer (the effective run), not the teacher's weights, so a cached
student is returned without loading the teacher.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig

from callbacks.resumable_checkpoint import ResumableCheckpoint
from callbacks.throughput import TokenThroughput
from datamodules.distill import DistillDataModule
from domain_distil.artifacts.manifest import read_manifest
from domain_distil.artifacts.students import (
    FORMAT_VERSION,
    STUDENT_INITS,
    StudentArtifact,
    corpus_reference,
    lineage,
    parent_identity,
    parent_key,
    parent_student,
    recipe_hash,
    recipe_identity,
    students_root,
    teacher_identity,
)
from domain_distil.common.errors import ConfigError
from domain_distil.common.hashing import hash_object, short
from domain_distil.common.io import read_json
from domain_distil.common.provenance import git_commit
from domain_distil.common.seeding import seed_everything
from domain_distil.corpus.reader import discover_files, iter_documents
from domain_distil.corpus.shards import META, ShardSettings, build_corpus
from domain_distil.modeling.checks import (
    check_same_vocabulary,
    check_student_matches_teacher,
    checkpoint_has_mlm_head,
    usable_positions,
)
from domain_distil.modeling.export import export_model
from domain_distil.modeling.masking import MaskingConfig
from domain_distil.modeling.objectives import ModelShape, Objective, PairShape, teacher_head_kind
from domain_distil.modeling.student import (
    StudentSpec,
    build_student,
    check_continued_layout,
    load_exported_student,
    resolve_layers,
)
from domain_distil.modeling.teachers import (
    load_teacher,
    load_teacher_config,
    load_teacher_tokenizer,
    load_tokenizer,
)
from domain_distil.modeling.tokenizer_trim import trim_tokenizer
from domain_distil.modeling.vocab_trim import (
    KeptVocabulary,
    VocabTrimSettings,
    kept_vocabulary_for,
    trim_masked_lm,
)
from domain_distil.stages.checkpoints import resolve_resume_checkpoint, write_run_record
from domain_distil.stages.select_corpus import read_selection
from lightning_modules.distillation import DistillationModule

log = logging.getLogger(__name__)

# distill.compile=auto compiles the loss terms from this vocabulary size up (mBERT: 119,547 ids).
COMPILE_MIN_VOCABULARY = 32_000


@dataclass(frozen=True)
class HeadFitSettings:
    """How to fit an MLM head for a teacher that ships none (``teacher.mlm_head``); None: fit_mlm_head's default."""

    steps: int
    batch_size: int
    lr: float
    max_length: int
    epochs: int | None = None
    negatives: int | None = None

    @classmethod
    def from_config(cls, head: Mapping[str, Any]) -> HeadFitSettings:
        optional = {k: int(head[k]) for k in ("epochs", "negatives") if k in head}
        return cls(int(head["steps"]), int(head["batch_size"]), float(head["lr"]), int(head["max_length"]), **optional)

    def kwargs(self) -> dict[str, Any]:
        """fit_mlm_head's keyword arguments: the unset ones left to its defaults."""
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class DistillPlan:
    """The validated run: resolved teacher, corpus files and every setting, nothing loaded yet."""

    teacher_cfg: dict[str, Any]
    teacher_path: str
    teacher_config: PretrainedConfig
    teacher_has_mlm_head: bool
    files: dict[str, list[Path]]
    shard_settings: ShardSettings
    student_spec: StudentSpec
    objective: Objective
    masking: MaskingConfig
    distill: dict[str, Any]  # the distill group, resolved: optimizer, batch, trainer args, seed, ...
    student: dict[str, Any]  # the student group, resolved
    corpus: dict[str, Any]  # the corpus group, resolved
    fit_teacher_head: bool = False
    head_fit: HeadFitSettings | None = None  # when fit_teacher_head
    corpus_num_workers: int = 0
    parent: StudentArtifact | None = None  # student.init=student: the exported student it starts from

    @property
    def seed(self) -> int:
        """The distillation's own seed (``distill.seed``, the reference's 56), not the classifier seed."""
        return int(self.distill["seed"])

    @property
    def corpus_name(self) -> str:
        return str(self.corpus.get("name") or "corpus")


@dataclass
class DistillRun:
    """Where and how to run: cache, a trainer factory for the hardware, loggers, resume, callbacks."""

    cache_dir: Path
    trainer: Callable[..., L.Trainer]
    loggers: Callable[[], list[Logger]] = list
    ckpt_path: str | None = None
    callbacks: Sequence[Callback] = ()
    finish_loggers: Callable[[bool], None] = lambda failed: None


def plan_distillation(
    teacher: Mapping[str, Any],
    student: Mapping[str, Any],
    corpus: Mapping[str, Any],
    distill: Mapping[str, Any],
    cache_dir: str | Path,
) -> DistillPlan:
    """Check every setting and resolve the teacher and corpus files; loads no weights, reads no text."""
    d = dict(distill)
    objective = Objective.from_config(d)
    masking = MaskingConfig(**dict(d["masking"]))
    masking.validate()
    teacher_path, teacher_config = load_teacher_config(teacher, cache_dir)
    has_head = checkpoint_has_mlm_head(teacher_path, teacher_config)
    head_cfg = dict(teacher.get("mlm_head") or {})
    strategy = str(head_cfg.get("strategy", "none"))
    if strategy not in {"fit", "none"}:
        raise ConfigError(f"teacher.mlm_head.strategy must be 'fit' or 'none', got {strategy!r}")
    fit_head = strategy == "fit" and not has_head and objective.needs_teacher_logits
    if objective.needs_teacher_logits and not has_head and not fit_head:
        weights = ", ".join(f"{term.key('weight')}={term.weight:g}" for term in objective.teacher_logit_terms())
        raise ConfigError(
            f"Teacher {teacher_path} has no trained MLM head, so its soft targets would be noise ({weights}). "
            "Either distil without teacher logits (distill=hidden, distill=layerwise, distill=minilm), or fit a "
            "head first (teacher.mlm_head.strategy=fit, docs/distillation.md)."
        )
    student_name = student.get("name_or_path")
    student_config = AutoConfig.from_pretrained(student_name) if student_name else None
    if student_config is not None:
        check_student_matches_teacher(student_config, teacher_config)
    if int(d["batch_size"]) < 1:
        raise ConfigError(f"distill.batch_size must be >= 1, got {d['batch_size']}")
    files = discover_files(corpus.get("dir"), corpus.get("files"), corpus.get("languages"))
    max_len = min(int(corpus["max_seq_length"]), usable_positions(teacher_config))
    shard_settings = ShardSettings(
        max_seq_length=max_len,
        min_seq_length=int(corpus["min_seq_length"]),
        max_unk_ratio=float(corpus["max_unk_ratio"]),
        shard_tokens=int(corpus["shard_tokens"]),
        text_field=str(corpus["text_field"]),
        budget_tokens=corpus.get("budget_tokens"),
        document_separator=str(corpus.get("document_separator", "line")),
        encoding_errors=str(corpus.get("encoding_errors", "strict")),
    )
    shard_settings.check_languages(files)  # a budget for a language the corpus lacks: error before any work
    spec_fields = {k: v for k, v in dict(student).items() if k in StudentSpec.__dataclass_fields__}
    if spec_fields.get("layers") is not None:
        spec_fields["layers"] = tuple(spec_fields["layers"])
    student_spec = StudentSpec(**spec_fields)
    VocabTrimSettings.from_config(student)  # student.vocab* errors before any work
    compile_setting(d)
    parent, parent_config = continued_parent(student, student_spec, teacher, teacher_path, teacher_config,
                                             cache_dir) or (None, None)
    if parent is not None:  # the recipe names the parent by its full key, however student.from spelled it
        student, student_config = {**student, "from": parent_key(parent)}, parent_config
    objective.check(planned_pair(student_config, student_spec, teacher_config))  # layer errors before any work
    head_fit = HeadFitSettings.from_config(head_cfg) if fit_head else None
    return DistillPlan(
        teacher_cfg=dict(teacher), teacher_path=teacher_path, teacher_config=teacher_config,
        teacher_has_mlm_head=has_head, files=files, shard_settings=shard_settings, student_spec=student_spec,
        objective=objective, masking=masking, distill=d, student=dict(student), corpus=dict(corpus),
        fit_teacher_head=fit_head, head_fit=head_fit, corpus_num_workers=int(corpus.get("num_workers", 0)),
        parent=parent,
    )


def plan_from_config(cfg: DictConfig) -> DistillPlan:
    groups = (OmegaConf.to_container(cfg[group], resolve=True) for group in ("teacher", "student", "corpus", "distill"))
    return plan_distillation(*groups, cfg.paths.cache_dir)


def distill_run(cfg: DictConfig, trainer: DictConfig | None = None) -> DistillRun:
    """The cache of ``cfg`` and its ``trainer`` group (or ``trainer``) as the hardware; nothing else."""
    trainer = cfg.trainer if trainer is None else trainer
    return DistillRun(cache_dir=Path(cfg.paths.cache_dir), trainer=partial(instantiate, trainer))


def continued_parent(
    student: Mapping[str, Any], spec: StudentSpec, teacher: Mapping[str, Any], teacher_path: str,
    teacher_config: PretrainedConfig, cache_dir: str | Path,
) -> tuple[StudentArtifact, PretrainedConfig] | None:
    """``student.init=student``: the exported student ``student.from`` names and its config, checked against
    the teacher (width, whole vocabulary, tokenizer, layout) from its manifest and config; None for ``init=teacher``."""
    init, source = str(student.get("init", "teacher")), student.get("from")
    if init not in STUDENT_INITS:
        raise ConfigError(f"student.init must be one of {', '.join(STUDENT_INITS)}, got {init!r}")
    if init == "teacher":
        if source not in (None, ""):
            raise ConfigError(f"student.from={source} is read only with student.init=student (start from that student)")
        return None
    if source in (None, ""):
        raise ConfigError("student.init=student needs student.from=<a student's key, unique key prefix or folder> "
                          "(`python run.py task=list` lists them)")
    if student.get("name_or_path"):
        raise ConfigError("student.init=student and student.name_or_path both name the starting weights; set one")
    setting = f"student.from={source}"
    parent = parent_student(cache_dir, str(source))
    vocab = parent.manifest.get("vocab") or {}
    if vocab.get("mode", "full") != "full":
        raise ConfigError(f"{setting}: student {parent.key} has a trimmed vocabulary ({vocab.get('size')} of "
                          f"{vocab.get('teacher_size')} ids); continued distillation starts from the teacher's whole "
                          "vocabulary: give a student distilled with student.vocab=full")
    config = AutoConfig.from_pretrained(parent.path)
    check_student_matches_teacher(config, teacher_config, setting)
    check_continued_layout(config, spec, int(teacher_config.num_hidden_layers), setting)
    if parent.lookup.get("teacher_identity") != teacher_identity(teacher_path, teacher.get("revision"), cache_dir):
        # Another teacher of the same shape: its ids must still name the same tokens.
        check_same_vocabulary(load_tokenizer(parent.path), load_teacher_tokenizer(teacher, teacher_path), setting)
    return parent, config


def planned_pair(student_config: PretrainedConfig | None, spec: StudentSpec,
                 teacher_config: PretrainedConfig) -> PairShape:
    """The student and teacher as the loss terms see them, before any weight is loaded: a given
    student's own config, else the student ``spec`` cuts from the teacher."""
    if student_config is not None:
        return PairShape.of(student_config, teacher_config)
    teacher = ModelShape.of(teacher_config)
    layers = tuple(resolve_layers(spec, teacher.layers))
    return PairShape(ModelShape(len(layers), teacher.hidden, teacher.heads), teacher, layers)


def fit_teacher_head(plan: DistillPlan, cache_dir: str | Path) -> str:
    """Fit (or reuse) an MLM head for a headless teacher on an even share of every language's documents."""
    from domain_distil.stages.teacher_head import fit_mlm_head

    wanted = plan.head_fit.steps * plan.head_fit.batch_size * 2
    per_language = max(1, wanted // len(plan.files))
    texts: list[str] = []
    for paths in plan.files.values():
        documents = (text for path in paths for text, _ in iter_documents(path, plan.shard_settings.text_field))
        texts.extend(itertools.islice(documents, per_language))
    return str(fit_mlm_head(plan.teacher_path, texts, cache_dir, seed=plan.seed, **plan.head_fit.kwargs()))


def effective_run(trainer: L.Trainer, per_device_batch: int) -> dict[str, Any]:
    """What the hardware makes of the recipe: it changes the weights, so it is part of the identity.

    The topology is not: 2 nodes x 1 process and 1 node x 2 processes see the same batches.
    """
    world = int(trainer.world_size)
    accumulate = int(trainer.accumulate_grad_batches)
    return {
        "precision": str(trainer.precision),
        "world_size": world,
        "per_device_batch": per_device_batch,
        "accumulate_grad_batches": accumulate,
        "global_batch": per_device_batch * accumulate * world,
    }


def compile_setting(distill: Mapping[str, Any]) -> str | bool:
    """``distill.compile``: true, false, or auto (absent in older configs: false)."""
    setting = distill.get("compile", False)
    if not (setting == "auto" or isinstance(setting, bool)):  # not `in (...)`: 1 == True
        raise ConfigError(f"distill.compile must be auto, true or false, got {setting!r}")
    return setting


def compiles_loss(setting: str | bool, on_cpu: bool, objective: Objective, vocabulary: int) -> bool:
    """Whether a run compiles its loss terms (``DistillationModule.compile_loss``).

    ``auto`` compiles where it measured faster (``benchmarks/distill_speed.py``): on the CPU, for a
    recipe whose terms read (rows x vocabulary) logits over a vocabulary of at least
    ``COMPILE_MIN_VOCABULARY`` ids, where the fused element-wise passes save more than the
    compiler's warm-up (tens of seconds) costs. Hidden-state recipes and small vocabularies gain
    nothing, and GPUs were not measured.
    """
    if setting != "auto":
        return bool(setting)
    return on_cpu and objective.needs_student_logits and vocabulary >= COMPILE_MIN_VOCABULARY


def student_key(identity: Mapping[str, Any]) -> str:
    return short(hash_object(dict(identity)), 16)


@dataclass
class _Prepared:
    """What the cache key needs: the corpus shards, the kept vocabulary and the hardware's trainer."""

    teacher_path: str  # the plan's teacher, or its copy with a fitted MLM head
    tokenizer: Any
    corpus_dir: Path
    kept: KeptVocabulary | None
    trainer: L.Trainer
    lookup_teacher: str
    effective: dict[str, Any]
    identity: dict[str, Any]  # teacher, corpus, recipe (hash), effective, [vocab], [parent]
    export_dir: Path


def _prepare(plan: DistillPlan, run: DistillRun, callbacks: list[Callback], loggers: list[Logger]) -> _Prepared:
    cache_dir = Path(run.cache_dir)
    # Looked up by the teacher as configured (before any head fit) plus the head-fit settings.
    lookup_teacher = teacher_identity(plan.teacher_path, plan.teacher_cfg.get("revision"), cache_dir)
    r_hash = recipe_hash(plan.distill, plan.student, plan.teacher_cfg.get("mlm_head"))
    # The plan stays as planned (a second call fits nothing new): the fitted copy lives in _Prepared.
    teacher_path = fit_teacher_head(plan, cache_dir) if plan.fit_teacher_head else plan.teacher_path
    # The tokenizer alone decides the corpus and so the cache key: no teacher weights on a cache hit.
    tokenizer = load_teacher_tokenizer(plan.teacher_cfg, teacher_path)
    corpus_dir = build_corpus(plan.files, tokenizer, cache_dir, plan.shard_settings,
                              num_workers=plan.corpus_num_workers)
    kept = _kept_vocabulary(plan, tokenizer, corpus_dir)
    trainer = run.trainer(**dict(plan.distill.get("trainer") or {}), callbacks=callbacks, logger=loggers or False)
    effective = effective_run(trainer, int(plan.distill["batch_size"]))
    vocabulary = len(kept) if kept is not None else int(plan.teacher_config.vocab_size)
    on_cpu = isinstance(trainer.accelerator, CPUAccelerator)
    if compiles_loss(compile_setting(plan.distill), on_cpu, plan.objective, vocabulary):
        effective["compiled"] = True  # compiled kernels round differently (absent when off: old keys hold)
    teacher = teacher_identity(teacher_path, None, cache_dir) if plan.fit_teacher_head else lookup_teacher
    identity = {"teacher": teacher, "corpus": corpus_dir.name, "recipe": r_hash, "effective": effective}
    if kept is not None:  # the extra texts' content, not only their paths, decides the kept ids
        identity["vocab"] = kept.digest()
    if plan.parent is not None:  # the weights it starts from: the parent's key and content hash
        identity["parent"] = parent_identity(plan.parent, cache_dir)
    return _Prepared(teacher_path, tokenizer, corpus_dir, kept, trainer, lookup_teacher, effective, identity,
                     students_root(cache_dir) / student_key(identity))


def cached_student(plan: DistillPlan, run: DistillRun) -> StudentArtifact | None:
    """The student ``distil(plan, run)`` would take from the cache, or None when it would train.

    Builds (or reuses) the corpus shards, which decide the key, and for a headless teacher its fitted
    MLM head (fitting one loads the teacher); loads no other weights. A caller that farms distillations
    out to other processes asks this first, so a cached run starts none.
    """
    prepared = _prepare(plan, run, callbacks=[], loggers=[])
    manifest = read_manifest(prepared.export_dir)
    return StudentArtifact(prepared.export_dir, manifest) if manifest is not None else None


def distil(plan: DistillPlan, run: DistillRun) -> StudentArtifact:
    """The exported student for ``plan``: from the cache, or distilled now and cached."""
    # Which losses run and why, said once before any work (and recorded in the manifest).
    teacher_head = teacher_head_kind(plan.teacher_has_mlm_head, plan.fit_teacher_head)
    log.info("%s", plan.objective.describe(teacher_head))
    # step{N}.ckpt every N optimizer steps, last.ckpt always resumable (SIGINT/SIGTERM, NaN-safe).
    checkpoint = ResumableCheckpoint(every_n_train_steps=int(plan.distill["checkpoint_every_n_steps"]))
    throughput = TokenThroughput()
    loggers = run.loggers()
    callbacks: list[Callback] = [checkpoint, throughput, *run.callbacks]
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    prepared = _prepare(plan, run, callbacks, loggers)
    trainer, tokenizer, corpus_dir, kept = prepared.trainer, prepared.tokenizer, prepared.corpus_dir, prepared.kept
    identity, effective, export_dir = prepared.identity, prepared.effective, prepared.export_dir
    cached = read_manifest(export_dir)
    if cached is not None:
        log.info("Student cache hit: %s", export_dir)
        run.finish_loggers(False)
        return StudentArtifact(export_dir, cached)
    work_dir = export_dir.with_name(f"{export_dir.name}.work")
    checkpoint.dirpath = str(work_dir / "checkpoints")
    recipe = recipe_identity(plan.distill, plan.student, plan.teacher_cfg.get("mlm_head"))
    corpus_ref = corpus_reference(plan.corpus)  # finds this corpus's earlier runs after its content changed
    ckpt_path = resolve_resume_checkpoint(run.ckpt_path, work_dir, identity, recipe, corpus_ref)  # before loading
    if trainer.is_global_zero:
        write_run_record(work_dir, identity, recipe, corpus_ref)

    seed_everything(plan.seed)
    teacher = load_teacher(plan.teacher_cfg, Path(run.cache_dir), path=prepared.teacher_path)
    module, datamodule = _build_module(plan, teacher, corpus_dir, kept)
    if effective.get("compiled"):
        module.compile_loss()
    started = time.time()
    failed = True
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        failed = False
    finally:
        run.finish_loggers(failed)
    if plan.distill.get("keep_checkpoints", True):
        trainer.save_checkpoint(work_dir / "checkpoints" / "final.ckpt")
    if trainer.is_global_zero:
        corpus_stats = read_json(corpus_dir / META)["languages"]
        # A step is global_batch *sequences*, whatever their length, so equal token budgets of short
        # and of long documents give very different step counts.
        volume = {
            "corpus_tokens": sum(int(stats["tokens"]) for stats in corpus_stats.values()),
            "corpus_sequences": sum(int(stats["sequences"]) for stats in corpus_stats.values()),
            "sequences_per_step": int(effective["global_batch"]),
        }
        log.info("%d optimizer steps on %d corpus tokens in %d sequences, %d sequences per step: steps follow "
                 "sequences, not tokens (docs/own-data.md)", trainer.global_step, volume["corpus_tokens"],
                 volume["corpus_sequences"], volume["sequences_per_step"])
        manifest = {
            "kind": "student",
            "format_version": FORMAT_VERSION,
            "key": export_dir.name,
            "lookup": {
                "teacher_identity": prepared.lookup_teacher,
                "corpus_reference": corpus_ref,
                "recipe_hash": identity["recipe"],
                "recipe": recipe,  # what the hash covers, so a failed lookup can name what differs
            },
            "identity": identity,
            "effective": effective,
            "teacher": prepared.teacher_path,
            "teacher_identity": identity["teacher"],
            "corpus_hash": corpus_dir.name,
            "corpus_stats": corpus_stats,
            "student_layers": list(getattr(module.student.config, "distil_layers", []) or []) or None,
            "steps": int(trainer.global_step),
            **volume,  # the tokens and sequences those steps trained on
            "epochs": int(trainer.current_epoch),
            "losses": {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")},
            "tokens_per_sec": throughput.run_average,
            "padding_share": throughput.run_padding_share,  # of the batches' positions; the rest were tokens
            "lineage": lineage(plan.parent, run.cache_dir),  # continued distillation: the parent, its parent, ...
            "wall_seconds": round(time.time() - started, 1),
            "objective": plan.objective.settings(),
            "losses_run": plan.objective.loss_terms(teacher_head),
            "recipe": {"distill": plan.distill, "student": plan.student},
            "corpus": plan.corpus,
            # What a task-aware selection kept, from which pool, by which score (stages/select_corpus.py).
            "corpus_selection": read_selection(plan.corpus["dir"]) if plan.corpus.get("dir") else None,
            "vocab": kept.summary() if kept is not None else {"mode": "full"},
            "git": git_commit(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        # export_model writes under the entry's own lock (temp folder, then rename).
        export_tokenizer = trim_tokenizer(tokenizer, kept.kept_ids) if kept is not None else tokenizer
        export_model(module.student, export_tokenizer, export_dir, manifest)
        log.info("Exported student to %s", export_dir)
        if not plan.distill.get("keep_checkpoints", True):
            shutil.rmtree(work_dir, ignore_errors=True)  # the export is complete; free the disk
    trainer.strategy.barrier("student-export")
    return StudentArtifact(export_dir, read_manifest(export_dir) or {})


def _kept_vocabulary(plan: DistillPlan, tokenizer: Any, corpus_dir: Path) -> KeptVocabulary | None:
    """``student.vocab=trim``: the ids the corpus (and extra texts) use, plus specials; None for ``full``."""
    settings = VocabTrimSettings.from_config(plan.student)
    if not settings.enabled:
        return None
    kept = kept_vocabulary_for(tokenizer, np.load(corpus_dir / "token_counts.npy"), settings,
                               plan.teacher_config.vocab_size)
    log.info("Vocabulary trimmed to %d of %d ids (min count %d); %.4f%% of corpus tokens dropped", len(kept),
             plan.teacher_config.vocab_size, settings.min_count, 100 * kept.dropped_token_share)
    return kept


def _build_module(
    plan: DistillPlan, teacher: Any, corpus_dir: Path, kept: KeptVocabulary | None = None
) -> tuple[DistillationModule, DistillDataModule]:
    tokenizer = teacher.tokenizer
    vocab_size = plan.teacher_config.vocab_size
    if len(tokenizer) > vocab_size:
        raise ValueError(f"Tokenizer has {len(tokenizer)} ids but the teacher's vocab_size is {vocab_size}")
    if plan.parent is not None:
        student = load_exported_student(plan.parent.path, plan.student_spec)
    elif plan.student.get("name_or_path"):
        student = AutoModelForMaskedLM.from_pretrained(plan.student["name_or_path"])
    else:
        student = build_student(teacher.model, plan.student_spec)
    if kept is not None:
        student = trim_masked_lm(student, kept)
    token_counts = torch.from_numpy(np.load(corpus_dir / "token_counts.npy"))
    if len(token_counts) < vocab_size:  # tokenizers may have fewer ids than the model has rows
        token_counts = torch.cat([token_counts, token_counts.new_zeros(vocab_size - len(token_counts))])
    d = plan.distill
    module = DistillationModule(
        student=student,
        teacher=teacher.model,
        token_counts=token_counts,
        special_token_ids=tokenizer.all_special_ids,
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        optimizer=instantiate(d["optimizer"]),
        objective=plan.objective,
        masking=plan.masking,
        warmup_prop=float(d["warmup_prop"]),
        seed=plan.seed,
        kept_vocabulary=kept,
    )
    datamodule = DistillDataModule(
        corpus_dir,
        pad_token_id=tokenizer.pad_token_id,
        batch_size=int(d["batch_size"]),
        seed=plan.seed,
        group_by_size=bool(d["group_by_size"]),
        reshuffle_each_epoch=bool(d["reshuffle_each_epoch"]),
        max_length=plan.shard_settings.max_seq_length,
        num_workers=int(d["num_workers"]),
    )
    return module, datamodule
