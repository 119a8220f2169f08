"""The classification stage: one self-attention classifier for one (task, language, encoder, seed).

The task files are validated and the encoder resolved (no weights read) before anything costly, so a
bad file fails in seconds and a finished job of the same config, data *and* encoder hash is skipped.
A failing job still writes ``results.json`` (``status: failed``, the error), then re-raises.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, open_dict
from torch import nn

from datamodules.task import TaskDataModule
from domain_distil.classification.encoders import EncoderRef, load_encoder, resolve_encoder
from domain_distil.classification.features import FeatureCache
from domain_distil.classification.metrics import Threshold, format_threshold, tune_threshold
from domain_distil.classification.results import RESULTS_FILE, build_results, write_results
from domain_distil.classification.taskfile import TaskSpec, load_task
from domain_distil.common.errors import UserInputError
from domain_distil.common.io import atomic_open, read_json
from domain_distil.common.loggers import build_loggers, finish_wandb, log_config, sweep_group, to_container
from domain_distil.common.seeding import seed_everything
from lightning_modules.classifier import ClassifierModule

log = logging.getLogger(__name__)


class DistributedClassificationError(UserInputError):
    """Classification jobs are single-process; the message says how to fan out instead."""


@dataclass(frozen=True)
class ClassifySettings:
    """Training settings of the ``classify`` group, with optimizer and scheduler as factories."""

    optimizer: Callable[..., torch.optim.Optimizer]
    scheduler: Callable[..., Any] | None
    batch_size: int = 32
    num_workers: int = 0
    encoder_lr: float = 2e-5
    warmup_prop: float = 0.1
    penalty_coef: float = 1.0
    feature_cache: bool = True
    feature_dtype: str = "float16"
    encode_batch_size: int = 64
    skip_finished: bool = True
    keep_checkpoint: bool = False
    save_head: bool = True
    trainer_args: dict[str, Any] | None = None


@dataclass
class ClassifyJob:
    """Everything one job needs, typed: what to classify, with which encoder and how."""

    task: TaskSpec
    lang: str
    task_files: Any  # cls_task.files: {lang: path} / list, or None with task_dir
    task_dir: str | None
    encoder: Callable[[], EncoderRef]  # resolves the encoder reference (may fail: recorded in results)
    encoder_id: str
    freeze: bool
    seed: int | None
    head: Callable[..., nn.Module]  # head(input_dim=, num_classes=)
    settings: ClassifySettings
    trainer: Callable[..., L.Trainer]  # the hardware; called with callbacks, logger and the stage's args
    output_dir: Path
    cache_dir: Path
    config: dict[str, Any]  # recorded in results.json; an identical config + data is a finished job
    loggers: Callable[[str, list[str]], list[Logger]] = lambda name, tags: []
    finish_loggers: Callable[[bool], None] = lambda failed: None


@dataclass(frozen=True)
class ClassifyResult:
    """The job's ``results.json`` record and where it was written."""

    record: dict[str, Any]
    path: Path

    @property
    def test_f1(self) -> float | None:
        return (self.record.get("test") or {}).get("f1")


def _metrics(values: dict[str, Any], prefix: str) -> dict[str, float]:
    # torchmetrics computes in float32, so a perfect recall can come back as 1.0000001: keep the
    # six digits float32 actually carries.
    return {name: round(float(values[f"{prefix}/{name}"]), 6) for name in ("f1", "precision", "recall")}


def save_head(module: ClassifierModule, path: Path) -> None:
    from safetensors.torch import save

    with atomic_open(path, "wb") as handle:
        handle.write(save({k: v.detach().cpu().contiguous() for k, v in module.head.state_dict().items()}))


def refuse_distributed(trainer: L.Trainer) -> None:
    """A classification job runs in one process: thresholds tuned on one rank's slice and N ranks
    writing one ``results.json`` would be silently wrong."""
    world = max(int(trainer.world_size), int(os.environ.get("WORLD_SIZE", "1")))
    if world > 1:
        raise DistributedClassificationError(
            f"task=classify runs on one device, but the trainer has world size {world} "
            f"(trainer.devices/num_nodes or torchrun). Run it with trainer=cpu or trainer=gpu (one device) and "
            "fan out seeds/languages as sweep jobs: python run.py -m task=classify seed='range(10)' ... "
            "(on SLURM: hydra/launcher=submitit_slurm_classify, docs/scale.md)."
        )


def _tune(trainer: L.Trainer, module: ClassifierModule, datamodule: TaskDataModule, ckpt: str,
          task_type: str, mode: str = "global") -> tuple[Threshold, float]:
    """Threshold(s) with the best validation F1 for the best checkpoint; sets it on the module."""
    outputs = trainer.predict(module, datamodule=datamodule, ckpt_path=ckpt)
    probs = torch.cat([o["probs"] for o in outputs])
    targets = torch.cat([o["targets"] for o in outputs])
    threshold, f1 = tune_threshold(probs, targets, task_type, mode=mode)
    module.threshold = threshold
    log.info("tuned threshold %s (%s, validation F1 %.4f)", format_threshold(threshold), mode, f1)
    return threshold, f1


def finished_record(output_dir: Path, config: dict[str, Any], data_hash: str,
                    encoder_hash: str) -> dict[str, Any] | None:
    """The ``results.json`` of a finished run of this exact config, data and encoder in ``output_dir``.

    Re-running a killed sweep into its folder (``hydra.sweep.dir=<old sweep>``) then only runs the
    jobs that are missing or failed. The config alone is not enough: ``encoder=path`` (or
    ``distilled``) names a folder whose weights may have been retrained in place since, so the
    resolved encoder's content hash must match too.
    """
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:
        return None
    same = (record.get("config") == config and record.get("data_hash") == data_hash
            and (record.get("encoder") or {}).get("hash") == encoder_hash)
    return record if record.get("status") == "ok" and same else None


def task_data_hash(job: ClassifyJob) -> str:
    """The content hash of the job's task splits (reads and validates the task files)."""
    return load_task(job.task, job.lang, job.task_files, job.task_dir).content_hash()


def finished_result(job: ClassifyJob, data_hash: str | None = None) -> ClassifyResult | None:
    """The job's ``results.json`` when its folder already holds this exact finished job, else None.

    Reads no weights and only the task files (none given their ``data_hash``, shared by every job of a
    task and language), so a caller that hands jobs to other processes starts none for finished ones.
    """
    if not job.settings.skip_finished:
        return None
    record = finished_record(Path(job.output_dir), job.config, data_hash or task_data_hash(job), job.encoder().hash)
    return None if record is None else ClassifyResult(record, Path(job.output_dir) / RESULTS_FILE)


def classify(job: ClassifyJob) -> ClassifyResult:
    started = time.perf_counter()
    output_dir = Path(job.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    settings, spec, lang = job.settings, job.task, job.lang
    timings: dict[str, float] = {}
    encoder_info: dict[str, Any] = {"id": job.encoder_id, "name_or_path": None, "hash": None}
    failed = True
    try:
        splits = load_task(spec, lang, job.task_files, job.task_dir)
        spec = splits.spec  # its label set resolved: read from the task files when cls_task.labels is null
        data_hash = splits.content_hash()
        log.info("%s/%s splits: %s", spec.name, lang, splits.counts())
        t0 = time.perf_counter()
        ref = job.encoder()  # no weights read: a location and its memoised content hash
        encoder_info = {"id": ref.id, "name_or_path": ref.name_or_path, "hash": ref.hash}
        timings["resolve_encoder_s"] = time.perf_counter() - t0
        done = finished_record(output_dir, job.config, data_hash, ref.hash) if settings.skip_finished else None
        if done is not None:
            log.info("%s already holds a finished job with this config, data and encoder: skipping", output_dir)
            failed = False
            return ClassifyResult(done, output_dir / RESULTS_FILE)
        checkpoint = ModelCheckpoint(dirpath=output_dir / "checkpoints", filename="best-{epoch}",
                                     monitor="val/f1", mode="max", save_top_k=1)
        mode = "frozen" if job.freeze else "finetuned"
        loggers = job.loggers(f"{spec.name}-{lang}-{ref.id}-{mode}-seed{job.seed}",
                              [lang, ref.id, mode, spec.name])
        log_config(loggers, job.config)
        trainer = job.trainer(**(settings.trainer_args or {}), logger=loggers or False, callbacks=[checkpoint])
        refuse_distributed(trainer)  # before any model is read
        seed_everything(job.seed)

        @cache
        def loader() -> tuple[Any, Any]:
            t = time.perf_counter()
            model_and_tokenizer = load_encoder(ref)
            timings["load_encoder_s"] = time.perf_counter() - t
            return model_and_tokenizer

        t0 = time.perf_counter()
        features: FeatureCache | None = None
        if job.freeze and settings.feature_cache:
            features = FeatureCache(Path(job.cache_dir) / "features", ref.hash, spec.max_length, loader,
                                    dtype=settings.feature_dtype, batch_size=settings.encode_batch_size,
                                    device="cuda" if trainer.strategy.root_device.type == "cuda" else "cpu")
            datamodule = TaskDataModule(splits, settings.batch_size, features=features.get,
                                        num_workers=settings.num_workers)
            datamodule.setup("fit")  # encodes every split on a cache miss, loads it otherwise
            encoder, hidden_size = None, datamodule.datasets["train"].store.dim
        else:
            encoder, tokenizer = loader()
            datamodule = TaskDataModule(splits, settings.batch_size, tokenizer=tokenizer,
                                        max_length=spec.max_length, num_workers=settings.num_workers)
            hidden_size = int(encoder.config.hidden_size)
        timings["features_s"] = time.perf_counter() - t0

        # Seed again here: loading the encoder (a cache miss) draws random numbers (e.g. an
        # uninitialised pooler), so without this a hit and a miss would train differently.
        seed_everything(job.seed)
        module = ClassifierModule(
            head=job.head(input_dim=hidden_size, num_classes=spec.num_outputs),
            task_type=spec.type,
            num_labels=len(spec.labels) if spec.type == "multilabel" else 2,
            optimizer=settings.optimizer,
            scheduler=settings.scheduler,
            encoder=encoder,
            freeze=job.freeze,
            encoder_lr=settings.encoder_lr,
            penalty_coef=settings.penalty_coef,
            warmup_prop=settings.warmup_prop,
            threshold=0.5 if spec.threshold == "tune" else float(spec.threshold),
            tune_threshold=spec.threshold == "tune",
            threshold_mode=spec.threshold_mode,
        )

        t0 = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        timings["fit_s"] = time.perf_counter() - t0
        best = checkpoint.best_model_path
        if not best:
            raise RuntimeError("no checkpoint was saved: did validation run (limit_val_batches, max_epochs)?")

        threshold, tuned_f1 = module.threshold, None
        if spec.threshold == "tune":
            threshold, tuned_f1 = _tune(trainer, module, datamodule, best, spec.type, spec.threshold_mode)
        t0 = time.perf_counter()
        best_val = _metrics(trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0], "val")
        best_val["epoch"] = int(torch.load(best, map_location="cpu", mmap=True, weights_only=False)["epoch"])
        test = _metrics(trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)[0], "test")
        timings["evaluate_s"] = time.perf_counter() - t0
        if settings.save_head:
            # test() left the best checkpoint's weights in the module: keep just the head (~2 MB),
            # which is what a serving bundle needs (domain_distil/serving/).
            save_head(module, output_dir / "head.safetensors")
        if not settings.keep_checkpoint:
            shutil.rmtree(output_dir / "checkpoints", ignore_errors=True)
        timings["total_s"] = time.perf_counter() - started

        extra = {
            "task_type": spec.type,
            "labels": list(spec.labels),  # the head's output order (from the task files when not configured)
            "positive_label": spec.positive_label,
            "threshold": threshold,
            "threshold_mode": spec.threshold_mode,
            "threshold_tuned_val_f1": tuned_f1,
            "split_sizes": splits.counts(),
            "data_hash": data_hash,
            "feature_cache": None if features is None else {"hits": features.hits, "misses": features.misses,
                                                            "encode_s": features.encode_seconds},
        }
        record = build_results(task=spec.name, lang=lang, encoder=encoder_info, freeze=job.freeze, seed=job.seed,
                               test=test, best_val=best_val, timings=timings, config=job.config, extra=extra)
        path = write_results(output_dir, record)
        log.info("%s/%s seed %s: test F1 %.4f (best val F1 %.4f, epoch %d) -> %s", spec.name, lang, job.seed,
                 test["f1"], best_val["f1"], best_val["epoch"], path)
        failed = False
        return ClassifyResult(record, path)
    except Exception as error:
        timings["total_s"] = time.perf_counter() - started
        record = build_results(
            task=spec.name, lang=lang, encoder=encoder_info, freeze=job.freeze, seed=job.seed,
            test=None, best_val=None, timings=timings, config=job.config, status="failed",
            error=f"{type(error).__name__}: {error}", extra={"traceback": traceback.format_exc()},
        )
        write_results(output_dir, record)
        raise
    finally:
        job.finish_loggers(failed)


# Config -> typed arguments, for the classify task and the experiments that run classify jobs.


def classify_settings(ccfg: DictConfig) -> ClassifySettings:
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


def single_device(trainer_cfg: DictConfig) -> DictConfig:
    """The trainer group's hardware on one device in one process: classification never runs under DDP,
    and the demo's students train in one worker process each."""
    trainer_cfg = trainer_cfg.copy()
    with open_dict(trainer_cfg):
        trainer_cfg.devices = 1
        trainer_cfg.num_nodes = 1
        trainer_cfg.pop("strategy", None)
    return trainer_cfg


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
    )
